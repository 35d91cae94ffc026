package configs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/paddock-vm/paddock/hypervisor/boot"
)

// Host holds facts about the host that bound a VM config. A zero field is
// unknown, and Validate skips the checks that need it.
type Host struct {
	MemoryBytes uint64 // physical RAM (MemTotal)
	MaxVCPUs    int    // KVM_CAP_MAX_VCPUS; filled by the machine package
	// EmulatedKVM: KVM works but without hardware virtualization (no
	// VT-x/AMD-V), emulating guest kernel code, so a Linux kernel cannot
	// boot; filled from the machine package's probe. CheckBootable reads
	// it; Validate does not (the file is fine on another host).
	EmulatedKVM bool
	// CheckPorts makes Validate check that the host ports of the VM's
	// forwards (ports) are free now. Off by default: a running VM holds
	// its own, and starting a VM checks them anyway (they are taken).
	CheckPorts bool
	// Templates looks up the templates from: names; nil skips those
	// checks (a file meant for another host).
	Templates TemplateLookup
	// Tenants looks up the tenant a VM names; nil skips that check.
	Tenants TenantLookup
}

// CheckBootable reports a VM whose kernel this host cannot boot: a Linux
// kernel (boot.Inspect says so: every bzImage, an ELF vmlinux with
// Linux's notes) on a host whose KVM emulates guest kernel code. The
// guest would never get past its first instructions, with nothing on the
// console. Small non-Linux guests with a PVH entry run there and pass.
// The problem is an *Error about the kernel field; nil when the host is
// not known to be emulating. Precondition: vm is valid (Validate).
func (vm *VM) CheckBootable(host Host) error {
	if !host.EmulatedKVM || vm.Backend == BackendLibvirt {
		return nil // a libvirt VM runs on its libvirt host, KVM or not
	}
	k, err := boot.Inspect(vm.Kernel)
	if err != nil || !k.Linux {
		return nil // Validate reports a bad kernel; a non-Linux guest may run
	}
	return vm.Errorf("kernel", "%s is a Linux kernel, which this host cannot boot: its KVM has no hardware virtualization (no VT-x/AMD-V; see paddock doctor) and emulates guest kernel code, so the guest would hang with an empty console", vm.Kernel)
}

// meminfoPath is where HostFacts reads the host's RAM.
const meminfoPath = "/proc/meminfo"

// HostFacts reads what it can learn without KVM: physical RAM from
// /proc/meminfo. MaxVCPUs is left 0 for the caller that opens /dev/kvm.
func HostFacts() (Host, error) {
	f, err := os.Open(meminfoPath)
	if err != nil {
		return Host{}, fmt.Errorf("host facts: %w", err)
	}
	defer f.Close()
	total, err := parseMemTotal(f)
	if err != nil {
		return Host{}, fmt.Errorf("host facts: %s: %w", meminfoPath, err)
	}
	return Host{MemoryBytes: total}, nil
}

// parseMemTotal returns MemTotal, in bytes, from /proc/meminfo text
// ("MemTotal:       24589456 kB").
func parseMemTotal(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected MemTotal line %q", sc.Text())
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil || kb > 1<<53 {
			return 0, fmt.Errorf("unexpected MemTotal value %q", f[0])
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no MemTotal line")
}
