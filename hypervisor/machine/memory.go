package machine

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Memory is the guest's RAM: one anonymous host mapping per region, each
// registered with KVM as a memslot. The mappings live as long as the
// Machine; slices returned by Slice alias guest memory and must not be used
// after Close.
type Memory struct {
	regions []region
	maps    [][]byte
	size    uint64
}

// newMemory maps size bytes of guest RAM laid out by ramRegions. Pages are
// reserved lazily (MAP_NORESERVE) and transparent huge pages are requested
// because nested paging walks are much cheaper with them.
func newMemory(size uint64) (*Memory, error) {
	m := &Memory{regions: ramRegions(size), size: size}
	for _, r := range m.regions {
		b, err := mapAligned(r.size, hugePageSize)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("map %d MiB of guest memory at %#x: %w", r.size>>20, r.gpa, err)
		}
		// Best effort: THP may be disabled on the host.
		_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
		m.maps = append(m.maps, b)
	}
	return m, nil
}

// hugePageSize is the x86 2 MiB page. KVM maps guest memory with 2 MiB
// pages in the nested/extended page tables only where the host address
// and the guest-physical address agree modulo 2 MiB, so guest RAM is
// mapped 2 MiB aligned (every region starts 2 MiB aligned in the guest).
// Nested, this more than halved the stock kernel's boot time.
const hugePageSize = 2 << 20

// Size is the amount of guest RAM in bytes.
func (m *Memory) Size() uint64 { return m.size }

// errNotRAM reports a guest-physical range that is not entirely RAM.
var errNotRAM = errors.New("not guest RAM")

// Slice returns the host view of guest-physical [gpa, gpa+n). The range
// must lie inside one RAM region.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	for i, r := range m.regions {
		if gpa >= r.gpa && gpa < r.end() {
			off := gpa - r.gpa
			if n > r.size-off {
				break
			}
			return m.maps[i][off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("guest range [%#x, %#x): %w", gpa, gpa+n, errNotRAM)
}

// Close unmaps guest memory.
func (m *Memory) Close() error {
	var errs []error
	for _, b := range m.maps {
		if err := unmap(b); err != nil {
			errs = append(errs, err)
		}
	}
	m.maps = nil
	return errors.Join(errs...)
}
