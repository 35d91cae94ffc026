package libvirt

import (
	"fmt"
	"slices"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// Domain types: how QEMU runs a domain's vCPUs.
const (
	// TypeKVM runs guest code on the host CPU through /dev/kvm with
	// hardware virtualization (VT-x or AMD-V).
	TypeKVM = "kvm"
	// TypeQEMU emulates the CPU in software (QEMU's TCG): any host can,
	// many times slower than KVM.
	TypeQEMU = "qemu"
	// TypeAuto (a spec's default) picks TypeKVM where the host has it,
	// TypeQEMU otherwise.
	TypeAuto = "auto"
)

// Facts describe a libvirt host as paddock uses it.
type Facts struct {
	// Hostname is the host's own name for itself.
	Hostname string `json:"hostname"`
	// Libvirt and QEMU are the versions of the daemon and of the
	// hypervisor it drives ("9.0.0", "10.0.2").
	Libvirt string `json:"libvirt_version"`
	QEMU    string `json:"qemu_version"`
	// CPUs and Memory are the host's; FreeMemory is what is free now.
	CPUs       int    `json:"cpus"`
	Memory     uint64 `json:"memory"`      // bytes
	FreeMemory uint64 `json:"free_memory"` // bytes
	// Domains counts every domain defined there, Active those running
	// or paused.
	Domains int `json:"domains"`
	Active  int `json:"active"`
	// KVM says whether domains of type kvm can run guest kernels there:
	// QEMU on the host supports KVM and the host's CPU has hardware
	// virtualization. NoKVM says why not, when not.
	KVM   bool   `json:"kvm"`
	NoKVM string `json:"no_kvm,omitempty"`
}

// DomainType is the type an "auto" domain gets on this host.
func (f Facts) DomainType() string {
	if f.KVM {
		return TypeKVM
	}
	return TypeQEMU
}

// Describe says in a few words how the host runs domains: "kvm", or
// "qemu (TCG: no hardware virtualization)".
func (f Facts) Describe() string {
	if f.KVM {
		return TypeKVM
	}
	return fmt.Sprintf("%s (TCG: %s)", TypeQEMU, f.NoKVM)
}

// ResolveType decides a domain's type from a spec's libvirt.type (auto,
// kvm or qemu): kvm on a host without it is an error naming the host.
// Only auto and kvm ask the host (KVM).
func (c *Conn) ResolveType(want string) (string, error) {
	if want == TypeQEMU {
		return TypeQEMU, nil
	}
	if want != "" && want != TypeAuto && want != TypeKVM {
		return "", fmt.Errorf("libvirt.type %q: want %s, %s or %s", want, TypeAuto, TypeKVM, TypeQEMU)
	}
	ok, why, err := c.KVM()
	switch {
	case err != nil:
		return "", err
	case ok:
		return TypeKVM, nil
	case want == TypeKVM:
		return "", fmt.Errorf("%s cannot run domains of type kvm: %s; set libvirt.type to qemu (TCG, slow) or auto, or pick another host", c.where(), why)
	}
	return TypeQEMU, nil
}

// KVM reports whether the host can run domains of type kvm that boot
// guest kernels, and why not when not (kvmUsable). It reads the host's
// capabilities, which libvirt 9.0 builds anew on every call: seconds.
func (c *Conn) KVM() (ok bool, why string, err error) {
	caps, err := c.l.ConnectGetCapabilities()
	if err != nil {
		return false, "", c.fail("get its capabilities", err)
	}
	ok, why, err = kvmUsable(caps)
	if err != nil {
		return false, "", fmt.Errorf("%s: its capabilities: %w", c.where(), err)
	}
	return ok, why, nil
}

// FreeMemory is the host's free memory now, in bytes.
func (c *Conn) FreeMemory() (uint64, error) {
	free, err := c.l.NodeGetFreeMemory()
	if err != nil {
		return 0, c.fail("get its free memory", err)
	}
	return free, nil
}

// Facts asks the host about itself.
func (c *Conn) Facts() (Facts, error) {
	var f Facts
	var err error
	if f.Hostname, err = c.l.ConnectGetHostname(); err != nil {
		return f, c.fail("get its hostname", err)
	}
	lib, err := c.l.ConnectGetLibVersion()
	if err != nil {
		return f, c.fail("get its libvirt version", err)
	}
	f.Libvirt = version(lib)
	if hv, err := c.l.ConnectGetVersion(); err == nil {
		f.QEMU = version(hv)
	}
	_, mem, cpus, _, _, _, _, _, err := c.l.NodeGetInfo()
	if err != nil {
		return f, c.fail("get its CPUs and memory", err)
	}
	f.CPUs, f.Memory = int(cpus), mem*1024 // NodeGetInfo counts KiB
	if f.FreeMemory, err = c.FreeMemory(); err != nil {
		return f, err
	}
	doms, _, err := c.l.ConnectListAllDomains(1, 0)
	if err != nil {
		return f, c.fail("list its domains", err)
	}
	f.Domains = len(doms)
	active, _, err := c.l.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive)
	if err != nil {
		return f, c.fail("list its domains", err)
	}
	f.Active = len(active)
	f.KVM, f.NoKVM, err = c.KVM()
	return f, err
}

// version renders libvirt's packed version numbers (major*1e6 +
// minor*1e3 + release).
func version(v uint64) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}

// kvmUsable reads a host's capabilities XML: can it run x86-64 domains
// of type kvm that boot guest kernels? That needs QEMU's KVM support
// (libvirt lists a kvm domain for the x86_64 guest) and a host CPU with
// hardware virtualization: a KVM without VT-x/AMD-V (a paravirtual KVM
// inside another VM, say) emulates guest kernel code and cannot boot
// Linux. why says what is missing.
func kvmUsable(capsXML string) (ok bool, why string, err error) {
	var caps libvirtxml.Caps
	if err := caps.Unmarshal(capsXML); err != nil {
		return false, "", err
	}
	x86 := false
	for _, g := range caps.Guests {
		if g.OSType != "hvm" || g.Arch.Name != "x86_64" {
			continue
		}
		x86 = true
		for _, d := range g.Arch.Domains {
			if d.Type == TypeKVM {
				ok = true
			}
		}
	}
	switch {
	case !x86:
		return false, "", fmt.Errorf("no x86_64 guests: QEMU for x86-64 (qemu-system-x86) is not installed there")
	case !ok:
		return false, "no KVM (/dev/kvm missing or unusable)", nil
	}
	if cpu := caps.Host.CPU; cpu != nil {
		hw := slices.ContainsFunc(cpu.FeatureFlags, func(f libvirtxml.CapsHostCPUFeatureFlag) bool {
			return f.Name == "vmx" || f.Name == "svm"
		})
		if !hw {
			return false, "its KVM has no hardware virtualization (the CPU shows no vmx or svm)", nil
		}
	}
	return true, "", nil
}
