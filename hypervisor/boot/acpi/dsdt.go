package acpi

// Names in the DSDT.
const (
	pciDevice  = "PCI0"
	resDevice  = "MRES" // motherboard resources: the ECAM area
	pnpPCIe    = "PNP0A08"
	pnpPCI     = "PNP0A03"
	pnpMBResrc = "PNP0C02"

	gedDevice     = "GED"
	gedHID        = "ACPI0013"
	gedRegion     = "GDST"
	gedField      = "GDAT"
	vmgenDevice   = "VGEN"
	vmgenHID      = "VMGENCTR"
	vmgenCID      = "VM_Gen_Counter" // Microsoft's id; also the _DDN
	notifyChanged = 0x80             // the first device-specific Notify value: the ID changed
)

// buildDSDT returns the Differentiated System Description Table: \_S5 for
// power-off; with PCI, the host bridge and the motherboard resource
// device that reserves its ECAM area (Linux accepts MMCONFIG only from a
// region E820 or a PNP0C01/PNP0C02 device reserves); the Generic Event
// Device and the VM Generation ID device when cfg has them.
func buildDSDT(a *aml, cfg *Config) []byte {
	// \_S5: SLP_TYP for PM1a and PM1b (unused), then two reserved values.
	s5 := uint64(cfg.SleepTypeS5)
	body := a.name(`\_S5`, a.pkg(a.integer(s5), a.integer(s5), a.integer(0), a.integer(0)))
	var sb [][]byte
	if cfg.PCI != nil {
		sb = append(sb, pciHostBridge(a, cfg.PCI), motherboardResources(a, cfg.PCI))
	}
	if cfg.GED != nil {
		sb = append(sb, genericEventDevice(a, cfg.GED, cfg.VMGenID))
	}
	if cfg.VMGenID != nil {
		sb = append(sb, vmGenerationID(a, cfg.VMGenID))
	}
	if len(sb) > 0 {
		body = append(body, a.scope(`\_SB`, sb...)...)
	}
	return sdt("DSDT", dsdtRevision, body)
}

// genericEventDevice is Device(GED_): its interrupt in _CRS (the only
// resource: Linux's evged driver refuses any other) and _EVT, which reads
// the event register once (the read clears it) and notifies VGEN when
// the generation ID's event bit is set. _EVT is Serialized: two runs
// must not split one read's events between them.
func genericEventDevice(a *aml, g *GED, v *VMGenID) []byte {
	evt := [][]byte{a.store(a.nameString(gedField), a.local(0))}
	if v != nil {
		evt = append(evt, a.ifThen(a.and(a.local(0), a.integer(1<<v.Event)),
			a.notify(`\_SB.`+vmgenDevice, notifyChanged)))
	}
	return a.device(gedDevice,
		a.name("_HID", a.str(gedHID)),
		a.name("_UID", a.integer(0)),
		a.name("_CRS", a.resourceTemplate((&resourceTemplate{}).interrupt(false, false, g.GSI))),
		a.opRegion(gedRegion, regionSystemIO, uint64(g.Port), 1),
		a.field(gedRegion, fieldByteAcc, fieldUnit{gedField, 8}),
		a.method("_EVT", 1, true, evt...),
	)
}

// vmGenerationID is Device(VGEN), the VM Generation ID device: its ids
// and ADDR, the ID's address as Package(){low 32 bits, high 32 bits}.
func vmGenerationID(a *aml, v *VMGenID) []byte {
	return a.device(vmgenDevice,
		a.name("_HID", a.str(vmgenHID)),
		a.name("_CID", a.str(vmgenCID)),
		a.name("_DDN", a.str(vmgenCID)),
		a.name("ADDR", a.pkg(a.integer(v.Addr&0xFFFF_FFFF), a.integer(v.Addr>>32))),
	)
}

// pciHostBridge is Device(PCI0): a PCI Express root bridge on segment 0,
// with its INTx routing (_PRT) when p.INTx is set.
func pciHostBridge(a *aml, p *PCIHostBridge) []byte {
	crs := (&resourceTemplate{}).
		wordBusNumber(p.BusStart, p.BusEnd).
		io(pciConfigPort, pciConfigPort, 1, pciConfigLen)
	if p.IOSize > 0 {
		crs.wordIO(p.IOBase, p.IOSize)
	}
	if p.MMIO32Size > 0 {
		crs.dwordMemory(p.MMIO32Base, p.MMIO32Size)
	}
	if p.MMIO64Size > 0 {
		crs.qwordMemory(false, p.MMIO64Base, p.MMIO64Size)
	}
	terms := [][]byte{
		a.name("_HID", a.eisaID(pnpPCIe)),
		a.name("_CID", a.eisaID(pnpPCI)),
		a.name("_SEG", a.integer(0)),
		a.name("_BBN", a.integer(uint64(p.BusStart))),
		a.name("_UID", a.integer(0)),
		a.name("_CRS", a.resourceTemplate(crs)),
	}
	if p.INTx != [4]uint32{} {
		terms = append(terms, a.name("_PRT", prt(a, p)))
	}
	return a.device(pciDevice, terms...)
}

// prt is the _PRT package: for devices 1-31 (device 0 is the bridge) and
// pins INTA#-INTD#, Package(){address 0xDDDDFFFF (any function), pin,
// source 0 (a global interrupt, not a link device), GSI}.
func prt(a *aml, p *PCIHostBridge) []byte {
	var entries [][]byte
	for d := uint64(1); d < 32; d++ {
		for pin := uint64(0); pin < 4; pin++ {
			gsi := uint64(p.INTx[(d+pin)%4])
			entries = append(entries, a.pkg(a.integer(d<<16|0xffff), a.integer(pin), a.integer(0), a.integer(gsi)))
		}
	}
	return a.pkg(entries...)
}

// motherboardResources is Device(MRES), a PNP0C02 device whose _CRS is the
// ECAM area of the bridge's buses.
func motherboardResources(a *aml, p *PCIHostBridge) []byte {
	base, size := p.ecam()
	crs := &resourceTemplate{}
	if base+size <= 1<<32 {
		crs.memory32Fixed(uint32(base), uint32(size))
	} else {
		crs.qwordMemory(true, base, size)
	}
	return a.device(resDevice,
		a.name("_HID", a.eisaID(pnpMBResrc)),
		a.name("_UID", a.integer(0)),
		a.name("_CRS", a.resourceTemplate(crs)),
	)
}
