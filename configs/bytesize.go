package configs

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ByteSize is a size in bytes. In YAML it is a byte count (536870912) or a
// decimal number with a binary unit: 512MiB, 2GiB, 1.5GiB. Every unit is a
// power of 1024, as in QEMU, Lima and Docker: K, KB and KiB all mean 1024
// bytes, G, GB and GiB all mean 2^30. Units are case-insensitive.
type ByteSize uint64

// Binary size units.
const (
	B   ByteSize = 1
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
	TiB ByteSize = 1 << 40
	PiB ByteSize = 1 << 50
	EiB ByteSize = 1 << 60
)

// maxSizeLen bounds the text ParseByteSize accepts, so hostile input cannot
// make it do big-number arithmetic on thousands of digits.
const maxSizeLen = 64

// unitShift maps a lower-case unit prefix letter to its power of two.
func unitShift(prefix byte) (uint, bool) {
	switch prefix {
	case 'k':
		return 10, true
	case 'm':
		return 20, true
	case 'g':
		return 30, true
	case 't':
		return 40, true
	case 'p':
		return 50, true
	case 'e':
		return 60, true
	}
	return 0, false
}

// errNotSize is the message for text that does not look like a size at all.
const errNotSize = "is not a size: want a byte count or a number with a unit, such as 512MiB or 2GiB"

// ParseByteSize parses a size: digits with an optional decimal fraction,
// optional spaces, and an optional unit (B, K, KB, KiB, M, MB, MiB, G, GB,
// GiB, T, TB, TiB, P, PB, PiB, E, EB, EiB; any case). The result must be a
// whole number of bytes that fits in 64 bits: 1.5KiB is 1536, 0.1KiB is an
// error.
func ParseByteSize(s string) (ByteSize, error) {
	text := strings.TrimSpace(s)
	if text == "" {
		return 0, errors.New("empty size: want a byte count or a number with a unit, such as 512MiB")
	}
	if len(text) > maxSizeLen {
		return 0, fmt.Errorf("size is %d characters long; at most %d", len(text), maxSizeLen)
	}
	i := 0
	for i < len(text) && isDigit(text[i]) {
		i++
	}
	whole := text[:i]
	frac := ""
	if i < len(text) && text[i] == '.' {
		j := i + 1
		for j < len(text) && isDigit(text[j]) {
			j++
		}
		frac = text[i+1 : j]
		if frac == "" {
			return 0, fmt.Errorf("%q %s", s, errNotSize)
		}
		i = j
	}
	if whole == "" {
		return 0, fmt.Errorf("%q %s", s, errNotSize)
	}
	unit := strings.TrimLeft(text[i:], " ")
	shift, ok := parseUnit(strings.ToLower(unit))
	if !ok {
		if strings.ContainsAny(unit, "0123456789.") {
			return 0, fmt.Errorf("%q %s", s, errNotSize)
		}
		return 0, fmt.Errorf("%q: unknown unit %q: want B, KiB, MiB, GiB, TiB, PiB or EiB (K, M, G... and KB, MB, GB... mean the same)", s, unit)
	}
	// value = (whole.frac) * 2^shift, computed exactly.
	n, _ := new(big.Int).SetString(whole+frac, 10)
	n.Lsh(n, shift)
	if frac != "" {
		den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
		var rem big.Int
		n.QuoRem(n, den, &rem)
		if rem.Sign() != 0 {
			return 0, fmt.Errorf("%q is not a whole number of bytes", s)
		}
	}
	if !n.IsUint64() {
		return 0, fmt.Errorf("%q is too large: sizes must be below 16EiB", s)
	}
	return ByteSize(n.Uint64()), nil
}

// parseUnit returns the power of two a unit stands for.
func parseUnit(unit string) (uint, bool) {
	switch unit {
	case "", "b":
		return 0, true
	}
	shift, ok := unitShift(unit[0])
	if !ok {
		return 0, false
	}
	switch unit[1:] {
	case "", "b", "ib":
		return shift, true
	}
	return 0, false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// String prints the size in the largest binary unit that represents it
// exactly: 512MiB, 1536MiB, 4KiB, 1000B. ParseByteSize reads it back.
func (b ByteSize) String() string {
	units := [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	if b == 0 {
		return "0B"
	}
	u := 0
	for u+1 < len(units) && b%(1<<(10*(u+1))) == 0 {
		u++
	}
	return strconv.FormatUint(uint64(b>>(10*u)), 10) + units[u]
}

// Approx prints the size rounded to one decimal in the largest unit not
// above it (23.4GiB), for messages about sizes that are not round, like a
// host's RAM.
func (b ByteSize) Approx() string {
	units := [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	u := 0
	for u+1 < len(units) && b >= 1<<(10*(u+1)) {
		u++
	}
	if b%(1<<(10*u)) == 0 {
		return b.String()
	}
	return strconv.FormatFloat(float64(b)/float64(uint64(1)<<(10*u)), 'f', 1, 64) + units[u]
}

// MarshalYAML writes the size as String does.
func (b ByteSize) MarshalYAML() (any, error) {
	return b.String(), nil
}

// UnmarshalYAML reads a size written as ParseByteSize accepts, for code
// that decodes a ByteSize with the yaml package directly.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a size must be a scalar such as 512MiB", n.Line)
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}
