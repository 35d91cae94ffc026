// Package snapshot is the file format of a paddock VM snapshot's state
// file: everything the VMM saves of a machine besides guest RAM (the
// memory file) and the disks' contents (their internal qcow2 snapshots).
//
// A state file is
//
//	magic      16 bytes  "paddock-vmstate\n"
//	version    uint32    the format version (Version)
//	header     uint32 length, that many bytes of JSON (Header), uint32 CRC-32C
//	sections   uint32 count, then per section:
//	             uint16 id length, the id, uint32 data length, the data,
//	             uint32 CRC-32C of the id and the data
//
// with every integer little-endian and nothing after the last section.
// Sections are keyed by a device id ("vcpu/0", "serial/com1") and their
// data is the device's saved state, as its owner encodes it.
//
// The magic, the version and the header stay as they are in every
// version, so a paddock can name the version and the paddock that wrote a
// file it cannot read. A reader refuses, with an error that says why, a
// file of a version it does not read, a truncated or corrupted file, and lengths
// over the caps below; parsing never panics and never allocates more than
// the file's size.
package snapshot

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"time"
)

// Magic starts every state file.
const Magic = "paddock-vmstate\n"

// Version is the format version this package writes; it reads every
// version from MinVersion to Version. A change to the layout above, or
// to the sections a machine's state has or what one holds, takes a new
// version.
//
//	1  the first format
//	2  the machine's state gains the "ged" and "vmgenid" sections (the
//	   Generic Event Device and the VM generation ID); the layout is
//	   version 1's
//	3  a device's byte strings (configuration spaces, the XSAVE area, the
//	   local APIC's page) may be written sparse, without their zeros
//	   (Bytes), which makes a state file about a quarter of the size
//	   and its decoding faster; version 2's plain base64 strings are
//	   read as before, so a version 2 file restores as it is
const Version = 3

// MinVersion is the oldest format version this package reads. Version 1
// files lack sections a restore needs.
const MinVersion = 2

// Caps on what a state file may hold. They bound what a reader
// allocates for a hostile file.
const (
	MaxFileSize    = 64 << 20
	MaxHeaderSize  = 64 << 10
	MaxSections    = 4096
	MaxIDLen       = 64
	MaxSectionSize = 4 << 20
)

// Header describes a snapshot: who wrote it, when, and the machine it
// needs.
type Header struct {
	// Paddock is the version of the paddock that wrote the file.
	Paddock string `json:"paddock"`
	// Created is when the snapshot was taken.
	Created time.Time `json:"created"`
	// CPUVendor is the vendor string of the CPU the vCPUs ran on
	// ("AuthenticAMD"); a restore needs the same.
	CPUVendor string `json:"cpu_vendor"`
	// CPUs and Memory (bytes) are the machine's vCPU count and RAM.
	CPUs   int    `json:"cpus"`
	Memory uint64 `json:"memory"`
	// Notes are the writer's own facts about the snapshot (the VM's
	// name, whether it was paused), kept as they are.
	Notes map[string]string `json:"notes,omitempty"`
}

// Section is one device's saved state.
type Section struct {
	ID   string
	Data []byte
}

// File is a parsed state file.
type File struct {
	Header   Header
	Sections []Section
}

// Section returns the data of the section with id, or false.
func (f *File) Section(id string) ([]byte, bool) {
	for _, s := range f.Sections {
		if s.ID == id {
			return s.Data, true
		}
	}
	return nil, false
}

// ErrFormat is wrapped by every error about a malformed state file.
var ErrFormat = errors.New("not a valid paddock snapshot state file")

// ErrVersion is wrapped by the error for a file of another format
// version.
var ErrVersion = errors.New("unsupported snapshot format version")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// validID reports whether id may name a section: 1 to MaxIDLen bytes of
// letters, digits and . _ - / [ ].
func validID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '-', c == '/', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}

// Encode returns the state file for f. It fails for sections whose ids
// are invalid or repeated, and for anything over the caps.
func Encode(f *File) ([]byte, error) {
	hdr, err := json.Marshal(f.Header)
	if err != nil {
		return nil, fmt.Errorf("snapshot: encode the header: %w", err)
	}
	if len(hdr) > MaxHeaderSize {
		return nil, fmt.Errorf("snapshot: the header is %d bytes, more than %d", len(hdr), MaxHeaderSize)
	}
	if len(f.Sections) > MaxSections {
		return nil, fmt.Errorf("snapshot: %d sections, more than %d", len(f.Sections), MaxSections)
	}
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString(Magic)
	b.Write(le.AppendUint32(nil, Version))
	b.Write(le.AppendUint32(nil, uint32(len(hdr))))
	b.Write(hdr)
	b.Write(le.AppendUint32(nil, crc32.Checksum(hdr, castagnoli)))
	b.Write(le.AppendUint32(nil, uint32(len(f.Sections))))
	seen := map[string]bool{}
	for _, s := range f.Sections {
		switch {
		case !validID(s.ID):
			return nil, fmt.Errorf("snapshot: invalid section id %q", s.ID)
		case seen[s.ID]:
			return nil, fmt.Errorf("snapshot: section %q twice", s.ID)
		case len(s.Data) > MaxSectionSize:
			return nil, fmt.Errorf("snapshot: section %q is %d bytes, more than %d", s.ID, len(s.Data), MaxSectionSize)
		}
		seen[s.ID] = true
		b.Write(le.AppendUint16(nil, uint16(len(s.ID))))
		b.WriteString(s.ID)
		b.Write(le.AppendUint32(nil, uint32(len(s.Data))))
		b.Write(s.Data)
		b.Write(le.AppendUint32(nil, sectionSum(s.ID, s.Data)))
	}
	if b.Len() > MaxFileSize {
		return nil, fmt.Errorf("snapshot: the state is %d bytes, more than %d", b.Len(), MaxFileSize)
	}
	return b.Bytes(), nil
}

// sectionSum is the CRC-32C of a section's id and data.
func sectionSum(id string, data []byte) uint32 {
	return crc32.Update(crc32.Checksum([]byte(id), castagnoli), castagnoli, data)
}

// reader walks a state file's bytes; every read checks what is left.
type reader struct {
	b   []byte
	off int
}

func (r *reader) take(n int, what string) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, fmt.Errorf("the file ends in %s (at byte %d of %d): it was cut short: %w", what, r.off, len(r.b), ErrFormat)
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p, nil
}

func (r *reader) u16(what string) (int, error) {
	p, err := r.take(2, what)
	if err != nil {
		return 0, err
	}
	return int(binary.LittleEndian.Uint16(p)), nil
}

func (r *reader) u32(what string) (uint32, error) {
	p, err := r.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(p), nil
}

// Decode parses a state file. A file of another format version fails
// with an error wrapping ErrVersion that names the version and, when the
// header says, the paddock that wrote it; anything malformed fails with
// an error wrapping ErrFormat.
func Decode(b []byte) (*File, error) {
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("the file is %d bytes, more than a state file may be (%d): %w", len(b), MaxFileSize, ErrFormat)
	}
	r := &reader{b: b}
	magic, err := r.take(len(Magic), "the magic")
	if err != nil || string(magic) != Magic {
		return nil, fmt.Errorf("it does not start with the magic %q: %w", Magic, ErrFormat)
	}
	version, err := r.u32("the version")
	if err != nil {
		return nil, err
	}
	hdrLen, err := r.u32("the header length")
	if err != nil {
		return nil, err
	}
	if hdrLen > MaxHeaderSize {
		return nil, fmt.Errorf("a header of %d bytes, more than %d: %w", hdrLen, MaxHeaderSize, ErrFormat)
	}
	hdr, err := r.take(int(hdrLen), "the header")
	if err != nil {
		return nil, err
	}
	sum, err := r.u32("the header checksum")
	if err != nil {
		return nil, err
	}
	if sum != crc32.Checksum(hdr, castagnoli) {
		return nil, fmt.Errorf("the header's checksum does not match: the file is corrupt: %w", ErrFormat)
	}
	f := &File{}
	if version < MinVersion || version > Version {
		// Every version keeps this header: name the writer if it can.
		by := ""
		if json.Unmarshal(hdr, &f.Header) == nil && f.Header.Paddock != "" {
			by = fmt.Sprintf(", written by paddock %s", f.Header.Paddock)
		}
		rel := "a newer"
		if version < MinVersion {
			rel = "an older"
		}
		return nil, fmt.Errorf("format version %d (%s format%s); this paddock reads versions %d to %d: %w", version, rel, by, MinVersion, Version, ErrVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f.Header); err != nil {
		return nil, fmt.Errorf("the header: %v: %w", err, ErrFormat)
	}
	n, err := r.u32("the section count")
	if err != nil {
		return nil, err
	}
	if n > MaxSections {
		return nil, fmt.Errorf("%d sections, more than %d: %w", n, MaxSections, ErrFormat)
	}
	seen := map[string]bool{}
	for i := uint32(0); i < n; i++ {
		what := fmt.Sprintf("section %d", i)
		idLen, err := r.u16(what)
		if err != nil {
			return nil, err
		}
		id, err := r.take(idLen, what)
		if err != nil {
			return nil, err
		}
		if !validID(string(id)) {
			return nil, fmt.Errorf("section %d has an invalid id %q: %w", i, id, ErrFormat)
		}
		what = fmt.Sprintf("section %q", id)
		if seen[string(id)] {
			return nil, fmt.Errorf("%s appears twice: %w", what, ErrFormat)
		}
		seen[string(id)] = true
		size, err := r.u32(what)
		if err != nil {
			return nil, err
		}
		if size > MaxSectionSize {
			return nil, fmt.Errorf("%s is %d bytes, more than %d: %w", what, size, MaxSectionSize, ErrFormat)
		}
		data, err := r.take(int(size), what)
		if err != nil {
			return nil, err
		}
		sum, err := r.u32(what)
		if err != nil {
			return nil, err
		}
		if sum != sectionSum(string(id), data) {
			return nil, fmt.Errorf("%s's checksum does not match: the file is corrupt: %w", what, ErrFormat)
		}
		f.Sections = append(f.Sections, Section{ID: string(id), Data: data})
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("%d bytes follow the last section: %w", len(b)-r.off, ErrFormat)
	}
	return f, nil
}

// ReadFile reads and decodes the state file at path. Errors name the
// file.
func ReadFile(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	defer fh.Close()
	return ReadFrom(fh)
}

// ReadFrom reads and decodes the open state file fh, up to MaxFileSize
// bytes. Errors name the file.
func ReadFrom(fh *os.File) (*File, error) {
	b, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("snapshot: read %s: %w", fh.Name(), err)
	}
	f, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %s: %w", fh.Name(), err)
	}
	return f, nil
}
