package acpi

import (
	"bytes"
	"strings"
	"testing"
)

const testBase = 0xE0000

// testConfig is a typical paddock VM: 2 CPUs, PM block at 0x600, reset via
// 0xCF9, PCI with ECAM at 0xB0000000 and 32/64-bit windows, a GED on GSI
// 20 with its register at 0x610, and a generation ID at 0xEF000.
func testConfig() Config {
	return Config{
		CPUs: 2, IOAPICAddr: 0xFEC00000, IOAPICID: 0, LAPICAddr: 0xFEE00000, SCI: 9,
		PM1aEventPort: 0x600, PM1aCtrlPort: 0x604, ResetPort: 0xCF9, ResetValue: 0x06, SleepTypeS5: 5,
		HasRTC: true, HasI8042: true,
		PCI: &PCIHostBridge{
			ECAMBase: 0xB0000000, BusStart: 0, BusEnd: 255,
			IOBase: 0x1000, IOSize: 0xF000,
			MMIO32Base: 0xC0000000, MMIO32Size: 0x3EC00000,
			MMIO64Base: 0x80_0000_0000, MMIO64Size: 0x80_0000_0000,
			INTx: [4]uint32{16, 17, 18, 19},
		},
		GED:     &GED{GSI: 20, Port: 0x610},
		VMGenID: &VMGenID{Addr: 0xEF000, Event: 0},
	}
}

// acpiTables is a blob taken apart by following its pointers from the RSDP.
type acpiTables struct {
	rsdp   []byte
	tables map[string][]byte // by signature: the XSDT's tables, XSDT, DSDT, FACS
	addr   map[string]uint64
	order  []string // signatures in XSDT order
}

// parseBlob follows RSDP -> XSDT -> tables and FADT -> FACS/DSDT in blob
// (loaded at base), failing the test on any pointer outside the blob.
func parseBlob(t *testing.T, blob []byte, base uint64) *acpiTables {
	t.Helper()
	at := func(addr, n uint64, what string) []byte {
		t.Helper()
		if addr < base || addr-base+n > uint64(len(blob)) {
			t.Fatalf("%s at %#x (+%d) lies outside the blob %#x-%#x", what, addr, n, base, base+uint64(len(blob)))
		}
		return blob[addr-base : addr-base+n]
	}
	table := func(addr uint64, what string) []byte {
		t.Helper()
		l := le.Uint32(at(addr, 8, what)[4:])
		return at(addr, uint64(l), what)
	}
	p := &acpiTables{rsdp: at(base, 36, "RSDP"), tables: map[string][]byte{}, addr: map[string]uint64{}}
	add := func(sig string, addr uint64) []byte {
		t.Helper()
		var tb []byte
		if sig == "FACS" {
			tb = at(addr, 64, sig)
		} else {
			tb = table(addr, sig)
		}
		if got := string(tb[:4]); got != sig {
			t.Fatalf("table at %#x has signature %q, want %q", addr, got, sig)
		}
		p.tables[sig], p.addr[sig] = tb, addr
		return tb
	}
	xsdt := add("XSDT", le.Uint64(p.rsdp[24:]))
	for off := 36; off+8 <= len(xsdt); off += 8 {
		addr := le.Uint64(xsdt[off:])
		sig := string(at(addr, 4, "XSDT entry"))
		p.order = append(p.order, sig)
		add(sig, addr)
	}
	fadt := p.tables["FACP"]
	if fadt == nil {
		t.Fatal("the XSDT lists no FADT")
	}
	add("FACS", le.Uint64(fadt[132:]))
	add("DSDT", le.Uint64(fadt[140:]))
	return p
}

func TestBuildLayout(t *testing.T) {
	blob, rsdp, err := Build(testConfig(), testBase)
	if err != nil {
		t.Fatal(err)
	}
	if rsdp != testBase {
		t.Errorf("RSDP at %#x, want the base %#x", rsdp, testBase)
	}
	p := parseBlob(t, blob, testBase)
	if got := strings.Join(p.order, ","); got != "FACP,APIC,MCFG" {
		t.Errorf("XSDT lists %s, want FACP,APIC,MCFG", got)
	}
	// RSDP: signature, both checksums, revision 2, length, no RSDT.
	r := p.rsdp
	if string(r[:8]) != "RSD PTR " || sum(r[:20]) != 0 || sum(r[:36]) != 0 || r[15] != 2 ||
		le.Uint32(r[20:]) != 36 || le.Uint32(r[16:]) != 0 || string(r[9:15]) != "PADDCK" {
		t.Errorf("RSDP = % x", r)
	}
	for sig, tb := range p.tables {
		if sig == "FACS" {
			continue // no checksum, no standard header
		}
		if sum(tb) != 0 {
			t.Errorf("%s: bytes sum to %#x, not 0", sig, sum(tb))
		}
		if string(tb[10:16]) != "PADDCK" || string(tb[16:24]) != "PADDOCK " || string(tb[28:32]) != "PDCK" ||
			le.Uint32(tb[24:]) != 1 || le.Uint32(tb[32:]) != 1 {
			t.Errorf("%s: header ids % x", sig, tb[8:36])
		}
		if p.addr[sig]%16 != 0 {
			t.Errorf("%s at %#x is not 16-byte aligned", sig, p.addr[sig])
		}
	}
	revisions := map[string]byte{"XSDT": 1, "FACP": 6, "DSDT": 2, "APIC": 5, "MCFG": 1}
	lengths := map[string]int{"XSDT": 36 + 3*8, "FACP": 276, "MCFG": 60, "APIC": 44 + 2*8 + 12 + 2*10 + 6}
	for sig, rev := range revisions {
		if got := p.tables[sig][8]; got != rev {
			t.Errorf("%s revision %d, want %d", sig, got, rev)
		}
		if want, ok := lengths[sig]; ok && len(p.tables[sig]) != want {
			t.Errorf("%s length %d, want %d", sig, len(p.tables[sig]), want)
		}
	}
	facs := p.tables["FACS"]
	if p.addr["FACS"]%64 != 0 || le.Uint32(facs[4:]) != 64 || facs[32] != 2 || !allZero(facs[8:32]) || !allZero(facs[33:]) {
		t.Errorf("FACS at %#x: % x", p.addr["FACS"], facs)
	}
	// Tables do not overlap.
	type rng struct{ s, e uint64 }
	var seen []rng
	for sig, tb := range p.tables {
		r := rng{p.addr[sig], p.addr[sig] + uint64(len(tb))}
		for _, o := range seen {
			if r.s < o.e && o.s < r.e {
				t.Errorf("%s overlaps another table", sig)
			}
		}
		seen = append(seen, r)
	}
}

func allZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }

func TestFADT(t *testing.T) {
	for _, c := range []struct {
		name     string
		mod      func(*Config)
		bootArch uint16
		flags    uint32
	}{
		// Legacy devices | 8042 | no VGA.
		{"RTC and i8042", nil, 0x0007, 0x00000465},
		// No VGA | no CMOS RTC; legacy devices clear.
		{"no legacy devices", func(c *Config) { c.HasRTC, c.HasI8042 = false, false }, 0x0024, 0x00000465},
		{"RTC only", func(c *Config) { c.HasI8042 = false }, 0x0005, 0x00000465},
		// Nine CPUs: FORCE_APIC_PHYSICAL_DESTINATION_MODE.
		{"9 CPUs", func(c *Config) { c.CPUs = 9 }, 0x0007, 0x00080465},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			if c.mod != nil {
				c.mod(&cfg)
			}
			blob, _, err := Build(cfg, testBase)
			if err != nil {
				t.Fatal(err)
			}
			p := parseBlob(t, blob, testBase)
			f := p.tables["FACP"]
			u8 := func(off int) uint64 { return uint64(f[off]) }
			u16 := func(off int) uint64 { return uint64(le.Uint16(f[off:])) }
			u32 := func(off int) uint64 { return uint64(le.Uint32(f[off:])) }
			u64 := func(off int) uint64 { return le.Uint64(f[off:]) }
			gas := func(off int) string { return string(f[off : off+4]) }
			for _, fc := range []struct {
				name      string
				got, want uint64
			}{
				{"36 FIRMWARE_CTRL (zero: X_FIRMWARE_CTRL is used)", u32(36), 0},
				{"40 DSDT", u32(40), p.addr["DSDT"]},
				{"45 Preferred_PM_Profile", u8(45), 0},
				{"46 SCI_INT", u16(46), 9},
				{"48 SMI_CMD (none: always in ACPI mode)", u32(48), 0},
				{"52 ACPI_ENABLE", u8(52), 0},
				{"56 PM1a_EVT_BLK", u32(56), 0x600},
				{"60 PM1b_EVT_BLK", u32(60), 0},
				{"64 PM1a_CNT_BLK", u32(64), 0x604},
				{"76 PM_TMR_BLK (none)", u32(76), 0},
				{"80 GPE0_BLK (none)", u32(80), 0},
				{"88 PM1_EVT_LEN", u8(88), 4},
				{"89 PM1_CNT_LEN", u8(89), 2},
				{"91 PM_TMR_LEN", u8(91), 0},
				{"96 P_LVL2_LAT (C2 unsupported)", u16(96), 0xFFF},
				{"98 P_LVL3_LAT (C3 unsupported)", u16(98), 0xFFF},
				{"108 CENTURY", u8(108), 0},
				{"109 IAPC_BOOT_ARCH", u16(109), uint64(c.bootArch)},
				{"112 Flags", u32(112), uint64(c.flags)},
				{"120 RESET_REG address", u64(120), 0xCF9},
				{"128 RESET_VALUE", u8(128), 6},
				{"131 FADT minor version", u8(131), 5},
				{"132 X_FIRMWARE_CTRL", u64(132), p.addr["FACS"]},
				{"140 X_DSDT", u64(140), p.addr["DSDT"]},
				{"152 X_PM1a_EVT_BLK address", u64(152), 0x600},
				{"164 X_PM1b_EVT_BLK address", u64(164), 0},
				{"176 X_PM1a_CNT_BLK address", u64(176), 0x604},
				{"212 X_PM_TMR_BLK address", u64(212), 0},
				{"244 SLEEP_CONTROL_REG (not hardware-reduced)", u64(248), 0},
			} {
				if fc.got != fc.want {
					t.Errorf("FADT %s = %#x, want %#x", fc.name, fc.got, fc.want)
				}
			}
			// GAS: space (1 = system I/O), bit width, bit offset, access size.
			for _, g := range []struct {
				name string
				off  int
				want string
			}{
				{"RESET_REG", 116, "\x01\x08\x00\x01"},
				{"X_PM1a_EVT_BLK", 148, "\x01\x20\x00\x02"},
				{"X_PM1a_CNT_BLK", 172, "\x01\x10\x00\x02"},
				{"X_PM_TMR_BLK", 208, "\x00\x00\x00\x00"},
			} {
				if got := gas(g.off); got != g.want {
					t.Errorf("FADT %s GAS = % x, want % x", g.name, got, g.want)
				}
			}
			if f[112]&(1<<4) != 0 {
				t.Errorf("PWR_BUTTON flag set: the power button must be a fixed feature")
			}
			if f[114]&(1<<4) != 0 {
				t.Errorf("HW_REDUCED_ACPI set")
			}
			if string(f[268:276]) != "PADDCKVM" {
				t.Errorf("hypervisor vendor id %q", f[268:276])
			}
		})
	}
}

// madtEntry is one interrupt controller structure.
type madtEntry struct {
	typ  byte
	body []byte // after type and length
}

func parseMADT(t *testing.T, m []byte) []madtEntry {
	t.Helper()
	var out []madtEntry
	for off := 44; off < len(m); {
		if off+2 > len(m) || m[off+1] < 2 || off+int(m[off+1]) > len(m) {
			t.Fatalf("MADT structure at %d runs past the table", off)
		}
		out = append(out, madtEntry{m[off], m[off+2 : off+int(m[off+1])]})
		off += int(m[off+1])
	}
	return out
}

func TestMADT(t *testing.T) {
	for _, cpus := range []int{1, 4, 255} {
		cfg := testConfig()
		cfg.CPUs, cfg.IOAPICID = cpus, 0xF0
		blob, _, err := Build(cfg, testBase)
		if err != nil {
			t.Fatal(err)
		}
		m := parseBlob(t, blob, testBase).tables["APIC"]
		if le.Uint32(m[36:]) != 0xFEE00000 || le.Uint32(m[40:]) != 1 {
			t.Errorf("%d CPUs: LAPIC address %#x flags %#x, want 0xFEE00000 and PCAT_COMPAT", cpus, le.Uint32(m[36:]), le.Uint32(m[40:]))
		}
		var lapics, ioapics, nmis int
		var overrides [][]byte
		for _, e := range parseMADT(t, m) {
			switch e.typ {
			case 0: // processor local APIC: UID, APIC ID, flags
				if len(e.body) != 6 || int(e.body[0]) != lapics || int(e.body[1]) != lapics || le.Uint32(e.body[2:]) != 1 {
					t.Errorf("%d CPUs: local APIC %d = % x", cpus, lapics, e.body)
				}
				lapics++
			case 1: // I/O APIC: id, reserved, address, GSI base
				if !bytes.Equal(e.body, []byte{0xF0, 0, 0x00, 0x00, 0xC0, 0xFE, 0, 0, 0, 0}) {
					t.Errorf("I/O APIC = % x", e.body)
				}
				ioapics++
			case 2:
				overrides = append(overrides, e.body)
			case 4: // local APIC NMI: all processors, flags, LINT1
				if !bytes.Equal(e.body, []byte{0xFF, 0, 0, 1}) {
					t.Errorf("LAPIC NMI = % x", e.body)
				}
				nmis++
			default:
				t.Errorf("unexpected MADT structure type %d", e.typ)
			}
		}
		if lapics != cpus || ioapics != 1 || nmis != 1 {
			t.Errorf("%d CPUs: %d local APICs, %d I/O APICs, %d NMI entries", cpus, lapics, ioapics, nmis)
		}
		// bus 0 (ISA), source IRQ, GSI, flags.
		want := [][]byte{
			{0, 0, 2, 0, 0, 0, 0x00, 0x00}, // IRQ0 -> GSI2, conforming
			{0, 9, 9, 0, 0, 0, 0x0D, 0x00}, // SCI: active high (01), level (11)
		}
		if len(overrides) != 2 || !bytes.Equal(overrides[0], want[0]) || !bytes.Equal(overrides[1], want[1]) {
			t.Errorf("interrupt source overrides = % x, want % x", overrides, want)
		}
	}
}

func TestMCFGAndNoPCI(t *testing.T) {
	cfg := testConfig()
	cfg.PCI.BusStart, cfg.PCI.BusEnd = 0, 63
	blob, _, err := Build(cfg, testBase)
	if err != nil {
		t.Fatal(err)
	}
	p := parseBlob(t, blob, testBase)
	m := p.tables["MCFG"]
	want := []byte{0, 0, 0, 0, 0, 0, 0, 0, // reserved
		0x00, 0x00, 0x00, 0xB0, 0, 0, 0, 0, // base
		0, 0, // segment
		0, 63, // buses
		0, 0, 0, 0}
	if !bytes.Equal(m[36:], want) {
		t.Errorf("MCFG body = % x, want % x", m[36:], want)
	}
	dsdt := p.tables["DSDT"]
	// Memory32Fixed(ReadWrite, 0xB0000000, 64 MiB) reserves the ECAM of buses 0-63.
	if !bytes.Contains(dsdt, []byte{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xB0, 0x00, 0x00, 0x00, 0x04}) {
		t.Errorf("DSDT does not reserve the ECAM area of buses 0-63")
	}

	cfg.PCI, cfg.GED, cfg.VMGenID = nil, nil, nil
	blob, _, err = Build(cfg, testBase)
	if err != nil {
		t.Fatal(err)
	}
	p = parseBlob(t, blob, testBase)
	if got := strings.Join(p.order, ","); got != "FACP,APIC" {
		t.Errorf("without PCI the XSDT lists %s", got)
	}
	if bytes.Contains(p.tables["DSDT"], []byte("PCI0")) || bytes.Contains(p.tables["DSDT"], []byte("_SB_")) {
		t.Errorf("DSDT without PCI and GED has a PCI0 device or an \\_SB scope")
	}
	// Just \_S5 = Package(4){5, 5, 0, 0}.
	s5 := []byte{0x08, '\\', '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00}
	if !bytes.Equal(p.tables["DSDT"][36:], s5) {
		t.Errorf("DSDT body = % x, want % x", p.tables["DSDT"][36:], s5)
	}
}

func TestECAMAbove4GiB(t *testing.T) {
	cfg := testConfig()
	cfg.PCI.ECAMBase, cfg.PCI.BusStart, cfg.PCI.BusEnd = 0x40_0000_0000, 16, 31
	blob, _, err := Build(cfg, testBase)
	if err != nil {
		t.Fatal(err)
	}
	p := parseBlob(t, blob, testBase)
	// QWordMemory(ResourceConsumer, ..., base 0x40_0100_0000, 16 MiB).
	q := (&resourceTemplate{}).qwordMemory(true, 0x40_0100_0000, 16<<20).b
	if !bytes.Contains(p.tables["DSDT"], q) {
		t.Errorf("DSDT does not reserve the 64-bit ECAM area with a QWordMemory")
	}
	if got := le.Uint64(p.tables["MCFG"][44:]); got != 0x40_0000_0000 {
		t.Errorf("MCFG base %#x", got)
	}
	// _BBN is the first bus.
	if !bytes.Contains(p.tables["DSDT"], []byte{0x08, '_', 'B', 'B', 'N', 0x0A, 16}) {
		t.Errorf("DSDT has no Name(_BBN, 16)")
	}
}

func TestBuildErrors(t *testing.T) {
	if _, _, err := Build(testConfig(), 0); err == nil || !strings.Contains(err.Error(), "base 0x0: must be non-zero") {
		t.Errorf("base 0: error %v", err)
	}
	for _, c := range []struct {
		name string
		mod  func(*Config)
		base uint64
		want []string
	}{
		{"no CPUs", func(c *Config) { c.CPUs = 0 }, 0, []string{"CPUs = 0: must be 1 to 255"}},
		{"256 CPUs", func(c *Config) { c.CPUs = 256 }, 0, []string{"CPUs = 256"}},
		{"SCI 0", func(c *Config) { c.SCI = 0 }, 0, []string{"SCI = 0"}},
		{"SCI 2", func(c *Config) { c.SCI = 2 }, 0, []string{"SCI = 2"}},
		{"SCI 20", func(c *Config) { c.SCI = 20 }, 0, []string{"SCI = 20"}},
		{"S5 type", func(c *Config) { c.SleepTypeS5 = 8 }, 0, []string{"SleepTypeS5 = 8"}},
		{"no addresses", func(c *Config) { c.IOAPICAddr, c.LAPICAddr = 0, 0 }, 0, []string{"IOAPICAddr is 0", "LAPICAddr is 0"}},
		{"no PM port", func(c *Config) { c.PM1aEventPort = 0 }, 0, []string{"PM1aEventPort = 0x0"}},
		{"PM ports overlap", func(c *Config) { c.PM1aCtrlPort = 0x602 }, 0, []string{"PM1aCtrlPort 0x602-0x603 overlaps PM1aEventPort 0x600-0x603"}},
		{"reset in PM block", func(c *Config) { c.ResetPort = 0x605 }, 0, []string{"ResetPort 0x605-0x605 overlaps PM1aCtrlPort"}},
		{"PM port at the top", func(c *Config) { c.PM1aEventPort = 0xFFFE }, 0, []string{"PM1aEventPort = 0xfffe"}},
		{"unaligned base", nil, 0xE0008, []string{"base 0xe0008"}},
		{"low base", nil, 16, nil}, // fine: non-zero and aligned
		{"above 4 GiB", nil, 0xFFFFFF00, []string{"above 4 GiB"}},
		{"bus range", func(c *Config) { c.PCI.BusStart, c.PCI.BusEnd = 5, 4 }, 0, []string{"PCI.BusStart 5 is above BusEnd 4"}},
		{"ECAM unaligned", func(c *Config) { c.PCI.ECAMBase = 0xB0001000 }, 0, []string{"PCI.ECAMBase 0xb0001000"}},
		{"I/O window over 0xCF8", func(c *Config) { c.PCI.IOBase, c.PCI.IOSize = 0xC000, 0x1000 }, 0, nil},
		{"I/O window over config ports", func(c *Config) { c.PCI.IOBase, c.PCI.IOSize = 0x0C00, 0x1000 }, 0, []string{"overlaps the configuration ports"}},
		{"I/O window past 0xFFFF", func(c *Config) { c.PCI.IOBase, c.PCI.IOSize = 0xF000, 0xF000 }, 0, []string{"runs past port 0xFFFF"}},
		{"MMIO32 past 4 GiB", func(c *Config) { c.PCI.MMIO32Base, c.PCI.MMIO32Size = 0xF0000000, 0x20000000 }, 0, []string{"runs past 4 GiB"}},
		{"MMIO64 wraps", func(c *Config) { c.PCI.MMIO64Base = ^uint64(0) - 10 }, 0, []string{"wraps around"}},
		{"MMIO32 over ECAM", func(c *Config) { c.PCI.MMIO32Base = 0xA0000000 }, 0, []string{"MMIO32Base window 0xa0000000-0xdebfffff overlaps the ECAM area"}},
		{"windows overlap", func(c *Config) { c.PCI.MMIO64Base, c.PCI.MMIO64Size = 0xC1000000, 0x1000000 }, 0, []string{"MMIO32 and MMIO64 windows overlap"}},
		{"INTx partly routed", func(c *Config) { c.PCI.INTx = [4]uint32{16, 0, 18, 19} }, 0, []string{"PCI.INTx[1] is 0"}},
		{"no INTx routing", func(c *Config) { c.PCI.INTx = [4]uint32{} }, 0, nil},
		{"several at once", func(c *Config) { c.CPUs, c.SCI = 0, 0 }, 0, []string{"CPUs = 0", "SCI = 0"}},
		{"GED on the SCI", func(c *Config) { c.GED.GSI = 9 }, 0, []string{"GED.GSI = 9"}},
		{"GED on GSI 0", func(c *Config) { c.GED.GSI = 0 }, 0, []string{"GED.GSI = 0"}},
		{"GED port in the PM block", func(c *Config) { c.GED.Port = 0x605 }, 0, []string{"GED.Port 0x605-0x605 overlaps PM1aCtrlPort"}},
		{"GED port 0", func(c *Config) { c.GED.Port = 0 }, 0, []string{"GED.Port = 0x0"}},
		{"VMGenID without GED", func(c *Config) { c.GED = nil }, 0, []string{"VMGenID needs a GED"}},
		{"VMGenID unaligned", func(c *Config) { c.VMGenID.Addr = 0xEF004 }, 0, []string{"VMGenID.Addr 0xef004"}},
		{"VMGenID at 0", func(c *Config) { c.VMGenID.Addr = 0 }, 0, []string{"VMGenID.Addr 0x0"}},
		{"VMGenID wraps", func(c *Config) { c.VMGenID.Addr = ^uint64(7) }, 0, []string{"not wrap around"}},
		{"VMGenID event 8", func(c *Config) { c.VMGenID.Event = 8 }, 0, []string{"VMGenID.Event = 8"}},
		{"GED alone", func(c *Config) { c.VMGenID = nil }, 0, nil},
		{"neither", func(c *Config) { c.GED, c.VMGenID = nil, nil }, 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			if c.mod != nil {
				c.mod(&cfg)
			}
			base := c.base
			if base == 0 {
				base = testBase
			}
			_, _, err := Build(cfg, base)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// BenchmarkBuild measures building the tables of a 2-CPU PCI machine, part
// of the VMM's start-up.
func BenchmarkBuild(b *testing.B) {
	cfg := testConfig()
	for range b.N {
		if _, _, err := Build(cfg, testBase); err != nil {
			b.Fatal(err)
		}
	}
}
