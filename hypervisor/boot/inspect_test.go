package boot

import (
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"
)

func TestInspect(t *testing.T) {
	withNotes := func(extra ...elfNote) []byte {
		s := defaultELF()
		s.notes = append(extra, s.notes...)
		return s.build()
	}
	for _, c := range []struct {
		name string
		img  []byte
		want Kernel
	}{
		{"bzImage", bzDefaults().build(), Kernel{Protocol: ProtocolBzImage64, Version: 0x020f, Linux: true}},
		{"ELF program with a PVH note", defaultELF().build(), Kernel{Protocol: ProtocolPVH}},
		{"vmlinux with Linux notes", withNotes(elfNote{name: "Linux", typ: 0x100, desc: []byte{0, 0, 0, 0}}),
			Kernel{Protocol: ProtocolPVH, Linux: true}},
		{"vmlinux with Xen's GUEST_OS linux", withNotes(elfNote{name: xenNoteName, typ: xenNoteGuestOS, desc: []byte("linux\x00")}),
			Kernel{Protocol: ProtocolPVH, Linux: true}},
		{"Xen GUEST_OS of another system", withNotes(elfNote{name: xenNoteName, typ: xenNoteGuestOS, desc: []byte("netbsd\x00")}),
			Kernel{Protocol: ProtocolPVH}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Inspect(writeFile(t, "kernel", c.img))
			if err != nil || got != c.want {
				t.Errorf("Inspect = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

// TestInspectErrors checks that Inspect refuses what Load refuses before
// it writes guest memory, with Load's message, and returns at once for
// files that are not regular (a FIFO would block an open for reading).
func TestInspectErrors(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	noPVH := defaultELF()
	noPVH.notes = noPVH.notes[:2]
	bzOld := bzDefaults()
	bzOld.version = 0x0200
	bzCut := bzDefaults().build()
	bzCut = bzCut[:5*sectorSize+0x100]
	text := writeFile(t, "text", []byte("no kernel here"))
	for _, c := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope"), "kernel " + dir + "/nope: no such file or directory"},
		{"directory", dir, "kernel " + dir + ": not a regular file"},
		{"FIFO", fifo, "kernel " + fifo + ": not a regular file"},
		{"character device", "/dev/null", "kernel /dev/null: not a regular file"},
		{"not a kernel", text, "kernel " + text + ": not a Linux kernel (no bzImage header and not an ELF file)"},
		{"ELF without a PVH note", writeFile(t, "elf", noPVH.build()), ""},
		{"old boot protocol", writeFile(t, "old", bzOld.build()), ""},
		{"truncated bzImage", writeFile(t, "cut", bzCut), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Inspect(c.path)
			var ke *KernelError
			if !errors.As(err, &ke) || ke.Path != c.path {
				t.Fatalf("Inspect(%s) = %v, want a *KernelError naming the file", c.path, err)
			}
			want := c.want
			if want == "" { // Load's own message for the same file
				_, lerr := Load(newFakeMem(t, pcMap(128)), Config{KernelPath: c.path, E820: pcMap(128)})
				if lerr == nil {
					t.Fatal("Load accepts the file")
				}
				want = lerr.Error()
			}
			if err.Error() != want {
				t.Errorf("Inspect error\n %q, want\n %q", err, want)
			}
		})
	}
	if _, err := Inspect(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v does not wrap fs.ErrNotExist", err)
	}
}

// TestInspectDebian checks Inspect on Debian's kernel: its bzImage and the
// ELF vmlinux inside it are both Linux.
func TestInspectDebian(t *testing.T) {
	bz := debianKernel(t)
	k, err := Inspect(bz)
	if err != nil || k.Protocol != ProtocolBzImage64 || !k.Linux || k.Version < minProtocol {
		t.Errorf("Inspect(%s) = %+v, %v", bz, k, err)
	}
	elf := debianVmlinux(t)
	k, err = Inspect(elf)
	if err != nil || k != (Kernel{Protocol: ProtocolPVH, Linux: true}) {
		t.Errorf("Inspect(%s) = %+v, %v", elf, k, err)
	}
}
