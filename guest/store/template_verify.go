package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
)

// FileStamp identifies one state of a file without reading it: its
// device, inode, size and modification and change times. Writing a file
// changes its change time (which no process can set back), so a file
// with the stamp it had when its checksum was verified still has that
// checksum; anything else is verified again.
type FileStamp struct {
	File  string `json:"file"`
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime_ns"`
	Ctime int64  `json:"ctime_ns"`
}

// stampOf returns the stamp of an open or named file's status.
func stampOf(file string, fi os.FileInfo) FileStamp {
	st := fi.Sys().(*syscall.Stat_t)
	return FileStamp{
		File: file, Dev: st.Dev, Ino: st.Ino, Size: st.Size,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(),
	}
}

// TemplateChangedError is a template file whose contents are not the
// ones template.json records: someone wrote it after the template was
// made. VMs from the template are refused, since their disks' data lies
// partly in the template's base disks.
type TemplateChangedError struct {
	Template string
	Path     string
	// Problem says what differs: "size 123, want 456", "SHA-256 ab12...,
	// want cd34...".
	Problem string
}

func (e *TemplateChangedError) Error() string {
	return fmt.Sprintf("template %s: %s changed after the template was made (%s), so paddock does not use it: VMs made from it may have lost data; remove the template and make it again", e.Template, e.Path, e.Problem)
}

// Verify checks the contents of every file of the template against the
// sizes and SHA-256s of its metadata (*TemplateChangedError on a
// mismatch). A file whose stamp is in known, unchanged, is not read
// again; with known nil, the stamps the last Verify of any command
// remembered in the template (TemplateStampsFile) are known. It returns
// the stamps of all the files, for the next Verify.
func (t *Template) Verify(known []FileStamp) ([]FileStamp, error) {
	remembered := t.rememberedStamps()
	if known == nil {
		known = remembered
	}
	byFile := map[string]FileStamp{}
	for _, s := range known {
		byFile[s.File] = s
	}
	var stamps []FileStamp
	for _, f := range t.Meta.Files() {
		path := t.Path(f.File)
		fi, err := os.Lstat(path)
		if err != nil {
			return nil, fmt.Errorf("store: template %s: %w", t.Name, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, &TemplateChangedError{Template: t.Name, Path: path, Problem: "it is not a regular file any more"}
		}
		stamp := stampOf(f.File, fi)
		if stamp.Size != f.Size {
			return nil, &TemplateChangedError{Template: t.Name, Path: path, Problem: fmt.Sprintf("size %d, want %d", stamp.Size, f.Size)}
		}
		if byFile[f.File] == stamp {
			stamps = append(stamps, stamp)
			continue
		}
		size, sum, err := hashFile(path, false)
		if err != nil {
			return nil, fmt.Errorf("store: template %s: %w", t.Name, err)
		}
		if size != f.Size || sum != f.SHA256 {
			return nil, &TemplateChangedError{Template: t.Name, Path: path, Problem: fmt.Sprintf("SHA-256 %s, want %s", sum, f.SHA256)}
		}
		after, err := os.Lstat(path)
		if err != nil {
			return nil, fmt.Errorf("store: template %s: %w", t.Name, err)
		}
		if stampOf(f.File, after) != stamp {
			return nil, &TemplateChangedError{Template: t.Name, Path: path, Problem: "it was written while paddock checked it"}
		}
		stamps = append(stamps, stamp)
	}
	if !slices.Equal(stamps, remembered) {
		t.rememberStamps(stamps)
	}
	return stamps, nil
}

// maxStampsFile caps what rememberedStamps reads.
const maxStampsFile = 1 << 20

// rememberedStamps returns the stamps TemplateStampsFile holds, or nil
// when it is missing, unsafe (not the user's or root's, or writable by
// others) or unreadable: then every file is read again.
func (t *Template) rememberedStamps() []FileStamp {
	if err := checkEntry(t.Dir, TemplateStampsFile, false); err != nil {
		return nil
	}
	data, err := readCapped(t.Path(TemplateStampsFile), maxStampsFile)
	if err != nil {
		return nil
	}
	var stamps []FileStamp
	if json.Unmarshal(data, &stamps) != nil {
		return nil
	}
	return stamps
}

// rememberStamps writes stamps, the files just verified, to
// TemplateStampsFile for the next command's Verify. It is a cache: a
// template it cannot be written to (a read-only store) is verified in
// full each time.
func (t *Template) rememberStamps(stamps []FileStamp) {
	data, err := json.Marshal(stamps)
	if err != nil {
		return
	}
	_ = WriteFileAtomic(t.Path(TemplateStampsFile), data, 0o600)
}

// hashFile returns the size and hex SHA-256 of the file at path; with
// sync it also makes the file durable.
func hashFile(path string, sync bool) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", path, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			return 0, "", fmt.Errorf("sync %s: %w", path, err)
		}
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
