package lab

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-vm/paddock/images/hello"
)

// L2 is a guest booted inside L1.
type L2 struct {
	// Name identifies the guest in step names ("pvh") and file names:
	// [a-z0-9-]+.
	Name string
	// Kernel and Initrd are L1 paths (GuestVmlinuz or GuestVmlinux, and
	// GuestInitrd).
	Kernel string
	Initrd string
	// Cmdline is the guest's kernel command line (e.g. hello.Cmdline("facts")).
	Cmdline string
	// CPUs and MemoryMiB default to 1 and 512.
	CPUs      int
	MemoryMiB int
}

// HelloL2 returns the hello guest booted from the bzImage (pvh=false) or
// the ELF vmlinux via PVH, running the named built-in script.
func HelloL2(pvh bool, script string) L2 {
	g := L2{Name: "bzimage", Kernel: GuestVmlinuz, Initrd: GuestInitrd, Cmdline: hello.Cmdline(script)}
	if pvh {
		g.Name, g.Kernel = "pvh", GuestVmlinux
	}
	return g
}

func (g L2) withDefaults() L2 {
	if g.CPUs == 0 {
		g.CPUs = 1
	}
	if g.MemoryMiB == 0 {
		g.MemoryMiB = 512
	}
	return g
}

// VMM is a virtual machine monitor that can boot an L2 guest in L1.
type VMM interface {
	// Name identifies the VMM in step names and markers: [a-z0-9-]+.
	Name() string
	// Command returns the L1 shell command that boots g with its serial
	// console on stdout and returns when the guest powers off.
	Command(g L2) string
	// Files returns files the command needs in L1 (e.g. a VM description).
	Files(g L2) map[string]File
	// Needs reports what L1 must contain for the VMM.
	Needs(sc *Scenario)
}

// QEMU is the peer VMM: QEMU's microvm with direct kernel boot on L1's
// /dev/kvm (the configuration docs/hosts.md measured), with qboot, QEMU's
// minimal firmware, which loads the kernel itself. (microvm's default
// SeaBIOS needs the option ROMs that x-option-roms=off leaves out to load
// a kernel: QEMU 10 then never starts the guest.)
type QEMU struct {
	// Extra arguments appended to the command line.
	Extra []string
}

// Name implements VMM.
func (QEMU) Name() string { return "qemu" }

// Command implements VMM.
func (q QEMU) Command(g L2) string {
	g = g.withDefaults()
	args := []string{
		"qemu-system-x86_64", "-L", QEMUDataDir,
		"-enable-kvm", "-cpu", "host",
		"-M", "microvm,x-option-roms=off,rtc=on", "-bios", "qboot.rom",
		"-smp", strconv.Itoa(g.CPUs), "-m", strconv.Itoa(g.MemoryMiB),
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", g.Kernel,
	}
	if g.Initrd != "" {
		args = append(args, "-initrd", g.Initrd)
	}
	args = append(args, "-append", g.Cmdline)
	args = append(args, q.Extra...)
	return ShellJoin(args)
}

// Files implements VMM.
func (QEMU) Files(L2) map[string]File { return nil }

// Needs implements VMM.
func (QEMU) Needs(sc *Scenario) { sc.WithQEMU = true }

// Paddock is paddock itself: `paddock run -f` with a VM description the
// harness writes to /guest/NAME.yaml.
type Paddock struct {
	// Extra is appended to the VM description (YAML lines).
	Extra string
}

// Name implements VMM.
func (Paddock) Name() string { return "paddock" }

// YAMLPath is where the VM description of g goes in L1.
func (Paddock) YAMLPath(g L2) string { return "/guest/" + g.Name + ".yaml" }

// Command implements VMM.
func (p Paddock) Command(g L2) string {
	return ShellJoin([]string{"paddock", "run", "-f", p.YAMLPath(g)})
}

// Files implements VMM: the VM description (configs' schema).
func (p Paddock) Files(g L2) map[string]File {
	g = g.withDefaults()
	y := fmt.Sprintf("name: %s\ncpus: %d\nmemory: %dMiB\nkernel: %s\n", g.Name, g.CPUs, g.MemoryMiB, g.Kernel)
	if g.Initrd != "" {
		y += "initrd: " + g.Initrd + "\n"
	}
	y += "cmdline: " + strconv.Quote(g.Cmdline) + "\nconsole: stdio\n" + p.Extra
	return map[string]File{p.YAMLPath(g): {Data: []byte(y)}}
}

// Needs implements VMM.
func (Paddock) Needs(sc *Scenario) { sc.WithPaddock = true }

var vmmName = regexp.MustCompile(`^[a-z0-9-]+$`)

// BootStep returns the step that boots g with v: it prints
// "@@LAB vmm.exec VMM GUEST" just before exec'ing the VMM, so that
// StepResult.Between("vmm.exec", "l2.init") is the VMM's boot-to-/init
// time in L1 wall time. The step is named "VMM/GUEST".
func BootStep(v VMM, g L2, timeout time.Duration) Step {
	return Step{
		Name:    v.Name() + "/" + g.Name,
		Timeout: timeout,
		Script: fmt.Sprintf("echo \"@@LAB vmm.exec %s %s $(cut -d' ' -f1 /proc/uptime)\"\nexec %s\n",
			v.Name(), g.Name, v.Command(g)),
	}
}

// BootScenario returns a scenario that boots every guest with every VMM,
// in sequence within one L1 boot (VMM-major order), so that their times
// compare within the same run. Add more steps or files as needed.
func BootScenario(vmms []VMM, guests []L2, stepTimeout time.Duration) (Scenario, error) {
	sc := Scenario{Files: map[string]File{}}
	for _, v := range vmms {
		if !vmmName.MatchString(v.Name()) {
			return Scenario{}, fmt.Errorf("lab: VMM name %q: want [a-z0-9-]+", v.Name())
		}
		v.Needs(&sc)
		for _, g := range guests {
			if !vmmName.MatchString(g.Name) {
				return Scenario{}, fmt.Errorf("lab: guest name %q: want [a-z0-9-]+", g.Name)
			}
			if g.Kernel == GuestVmlinux {
				sc.WithVmlinux = true
			}
			sc.Steps = append(sc.Steps, BootStep(v, g, stepTimeout))
			for p, f := range v.Files(g) {
				sc.Files[p] = f
			}
		}
	}
	return sc, nil
}

// ShellJoin quotes words for sh and joins them.
func ShellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=,+:") == "" {
			q[i] = w
		} else {
			q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
