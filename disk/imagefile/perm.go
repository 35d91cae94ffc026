// Package imagefile opens disk image files on the host and locks them the
// way QEMU does, so that paddock, qemu-img, qemu-io and qemu-system-x86_64
// all see each other's use of an image.
//
// # Opening
//
// Open, Reopen and Create accept only regular files and block devices.
// They open with O_NONBLOCK and check the file type before anything reads
// it, so a FIFO or a character device named as an image fails at once
// instead of blocking or draining a device.
//
// # Locking (docs/image.md, "Image locks")
//
// QEMU's block layer gives every user of an image a set of permissions
// (BLK_PERM_* in QEMU's include/block/block-common.h): what it does with
// the image, and which of those things it lets others do at the same
// time. block/file-posix.c records them as open-file-description (OFD)
// byte-range read locks on the image file itself, one byte per
// permission: byte 100+i while the user holds permission bit i, byte 200+i
// while it forbids others bit i. An opener first takes its own bytes, then
// tests the bytes of everyone else: a permission it needs that someone
// forbids (a lock on 200+i), or a permission it forbids that someone holds
// (a lock on 100+i), is a conflict, and it lets go of its bytes and fails.
//
// The locks belong to the open file description, not to the process or the
// descriptor: they conflict between two opens in one process, they survive
// handing the descriptor (or a dup of it) to another process, and they go
// away when the last descriptor of that description is closed.
package imagefile

import "strings"

// Perm is a set of QEMU block-layer permissions; the values are QEMU's
// BLK_PERM_* bits, which are also the lock byte offsets above the bases.
type Perm uint8

// The permissions (QEMU's include/block/block-common.h).
const (
	// PermConsistentRead: reads see a self-consistent disk.
	PermConsistentRead Perm = 1 << 0
	// PermWrite: changes the visible disk contents.
	PermWrite Perm = 1 << 1
	// PermWriteUnchanged: writes that leave the visible contents as they
	// are (copy-on-read). paddock never takes it.
	PermWriteUnchanged Perm = 1 << 2
	// PermResize: changes the size of the file.
	PermResize Perm = 1 << 3

	// permAll is every permission QEMU defines (BLK_PERM_ALL). QEMU 6.1
	// and older may also lock byte 104/204 (the removed GRAPH_MOD bit);
	// paddock neither takes nor tests it, as QEMU today does not.
	permAll Perm = 0x0f
	// permCount is the number of permission bits, and so of lock bytes
	// in each range.
	permCount = 4
)

// Lock byte bases of QEMU's block/file-posix.c (RAW_LOCK_PERM_BASE,
// RAW_LOCK_SHARED_BASE); libvirt keeps byte 0 for itself.
const (
	permBase   = 100
	sharedBase = 200
)

// permNames are QEMU's names of the permission bits (bdrv_perm_names).
var permNames = [permCount]string{"consistent read", "write", "write unchanged", "resize"}

// String names the permissions as QEMU's messages do ("write", "consistent
// read, resize").
func (p Perm) String() string {
	var names []string
	for i := 0; i < permCount; i++ {
		if p&(1<<i) != 0 {
			names = append(names, permNames[i])
		}
	}
	return strings.Join(names, ", ")
}

// Access is how an opener uses an image: the permissions it takes and the
// ones it forbids others, chosen to match what QEMU 10 takes for the same
// use (measured from /proc/PID/fdinfo; see docs/image.md).
type Access int

// The accesses.
const (
	// Unlocked takes and tests nothing: for a moment's look at a file,
	// such as format detection.
	Unlocked Access = iota
	// Read: a consistent view that must not change underneath. Takes
	// consistent read; forbids write and resize. This is what QEMU takes
	// for a read-only qcow2 disk, for every backing file, and for
	// qemu-img info/check/map/compare/convert's source: many readers
	// share an image, but nobody may write it meanwhile.
	Read
	// ReadShared is Read that lets others do anything (qemu-img's
	// -U/--force-share): takes consistent read, forbids nothing, so it
	// works on an image a VM writes and may see it half-written.
	ReadShared
	// Write takes consistent read, write and resize and forbids write and
	// resize: what QEMU takes for a VM's writable qcow2 disk and for
	// qemu-io/qemu-img writes. paddock takes it for writable raw images
	// too (QEMU lets a raw disk's file be resized under a running VM;
	// paddock's device does not follow a resize, so it forbids it).
	Write
)

// perms returns the permissions a takes and the ones it forbids others.
func (a Access) perms() (perm, unshared Perm) {
	switch a {
	case Read:
		return PermConsistentRead, PermWrite | PermResize
	case ReadShared:
		return PermConsistentRead, 0
	case Write:
		return PermConsistentRead | PermWrite | PermResize, PermWrite | PermResize
	}
	return 0, 0
}

// AccessFor is the access of an open for writing (Write), for reading
// (Read), or for reading with forceShare (ReadShared, qemu-img -U): how
// every paddock opener, the VMM's disks included, maps its options.
func AccessFor(readOnly, forceShare bool) Access {
	switch {
	case !readOnly:
		return Write
	case forceShare:
		return ReadShared
	}
	return Read
}

// Writable reports whether a opens the file for writing.
func (a Access) Writable() bool { return a == Write }
