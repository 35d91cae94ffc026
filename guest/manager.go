package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/api"
	lv "github.com/paddock-vm/paddock/guest/libvirt"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
)

// Timeouts of managed operations.
const (
	// DefaultStartTimeout bounds how long Start waits for the VMM to get
	// the guest running.
	DefaultStartTimeout = time.Minute
	// exitGrace is how long a command waits for a VMM to exit once it
	// reported the guest stopped, or after SIGKILL.
	exitGrace = 15 * time.Second
	// callTimeout bounds quick control calls (status, pause, kill).
	callTimeout = 15 * time.Second
)

// Options configure a Manager.
type Options struct {
	// Home is the state directory; empty means store.DefaultHome().
	Home string
	// VMMCommand is the command line that runs a VMM, to which Start
	// appends "--home HOME --ready-fd 3 NAME"; empty means this
	// executable's hidden `vmm` command.
	VMMCommand []string
	// StartTimeout bounds Start's wait for the VMM; zero means
	// DefaultStartTimeout.
	StartTimeout time.Duration
}

// Manager manages the VMs of one state directory. Every method may run
// concurrently with any other, in this process or another: per-VM locks
// and the VMMs' run locks keep them consistent. Each VM runs on the
// Backend its spec names.
type Manager struct {
	store   *store.Store
	opts    Options
	native  *native
	libvirt *libvirtBackend
}

// Open returns the manager of the state directory opts.Home.
func Open(opts Options) (*Manager, error) {
	if opts.Home == "" {
		h, err := store.DefaultHome()
		if err != nil {
			return nil, err
		}
		opts.Home = h
	}
	if len(opts.VMMCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("guest: find this executable to run VMMs: %w", err)
		}
		opts.VMMCommand = []string{exe, "vmm"}
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	s, err := store.Open(opts.Home)
	if err != nil {
		return nil, err
	}
	m := &Manager{store: s, opts: opts}
	m.native = &native{store: s, opts: &m.opts}
	m.libvirt = &libvirtBackend{store: s, hosts: lv.OpenHosts(s.Home())}
	return m, nil
}

// backend returns the Backend that runs the VM v.
func (m *Manager) backend(v *store.VM) Backend {
	if isLibvirt(v) {
		return m.libvirt
	}
	return m.native
}

// backendFor returns the Backend of a spec's backend field.
// Precondition: kind is valid (configs.Validate).
func (m *Manager) backendFor(kind configs.Backend) Backend {
	if kind == configs.BackendLibvirt {
		return m.libvirt
	}
	return m.native
}

// Hosts returns the libvirt hosts of the state directory.
func (m *Manager) Hosts() *lv.Hosts { return m.libvirt.hosts }

// Home returns the state directory.
func (m *Manager) Home() string { return m.store.Home() }

// Names returns the names of all VMs, sorted.
func (m *Manager) Names() ([]string, error) { return m.store.Names() }

// vm returns the named VM or a NotFoundError with a suggestion.
func (m *Manager) vm(name string) (*store.VM, error) {
	v, err := m.store.VM(name)
	if err == nil {
		return v, nil
	}
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrBadName) {
		names, _ := m.store.Names()
		return nil, &NotFoundError{Name: name, Suggestion: suggest(name, names)}
	}
	return nil, err
}

// lock takes the VM's mutation lock, with the errors users see.
func (m *Manager) lock(v *store.VM) (*store.Lock, error) {
	l, err := v.Lock()
	switch {
	case errors.Is(err, store.ErrBusy):
		return nil, &BusyError{Name: v.Name}
	case errors.Is(err, store.ErrNotFound):
		return nil, &NotFoundError{Name: v.Name}
	}
	return l, err
}

// Create adds vm to the store (its resolved spec becomes vm.yaml) and
// sets it up on its backend; source is the file it came from, for
// inspect. A VM with cloud_init gets paddock's SSH key and its key files'
// keys in its ssh_keys (vm is changed). Precondition: vm has been through
// FillDefaults and Validate.
func (m *Manager) Create(vm *configs.VM, source string) (*Info, error) {
	return m.CreateContext(context.Background(), vm, source)
}

// CreateContext is Create with a context, which bounds the backend's
// work (a libvirt host's uploads).
func (m *Manager) CreateContext(ctx context.Context, vm *configs.VM, source string) (*Info, error) {
	return m.create(ctx, vm, source, fromOptions{})
}

// create is CreateContext; fo says more about making a VM from a
// template (planFrom).
func (m *Manager) create(ctx context.Context, vm *configs.VM, source string, fo fromOptions) (*Info, error) {
	e, err := m.enter(vm, source, fo)
	if err != nil {
		return nil, err
	}
	defer e.release()
	if err := m.setUp(ctx, e.v, e.spec); err != nil {
		return nil, err
	}
	return m.info(e.v, false)
}

// entered is a VM in the store whose backend has not set it up yet
// (setUp).
type entered struct {
	v    *store.VM
	spec *configs.VM // resolved from its template, if it has one
	// release lets go of its template; after the set-up, which reads
	// the template's files.
	release func()
}

// enter puts the VM vm into the store: its tenant's quotas checked
// (unless fo.admitted), its template planned, its resolved spec and
// record written, its addresses reserved on its networks. The tenant's
// lock (when enter took it) is let go as soon as the VM is in the store,
// where other commands count it.
func (m *Manager) enter(vm *configs.VM, source string, fo fromOptions) (*entered, error) {
	if err := authorizePaddock(vm, m.Home()); err != nil {
		return nil, err
	}
	unlockTenant := func() {}
	if !fo.admitted {
		lk, err := m.admit([]*configs.VM{vm})
		if err != nil {
			return nil, fmt.Errorf("VM %s: %w", vm.Name, err)
		}
		unlockTenant = lk.Unlock
		defer lk.Unlock()
	}
	var opts store.CreateOptions
	release := func() {}
	ok := false
	defer func() {
		if !ok {
			release()
		}
	}()
	if vm.From != "" {
		from, err := m.planFrom(vm, fo)
		if err != nil {
			return nil, err
		}
		release = from.lock.Unlock
		vm, opts = from.spec, from.opts
	}
	spec, err := yaml.Marshal(vm)
	if err != nil {
		return nil, fmt.Errorf("guest: encode the spec of %s: %w", vm.Name, err)
	}
	if source != "" && source != "-" {
		if abs, err := filepath.Abs(source); err == nil {
			source = abs
		}
	}
	header := "# The resolved spec of VM " + vm.Name + ", written by paddock create"
	if source != "" {
		header += " from " + source
	}
	spec = append([]byte(header+".\n"), spec...)
	// The formats of the disks, detected now, before any guest wrote
	// them, are the ones they open in from now on (vmm.PinFormats).
	formats, err := vmm.DetectFormats(vm)
	if err != nil {
		return nil, fmt.Errorf("VM %s: %w", vm.Name, err)
	}
	rec := store.Record{CreatedAt: time.Now(), Source: source, Phase: store.PhaseCreated}
	opts.Formats = formats
	v, err := m.store.CreateVM(vm.Name, spec, rec, opts)
	// The VM counts in its tenant's usage now: other commands may check.
	unlockTenant()
	if errors.Is(err, store.ErrExists) {
		return nil, &ExistsError{Name: vm.Name}
	}
	if err != nil {
		return nil, err
	}
	if vm.Backend == configs.BackendNative {
		if err := m.reserveAddresses(vm); err != nil {
			return nil, errors.Join(fmt.Errorf("VM %s: %w", vm.Name, err), m.store.Remove(v))
		}
	}
	ok = true
	return &entered{v: v, spec: vm, release: release}, nil
}

// setUp has the backend of a VM that just entered the store set it up,
// and takes the VM out of the store (and its addresses) again if that
// fails.
func (m *Manager) setUp(ctx context.Context, v *store.VM, vm *configs.VM) error {
	l, err := m.lock(v)
	if err == nil {
		defer l.Unlock()
		err = m.backendFor(vm.Backend).Create(ctx, v, vm)
	}
	if err == nil {
		return nil
	}
	if rerr := m.store.Remove(v); rerr != nil {
		return errors.Join(err, rerr)
	}
	if vm.Backend == configs.BackendNative {
		if rerr := m.releaseAddresses(vm.Name); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	return err
}

// Spec returns the VM's stored spec, defaults filled.
func (m *Manager) Spec(name string) (*configs.VM, error) {
	v, err := m.vm(name)
	if err != nil {
		return nil, err
	}
	return loadSpec(v)
}

func loadSpec(v *store.VM) (*configs.VM, error) {
	vm, err := configs.Load(v.Path(store.SpecFile))
	if err != nil {
		return nil, err
	}
	vm.FillDefaults()
	return vm, nil
}

// Start boots the VM on its backend and returns once the guest runs (or
// the start failed: a *StartError, the VM keeping its state).
func (m *Manager) Start(ctx context.Context, name string) (*Info, error) {
	v, err := m.vm(name)
	if err != nil {
		return nil, err
	}
	l, err := m.lock(v)
	if err != nil {
		return nil, err
	}
	defer l.Unlock()
	if err := m.checkStart(v); err != nil {
		return nil, err
	}
	if err := m.backend(v).Start(ctx, v); err != nil {
		return nil, err
	}
	return m.info(v, false)
}

// Pause stops the VM's vCPUs.
func (m *Manager) Pause(ctx context.Context, name string) (api.Status, error) {
	return m.call(ctx, name, Backend.Pause)
}

// Resume lets a paused VM run again.
func (m *Manager) Resume(ctx context.Context, name string) (api.Status, error) {
	return m.call(ctx, name, Backend.Resume)
}

// Status asks a running VM's backend for its live status.
func (m *Manager) Status(ctx context.Context, name string) (api.Status, error) {
	return m.call(ctx, name, Backend.Status)
}

// call runs a backend method that needs no lock on the named VM.
func (m *Manager) call(ctx context.Context, name string, f func(Backend, context.Context, *store.VM) (api.Status, error)) (api.Status, error) {
	v, err := m.vm(name)
	if err != nil {
		return api.Status{}, err
	}
	return f(m.backend(v), ctx, v)
}

// Stop presses the VM's ACPI power button, waits up to timeout for the
// guest to power off, then forces it off; it returns once the VM has
// stopped (for the native backend: once the VMM has exited).
func (m *Manager) Stop(ctx context.Context, name string, timeout time.Duration) (api.StopResult, error) {
	v, err := m.vm(name)
	if err != nil {
		return api.StopResult{}, err
	}
	l, err := m.lock(v)
	if err != nil {
		return api.StopResult{}, err
	}
	defer l.Unlock()
	return m.backend(v).Stop(ctx, v, timeout)
}

// Kill stops the VM at once. A native VM's VMM that does not answer is
// killed with SIGKILL. It returns once the VM has stopped.
func (m *Manager) Kill(ctx context.Context, name string) (api.StopResult, error) {
	v, err := m.vm(name)
	if err != nil {
		return api.StopResult{}, err
	}
	return m.backend(v).Kill(ctx, v)
}

// Remove deletes the VM and everything paddock created for it. A VM that
// runs is refused unless force, which kills it first.
func (m *Manager) Remove(ctx context.Context, name string, force bool) error {
	v, err := m.vm(name)
	if err != nil {
		return err
	}
	l, err := m.lock(v)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := m.backend(v).Remove(ctx, v, force); err != nil {
		return err
	}
	if err := m.store.Remove(v); err != nil {
		return err
	}
	return m.releaseAddresses(name)
}

// Attach connects to the VM's console: reads are guest output, writes are
// keystrokes, Close detaches (the VM keeps running). tail > 0 replays the
// last tail lines first.
func (m *Manager) Attach(ctx context.Context, name string, tail int) (net.Conn, error) {
	v, err := m.vm(name)
	if err != nil {
		return nil, err
	}
	return m.backend(v).Attach(ctx, v, tail)
}

// LogOptions select what Logs returns.
type LogOptions struct {
	// Follow streams live output after the history, until the VM stops;
	// the history is then what the VMM remembers (its last MiB).
	Follow bool
	// Tail keeps only the last Tail lines of the history; 0 keeps all.
	Tail int
}

// Logs returns the VM's console output: for a native VM, console.log
// (with the rotated console.log.1) or, when following a running VM, the
// VMM's stream.
func (m *Manager) Logs(ctx context.Context, name string, o LogOptions) (io.ReadCloser, error) {
	v, err := m.vm(name)
	if err != nil {
		return nil, err
	}
	return m.backend(v).Logs(ctx, v, o)
}
