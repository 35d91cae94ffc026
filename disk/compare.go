package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// CompareOptions control Compare.
type CompareOptions struct {
	// FormatA and FormatB are the formats of the two images (detected
	// if empty).
	FormatA, FormatB string
	// Strict makes images of different sizes differ; otherwise the part
	// of the larger one past the smaller's end must read as zeros.
	Strict bool
	// ForceShare reads both without forbidding others to write them
	// (qemu-img -U).
	ForceShare bool
	// BackingA and BackingB restrict the backing chains of the two
	// images (nil: any backing file).
	BackingA, BackingB *BackingPolicy
	// Progress, if set, is called with bytes done and total.
	Progress func(done, total int64)
}

// Comparison is the result of Compare.
type Comparison struct {
	// Same: the disks read the same.
	Same bool
	// Offset is the first byte that differs (when not Same and not
	// SizeMismatch).
	Offset int64
	// SizeMismatch: Strict, and the sizes differ.
	SizeMismatch bool
}

// compareChunk is how much Compare reads of each image at a time.
const compareChunk = 1 << 20

// Compare reads the disks the images at a and b present (through their
// backing chains) and reports whether they are the same, like qemu-img
// compare.
func Compare(ctx context.Context, a, b string, o CompareOptions) (Comparison, error) {
	ia, err := Open(a, Options{Format: o.FormatA, ReadOnly: true, ForceShare: o.ForceShare, Backing: o.BackingA})
	if err != nil {
		return Comparison{}, err
	}
	defer ia.Close()
	ib, err := Open(b, Options{Format: o.FormatB, ReadOnly: true, ForceShare: o.ForceShare, Backing: o.BackingB})
	if err != nil {
		return Comparison{}, err
	}
	defer ib.Close()
	sa, sb := ia.Size(), ib.Size()
	if o.Strict && sa != sb {
		return Comparison{SizeMismatch: true}, nil
	}
	total := max(sa, sb)
	bufA, bufB := make([]byte, compareChunk), make([]byte, compareChunk)
	for off := int64(0); off < total; off += compareChunk {
		if err := ctx.Err(); err != nil {
			return Comparison{}, fmt.Errorf("disk: compare %s and %s: %w", a, b, err)
		}
		n := min(compareChunk, total-off)
		pa, pb := bufA[:n], bufB[:n]
		if err := readPadded(ia, pa, off); err != nil {
			return Comparison{}, err
		}
		if err := readPadded(ib, pb, off); err != nil {
			return Comparison{}, err
		}
		if !bytes.Equal(pa, pb) {
			i := 0
			for pa[i] == pb[i] {
				i++
			}
			return Comparison{Offset: off + int64(i)}, nil
		}
		if o.Progress != nil {
			o.Progress(off+n, total)
		}
	}
	return Comparison{Same: true}, nil
}

// readPadded fills p from img at off; bytes past the disk's end read as
// zeros.
func readPadded(img Image, p []byte, off int64) error {
	n := 0
	if off < img.Size() {
		var err error
		n, err = img.ReadAt(p[:min(int64(len(p)), img.Size()-off)], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	clear(p[n:])
	return nil
}
