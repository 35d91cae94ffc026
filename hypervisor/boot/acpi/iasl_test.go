package acpi

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// The oracle for these tests is ACPICA, the ACPI implementation inside
// Linux: iasl disassembles and compiles tables, acpiexec loads them into
// ACPICA's table manager and interpreter. Both come with the Debian package
// acpica-tools.

func lookTool(t *testing.T, name string) string {
	t.Helper()
	return testenv.RequireTool(t, name, "acpica-tools")
}

// writeTables writes each table of blob to DIR/SIG.dat and returns the paths.
func writeTables(t *testing.T, p *acpiTables) map[string]string {
	t.Helper()
	dir := t.TempDir()
	paths := map[string]string{}
	for sig, tb := range p.tables {
		paths[sig] = filepath.Join(dir, sig+".dat")
		if err := os.WriteFile(paths[sig], tb, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

var spaces = regexp.MustCompile(`[ \t]+`)

func TestTablesDisassembleWithIASL(t *testing.T) {
	iasl := lookTool(t, "iasl")
	cfg := testConfig()
	cfg.CPUs = 3
	blob, _, err := Build(cfg, testBase)
	if err != nil {
		t.Fatal(err)
	}
	p := parseBlob(t, blob, testBase)
	paths := writeTables(t, p)
	want := map[string][]string{
		"FACP": {
			"Revision : 06", "FADT Minor Revision : 05", "SCI Interrupt : 0009",
			"PM1A Event Block Address : 00000600", "PM1A Control Block Address : 00000604",
			"PM1 Event Block Length : 04", "PM1 Control Block Length : 02", "PM Timer Block Length : 00",
			"Control Method Power Button (V1) : 0", "Reset Register Supported (V2) : 1", "Hardware Reduced (V5) : 0",
			"8042 Present on ports 60/64 (V2) : 1", "VGA Not Present (V4) : 1", "CMOS RTC Not Present (V5) : 0",
			"Value to cause reset : 06", "Address : 0000000000000CF9",
			fmt.Sprintf("DSDT Address : %016X", p.addr["DSDT"]), fmt.Sprintf("FACS Address : %016X", p.addr["FACS"]),
		},
		"APIC": {
			"Local Apic Address : FEE00000", "PC-AT Compatibility : 1", "Local Apic ID : 02",
			"I/O Apic ID : 00", "Address : FEC00000", "Source : 09", "Trigger Mode : 3", "Interrupt Input LINT : 01",
		},
		"MCFG": {"Base Address : 00000000B0000000", "Start Bus Number : 00", "End Bus Number : FF"},
		"FACS": {"Length : 00000040", "Version : 02"},
		"XSDT": {
			fmt.Sprintf("ACPI Table Address 0 : %016X", p.addr["FACP"]),
			fmt.Sprintf("ACPI Table Address 2 : %016X", p.addr["MCFG"]),
		},
		"DSDT": {
			`Name (\_S5, Package (0x04)`, `Device (PCI0)`, `Name (_HID, EisaId ("PNP0A08")`, `Name (_CID, EisaId ("PNP0A03")`,
			"WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,",
			"IO (Decode16, 0x0CF8, // Range Minimum",
			"WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,",
			"DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,",
			"QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite,",
			`Name (_HID, EisaId ("PNP0C02")`, "Memory32Fixed (ReadWrite, 0xB0000000, // Address Base",
			`Device (GED)`, `Name (_HID, "ACPI0013" /* Generic Event Device */)`, "Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive, ,, ) { 0x00000014, }",
			"OperationRegion (GDST, SystemIO, 0x0610, One)", "Field (GDST, ByteAcc, NoLock, Preserve) { GDAT, 8 }",
			"Method (_EVT, 1, Serialized)", "Local0 = GDAT", `Notify (\_SB.VGEN, 0x80)`,
			`Device (VGEN)`, `Name (_HID, "VMGENCTR")`, `Name (_CID, "VM_Gen_Counter")`, `Name (ADDR, Package (0x02) { 0x000EF000, Zero })`,
		},
	}
	for sig, path := range paths {
		out, err := exec.Command(iasl, "-d", path).CombinedOutput()
		if err != nil {
			t.Fatalf("iasl -d %s: %v\n%s", sig, err, out)
		}
		dsl, err := os.ReadFile(strings.TrimSuffix(path, ".dat") + ".dsl")
		if err != nil {
			t.Fatal(err)
		}
		text := spaces.ReplaceAllString(strings.ReplaceAll(string(dsl), "\n", " "), " ")
		for _, bad := range []string{"Incorrect checksum", "Invalid", "Error", "Unknown"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s: iasl output mentions %q:\n%s", sig, bad, dsl)
			}
		}
		for _, w := range want[sig] {
			if !strings.Contains(text, w) {
				t.Errorf("%s: iasl's disassembly has no %q", sig, w)
			}
		}
	}
}

// aslInt writes an integer the way iasl encodes it without optimisation:
// the Zero and One keywords become ZeroOp and OneOp, other literals a
// constant of their own size.
func aslInt(v uint64) string {
	switch v {
	case 0:
		return "Zero"
	case 1:
		return "One"
	}
	return fmt.Sprintf("0x%X", v)
}

// dsdtASL is the ASL for the DSDT Build makes from cfg, written by hand
// from the ACPI spec's ASL definitions.
func dsdtASL(cfg Config) string {
	s5 := aslInt(uint64(cfg.SleepTypeS5))
	asl := fmt.Sprintf(`DefinitionBlock ("", "DSDT", 2, "PADDCK", "PADDOCK ", 1)
{
    Name (\_S5, Package (4) { %s, %s, Zero, Zero })
`, s5, s5)
	if cfg.PCI != nil || cfg.GED != nil {
		asl += "    Scope (\\_SB)\n    {\n"
	}
	if p := cfg.PCI; p != nil {
		last := func(base, size uint64) uint64 { return base + size - 1 }
		ecamBase := p.ECAMBase + uint64(p.BusStart)<<20
		ecamSize := (uint64(p.BusEnd) - uint64(p.BusStart) + 1) << 20
		ecam := fmt.Sprintf("Memory32Fixed (ReadWrite, 0x%X, 0x%X)", ecamBase, ecamSize)
		if ecamBase+ecamSize > 1<<32 {
			ecam = fmt.Sprintf("QWordMemory (ResourceConsumer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite, 0, 0x%X, 0x%X, 0, 0x%X)",
				ecamBase, last(ecamBase, ecamSize), ecamSize)
		}
		asl += fmt.Sprintf(`        Device (PCI0)
        {
            Name (_HID, EisaId ("PNP0A08"))
            Name (_CID, EisaId ("PNP0A03"))
            Name (_SEG, Zero)
            Name (_BBN, %s)
            Name (_UID, Zero)
            Name (_CRS, ResourceTemplate ()
            {
                WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, %d, %d, 0, %d)
                IO (Decode16, 0x0CF8, 0x0CF8, 1, 8)
                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, 0x%X, 0x%X, 0, 0x%X)
                DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0, 0x%X, 0x%X, 0, 0x%X)
                QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite, 0, 0x%X, 0x%X, 0, 0x%X)
            })
%s        }
        Device (MRES)
        {
            Name (_HID, EisaId ("PNP0C02"))
            Name (_UID, Zero)
            Name (_CRS, ResourceTemplate () { %s })
        }
`, aslInt(uint64(p.BusStart)), p.BusStart, p.BusEnd, int(p.BusEnd)-int(p.BusStart)+1,
			p.IOBase, last(uint64(p.IOBase), uint64(p.IOSize)), p.IOSize,
			p.MMIO32Base, last(uint64(p.MMIO32Base), uint64(p.MMIO32Size)), p.MMIO32Size,
			p.MMIO64Base, last(p.MMIO64Base, p.MMIO64Size), p.MMIO64Size, prtASL(p), ecam)
	}
	if g := cfg.GED; g != nil {
		notify := ""
		if v := cfg.VMGenID; v != nil {
			notify = fmt.Sprintf("                If ((Local0 & %s)) { Notify (\\_SB.VGEN, 0x80) }\n", aslInt(1<<v.Event))
		}
		asl += fmt.Sprintf(`        Device (GED)
        {
            Name (_HID, "ACPI0013")
            Name (_UID, Zero)
            Name (_CRS, ResourceTemplate () { Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) { %d } })
            OperationRegion (GDST, SystemIO, 0x%X, One)
            Field (GDST, ByteAcc, NoLock, Preserve) { GDAT, 8 }
            Method (_EVT, 1, Serialized)
            {
                Local0 = GDAT
%s            }
        }
`, g.GSI, g.Port, notify)
	}
	if v := cfg.VMGenID; v != nil {
		asl += fmt.Sprintf(`        Device (VGEN)
        {
            Name (_HID, "VMGENCTR")
            Name (_CID, "VM_Gen_Counter")
            Name (_DDN, "VM_Gen_Counter")
            Name (ADDR, Package (2) { %s, %s })
        }
`, aslInt(v.Addr&0xFFFF_FFFF), aslInt(v.Addr>>32))
	}
	if cfg.PCI != nil || cfg.GED != nil {
		asl += "    }\n"
	}
	return asl + "}\n"
}

// prtASL is the _PRT of p, as ASL lines, or "" without INTx routing.
func prtASL(p *PCIHostBridge) string {
	if p.INTx == [4]uint32{} {
		return ""
	}
	var b strings.Builder
	b.WriteString("            Name (_PRT, Package (0x7C)\n            {\n")
	for d := uint64(1); d < 32; d++ {
		for pin := uint64(0); pin < 4; pin++ {
			fmt.Fprintf(&b, "                Package (4) { 0x%X, %s, Zero, %s },\n", d<<16|0xffff, aslInt(pin), aslInt(uint64(p.INTx[(d+pin)%4])))
		}
	}
	b.WriteString("            })\n")
	return b.String()
}

// TestDSDTMatchesIASL compiles hand-written ASL for the same DSDT with
// iasl (optimisations off) and compares the AML byte for byte. The only
// bytes allowed to differ are resource template End Tag checksums, which
// iasl leaves 0 ("no checksum") and Build computes.
func TestDSDTMatchesIASL(t *testing.T) {
	iasl := lookTool(t, "iasl")
	ecam64 := testConfig()
	ecam64.PCI.ECAMBase, ecam64.PCI.BusStart, ecam64.PCI.BusEnd = 0x40_0000_0000, 8, 15
	noPCI := testConfig()
	noPCI.PCI = nil
	highID := testConfig()
	highID.VMGenID = &VMGenID{Addr: 0x1_2345_6780, Event: 3}
	gedOnly := testConfig()
	gedOnly.VMGenID = nil
	bare := noPCI
	bare.GED, bare.VMGenID = nil, nil
	for name, cfg := range map[string]Config{"pci": testConfig(), "ecam above 4 GiB": ecam64, "no pci": noPCI,
		"generation ID above 4 GiB": highID, "GED without generation ID": gedOnly, "neither PCI nor GED": bare} {
		t.Run(name, func(t *testing.T) {
			blob, _, err := Build(cfg, testBase)
			if err != nil {
				t.Fatal(err)
			}
			ours := parseBlob(t, blob, testBase).tables["DSDT"]
			dir := t.TempDir()
			src := filepath.Join(dir, "dsdt.asl")
			if err := os.WriteFile(src, []byte(dsdtASL(cfg)), 0o644); err != nil {
				t.Fatal(err)
			}
			// -vw 6035 lets VGEN's _HID VMGENCTR through: iasl wants an
			// ACPI id's last four characters hex, but VMGENCTR is the id
			// Linux's vmgenid driver matches, and nothing checks it at
			// run time (TestTablesLoadInACPICA).
			out, err := exec.Command(iasl, "-oa", "-vw", "6035", "-p", filepath.Join(dir, "ref"), src).CombinedOutput()
			if err != nil {
				t.Fatalf("iasl: %v\n%s", err, out)
			}
			ref, err := os.ReadFile(filepath.Join(dir, "ref.aml"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours[:9], ref[:9]) || !bytes.Equal(ours[10:28], ref[10:28]) {
				t.Errorf("DSDT header % x, iasl's % x", ours[:28], ref[:28])
			}
			a, b := ours[headerLen:], ref[headerLen:]
			if len(a) != len(b) {
				t.Fatalf("AML is %d bytes, iasl's %d:\nours % x\niasl % x", len(a), len(b), a, b)
			}
			for i := range a {
				if a[i] != b[i] && !(i > 0 && b[i-1] == tagEnd && b[i] == 0) {
					t.Fatalf("AML differs from iasl's at byte %#x:\nours % x\niasl % x", i, a, b)
				}
			}
		})
	}
}

// TestTablesLoadInACPICA hands the tables to acpiexec, which parses them
// with the same ACPICA code Linux runs: FADT conversion and validation
// (where "32/64X address mismatch" and friends come from), namespace load,
// and evaluation of the objects Linux uses.
func TestTablesLoadInACPICA(t *testing.T) {
	acpiexec := lookTool(t, "acpiexec")
	blob, _, err := Build(testConfig(), testBase)
	if err != nil {
		t.Fatal(err)
	}
	p := parseBlob(t, blob, testBase)
	paths := writeTables(t, p)
	cmds := `evaluate \_S5; evaluate \_SB.PCI0._HID; evaluate \_SB.PCI0._BBN; evaluate \_SB.PCI0._CRS; evaluate \_SB.MRES._CRS; evaluate \_SB.PCI0._PRT;` +
		` evaluate \_SB.GED._HID; evaluate \_SB.GED._CRS; evaluate \_SB.GED._EVT 20; evaluate \_SB.VGEN._HID; evaluate \_SB.VGEN._CID; evaluate \_SB.VGEN.ADDR`
	out, err := exec.Command(acpiexec, "-b", cmds, paths["DSDT"], paths["FACP"], paths["APIC"], paths["MCFG"]).CombinedOutput()
	if err != nil {
		t.Fatalf("acpiexec: %v\n%s", err, out)
	}
	text := string(out)
	if m := regexp.MustCompile(`(?m)^.*(Firmware (Warning|Error|Bug)|ACPI (BIOS )?(Error|Warning|Exception)).*$`).FindAllString(text, -1); m != nil {
		t.Errorf("ACPICA complains:\n%s", strings.Join(m, "\n"))
	}
	// acpiexec prints from two threads, and now and then a newline lands
	// between a table message's "ACPI: " and the rest ("ACPI: " + "\n" +
	// "APIC 0x..." in one CI run).
	for _, sig := range []string{"FACP", "APIC", "MCFG"} {
		if !regexp.MustCompile(`ACPI:\s+` + sig + ` 0x`).MatchString(text) {
			t.Errorf("acpiexec did not list table %s:\n%s", sig, text)
		}
	}
	for _, w := range []string{
		"1 ACPI AML tables successfully acquired and loaded",
		"[Package] Contains 4 Elements:",
		"[Integer] = 0000000000000005",
		"[Integer] = 00000000080AD041", // EisaId("PNP0A08")
		"Evaluation of \\_SB.PCI0._CRS returned object",
		"86 09 00 01 00 00 00 B0 00 00 00 10 79", // the ECAM reservation
		"[Package] Contains 124 Elements:",       // _PRT: devices 1-31, 4 pins
		"[Integer] = 000000000001FFFF",           // device 1's address
		`[String] Length 08 = "ACPI0013"`,
		"89 06 00 01 01 14 00 00 00 79", // Interrupt(ResourceConsumer, Level, ActiveHigh, Exclusive){20}
		"No object was returned from evaluation of \\_SB.GED._EVT",
		`[String] Length 08 = "VMGENCTR"`,
		// ACPICA upper-cases the _CID, which makes it the id Linux's
		// vmgenid driver lists.
		`[String] Length 0E = "VM_GEN_COUNTER"`,
		"[Package] Contains 2 Elements:\n    [Integer] = 00000000000EF000\n    [Integer] = 0000000000000000",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("acpiexec output has no %q:\n%s", w, text)
		}
	}
}
