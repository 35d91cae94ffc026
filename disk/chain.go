package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/paddock-vm/paddock/disk/imagefile"
	"github.com/paddock-vm/paddock/disk/qcow2"
)

// backingPath resolves a backing file name stored in the image at path.
func backingPath(path, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(filepath.Dir(path), name)
}

// CommitOptions control Commit.
type CommitOptions struct {
	// KeepTop leaves the committed data in the top image (qemu-img
	// commit -d); by default the top image is emptied.
	KeepTop bool
	// Progress, if set, is called with bytes done and total.
	Progress func(done, total int64)
	// Backing restricts the backing chain (nil: any backing file).
	Backing *BackingPolicy
}

// Commit writes everything stored in the qcow2 image at path into its
// backing file, then empties the image (unless o.KeepTop), so the chain
// reads the same as before.
func Commit(ctx context.Context, path string, o CommitOptions) error {
	top, err := qcow2.Open(path, qcow2.Options{NoBacking: true, ReadOnly: o.KeepTop})
	if err != nil {
		return err
	}
	defer top.Close()
	name, format := top.BackingFile()
	if name == "" {
		return fmt.Errorf("disk: commit %s: the image has no backing file", path)
	}
	// The base is opened as judged (OpenBacking): the data goes into the
	// very file the policy allowed, under a writer's lock.
	base, err := OpenBacking(path, name, Options{Format: format, Backing: o.Backing})
	if err != nil {
		return err
	}
	defer base.Close()
	bpath := backingPath(path, name)
	if base.Size() < top.Size() {
		if err := Resize(base, top.Size(), false); err != nil {
			return fmt.Errorf("disk: commit %s: grow backing file %s: %w", path, bpath, err)
		}
	}
	maps, err := top.Map(0, top.Size())
	if err != nil {
		return err
	}
	var total, done int64
	for _, m := range maps {
		if m.Kind != qcow2.KindUnallocated {
			total += m.Length
		}
	}
	buf := make([]byte, convertChunk)
	for _, m := range maps {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("disk: commit %s: %w", path, err)
		}
		switch m.Kind {
		case qcow2.KindUnallocated:
			continue
		case qcow2.KindZero:
			if err := base.WriteZeroes(m.Offset, m.Length, false); err != nil {
				return err
			}
		default:
			for off := m.Offset; off < m.Offset+m.Length; off += convertChunk {
				n := min(int64(convertChunk), m.Offset+m.Length-off)
				if _, err := top.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
					return err
				}
				if _, err := base.WriteAt(buf[:n], off); err != nil {
					return err
				}
			}
		}
		done += m.Length
		if o.Progress != nil {
			o.Progress(done, total)
		}
	}
	if err := base.Flush(); err != nil {
		return err
	}
	if o.KeepTop {
		return nil
	}
	return top.MakeEmpty()
}

// ErrShrink reports a resize that would discard data and was not allowed
// to.
var ErrShrink = qcow2.ErrShrink

// Resize changes the virtual size of img. Shrinking discards the data past
// the new end and needs allowShrink (else the error is ErrShrink).
func Resize(img Image, size int64, allowShrink bool) error {
	if q := Qcow2(img); q != nil {
		return q.Resize(size, allowShrink)
	}
	r, ok := img.(*Raw)
	if !ok {
		return fmt.Errorf("%w: cannot resize %s images", ErrFormat, img.Capabilities().Format)
	}
	if size < r.Size() && !allowShrink {
		return fmt.Errorf("disk: %s: resize from %d to %d bytes: %w", r.path(), r.Size(), size, ErrShrink)
	}
	return r.Resize(size)
}

// RebaseOptions control Rebase.
type RebaseOptions struct {
	// Unsafe only rewrites the backing file name (qemu-img rebase -u):
	// for when the data of the old and new backing files are the same.
	Unsafe bool
	// Progress, if set, is called with bytes done and total.
	Progress func(done, total int64)
	// Backing restricts the old and the new backing chains (nil: any).
	Backing *BackingPolicy
}

// Rebase changes the backing file of the qcow2 image at path to
// newBacking (format newFormat, detected if empty; "" newBacking removes
// the backing file). In safe mode every range the image does not store
// itself is compared between the old and new backing files and copied
// into the image where they differ, so the disk reads the same before and
// after.
func Rebase(ctx context.Context, path, newBacking, newFormat string, o RebaseOptions) error {
	if o.Unsafe {
		if newBacking != "" && (newFormat == "" || o.Backing != nil) {
			// Judge the new backing file and read its format from the
			// file judged. Only its name is recorded and none of its
			// data read (as qemu-img rebase -u), so no lock is held.
			f, format, err := qcow2.OpenBackingFile(o.Backing, path, newBacking, newFormat, imagefile.Unlocked)
			if err != nil {
				return err
			}
			f.Close()
			newFormat = format
		}
		top, err := qcow2.Open(path, qcow2.Options{NoBacking: true})
		if err != nil {
			return err
		}
		if err := top.SetBacking(newBacking, newFormat); err != nil {
			top.Close()
			return err
		}
		return top.Close()
	}
	top, err := qcow2.Open(path, qcow2.Options{Backing: o.Backing})
	if err != nil {
		return err
	}
	defer top.Close()
	// The new backing file is compared with as judged (OpenBacking), under
	// a reader's lock, so no one writes it meanwhile.
	var nb Image
	if newBacking != "" {
		if nb, err = OpenBacking(path, newBacking, Options{Format: newFormat, ReadOnly: true, Backing: o.Backing}); err != nil {
			return err
		}
		defer nb.Close()
		newFormat = nb.Capabilities().Format
	}
	maps, err := top.Map(0, top.Size())
	if err != nil {
		return err
	}
	var total, done int64
	for _, m := range maps {
		if m.Kind == qcow2.KindUnallocated {
			total += m.Length
		}
	}
	cs := top.ClusterSize()
	oldBuf := make([]byte, cs)
	newBuf := make([]byte, cs)
	for _, m := range maps {
		if m.Kind != qcow2.KindUnallocated {
			continue
		}
		for off := m.Offset; off < m.Offset+m.Length; {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("disk: rebase %s: %w", path, err)
			}
			n := min(cs-off%cs, m.Offset+m.Length-off)
			if _, err := top.ReadAt(oldBuf[:n], off); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			clear(newBuf[:n])
			if nb != nil && off < nb.Size() {
				if _, err := nb.ReadAt(newBuf[:n], off); err != nil && !errors.Is(err, io.EOF) {
					return err
				}
			}
			if !bytes.Equal(oldBuf[:n], newBuf[:n]) {
				if _, err := top.WriteAt(oldBuf[:n], off); err != nil {
					return err
				}
			}
			off += n
			done += n
			if o.Progress != nil {
				o.Progress(done, total)
			}
		}
	}
	if err := top.Flush(); err != nil {
		return err
	}
	return top.SetBacking(newBacking, newFormat)
}
