package boot

import (
	"fmt"
	"slices"
)

// E820Type is the type of a memory-map range, as the BIOS E820 call and
// the zero page define it.
type E820Type uint32

// The E820 range types.
const (
	E820RAM      E820Type = 1
	E820Reserved E820Type = 2
	E820ACPI     E820Type = 3 // ACPI tables, reclaimable after boot
	E820NVS      E820Type = 4 // ACPI non-volatile storage
	E820Unusable E820Type = 5
)

// String names the type the way Linux prints it.
func (t E820Type) String() string {
	switch t {
	case E820RAM:
		return "usable"
	case E820Reserved:
		return "reserved"
	case E820ACPI:
		return "ACPI data"
	case E820NVS:
		return "ACPI NVS"
	case E820Unusable:
		return "unusable"
	}
	return fmt.Sprintf("type %d", uint32(t))
}

// E820Entry is one range of the guest's physical memory map.
type E820Entry struct {
	Addr uint64
	Size uint64
	Type E820Type
}

// span is the half-open guest-physical range [start, end).
type span struct{ start, end uint64 }

func (s span) size() uint64 { return s.end - s.start }

func (s span) overlaps(o span) bool { return s.start < o.end && o.start < s.end }

// spans is a sorted list of disjoint, non-adjacent ranges.
type spans []span

// contains reports whether r lies entirely inside one range of s.
func (s spans) contains(r span) bool {
	for _, x := range s {
		if x.start <= r.start && r.end <= x.end {
			return true
		}
	}
	return false
}

// total is the number of bytes s covers.
func (s spans) total() uint64 {
	var n uint64
	for _, x := range s {
		n += x.size()
	}
	return n
}

// checkE820 validates the memory map the machine supplied and returns its
// RAM, merged into disjoint ranges. Entries must be non-empty, must not wrap
// around the address space and must not overlap each other.
func checkE820(entries []E820Entry) (spans, error) {
	if len(entries) == 0 {
		return nil, fmt.Errorf("boot: e820 map is empty")
	}
	if len(entries) > MaxE820Entries {
		return nil, fmt.Errorf("boot: e820 map has %d entries; the boot protocols carry at most %d", len(entries), MaxE820Entries)
	}
	all := make([]span, 0, len(entries))
	var ram spans
	for i, e := range entries {
		if e.Size == 0 {
			return nil, fmt.Errorf("boot: e820 map: entry %d at %#x is empty", i, e.Addr)
		}
		end := e.Addr + e.Size
		if end < e.Addr {
			return nil, fmt.Errorf("boot: e820 map: entry %d (%#x + %#x) wraps around the address space", i, e.Addr, e.Size)
		}
		if e.Type == 0 {
			return nil, fmt.Errorf("boot: e820 map: entry %d at %#x has type 0", i, e.Addr)
		}
		all = append(all, span{e.Addr, end})
		if e.Type == E820RAM {
			ram = append(ram, span{e.Addr, end})
		}
	}
	slices.SortFunc(all, func(a, b span) int { return cmpU64(a.start, b.start) })
	for i := 1; i < len(all); i++ {
		if all[i].start < all[i-1].end {
			return nil, fmt.Errorf("boot: e820 map: ranges %#x-%#x and %#x-%#x overlap",
				all[i-1].start, all[i-1].end-1, all[i].start, all[i].end-1)
		}
	}
	if len(ram) == 0 {
		return nil, fmt.Errorf("boot: e820 map has no RAM")
	}
	return merge(ram), nil
}

// merge sorts ranges and joins the adjacent or overlapping ones.
func merge(in []span) spans {
	s := slices.Clone(in)
	slices.SortFunc(s, func(a, b span) int { return cmpU64(a.start, b.start) })
	out := spans{}
	for _, x := range s {
		if n := len(out); n > 0 && x.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, x.end)
			continue
		}
		out = append(out, x)
	}
	return out
}

// subtract returns the parts of s not covered by any range of holes.
func (s spans) subtract(holes ...span) spans {
	out := slices.Clone(s)
	for _, h := range holes {
		var next spans
		for _, x := range out {
			if !x.overlaps(h) {
				next = append(next, x)
				continue
			}
			if x.start < h.start {
				next = append(next, span{x.start, h.start})
			}
			if h.end < x.end {
				next = append(next, span{h.end, x.end})
			}
		}
		out = next
	}
	return out
}

// below returns the parts of s under limit.
func (s spans) below(limit uint64) spans {
	var out spans
	for _, x := range s {
		if x.start >= limit {
			continue
		}
		out = append(out, span{x.start, min(x.end, limit)})
	}
	return out
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// putE820 writes e in the 20-byte packed layout that both the zero page
// (struct boot_e820_entry) and, padded to 24 bytes, PVH's
// hvm_memmap_table_entry use: addr, size, type.
func putE820(b []byte, e E820Entry) {
	le.PutUint64(b[0:], e.Addr)
	le.PutUint64(b[8:], e.Size)
	le.PutUint32(b[16:], uint32(e.Type))
}
