// Package cpio reads and writes cpio archives in the "newc" (SVR4, no CRC)
// format, the only format the Linux kernel accepts for an initramfs
// (Documentation/driver-api/early-userspace/buffer-format.rst).
//
// The writer is reproducible: it assigns inode numbers in order, writes
// mtime 0 unless told otherwise and pads names and data to 4 bytes exactly
// as the kernel's unpacker expects. Archives may be concatenated; the kernel
// unpacks each one in turn.
package cpio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Magic is the newc header magic.
const Magic = "070701"

// Trailer is the name of the entry that ends an archive.
const Trailer = "TRAILER!!!"

const (
	headerLen = 110
	// maxNameLen bounds entry names (the kernel's PATH_MAX).
	maxNameLen = 4096
)

// Unix file type and permission bits as stored in c_mode.
const (
	modeTypeMask = 0o170000
	modeSocket   = 0o140000
	modeSymlink  = 0o120000
	modeRegular  = 0o100000
	modeBlock    = 0o060000
	modeDir      = 0o040000
	modeChar     = 0o020000
	modeFIFO     = 0o010000
	modeSetuid   = 0o4000
	modeSetgid   = 0o2000
	modeSticky   = 0o1000
)

// Header describes one archive entry.
type Header struct {
	// Name is the path inside the archive, relative ("bin/sh"); a leading
	// "/" is removed when writing.
	Name string
	// Mode holds the type (fs.ModeDir, fs.ModeSymlink, fs.ModeDevice with
	// fs.ModeCharDevice, fs.ModeNamedPipe, fs.ModeSocket, or none for a
	// regular file) and the permission bits, including setuid/setgid/sticky.
	Mode fs.FileMode
	UID  int
	GID  int
	// Mtime is seconds since the epoch; 0 makes archives reproducible.
	Mtime int64
	// Size is the number of data bytes that follow (regular files only;
	// for symlinks the writer sets it from Linkname).
	Size int64
	// Linkname is the target of a symlink.
	Linkname string
	// RdevMajor and RdevMinor are the device numbers of a device node.
	RdevMajor, RdevMinor uint32
	// Ino and Nlink are filled in by the writer; the reader reports them.
	Ino   uint32
	Nlink uint32
}

// Writer writes a newc archive. Call WriteHeader for each entry, then Write
// exactly Size bytes of data for regular files, and Close to add the
// trailer. Writer does not close the underlying writer.
type Writer struct {
	w       io.Writer
	ino     uint32
	remain  int64 // data bytes still expected for the current entry
	pad     int   // padding to write after the current entry's data
	closed  bool
	written int64
}

// NewWriter returns a Writer that writes an archive to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w}
}

// ErrWriteTooLong is returned when more data is written than the header's Size.
var ErrWriteTooLong = errors.New("cpio: write too long")

// WriteHeader finishes the previous entry and writes the header of a new
// one. h.Name must be non-empty, relative after stripping a leading "/",
// free of NUL bytes and "." or ".." components.
func (w *Writer) WriteHeader(h *Header) error {
	if w.closed {
		return errors.New("cpio: write header after close")
	}
	if err := w.finishEntry(); err != nil {
		return err
	}
	name, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	mode, err := unixMode(h.Mode)
	if err != nil {
		return fmt.Errorf("cpio: entry %q: %w", name, err)
	}
	size := h.Size
	nlink := uint32(1)
	switch mode & modeTypeMask {
	case modeSymlink:
		if h.Linkname == "" {
			return fmt.Errorf("cpio: symlink %q has no target", name)
		}
		size = int64(len(h.Linkname))
	case modeRegular:
		if size < 0 || size > 0xffffffff {
			return fmt.Errorf("cpio: file %q: size %d does not fit the newc format (max 4 GiB - 1)", name, size)
		}
	case modeDir:
		nlink = 2
		size = 0
	default:
		size = 0
	}
	if h.UID < 0 || h.GID < 0 || int64(h.UID) > 0xffffffff || int64(h.GID) > 0xffffffff {
		return fmt.Errorf("cpio: entry %q: uid/gid %d/%d out of range", name, h.UID, h.GID)
	}
	if h.Mtime < 0 || h.Mtime > 0xffffffff {
		return fmt.Errorf("cpio: entry %q: mtime %d out of range", name, h.Mtime)
	}
	w.ino++
	if err := w.writeRaw(name, w.ino, mode, uint32(h.UID), uint32(h.GID), nlink, uint32(h.Mtime), uint32(size), h.RdevMajor, h.RdevMinor); err != nil {
		return err
	}
	w.remain = size
	w.pad = padding(size)
	if mode&modeTypeMask == modeSymlink {
		if _, err := w.Write([]byte(h.Linkname)); err != nil {
			return err
		}
	}
	return nil
}

// writeRaw writes one header and the padded name.
func (w *Writer) writeRaw(name string, ino, mode, uid, gid, nlink, mtime, size, rmaj, rmin uint32) error {
	var b strings.Builder
	b.Grow(headerLen + len(name) + 4)
	b.WriteString(Magic)
	for _, v := range []uint32{ino, mode, uid, gid, nlink, mtime, size, 0, 0, rmaj, rmin, uint32(len(name) + 1), 0} {
		fmt.Fprintf(&b, "%08x", v)
	}
	b.WriteString(name)
	b.WriteByte(0)
	for i := padding(int64(headerLen + len(name) + 1)); i > 0; i-- {
		b.WriteByte(0)
	}
	return w.raw([]byte(b.String()))
}

// Write writes data for the current regular-file entry.
func (w *Writer) Write(p []byte) (int, error) {
	if int64(len(p)) > w.remain {
		n, err := w.Write(p[:w.remain])
		if err == nil {
			err = ErrWriteTooLong
		}
		return n, err
	}
	n, err := w.w.Write(p)
	w.remain -= int64(n)
	w.written += int64(n)
	if err != nil {
		return n, fmt.Errorf("cpio: write data: %w", err)
	}
	return n, nil
}

// finishEntry checks that the current entry got all its data and pads it.
func (w *Writer) finishEntry() error {
	if w.remain > 0 {
		return fmt.Errorf("cpio: entry is missing %d data bytes", w.remain)
	}
	if w.pad > 0 {
		if err := w.raw(make([]byte, w.pad)); err != nil {
			return err
		}
		w.pad = 0
	}
	return nil
}

func (w *Writer) raw(p []byte) error {
	n, err := w.w.Write(p)
	w.written += int64(n)
	if err != nil {
		return fmt.Errorf("cpio: write: %w", err)
	}
	return nil
}

// Close finishes the last entry and writes the trailer. It does not close
// the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	if err := w.finishEntry(); err != nil {
		return err
	}
	w.closed = true
	return w.writeRaw(Trailer, 0, 0, 0, 0, 1, 0, 0, 0, 0)
}

// Written returns the number of bytes written to the underlying writer.
func (w *Writer) Written() int64 { return w.written }

// AddDir adds a directory entry.
func (w *Writer) AddDir(name string, perm fs.FileMode) error {
	return w.WriteHeader(&Header{Name: name, Mode: fs.ModeDir | perm})
}

// AddFile adds a regular file with the given contents.
func (w *Writer) AddFile(name string, perm fs.FileMode, data []byte) error {
	if perm&fs.ModeType != 0 {
		return fmt.Errorf("cpio: file %q: mode %v is not a regular file mode", name, perm)
	}
	if err := w.WriteHeader(&Header{Name: name, Mode: perm, Size: int64(len(data))}); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// AddFileFrom adds a regular file of the given size whose data is read from r.
func (w *Writer) AddFileFrom(name string, perm fs.FileMode, size int64, r io.Reader) error {
	if perm&fs.ModeType != 0 {
		return fmt.Errorf("cpio: file %q: mode %v is not a regular file mode", name, perm)
	}
	if err := w.WriteHeader(&Header{Name: name, Mode: perm, Size: size}); err != nil {
		return err
	}
	n, err := io.Copy(w, io.LimitReader(r, size))
	if err != nil {
		return fmt.Errorf("cpio: file %q: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("cpio: file %q: source ended after %d of %d bytes", name, n, size)
	}
	return nil
}

// AddSymlink adds a symbolic link name -> target.
func (w *Writer) AddSymlink(name, target string) error {
	return w.WriteHeader(&Header{Name: name, Mode: fs.ModeSymlink | 0o777, Linkname: target})
}

// AddCharDev adds a character device node, e.g. dev/console 5:1.
func (w *Writer) AddCharDev(name string, perm fs.FileMode, major, minor uint32) error {
	return w.WriteHeader(&Header{Name: name, Mode: fs.ModeDevice | fs.ModeCharDevice | perm, RdevMajor: major, RdevMinor: minor})
}

// cleanName validates an entry name and strips a leading "/".
func cleanName(name string) (string, error) {
	n := strings.TrimLeft(name, "/")
	switch {
	case n == "":
		return "", fmt.Errorf("cpio: entry name %q is empty", name)
	case len(n) >= maxNameLen:
		return "", fmt.Errorf("cpio: entry name %.40q... is %d bytes long (max %d)", name, len(n), maxNameLen-1)
	case strings.IndexByte(n, 0) >= 0:
		return "", fmt.Errorf("cpio: entry name %q contains a NUL byte", name)
	case n == Trailer:
		return "", fmt.Errorf("cpio: entry name %q is reserved for the trailer", name)
	}
	for _, c := range strings.Split(n, "/") {
		if c == "" || c == "." || c == ".." {
			return "", fmt.Errorf("cpio: entry name %q has an empty, \".\" or \"..\" component", name)
		}
	}
	return n, nil
}

// unixMode converts a Go file mode into c_mode bits.
func unixMode(m fs.FileMode) (uint32, error) {
	mode := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= modeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		mode |= modeSetgid
	}
	if m&fs.ModeSticky != 0 {
		mode |= modeSticky
	}
	switch t := m.Type(); t {
	case 0:
		mode |= modeRegular
	case fs.ModeDir:
		mode |= modeDir
	case fs.ModeSymlink:
		mode |= modeSymlink
	case fs.ModeNamedPipe:
		mode |= modeFIFO
	case fs.ModeSocket:
		mode |= modeSocket
	case fs.ModeDevice | fs.ModeCharDevice:
		mode |= modeChar
	case fs.ModeDevice:
		mode |= modeBlock
	default:
		return 0, fmt.Errorf("unsupported file type %v", t)
	}
	return mode, nil
}

// goMode converts c_mode bits into a Go file mode.
func goMode(mode uint32) (fs.FileMode, error) {
	m := fs.FileMode(mode & 0o777)
	if mode&modeSetuid != 0 {
		m |= fs.ModeSetuid
	}
	if mode&modeSetgid != 0 {
		m |= fs.ModeSetgid
	}
	if mode&modeSticky != 0 {
		m |= fs.ModeSticky
	}
	switch mode & modeTypeMask {
	case modeRegular:
	case modeDir:
		m |= fs.ModeDir
	case modeSymlink:
		m |= fs.ModeSymlink
	case modeFIFO:
		m |= fs.ModeNamedPipe
	case modeSocket:
		m |= fs.ModeSocket
	case modeChar:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case modeBlock:
		m |= fs.ModeDevice
	default:
		return 0, fmt.Errorf("unknown file type bits %#o", mode&modeTypeMask)
	}
	return m, nil
}

// padding returns how many zero bytes bring n up to a multiple of 4.
func padding(n int64) int { return int((4 - n%4) % 4) }
