package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/paddock-vm/paddock/disk/qcow2"
)

// ConvertOptions control Convert.
type ConvertOptions struct {
	// SrcFormat and DstFormat: "raw" or "qcow2"; an empty SrcFormat is
	// detected, an empty DstFormat means qcow2.
	SrcFormat, DstFormat string
	// Snapshot converts this internal snapshot (ID or name) of a qcow2
	// source instead of its current state.
	Snapshot string
	// Compress writes compressed clusters (qcow2 destination only).
	Compress bool
	// Qcow2 is the layout of a qcow2 destination (its Size is ignored).
	Qcow2 qcow2.CreateOptions
	// Progress, if set, is called with bytes done and total, from one
	// goroutine at a time.
	Progress func(done, total int64)
	// Workers is the number of parallel copy workers (0: a default).
	Workers int
	// ForceShare reads the source without forbidding others to write it
	// (qemu-img -U): the copy of an image in use may be inconsistent.
	ForceShare bool
	// NoSync skips the write barriers and the final flush (qemu-img's
	// default cache=unsafe for convert): faster, but the new image is
	// only durable once the system writes it back on its own.
	NoSync bool
	// Backing restricts the source's backing chain (nil: any).
	Backing *BackingPolicy
}

// convertChunk is the unit of work; a multiple of every cluster size.
const convertChunk = 2 << 20

// writebackEvery is how much convert copies between writeback hints.
const writebackEvery = 64 << 20

// Convert copies the disk at src into a new image at dst. A file already
// at dst is replaced, as qemu-img convert does, unless another process
// uses it (see Create). Ranges the source reports as zero or
// unallocated, and chunks that read as all zeros, are not written: the
// destination stays sparse.
func Convert(ctx context.Context, src, dst string, o ConvertOptions) (err error) {
	in, err := Open(src, Options{Format: o.SrcFormat, ReadOnly: true, ForceShare: o.ForceShare, Backing: o.Backing})
	if err != nil {
		return err
	}
	defer in.Close()
	var reader io.ReaderAt = in
	size := in.Size()
	listExtents := extentLister(in)
	if o.Snapshot != "" {
		q := Qcow2(in)
		if q == nil {
			return fmt.Errorf("disk: %s: only qcow2 images have internal snapshots", src)
		}
		v, err := q.SnapshotView(o.Snapshot)
		if err != nil {
			return err
		}
		reader, size, listExtents = v, v.Size(), nil
	}
	if o.DstFormat == "" {
		o.DstFormat = FormatQcow2
	}
	if o.Compress && o.DstFormat != FormatQcow2 {
		return fmt.Errorf("disk: convert to %s: compression needs a qcow2 destination", dst)
	}
	if fi, err := os.Stat(dst); err == nil && usesFile(in, fi) {
		return fmt.Errorf("disk: convert %s to %s: the destination is the source or one of its backing files", src, dst)
	}
	out, err := Create(dst, CreateOptions{Format: o.DstFormat, Size: size, Qcow2: o.Qcow2, NoSync: o.NoSync})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	var cs int64
	if q := Qcow2(out); q != nil {
		cs = q.ClusterSize()
	}
	// The work list: data extents, cut into chunks.
	var work []Extent
	for off := int64(0); off < size; off += convertChunk {
		n := min(int64(convertChunk), size-off)
		exts := []Extent{{Offset: off, Length: n, Data: true}}
		if listExtents != nil {
			if exts, err = listExtents(off, n); err != nil {
				return err
			}
		}
		for _, e := range exts {
			if e.Zero {
				continue
			}
			if o.Compress {
				e = clusterAligned(e, cs, off+n)
				if last := len(work) - 1; last >= 0 && work[last].Offset >= off && work[last].Offset+work[last].Length >= e.Offset {
					work[last].Length = max(work[last].Length, e.Offset+e.Length-work[last].Offset)
					continue
				}
			}
			work = append(work, e)
		}
	}
	workers := o.Workers
	if workers <= 0 {
		workers = max(4, 2*runtime.NumCPU())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan Extent)
	var done atomic.Int64
	var progressMu sync.Mutex
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, convertChunk)
			for e := range jobs {
				if err := convertExtent(reader, out, e, buf, o.Compress, cs); err != nil {
					fail(err)
					return
				}
				d := done.Add(e.Length)
				// Overlap disk writeback with copying, so the final
				// flush has little left to do.
				if !o.NoSync && d/writebackEvery != (d-e.Length)/writebackEvery {
					if ws, ok := out.(interface{ StartWriteback() }); ok {
						ws.StartWriteback()
					}
				}
				if o.Progress != nil {
					progressMu.Lock()
					o.Progress(d, size)
					progressMu.Unlock()
				}
			}
		}()
	}
feed:
	for _, e := range work {
		select {
		case jobs <- e:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("disk: convert %s: %w", src, err)
	}
	if o.Progress != nil {
		o.Progress(size, size)
	}
	if o.NoSync {
		return nil
	}
	return out.Flush()
}

// clusterAligned widens e to whole clusters of size cs, ending at most at
// end (a chunk's end, itself on a cluster boundary or the disk's end): a
// compressed cluster is written whole, once, so the extents of a sparse
// raw source (4 KiB apart, say) must not split one.
func clusterAligned(e Extent, cs, end int64) Extent {
	start := e.Offset / cs * cs
	stop := min((e.Offset+e.Length+cs-1)/cs*cs, end)
	return Extent{Offset: start, Length: stop - start, Data: e.Data}
}

// convertExtent copies one chunk, skipping zero parts.
func convertExtent(r io.ReaderAt, out Image, e Extent, buf []byte, compress bool, cs int64) error {
	p := buf[:e.Length]
	if n, err := r.ReadAt(p, e.Offset); err != nil && !(errors.Is(err, io.EOF) && int64(n) == e.Length) {
		return err
	}
	if compress {
		q := Qcow2(out)
		for off := int64(0); off < e.Length; off += cs {
			c := p[off:min(off+cs, e.Length)]
			if isZero(c) {
				continue
			}
			if err := q.WriteCompressed(c, e.Offset+off); err != nil {
				return err
			}
		}
		return nil
	}
	// Write the non-zero runs, in 64 KiB granules.
	const granule = 64 << 10
	for off := int64(0); off < e.Length; {
		end := min(off+granule, e.Length)
		if isZero(p[off:end]) {
			off = end
			continue
		}
		for end < e.Length && !isZero(p[end:min(end+granule, e.Length)]) {
			end = min(end+granule, e.Length)
		}
		if _, err := out.WriteAt(p[off:end], e.Offset+off); err != nil {
			return err
		}
		off = end
	}
	return nil
}

var zeroPage [64 << 10]byte

// isZero reports whether p is all zeros.
func isZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeroPage))
		if !bytes.Equal(p[:n], zeroPage[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// extentLister returns a function listing allocation extents of img, or
// nil if the format cannot tell.
func extentLister(img Image) func(off, n int64) ([]Extent, error) {
	if q := Qcow2(img); q != nil {
		return func(off, n int64) ([]Extent, error) {
			exts, err := q.Extents(off, n)
			if err != nil {
				return nil, err
			}
			out := make([]Extent, 0, len(exts))
			for _, e := range exts {
				out = append(out, Extent{Offset: e.Offset, Length: e.Length, Data: e.Data, Zero: e.Zero && !e.Data})
			}
			return out, nil
		}
	}
	if r, ok := img.(*Raw); ok {
		return r.Extents
	}
	return nil
}

// usesFile reports whether fi is the file of img or of one of its backing
// files.
func usesFile(img Image, fi os.FileInfo) bool {
	if q := Qcow2(img); q != nil {
		return q.UsesFile(fi)
	}
	if r, ok := img.(*Raw); ok {
		own, err := r.f.Stat()
		return err == nil && os.SameFile(own, fi)
	}
	return false
}
