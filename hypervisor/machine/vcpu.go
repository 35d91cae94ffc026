package machine

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// runState is what the machine wants its vCPUs to do. vCPU threads read it
// at every exit; Pause, Resume and stop change it and kick the threads.
type runState int32

const (
	stateRunning runState = iota
	statePaused
	stateStopped
)

func (s runState) String() string {
	switch s {
	case stateRunning:
		return "running"
	case statePaused:
		return "paused"
	case stateStopped:
		return "stopped"
	}
	return fmt.Sprintf("runState(%d)", int32(s))
}

// kickSignal interrupts a vCPU thread blocked in KVM_RUN. The Go runtime
// installs a handler for it (it is the preemption signal) and tolerates
// spurious deliveries, so sending it to a thread of ours is harmless.
const kickSignal = unix.SIGURG

// vcpu is one virtual CPU and the goroutine that runs it. The goroutine is
// locked to its OS thread for its whole life (KVM requires every KVM_RUN of
// a vCPU to come from the same thread for performance, and kicks target
// the thread).
type vcpu struct {
	m     *Machine
	k     *kvm.VCPU
	index int
	tid   atomic.Int32 // OS thread id once the loop started, for kicks
	stats *exitStats
	// exits and lastExit are the vCPU's exits to userspace so far and
	// the last one's reason, for WriteDebug (which may read them while
	// the vCPU runs): a count that does not move is a vCPU inside KVM,
	// halted or running guest code.
	exits    atomic.Uint64
	lastExit atomic.Uint32
	lastAddr atomic.Uint64 // the last I/O exit's port or MMIO exit's address
	// cpuid is the CPUID table the vCPU was given, which a snapshot
	// keeps (KVM's copy may differ in bits it rewrites as the guest runs).
	cpuid []kvm.CPUIDEntry
	// ioPending is set after the vCPU's goroutine served a port or MMIO
	// exit and until its next KVM_RUN, which completes the instruction.
	// Only that goroutine uses it.
	ioPending bool
}

// kick makes the vCPU leave KVM_RUN (or not enter it) as soon as possible.
// Safe from any goroutine.
func (v *vcpu) kick() {
	v.k.SetImmediateExit(true)
	if tid := v.tid.Load(); tid != 0 {
		// ESRCH means the thread already exited: nothing to kick.
		_ = unix.Tgkill(unix.Getpid(), int(tid), kickSignal)
	}
}

// loop runs the vCPU until the machine stops. It reports a terminal guest
// event (poweroff, reset, crash) to the machine and returns.
func (v *vcpu) loop() {
	runtime.LockOSThread()
	// The thread is never unlocked: when the goroutine returns, the
	// runtime destroys it, so no other goroutine inherits a thread that
	// received kicks.
	v.tid.Store(int32(unix.Gettid()))
	// The guest's own thread keeps the normal policy; see sched.go.
	if err := setThreadPolicy(0, unix.SCHED_NORMAL); err != nil {
		v.m.warnf("vCPU %d: %v", v.index, err)
	}
	defer v.m.vcpuDone()
	for {
		if !v.m.checkpoint(v) {
			return
		}
		v.ioPending = false // this KVM_RUN completes the last I/O
		if err := v.k.Run(); err != nil {
			switch {
			case errors.Is(err, unix.EINTR):
				// A kick or a runtime signal: clear the kick and go back
				// through the checkpoint.
				v.k.SetImmediateExit(false)
				continue
			case errors.Is(err, unix.EAGAIN):
				// An AP that has not received its SIPI yet.
				continue
			}
			v.m.report(Exit{Reason: exit.Crash, Detail: fmt.Sprintf("vCPU %d: %v", v.index, err)})
			return
		}
		if !v.handleExit() {
			return
		}
	}
}

// handleExit services one KVM exit. It returns false when this vCPU must
// stop running.
func (v *vcpu) handleExit() bool {
	m := v.m
	r := v.k.ExitReason()
	v.stats.byReason[r]++
	v.exits.Add(1)
	v.lastExit.Store(uint32(r))
	switch r {
	case kvm.ExitIO:
		v.ioPending = true
		io := v.k.IO()
		v.stats.ports[io.Port]++
		v.lastAddr.Store(uint64(io.Port))
		data := io.Data
		for i := 0; i < io.Count; i++ {
			chunk := data[i*io.Size : (i+1)*io.Size]
			if io.In {
				m.ports.read(io.Port, chunk)
			} else {
				m.ports.write(io.Port, chunk)
			}
		}
		return true
	case kvm.ExitMMIO:
		v.ioPending = true
		mm := v.k.MMIO()
		v.stats.mmio[mm.Addr&^0xfff]++
		v.lastAddr.Store(mm.Addr)
		if mm.Write {
			m.mmio.write(mm.Addr, mm.Data)
		} else {
			m.mmio.read(mm.Addr, mm.Data)
		}
		return true
	case kvm.ExitSystemEvent:
		ev := v.k.SystemEvent()
		switch ev.Type {
		case kvm.SystemEventShutdown:
			m.report(Exit{Reason: exit.PowerOff})
		case kvm.SystemEventReset:
			m.report(Exit{Reason: exit.Reboot})
		default:
			m.report(Exit{Reason: exit.Crash, Detail: fmt.Sprintf("vCPU %d: guest reported system event %d %v", v.index, ev.Type, ev.Data)})
		}
		return false
	case kvm.ExitShutdown:
		// A triple fault. Linux uses it as its last-resort reboot, and
		// PCs reset on it, so it is a reset; the registers are kept in
		// the detail because an early-boot crash looks the same.
		m.report(Exit{Reason: exit.Reboot, Detail: fmt.Sprintf("vCPU %d triple-faulted (%s)", v.index, v.describe())})
		return false
	case kvm.ExitInternalError:
		ie := v.k.InternalError()
		m.report(Exit{Reason: exit.Crash, Detail: fmt.Sprintf("vCPU %d: KVM internal error, suberror %d, data %#x (%s)", v.index, ie.Suberror, ie.Data, v.describe())})
		return false
	case kvm.ExitFailEntry:
		fe := v.k.FailEntry()
		m.report(Exit{Reason: exit.Crash, Detail: fmt.Sprintf("vCPU %d: KVM could not enter the guest, hardware reason %#x (%s)", v.index, fe.HardwareEntryFailureReason, v.describe())})
		return false
	case kvm.ExitIntr:
		return true
	default:
		m.report(Exit{Reason: exit.Crash, Detail: fmt.Sprintf("vCPU %d: unhandled KVM exit %v (%s)", v.index, r, v.describe())})
		return false
	}
}

// completeIO finishes the instruction of the port or MMIO exit the vCPU
// last served, without running the guest further. KVM's rule (api.rst,
// KVM_RUN): after KVM_EXIT_IO or KVM_EXIT_MMIO the vCPU's state is
// consistent, and the data of an IN or MMIO read in its registers, only
// once user space enters KVM_RUN again; with immediate_exit set, that
// KVM_RUN completes the operation and returns EINTR at once. A paused
// vCPU does this before it parks, so its state can be saved and no I/O
// is lost. An instruction that needs another exit (an MMIO access split
// in fragments, a string I/O instruction) makes KVM_RUN return that exit
// instead: it is served and completed the same way. It returns false
// when the vCPU must stop (an exit that ended the machine, or an error,
// both reported). Called on the vCPU's goroutine only.
func (v *vcpu) completeIO() bool {
	for v.ioPending {
		v.ioPending = false
		v.k.SetImmediateExit(true)
		err := v.k.Run()
		v.k.SetImmediateExit(false)
		switch {
		case err == nil:
			if !v.handleExit() {
				return false
			}
		case errors.Is(err, unix.EINTR):
		default:
			v.m.report(Exit{Reason: exit.Crash, Detail: fmt.Sprintf("vCPU %d: completing I/O: %v", v.index, err)})
			return false
		}
	}
	return true
}

// describe summarises the vCPU's registers for crash reports.
func (v *vcpu) describe() string {
	regs, err := v.k.Regs()
	if err != nil {
		return "registers unavailable: " + err.Error()
	}
	sregs, err := v.k.Sregs()
	if err != nil {
		return fmt.Sprintf("RIP=%#x RSP=%#x", regs.RIP, regs.RSP)
	}
	return fmt.Sprintf("RIP=%#x RSP=%#x RFLAGS=%#x CR0=%#x CR3=%#x CR4=%#x EFER=%#x CS=%#x",
		regs.RIP, regs.RSP, regs.RFLAGS, sregs.CR0, sregs.CR3, sregs.CR4, sregs.EFER, sregs.CS.Selector)
}
