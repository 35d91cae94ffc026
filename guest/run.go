// Package guest manages paddock's VMs: it turns a validated VM spec into a
// running VM on a hypervisor backend and follows it through its life.
//
// Managed VMs (Manager) live in a state directory (guest/store), each run
// by its own detached VMM process (guest/vmm, started by Start) that
// serves a control API (guest/api) the other commands use. Run boots a VM
// in the foreground instead, with the same boot loop.
package guest

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/google/uuid"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/console"
	"github.com/paddock-vm/paddock/guest/vmm"
	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/hypervisor/machine"
)

// Result describes the end of a foreground run.
type Result struct {
	// Reason is exit.PowerOff, exit.Reboot (on_reboot: exit), exit.Crash,
	// or exit.Stop when ctx was cancelled.
	Reason exit.Reason
	Detail string // crash report or triple-fault registers, if any
	Boots  int    // how many times the guest was started (restarts + 1)
}

// RunOptions wires a foreground VM to its surroundings.
type RunOptions struct {
	// Console receives the guest's serial console (besides the spec's
	// console log file). Nil: the console is not shown.
	Console io.Writer
	// Input is typed into the guest's console. Nil: no input. It is read
	// by one goroutine for the whole run, across restarts (console.Input).
	Input io.Reader
	// KVMPath overrides /dev/kvm (tests).
	KVMPath string
	// OnBoot, if set, is called each time a machine has been built and is
	// about to start (restart count starts at 0).
	OnBoot func(boot int, entry string)
	// Debug, if set, asks for a dump of the machine's device state (rings,
	// interrupts) to DebugOutput each time it delivers a signal; for
	// diagnosing a stalled guest (paddock run passes its SIGUSR1s).
	Debug       <-chan os.Signal
	DebugOutput io.Writer
	// Home is the state directory of the managed networks the VM's NICs
	// join; empty means store.DefaultHome().
	Home string
}

// Run boots vm on the native backend in the foreground and blocks until it
// powers off, crashes, reboots (booting it again when on_reboot or the
// restart policy say so) or ctx is cancelled. It runs the same boot loop
// as a managed VM's VMM (vmm.Session). Precondition: vm has been through
// FillDefaults and Validate.
func Run(ctx context.Context, vm *configs.VM, opts RunOptions) (Result, error) {
	if vm.Backend != configs.BackendNative {
		return Result{}, fmt.Errorf("backend %q: foreground runs use the native backend", vm.Backend)
	}
	if vm.From != "" {
		return Result{}, fmt.Errorf("VM %s: from: %s: paddock run boots a kernel and disks you name; a VM made from a template needs a disk of its own on the template's: make it with paddock up -f FILE", vm.Name, vm.From)
	}
	out, closeLogs, err := consoleWriter(vm, opts.Console)
	if err != nil {
		return Result{}, err
	}
	defer closeLogs()

	var input *console.Input
	if opts.Input != nil {
		input = console.NewInput()
		defer input.Close()
		input.Feed(opts.Input)
	}
	id := RunUUID(vm.Name)
	seed := ""
	if vm.CloudInit {
		if seed, err = tempSeed(vm, id); err != nil {
			return Result{}, err
		}
		defer os.Remove(seed)
	}
	nics, nets, err := attachNetworks(vm, opts)
	if err != nil {
		return Result{}, fmt.Errorf("VM %s: %w", vm.Name, err)
	}
	// Opened once: every boot of the run (after a guest reboot, a
	// restart) is built on the same handles.
	h, err := vmm.OpenHandles(vm, vmm.OpenOptions{KVMPath: opts.KVMPath, Seed: seed, NICs: nics, Network: nets})
	if err != nil {
		return Result{}, fmt.Errorf("VM %s: %w", vm.Name, err)
	}
	defer h.Close()
	o := vmm.Options{Handles: h, Console: out, Input: input, UUID: id}
	if opts.OnBoot != nil {
		o.OnBoot = func(boot int, m *machine.Machine) { opts.OnBoot(boot, m.Entry().Protocol.String()) }
	}
	sess := vmm.NewSession(vm, o)
	if err := sess.Boot(); err != nil {
		return Result{}, fmt.Errorf("VM %s: %w", vm.Name, err)
	}
	if opts.Debug != nil && opts.DebugOutput != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			for {
				select {
				case <-opts.Debug:
					if !sess.WriteDebug(opts.DebugOutput) {
						fmt.Fprintf(opts.DebugOutput, "VM %s: no machine is running\n", vm.Name)
					}
				case <-done:
					return
				}
			}
		}()
	}
	r := sess.Run(ctx)
	return Result{Reason: r.Reason, Detail: r.Detail, Boots: r.Boots}, nil
}

// tempSeed writes the seed volume of a foreground run to a temporary file
// (which the caller removes) and returns its path.
func tempSeed(vm *configs.VM, id uuid.UUID) (string, error) {
	img, err := seedImage(vm, id)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "paddock-seed-*.iso")
	if err != nil {
		return "", fmt.Errorf("VM %s: cloud-init seed: %w", vm.Name, err)
	}
	if _, err := f.Write(img); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", fmt.Errorf("VM %s: cloud-init seed: %w", vm.Name, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("VM %s: cloud-init seed: %w", vm.Name, err)
	}
	return f.Name(), nil
}

// runNamespace is the name space of the UUIDs of foreground runs.
var runNamespace = uuid.MustParse("2b6b7a4e-5c1d-4f0e-9d3a-6a1f0c9e8b57")

// RunUUID is the system UUID of a VM run in the foreground (Run): derived
// from its name (a version 5 UUID), so every run of the same name has the
// same one, as a foreground VM has no state directory to keep a random
// one in. A managed VM has a random one of its own (store.Identity).
func RunUUID(name string) uuid.UUID {
	return uuid.NewSHA1(runNamespace, []byte(name))
}

// consoleWriter combines the caller's console with the spec's console
// settings: mode none/log hides it from the caller, a log file gets a
// copy (bounded and never holding the guest up, as a managed VM's).
func consoleWriter(vm *configs.VM, shown io.Writer) (io.Writer, func(), error) {
	var ws []io.Writer
	if shown != nil && vm.Console.Mode == configs.ConsoleStdio {
		ws = append(ws, shown)
	}
	logs, closeLogs, err := vmm.OpenConsoleLogs(vm, "", nil, nil)
	if err != nil {
		return nil, nil, err
	}
	ws = append(ws, logs...)
	switch len(ws) {
	case 0:
		return io.Discard, closeLogs, nil
	case 1:
		return ws[0], closeLogs, nil
	}
	return io.MultiWriter(ws...), closeLogs, nil
}
