package qcow2

import (
	"errors"
	"os"
)

// Map returns how [off, off+n) is stored in this image layer alone, as a
// list of mappings in guest order. KindUnallocated ranges fall through to
// the backing file.
func (img *Image) Map(off, n int64) ([]Mapping, error) {
	if err := img.checkRange(off, n); err != nil {
		return nil, err
	}
	img.gate.RLock()
	defer img.gate.RUnlock()
	var out []Mapping
	end := off + n
	for off < end {
		img.mu.Lock()
		m, err := img.mapLocked(img.l1, off, end-off)
		img.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if k := len(out) - 1; k >= 0 && out[k].Kind == m.Kind && out[k].Kind != KindCompressed &&
			(m.Kind != KindData || out[k].Host+out[k].Length == m.Host) {
			out[k].Length += m.Length
		} else {
			out = append(out, m)
		}
		off += m.Length
	}
	return out, nil
}

// Extent is one range of the virtual disk as the whole backing chain
// presents it, like a line of `qemu-img map`.
type Extent struct {
	Offset int64
	Length int64
	// Depth is the layer that provides the data: 0 for this image, 1 for
	// its backing file, and so on. For unallocated ranges, the depth
	// just past the last layer.
	Depth int
	// Data: the range is stored (not zero, not unallocated).
	Data bool
	// Zero: the range reads as zeros.
	Zero bool
	// Compressed: stored compressed.
	Compressed bool
	// HostOffset is where the data lives in File (-1 if not applicable).
	HostOffset int64
	// File is the path of the layer holding the data.
	File string
}

// Extents describes [off, off+n) through the whole backing chain.
func (img *Image) Extents(off, n int64) ([]Extent, error) {
	var out []Extent
	err := img.extents(off, n, 0, &out)
	return out, err
}

func (img *Image) extents(off, n int64, depth int, out *[]Extent) error {
	maps, err := img.Map(off, n)
	if err != nil {
		return err
	}
	for _, m := range maps {
		if m.Kind != KindUnallocated {
			e := Extent{Offset: m.Offset, Length: m.Length, Depth: depth, File: img.path, HostOffset: -1}
			switch m.Kind {
			case KindZero:
				e.Zero = true
			case KindData:
				e.Data, e.HostOffset = true, m.Host
			case KindCompressed:
				e.Data, e.Compressed = true, true
			}
			appendExtent(out, e)
			continue
		}
		if err := img.backingExtents(m.Offset, m.Length, depth+1, out); err != nil {
			return err
		}
	}
	return nil
}

// backingExtents describes an unallocated range by the backing chain.
func (img *Image) backingExtents(off, n int64, depth int, out *[]Extent) error {
	b := img.backing
	unalloc := func(o, l int64) {
		appendExtent(out, Extent{Offset: o, Length: l, Depth: depth, Zero: true, HostOffset: -1})
	}
	if b == nil {
		unalloc(off, n)
		return nil
	}
	bs := b.Size()
	inside := max(0, min(n, bs-off))
	if inside > 0 {
		switch l := b.(type) {
		case *Image:
			if err := l.extents(off, inside, depth, out); err != nil {
				return err
			}
		case *rawLayer:
			appendExtent(out, Extent{Offset: off, Length: inside, Depth: depth, Data: true, HostOffset: off, File: l.f.Name()})
		}
	}
	if inside < n {
		unalloc(off+inside, n-inside)
	}
	return nil
}

// appendExtent appends e, merging it into the previous extent when they
// continue each other.
func appendExtent(out *[]Extent, e Extent) {
	if k := len(*out) - 1; k >= 0 {
		p := &(*out)[k]
		if p.Depth == e.Depth && p.Data == e.Data && p.Zero == e.Zero && p.Compressed == e.Compressed && p.File == e.File &&
			p.Offset+p.Length == e.Offset && (p.HostOffset < 0) == (e.HostOffset < 0) &&
			(p.HostOffset < 0 || p.HostOffset+p.Length == e.HostOffset) && !e.Compressed {
			p.Length += e.Length
			return
		}
	}
	*out = append(*out, e)
}

// SetBacking records a new backing file name and format in the header
// without touching any data (`rebase -u`). An empty name removes the
// backing file. The new backing file is opened for later reads unless
// the image was opened with NoBacking.
func (img *Image) SetBacking(name, format string) error {
	release := img.quiesce()
	defer release()
	if err := img.writable(); err != nil {
		return err
	}
	if len(name) > maxBackingNameLen {
		return img.failf("the backing file name is longer than %d bytes", maxBackingNameLen)
	}
	if err := img.flushLocked(true); err != nil {
		return err
	}
	var exts []Extension
	for _, e := range img.exts {
		if e.Type != extBackingFormat {
			exts = append(exts, e)
		}
	}
	if name != "" && format != "" {
		exts = append([]Extension{{Type: extBackingFormat, Data: []byte(format)}}, exts...)
	}
	var nb layer
	if name != "" && !img.opts.NoBacking {
		var err error
		if nb, err = openBacking(img.path, name, format, img.opts, nil); errors.Is(err, ErrBackingRefused) {
			return err
		} else if err != nil {
			return img.errf(err, "open new backing file %s", backingPath(img.path, name))
		}
	}
	if err := img.rewriteHeaderClusterLocked(exts, name); err != nil {
		if nb != nil {
			nb.Close()
		}
		return err
	}
	img.backingFmt = format
	if img.backing != nil {
		img.backing.Close()
	}
	img.backing = nb
	return nil
}

// MakeEmpty unmaps every cluster of this layer, so the whole disk reads
// from the backing file again (the end of `qemu-img commit`).
func (img *Image) MakeEmpty() error {
	release := img.quiesce()
	defer release()
	if err := img.writable(); err != nil {
		return err
	}
	if len(img.snaps) > 0 {
		return img.errf(ErrUnsupported, "cannot empty an image that has internal snapshots")
	}
	if err := img.dropActiveFrom(0); err != nil {
		return err
	}
	return img.flushLocked(true)
}

// UsesFile reports whether fi is the file of this image or of one of its
// open backing files.
func (img *Image) UsesFile(fi os.FileInfo) bool {
	var l layer = img
	for l != nil {
		var f *os.File
		switch x := l.(type) {
		case *Image:
			if o, ok := x.f.(*osFile); ok {
				f = o.f
			} else if n, ok := x.f.(noSync); ok {
				f = n.f
			}
			l = x.backing
		case *rawLayer:
			f, l = x.f, nil
		default:
			l = nil
		}
		if f == nil {
			continue
		}
		if own, err := f.Stat(); err == nil && os.SameFile(own, fi) {
			return true
		}
	}
	return false
}
