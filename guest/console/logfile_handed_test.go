package console

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestAdoptLog: a log whose files another process opened (OpenLogFiles,
// AdoptLog), rotated by copying, ends up exactly as the same writes leave
// a log opened by path and rotated by renaming, file by file; and
// OpenLogFiles drops rotated files beyond Keep as OpenLog does.
func TestAdoptLog(t *testing.T) {
	for _, keep := range []int{1, 3} {
		t.Run(fmt.Sprint("keep ", keep), func(t *testing.T) {
			lim := Limits{Size: 100, Keep: keep}
			dir := t.TempDir()
			byPath, handed := filepath.Join(dir, "path.log"), filepath.Join(dir, "handed.log")
			for _, p := range []string{byPath, handed} {
				// Left by an earlier, larger log_keep.
				if err := os.WriteFile(p+"."+fmt.Sprint(keep+1), []byte("stale"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			a, err := OpenLog(byPath, lim, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			files, err := OpenLogFiles(handed, lim, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			b, err := AdoptLog(files, handed, lim)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 40 {
				line := []byte(fmt.Sprintf("line %d: %s\n", i, bytes.Repeat([]byte{'x'}, i%17)))
				if i == 25 {
					line = bytes.Repeat([]byte{'y'}, 250) // larger than a file
				}
				for _, l := range []*LogFile{a, b} {
					if n, err := l.Write(line); err != nil || n != len(line) {
						t.Fatalf("write %d: %d, %v", i, n, err)
					}
				}
			}
			for _, l := range []*LogFile{a, b} {
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i <= keep+1; i++ {
				suffix := ""
				if i > 0 {
					suffix = "." + fmt.Sprint(i)
				}
				want, werr := os.ReadFile(byPath + suffix)
				got, gerr := os.ReadFile(handed + suffix)
				if i == keep+1 {
					if !errors.Is(werr, fs.ErrNotExist) || !errors.Is(gerr, fs.ErrNotExist) {
						t.Errorf("file %d beyond keep: %v, %v", i, werr, gerr)
					}
					continue
				}
				if werr != nil || gerr != nil {
					t.Fatalf("file %d: %v, %v", i, werr, gerr)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("file %d:\nhanded  %q\nby path %q", i, got, want)
				}
				if len(got) > int(lim.Size) {
					t.Errorf("file %d holds %d bytes, more than %d", i, len(got), lim.Size)
				}
			}
			// The two read back the same.
			want, _ := ReadLog(byPath)
			got, _ := ReadLog(handed)
			if !bytes.Equal(got, want) {
				t.Errorf("ReadLog:\nhanded  %q\nby path %q", got, want)
			}
		})
	}
}

// TestAdoptLogBadFiles: the files must be the log and each rotated file.
func TestAdoptLogBadFiles(t *testing.T) {
	files, err := OpenLogFiles(filepath.Join(t.TempDir(), "c.log"), Limits{Size: 100, Keep: 2}, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if _, err := AdoptLog(files[:2], "c.log", Limits{Size: 100, Keep: 2}); err == nil {
		t.Error("AdoptLog took a log without its last rotated file")
	}
	if _, err := OpenLogFiles(filepath.Join(t.TempDir(), "no", "c.log"), Limits{Size: 100, Keep: 1}, 0o600); err == nil {
		t.Error("OpenLogFiles opened a log in a directory that does not exist")
	}
}
