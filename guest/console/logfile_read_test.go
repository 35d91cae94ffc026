package console

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReadLogHostile reads console logs as a jailed VMM, which owns its
// log files, could leave them: a link to a file of the host, a FIFO, a
// sparse file of a TiB. ReadLog reads none of the link's target, does not
// block on the FIFO and returns no more than the last 64 MiB.
func TestReadLogHostile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "shadow")
	if err := os.WriteFile(secret, []byte("root:secret-hash:1:0:99999:7:::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "console.log")
	if err := os.WriteFile(log, []byte("boot\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := os.Symlink(secret, log+".1"); err != nil {
		t.Fatal(err)
	}
	b, err := ReadLog(log)
	if err == nil || !strings.Contains(err.Error(), "is a symbolic link") || bytes.Contains(b, []byte("secret")) {
		t.Fatalf("ReadLog with a rotated file linked to %s: %q, %v", secret, b, err)
	}
	if lines, err := TailFile(log, 20); err == nil || strings.Contains(strings.Join(lines, "\n"), "secret") {
		t.Fatalf("TailFile with a linked file: %q, %v", lines, err)
	}
	os.Remove(log + ".1")

	if err := syscall.Mkfifo(log+".1", 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadLog(log); err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Fatalf("ReadLog with a FIFO: %v", err)
	}
	os.Remove(log + ".1")

	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\nlast line\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err = ReadLog(log)
	if err != nil || len(b) != maxReadLog || !bytes.HasSuffix(b, []byte("last line\n")) {
		t.Fatalf("ReadLog of a 1 TiB sparse log: %d bytes ending %q, %v; want its last %d", len(b), b[max(len(b)-11, 0):], err, maxReadLog)
	}
	if lines, err := TailFile(log, 1); err != nil || len(lines) != 1 || lines[0] != "last line" {
		t.Fatalf("TailFile of a 1 TiB sparse log: %d lines, %v; want [last line]", len(lines), err)
	}
}
