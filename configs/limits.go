package configs

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Limits are a disk's or a NIC's I/O limits: token buckets, as
// Firecracker's rate limiter has. A disk counts the bytes its requests
// read and write, and its requests (IOPS); a NIC counts the bytes of its
// Ethernet frames, and its frames (Packets), in each direction on its
// own. Unset fields limit nothing.
type Limits struct {
	// Bandwidth is the rate in bytes a second. In YAML: a number with a
	// byte unit (50MiB/s, 1.5GiB/s; binary, as sizes are) or a bit unit
	// (100Mbit/s, 1Gbit/s; decimal, as network rates are), then /s.
	Bandwidth Bandwidth `yaml:"bandwidth,omitempty" json:"bandwidth,omitempty"`
	// IOPS is the disk's requests a second (reads, writes, flushes,
	// discards alike). Disks only.
	IOPS uint64 `yaml:"iops,omitempty" json:"iops,omitempty"`
	// Packets is the NIC's frames a second, in each direction. NICs
	// only.
	Packets uint64 `yaml:"packets,omitempty" json:"packets,omitempty"`
	// Burst is how long the device may run at full speed after an idle
	// spell: each bucket holds Burst's worth of its rate. A Go duration
	// (500ms, 2s); default DefaultBurst.
	Burst Burst `yaml:"burst,omitempty" json:"burst,omitempty"`
}

// Bounds of limits.
const (
	// DefaultBurst is the burst when none is written (the rate
	// limiter's own default, ratelimit.DefaultBurst).
	DefaultBurst = Burst(100 * time.Millisecond)
	// MinBurst and MaxBurst bound burst.
	MinBurst = Burst(time.Millisecond)
	MaxBurst = Burst(time.Hour)
)

// Bandwidth is a rate in bytes a second.
type Bandwidth uint64

// Burst is a duration: how long a device may run at full speed.
type Burst time.Duration

// bitUnits are the decimal bit-rate units, lower case, and their value
// in bits.
func bitUnits() map[string]int64 {
	return map[string]int64{"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}
}

// rateForm is how a bandwidth is written, for messages.
const rateForm = "a rate such as 50MiB/s or 100Mbit/s"

// ParseBandwidth parses a rate: a number, a unit, then /s. Byte units
// are those of ParseByteSize (binary: K, KB and KiB all mean 1024);
// bit units are bit, Kbit, Mbit, Gbit and Tbit (decimal: Mbit is 10^6
// bits). Units are case-insensitive, except that Kb, Mb, Gb... are
// refused as ambiguous. The rate must be a positive whole number of
// bytes a second.
func ParseBandwidth(s string) (Bandwidth, error) {
	text := strings.TrimSpace(s)
	if strings.HasPrefix(text, "-") {
		return 0, fmt.Errorf("%q is negative: want %s", s, rateForm)
	}
	if len(text) > maxSizeLen {
		return 0, fmt.Errorf("rate is %d characters long; at most %d", len(text), maxSizeLen)
	}
	amount, ok := strings.CutSuffix(text, "/s")
	if !ok || amount == "" {
		return 0, fmt.Errorf("%q is not %s (a unit and /s are required)", s, rateForm)
	}
	i := 0
	for i < len(amount) && (isDigit(amount[i]) || amount[i] == '.') {
		i++
	}
	num, unit := amount[:i], strings.TrimSpace(amount[i:])
	var bytes *big.Rat
	if bits, ok := bitUnits()[strings.ToLower(unit)]; ok {
		r, ok := new(big.Rat).SetString(num)
		if !ok || strings.Count(num, ".") > 1 || num == "" {
			return 0, fmt.Errorf("%q is not %s", s, rateForm)
		}
		bytes = r.Mul(r, big.NewRat(bits, 8))
	} else {
		if len(unit) == 2 && unit[1] == 'b' && unit[0] != 'b' && unit[0] != 'B' {
			return 0, fmt.Errorf("%q: %s is ambiguous: write %sbit/s for bits or %siB/s for bytes", s, unit, unit[:1], strings.ToUpper(unit[:1]))
		}
		if unit == "" {
			return 0, fmt.Errorf("%q has no unit: want %s", s, rateForm)
		}
		b, err := ParseByteSize(amount)
		if err != nil {
			return 0, fmt.Errorf("%q is not %s: %w", s, rateForm, err)
		}
		bytes = new(big.Rat).SetUint64(uint64(b))
	}
	switch {
	case bytes.Sign() == 0:
		return 0, fmt.Errorf("%q is zero: leave the limit out for none", s)
	case !bytes.IsInt():
		return 0, fmt.Errorf("%q is not a whole number of bytes a second", s)
	case !bytes.Num().IsUint64():
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Bandwidth(bytes.Num().Uint64()), nil
}

// String prints the rate in the largest binary byte unit that gives a
// whole number when there is one (50MiB/s), else in the largest decimal
// bit unit that does (100Mbit/s), else in bytes (1001B/s).
// ParseBandwidth reads it back.
func (b Bandwidth) String() string {
	if b%1024 == 0 || b > math.MaxUint64/8 {
		return ByteSize(b).String() + "/s"
	}
	bits := uint64(b) * 8
	for _, u := range []struct {
		name string
		bits uint64
	}{{"Tbit", 1e12}, {"Gbit", 1e9}, {"Mbit", 1e6}, {"Kbit", 1e3}} {
		if bits%u.bits == 0 {
			return strconv.FormatUint(bits/u.bits, 10) + u.name + "/s"
		}
	}
	return ByteSize(b).String() + "/s"
}

// MarshalYAML writes the rate as String does.
func (b Bandwidth) MarshalYAML() (any, error) { return b.String(), nil }

// String prints the burst as a Go duration.
func (b Burst) String() string { return time.Duration(b).String() }

// MarshalYAML writes the burst as String does.
func (b Burst) MarshalYAML() (any, error) { return b.String(), nil }

// limitsFields are the fields of a disk's or a NIC's limits.
func limitsFields(disk bool) []string {
	if disk {
		return []string{"bandwidth", "iops", "burst"}
	}
	return []string{"bandwidth", "packets", "burst"}
}

// limits decodes a disk's (disk true) or a NIC's limits.
func (d *decoder) limits(field string, v *yaml.Node, disk bool) *Limits {
	if v.Kind != yaml.MappingNode {
		d.errorf(v, field, "must be a mapping such as {%s}, got %s", limitsExample(disk), describe(v))
		return nil
	}
	l := &Limits{}
	d.fields(v, field, limitsFields(disk), func(key, field string, v *yaml.Node) {
		switch key {
		case "bandwidth":
			s, ok := d.scalar(field, v, rateForm)
			if !ok {
				return
			}
			b, err := ParseBandwidth(s)
			if err != nil {
				d.errorf(v, field, "%w", err)
			}
			l.Bandwidth = b
		case "iops", "packets":
			n := d.perSecond(field, v, key)
			if key == "iops" {
				l.IOPS = n
			} else {
				l.Packets = n
			}
		case "burst":
			l.Burst = d.burst(field, v)
		}
	})
	return l
}

// limitsExample is an example of limits for messages.
func limitsExample(disk bool) string {
	if disk {
		return "bandwidth: 50MiB/s, iops: 2000"
	}
	return "bandwidth: 100Mbit/s, packets: 10000"
}

// perSecond decodes a positive count a second (iops, packets).
func (d *decoder) perSecond(field string, v *yaml.Node, what string) uint64 {
	var n int64
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&n) != nil {
		d.errorf(v, field, "must be a whole number of %s a second, such as 2000, got %s", what, describe(v))
		return 0
	}
	if n <= 0 {
		d.errorf(v, field, "is %d: want a positive number of %s a second (leave it out for no limit)", n, what)
		return 0
	}
	return uint64(n)
}

// burst decodes a burst duration.
func (d *decoder) burst(field string, v *yaml.Node) Burst {
	s, ok := d.scalar(field, v, "a duration such as 500ms or 2s")
	if !ok {
		return 0
	}
	t, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		d.errorf(v, field, "%s is not a duration such as 500ms or 2s", quote(s))
		return 0
	}
	if b := Burst(t); b < MinBurst || b > MaxBurst {
		d.errorf(v, field, "is %s: want %s to %s", b, MinBurst, MaxBurst)
		return 0
	}
	return Burst(t)
}

// checkLimits checks limits at field (disks[0].limits, nics[1].limits)
// that did not come from YAML (a VM built in Go) as decoding does, and
// that they limit something.
func (c *checker) checkLimits(field string, l *Limits, disk bool) {
	if l == nil {
		return
	}
	switch {
	case disk && l.Packets != 0:
		c.add(field+".packets", "is for NICs; a disk has iops")
	case !disk && l.IOPS != 0:
		c.add(field+".iops", "is for disks; a NIC has packets")
	case l.Burst != 0 && (l.Burst < MinBurst || l.Burst > MaxBurst):
		c.add(field+".burst", "is %s: want %s to %s", l.Burst, MinBurst, MaxBurst)
	case l.Bandwidth == 0 && l.IOPS == 0 && l.Packets == 0 && !c.limitsFailed(field):
		count := "packets"
		if disk {
			count = "iops"
		}
		c.add(field, "sets no limit: set bandwidth or %s (or leave limits out)", count)
	}
}

// limitsFailed reports whether decoding reported a problem with a field
// of the limits at field (so they are not really empty).
func (c *checker) limitsFailed(field string) bool {
	for _, f := range []string{"bandwidth", "iops", "packets", "burst"} {
		if c.skip(field + "." + f) {
			return true
		}
	}
	return false
}
