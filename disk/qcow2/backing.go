package qcow2

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/disk/imagefile"
)

// ErrBackingRefused is wrapped by the error that reports a backing file
// the image's BackingPolicy does not allow.
var ErrBackingRefused = errors.New("refused for an image opened as untrusted")

// DefaultUntrustedDepth is the longest backing chain (backing files below
// the image) a BackingPolicy allows when its MaxDepth is zero.
const DefaultUntrustedDepth = 32

// BackingPolicy says which backing files the images of a chain may name.
// Without one (a nil policy) paddock follows whatever backing file a
// header names, as QEMU does: absolute paths, "..", any regular file or
// block device (never a FIFO, a socket or a character device). That is
// right for images the user made, and wrong for images from elsewhere: a
// header naming /etc/shadow or /dev/sda as its backing file would hand
// the guest the host's data.
//
// With a policy, every backing file of the chain must, after every
// symbolic link is resolved, be a regular file inside one of Dirs (a
// block device only if Devices is set), and the chain may not be deeper
// than MaxDepth. The check is made on the opened file, so a path swapped
// for a symbolic link after it was checked cannot escape.
type BackingPolicy struct {
	// Dirs are the directories backing files must lie in, at any depth.
	// Relative directories are taken from the current directory. None:
	// no backing file is allowed (except a block device, with Devices).
	Dirs []string
	// Devices allows block devices as backing files, wherever they are.
	Devices bool
	// MaxDepth bounds the number of backing files below the image
	// (0: DefaultUntrustedDepth).
	MaxDepth int
}

// maxDepth is the longest chain the policy allows below an image.
func (p *BackingPolicy) maxDepth() int {
	switch {
	case p == nil:
		return maxBackingDepth - 1
	case p.MaxDepth > 0:
		return min(p.MaxDepth, maxBackingDepth-1)
	}
	return DefaultUntrustedDepth
}

// refuse builds the error for a backing file the policy does not allow.
func refuse(name, path, why string) error {
	if name == path {
		return fmt.Errorf("backing file %s %s: %w", path, why, ErrBackingRefused)
	}
	return fmt.Errorf("backing file %q (%s) %s: %w", name, path, why, ErrBackingRefused)
}

// allowed describes the allowed directories for messages.
func (p *BackingPolicy) allowed() string {
	if len(p.Dirs) == 0 {
		return "the allowed directories (none)"
	}
	return "the allowed directories (" + strings.Join(p.Dirs, ", ") + ")"
}

// dirs returns the allowed directories, absolute and cleaned, each also
// with its symbolic links resolved (when that differs and works).
func (p *BackingPolicy) dirs() []string {
	var out []string
	for _, d := range p.Dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			continue
		}
		out = append(out, abs)
		if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
			out = append(out, real)
		}
	}
	return out
}

// inside reports whether the absolute, clean path p lies in one of dirs.
func inside(p string, dirs []string) bool {
	for _, d := range dirs {
		if rel, err := filepath.Rel(d, p); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return true
		}
	}
	return false
}

// backingPath resolves a backing file name stored in the image at
// imagePath: relative names are relative to the image's directory, as in
// QEMU.
func backingPath(imagePath, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(filepath.Dir(imagePath), name)
}

// openBackingFile opens the backing file name of the image at imagePath
// for access a (read-write for a writer's) with a's locks
// (disk/imagefile), as policy p allows, and returns it, named by its
// resolved path. The path is first opened with O_PATH, which reaches the
// file without opening it (opening a FIFO blocks; opening some character
// devices has effects, a watchdog's starts it), so that its type and,
// under a policy, where its symbolic links lead are judged on the file
// itself; only then is that same file opened and locked, through
// /proc/self/fd (imagefile.Reopen). A path swapped for another file or
// link after the check cannot get through, and the lock is on the file
// judged.
func (p *BackingPolicy) openBackingFile(imagePath, name string, a imagefile.Access) (*os.File, error) {
	path := backingPath(imagePath, name)
	var dirs []string
	if p != nil {
		dirs = p.dirs()
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		if !inside(abs, dirs) && !p.Devices {
			return nil, refuse(name, abs, "is outside "+p.allowed())
		}
	}
	pfd, err := openRetry(path, unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOENT) && strings.Contains(name, ":") {
			return nil, fmt.Errorf("%q uses a protocol or json: syntax paddock cannot open: %w", name, ErrUnsupported)
		}
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := imagefile.CheckMode(path, st.Mode); err != nil {
		return nil, err
	}
	dev := st.Mode&unix.S_IFMT == unix.S_IFBLK
	if dev && p != nil && !p.Devices {
		return nil, refuse(name, path, "is a block device (allow devices explicitly)")
	}
	proc := "/proc/self/fd/" + strconv.Itoa(pfd)
	if p != nil && !dev {
		real, err := os.Readlink(proc)
		if err != nil {
			return nil, fmt.Errorf("find where %s leads: %w", path, err)
		}
		if !inside(real, dirs) {
			return nil, refuse(name, path, "leads to "+real+", outside "+p.allowed())
		}
	}
	return imagefile.Reopen(pfd, path, a)
}

// openRetry is open(2), retried on EINTR.
func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// OpenBackingFile judges the backing file name of the image at imagePath
// under policy p, as a chain open judges each backing file (see
// BackingPolicy; a nil p allows any regular file or block device), and
// returns that very file opened for access a (read-write for
// imagefile.Write) with a's locks, named by its resolved path, and its
// format: format if not empty (the backing format a header records),
// else what the file's first bytes show ("qcow2" or "raw"). The judgement
// and the open are one step (openBackingFile): a name swapped for another
// file or link once the file is judged cannot get through, and the lock
// is on the file judged. It is for callers that use a backing file
// themselves: the base commit writes into, the new backing file of a
// rebase, the chain walk of `image info`. Errors are one sentence naming
// the image and the backing file.
func OpenBackingFile(p *BackingPolicy, imagePath, name, format string, a imagefile.Access) (*os.File, string, error) {
	f, format, err := p.reachBacking(imagePath, name, format, a)
	if err != nil {
		return nil, "", backingError(imagePath, err)
	}
	return f, format, nil
}

// reachBacking is openBackingFile with the refusal naming the image at
// imagePath, and the format probed from the file when format is empty.
// Other errors name only the backing file (see backingError).
func (p *BackingPolicy) reachBacking(imagePath, name, format string, a imagefile.Access) (*os.File, string, error) {
	f, err := p.openBackingFile(imagePath, name, a)
	if errors.Is(err, ErrBackingRefused) {
		return nil, "", fmt.Errorf("qcow2: %s: %w", imagePath, err)
	}
	if err != nil {
		return nil, "", err
	}
	if format == "" {
		format = probeFormat(f)
	}
	return f, format, nil
}

// probeFormat is the format of the open file f by its first bytes:
// "qcow2" for the qcow2 magic, else "raw".
func probeFormat(f *os.File) string {
	var m [4]byte
	if _, err := f.ReadAt(m[:], 0); err == nil && string(m[:]) == "QFI\xfb" {
		return "qcow2"
	}
	return "raw"
}

// backingError names the image at imagePath in an error from opening its
// backing file; a refusal already names the image whose header names the
// file (which, deeper in a chain, is not imagePath).
func backingError(imagePath string, err error) error {
	if errors.Is(err, ErrBackingRefused) {
		return err
	}
	return fmt.Errorf("qcow2: %s: backing file: %w", imagePath, err)
}

// openBacking opens the backing file name of the image at imagePath
// read-only, as opts.Backing allows, with a reader's lock (a -U reader's
// with opts.ForceShare): a qcow2 image (with its own chain), or a raw
// file. format is the backing format from the header extension, or empty
// to probe the file's contents (read from the file opened and locked, so
// the format is that of the file used). chain holds the files already
// open above it.
func openBacking(imagePath, name, format string, opts Options, chain []os.FileInfo) (layer, error) {
	ro := Options{
		ReadOnly:           true,
		ForceShare:         opts.ForceShare,
		NoBacking:          opts.NoBacking,
		L2CacheBytes:       opts.L2CacheBytes,
		RefcountCacheBytes: opts.RefcountCacheBytes,
		Backing:            opts.Backing,
		Handed:             opts.Handed,
	}
	var f *os.File
	var err error
	if opts.Handed != nil {
		if f, err = opts.Handed.next(imagePath, name); err == nil && format == "" {
			format = probeFormat(f)
		}
	} else {
		f, format, err = opts.Backing.reachBacking(imagePath, name, format, ro.access())
	}
	if err != nil {
		return nil, err
	}
	path := f.Name()
	switch format {
	case "qcow2":
		return openChain(path, f, ro, chain)
	case "raw", "file", "host_device":
		size, err := f.Seek(0, io.SeekEnd) // also right for block devices
		if err != nil {
			imagefile.Close(f)
			return nil, &os.PathError{Op: "seek", Path: path, Err: err}
		}
		return &rawLayer{f: f, size: size}, nil
	}
	imagefile.Close(f)
	return nil, fmt.Errorf("%s has format %q (only qcow2 and raw are supported): %w", path, format, ErrUnsupported)
}
