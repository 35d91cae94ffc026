package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/machine"
)

// envAllowEmulated set to a true value (1, true) starts Linux kernels on a
// host whose KVM emulates guest kernel code, as --allow-emulated does.
const envAllowEmulated = "PADDOCK_ALLOW_EMULATED"

// hostFacts is what commands check a VM against: the host's RAM and
// KVM, probed once per command.
func hostFacts(cmd *cobra.Command) configs.Host {
	host, err := configs.HostFacts()
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "paddock: warning: %v; host memory not checked\n", err)
	}
	r := guest.HostReport()
	host.MaxVCPUs = r.MaxVCPUs
	host.EmulatedKVM = r.Usable && r.Acceleration == machine.AccelEmulated
	host.Templates = &lazyTemplates{}
	host.Tenants = lazyTenants{}
	return host
}

// readSpec reads the VM file (- for standard input), renames the VM to
// name if set, fills the defaults and validates it against host. Every
// problem of the file comes back at once, joined (configs.Problems); the
// VM is nil if it has any.
func readSpec(cmd *cobra.Command, file, name string, host configs.Host) (*configs.VM, error) {
	if file == "" {
		return nil, usageError("-f needs a file name (or - for standard input)")
	}
	if name != "" && !store.ValidName(name) {
		return nil, usageError("--name %q: a VM name is a DNS label (1 to 63 lowercase letters, digits and '-', not starting or ending with '-')", name)
	}
	var vm *configs.VM
	var err error
	if file == "-" {
		vm, err = configs.Read(cmd.InOrStdin(), "<stdin>")
	} else {
		vm, err = configs.Load(file)
	}
	if vm == nil {
		return nil, err
	}
	if name != "" {
		vm.Name = name
	}
	vm.FillDefaults()
	if err := vm.Validate(host); err != nil {
		return nil, err
	}
	return vm, nil
}

// hostFlag adds --host, for the commands that create VMs.
func hostFlag(cmd *cobra.Command, host *string) {
	cmd.Flags().StringVar(host, "host", "", "the libvirt host of a backend: libvirt VM (a name from paddock host ls, or auto: the most free memory); overrides libvirt.host and libvirt.uri")
}

// applyHost puts a libvirt VM on the host --host names (none: as its
// file says).
func applyHost(vm *configs.VM, host string) error {
	if host == "" {
		return nil
	}
	if vm.Backend != configs.BackendLibvirt {
		return usageError("--host %s: only a libvirt VM (backend: libvirt) has a host; %s runs on the %s backend", host, vm.Name, vm.Backend)
	}
	vm.Libvirt.Host, vm.Libvirt.URI = host, ""
	if err := vm.ValidateStructure(); err != nil {
		return usageError("--host %s: %v", host, err)
	}
	return nil
}

// started says where a VM that started runs.
func started(info *guest.Info) string {
	if info.Backend == string(configs.BackendLibvirt) {
		return fmt.Sprintf("started (libvirt host %s)", info.Host)
	}
	return fmt.Sprintf("started (VMM pid %d)", info.PID)
}

// allowEmulatedFlag adds --allow-emulated, for the commands that start a
// VM.
func allowEmulatedFlag(cmd *cobra.Command, allow *bool) {
	cmd.Flags().BoolVar(allow, "allow-emulated", false, "start a Linux kernel even though this host's KVM emulates guest kernel code and cannot boot one (also "+envAllowEmulated+"=1)")
}

// allowEmulated reports whether the flag or the environment allows
// starting a Linux kernel on an emulating KVM.
func allowEmulated(flag bool) bool {
	env, _ := strconv.ParseBool(os.Getenv(envAllowEmulated))
	return flag || env
}

// wayOut is what a refused user can do, appended to CheckBootable's
// problem.
const wayOut = "use a host with VT-x/AMD-V or nested virtualization, or paddock's nested KVM lab (make demo); --allow-emulated (" + envAllowEmulated + "=1) starts it anyway"

// checkBootable refuses to start vm on a host whose KVM cannot boot its
// kernel (configs.CheckBootable), saying why and what to do instead,
// unless allow; then it only warns on standard error.
func checkBootable(cmd *cobra.Command, vm *configs.VM, host configs.Host, allow bool) error {
	err := vm.CheckBootable(host)
	if err == nil {
		return nil
	}
	if allow {
		fmt.Fprintf(cmd.ErrOrStderr(), "paddock: warning: %v; starting it anyway (--allow-emulated)\n", err)
		return nil
	}
	var ce *configs.Error
	if errors.As(err, &ce) {
		ce.Err = fmt.Errorf("%w; %s", ce.Err, wayOut)
		return ce
	}
	return err
}

// bootWarnings are the problems CheckBootable finds, for the commands
// that only check or store a VM (validate, create): the file is valid,
// but start and run will refuse it on this host.
func bootWarnings(vm *configs.VM, host configs.Host) []*configs.Error {
	return configs.Problems(vm.CheckBootable(host))
}

// hostWarnings adds to each VM's Info what keeps its spec from working on
// this host (CheckBootable: a Linux kernel on a KVM that emulates guest
// kernel code, started with --allow-emulated or created anyway), so that
// ls --json and inspect tell a program what the table's reader is told on
// standard error. Only an emulating host costs anything: the specs are
// read only there.
func hostWarnings(cmd *cobra.Command, m *guest.Manager, infos []*guest.Info) {
	r := guest.HostReport()
	if !r.Usable || r.Acceleration != machine.AccelEmulated {
		return
	}
	host := configs.Host{EmulatedKVM: true}
	for _, in := range infos {
		vm := in.Config
		if vm == nil {
			var err error
			if vm, err = m.Spec(in.Name); err != nil {
				continue // in.Problem says why
			}
		}
		if err := vm.CheckBootable(host); err != nil {
			in.Warnings = append(in.Warnings, err.Error())
		}
	}
}

// printWarnings prints warnings on standard error.
func printWarnings(cmd *cobra.Command, warnings []*configs.Error) {
	for _, w := range warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "paddock: warning: %v; paddock run, up and start refuse it here unless --allow-emulated\n", w)
	}
}
