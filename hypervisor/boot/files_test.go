package boot

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadOpenFiles loads a kernel and initrd from files the caller
// opened (a VMM that boots the same guest again after a reboot, from
// descriptors it was handed): their paths are gone by then, Load never
// opens one, the files stay open, and a second load writes the same.
func TestLoadOpenFiles(t *testing.T) {
	dir := t.TempDir()
	kernelPath := writeFile(t, "vmlinux", defaultELF().build())
	initrd := pattern(0x2345, 0x5a)
	initrdPath := writeFile(t, "initrd", initrd)
	kernel, err := OpenKernel(kernelPath)
	if err != nil {
		t.Fatal(err)
	}
	defer kernel.Close()
	rd, err := OpenInitrd(initrdPath)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for _, p := range []string{kernelPath, initrdPath} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	e820 := pcMap(64)
	var first []byte
	for boot := 0; boot < 2; boot++ {
		mem := newFakeMem(t, e820)
		e, err := Load(mem, Config{Kernel: kernel, Initrd: rd, Cmdline: "console=hvc0", E820: e820, RSDP: 0xE0000})
		if err != nil {
			t.Fatalf("boot %d: %v", boot, err)
		}
		if got := mem.read(t, e.InitrdAddr, e.InitrdSize); !bytes.Equal(got, initrd) {
			t.Fatalf("boot %d: the initrd in guest memory differs from the file", boot)
		}
		var image []byte
		for _, r := range mem.regions {
			image = append(image, r.buf...)
		}
		if boot == 0 {
			first = image
		} else if !bytes.Equal(first, image) {
			t.Fatal("the second load from the same open files wrote different memory")
		}
	}
	// Errors name the open file by its name when no path is given.
	notKernel, err := os.Create(filepath.Join(dir, "notes.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer notKernel.Close()
	notKernel.WriteString("hello")
	_, err = Load(newFakeMem(t, e820), Config{Kernel: notKernel, E820: e820})
	if err == nil || !strings.Contains(err.Error(), "kernel "+notKernel.Name()+": ") {
		t.Errorf("a file that is no kernel: %v", err)
	}
}

func TestOpenKernelRefuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenKernel(dir); err == nil || err.Error() != "kernel "+dir+": not a regular file" {
		t.Errorf("directory: %v", err)
	}
	if _, err := OpenInitrd(filepath.Join(dir, "nope")); err == nil || err.Error() != "initrd "+filepath.Join(dir, "nope")+": no such file or directory" {
		t.Errorf("missing initrd: %v", err)
	}
}
