package boot

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/boot/acpi"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// These tests boot the stock Debian kernel under QEMU (TCG, q35) from
// exactly the memory image and register state Load produces, with the ACPI
// tables acpi.Build produces, and check what the kernel itself reports.
// QEMU stands in for paddock's machine: a 128 KiB "firmware" image holds the
// ACPI blob (mapped at 0xE0000) and a short stub, assembled with nasm from
// the Entry, that sets CR0/CR3/CR4/EFER, GDT, IDT, segments and registers
// and jumps to Entry.RIP. The kernel's dmesg then tells whether the zero
// page or start_info, E820 map, command line, initrd, MADT, FADT, MCFG and
// DSDT were understood, and `poweroff -f` exercises \_S5 and PM1a_CNT.

// qemuPlatform is what the q35 machine offers at the addresses the stub
// programs into its chipset.
const (
	qemuECAM      = 0xB0000000 // MCH PCIEXBAR
	qemuPMBase    = 0x600      // ICH9 PMBASE: PM1a_EVT at +0, PM1a_CNT at +4
	qemuMemoryMiB = 512
	qemuCPUs      = 2
)

func qemuACPIConfig() acpi.Config {
	return acpi.Config{
		CPUs: qemuCPUs, IOAPICAddr: 0xFEC00000, LAPICAddr: 0xFEE00000, SCI: 9,
		PM1aEventPort: qemuPMBase, PM1aCtrlPort: qemuPMBase + 4,
		ResetPort: 0xCF9, ResetValue: 0x06,
		SleepTypeS5: 0, // QEMU's ICH9 powers off on SLP_TYP 0
		HasRTC:      true, HasI8042: true,
		PCI: &acpi.PCIHostBridge{
			ECAMBase: qemuECAM, BusStart: 0, BusEnd: 255,
			IOBase: 0x1000, IOSize: 0xF000,
			MMIO32Base: 0xC0000000, MMIO32Size: 0x3EC00000,
		},
	}
}

// qemuE820 is the q35 machine's memory with -m 512: RAM below the EBDA and
// from 1 MiB, the BIOS area and the ECAM window reserved.
func qemuE820() []E820Entry {
	return append(pcMap(qemuMemoryMiB), E820Entry{Addr: qemuECAM, Size: 256 * mib, Type: E820Reserved})
}

// newc appends one entry of a "newc" cpio archive (the initramfs format).
func newc(buf *bytes.Buffer, name string, mode uint32, rdevMajor, rdevMinor int, data []byte) {
	fmt.Fprintf(buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		buf.Len(), mode, 0, 0, 1, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	buf.WriteString(name + "\x00")
	for buf.Len()%4 != 0 {
		buf.WriteByte(0)
	}
	buf.Write(data)
	for buf.Len()%4 != 0 {
		buf.WriteByte(0)
	}
}

// busyboxInitrd builds an initramfs whose /init reports markers on the
// console and powers the machine off through ACPI.
func busyboxInitrd(t *testing.T) string {
	t.Helper()
	bb := testenv.RequireTool(t, "busybox", "busybox-static")
	bin, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	init := `#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
echo "PADDOCK-CMDLINE: $($B cat /proc/cmdline)"
echo "PADDOCK-CPUS: $($B grep -c ^processor /proc/cpuinfo)"
echo "PADDOCK-ACPI-TABLES: $($B ls /sys/firmware/acpi/tables | $B tr '\n' ' ')"
echo "PADDOCK-POWER-OFF"
$B poweroff -f
`
	var buf bytes.Buffer
	for _, d := range []string{"bin", "dev", "proc", "sys"} {
		newc(&buf, d, 0o040755, 0, 0, nil)
	}
	newc(&buf, "dev/console", 0o020600, 5, 1, nil)
	newc(&buf, "bin/busybox", 0o100755, 0, 0, bin)
	newc(&buf, "init", 0o100755, 0, 0, []byte(init))
	newc(&buf, "TRAILER!!!", 0, 0, 0, nil)
	return writeFile(t, "initrd.cpio", buf.Bytes())
}

// firmwareStub is nasm source for the code at 0xF0000: program the q35
// chipset (ECAM at qemuECAM, ICH9 PM at qemuPMBase with ACPI enabled), then
// enter the state e describes, straight from real mode, and jump to the
// kernel. Everything it loads comes from e; TR is left alone (a busy TSS
// cannot be loaded with LTR and nothing uses it before the kernel's own).
func firmwareStub(e *Entry) string {
	long := e.CR0&cr0PG != 0
	bits, sp, si, bx, ax := "32", "esp", "esi", "ebx", "eax"
	if long {
		bits, sp, si, bx, ax = "64", "rsp", "rsi", "rbx", "rax"
	}
	pciWrite := func(addr uint32, val uint32) string {
		return fmt.Sprintf("\tmov dx, 0xCF8\n\tmov eax, %#x\n\tout dx, eax\n\tmov dx, 0xCFC\n\tmov eax, %#x\n\tout dx, eax\n", addr, val)
	}
	return "BITS 16\nORG 0\n\tcli\n\tcld\n" +
		pciWrite(0x80000060, qemuECAM|1) + // MCH PCIEXBAR: base, 256 buses, enabled
		pciWrite(0x80000064, 0) +
		pciWrite(0x8000F840, qemuPMBase|1) + // ICH9 LPC PMBASE
		pciWrite(0x8000F844, 0x80) + // ICH9 ACPI_CNTL: ACPI enabled, SCI on IRQ 9
		fmt.Sprintf(`	o32 lgdt [cs:gdtr]
	o32 lidt [cs:idtr]
	mov eax, %#x
	mov cr4, eax
	mov eax, %#x
	mov cr3, eax
	mov ecx, 0xC0000080
	mov eax, %#x
	xor edx, edx
	wrmsr
	mov eax, %#x
	mov cr0, eax
	jmp dword %#x:(0xF0000 + kernel_entry)
BITS %s
kernel_entry:
	mov ax, %#x
	mov ds, ax
	mov es, ax
	mov fs, ax
	mov gs, ax
	mov ss, ax
	mov %s, %#x
	mov %s, %#x
	mov %s, %#x
	mov %s, %#x
	jmp %s
gdtr:	dw %#x
	dd %#x
idtr:	dw %#x
	dd %#x
`, e.CR4, e.CR3, e.EFER&^eferLMA, e.CR0, e.CS.Selector, bits, e.DS.Selector,
			sp, e.RSP, si, e.RSI, bx, e.RBX, ax, e.RIP, ax, e.GDTLimit, e.GDTBase, e.IDTLimit, e.IDTBase)
}

// firmwareImage assembles the 128 KiB image QEMU maps at 0xE0000-0xFFFFF:
// the ACPI blob at 0xE0000, the stub at 0xF0000, and at the reset vector
// 0xFFFF0 a far jump to the stub.
func firmwareImage(t *testing.T, e *Entry, acpiBlob []byte) string {
	t.Helper()
	nasm := testenv.RequireTool(t, "nasm", "nasm")
	dir := t.TempDir()
	src := filepath.Join(dir, "stub.asm")
	if err := os.WriteFile(src, []byte(firmwareStub(e)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nasm, "-f", "bin", "-o", filepath.Join(dir, "stub.bin"), src).CombinedOutput(); err != nil {
		t.Fatalf("nasm: %v\n%s", err, out)
	}
	stub, err := os.ReadFile(filepath.Join(dir, "stub.bin"))
	if err != nil {
		t.Fatal(err)
	}
	img := make([]byte, 128<<10)
	if len(acpiBlob) > 0x10000 || len(stub) > 0xFFF0 {
		t.Fatalf("ACPI blob (%d bytes) or stub (%d bytes) too large", len(acpiBlob), len(stub))
	}
	copy(img, acpiBlob)
	copy(img[0x10000:], stub)
	copy(img[0x1FFF0:], []byte{0xEA, 0x00, 0x00, 0x00, 0xF0}) // jmp 0xF000:0x0000
	return writeFile(t, "firmware.bin", img)
}

// bootInQEMU loads kernel with Load, boots the result in QEMU and returns
// the serial console output.
func bootInQEMU(t *testing.T, kernel string) (string, *Entry) {
	t.Helper()
	qemu := testenv.RequireTool(t, "qemu-system-x86_64", "qemu-system-x86")
	blob, rsdp, err := acpi.Build(qemuACPIConfig(), ACPIStart)
	if err != nil {
		t.Fatal(err)
	}
	e820 := qemuE820()
	mem := newFakeMem(t, e820)
	cmdline := "console=ttyS0 panic=-1 loglevel=7 paddock.test=42"
	e, err := Load(mem, Config{KernelPath: kernel, InitrdPath: busyboxInitrd(t), Cmdline: cmdline, E820: e820, RSDP: rsdp})
	if err != nil {
		t.Fatal(err)
	}
	fw := firmwareImage(t, e, blob)
	dump := func(name string, gpa, n uint64) string {
		return fmt.Sprintf("loader,file=%s,addr=%#x,force-raw=on", writeFile(t, name, mem.read(t, gpa, n)), gpa)
	}
	console := filepath.Join(t.TempDir(), "console.log")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-machine", "q35,smm=off", "-accel", "tcg", "-cpu", "max", "-smp", fmt.Sprint(qemuCPUs),
		"-m", fmt.Sprintf("%dM", qemuMemoryMiB), "-nodefaults", "-display", "none", "-no-reboot",
		"-bios", fw, "-serial", "file:"+console,
		"-device", dump("low.bin", 0, LowEnd),
		"-device", dump("kernel.bin", e.KernelStart, e.KernelEnd-e.KernelStart),
		"-device", dump("initrd.bin", e.InitrdAddr, e.InitrdSize))
	out, err := cmd.CombinedOutput()
	log, rerr := os.ReadFile(console)
	if err != nil || rerr != nil {
		t.Fatalf("qemu: %v (console: %v)\n%s\n--- console ---\n%s", err, rerr, out, log)
	}
	if !strings.Contains(string(log), "PADDOCK-CMDLINE: "+cmdline) {
		t.Fatalf("the kernel did not reach /init with our command line:\n%s", log)
	}
	return string(log), e
}

// checkKernelLog checks what the kernel reports about the boot data and the
// ACPI tables.
func checkKernelLog(t *testing.T, log string) {
	t.Helper()
	for _, w := range []string{
		"ACPI: RSDP 0x00000000000E0000 000024 (v02 PADDCK)",
		"ACPI: XSDT 0x", "ACPI: FACP 0x", "ACPI: DSDT 0x", "ACPI: FACS 0x", "ACPI: APIC 0x", "ACPI: MCFG 0x",
		"BIOS-e820: [mem 0x0000000000100000-0x000000001fffffff] usable",
		"BIOS-e820: [mem 0x00000000b0000000-0x00000000bfffffff] reserved",
		"IOAPIC[0]: apic_id 0, version 32, address 0xfec00000, GSI 0-23",
		"ACPI: INT_SRC_OVR (bus 0 bus_irq 0 global_irq 2 dfl dfl)",
		"ACPI: INT_SRC_OVR (bus 0 bus_irq 9 global_irq 9 high level)",
		"ACPI: LAPIC_NMI (acpi_id[0xff] dfl dfl lint[0x1])",
		"smp: Brought up 1 node, 2 CPUs",
		"PCI: MMCONFIG for domain 0000 [bus 00-ff] at [mem 0xb0000000-0xbfffffff] (base 0xb0000000)",
		"ACPI: PCI Root Bridge [PCI0] (domain 0000 [bus 00-ff])",
		"ACPI: Interpreter enabled",
		"ACPI: PM: (supports S0 S5)",
		"Freeing initrd memory",
		"PADDOCK-CPUS: 2",
		"PADDOCK-ACPI-TABLES: APIC DSDT FACP FACS MCFG",
		"reboot: Power down",
	} {
		if !strings.Contains(log, w) {
			t.Errorf("kernel log has no %q", w)
		}
	}
	if m := regexp.MustCompile(`(?m)^.*(ACPI (BIOS )?(Error|Warning)|Firmware Bug|\[Firmware Warn\]).*$`).FindAllString(log, -1); m != nil {
		t.Errorf("the kernel complains about the firmware:\n%s", strings.Join(m, "\n"))
	}
	if t.Failed() {
		t.Logf("kernel log:\n%s", log)
	}
}

func TestQEMUBootsBzImage(t *testing.T) {
	log, e := bootInQEMU(t, debianKernel(t))
	if e.Protocol != ProtocolBzImage64 {
		t.Fatalf("protocol %v", e.Protocol)
	}
	checkKernelLog(t, log)
}

func TestQEMUBootsVmlinuxPVH(t *testing.T) {
	log, e := bootInQEMU(t, debianVmlinux(t))
	if e.Protocol != ProtocolPVH {
		t.Fatalf("protocol %v", e.Protocol)
	}
	checkKernelLog(t, log)
}
