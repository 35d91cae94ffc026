package boot

import (
	"errors"
	"fmt"
	"io"
)

// lowMemoryEnd bounds the first MiB: loader structures, the BIOS/ACPI area
// and the real-mode memory Linux keeps for itself. Neither the initrd nor an
// ELF segment may go there.
const lowMemoryEnd = 1 << 20

// placeInitrd returns the highest page-aligned address at which size bytes
// fit inside free, and the size of the largest range in free (for errors).
func placeInitrd(free spans, size uint64) (addr uint64, largest uint64, ok bool) {
	for _, x := range free {
		largest = max(largest, x.size())
		if size == 0 || x.size() < size {
			continue
		}
		a := (x.end - size) &^ (pageSize - 1)
		if a >= x.start && (!ok || a > addr) {
			addr, ok = a, true
		}
	}
	return addr, largest, ok
}

// loadInitrd copies the initrd file, if any, to the highest page-aligned
// guest address that lies in RAM below limit and clear of the first MiB and
// of the avoid ranges (the kernel). It returns the address and size (0, 0
// without an initrd).
func (l *loader) loadInitrd(limit uint64, avoid ...span) (addr, size uint64, err error) {
	path, f := l.cfg.InitrdPath, l.cfg.Initrd
	if f == nil {
		if path == "" {
			return 0, 0, nil
		}
		if f, err = OpenInitrd(path); err != nil {
			return 0, 0, err
		}
		defer f.Close()
	}
	st, err := regularSize(f)
	if err != nil {
		return 0, 0, fmt.Errorf("initrd %s: %w", path, err)
	}
	if st == 0 {
		return 0, 0, fmt.Errorf("initrd %s: file is empty", path)
	}
	size = uint64(st)
	free := l.ram.below(limit).subtract(append(avoid, span{0, lowMemoryEnd})...)
	addr, largest, ok := placeInitrd(free, size)
	if !ok {
		return 0, 0, fmt.Errorf("initrd %s (%s) does not fit in guest RAM below %#x (largest free range %s); give the VM more memory",
			path, mibString(size), limit, mibString(largest))
	}
	dst, err := l.slice(addr, size, "initrd")
	if err != nil {
		return 0, 0, err
	}
	n, err := f.ReadAt(dst, 0)
	if n != len(dst) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, fmt.Errorf("initrd %s: read %d of %d bytes: %w", path, n, size, err)
	}
	return addr, size, nil
}

// mibString formats a byte count for messages: whole MiB as "N MiB", other
// sizes of a MiB or more with one decimal, smaller ones in KiB or bytes.
func mibString(n uint64) string {
	switch {
	case n >= mib && n%mib == 0:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= mib:
		return fmt.Sprintf("%.1f MiB", float64(n)/mib)
	case n > 0 && n%1024 == 0:
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d bytes", n)
}
