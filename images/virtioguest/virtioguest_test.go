package virtioguest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/internal/testenv"
)

func TestScripts(t *testing.T) {
	s, err := Scripts()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"virtio-check", "virtio-intx", "virtio-bench", "virtio-limits", "snapshot-guest", "snapshot-bench"} {
		src, ok := s[name]
		if !ok {
			t.Errorf("no script %s", name)
			continue
		}
		// Every script is valid sh.
		if out, err := exec.Command("sh", "-n", "-c", src).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}

func TestHostFiles(t *testing.T) {
	sh := testenv.RequireTool(t, "sh", "dash")
	testenv.RequireTool(t, "ldd", "libc-bin")
	files, err := HostFiles(context.Background(), sh)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	joined := strings.Join(paths, " ")
	for _, want := range []string{sh, "libc.so.6", "ld-linux-x86-64.so.2"} {
		if !strings.Contains(joined, want) {
			t.Errorf("HostFiles(%s) = %s; missing %s", sh, joined, want)
		}
	}
}

// TestVTool builds vtool and moves a file through it over loopback, and
// reads a disk image with it.
func TestVTool(t *testing.T) {
	testenv.RequireTool(t, "gcc", "gcc")
	vtool, err := BuildVTool(context.Background(), cache.New(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	data := bytes.Repeat([]byte("paddock virtio "), 100000)
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	get := exec.Command(vtool, "get", "15901", out)
	if err := get.Start(); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command(vtool, "put", "127.0.0.1", "15901", in).CombinedOutput(); err != nil {
		t.Fatalf("put: %v\n%s", err, msg)
	}
	if err := get.Wait(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("transfer: %d bytes, %v", len(got), err)
	}
	img := filepath.Join(dir, "img")
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command(vtool, "seqread", img, "4").CombinedOutput(); err != nil {
		t.Fatalf("seqread: %v\n%s", err, msg)
	}
}
