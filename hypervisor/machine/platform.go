package machine

import (
	"context"
	"fmt"
	"io"

	"github.com/paddock-vm/paddock/hypervisor/boot/acpi"
	"github.com/paddock-vm/paddock/hypervisor/devices/acpipm"
	"github.com/paddock-vm/paddock/hypervisor/devices/ged"
	"github.com/paddock-vm/paddock/hypervisor/devices/i8042"
	"github.com/paddock-vm/paddock/hypervisor/devices/pci"
	"github.com/paddock-vm/paddock/hypervisor/devices/rtc"
	"github.com/paddock-vm/paddock/hypervisor/devices/serial"
	"github.com/paddock-vm/paddock/hypervisor/devices/vmgenid"
	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// The PC platform devices and where they sit.
const (
	com1Port = 0x3f8
	com1IRQ  = 4
)

// platform is the set of PC devices every machine has: COM1, the i8042
// (for its reset line), the CMOS RTC, the ACPI power-management block,
// the Generic Event Device and the VM generation ID it announces, and
// the ACPI tables that describe them.
type platform struct {
	m      *Machine
	serial *serial.Serial
	kbd    *i8042.Controller
	rtc    *rtc.RTC
	pci    *pci.HostBridge
	pm     *acpipm.PM
	ged    *ged.GED
	genID  *vmgenid.Device

	// stopFeed ends the console input feed.
	stopFeed context.CancelFunc
}

// newPlatform creates the platform devices and puts them on the buses.
func newPlatform(m *Machine) (*platform, error) {
	p := &platform{m: m, stopFeed: func() {}}
	onReset := func() { m.report(Exit{Reason: exit.Reboot}) }
	onPowerOff := func() { m.report(Exit{Reason: exit.PowerOff}) }

	p.serial = serial.New(com1Port, newGSILine(m.vm, com1IRQ), m.cfg.Console)
	p.kbd = i8042.New(newGSILine(m.vm, i8042.KeyboardIRQ), newGSILine(m.vm, i8042.AuxIRQ), onReset)
	low, high := m.cfg.Memory, uint64(0)
	if low > LowRAMMax {
		low, high = LowRAMMax, m.cfg.Memory-LowRAMMax
	}
	p.rtc = rtc.New(rtc.Config{IRQ: newGSILine(m.vm, rtc.IRQ), LowMemory: low, HighMemory: high})
	var err error
	p.pm, err = acpipm.New(acpipm.Config{
		EventPort:   acpipm.DefaultEventPort,
		ControlPort: acpipm.DefaultControlPort,
		ResetPort:   acpipm.DefaultResetPort,
		ResetValue:  acpipm.DefaultResetValue,
		SleepTypeS5: acpipm.DefaultSleepTypeS5,
		SCI:         newGSILine(m.vm, acpipm.SCIIRQ),
		OnPowerOff:  onPowerOff,
		OnReset:     onReset,
	})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("machine: ACPI power management: %w", err)
	}
	p.ged = ged.New(ged.Config{Port: ged.DefaultPort, Line: newGSILine(m.vm, ged.DefaultGSI)})
	p.genID, err = vmgenid.New(vmgenid.Config{
		Addr:   VMGenIDAddr,
		Memory: m.mem,
		ID:     m.cfg.GenerationID,
		Notify: func() error { return p.ged.Trigger(ged.EventGenerationID) },
	})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("machine: VM generation ID: %w", err)
	}
	if p.pci, err = pci.NewHostBridge(ECAMStart, onReset); err != nil {
		p.close()
		return nil, fmt.Errorf("machine: PCI host bridge: %w", err)
	}
	if err := m.mmio.register(ECAMStart, pci.ECAMSize, p.pci); err != nil {
		p.close()
		return nil, fmt.Errorf("machine: wire PCI ECAM: %w", err)
	}
	regs := []struct {
		base uint16
		n    int
		dev  interface {
			ReadPort(uint16, []byte)
			WritePort(uint16, []byte)
		}
		what string
	}{
		{com1Port, serial.Ports, p.serial, "COM1"},
		{i8042.DataPort, 1, p.kbd, "i8042 data"},
		{i8042.CommandPort, 1, p.kbd, "i8042 command"},
		{rtc.IndexPort, 2, p.rtc, "CMOS RTC"},
		{pci.ConfigAddressPort, pci.Ports, p.pci, "PCI configuration ports"},
		{acpipm.DefaultEventPort, acpipm.EventBlockLen, p.pm, "ACPI PM1a event block"},
		{acpipm.DefaultControlPort, acpipm.ControlBlockLen, p.pm, "ACPI PM1a control block"},
		{acpipm.DefaultResetPort, acpipm.ResetLen, p.pm, "ACPI reset register"},
		{ged.DefaultPort, ged.Len, p.ged, "GED event register"},
	}
	for _, r := range regs {
		if err := m.ports.register(r.base, r.n, r.dev); err != nil {
			p.close()
			return nil, fmt.Errorf("machine: wire %s: %w", r.what, err)
		}
	}
	return p, nil
}

// acpiConfig describes the platform to the ACPI table builder.
func (p *platform) acpiConfig() acpi.Config {
	return acpi.Config{
		CPUs:          p.m.cfg.CPUs,
		IOAPICAddr:    IOAPICAddr,
		IOAPICID:      0,
		LAPICAddr:     LAPICAddr,
		SCI:           acpipm.SCIIRQ,
		PM1aEventPort: acpipm.DefaultEventPort,
		PM1aCtrlPort:  acpipm.DefaultControlPort,
		ResetPort:     acpipm.DefaultResetPort,
		ResetValue:    acpipm.DefaultResetValue,
		SleepTypeS5:   acpipm.DefaultSleepTypeS5,
		HasRTC:        true,
		HasI8042:      true,
		GED:           &acpi.GED{GSI: ged.DefaultGSI, Port: ged.DefaultPort},
		VMGenID:       &acpi.VMGenID{Addr: VMGenIDAddr, Event: ged.EventGenerationID},
		PCI: &acpi.PCIHostBridge{
			ECAMBase: ECAMStart,
			BusStart: 0,
			// Only bus 0 exists. A wider range costs a stock kernel
			// ~8000 config-space exits at boot: x86 Linux probes every
			// bus up to the MCFG's last for devices behind no bridge.
			BusEnd:     0,
			IOBase:     PCIIOStart,
			IOSize:     PCIIOSize,
			MMIO32Base: PCIMMIO32Start,
			MMIO32Size: PCIMMIO32Size,
			MMIO64Base: pciMMIO64Start(p.m.cfg.Memory),
			MMIO64Size: PCIMMIO64Size,
			INTx:       intxGSIs,
		},
	}
}

// writeACPI builds the ACPI tables and copies them to ACPIStart. It
// returns the RSDP's guest-physical address.
func (p *platform) writeACPI(mem *Memory) (uint64, error) {
	blob, rsdp, err := acpi.Build(p.acpiConfig(), ACPIStart)
	if err != nil {
		return 0, err
	}
	if uint64(len(blob)) > VMGenIDAddr-ACPIStart {
		return 0, fmt.Errorf("%d bytes of tables do not fit the %d-byte ACPI area", len(blob), VMGenIDAddr-ACPIStart)
	}
	dst, err := mem.Slice(ACPIStart, uint64(len(blob)))
	if err != nil {
		return 0, err
	}
	copy(dst, blob)
	return rsdp, nil
}

// feedConsole types r into COM1 as the guest drains its receive FIFO,
// until r ends or the platform closes.
func (p *platform) feedConsole(r io.Reader) {
	ctx, cancel := context.WithCancel(context.Background())
	p.stopFeed = cancel
	go func() {
		// The feed ends with the input or with the machine; either is
		// normal, so its error is not reported.
		_ = p.serial.Pump(ctx, r)
	}()
}

// flushConsole stops the console: pending output reaches the console
// writer before it returns. Called once the vCPUs are stopped.
func (p *platform) flushConsole() error {
	p.stopFeed()
	if err := p.serial.Close(); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

// close releases the platform devices. A console write error was already
// reported by flushConsole.
func (p *platform) close() error {
	p.stopFeed()
	if p.serial != nil {
		_ = p.serial.Close()
	}
	if p.rtc != nil {
		p.rtc.Close()
	}
	return nil
}
