// Package testguest builds paddock's tiny test guests for tests outside
// hypervisor/machine: the programs in hypervisor/machine/testdata/guests
// (counter, pwrbtn, irq, serial, ...) and the ones in this package's
// guests/ directory, assembled with GNU as and linked with ld at test time
// into ELF images that boot through the PVH entry, like a Linux vmlinux.
// See docs/hosts.md for why host-KVM tests use such programs.
package testguest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/acpipm"
	"github.com/paddock-vm/paddock/hypervisor/devices/ged"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// machineGuests is the directory of the machine package's guests, relative
// to the module root; common.inc and guest.ld live there.
const machineGuests = "hypervisor/machine/testdata/guests"

// ownGuests is this package's guest directory, relative to the module root.
const ownGuests = "internal/testguest/guests"

// Build assembles the guest NAME.S (looked up in this package's guests/
// first, then in the machine package's) and returns the path of its ELF
// image in a test temporary directory. It declares tb a host KVM test
// and ends it when GNU as or ld is not installed (testenv.RequireTool).
func Build(tb testing.TB, name string) string {
	tb.Helper()
	return BuildWith(tb, name, nil)
}

// BuildWith is Build with symbols of the guest's own given values
// (--defsym NAME=VALUE), for a guest whose source leaves them to the
// test (warm.S's FILL_END).
func BuildWith(tb testing.TB, name string, defs map[string]uint64) string {
	tb.Helper()
	testenv.Declare(tb, testenv.HostKVM)
	testenv.RequireTool(tb, "as", "binutils")
	testenv.RequireTool(tb, "ld", "binutils")
	elf, err := BuildIn(tb.TempDir(), name, defs)
	if err != nil {
		tb.Fatal(err)
	}
	return elf
}

// BuildIn is BuildWith without a testing.TB: it writes NAME.elf into
// dir. defs may be nil.
func BuildIn(dir, name string, defs map[string]uint64) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	common := filepath.Join(root, machineGuests)
	src := filepath.Join(root, ownGuests, name+".S")
	if _, err := os.Stat(src); err != nil {
		src = filepath.Join(common, name+".S")
	}
	if _, err := os.Stat(src); err != nil {
		return "", fmt.Errorf("testguest: no guest %q in %s or %s", name, ownGuests, machineGuests)
	}
	obj := filepath.Join(dir, name+".o")
	elf := filepath.Join(dir, name+".elf")
	args := []string{"--64", "-I", common,
		"--defsym", fmt.Sprintf("PM1A_CNT=%d", acpipm.DefaultControlPort),
		"--defsym", fmt.Sprintf("S5_TYP=%d", acpipm.DefaultSleepTypeS5),
		"--defsym", fmt.Sprintf("PM1A_EVT=%d", acpipm.DefaultEventPort),
		"--defsym", fmt.Sprintf("VMGENID=%d", machine.VMGenIDAddr),
		"--defsym", fmt.Sprintf("GED_PORT=%d", ged.DefaultPort),
		"--defsym", fmt.Sprintf("GED_GSI=%d", ged.DefaultGSI),
	}
	for _, k := range slices.Sorted(maps.Keys(defs)) {
		args = append(args, "--defsym", fmt.Sprintf("%s=%d", k, defs[k]))
	}
	args = append(args, "-o", obj, src)
	if out, err := exec.Command("as", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("testguest: assemble %s: %w\n%s", name, err, out)
	}
	ld := exec.Command("ld", "-m", "elf_x86_64", "--no-warn-rwx-segments", "-T", filepath.Join(common, "guest.ld"), "-o", elf, obj)
	if out, err := ld.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testguest: link %s: %w\n%s", name, err, out)
	}
	return elf, nil
}

// ModuleRoot finds the paddock module's root directory: the nearest
// directory at or above the working directory (a package directory, when
// run by go test) that holds go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("testguest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testguest: no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// RequireKVM is testenv.RequireKVM: it declares tb a host KVM test and
// ends it unless /dev/kvm opens read-write.
func RequireKVM(tb testing.TB) {
	tb.Helper()
	testenv.RequireKVM(tb)
}

// BzImage writes a file named name in dir that passes the boot loader's
// checks of a bzImage (boot protocol 2.15, a 64-bit entry point, a
// protected-mode kernel after the setup sectors) and returns its path.
// paddock takes it for a Linux kernel, but its code is zeros: it suits
// validation and refusals, not booting.
func BzImage(tb testing.TB, dir, name string) string {
	tb.Helper()
	const setupSects = 4
	b := make([]byte, (setupSects+1)*512+1024)
	b[0x1f1] = setupSects
	b[0x200], b[0x201] = 0xeb, 0x66 // short jump over the header, which ends at 0x268
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x020f) // boot protocol 2.15
	binary.LittleEndian.PutUint16(b[0x236:], 1)      // xloadflags: XLF_KERNEL_64
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// PVHStub writes a file named name in dir that passes the boot loader's
// checks of an ELF kernel (an x86-64 executable with the PVH entry note)
// but has no Linux notes: to paddock it is a small non-Linux guest, like
// the ones Build makes, with no assembler needed. Its one segment is a
// hlt loop at 1 MiB. It returns the path.
func PVHStub(tb testing.TB, dir, name string) string {
	tb.Helper()
	const (
		ehdr, phdr = 64, 56
		noteOff    = ehdr + 2*phdr
		noteLen    = 12 + 4 + 4 // header, "Xen\0", the 4-byte entry
		codeOff    = noteOff + noteLen
		load       = 0x100000
	)
	le := binary.LittleEndian
	b := make([]byte, codeOff+4)
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1 // ELFCLASS64, little-endian, version 1
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], 62)   // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], load+codeOff) // e_entry
	le.PutUint64(b[32:], ehdr)         // e_phoff
	le.PutUint16(b[52:], ehdr)
	le.PutUint16(b[54:], phdr)
	le.PutUint16(b[56:], 2)
	prog := func(i int, typ uint32, off, addr, size uint64) {
		p := b[ehdr+i*phdr:]
		le.PutUint32(p[0:], typ)
		le.PutUint32(p[4:], 5) // PF_R|PF_X
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], addr)
		le.PutUint64(p[24:], addr)
		le.PutUint64(p[32:], size)
		le.PutUint64(p[40:], size)
		le.PutUint64(p[48:], 4)
	}
	prog(0, 1, 0, load, uint64(len(b))) // PT_LOAD: the whole file at 1 MiB
	prog(1, 4, noteOff, load+noteOff, noteLen)
	n := b[noteOff:]
	le.PutUint32(n[0:], 4)  // namesz
	le.PutUint32(n[4:], 4)  // descsz
	le.PutUint32(n[8:], 18) // XEN_ELFNOTE_PHYS32_ENTRY
	copy(n[12:], "Xen\x00")
	le.PutUint32(n[16:], load+codeOff)
	copy(b[codeOff:], []byte{0xf4, 0xeb, 0xfd}) // 1: hlt; jmp 1b
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}
