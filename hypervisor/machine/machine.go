// Package machine is paddock's native VMM: it turns a VM description into
// a KVM virtual machine — guest memory, vCPUs with a sane CPUID, the
// in-kernel interrupt controllers, the PC platform devices and a loaded
// Linux kernel — and runs it until the guest powers off, resets or
// crashes. One Machine is one VM; it is not reusable after Run returns.
//
// Making a machine has two steps: Build creates the hardware Config
// describes and writes nothing into guest memory; Boot loads a kernel
// into it and points the boot vCPU at it. New does both. A machine
// restored from a snapshot is built the same way and gets its saved
// state instead of Boot.
//
// A machine opens nothing by path. It is given handles its caller opened:
// the KVM device, the kernel and initrd files, the disk images with their
// locks, the taps. It uses them and leaves them open when it is closed, so
// the next machine of the same VM (after a guest reboot) is built on the
// very same handles, and a VMM that was handed them as descriptors needs
// no right to open anything (docs/architecture.md).
package machine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/paddock-vm/paddock/hypervisor/boot"
	"github.com/paddock-vm/paddock/hypervisor/devices/vmgenid"
	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// Config describes the machine's hardware: everything Build needs, and
// so everything a restore needs to build the same machine again.
type Config struct {
	CPUs   int
	Memory uint64 // bytes; at least MinMemory

	// Console receives everything the guest writes to its first serial
	// port. Nil discards it.
	Console io.Writer
	// ConsoleInput, if set, is fed to the first serial port as the guest
	// reads it. The machine reads it from its own goroutine until it
	// returns an error (close it to end the feed).
	ConsoleInput io.Reader

	// KVM is the KVM device (kvm.Open or kvm.NewSystem); required. The
	// machine creates its VM on it and leaves it open.
	KVM *kvm.System
	// VM, if set, is a VM already created on KVM (kvm.VMAhead), which
	// the machine takes over instead of creating its own: it is closed
	// with the machine, or at once if building fails.
	VM *kvm.VM

	// UUID is the system UUID the guest reads from the SMBIOS tables
	// (/sys/class/dmi/id/product_uuid), in RFC 4122 byte order. All
	// zero: the tables say the system has none.
	UUID [16]byte

	// GenerationID is the VM generation ID the guest reads
	// (hypervisor/devices/vmgenid); all zero picks a random one when
	// the machine is built. A machine restored from a snapshot shows the
	// guest this ID, not the saved one, and notifies it once Run starts:
	// every restore is a new generation.
	GenerationID vmgenid.ID

	// Disks, NICs and RNG are the virtio devices (virtio.go), on PCI
	// bus 0 in that order.
	Disks []Disk
	NICs  []NIC
	RNG   bool
	// Logf receives what devices report: host I/O errors, mistakes of
	// the guest's drivers. Nil writes to standard error.
	Logf func(format string, args ...any)
}

// BootConfig is what Boot loads into a built machine: open files
// (boot.OpenKernel, boot.OpenInitrd), which Boot reads and leaves open.
type BootConfig struct {
	Kernel  *os.File // bzImage or ELF vmlinux with a PVH note; required
	Initrd  *os.File // optional
	Cmdline string
}

// Exit is how and why a machine stopped.
type Exit struct {
	// Reason is exit.PowerOff, exit.Reboot or exit.Crash for the
	// guest's own ends, exit.Stop when Run's context was cancelled.
	Reason exit.Reason
	Detail string // for crashes and triple faults: what happened, registers
}

// Machine is one running (or runnable) VM.
type Machine struct {
	cfg   Config
	sys   *kvm.System
	vm    *kvm.VM
	mem   *Memory
	vcpus []*vcpu
	ports *portBus
	mmio  *mmioBus
	plat  *platform
	entry *boot.Entry
	// virtio holds the virtio devices; nil without any.
	virtio *virtioDevices

	// state is a runState; vCPU threads read it at every exit.
	state atomic.Int32

	// ctl guards the pause/stop handshake with the vCPU threads.
	ctl     sync.Mutex
	cond    *sync.Cond
	parked  int // vCPUs waiting in checkpoint
	running int // vCPU goroutines still alive

	// restoring is what Restore builds the machine from; nil for a
	// machine that boots. Only used while the machine is built.
	restoring *restoring
	// clock is the kvmclock value Run sets before the vCPUs start, on a
	// restored machine; restoredClock says it is set.
	clock         uint64
	restoredClock bool

	// bootTried is set by Boot; ready once the vCPUs have a state to
	// run from (Boot succeeded). Not synchronised: the caller orders
	// Boot before Run.
	bootTried bool
	ready     bool

	exitOnce sync.Once
	exitCh   chan Exit
	started  atomic.Bool
	// schedWarned is set once a thread-scheduling problem was reported.
	schedWarned atomic.Bool
	closed      bool
}

// New builds the machine cfg describes and boots it: Build, then Boot.
// The vCPUs do not run until Run. On error everything created so far is
// released.
func New(cfg Config, b BootConfig) (*Machine, error) {
	m, err := Build(cfg)
	if err != nil {
		return nil, err
	}
	if err := m.Boot(b); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Build creates the machine cfg describes: guest memory, the in-kernel
// interrupt controllers and PIT, the platform and virtio devices, and the
// vCPUs with their CPUID, MSRs and LAPIC wiring. It writes nothing into
// guest memory and leaves every vCPU's registers at their reset state, so
// the machine can be booted (Boot) or given a saved state. On error
// everything created so far is released.
func Build(cfg Config) (*Machine, error) {
	return build(cfg, nil)
}

// build is Build; with r it builds the machine a snapshot describes
// (Restore): guest RAM is mapped from the memory file, disks are
// reverted to their snapshot before their devices are made, and each
// vCPU gets its saved CPUID table instead of one derived from the host.
// Everything r says is checked against the host before anything is
// changed on disk.
func build(cfg Config, r *restoring) (_ *Machine, err error) {
	if cfg.VM != nil {
		defer func() {
			if err != nil && cfg.VM != nil {
				cfg.VM.Close() // refused before the machine took it over
			}
		}()
	}
	if cfg.CPUs < 1 {
		return nil, fmt.Errorf("machine: %d vCPUs: need at least 1", cfg.CPUs)
	}
	if cfg.Memory < MinMemory {
		return nil, fmt.Errorf("machine: memory %d MiB is below the minimum of %d MiB", cfg.Memory>>20, MinMemory>>20)
	}
	if cfg.KVM == nil || cfg.KVM.Fd() < 0 {
		return nil, errors.New("machine: no open KVM device (Config.KVM)")
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	vm := cfg.VM
	cfg.VM = nil // the machine's from now: m.Close closes it
	m := &Machine{cfg: cfg, vm: vm, ports: newPortBus(), mmio: &mmioBus{}, exitCh: make(chan Exit, 1), restoring: r}
	m.cond = sync.NewCond(&m.ctl)
	built := false
	defer func() {
		if !built {
			if r != nil && m.mem == nil {
				r.memory.Close() // the memory never took it over
			}
			m.Close()
		}
	}()
	m.sys = cfg.KVM
	if err := m.checkHost(); err != nil {
		return nil, err
	}
	if r != nil {
		if err := r.checkHost(m.sys); err != nil {
			return nil, err
		}
	}
	if m.vm == nil {
		if m.vm, err = m.sys.CreateVM(); err != nil {
			return nil, fmt.Errorf("machine: create VM: %w", err)
		}
	}
	if err := m.setupMemory(); err != nil {
		return nil, err
	}
	if err := m.setupInterrupts(); err != nil {
		return nil, err
	}
	if m.plat, err = newPlatform(m); err != nil {
		return nil, err
	}
	if err := m.setupVirtio(); err != nil {
		return nil, err
	}
	if err := m.createVCPUs(); err != nil {
		return nil, err
	}
	built = true
	return m, nil
}

// Boot writes the ACPI and SMBIOS tables, the kernel, initrd and command
// line and the boot structures into guest memory, and puts the boot vCPU
// at the kernel's entry point. It is called once, on a built machine, before
// Run. On error the machine cannot run; Close it.
func (m *Machine) Boot(b BootConfig) error {
	if m.started.Load() {
		return errors.New("machine: Boot after Run")
	}
	if m.bootTried {
		return errors.New("machine: Boot called twice")
	}
	m.bootTried = true
	if b.Kernel == nil {
		return errors.New("machine: no open kernel file (BootConfig.Kernel)")
	}
	e820, err := e820Map(m.cfg.Memory)
	if err != nil {
		return fmt.Errorf("machine: %w", err)
	}
	rsdp, err := m.plat.writeACPI(m.mem)
	if err != nil {
		return fmt.Errorf("machine: ACPI tables: %w", err)
	}
	if err := m.plat.genID.Write(); err != nil {
		return fmt.Errorf("machine: %w", err)
	}
	if err := writeSMBIOS(m.mem, m.cfg); err != nil {
		return fmt.Errorf("machine: SMBIOS tables: %w", err)
	}
	entry, err := boot.Load(m.mem, boot.Config{
		Kernel:  b.Kernel,
		Initrd:  b.Initrd,
		Cmdline: b.Cmdline,
		E820:    e820,
		RSDP:    rsdp,
	})
	if err != nil {
		return err
	}
	if err := setBootRegisters(m.vcpus[0].k, entry); err != nil {
		return fmt.Errorf("machine: vCPU 0: %w", err)
	}
	m.entry = entry
	m.ready = true
	return nil
}

// checkHost verifies the capabilities the machine depends on, so a host
// without them fails with one clear message instead of a stray EINVAL.
func (m *Machine) checkHost() error {
	for _, c := range requiredCaps {
		v, err := m.sys.CheckExtension(c)
		if err != nil {
			return fmt.Errorf("machine: check KVM capability %v: %w", c, err)
		}
		if v == 0 {
			return fmt.Errorf("machine: this host's KVM lacks %v, which paddock needs", c)
		}
	}
	maxCPUs, err := m.sys.CheckExtension(kvm.CapMaxVCPUs)
	if err == nil && maxCPUs == 0 {
		maxCPUs, err = m.sys.CheckExtension(kvm.CapNrVCPUs)
	}
	if err == nil && maxCPUs > 0 && m.cfg.CPUs > maxCPUs {
		return fmt.Errorf("machine: %d vCPUs requested, this host's KVM allows at most %d", m.cfg.CPUs, maxCPUs)
	}
	return nil
}

func (m *Machine) setupMemory() error {
	var mem *Memory
	var err error
	if m.restoring != nil {
		mem, err = newFileMemory(m.cfg.Memory, m.restoring.memory)
	} else {
		mem, err = newMemory(m.cfg.Memory)
	}
	if err != nil {
		return fmt.Errorf("machine: %w", err)
	}
	m.mem = mem
	for i, r := range mem.regions {
		err := m.vm.SetUserMemoryRegion(kvm.MemoryRegion{
			Slot:          uint32(i),
			GuestPhysAddr: r.gpa,
			MemorySize:    r.size,
			UserspaceAddr: hostAddr(mem.maps[i]),
		})
		if err != nil {
			return fmt.Errorf("machine: register guest RAM %#x+%#x: %w", r.gpa, r.size, err)
		}
	}
	return nil
}

// setupInterrupts creates the in-kernel PIC, IOAPIC, LAPICs and PIT.
// docs/hosts.md: creating the irqchip after the memslots is much cheaper.
func (m *Machine) setupInterrupts() error {
	if err := m.vm.SetTSSAddr(tssAddr); err != nil {
		return fmt.Errorf("machine: %w", err)
	}
	if err := m.vm.SetIdentityMapAddr(identityMapAddr); err != nil {
		return fmt.Errorf("machine: %w", err)
	}
	if err := m.vm.CreateIRQChip(); err != nil {
		return fmt.Errorf("machine: create interrupt controllers: %w", err)
	}
	if err := m.vm.CreatePIT2(kvm.PITSpeakerDummy); err != nil {
		return fmt.Errorf("machine: create PIT: %w", err)
	}
	return nil
}

// Entry returns what the boot loader did: protocol, where the kernel,
// initrd and command line went. It is nil before Boot.
func (m *Machine) Entry() *boot.Entry { return m.entry }

// createVCPUs creates the vCPUs and sets them up as firmware would:
// CPUID, MSRs, FPU, LAPIC wiring (setupVCPU). Their registers stay at
// reset.
func (m *Machine) createVCPUs() error {
	// A restored vCPU gets its saved CPUID table: the host's, which
	// checkHost compared it with, is not needed again.
	var supported []kvm.CPUIDEntry
	deadline := 0
	if m.restoring == nil {
		var err error
		if supported, err = m.sys.SupportedCPUID(); err != nil {
			return fmt.Errorf("machine: %w", err)
		}
		if deadline, err = m.sys.CheckExtension(kvm.CapTSCDeadlineTimer); err != nil {
			return fmt.Errorf("machine: %w", err)
		}
	}
	index, err := m.sys.MSRIndexList()
	if err != nil {
		return fmt.Errorf("machine: %w", err)
	}
	msrs := supportedBootMSRs(index)
	for i := 0; i < m.cfg.CPUs; i++ {
		k, err := m.vm.CreateVCPU(i)
		if err != nil {
			return fmt.Errorf("machine: create vCPU %d: %w", i, err)
		}
		var cpuid []kvm.CPUIDEntry
		if m.restoring != nil {
			cpuid = m.restoring.state.VCPUs[i].CPUID
		} else {
			cpuid = cpuidFor(supported, i, m.cfg.CPUs, deadline > 0)
		}
		v := &vcpu{m: m, k: k, index: i, stats: newExitStats(), cpuid: cpuid}
		m.vcpus = append(m.vcpus, v)
		if err := setupVCPU(k, v.cpuid, msrs); err != nil {
			return fmt.Errorf("machine: vCPU %d: %w", i, err)
		}
	}
	return nil
}

// Run starts the vCPUs and blocks until the guest powers off, resets or
// crashes, or ctx is cancelled (exit.Stop). It returns after every vCPU
// thread has left KVM. A Machine runs once, after Boot.
func (m *Machine) Run(ctx context.Context) (Exit, error) {
	if !m.ready {
		return Exit{}, errors.New("machine: Run before Boot: the vCPUs have nothing to run")
	}
	if !m.started.CompareAndSwap(false, true) {
		return Exit{}, errors.New("machine: Run called twice")
	}
	if m.restoredClock {
		// The guest's clock continues from the instant it was saved.
		if err := m.vm.SetClock(kvm.ClockData{Clock: m.clock}); err != nil {
			return Exit{}, fmt.Errorf("machine: restore the guest clock: %w", err)
		}
		// Restore wrote the new generation ID; the guest learns of it
		// as soon as its vCPUs run.
		if err := m.plat.genID.Notify(); err != nil {
			return Exit{}, fmt.Errorf("machine: %w", err)
		}
	}
	if m.virtio != nil {
		m.virtio.resume() // restored devices wait quiesced until now
	}
	if m.cfg.ConsoleInput != nil {
		m.plat.feedConsole(m.cfg.ConsoleInput)
	}
	if err := batchThreads(); err != nil {
		m.warnf("%v", err)
	}
	m.ctl.Lock()
	m.running = len(m.vcpus)
	m.ctl.Unlock()
	for _, v := range m.vcpus {
		go v.loop()
	}
	var end Exit
	select {
	case end = <-m.exitCh:
	case <-ctx.Done():
		m.report(Exit{Reason: exit.Stop})
		end = <-m.exitCh
	}
	m.stopVCPUs()
	if err := m.plat.flushConsole(); err != nil {
		return end, fmt.Errorf("machine: %w", err)
	}
	return end, nil
}

// logf reports through Config.Logf, or to standard error.
func (m *Machine) logf(format string, args ...any) {
	if m.cfg.Logf != nil {
		m.cfg.Logf(format, args...)
		return
	}
	fmt.Fprintf(os.Stderr, "paddock: "+format+"\n", args...)
}

// report records the first terminal event and tells every vCPU to stop.
// Later reports are dropped. Safe from any goroutine.
func (m *Machine) report(e Exit) {
	m.exitOnce.Do(func() {
		m.exitCh <- e
		m.setState(stateStopped)
	})
}

// setState publishes a new run state, wakes parked vCPUs and kicks
// running ones so they notice.
func (m *Machine) setState(s runState) {
	m.ctl.Lock()
	m.state.Store(int32(s))
	m.cond.Broadcast()
	m.ctl.Unlock()
	for _, v := range m.vcpus {
		v.kick()
	}
}

// stopVCPUs waits until every vCPU goroutine has returned.
func (m *Machine) stopVCPUs() {
	m.setState(stateStopped)
	m.ctl.Lock()
	for m.running > 0 {
		m.cond.Wait()
	}
	m.ctl.Unlock()
}

// vcpuDone is called by each vCPU goroutine as it returns.
func (m *Machine) vcpuDone() {
	m.ctl.Lock()
	m.running--
	m.cond.Broadcast()
	m.ctl.Unlock()
}

// checkpoint is passed by a vCPU thread before every KVM_RUN. It returns
// at once while the machine runs, parks the thread while it is paused, and
// returns false once it is stopped.
func (m *Machine) checkpoint(v *vcpu) bool {
	if runState(m.state.Load()) == stateRunning {
		return true
	}
	// Complete the last I/O instruction before parking, so that a paused
	// vCPU's saved state holds its result. It takes no lock: serving a
	// further exit may end the machine, which takes ctl.
	if !v.completeIO() {
		return false
	}
	m.ctl.Lock()
	defer m.ctl.Unlock()
	for {
		switch runState(m.state.Load()) {
		case stateRunning:
			return true
		case stateStopped:
			return false
		}
		// Tell a kvmclock guest it was stopped on purpose, so its
		// watchdogs do not fire after resume. Fails harmlessly when the
		// guest has not enabled kvmclock.
		_ = v.k.KVMClockCtrl()
		m.parked++
		m.cond.Broadcast()
		m.cond.Wait()
		m.parked--
	}
}

// Pause stops every vCPU and returns once none is executing guest code.
func (m *Machine) Pause() error {
	if !m.started.Load() {
		return errors.New("machine: not running")
	}
	m.ctl.Lock()
	switch runState(m.state.Load()) {
	case stateStopped:
		m.ctl.Unlock()
		return errors.New("machine: stopped")
	case statePaused:
		m.ctl.Unlock()
		return nil
	}
	m.ctl.Unlock()
	m.setState(statePaused)
	m.ctl.Lock()
	defer m.ctl.Unlock()
	for m.parked < m.running && runState(m.state.Load()) == statePaused {
		m.cond.Wait()
	}
	if runState(m.state.Load()) == stateStopped {
		return errors.New("machine: stopped while pausing")
	}
	return nil
}

// Resume lets paused vCPUs run again.
func (m *Machine) Resume() error {
	m.ctl.Lock()
	s := runState(m.state.Load())
	m.ctl.Unlock()
	switch s {
	case stateStopped:
		return errors.New("machine: stopped")
	case stateRunning:
		return nil
	}
	m.setState(stateRunning)
	return nil
}

// PowerButton presses the ACPI power button: a guest with an ACPI power
// button handler (systemd-logind, acpid) shuts down cleanly, and powers
// off through S5, which ends Run with exit.PowerOff. Safe from any
// goroutine; the guest may ignore it.
func (m *Machine) PowerButton() error {
	if runState(m.state.Load()) == stateStopped {
		return errors.New("machine: stopped")
	}
	m.plat.pm.PressPowerButton()
	return nil
}

// Paused reports whether the machine is paused.
func (m *Machine) Paused() bool { return runState(m.state.Load()) == statePaused }

// Memory returns the guest's RAM.
func (m *Machine) Memory() *Memory { return m.mem }

// GenerationID returns the VM generation ID the guest sees.
func (m *Machine) GenerationID() vmgenid.ID { return m.plat.genID.ID() }

// Close releases the VM, its memory and devices. The handles Config and
// BootConfig gave it (KVM, disk images, taps, kernel, initrd) stay open:
// they are the caller's, for the next machine. It must not be called
// while Run is executing.
func (m *Machine) Close() error {
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	if m.virtio != nil {
		errs = append(errs, m.virtio.close())
	}
	if m.plat != nil {
		errs = append(errs, m.plat.close())
	}
	for _, v := range m.vcpus {
		errs = append(errs, v.k.Close())
	}
	if m.vm != nil {
		errs = append(errs, m.vm.Close())
	}
	if m.mem != nil {
		errs = append(errs, m.mem.Close())
	}
	return errors.Join(errs...)
}
