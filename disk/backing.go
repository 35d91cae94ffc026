package disk

import (
	"path/filepath"

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
