package lab

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// Machine describes the L1 VM that QEMU emulates with TCG.
type Machine struct {
	// QEMU is the emulator binary (default qemu-system-x86_64 on PATH).
	QEMU string
	// CPUs and MemoryMiB size L1 (defaults DefaultL1CPUs and 2048).
	CPUs      int
	MemoryMiB int
	// Type is the QEMU machine type (default "pc"). "microvm" reaches
	// /init about a second sooner on an idle host, but it has no HPET or
	// ACPI PM timer: when TCG is slowed down by other load, the kernel's
	// PIT calibration of the TSC fails and, with no other reference, L1
	// hangs early in boot. "pc" falls back to the HPET.
	Type string
	// BootBzImage boots L1 from the Debian bzImage instead of its ELF
	// vmlinux via PVH (which skips the kernel's XZ self-decompression,
	// the slowest part of an emulated boot).
	BootBzImage bool
	// Cmdline is appended to L1's kernel command line.
	Cmdline string
}

// DefaultL1CPUs is L1's default vCPU count. With one, TCG's emulated
// AMD-V left L1 halted for good, a timer interrupt pending in its LAPIC,
// in about one nested boot in four (QEMU as L2 VMM too, less often); with
// two, none in a row of ten. One CPU boots L1 faster, two keep it alive.
// Still so on QEMU 10.0: with one CPU, 2 of 4 L1 boots of the virtio test
// froze right after L2 started.
const DefaultL1CPUs = 2

// MaxL1MemoryMiB is the most RAM L1 may have: QEMU's "pc" machine puts
// all of a RAM below 3.5 GiB under 4 GiB, and splits a larger one at 3
// GiB, the rest above 4 GiB. With some of L1's RAM above 4 GiB (4096
// MiB: L1's kernel allocates from there first), a stock Debian guest of
// the template test stalled inside L1's KVM, or L1's kernel died of a
// stack overflow in the vCPU's thread, in 4 runs of 4; with 3500 MiB in
// 1 of 3 (docs/lab.md).
const MaxL1MemoryMiB = 3583

// check returns an error naming the field if m cannot make a sound L1.
func (m Machine) check() error {
	if m.MemoryMiB > MaxL1MemoryMiB {
		return fmt.Errorf("lab: L1 memory %d MiB: at most %d MiB, so that all of it is below 4 GiB (docs/lab.md)", m.MemoryMiB, MaxL1MemoryMiB)
	}
	return nil
}

func (m Machine) withDefaults() Machine {
	if m.QEMU == "" {
		m.QEMU = "qemu-system-x86_64"
	}
	if m.CPUs == 0 {
		m.CPUs = DefaultL1CPUs
	}
	if m.MemoryMiB == 0 {
		m.MemoryMiB = 2048
	}
	if m.Type == "" {
		m.Type = "pc"
	}
	return m
}

// consoleMode selects how L1's serial console is connected.
type consoleMode int

const (
	// consolePipe: serial on QEMU's stdout, parsed by the harness.
	consolePipe consoleMode = iota
	// consoleTerminal: serial on the user's terminal (stdin included);
	// signal=off so Ctrl-C and Ctrl-A go to the guest, not to QEMU.
	consoleTerminal
)

// args returns QEMU's command line for L1.
func (m Machine) args(kernel, initrd string, console consoleMode) []string {
	machine := m.Type
	if machine == "microvm" {
		machine += ",x-option-roms=off,rtc=on"
	}
	cmdline := "console=ttyS0 panic=-1 quiet"
	if m.Cmdline != "" {
		cmdline += " " + m.Cmdline
	}
	args := []string{
		"-accel", "tcg",
		"-cpu", "EPYC,+svm",
		"-smp", strconv.Itoa(m.CPUs),
		"-m", strconv.Itoa(m.MemoryMiB),
		"-M", machine,
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-monitor", "none",
		"-no-reboot",
		// L1's /init ends an attached run with the status of its last
		// step by writing it here (Lab.Attach, StepExitError).
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-kernel", kernel,
		"-initrd", initrd,
		"-append", cmdline,
	}
	switch console {
	case consoleTerminal:
		args = append(args, "-chardev", "stdio,id=c0,signal=off", "-serial", "chardev:c0")
	default:
		args = append(args, "-serial", "stdio")
	}
	return args
}

// command returns the L1 QEMU command, in its own process group (so that
// killing the group kills QEMU and anything it started) and killed if the
// harness dies.
func (m Machine) command(kernel, initrd string, console consoleMode) *exec.Cmd {
	cmd := exec.Command(m.QEMU, m.args(kernel, initrd, console)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: console == consolePipe, Pdeathsig: syscall.SIGKILL}
	cmd.Env = os.Environ()
	return cmd
}

// killGroup kills the process group led by cmd's process.
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err != nil && err != syscall.ESRCH {
		// Not a group leader (terminal mode): kill the process itself.
		if err2 := cmd.Process.Kill(); err2 != nil && err2 != os.ErrProcessDone {
			return fmt.Errorf("lab: kill QEMU (pid %d): %w", cmd.Process.Pid, err)
		}
	}
	return nil
}
