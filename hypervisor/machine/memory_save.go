package machine

import (
	"encoding/binary"
	"errors"
	"fmt"

	"os"

	"golang.org/x/sys/unix"
)

// pageSize is the host's and the guest's base page: the unit in which a
// memory file is sparse.
const pageSize = 4096

// MemoryWriteStats says what WriteTo wrote.
type MemoryWriteStats struct {
	// Size is the memory file's length: the guest's RAM.
	Size int64
	// Written is the bytes of data written; the rest of the file is
	// holes, which read as zeros.
	Written int64
	// Candidates is the bytes of pages that were looked at: pages the
	// guest touched (or, when that cannot be known, all of RAM).
	Candidates int64
}

// WriteTo writes guest RAM to f, a new empty file, in the layout
// newFileMemory maps (the regions one after the other), sparsely: only
// pages the guest has touched and that hold something other than zeros
// are written; the rest stay holes. Pages the guest has touched are the
// ones the kernel has for the mapping (present or swapped out, from
// /proc/self/pagemap) and, for RAM mapped from a memory file, the data
// of that file; without pagemap every page is looked at. f is not
// synced. Precondition: nothing writes guest memory meanwhile (the vCPUs
// are paused and the devices quiesced).
func (m *Memory) WriteTo(f *os.File) (MemoryWriteStats, error) {
	var st MemoryWriteStats
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		pm = nil // every page is a candidate
	} else {
		defer pm.Close()
	}
	for i, r := range m.regions {
		touched, err := m.touchedPages(i, pm)
		if err != nil {
			return st, err
		}
		if err := m.writeRegion(f, i, touched, &st); err != nil {
			return st, fmt.Errorf("write guest memory at %#x to %s: %w", r.gpa, f.Name(), err)
		}
	}
	st.Size = int64(m.size)
	if err := f.Truncate(st.Size); err != nil {
		return st, fmt.Errorf("size memory file %s: %w", f.Name(), err)
	}
	return st, nil
}

// writeRegion writes region i's candidate pages that are not all zeros,
// in runs of consecutive pages.
func (m *Memory) writeRegion(f *os.File, i int, touched pageSet, st *MemoryWriteStats) error {
	b := m.maps[i]
	base := m.fileOffset(i)
	pages := len(b) / pageSize
	const maxRun = 256 // pages: 1 MiB per write
	runStart, runLen := 0, 0
	flush := func() error {
		if runLen == 0 {
			return nil
		}
		off := runStart * pageSize
		if _, err := f.WriteAt(b[off:off+runLen*pageSize], base+int64(off)); err != nil {
			return err
		}
		st.Written += int64(runLen * pageSize)
		runLen = 0
		return nil
	}
	for p := 0; p < pages; p++ {
		if !touched.has(p) {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		st.Candidates += pageSize
		page := b[p*pageSize : (p+1)*pageSize]
		if allZero(page) {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		if runLen == 0 {
			runStart = p
		}
		runLen++
		if runLen == maxRun {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// allZero reports whether page holds only zero bytes.
func allZero(page []byte) bool {
	for i := 0; i+8 <= len(page); i += 8 {
		if binary.NativeEndian.Uint64(page[i:]) != 0 {
			return false
		}
	}
	return true
}

// pageSet is one bit per page of a region; nil means every page.
type pageSet []uint64

func (s pageSet) has(p int) bool { return s == nil || s[p/64]&(1<<(p%64)) != 0 }
func (s pageSet) add(p int)      { s[p/64] |= 1 << (p % 64) }

// Bits of a /proc/PID/pagemap entry (Documentation/admin-guide/mm/pagemap.rst).
const (
	pagemapPresent = 1 << 63
	pagemapSwapped = 1 << 62
)

// touchedPages returns the pages of region i that may hold data: those
// pagemap reports present or swapped, and those the backing memory
// file has data for. It returns nil (every page) without pagemap.
func (m *Memory) touchedPages(i int, pagemap *os.File) (pageSet, error) {
	if pagemap == nil {
		return nil, nil
	}
	b := m.maps[i]
	pages := len(b) / pageSize
	set := make(pageSet, (pages+63)/64)
	const chunk = 64 << 10 // entries per read: 512 KiB
	buf := make([]byte, 8*chunk)
	first := int64(hostAddr(b) / pageSize)
	for p := 0; p < pages; p += chunk {
		n := min(chunk, pages-p)
		if _, err := pagemap.ReadAt(buf[:8*n], 8*(first+int64(p))); err != nil {
			return nil, fmt.Errorf("read /proc/self/pagemap: %w", err)
		}
		for j := 0; j < n; j++ {
			if binary.NativeEndian.Uint64(buf[8*j:])&(pagemapPresent|pagemapSwapped) != 0 {
				set.add(p + j)
			}
		}
	}
	if m.file != nil {
		if err := addFileData(set, m.file, m.fileOffset(i), int64(len(b))); err != nil {
			return nil, fmt.Errorf("find the data of memory file %s: %w", m.file.Name(), err)
		}
	}
	return set, nil
}

// addFileData adds to set the pages of f's [off, off+n) that are data,
// not holes (SEEK_DATA, SEEK_HOLE).
func addFileData(set pageSet, f *os.File, off, n int64) error {
	fd := int(f.Fd())
	end := off + n
	for pos := off; pos < end; {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // no data after pos
		}
		if err != nil {
			return err
		}
		if data >= end {
			return nil
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		hole = min(hole, end)
		for p := (data - off) / pageSize; p < (hole-off+pageSize-1)/pageSize; p++ {
			set.add(int(p))
		}
		pos = hole
	}
	return nil
}
