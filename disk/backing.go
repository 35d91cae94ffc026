package disk

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/paddock-vm/paddock/disk/imagefile"
	"github.com/paddock-vm/paddock/disk/qcow2"
)

// BackingPolicy restricts the backing files a qcow2 image's chain may
// name (see qcow2.BackingPolicy). A nil policy, the default everywhere in
// this package, follows any backing file a header names, as qemu-img
// does: right for images the user made, wrong for images from elsewhere.
type BackingPolicy = qcow2.BackingPolicy

// ConfinedTo returns the policy for disks paddock did not make or that a
// guest has written: backing files only inside dirs (after symbolic links
// are resolved), never a block device, FIFO or other special file, and at
// most qcow2.DefaultUntrustedDepth backing files below an image. With no
// dirs, no backing file is allowed.
//
// Template and clone code must open and create every disk with it
// (Options.Backing, qcow2.CreateOptions.Backing), confined to the
// directories that hold the template's and the VM's disks: an imported
// template image, or a disk a guest wrote, must never make paddock read
// another file of the host.
func ConfinedTo(dirs ...string) *BackingPolicy {
	return &BackingPolicy{Dirs: append([]string(nil), dirs...)}
}

// ConfinedToImage is ConfinedTo the directory of the image at path and
// dirs: what `paddock image --untrusted` uses.
func ConfinedToImage(path string, dirs ...string) *BackingPolicy {
	return ConfinedTo(append([]string{filepath.Dir(path)}, dirs...)...)
}

// OpenBacking opens the backing file name of the image at path (a
// relative name is relative to the image's directory) as o.Backing
// allows, with the locks of o's access, and a qcow2 backing file's own
// chain under the same policy. The file is judged and then opened and
// locked in one step (qcow2.OpenBackingFile), so the image returned is
// the file judged, whatever the name leads to by then. o.Format is the
// format the image records for its backing file, or empty to detect it
// from the file opened. Commit opens the base it writes into this way,
// Rebase the new backing file it compares with. Errors are one sentence
// naming the image and the backing file.
func OpenBacking(path, name string, o Options) (Image, error) {
	if o.ForceShare && !o.ReadOnly {
		return nil, fmt.Errorf("disk: open the backing file of %s: force-share needs a read-only open", path)
	}
	f, format, err := qcow2.OpenBackingFile(o.Backing, path, name, o.Format, imagefile.AccessFor(o.ReadOnly, o.ForceShare))
	if err != nil {
		return nil, err
	}
	var img Image
	switch format {
	case FormatQcow2:
		var q *qcow2.Image
		if q, err = qcow2.OpenFile(f, qcow2.Options{ReadOnly: o.ReadOnly, ForceShare: o.ForceShare, L2CacheBytes: o.L2CacheBytes, Backing: o.Backing}); err == nil {
			img = &qcow2Image{q}
		}
	case FormatRaw:
		if img, err = newRaw(f, o.ReadOnly); err != nil {
			imagefile.Close(f)
		}
	default:
		imagefile.Close(f)
		err = fmt.Errorf("%s: %w %q (raw or qcow2)", f.Name(), ErrFormat, format)
	}
	if errors.Is(err, qcow2.ErrBackingRefused) {
		return nil, err // names the image that names the file
	}
	if err != nil {
		return nil, fmt.Errorf("disk: %s: backing file: %w", path, err)
	}
	return img, nil
}
