package machine

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Memory is the guest's RAM: one host mapping per region, each registered
// with KVM as a memslot. The mappings live as long as the Machine; slices
// returned by Slice alias guest memory and must not be used after Close.
//
// RAM is anonymous memory by default. A machine restored from a snapshot
// maps its memory file instead (newFileMemory), MAP_PRIVATE: the guest's
// pages load from the file as they are first touched, and what the guest
// writes goes to private copies, so the file is never written.
type Memory struct {
	regions []region
	maps    [][]byte
	size    uint64
	// file is the memory file the RAM was mapped from; nil for
	// anonymous RAM. Memory owns it.
	file *os.File
}

// newMemory maps size bytes of anonymous guest RAM laid out by
// ramRegions. Pages are reserved lazily (MAP_NORESERVE) and transparent
// huge pages are requested because nested paging walks are much cheaper
// with them.
func newMemory(size uint64) (*Memory, error) {
	return mapMemory(size, nil)
}

// newFileMemory maps guest RAM from f, a memory file as WriteTo writes
// it: the regions' bytes one after the other (fileOffset). The mapping
// is private, over the same 2 MiB aligned reservation as anonymous RAM.
// f must hold exactly size bytes: a shorter file would fault the VMM
// with SIGBUS when the guest touched a page past its end. On success the
// Memory owns f; on error f is left to the caller.
func newFileMemory(size uint64, f *os.File) (*Memory, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("memory file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("memory file %s is not a regular file", f.Name())
	}
	if uint64(fi.Size()) != size {
		return nil, fmt.Errorf("memory file %s holds %d bytes, the guest has %d MiB of RAM (%d bytes): it is not this guest's memory, or it was cut short",
			f.Name(), fi.Size(), size>>20, size)
	}
	return mapMemory(size, f)
}

// mapMemory reserves each region 2 MiB aligned and, with a file, maps
// the file's part over the reservation.
func mapMemory(size uint64, f *os.File) (*Memory, error) {
	m := &Memory{regions: ramRegions(size), size: size}
	for i, r := range m.regions {
		b, err := mapAligned(r.size, hugePageSize)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("map %d MiB of guest memory at %#x: %w", r.size>>20, r.gpa, err)
		}
		m.maps = append(m.maps, b)
		if f != nil {
			if err := mapFileOver(b, f, m.fileOffset(i)); err != nil {
				m.Close()
				return nil, fmt.Errorf("map memory file %s over guest memory at %#x: %w", f.Name(), r.gpa, err)
			}
		}
		// Best effort: THP may be disabled on the host, and a file's
		// pages are not huge until the guest writes them.
		_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	}
	m.file = f
	return m, nil
}

// fileOffset is where region i's bytes start in a memory file: the
// regions are stored one after the other, without the MMIO hole.
func (m *Memory) fileOffset(i int) int64 {
	var off uint64
	for _, r := range m.regions[:i] {
		off += r.size
	}
	return int64(off)
}

// hugePageSize is the x86 2 MiB page. KVM maps guest memory with 2 MiB
// pages in the nested/extended page tables only where the host address
// and the guest-physical address agree modulo 2 MiB, so guest RAM is
// mapped 2 MiB aligned (every region starts 2 MiB aligned in the guest).
// Nested, this more than halved the stock kernel's boot time.
const hugePageSize = 2 << 20

// Size is the amount of guest RAM in bytes.
func (m *Memory) Size() uint64 { return m.size }

// FileBacked reports whether the RAM is mapped from a memory file.
func (m *Memory) FileBacked() bool { return m.file != nil }

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

// Close unmaps guest memory and closes the memory file.
func (m *Memory) Close() error {
	var errs []error
	for _, b := range m.maps {
		if err := unmap(b); err != nil {
			errs = append(errs, err)
		}
	}
	m.maps = nil
	if m.file != nil {
		errs = append(errs, m.file.Close())
		m.file = nil
	}
	return errors.Join(errs...)
}
