package machine

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// requiredCaps are the KVM capabilities a paddock machine cannot run
// without.
var requiredCaps = []kvm.Cap{
	kvm.CapIRQChip, kvm.CapUserMemory, kvm.CapExtCPUID, kvm.CapPIT2,
	kvm.CapIRQRouting, kvm.CapIRQFD, kvm.CapIOEventFD, kvm.CapImmediateExit,
	kvm.CapSetTSSAddr,
}

// Acceleration says how the host's KVM runs guest code.
type Acceleration int

const (
	// AccelUnknown: KVM could not be inspected.
	AccelUnknown Acceleration = iota
	// AccelHardware: the CPU has VMX or SVM; any guest OS runs natively.
	AccelHardware
	// AccelEmulated: KVM works but has no hardware virtualization under
	// it (e.g. a paravirtual KVM inside a cloud VM): guest kernel-mode
	// code is emulated, so a stock Linux kernel cannot boot.
	AccelEmulated
)

func (a Acceleration) String() string {
	switch a {
	case AccelHardware:
		return "hardware"
	case AccelEmulated:
		return "emulated"
	}
	return "unknown"
}

// Check is one line of a host probe.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// HostReport is what Probe found out about the host's KVM.
type HostReport struct {
	Checks       []Check
	Usable       bool // /dev/kvm opens, API 12, every required capability
	Acceleration Acceleration
	MaxVCPUs     int
}

// Probe inspects the KVM device at path (empty: /dev/kvm) and the CPU, and
// says whether paddock machines can run here and how fast. sysRoot and
// procRoot are "/sys" and "/proc" outside tests.
func Probe(path, sysRoot, procRoot string) HostReport {
	if path == "" {
		path = "/dev/kvm"
	}
	var r HostReport
	add := func(name string, ok bool, format string, args ...any) {
		r.Checks = append(r.Checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}
	sys, err := kvm.Open(path)
	if err != nil {
		hint := ""
		switch {
		case errors.Is(err, os.ErrNotExist):
			hint = " (is the kvm module loaded? modprobe kvm-intel or kvm-amd)"
		case errors.Is(err, os.ErrPermission):
			hint = " (run as root or join the group that owns it, usually kvm)"
		}
		add(path, false, "%v%s", err, hint)
		r.Acceleration = cpuAcceleration(sysRoot, procRoot)
		return r
	}
	defer sys.Close()
	add(path, true, "opened read-write, KVM API version 12")
	r.Usable = true
	var missing []string
	for _, c := range requiredCaps {
		if v, err := sys.CheckExtension(c); err != nil || v == 0 {
			missing = append(missing, c.String())
		}
	}
	if len(missing) > 0 {
		r.Usable = false
		add("capabilities", false, "missing %s", strings.Join(missing, ", "))
	} else {
		add("capabilities", true, "all %d required present", len(requiredCaps))
	}
	if n, err := sys.CheckExtension(kvm.CapMaxVCPUs); err == nil && n > 0 {
		r.MaxVCPUs = n
	} else if n, err := sys.CheckExtension(kvm.CapNrVCPUs); err == nil {
		r.MaxVCPUs = n
	}
	add("vCPUs", r.MaxVCPUs > 0, "up to %d per VM", r.MaxVCPUs)
	r.Acceleration = cpuAcceleration(sysRoot, procRoot)
	switch r.Acceleration {
	case AccelHardware:
		add("acceleration", true, "hardware virtualization (%s)", cpuVirtFlag(procRoot))
	case AccelEmulated:
		add("acceleration", false, "emulated: the CPU has no vmx/svm%s; guest kernel code is emulated and a stock Linux kernel cannot boot", pvmNote(sysRoot))
	default:
		add("acceleration", false, "unknown: cannot read %s", filepath.Join(procRoot, "cpuinfo"))
	}
	return r
}

// cpuAcceleration decides from the CPU flags: vmx or svm means hardware
// virtualization; their absence while KVM is loaded means an emulating
// (paravirtual) KVM.
func cpuAcceleration(sysRoot, procRoot string) Acceleration {
	switch flag := cpuVirtFlag(procRoot); flag {
	case "vmx", "svm":
		return AccelHardware
	case "":
		return AccelEmulated
	default:
		return AccelUnknown
	}
}

// cpuVirtFlag returns "vmx", "svm", "" (neither) or "?" (unreadable).
func cpuVirtFlag(procRoot string) string {
	f, err := os.Open(filepath.Join(procRoot, "cpuinfo"))
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "flags") {
			continue
		}
		for _, fl := range strings.Fields(line) {
			if fl == "vmx" || fl == "svm" {
				return fl
			}
		}
		return ""
	}
	return "?"
}

func pvmNote(sysRoot string) string {
	if _, err := os.Stat(filepath.Join(sysRoot, "module", "kvm_pvm")); err == nil {
		return " (KVM here is kvm_pvm, a paravirtual KVM)"
	}
	return ""
}
