// Package guest manages paddock's VMs: it turns a validated VM spec into a
// running VM on a hypervisor backend and follows it through its life.
package guest

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/hypervisor/machine"
)

// Outcome is how a foreground run ended.
type Outcome int

const (
	// PoweredOff: the guest shut itself down.
	PoweredOff Outcome = iota
	// Rebooted: the guest rebooted and the spec says on_reboot: exit.
	Rebooted
	// Crashed: the guest or the VMM failed fatally.
	Crashed
	// Stopped: the host stopped the VM (context cancelled).
	Stopped
)

func (o Outcome) String() string {
	switch o {
	case PoweredOff:
		return "powered off"
	case Rebooted:
		return "rebooted"
	case Crashed:
		return "crashed"
	case Stopped:
		return "stopped"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Result describes the end of a foreground run.
type Result struct {
	Outcome Outcome
	Detail  string // crash report or triple-fault registers, if any
	Boots   int    // how many times the guest was started (restarts + 1)
}

// RunOptions wires a foreground VM to its surroundings.
type RunOptions struct {
	// Console receives the guest's serial console (besides the spec's
	// console log file). Nil: the console is not shown.
	Console io.Writer
	// Input is typed into the guest's console. Nil: no input. It is read
	// by one goroutine for the whole run, across restarts.
	Input io.Reader
	// KVMPath overrides /dev/kvm (tests).
	KVMPath string
	// OnBoot, if set, is called each time a machine has been built and is
	// about to start (restart count starts at 0).
	OnBoot func(boot int, entry string)
}

// Run boots vm on the native backend in the foreground and blocks until it
// powers off, crashes, reboots (restarting it when the spec asks for that)
// or ctx is cancelled. Precondition: vm has been through FillDefaults and
// Validate.
func Run(ctx context.Context, vm *configs.VM, opts RunOptions) (Result, error) {
	if vm.Backend != configs.BackendNative {
		return Result{}, fmt.Errorf("backend %q: foreground runs use the native backend", vm.Backend)
	}
	console, closeLog, err := consoleWriter(vm, opts.Console)
	if err != nil {
		return Result{}, err
	}
	defer closeLog()

	var hub *inputHub
	if opts.Input != nil {
		hub = newInputHub(opts.Input)
	}
	res := Result{}
	for {
		res.Boots++
		exit, err := runOnce(ctx, vm, opts, console, hub, res.Boots-1)
		if err != nil {
			return res, err
		}
		switch exit.Reason {
		case machine.ExitPowerOff:
			res.Outcome = PoweredOff
			return res, nil
		case machine.ExitStopped:
			res.Outcome = Stopped
			return res, nil
		case machine.ExitCrash:
			res.Outcome, res.Detail = Crashed, exit.Detail
			return res, nil
		case machine.ExitReset:
			res.Detail = exit.Detail
			if vm.OnReboot != configs.RebootRestart {
				res.Outcome = Rebooted
				return res, nil
			}
		}
	}
}

// runOnce builds one machine and runs it to its end.
func runOnce(ctx context.Context, vm *configs.VM, opts RunOptions, console io.Writer, hub *inputHub, boot int) (machine.Exit, error) {
	stop := make(chan struct{})
	defer close(stop)
	var input io.Reader
	if hub != nil {
		input = hub.reader(stop)
	}
	m, err := machine.New(machine.Config{
		CPUs:         vm.CPUs,
		Memory:       uint64(vm.Memory),
		Kernel:       vm.Kernel,
		Initrd:       vm.Initrd,
		Cmdline:      vm.Cmdline,
		Console:      console,
		ConsoleInput: input,
		KVMPath:      opts.KVMPath,
	})
	if err != nil {
		return machine.Exit{}, fmt.Errorf("VM %s: %w", vm.Name, err)
	}
	defer m.Close()
	if opts.OnBoot != nil {
		opts.OnBoot(boot, m.Entry().Protocol.String())
	}
	return m.Run(ctx)
}

// consoleWriter combines the caller's console with the spec's console
// settings: mode none/log hides it from the caller, a log file gets a copy.
func consoleWriter(vm *configs.VM, shown io.Writer) (io.Writer, func(), error) {
	var ws []io.Writer
	if shown != nil && vm.Console.Mode == configs.ConsoleStdio {
		ws = append(ws, shown)
	}
	closeLog := func() {}
	if vm.Console.Log != "" {
		f, err := os.OpenFile(vm.Console.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("console log: %w", err)
		}
		ws = append(ws, f)
		closeLog = func() { f.Close() }
	}
	switch len(ws) {
	case 0:
		return io.Discard, closeLog, nil
	case 1:
		return ws[0], closeLog, nil
	}
	return io.MultiWriter(ws...), closeLog, nil
}

// inputHub reads the user's input with one goroutine for the whole run and
// hands it to whichever machine is current, so a restart does not leave a
// reader behind that swallows keystrokes.
type inputHub struct {
	ch chan []byte
}

func newInputHub(r io.Reader) *inputHub {
	h := &inputHub{ch: make(chan []byte)}
	go func() {
		// The goroutine ends with the input (EOF or error); a blocking
		// terminal read cannot be interrupted, so it is not tied to
		// the run's lifetime.
		defer close(h.ch)
		for {
			buf := make([]byte, 4096)
			n, err := r.Read(buf)
			if n > 0 {
				h.ch <- buf[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	return h
}

// reader returns a reader of the hub's input that ends (EOF) when stop is
// closed.
func (h *inputHub) reader(stop <-chan struct{}) io.Reader {
	return &hubReader{h: h, stop: stop}
}

type hubReader struct {
	h    *inputHub
	stop <-chan struct{}
	rest []byte
}

func (r *hubReader) Read(p []byte) (int, error) {
	if len(r.rest) == 0 {
		select {
		case b, ok := <-r.h.ch:
			if !ok {
				return 0, io.EOF
			}
			r.rest = b
		case <-r.stop:
			return 0, io.EOF
		}
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}
