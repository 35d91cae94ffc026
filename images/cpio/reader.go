package cpio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
)

// maxSymlinkLen bounds symlink targets read from an archive.
const maxSymlinkLen = 4096

// Reader reads a newc archive entry by entry. Concatenated archives are
// read as one stream: the zero padding between them is skipped, as the
// kernel does. The input is untrusted: every malformed header is an error
// naming its offset, never a panic.
type Reader struct {
	r      *bufio.Reader
	off    int64 // offset of the next unread byte
	remain int64 // unread data bytes of the current entry
	pad    int   // padding after the current entry's data
}

// NewReader returns a Reader reading an archive from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Next advances to the next entry and returns its header. It returns io.EOF
// at the end of the input (after at least one trailer, or on empty input).
// Symlink targets are returned in Header.Linkname and consume the data.
func (r *Reader) Next() (*Header, error) {
	for {
		h, err := r.next()
		if err != nil || h.Name != Trailer {
			return h, err
		}
	}
}

// next reads one header, the trailer included.
func (r *Reader) next() (*Header, error) {
	if err := r.skip(r.remain + int64(r.pad)); err != nil {
		return nil, err
	}
	r.remain, r.pad = 0, 0
	for {
		// Skip zero padding between concatenated archives.
		b, err := r.r.Peek(1)
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("cpio: read at offset %d: %w", r.off, err)
		}
		if b[0] != 0 {
			break
		}
		if err := r.skip(1); err != nil {
			return nil, err
		}
	}
	start := r.off
	var raw [headerLen]byte
	if err := r.read(raw[:]); err != nil {
		return nil, fmt.Errorf("cpio: header at offset %d: %w", start, err)
	}
	if string(raw[:6]) != Magic {
		return nil, fmt.Errorf("cpio: header at offset %d: bad magic %q (want %q, newc)", start, raw[:6], Magic)
	}
	var f [13]uint32
	for i := range f {
		field := raw[6+8*i : 14+8*i]
		v, err := strconv.ParseUint(string(field), 16, 32)
		if err != nil {
			return nil, fmt.Errorf("cpio: header at offset %d: field %d %q is not hex", start, i, field)
		}
		f[i] = uint32(v)
	}
	namesize := int64(f[11])
	if namesize < 2 || namesize > maxNameLen {
		return nil, fmt.Errorf("cpio: header at offset %d: name size %d out of range", start, namesize)
	}
	name := make([]byte, namesize)
	if err := r.read(name); err != nil {
		return nil, fmt.Errorf("cpio: name at offset %d: %w", start+headerLen, err)
	}
	if name[namesize-1] != 0 {
		return nil, fmt.Errorf("cpio: name at offset %d is not NUL-terminated", start+headerLen)
	}
	if err := r.skip(int64(padding(headerLen + namesize))); err != nil {
		return nil, err
	}
	h := &Header{
		Name:      string(name[:namesize-1]),
		Ino:       f[0],
		UID:       int(f[2]),
		GID:       int(f[3]),
		Nlink:     f[4],
		Mtime:     int64(f[5]),
		Size:      int64(f[6]),
		RdevMajor: f[9],
		RdevMinor: f[10],
	}
	r.remain = h.Size
	r.pad = padding(h.Size)
	if h.Name == Trailer {
		return h, nil
	}
	mode, err := goMode(f[1])
	if err != nil {
		return nil, fmt.Errorf("cpio: entry %q at offset %d: %w", h.Name, start, err)
	}
	h.Mode = mode
	if mode.Type() == fs.ModeSymlink {
		if h.Size == 0 || h.Size > maxSymlinkLen {
			return nil, fmt.Errorf("cpio: symlink %q at offset %d: target length %d out of range", h.Name, start, h.Size)
		}
		target := make([]byte, h.Size)
		if _, err := io.ReadFull(r, target); err != nil {
			return nil, fmt.Errorf("cpio: symlink %q at offset %d: %w", h.Name, start, err)
		}
		h.Linkname = string(target)
	}
	return h, nil
}

// Read reads data of the current entry.
func (r *Reader) Read(p []byte) (int, error) {
	if r.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.r.Read(p)
	r.off += int64(n)
	r.remain -= int64(n)
	if err == io.EOF && r.remain > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		return n, fmt.Errorf("cpio: data at offset %d: %w", r.off, err)
	}
	return n, nil
}

func (r *Reader) read(p []byte) error {
	n, err := io.ReadFull(r.r, p)
	r.off += int64(n)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (r *Reader) skip(n int64) error {
	if n == 0 {
		return nil
	}
	m, err := r.r.Discard(int(n))
	r.off += int64(m)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("cpio: skip %d bytes at offset %d: %w", n, r.off, err)
	}
	return nil
}

// Entry is an archive member with its data, as ReadAll returns it.
type Entry struct {
	Header
	Data []byte
}

// ReadAll reads a whole archive into memory (for small archives and
// tests): every entry, trailers and padding skipped. It refuses archives
// whose data exceeds maxBytes in total.
func ReadAll(r io.Reader, maxBytes int64) ([]Entry, error) {
	cr := NewReader(r)
	var out []Entry
	var total int64
	for {
		h, err := cr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if total += h.Size; total > maxBytes {
			return out, fmt.Errorf("cpio: archive data exceeds %d bytes at entry %q", maxBytes, h.Name)
		}
		var data []byte
		if h.Mode.IsRegular() {
			if data, err = io.ReadAll(cr); err != nil {
				return out, err
			}
		}
		out = append(out, Entry{Header: *h, Data: data})
	}
}
