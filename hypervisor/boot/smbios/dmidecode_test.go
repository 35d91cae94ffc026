package smbios

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// The oracle for these tests is dmidecode, the DMI decoder every Linux
// distribution ships, reading the tables from a dump file in its own
// --dump-bin format: the entry point at offset 0, the structure table at
// offset 32, the entry point's table address saying 32.

// dumpOffset is where dmidecode's dump format puts the table.
const dumpOffset = 32

// writeDump writes the tables cfg describes as a dmidecode dump led by
// the given entry point ("_SM3_" or "_SM_").
func writeDump(t *testing.T, cfg Config, anchor string) string {
	t.Helper()
	blob, err := Build(cfg, testBase)
	if err != nil {
		t.Fatal(err)
	}
	table := blob[tableOffset:]
	var ep []byte
	switch anchor {
	case "_SM3_":
		ep = entryPoint3(dumpOffset, len(table))
	case "_SM_":
		structs := parseTable(t, table)
		ep = entryPoint2(dumpOffset, len(table), len(structs), int(le.Uint16(blob[ep2Offset+0x08:])))
	}
	dump := make([]byte, dumpOffset, dumpOffset+len(table))
	copy(dump, ep)
	dump = append(dump, table...)
	path := filepath.Join(t.TempDir(), "dmi.bin")
	if err := os.WriteFile(path, dump, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDmidecode(t *testing.T) {
	dmidecode := testenv.RequireTool(t, "dmidecode", "dmidecode")
	testenv.Declare(t, testenv.Oracle)
	cfg := Config{UUID: testUUID, CPUs: 4, Version: "0.9.1"}
	for _, tc := range []struct{ anchor, present string }{
		// The 64-bit entry point carries the docrev and no count.
		{"_SM3_", "SMBIOS 3.0.0 present.\n"},
		{"_SM_", "SMBIOS 3.0 present.\n6 structures occupying"},
	} {
		anchor := tc.anchor
		t.Run(strings.Trim(anchor, "_"), func(t *testing.T) {
			path := writeDump(t, cfg, anchor)
			out, err := exec.Command(dmidecode, "--from-dump", path).CombinedOutput()
			if err != nil {
				t.Fatalf("dmidecode --from-dump: %v\n%s", err, out)
			}
			text := regexp.MustCompile(`[ \t]+`).ReplaceAllString(string(out), " ")
			for _, want := range []string{
				tc.present,
				"Handle 0x0000, DMI type 0, 24 bytes",
				"BIOS Information\n Vendor: paddock\n Version: 0.9.1\n",
				"BIOS characteristics not supported",
				"ACPI is supported",
				"System is a virtual machine",
				"Handle 0x0001, DMI type 1, 27 bytes",
				"System Information\n Manufacturer: paddock\n Product Name: paddock VM\n Version: 0.9.1\n",
				"UUID: 00112233-4455-6677-8899-aabbccddeeff",
				"Wake-up Type: Power Switch",
				"Family: Virtual Machine",
				"Chassis Information\n Manufacturer: paddock\n Type: Other\n",
				"Boot-up State: Safe",
				"Processor Information\n Socket Designation: CPU 0\n Type: Central Processor\n Family: Other\n Manufacturer: paddock\n",
				"Status: Populated, Enabled",
				"Core Count: 4",
				"Thread Count: 4",
				"64-bit capable",
				"Multi-Core",
				"System Boot Information\n Status: No errors detected",
				"End Of Table",
			} {
				if !strings.Contains(text, want) {
					t.Errorf("dmidecode's output lacks %q:\n%s", want, out)
				}
			}
			for _, bad := range []string{"Invalid", "invalid", "Wrong", "checksum", "<OUT OF SPEC>", "Unknown Type", "Bad"} {
				if strings.Contains(text, bad) {
					t.Errorf("dmidecode's output says %q:\n%s", bad, out)
				}
			}
			// dmidecode -s reads one field the way scripts do.
			uuid, err := exec.Command(dmidecode, "--from-dump", path, "-s", "system-uuid").Output()
			if err != nil || strings.TrimSpace(string(uuid)) != "00112233-4455-6677-8899-aabbccddeeff" {
				t.Errorf("dmidecode -s system-uuid = %q, %v", uuid, err)
			}
		})
	}
}
