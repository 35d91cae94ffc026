package configs

import (
	"math"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
	}{
		{"0", 0},
		{"536870912", 512 * MiB},
		{"512MiB", 512 * MiB},
		{"512M", 512 * MiB},
		{"512MB", 512 * MiB},
		{"512mib", 512 * MiB},
		{"512 MiB", 512 * MiB},
		{" 2GiB ", 2 * GiB},
		{"1G", GiB},
		{"1g", GiB},
		{"1.5GiB", 1536 * MiB},
		{"0.5K", 512},
		{"1.25KiB", 1280},
		{"1.000GiB", GiB},
		{"4096B", 4 * KiB},
		{"4096b", 4 * KiB},
		{"3T", 3 * TiB},
		{"1PiB", PiB},
		{"15EiB", 15 * EiB},
		{"15.5E", 15*EiB + EiB/2},
		{"18446744073709551615", math.MaxUint64},
		{"007M", 7 * MiB},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseByteSizeErrors(t *testing.T) {
	const notSize = " is not a size: want a byte count or a number with a unit, such as 512MiB or 2GiB"
	tests := []struct{ in, want string }{
		{"", "empty size: want a byte count or a number with a unit, such as 512MiB"},
		{"  ", "empty size: want a byte count or a number with a unit, such as 512MiB"},
		{"lots", `"lots"` + notSize},
		{"-1G", `"-1G"` + notSize},
		{"+1G", `"+1G"` + notSize},
		{".5G", `".5G"` + notSize},
		{"1.G", `"1.G"` + notSize},
		{"1e9", `"1e9"` + notSize},
		{"1 2", `"1 2"` + notSize},
		{"0x100", `"0x100"` + notSize},
		{"1.2.3M", `"1.2.3M"` + notSize},
		{"5X", `"5X": unknown unit "X": want B, KiB, MiB, GiB, TiB, PiB or EiB (K, M, G... and KB, MB, GB... mean the same)`},
		{"5 MiBs", `"5 MiBs": unknown unit "MiBs": want B, KiB, MiB, GiB, TiB, PiB or EiB (K, M, G... and KB, MB, GB... mean the same)`},
		{"1KIBB", `"1KIBB": unknown unit "KIBB": want B, KiB, MiB, GiB, TiB, PiB or EiB (K, M, G... and KB, MB, GB... mean the same)`},
		{"0.1KiB", `"0.1KiB" is not a whole number of bytes`},
		{"1.5", `"1.5" is not a whole number of bytes`},
		{"16EiB", `"16EiB" is too large: sizes must be below 16EiB`},
		{"18446744073709551616", `"18446744073709551616" is too large: sizes must be below 16EiB`},
		{"1" + string(make([]byte, 70)), "size is 71 characters long; at most 64"},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want error %q", tt.in, got, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("ParseByteSize(%q) error:\n got %q\nwant %q", tt.in, err, tt.want)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{1000, "1000B"},
		{1023, "1023B"},
		{KiB, "1KiB"},
		{4 * KiB, "4KiB"},
		{1536, "1536B"},
		{512 * MiB, "512MiB"},
		{1536 * MiB, "1536MiB"},
		{GiB, "1GiB"},
		{1024 * GiB, "1TiB"},
		{MiB + KiB, "1025KiB"},
		{EiB, "1EiB"},
		{15 * EiB, "15EiB"},
		{math.MaxUint64, "18446744073709551615B"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", uint64(tt.in), got, tt.want)
		}
	}
}

// TestByteSizeRoundTrip checks that ParseByteSize reads back what String
// writes, for sizes across every unit and ones that fit no unit exactly.
func TestByteSizeRoundTrip(t *testing.T) {
	var sizes []ByteSize
	for shift := 0; shift < 64; shift++ {
		for _, m := range []uint64{1, 3, 5, 1023, 1025} {
			v := m << shift
			if v>>shift == m { // no overflow
				sizes = append(sizes, ByteSize(v), ByteSize(v-1), ByteSize(v+1))
			}
		}
	}
	sizes = append(sizes, 0, math.MaxUint64)
	for _, b := range sizes {
		s := b.String()
		got, err := ParseByteSize(s)
		if err != nil || got != b {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", s, got, err, uint64(b))
		}
	}
}

func TestByteSizeApprox(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0B"},
		{512 * MiB, "512MiB"},
		{24589456 * KiB, "23.5GiB"},
		{GiB + 300*MiB, "1.3GiB"},
		{1500, "1.5KiB"},
		{100, "100B"},
	}
	for _, tt := range tests {
		if got := tt.in.Approx(); got != tt.want {
			t.Errorf("ByteSize(%d).Approx() = %q, want %q", uint64(tt.in), got, tt.want)
		}
	}
}

func TestByteSizeYAML(t *testing.T) {
	var v struct {
		Mem ByteSize `yaml:"mem"`
	}
	if err := yaml.Unmarshal([]byte("mem: 1.5GiB\n"), &v); err != nil || v.Mem != 1536*MiB {
		t.Fatalf("Unmarshal = %d, %v; want %d", v.Mem, err, 1536*MiB)
	}
	out, err := yaml.Marshal(v)
	if err != nil || string(out) != "mem: 1536MiB\n" {
		t.Fatalf("Marshal = %q, %v; want %q", out, err, "mem: 1536MiB\n")
	}
	err = yaml.Unmarshal([]byte("mem:\n  - 1\n"), &v)
	if err == nil || err.Error() != "line 2: a size must be a scalar such as 512MiB" {
		t.Errorf("Unmarshal of a list: %v", err)
	}
	err = yaml.Unmarshal([]byte("mem: lots\n"), &v)
	if err == nil || err.Error() != `line 1: "lots" is not a size: want a byte count or a number with a unit, such as 512MiB or 2GiB` {
		t.Errorf("Unmarshal of lots: %v", err)
	}
}

func BenchmarkParseByteSize(b *testing.B) {
	for b.Loop() {
		if _, err := ParseByteSize("1.5GiB"); err != nil {
			b.Fatal(err)
		}
	}
}
