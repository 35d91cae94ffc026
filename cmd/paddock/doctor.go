package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/guest/jail"
	lv "github.com/paddock-vm/paddock/guest/libvirt"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/machine"
)

// Exit statuses of `paddock doctor`.
const (
	doctorReady    = 0 // KVM usable with hardware virtualization
	doctorUnusable = 1 // no usable KVM
	doctorEmulated = 3 // KVM usable but emulation-only: no stock kernels
)

func newDoctorCommand() *cobra.Command {
	var quiet, asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor [--json | --quiet]",
		Short: "Check whether this host can run paddock VMs, and how",
		Long: `Check /dev/kvm access, the KVM API version and the capabilities paddock
needs, and whether the CPU offers hardware virtualization or KVM only
emulates guest kernel code (as in some cloud VMs), which cannot boot a
stock Linux kernel.

It also asks the libvirt host local (qemu:///system unless paddock host
add says otherwise) how it would run libvirt VMs (backend: libvirt): kvm,
or qemu (TCG emulation) and why, and says what libvirt VMs cannot do that
native ones can. That part does not change the exit status.

Last it says which isolation layers VMMs get on this host (the jail:
root, namespaces, cgroup limits, seccomp, no_new_privs; user namespaces,
which the jail does not use; tun, bridges and nftables for managed
networks), and why one is off. That part does not change the exit
status either: --json has it as isolation (jailed, complete, layers).

--json prints one object: status (ready, emulated or unusable), usable,
acceleration (hardware, emulated or unknown), max_vcpus, checks (each
with name, ok and detail), advice, and libvirt (host, uri, reachable,
problem, libvirt_version, qemu_version, domain_type, detail, limits),
and isolation (jailed, complete, layers: each with name, active and
detail).

Exit status: 0 ready (hardware virtualization), 1 KVM unusable,
3 KVM usable but emulation-only.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return doctorAction(cmd, quiet, asJSON)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing; only set the exit status")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	cmd.MarkFlagsMutuallyExclusive("quiet", "json")
	return cmd
}

// doctorReport is what `paddock doctor --json` prints.
type doctorReport struct {
	Status       string          `json:"status"` // ready, emulated or unusable
	Usable       bool            `json:"usable"`
	Acceleration string          `json:"acceleration"` // hardware, emulated or unknown
	MaxVCPUs     int             `json:"max_vcpus"`
	Checks       []doctorCheck   `json:"checks"`
	Advice       string          `json:"advice"`
	Libvirt      doctorLibvirt   `json:"libvirt"`
	Isolation    doctorIsolation `json:"isolation"`
}

// doctorIsolation is doctor's report of the isolation layers VMMs get
// on this host (guest.IsolationReport).
type doctorIsolation struct {
	// Jailed says VMMs started now run jailed; Complete that every
	// layer but user namespaces (which the jail does not use) is active.
	Jailed   bool         `json:"jailed"`
	Complete bool         `json:"complete"`
	Layers   []jail.Layer `json:"layers"`
}

// isolationReport makes doctor's isolation report.
func isolationReport() doctorIsolation {
	r := doctorIsolation{Layers: guest.IsolationReport(), Complete: true}
	for _, l := range r.Layers {
		switch {
		case l.Name == "jail":
			r.Jailed = l.Active
		case l.Name == "user_namespaces":
			continue
		}
		r.Complete = r.Complete && l.Active
	}
	return r
}

// doctorLibvirt is doctor's report of the libvirt host local.
type doctorLibvirt struct {
	Host      string `json:"host"`
	URI       string `json:"uri"`
	Reachable bool   `json:"reachable"`
	Problem   string `json:"problem,omitempty"`
	Libvirt   string `json:"libvirt_version,omitempty"`
	QEMU      string `json:"qemu_version,omitempty"`
	// DomainType is how libvirt VMs of type auto run there (kvm or
	// qemu), Detail the same in words.
	DomainType string `json:"domain_type,omitempty"`
	Detail     string `json:"detail"`
	// Limits are what libvirt VMs cannot do that native ones can.
	Limits []string `json:"limits"`
}

// libvirtLimits are what paddock promises native VMs and libvirt cannot
// do (docs/libvirt.md).
func libvirtLimits() []string {
	return []string{
		"no restart policy (libvirt boots no domain again by itself): restart: no only",
		"one console at a time (libvirt's console streams are exclusive)",
		"the console log is virtlogd's on the host (its size limits, not console.log_size and log_keep)",
		"snapshots are QEMU's internal ones (qcow2 disks only), and a restore reads all the saved memory first instead of lazily",
		"no paddock ssh or cp (paddock knows no address of a libvirt VM): ssh to the address the host's network gave it",
		"a template's base disk stays in a host's pool after its last VM is removed (virsh vol-delete removes it)",
	}
}

// doctorLibvirtReport asks the libvirt host local about itself.
func doctorLibvirtReport() doctorLibvirt {
	r := doctorLibvirt{Host: lv.LocalHost, URI: lv.LocalURI, Limits: libvirtLimits()}
	home, err := store.DefaultHome()
	if err == nil {
		var h lv.Host
		if h, err = lv.OpenHosts(home).Get(lv.LocalHost); err == nil {
			r.URI = h.URI
			var f lv.Facts
			if f, err = guest.HostFacts(h); err == nil {
				r.Reachable, r.Libvirt, r.QEMU = true, f.Libvirt, f.QEMU
				r.DomainType = f.DomainType()
				r.Detail = fmt.Sprintf("libvirt %s, QEMU %s: libvirt VMs run as %s", f.Libvirt, f.QEMU, f.Describe())
				return r
			}
		}
	}
	r.Problem = err.Error()
	r.Detail = "not reachable, so libvirt VMs (backend: libvirt) cannot run on local; paddock host add local URI points paddock at another libvirtd"
	return r
}

// doctorCheck is one line of the report.
type doctorCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Advice for each outcome, printed after the checks.
const (
	adviceUnusable = "paddock cannot run VMs on this host: fix the failures above."
	adviceEmulated = "This host's KVM works but cannot boot a stock Linux kernel: it has no " +
		"hardware virtualization and emulates guest kernel code. Tiny guest programs " +
		"run; full guests need a host with VT-x/AMD-V (or nested virtualization). " +
		"`make demo` runs the demo inside paddock's nested KVM lab instead."
	adviceReady = "Ready: this host can boot stock Linux guests with hardware virtualization."
)

func doctorAction(cmd *cobra.Command, quiet, asJSON bool) error {
	r := guest.HostReport()
	rep := doctorReport{Usable: r.Usable, Acceleration: r.Acceleration.String(), MaxVCPUs: r.MaxVCPUs, Checks: []doctorCheck{}}
	for _, c := range r.Checks {
		rep.Checks = append(rep.Checks, doctorCheck(c))
	}
	code := doctorReady
	switch {
	case !r.Usable:
		rep.Status, rep.Advice, code = "unusable", adviceUnusable, doctorUnusable
	case r.Acceleration != machine.AccelHardware:
		rep.Status, rep.Advice, code = "emulated", adviceEmulated, doctorEmulated
	default:
		rep.Status, rep.Advice = "ready", adviceReady
	}
	if !quiet {
		rep.Libvirt = doctorLibvirtReport()
		rep.Isolation = isolationReport()
	}
	out := cmd.OutOrStdout()
	switch {
	case asJSON:
		if err := writeJSON(out, rep); err != nil {
			return err
		}
	case !quiet:
		for _, c := range rep.Checks {
			mark := "ok  "
			if !c.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(out, "%s  %-14s %s\n", mark, c.Name, c.Detail)
		}
		fmt.Fprintf(out, "\n%s\n", wrap(rep.Advice, 76))
		l := rep.Libvirt
		fmt.Fprintf(out, "\nlibvirt host %s (%s): %s\n", l.Host, l.URI, l.Detail)
		if l.Problem != "" {
			fmt.Fprintf(out, "  %s\n", l.Problem)
		}
		fmt.Fprintf(out, "libvirt VMs differ from native ones:\n")
		for _, lim := range l.Limits {
			fmt.Fprintf(out, "  - %s\n", lim)
		}
		printIsolation(out, rep.Isolation)
	}
	if code != doctorReady {
		return &exitError{code: code}
	}
	return nil
}

// printIsolation prints doctor's isolation report: a summary, then a
// line per layer.
func printIsolation(out io.Writer, r doctorIsolation) {
	switch {
	case r.Complete:
		fmt.Fprintf(out, "\nisolation: VMMs run jailed, with every layer:\n")
	case r.Jailed:
		fmt.Fprintf(out, "\nisolation: VMMs run jailed, but not every layer is there:\n")
	default:
		fmt.Fprintf(out, "\nisolation: VMMs run unjailed:\n")
	}
	for _, l := range r.Layers {
		mark := "on "
		if !l.Active {
			mark = "off"
		}
		fmt.Fprintf(out, "  %s  %-16s %s\n", mark, l.Name, l.Detail)
	}
}

// wrap breaks text into lines of at most width columns, between words.
func wrap(text string, width int) string {
	var b strings.Builder
	col := 0
	for _, w := range strings.Fields(text) {
		switch {
		case col == 0:
		case col+1+len(w) > width:
			b.WriteByte('\n')
			col = 0
		default:
			b.WriteByte(' ')
			col++
		}
		b.WriteString(w)
		col += len(w)
	}
	return b.String()
}
