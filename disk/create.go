package disk

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/disk/imagefile"
	"github.com/paddock-vm/paddock/disk/qcow2"
)

// CreateOptions describe a new image for Create.
type CreateOptions struct {
	// Format is "raw" or "qcow2" (empty: qcow2).
	Format string
	// Size is the virtual size in bytes; for a qcow2 image with a backing
	// file, 0 means the backing file's size.
	Size int64
	// Qcow2 is the layout of a qcow2 image (its Size and Storage are
	// ignored).
	Qcow2 qcow2.CreateOptions
	// NoSync makes the returned image skip its write barriers and final
	// flush (convert -t unsafe).
	NoSync bool
}

// Create makes a new image at path and returns it open for writing. A
// file already at path is replaced, as qemu-img create and convert do,
// but only once Create holds its write lock: an image a VM or a QEMU
// process uses is refused (errors.As finds an *imagefile.InUseError) and
// left untouched, and so is one whose replacement is refused before
// anything is written (bad qcow2 options, a backing file that cannot be
// opened or that o.Qcow2.Backing refuses). On a later failure a file
// Create made is removed again; a file it replaced is left truncated. The
// returned image does not open its
// backing file (unallocated ranges read as zeros): it is for filling a new
// image, not for serving a disk.
func Create(path string, o CreateOptions) (_ Image, err error) {
	if o.Format == "" {
		o.Format = FormatQcow2
	}
	if o.Format != FormatRaw && o.Format != FormatQcow2 {
		return nil, fmt.Errorf("disk: create %s: %w %q (raw or qcow2)", path, ErrFormat, o.Format)
	}
	if o.Size < 0 {
		return nil, fmt.Errorf("disk: create %s: negative size %d", path, o.Size)
	}
	f, created, err := imagefile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("disk: create: %w", err)
	}
	defer func() {
		if err != nil {
			imagefile.Close(f) // a no-op if the image closed it already
			if created {
				os.Remove(path)
			}
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("disk: create %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		return nil, fmt.Errorf("disk: create %s: it is a block device; paddock creates images in regular files only", path)
	}
	if o.Format == FormatRaw {
		if err := f.Truncate(0); err != nil {
			return nil, fmt.Errorf("disk: create %s: %w", path, unwrapPath(err))
		}
		if err := f.Truncate(o.Size); err != nil {
			return nil, fmt.Errorf("disk: create %s: %w", path, unwrapPath(err))
		}
		return newRaw(f, false)
	}
	// qcow2.Create empties the file only once the options and the
	// backing file passed their checks.
	co := o.Qcow2
	co.Size, co.Storage = o.Size, qcow2.FileStorage(f)
	if err := qcow2.Create(path, co); err != nil {
		return nil, err
	}
	q, err := qcow2.Open(path, qcow2.Options{NoBacking: true, NoSync: o.NoSync, Storage: qcow2.FileStorage(f)})
	if err != nil {
		return nil, err
	}
	return &qcow2Image{q}, nil
}
