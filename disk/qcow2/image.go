// Package qcow2 reads and writes QEMU's qcow2 disk image format, versions 2
// and 3, as specified in QEMU's docs/interop/qcow2.txt: every cluster size
// from 512 B to 2 MiB, every refcount width, backing chains, zlib and zstd
// compressed clusters, zero clusters, extended L2 entries (subclusters),
// internal snapshots with VM state, and consistency checking and repair.
//
// # Concurrency
//
// An Image is safe for concurrent use by many goroutines (the queues of a
// virtio-blk device). Metadata (L1, cached L2 tables, refcounts) is guarded
// by one mutex that is never held across guest data I/O. A guest cluster
// whose mapping is being changed is marked in flight; other requests that
// need to change the same cluster wait for it. Host clusters freed while
// requests may still read them are reused only after those requests
// finish (see Image.gate).
//
// # Crash safety
//
// paddock never uses lazy refcounts and never sets the dirty bit. Metadata
// is written back in dependency order, with a write barrier (fdatasync)
// between the steps:
//
//  1. guest data and new or increased refcounts;
//  2. L2 tables (new mappings);
//  3. the L1 table and header fields that point to new tables;
//  4. only then are decreased refcounts applied (clusters freed).
//
// A reference therefore never becomes durable before the refcount that
// accounts for it, and a cluster is never reused while a durable table may
// still point to it. A crash (process kill or power loss) at any point can
// leak clusters (a refcount higher than the references), which `check -r
// leaks` repairs, but never leaves a reference to a free cluster or a
// mapping to unwritten data. Flush makes every completed write durable.
package qcow2

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/paddock-vm/paddock/disk/imagefile"
)

// Sentinel errors, for errors.Is.
var (
	// ErrUnsupported: the image uses a feature paddock does not implement
	// (encryption, external data files, unknown incompatible features).
	ErrUnsupported = errors.New("unsupported qcow2 feature")
	// ErrCorrupt: the image is marked corrupt, or paddock found metadata
	// that would make a write destroy data.
	ErrCorrupt = errors.New("qcow2 image is corrupt")
	// ErrReadOnly: a write to an image opened read-only.
	ErrReadOnly = errors.New("image is read-only")
	// ErrClosed: use after Close.
	ErrClosed = errors.New("image is closed")
)

// Default cache sizes: the L2 cache covers 256 GiB of guest space with 64
// KiB clusters, like QEMU's default on Linux.
const (
	defaultL2CacheBytes  = 32 << 20
	defaultRefCacheBytes = 4 << 20
	maxBackingDepth      = 256
	fileGrowChunk        = 8 << 20
)

// Options control Open.
type Options struct {
	// ReadOnly opens the image and its file read-only.
	ReadOnly bool
	// NoBacking skips opening the backing chain: unallocated ranges read
	// as zeros. For metadata-only work (info, rebase -u).
	NoBacking bool
	// L2CacheBytes and RefcountCacheBytes size the metadata caches; zero
	// picks the defaults (32 MiB and 4 MiB).
	L2CacheBytes       int64
	RefcountCacheBytes int64
	// Storage, if set, is used instead of opening the file at path (path
	// then only names the image in messages and anchors relative backing
	// file names). Open takes ownership of it.
	Storage Storage
	// NoSync turns every write barrier and Flush into a no-op (QEMU's
	// cache=unsafe). Only for building a new image from scratch, such as
	// convert's destination: a crash then leaves an unusable image.
	// Never for a disk in use.
	NoSync bool
	// Repair allows opening an image marked corrupt for writing, so that
	// Check can repair it. Nothing else should set it.
	Repair bool
	// Backing restricts the backing files of the chain (see
	// BackingPolicy); nil follows any, as QEMU does.
	Backing *BackingPolicy
	// ForceShare reads the image (and its backing chain) without
	// forbidding others to write it, like qemu-img -U: Open then works on
	// an image a VM writes, and may see it half-written. Only with
	// ReadOnly.
	ForceShare bool
	// Handed, if set, holds the chain's backing files, handed over by
	// another process (Image.Handover): the chain takes them in order
	// and opens no backing file by name. Backing is not applied to them:
	// the process that opened them did. Only with OpenFile; call
	// Handed.Finish after it.
	Handed *Handed
}

// access is the lock access of opts on the image file (see
// disk/imagefile): a writer's, a reader's, or a -U reader's.
func (opts Options) access() imagefile.Access {
	return imagefile.AccessFor(opts.ReadOnly, opts.ForceShare)
}

// layer is what an image reads unallocated ranges from: a backing qcow2
// image or a raw file.
type layer interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// Image is an open qcow2 image. See the package documentation for its
// concurrency and crash-safety guarantees.
type Image struct {
	path string
	f    Storage
	ro   bool
	g    geometry
	opts Options

	backing     layer
	backingName string
	backingFmt  string

	size atomic.Int64 // virtual size

	// gate is read-locked by every guest request for its whole duration
	// and write-locked to wait for all requests to drain: before freed
	// host clusters become reusable, and around snapshot operations.
	gate sync.RWMutex
	// flushMu serialises Flush and the structural operations.
	flushMu sync.Mutex

	// mu guards everything below.
	mu   sync.Mutex
	cond sync.Cond // signalled when in-flight clusters complete

	hdr       Header
	exts      []Extension
	l1        []uint64
	l1DirtyLo int64 // dirty L1 entry range [lo, hi); lo == hi: clean
	l1DirtyHi int64
	rt        []uint64 // refcount table
	rtUsed    int64    // entries of rt up to the last non-zero one
	rtDirtyLo int64
	rtDirtyHi int64
	// l2Set and rbSet index where the active L2 tables and the refcount
	// blocks are, for the overlap checks (metadataIn). setL1,
	// setL1Table and setRefTable keep them in step with the tables.
	l2Set    clusterSet
	rbSet    clusterSet
	l2c      *tableCache
	rbc      *tableCache
	inflight map[int64]struct{} // guest clusters whose mapping is changing
	// pendingFree holds host clusters whose references were dropped from
	// tables that may not be durable yet; their refcounts are decreased by
	// the next flush, after the tables are on disk.
	pendingFree  []int64
	freeHint     int64 // no free cluster below this index
	allocEnd     int64 // no cluster at or after this index is in use
	fileSize     int64
	zeroFrom     int64 // every byte at or after this offset reads as zero
	compCursor   int64 // next byte for compressed data; 0: start a new cluster
	snaps        []snapshotEntry
	snapTableLen int64 // bytes of the stored snapshot table
	broken       error // sticky: a metadata write failed
	closed       bool

	dec  decompressor
	comp compressor
}

// Open opens the qcow2 image at path and, unless opts.NoBacking, its
// backing chain.
func Open(path string, opts Options) (*Image, error) {
	return openChain(path, nil, opts, nil)
}

// OpenFile opens the qcow2 image in f, a file the caller opened and
// locked for opts' access (disk/imagefile), such as one OpenBackingFile
// returns, and, unless opts.NoBacking, its backing chain. f.Name() names
// the image in messages and anchors relative backing file names;
// opts.Storage is ignored. OpenFile takes f over: closing the image, or
// a failed open, closes it.
func OpenFile(f *os.File, opts Options) (*Image, error) {
	opts.Storage = nil
	return openChain(f.Name(), f, opts, nil)
}

// openChain opens an image from file, if not nil, or else from path;
// chain holds the files already open above it, to detect backing loops.
// A file given is already locked for opts' access (see openBacking).
func openChain(path string, file *os.File, opts Options, chain []os.FileInfo) (_ *Image, err error) {
	if opts.ForceShare && !opts.ReadOnly {
		if file != nil {
			imagefile.Close(file)
		}
		return nil, fmt.Errorf("qcow2: open %s: force-share needs a read-only open", path)
	}
	st := opts.Storage
	if f, ok := st.(*osFile); ok && opts.NoSync {
		st = noSync{f}
	}
	if st == nil {
		f := &osFile{f: file}
		if file == nil {
			if f, err = openStorage(path, opts.access()); err != nil {
				return nil, fmt.Errorf("qcow2: %w", err)
			}
		}
		st = f
		if opts.NoSync {
			st = noSync{f}
		}
		fi, err := f.f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("qcow2: %w", err)
		}
		for _, c := range chain {
			if os.SameFile(c, fi) {
				f.Close()
				return nil, fmt.Errorf("qcow2: %s: %w: backing chain loops back to this file", path, ErrFormat)
			}
		}
		chain = append(chain, fi)
	}
	img := &Image{path: path, f: st, ro: opts.ReadOnly, opts: opts}
	img.cond.L = &img.mu
	img.inflight = make(map[int64]struct{})
	defer func() {
		if err != nil {
			img.closeFiles()
		}
	}()
	if err := img.load(); err != nil {
		return nil, err
	}
	if !opts.NoBacking && img.backingName != "" {
		if depth := opts.Backing.maxDepth(); len(chain) > depth {
			if opts.Backing == nil {
				return nil, img.errf(ErrFormat, "backing chain deeper than %d files", depth+1)
			}
			return nil, img.errf(ErrBackingRefused, "backing file %q would make the chain longer than %d backing files", img.backingName, depth)
		}
		b, err := openBacking(path, img.backingName, img.backingFmt, opts, chain)
		if err != nil {
			return nil, backingError(path, err)
		}
		img.backing = b
	}
	return img, nil
}

// errf formats an error naming the image file and wrapping err.
func (img *Image) errf(err error, format string, args ...any) error {
	return fmt.Errorf("qcow2: %s: %s: %w", img.path, fmt.Sprintf(format, args...), err)
}

// failf formats an error naming the image file, wrapping nothing: for
// refusals that no sentinel describes.
func (img *Image) failf(format string, args ...any) error {
	return fmt.Errorf("qcow2: %s: %s", img.path, fmt.Sprintf(format, args...))
}

// load reads and validates the header and the tables kept in memory.
func (img *Image) load() error {
	fsz, err := img.f.Size()
	if err != nil {
		return img.errf(err, "size")
	}
	img.fileSize = fsz
	img.zeroFrom = fsz
	first := make([]byte, 4096)
	n, err := img.f.ReadAt(first, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return img.errf(err, "read header")
	}
	if n < 4 || string(first[:4]) != "QFI\xfb" {
		return img.errf(ErrFormat, "not a qcow2 image (it does not start with the qcow2 magic)")
	}
	h, err := ParseHeader(first[:n])
	if err != nil {
		return img.errf(err, "header")
	}
	// The rest of the header cluster continues what was read: every
	// byte of it is read once, so what was validated is what is used.
	cs := h.clusterSize()
	cluster0 := make([]byte, cs)
	copy(cluster0, first[:n])
	if int64(n) < cs && n == len(first) {
		if _, err := img.f.ReadAt(cluster0[n:], int64(n)); err != nil && !errors.Is(err, io.EOF) {
			return img.errf(err, "read header cluster")
		}
	}
	if err := img.checkFeatures(&h, cluster0); err != nil {
		return err
	}
	if err := h.ValidateLayout(fsz); err != nil {
		return img.errf(err, "header")
	}
	img.hdr = h
	img.g = newGeometry(&h)
	img.size.Store(int64(h.Size))

	extEndOff := int(cs)
	if h.BackingFileOffset != 0 {
		extEndOff = int(h.BackingFileOffset)
	}
	exts, err := ParseExtensions(cluster0, int(h.HeaderLength), extEndOff)
	if err != nil {
		return img.errf(err, "header extensions")
	}
	img.exts = exts
	for _, e := range exts {
		switch e.Type {
		case extBackingFormat:
			img.backingFmt = string(e.Data)
		case extDataFile:
			return img.errf(ErrUnsupported, "external data files are not supported")
		case extCrypto:
			return img.errf(ErrUnsupported, "encrypted images are not supported")
		}
	}
	if h.BackingFileOffset != 0 {
		img.backingName = string(cluster0[h.BackingFileOffset : h.BackingFileOffset+uint64(h.BackingFileSize)])
	}

	l1, err := img.readTable(int64(h.L1TableOffset), int64(h.L1Size), "L1 table")
	if err != nil {
		return err
	}
	img.setL1Table(l1)
	rtEntries := int64(h.RefcountTableClusters) * cs / 8
	rt, err := img.readTable(int64(h.RefcountTableOffset), rtEntries, "refcount table")
	if err != nil {
		return err
	}
	img.setRefTable(rt)
	if img.snaps, err = img.readSnapshots(); err != nil {
		return err
	}
	l2Bytes, refBytes := img.opts.L2CacheBytes, img.opts.RefcountCacheBytes
	if l2Bytes <= 0 {
		l2Bytes = defaultL2CacheBytes
	}
	if refBytes <= 0 {
		refBytes = defaultRefCacheBytes
	}
	img.l2c = newTableCache(int(l2Bytes / cs))
	img.rbc = newTableCache(int(refBytes / cs))
	if img.ro {
		return nil
	}
	return img.prepareWrite()
}

// checkFeatures refuses images paddock must not open.
func (img *Image) checkFeatures(h *Header, cluster0 []byte) error {
	if unknown := h.IncompatibleFeatures &^ incompatKnownMask; unknown != 0 {
		return img.errf(ErrUnsupported, "unknown incompatible features: %s", img.featureNames(h, cluster0, 0, unknown))
	}
	if h.IncompatibleFeatures&IncompatDataFile != 0 {
		return img.errf(ErrUnsupported, "external data files are not supported")
	}
	if h.CryptMethod != 0 {
		return img.errf(ErrUnsupported, "encrypted images are not supported (crypt_method %d)", h.CryptMethod)
	}
	if h.CompressionType > CompressionZstd {
		return img.errf(ErrUnsupported, "compression type %d", h.CompressionType)
	}
	if h.IncompatibleFeatures&IncompatCorrupt != 0 && !img.ro && !img.opts.Repair {
		return img.errf(ErrCorrupt, "image is marked corrupt; open it read-only, or repair it with 'paddock image check -r all'")
	}
	return nil
}

// featureNames describes feature bits, using the image's feature name
// table where it names them.
func (img *Image) featureNames(h *Header, cluster0 []byte, kind byte, bits uint64) string {
	var table []featureName
	end := len(cluster0)
	if h.BackingFileOffset != 0 && h.BackingFileOffset < uint64(end) {
		end = int(h.BackingFileOffset)
	}
	if exts, err := ParseExtensions(cluster0, int(h.HeaderLength), end); err == nil {
		for _, e := range exts {
			if e.Type == extFeatureTable {
				table = parseFeatureTable(e.Data)
			}
		}
	}
	var parts []string
	for bit := 0; bit < 64; bit++ {
		if bits&(1<<uint(bit)) == 0 {
			continue
		}
		s := fmt.Sprintf("bit %d", bit)
		for _, f := range table {
			if f.kind == kind && int(f.bit) == bit && f.name != "" {
				s += fmt.Sprintf(" (%q)", f.name)
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// readTable reads n big-endian 64-bit entries at off. The caller has
// validated n against the caps and the file size.
func (img *Image) readTable(off, n int64, what string) ([]uint64, error) {
	buf := make([]byte, n*8)
	if err := img.readFull(buf, off); err != nil {
		return nil, img.errf(err, "read %s at %#x", what, off)
	}
	t := make([]uint64, n)
	for i := range t {
		t[i] = be64(buf[i*8:])
	}
	return t, nil
}

// readFull reads len(p) bytes at off; bytes past the end of the file read
// as zeros only if at least one byte was read (a partial final cluster).
func (img *Image) readFull(p []byte, off int64) error {
	n, err := img.f.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if errors.Is(err, io.EOF) {
		if n == 0 && len(p) > 0 {
			return fmt.Errorf("offset %#x is past the end of the file: %w", off, io.ErrUnexpectedEOF)
		}
		clear(p[n:])
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// readSnapshots reads and parses the snapshot table.
func (img *Image) readSnapshots() ([]snapshotEntry, error) {
	h := &img.hdr
	if h.NbSnapshots == 0 {
		return nil, nil
	}
	// Entries are variable-length: read the table entry by entry, so a
	// hostile count cannot make paddock read 64 MiB up front.
	var buf []byte
	off := int64(h.SnapshotsOffset)
	for i := uint32(0); i < h.NbSnapshots; i++ {
		fixed := make([]byte, 40)
		if err := img.readFull(fixed, off); err != nil {
			return nil, img.errf(err, "read snapshot table entry %d at %#x", i, off)
		}
		extra := int64(be32(fixed[36:]))
		idLen := int64(be16(fixed[12:]))
		nameLen := int64(be16(fixed[14:]))
		if extra > maxSnapshotExtra {
			return nil, img.errf(ErrFormat, "snapshot %d has %d bytes of extra data (limit %d)", i, extra, maxSnapshotExtra)
		}
		total := alignUp(40+extra+idLen+nameLen, 8)
		if int64(len(buf))+total > maxSnapshotTableBytes {
			return nil, img.errf(ErrFormat, "snapshot table exceeds %d bytes", maxSnapshotTableBytes)
		}
		if off+total > img.fileSize+8 {
			return nil, img.errf(ErrFormat, "snapshot table entry %d runs past the end of the file", i)
		}
		// The rest of the entry, after the fixed part already read: the
		// lengths just checked are the ones parsed below. Its padding may
		// end past the file (checked above), and reads as zeros.
		rest := make([]byte, total-40)
		k, err := img.f.ReadAt(rest, off+40)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, img.errf(err, "read snapshot table entry %d at %#x", i, off)
		}
		clear(rest[k:])
		buf = append(append(buf, fixed...), rest...)
		off += total
	}
	img.snapTableLen = int64(len(buf))
	snaps, _, err := parseSnapshotTable(buf, int(h.NbSnapshots))
	if err != nil {
		return nil, img.errf(err, "snapshot table")
	}
	var l1Bytes int64
	for i, s := range snaps {
		if s.l1Size > maxL1Bytes/8 {
			return nil, img.errf(ErrFormat, "snapshot %q has an L1 table of %d entries", s.name, s.l1Size)
		}
		// Each snapshot has an L1 table of its own, so together they fit
		// in the file; a check or a rebuild reads every one of them.
		if l1Bytes += int64(s.l1Size) * 8; l1Bytes > img.fileSize {
			return nil, img.errf(ErrFormat, "the snapshots' L1 tables add up to more than the %d-byte file", img.fileSize)
		}
		if err := checkTable("snapshot L1 table", s.l1Offset, uint64(s.l1Size)*8, uint64(img.g.cs), uint64(img.fileSize)); err != nil {
			return nil, img.errf(err, "snapshot %d (%q)", i, s.name)
		}
	}
	return snaps, nil
}

// resolveBacking returns the backing file path: relative names are
// relative to the directory of this image, as in QEMU.
func (img *Image) resolveBacking() string {
	return backingPath(img.path, img.backingName)
}

// noSync is a Storage whose Sync does nothing (Options.NoSync).
type noSync struct{ *osFile }

func (noSync) Sync() error { return nil }

// rawLayer is a raw backing file.
type rawLayer struct {
	f    *os.File
	size int64
}

func (r *rawLayer) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }
func (r *rawLayer) Size() int64                             { return r.size }
func (r *rawLayer) Close() error                            { return imagefile.Close(r.f) }

// StartWriteback hints that data written so far will be flushed soon: the
// kernel starts writing it back now, so that a later Flush waits less
// (used by convert to overlap copying with disk I/O). It never waits and
// gives no guarantee.
func (img *Image) StartWriteback() {
	if ws, ok := img.f.(writebackStarter); ok && !img.opts.NoSync {
		_ = ws.startWriteback() // a hint: failure costs only speed
	}
}

// Size returns the virtual disk size in bytes.
func (img *Image) Size() int64 { return img.size.Load() }

// ReadOnly reports whether the image was opened read-only.
func (img *Image) ReadOnly() bool { return img.ro }

// ClusterSize returns the cluster size in bytes.
func (img *Image) ClusterSize() int64 { return img.g.cs }

// SubclusterSize returns the allocation granularity: the subcluster size
// with extended L2 entries, otherwise the cluster size.
func (img *Image) SubclusterSize() int64 { return img.g.unitSize }

// Path returns the path the image was opened with.
func (img *Image) Path() string { return img.path }

// BackingFile returns the backing file name as stored and its format
// (empty when the header does not record one).
func (img *Image) BackingFile() (name, format string) { return img.backingName, img.backingFmt }

// Close flushes and closes the image and its backing chain. On a writable
// image it also trims unused space from the end of the file.
func (img *Image) Close() error {
	release := img.quiesce()
	defer release()
	if img.closed {
		return nil
	}
	var err error
	if !img.ro && img.broken == nil {
		err = img.flushLocked(true)
		if err == nil {
			err = img.trimFileLocked()
		}
	}
	img.closed = true
	if cerr := img.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

// closeFiles closes the storage and the backing chain.
func (img *Image) closeFiles() error {
	var err error
	if img.backing != nil {
		err = img.backing.Close()
		img.backing = nil
	}
	if img.f != nil {
		if cerr := img.f.Close(); err == nil {
			err = cerr
		}
	}
	img.dec.close()
	img.comp.close()
	return err
}

// trimFileLocked shrinks the file to the end of the last used cluster, if
// the file grew past it (allocation extends the file in chunks).
// Precondition: mu is held and metadata is flushed.
func (img *Image) trimFileLocked() error {
	end := img.allocEnd * img.g.cs
	if img.compCursor > end {
		end = img.compCursor
	}
	if end <= 0 || img.fileSize <= end {
		return nil
	}
	if err := img.f.Truncate(end); err != nil {
		return img.errf(err, "trim file to %d bytes", end)
	}
	img.fileSize = end
	return nil
}

// quiesce takes every lock in order and waits for requests to finish; the
// returned function releases them.
func (img *Image) quiesce() func() {
	img.flushMu.Lock()
	img.gate.Lock()
	img.mu.Lock()
	return func() {
		img.mu.Unlock()
		img.gate.Unlock()
		img.flushMu.Unlock()
	}
}

// usable reports why the image cannot be used. Precondition: mu is held.
func (img *Image) usable() error {
	if img.closed {
		return img.errf(ErrClosed, "use after close")
	}
	return img.broken
}

// writable reports why the image cannot be written. Precondition: mu is held.
func (img *Image) writable() error {
	if err := img.usable(); err != nil {
		return err
	}
	if img.ro {
		return img.errf(ErrReadOnly, "write")
	}
	return nil
}

// prepareWrite readies an image opened for writing: it repairs the
// refcounts of an image left dirty by a lazy-refcounts writer, clears the
// autoclear feature bits (paddock maintains none of their data, e.g.
// bitmaps, so it must declare that data stale, as the spec requires), and
// finds the end of the used clusters.
func (img *Image) prepareWrite() error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if img.hdr.IncompatibleFeatures&IncompatDirty != 0 {
		if _, err := img.rebuildRefcountsLocked(); err != nil {
			return err
		}
	}
	if img.hdr.AutoclearFeatures != 0 {
		img.hdr.AutoclearFeatures = 0
		if err := img.writeHeaderLocked(); err != nil {
			return err
		}
		if err := img.sync(); err != nil {
			return err
		}
	}
	return img.computeAllocEnd()
}

// Info summarises an image's header, for `image info`.
type Info struct {
	Version       int
	Size          int64
	ClusterSize   int64
	RefcountBits  int
	Compression   string // "zlib" or "zstd"
	ExtendedL2    bool
	LazyRefcounts bool
	Corrupt       bool
	Dirty         bool
	BackingFile   string
	BackingFormat string
	// BackingPath is BackingFile resolved against the image's directory.
	BackingPath string
	Snapshots   []SnapshotInfo
	// FileLength is the length of the image file (its apparent size).
	FileLength int64
}

// Info describes the image.
func (img *Image) Info() Info {
	img.mu.Lock()
	h := img.hdr
	fl := img.fileSize
	img.mu.Unlock()
	in := Info{
		Version:       int(h.Version),
		Size:          img.Size(),
		ClusterSize:   img.g.cs,
		RefcountBits:  int(img.g.refBits),
		Compression:   "zlib",
		ExtendedL2:    img.g.extL2,
		LazyRefcounts: h.CompatibleFeatures&CompatLazyRefcounts != 0,
		Corrupt:       h.IncompatibleFeatures&IncompatCorrupt != 0,
		Dirty:         h.IncompatibleFeatures&IncompatDirty != 0,
		BackingFile:   img.backingName,
		BackingFormat: img.backingFmt,
		Snapshots:     img.Snapshots(),
		FileLength:    fl,
	}
	if h.CompressionType == CompressionZstd {
		in.Compression = "zstd"
	}
	if in.BackingFile != "" {
		in.BackingPath = img.resolveBacking()
	}
	return in
}
