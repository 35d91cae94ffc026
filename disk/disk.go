// Package disk is paddock's view of a virtual disk: the Image interface
// that virtio-blk and the CLI use, Open with format detection, the raw
// format, and the operations that work across formats (convert, commit,
// rebase). The qcow2 format lives in disk/qcow2.
package disk

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/paddock-vm/paddock/disk/imagefile"
	"github.com/paddock-vm/paddock/disk/qcow2"
)

// Formats.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
)

// Image is an open virtual disk. Implementations are safe for concurrent
// use by several goroutines (one per virtio-blk queue).
type Image interface {
	// ReadAt and WriteAt follow io.ReaderAt and io.WriterAt; accesses
	// past Size fail (reads return io.EOF with the bytes that exist).
	io.ReaderAt
	io.WriterAt
	// Flush makes every write completed before the call durable.
	Flush() error
	// Discard says [off, off+n) is no longer needed. It is advisory:
	// afterwards the range reads as zeros or as its old contents.
	Discard(off, n int64) error
	// WriteZeroes makes [off, off+n) read as zeros, cheaply where the
	// format allows; unmap lets it release the storage too.
	WriteZeroes(off, n int64, unmap bool) error
	// Size is the virtual disk size in bytes.
	Size() int64
	// Capabilities says what the image can do.
	Capabilities() Capabilities
	Close() error
}

// Capabilities describe an open image to the device model.
type Capabilities struct {
	Format   string
	ReadOnly bool
	// DiscardGranularity is the unit Discard works in; 0 when discard
	// does nothing.
	DiscardGranularity int64
	// ClusterSize is the allocation unit (the best I/O alignment); 0 for
	// raw images.
	ClusterSize int64
}

// Options control Open.
type Options struct {
	// Format is "raw", "qcow2", or empty to detect it from the file's
	// first bytes. Set it for disks a guest can write: a guest that
	// writes a qcow2 header into a raw disk must not make the host
	// interpret it (and follow its backing file name) on the next start.
	Format string
	// ReadOnly opens without write access.
	ReadOnly bool
	// ForceShare reads without forbidding others to write (qemu-img -U):
	// the open works on an image a VM writes, and may see it
	// half-written. Only with ReadOnly.
	ForceShare bool
	// L2CacheBytes bounds the qcow2 mapping cache of each image of the
	// chain (0: 32 MiB, enough for 256 GiB of disk at 64 KiB clusters;
	// memory is only used for tables actually touched).
	L2CacheBytes int64
	// Backing restricts the backing chain of a qcow2 image (nil: any
	// backing file, as QEMU). Set it, with ConfinedTo, for disks the user
	// did not make.
	Backing *BackingPolicy
}

// ErrFormat reports an unknown or mismatched format.
var ErrFormat = errors.New("unknown disk image format")

// Detect returns the format of the file at path from its contents, never
// from its name: "qcow2" for the qcow2 magic, otherwise "raw". Only
// regular files and block devices are looked at (a FIFO fails at once).
func Detect(path string) (string, error) {
	f, err := imagefile.Open(path, imagefile.Unlocked)
	if err != nil {
		return "", fmt.Errorf("disk: %w", err)
	}
	defer f.Close()
	var m [DetectLen]byte
	n, err := f.ReadAt(m[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("disk: detect the format of %s: %w", path, unwrapPath(err))
	}
	return DetectHeader(m[:n]), nil
}

// DetectLen is how many bytes from the start of an image decide its
// detected format: nothing after them changes what Detect returns.
const DetectLen = 4

// DetectHeader returns the format Detect reports for an image whose
// first bytes are head (all of them, or the whole image if shorter than
// DetectLen). virtio-blk asks it about every guest write to the start of
// a raw disk whose format was detected, so that a guest cannot make its
// disk detect as anything else.
func DetectHeader(head []byte) string {
	if len(head) >= DetectLen && string(head[:4]) == "QFI\xfb" {
		return FormatQcow2
	}
	return FormatRaw
}

// Open opens the disk image at path and takes its locks as QEMU would
// (disk/imagefile): a writer's, a reader's, or with ForceShare a -U
// reader's, on the image and a reader's (or -U reader's) on every backing
// file. An image another process's locks keep from being opened so fails
// with an error that errors.As finds an *imagefile.InUseError in.
func Open(path string, o Options) (Image, error) {
	if o.ForceShare && !o.ReadOnly {
		return nil, fmt.Errorf("disk: open %s: force-share needs a read-only open", path)
	}
	format := o.Format
	if format == "" {
		var err error
		if format, err = Detect(path); err != nil {
			return nil, err
		}
	}
	switch format {
	case FormatQcow2:
		img, err := qcow2.Open(path, qcow2.Options{ReadOnly: o.ReadOnly, ForceShare: o.ForceShare, L2CacheBytes: o.L2CacheBytes, Backing: o.Backing})
		if err != nil {
			return nil, err
		}
		return &qcow2Image{img}, nil
	case FormatRaw:
		return openRaw(path, imagefile.AccessFor(o.ReadOnly, o.ForceShare))
	}
	return nil, fmt.Errorf("disk: %s: %w %q (raw or qcow2)", path, ErrFormat, format)
}

// unwrapPath drops an *os.PathError's operation and path, for messages
// that name the file themselves ("read /x: read /x: is a directory").
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// qcow2Image adapts *qcow2.Image to Image.
type qcow2Image struct {
	*qcow2.Image
}

func (q *qcow2Image) Capabilities() Capabilities {
	return Capabilities{
		Format:             FormatQcow2,
		ReadOnly:           q.ReadOnly(),
		DiscardGranularity: q.ClusterSize(),
		ClusterSize:        q.ClusterSize(),
	}
}

// Qcow2 returns the qcow2 image behind img, or nil if it is another
// format.
func Qcow2(img Image) *qcow2.Image {
	if q, ok := img.(*qcow2Image); ok {
		return q.Image
	}
	return nil
}

// Both formats implement Image.
var (
	_ Image = (*Raw)(nil)
	_ Image = (*qcow2Image)(nil)
)
