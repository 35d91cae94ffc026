package qcow2

import (
	"errors"
	"fmt"
	"os"

	"github.com/paddock-vm/paddock/disk/imagefile"
)

// CreateOptions describe a new image. The zero value (plus a Size) is a
// version 3 image with 64 KiB clusters and 16-bit refcounts, like
// `qemu-img create -f qcow2`.
type CreateOptions struct {
	// Size is the virtual size in bytes. With a backing file, zero means
	// the backing file's size.
	Size int64
	// ClusterSize is a power of two from 512 B to 2 MiB; 0 means 64 KiB.
	ClusterSize int64
	// Version is 2 (compat=0.10) or 3 (compat=1.1, the default).
	Version int
	// RefcountBits is 1, 2, 4, 8, 16, 32 or 64; 0 means 16.
	RefcountBits int
	// ExtendedL2 enables subclusters (version 3, clusters >= 16 KiB).
	ExtendedL2 bool
	// Compression is "zlib" (default) or "zstd" for compressed clusters.
	Compression string
	// BackingFile is stored as given; a relative name is relative to the
	// new image's directory.
	BackingFile string
	// BackingFormat ("qcow2" or "raw") is recorded in a header extension.
	// Empty: probed from the backing file and recorded.
	BackingFormat string
	// Preallocation is "off" (default) or "metadata": every L2 table and
	// data cluster is allocated up front (data clusters stay sparse).
	Preallocation string
	// Storage, if set, receives the image instead of a new file at path.
	Storage Storage
	// Backing restricts the backing file (see BackingPolicy); nil allows
	// any, as QEMU does.
	Backing *BackingPolicy
}

// Create makes a new image at path (which must not exist), or in
// opts.Storage if it is set, replacing what that held once the options
// and the backing file passed their checks; Create leaves it open.
func Create(path string, opts CreateOptions) error {
	o := opts
	if o.ClusterSize == 0 {
		o.ClusterSize = 64 << 10
	}
	if o.Version == 0 {
		o.Version = 3
	}
	if o.RefcountBits == 0 {
		o.RefcountBits = 16
	}
	if o.Preallocation == "" {
		o.Preallocation = "off"
	}
	cb := 0
	for int64(1)<<cb < o.ClusterSize {
		cb++
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("qcow2: create %s: %w: %s", path, ErrUnsupported, fmt.Sprintf(format, args...))
	}
	switch {
	case int64(1)<<cb != o.ClusterSize || cb < minClusterBits || cb > maxClusterBits:
		return bad("cluster size %d is not a power of two from 512 to 2097152", o.ClusterSize)
	case o.Version != 2 && o.Version != 3:
		return bad("version %d (2 or 3)", o.Version)
	case o.Size < 0:
		return bad("negative size %d", o.Size)
	case o.ExtendedL2 && o.Version < 3:
		return bad("extended L2 entries need version 3")
	case o.ExtendedL2 && cb < minExtL2Bits:
		return bad("extended L2 entries need clusters of at least 16 KiB")
	case o.Preallocation != "off" && o.Preallocation != "metadata":
		return bad("preallocation %q (off or metadata)", o.Preallocation)
	case o.Preallocation == "metadata" && o.BackingFile != "":
		return bad("preallocation hides the backing file; not allowed together")
	}
	order := -1
	for i := 0; i <= maxRefcountOrder; i++ {
		if 1<<i == o.RefcountBits {
			order = i
		}
	}
	if order < 0 || (o.Version == 2 && order != 4) {
		return bad("refcount bits %d (1..64, and 16 for version 2)", o.RefcountBits)
	}
	var ctype uint8
	switch o.Compression {
	case "", "zlib":
	case "zstd":
		if o.Version < 3 {
			return bad("zstd compression needs version 3")
		}
		ctype = CompressionZstd
	default:
		return bad("compression type %q (zlib or zstd)", o.Compression)
	}
	if o.BackingFile != "" {
		// Only the backing file itself: its size and format are what
		// creation needs (QEMU opens it the same way, without its chain).
		// An overlay on an image in use is how a running disk is
		// snapshotted: like qemu-img create, read it without forbidding
		// writers (-U).
		b, err := openBacking(path, o.BackingFile, o.BackingFormat, Options{ReadOnly: true, ForceShare: true, NoBacking: true, Backing: o.Backing}, nil)
		if errors.Is(err, ErrBackingRefused) {
			return err
		}
		if err != nil {
			return fmt.Errorf("qcow2: create %s: backing file: %w", path, err)
		}
		if o.BackingFormat == "" {
			o.BackingFormat = "raw"
			if _, ok := b.(*Image); ok {
				o.BackingFormat = "qcow2"
			}
		}
		if o.Size == 0 {
			o.Size = b.Size()
		}
		b.Close()
	}

	h := Header{
		Version:               uint32(o.Version),
		ClusterBits:           uint32(cb),
		RefcountTableOffset:   uint64(o.ClusterSize),
		RefcountTableClusters: 1,
		L1TableOffset:         uint64(3 * o.ClusterSize),
		RefcountOrder:         uint32(order),
		HeaderLength:          headerV2Len,
	}
	var exts []Extension
	if o.Version == 3 {
		h.HeaderLength = headerV3Len
		h.Tail = make([]byte, headerV3Len-105)
		h.CompressionType = ctype
		if ctype != CompressionZlib {
			h.IncompatibleFeatures |= IncompatCompression
		}
		if o.ExtendedL2 {
			h.IncompatibleFeatures |= IncompatExtendedL2
		}
	}
	if o.BackingFile != "" && o.BackingFormat != "" {
		exts = append(exts, Extension{Type: extBackingFormat, Data: []byte(o.BackingFormat)})
	}
	if o.Version == 3 {
		exts = append(exts, Extension{Type: extFeatureTable, Data: marshalFeatureTable()})
	}
	if len(o.BackingFile) > maxBackingNameLen {
		return bad("backing file name longer than %d bytes", maxBackingNameLen)
	}
	cluster0, err := buildHeaderCluster(&h, exts, o.BackingFile, o.ClusterSize)
	if err != nil {
		return bad("%v", err)
	}
	g := newGeometry(&h)
	// Clusters: 0 header, 1 refcount table, 2 refcount block. The L1
	// table is allocated by the resize below.
	rt := make([]byte, o.ClusterSize)
	putBE64(rt, 2*uint64(o.ClusterSize))
	rb := make([]byte, o.ClusterSize)
	for c := int64(0); c < 3; c++ {
		refcountSet(rb, c, g.refOrder, 1)
	}

	st := o.Storage
	if st != nil {
		// What the store held goes only now that everything was checked,
		// the backing file too: a refused create leaves it as it was,
		// as qemu-img create does.
		if err := st.Truncate(0); err != nil {
			return fmt.Errorf("qcow2: create %s: %w", path, err)
		}
		st = keepOpen{st} // the caller's to close
	} else {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("qcow2: create: %w", err)
		}
		if err := imagefile.Lock(f, path, imagefile.Write); err != nil {
			f.Close()
			os.Remove(path)
			return fmt.Errorf("qcow2: create: %w", err)
		}
		st = &osFile{f: f}
	}
	for i, b := range [][]byte{cluster0, rt, rb} {
		if _, err := st.WriteAt(b, int64(i)*o.ClusterSize); err != nil {
			st.Close()
			return fmt.Errorf("qcow2: create %s: %w", path, err)
		}
	}
	img, err := Open(path, Options{NoBacking: true, Storage: st})
	if err != nil {
		return err
	}
	if err := img.Resize(o.Size, false); err != nil {
		img.Close()
		return err
	}
	if o.Preallocation == "metadata" {
		if err := img.preallocate(); err != nil {
			img.Close()
			return err
		}
	}
	return img.Close()
}

// putBE64 stores v big-endian at the start of b.
func putBE64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// preallocate maps every guest cluster to its own host cluster (left
// sparse, so it reads as zeros), like preallocation=metadata.
func (img *Image) preallocate() error {
	release := img.quiesce()
	defer release()
	g := &img.g
	clusters := (img.Size() + g.cs - 1) / g.cs
	for gc := int64(0); gc < clusters; {
		l1i := gc >> g.l2Bits
		t, err := img.writableL2(l1i)
		if err != nil {
			return err
		}
		t.pin++
		end := min(clusters, (l1i+1)<<g.l2Bits)
		for gc < end {
			first, n, _, err := img.allocRun(end - gc)
			if err != nil {
				t.pin--
				return err
			}
			for k := int64(0); k < n; k++ {
				le := l2Entry{e: uint64((first+k)*g.cs) | oflagCopied}
				if g.extL2 {
					le.bitmap = makeBitmap(^uint32(0), 0)
				}
				g.writeL2Entry(t.data, (gc+k)&(g.l2Entries-1), le)
			}
			gc += n
		}
		img.l2c.setDirty(t)
		t.pin--
	}
	if err := img.flushLocked(false); err != nil {
		return err
	}
	// Preallocated files keep their full length.
	return nil
}

// keepOpen is a Storage whose Close leaves the store open.
type keepOpen struct{ Storage }

func (keepOpen) Close() error { return nil }

var errShrinkSnapshots = errors.New("cannot shrink an image that has internal snapshots")
