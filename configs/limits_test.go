package configs

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestParseBandwidth(t *testing.T) {
	tests := []struct {
		in   string
		want Bandwidth
		err  string
	}{
		{"50MiB/s", 50 << 20, ""},
		{"50MB/s", 50 << 20, ""}, // byte units are binary, as sizes are
		{"1.5GiB/s", 3 << 29, ""},
		{"512B/s", 512, ""},
		{"512 KiB/s", 512 << 10, ""},
		{"100Mbit/s", 12_500_000, ""}, // bit units are decimal
		{"100mbit/s", 12_500_000, ""},
		{"1Gbit/s", 125_000_000, ""},
		{"2.5Kbit/s", 312, "not a whole number of bytes a second"},
		{"8bit/s", 1, ""},
		{"1bit/s", 0, "not a whole number of bytes a second"},
		{"0MiB/s", 0, "is zero: leave the limit out for none"},
		{"0Mbit/s", 0, "is zero"},
		{"-5MiB/s", 0, "is negative"},
		{"50MiB", 0, "a unit and /s are required"},
		{"50", 0, "a unit and /s are required"},
		{"50/s", 0, "has no unit"},
		{"/s", 0, "a unit and /s are required"},
		{"100Mb/s", 0, "Mb is ambiguous: write Mbit/s for bits or MiB/s for bytes"},
		{"100kb/s", 0, "kb is ambiguous"},
		{"fast/s", 0, "is not a rate such as 50MiB/s or 100Mbit/s"},
		{"50furlongs/s", 0, "unknown unit"},
		{"1.2.3Mbit/s", 0, "is not a rate"},
		{"99999999EiB/s", 0, "too large"},
		{"99999999999999999999Tbit/s", 0, "too large"},
		{strings.Repeat("9", 100) + "B/s", 0, "characters long"},
	}
	for _, tt := range tests {
		got, err := ParseBandwidth(tt.in)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("ParseBandwidth(%q): %v", tt.in, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseBandwidth(%q) = %d, %v; want an error with %q", tt.in, got, err, tt.err)
		case tt.err == "" && got != tt.want:
			t.Errorf("ParseBandwidth(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestBandwidthString checks the printed forms and that they read back.
func TestBandwidthString(t *testing.T) {
	for _, tt := range []struct {
		b    Bandwidth
		want string
	}{
		{50 << 20, "50MiB/s"},
		{12_500_000, "100Mbit/s"},
		{125_000_000, "1Gbit/s"},
		{1000, "8Kbit/s"},
		{1001, "1001B/s"},
		{125, "1Kbit/s"},
		{1001, "1001B/s"},
		{1 << 10, "1KiB/s"},
	} {
		if got := tt.b.String(); got != tt.want {
			t.Errorf("%d.String() = %q, want %q", uint64(tt.b), got, tt.want)
		}
		if back, err := ParseBandwidth(tt.want); err != nil || back != tt.b {
			t.Errorf("ParseBandwidth(%q) = %d, %v; want %d", tt.want, back, err, uint64(tt.b))
		}
	}
}

// TestLimitsRoundTrip checks that yaml.Marshal writes limits Parse
// reads back.
func TestLimitsRoundTrip(t *testing.T) {
	dir := testTree(t)
	deviceTree(t, dir)
	path := writeConfig(t, dir, "name: hello\nkernel: vmlinuz\ndisks: [{path: data.raw, limits: {bandwidth: 10MiB/s, iops: 500, burst: 2s}}]\n")
	vm, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{Bandwidth: 10 << 20, IOPS: 500, Burst: Burst(2e9)}
	if got := vm.Disks[0].Limits; got == nil || *got != want {
		t.Fatalf("limits %+v, want %+v", got, want)
	}
	out, err := yaml.Marshal(vm)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out, path)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := back.Disks[0].Limits; got == nil || *got != want {
		t.Fatalf("after a round trip: limits %+v, want %+v\n%s", got, want, out)
	}
}

func TestLimitsErrors(t *testing.T) {
	dir := testTree(t)
	deviceTree(t, dir)
	const ok = "name: hello\nkernel: vmlinuz\n"
	const f = "$DIR/hello.yaml"
	disk := func(limits string) string { return ok + "disks: [{path: data.raw, limits: " + limits + "}]\n" }
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"valid", disk("{bandwidth: 50MiB/s, iops: 2000, burst: 500ms}"), ""},
		{"bits on a disk", disk("{bandwidth: 800Mbit/s}"), ""},
		{"zero bandwidth", disk("{bandwidth: 0MiB/s}"),
			f + `:3:46: disks[0].limits.bandwidth: "0MiB/s" is zero: leave the limit out for none`},
		{"bare number", disk("{bandwidth: 1000}"),
			f + `:3:46: disks[0].limits.bandwidth: "1000" is not a rate such as 50MiB/s or 100Mbit/s (a unit and /s are required)`},
		{"nonsense unit", disk("{bandwidth: 5 parsecs/s}"),
			f + `:3:46: disks[0].limits.bandwidth: "5 parsecs/s" is not a rate such as 50MiB/s or 100Mbit/s: "5 parsecs": unknown unit "parsecs": want B, KiB, MiB, GiB, TiB, PiB or EiB (K, M, G... and KB, MB, GB... mean the same)`},
		{"negative bandwidth", disk("{bandwidth: -5MiB/s}"),
			f + `:3:46: disks[0].limits.bandwidth: "-5MiB/s" is negative: want a rate such as 50MiB/s or 100Mbit/s`},
		{"zero iops", disk("{iops: 0}"),
			f + ":3:41: disks[0].limits.iops: is 0: want a positive number of iops a second (leave it out for no limit)"},
		{"negative iops", disk("{iops: -1}"),
			f + ":3:41: disks[0].limits.iops: is -1: want a positive number of iops a second (leave it out for no limit)"},
		{"iops with a unit", disk("{iops: 2k}"),
			f + `:3:41: disks[0].limits.iops: must be a whole number of iops a second, such as 2000, got "2k"`},
		{"packets on a disk", disk("{packets: 10}"),
			f + ":3:35: disks[0].limits.packets: unknown field; known fields: bandwidth, iops, burst"},
		{"bad burst", disk("{iops: 10, burst: 5}"),
			f + `:3:52: disks[0].limits.burst: "5" is not a duration such as 500ms or 2s`},
		{"burst too long", disk("{iops: 10, burst: 2h}"),
			f + ":3:52: disks[0].limits.burst: is 2h0m0s: want 1ms to 1h0m0s"},
		{"burst alone", disk("{burst: 1s}"),
			f + ":3:34: disks[0].limits: sets no limit: set bandwidth or iops (or leave limits out)"},
		{"empty", disk("{}"),
			f + ":3:34: disks[0].limits: sets no limit: set bandwidth or iops (or leave limits out)"},
		{"not a mapping", disk("50MiB/s"),
			f + `:3:34: disks[0].limits: must be a mapping such as {bandwidth: 50MiB/s, iops: 2000}, got "50MiB/s"`},
		{"libvirt", "backend: libvirt\n" + disk("{iops: 10}"),
			f + ":4:34: disks[0].limits: are not supported by the libvirt backend yet: leave them out, or use backend: native"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := check(t, dir, tc.yaml, Host{}); got != tc.want {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestLimitsInGo checks limits of a VM built in Go, which decoding did
// not see.
func TestLimitsInGo(t *testing.T) {
	for _, tt := range []struct {
		disk, nic *Limits
		want      string
	}{
		{disk: &Limits{Packets: 5}, want: "disks[0].limits.packets: is for NICs; a disk has iops"},
		{nic: &Limits{IOPS: 5}, want: "nics[0].limits.iops: is for disks; a NIC has packets"},
		{nic: &Limits{Packets: 5, Burst: Burst(1)}, want: "nics[0].limits.burst: is 1ns: want 1ms to 1h0m0s"},
		{nic: &Limits{}, want: "nics[0].limits: sets no limit: set bandwidth or packets (or leave limits out)"},
	} {
		vm := &VM{Name: "hello", Kernel: "/vmlinuz", Disks: []Disk{{Path: "/data.raw", Limits: tt.disk}}, NICs: []NIC{{Tap: "tap0", Limits: tt.nic}}}
		vm.FillDefaults()
		err := vm.ValidateStructure()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ValidateStructure: %v; want %q", err, tt.want)
		}
	}
}
