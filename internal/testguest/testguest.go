// Package testguest builds paddock's tiny test guests for tests outside
// hypervisor/machine: the programs in hypervisor/machine/testdata/guests
// (counter, pwrbtn, irq, serial, ...) and the ones in this package's
// guests/ directory, assembled with GNU as and linked with ld at test time
// into ELF images that boot through the PVH entry, like a Linux vmlinux.
// See docs/hosts.md for why host-KVM tests use such programs.
package testguest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/devices/acpipm"
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
	testenv.Declare(tb, testenv.HostKVM)
	testenv.RequireTool(tb, "as", "binutils")
	testenv.RequireTool(tb, "ld", "binutils")
	elf, err := BuildIn(tb.TempDir(), name)
	if err != nil {
		tb.Fatal(err)
	}
	return elf
}

// BuildIn is Build without a testing.TB: it writes NAME.elf into dir.
func BuildIn(dir, name string) (string, error) {
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
		"-o", obj, src,
	}
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
