package boot

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// debianKernelPkg is the stock kernel the lab boots; its bzImage is the
// real-world input for these tests.
const debianKernelPkg = "linux-image-6.1.0-56-amd64"

// debianKernel returns the path of a Debian x86-64 bzImage: the lab's copy
// in /tmp/labprobe, a cached copy, or one downloaded with apt-get. Only
// when there is no kernel and no apt-get to fetch one does the test end
// (testenv.RequireTool: a skip outside CI, a failure in CI).
func debianKernel(t testing.TB) string {
	t.Helper()
	testenv.Declare(t, testenv.Oracle) // Debian's kernel, as built by others
	if m, _ := filepath.Glob("/tmp/labprobe/x/boot/vmlinuz-*"); len(m) > 0 {
		return m[0]
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "paddock-test", "debian-kernel")
	if m, _ := filepath.Glob(filepath.Join(dir, "vmlinuz-*")); len(m) > 0 {
		return m[0]
	}
	testenv.RequireTool(t, "apt-get", "apt") // to download debianKernelPkg
	dl := t.TempDir()
	deb, err := aptDownload(dl, debianKernelPkg)
	if err != nil {
		// Debian drops old kernel ABIs from its mirror: take the current one.
		out, derr := exec.Command("apt-cache", "depends", "linux-image-amd64").CombinedOutput()
		pkg := regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*-amd64)\s`).FindSubmatch(out)
		if derr != nil || pkg == nil {
			t.Fatalf("download %s: %v; and no current kernel package found (apt-cache: %v)", debianKernelPkg, err, derr)
		}
		if deb, err = aptDownload(dl, string(pkg[1])); err != nil {
			t.Fatal(err)
		}
	}
	path, err := extractVmlinuz(deb, dir)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// aptDownload fetches a package's .deb into dir.
func aptDownload(dir, pkg string) (string, error) {
	cmd := exec.Command("apt-get", "download", pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", errors.New("apt-get download " + pkg + ": " + err.Error() + ": " + strings.TrimSpace(string(out)))
	}
	m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(m) == 0 {
		return "", errors.New("apt-get download " + pkg + " left no .deb in " + dir)
	}
	return m[0], nil
}

// extractVmlinuz copies ./boot/vmlinuz-* out of a kernel .deb into dir.
func extractVmlinuz(deb, dir string) (string, error) {
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	path, err := copyVmlinuz(tar.NewReader(out), dir)
	// The rest of the archive (the modules) is not needed: stop dpkg-deb
	// rather than read it.
	cmd.Process.Kill()
	cmd.Wait()
	if err != nil {
		return "", errors.New(deb + ": " + err.Error())
	}
	return path, nil
}

// copyVmlinuz writes the first boot/vmlinuz-* in the tar stream to dir.
func copyVmlinuz(tr *tar.Reader, dir string) (string, error) {
	for {
		h, err := tr.Next()
		if err != nil {
			return "", errors.New("no boot/vmlinuz-*: " + err.Error())
		}
		name := strings.TrimPrefix(h.Name, "./")
		if !strings.HasPrefix(name, "boot/vmlinuz-") {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		dst := filepath.Join(dir, filepath.Base(name))
		if err := os.WriteFile(dst+".part", data, 0o644); err != nil {
			return "", err
		}
		return dst, os.Rename(dst+".part", dst)
	}
}

func TestDebianBzImage(t *testing.T) {
	path := debianKernel(t)
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e820 := pcMap(512)
	initrd := pattern(3*mib+17, 0x42)
	cfg := Config{KernelPath: path, InitrdPath: writeFile(t, "initrd", initrd), Cmdline: "console=ttyS0 panic=-1", E820: e820, RSDP: 0xE0000}
	mem := newFakeMem(t, e820)
	e, err := Load(mem, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Header facts of Debian's x86-64 kernels, read straight from the file.
	u16 := func(off int) uint64 { return uint64(le.Uint16(img[off:])) }
	u32 := func(off int) uint64 { return uint64(le.Uint32(img[off:])) }
	version, xload := u16(0x206), u16(0x236)
	if version < 0x020f || xload&1 == 0 || img[0x234] != 1 || u32(0x230) != 2*mib || u32(0x22c) != 0x7fffffff ||
		u32(0x238) != 2047 || le.Uint64(img[0x258:]) != 16*mib {
		t.Fatalf("unexpected header: version %#x xloadflags %#x relocatable %d kernel_alignment %#x initrd_addr_max %#x cmdline_size %d pref_address %#x",
			version, xload, img[0x234], u32(0x230), u32(0x22c), u32(0x238), le.Uint64(img[0x258:]))
	}
	if e.Protocol != ProtocolBzImage64 || e.RIP != 0x100200 || e.RSI != ParamsAddr || e.CR3 != PML4Addr {
		t.Errorf("entry: %+v", e)
	}
	// The decompressor's buffer: pref_address (16 MiB, above the 2 MiB
	// aligned load address) + init_size.
	if want := 16*mib + u32(0x260); e.KernelEnd != want {
		t.Errorf("KernelEnd = %#x, want pref_address + init_size = %#x", e.KernelEnd, want)
	}
	// The initrd: at the top of RAM (which ends below initrd_addr_max).
	if want := (512*mib - uint64(len(initrd))) &^ (pageSize - 1); e.InitrdAddr != want {
		t.Errorf("initrd at %#x, want %#x", e.InitrdAddr, want)
	}
	// The zero page holds the header as the kernel has it, apart from the
	// loader's fields, and the kernel is at 1 MiB.
	zp := mem.read(t, ParamsAddr, bpSize)
	hdrEnd := 0x202 + int(img[0x201])
	if !bytes.Equal(zp[0x1f2:0x210], img[0x1f2:0x210]) || !bytes.Equal(zp[0x22c:0x23c], img[0x22c:0x23c]) ||
		!bytes.Equal(zp[0x258:hdrEnd], img[0x258:hdrEnd]) {
		t.Errorf("zero page header differs from the kernel's")
	}
	if zp[0x210] != 0xff || zp[0x211]&0x81 != 0x81 || le.Uint32(zp[0x228:]) != CmdlineAddr ||
		uint64(le.Uint32(zp[0x218:])) != e.InitrdAddr || le.Uint32(zp[0x21c:]) != uint32(len(initrd)) ||
		le.Uint64(zp[0x70:]) != 0xE0000 || int(zp[0x1e8]) != len(e820) {
		t.Errorf("zero page loader fields wrong: type_of_loader %#x loadflags %#x cmd_line_ptr %#x ramdisk %#x+%#x rsdp %#x e820_entries %d",
			zp[0x210], zp[0x211], le.Uint32(zp[0x228:]), le.Uint32(zp[0x218:]), le.Uint32(zp[0x21c:]), le.Uint64(zp[0x70:]), zp[0x1e8])
	}
	setup := (int(img[0x1f1]) + 1) * 512
	kernel := img[setup:min(len(img), setup+int(u32(0x1f4))*16)]
	if got := mem.read(t, KernelLoadAddr, uint64(len(kernel))); !bytes.Equal(got, kernel) {
		t.Errorf("protected-mode kernel differs at 1 MiB")
	}
	checkPageTables(t, mem)
	checkGDT(t, mem, e)
}

// debianVmlinux decompresses the ELF vmlinux out of a Debian bzImage: the
// payload at payload_offset (from the protected-mode kernel) is XZ.
func debianVmlinux(t testing.TB) string {
	t.Helper()
	path := debianKernel(t)
	xz := testenv.RequireTool(t, "xz", "xz-utils")
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	setup := (int(img[0x1f1]) + 1) * 512
	off, n := setup+int(le.Uint32(img[0x248:])), int(le.Uint32(img[0x24c:]))
	if off+n > len(img) || !bytes.HasPrefix(img[off:], []byte("\xfd7zXZ\x00")) {
		t.Fatalf("%s: no XZ payload at %#x", path, off)
	}
	out := filepath.Join(t.TempDir(), "vmlinux")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(xz, "-dc", "--single-stream")
	cmd.Stdin, cmd.Stdout = bytes.NewReader(img[off:off+n]), f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xz: %v: %s", err, stderr.Bytes())
	}
	return out
}

func TestDebianVmlinuxPVH(t *testing.T) {
	path := debianVmlinux(t)
	e820 := pcMap(512)
	initrd := pattern(mib, 0x24)
	mem := newFakeMem(t, e820)
	e, err := Load(mem, Config{KernelPath: path, InitrdPath: writeFile(t, "initrd", initrd), Cmdline: "console=ttyS0", E820: e820, RSDP: 0xE0000})
	if err != nil {
		t.Fatal(err)
	}
	if e.Protocol != ProtocolPVH || e.RBX != ParamsAddr || e.CR0&cr0PG != 0 {
		t.Errorf("entry: %+v", e)
	}
	// Oracle 1: readelf's view of the PVH note.
	if testenv.HasTool(t, "readelf", "binutils") {
		out, err := exec.Command("readelf", "-nW", path).Output()
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`Xen\s+0x0*8\s+Unknown note type: \(0x00000012\)\s+description data: ((?:[0-9a-f]{2} ?){8})`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("readelf -n shows no Xen note of type 0x12:\n%s", out)
		}
		desc, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(string(m[1])), " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		if want := le.Uint64(desc); e.RIP != want {
			t.Errorf("RIP = %#x, readelf says the PVH entry is %#x", e.RIP, want)
		}
	}
	// Oracle 2: the entry is pvh_start_xen, which begins cld; lgdt.
	if code := mem.read(t, e.RIP, 3); !bytes.Equal(code, []byte{0xfc, 0x0f, 0x01}) {
		t.Errorf("code at the PVH entry %#x is % x, want cld; lgdt (fc 0f 01)", e.RIP, code)
	}
	// Oracle 3: debug/elf's segments are in guest memory, bss zeroed.
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		want := make([]byte, p.Filesz)
		if _, err := p.ReadAt(want, 0); err != nil {
			t.Fatal(err)
		}
		if got := mem.read(t, p.Paddr, p.Filesz); !bytes.Equal(got, want) {
			t.Errorf("segment at %#x differs in guest memory", p.Paddr)
		}
		if p.Memsz > p.Filesz && !allBytes(mem.read(t, p.Paddr+p.Filesz, p.Memsz-p.Filesz), 0) {
			t.Errorf("bss of the segment at %#x is not zero", p.Paddr)
		}
		if p.Paddr < e.KernelStart || p.Paddr+p.Memsz > e.KernelEnd {
			t.Errorf("segment %#x+%#x is outside KernelStart/End %#x-%#x", p.Paddr, p.Memsz, e.KernelStart, e.KernelEnd)
		}
	}
	if e.InitrdAddr < e.KernelEnd && e.InitrdAddr+e.InitrdSize > e.KernelStart {
		t.Errorf("initrd %#x overlaps the kernel", e.InitrdAddr)
	}
	checkGDT(t, mem, e)
}

// BenchmarkLoadDebianBzImage measures Load of the stock bzImage with a 4 MiB
// initrd into a 512 MiB guest: part of the VMM's start-up time.
func BenchmarkLoadDebianBzImage(b *testing.B) {
	benchmarkLoad(b, debianKernel(b))
}

// BenchmarkLoadDebianVmlinuxPVH measures Load of the same kernel's ELF
// vmlinux (about 65 MB, with bss to clear).
func BenchmarkLoadDebianVmlinuxPVH(b *testing.B) {
	benchmarkLoad(b, debianVmlinux(b))
}

func benchmarkLoad(b *testing.B, kernel string) {
	e820 := pcMap(512)
	mem := newFakeMem(b, e820)
	cfg := Config{KernelPath: kernel, InitrdPath: writeFile(b, "initrd", pattern(4*mib, 1)), Cmdline: "console=ttyS0", E820: e820}
	if _, err := Load(mem, cfg); err != nil { // fault the guest pages in once
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := Load(mem, cfg); err != nil {
			b.Fatal(err)
		}
	}
}
