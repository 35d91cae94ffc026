package acpi

// Names in the DSDT.
const (
	pciDevice  = "PCI0"
	resDevice  = "MRES" // motherboard resources: the ECAM area
	pnpPCIe    = "PNP0A08"
	pnpPCI     = "PNP0A03"
	pnpMBResrc = "PNP0C02"
)

// buildDSDT returns the Differentiated System Description Table: \_S5 for
// power-off and, with PCI, the host bridge and the motherboard resource
// device that reserves its ECAM area (Linux accepts MMCONFIG only from a
// region E820 or a PNP0C01/PNP0C02 device reserves).
func buildDSDT(a *aml, cfg *Config) []byte {
	// \_S5: SLP_TYP for PM1a and PM1b (unused), then two reserved values.
	s5 := uint64(cfg.SleepTypeS5)
	body := a.name(`\_S5`, a.pkg(a.integer(s5), a.integer(s5), a.integer(0), a.integer(0)))
	if cfg.PCI != nil {
		body = append(body, a.scope(`\_SB`, pciHostBridge(a, cfg.PCI), motherboardResources(a, cfg.PCI))...)
	}
	return sdt("DSDT", dsdtRevision, body)
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
