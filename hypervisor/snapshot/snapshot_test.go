package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sample is a small state file's contents.
func sample() *File {
	return &File{
		Header: Header{
			Paddock:   "v1.2.3",
			Created:   time.Date(2026, 12, 6, 10, 30, 0, 0, time.UTC),
			CPUVendor: "AuthenticAMD",
			CPUs:      2,
			Memory:    256 << 20,
			Notes:     map[string]string{"vm": "web", "state": "running"},
		},
		Sections: []Section{
			{ID: "vcpu/0", Data: []byte(`{"rip":4096}`)},
			{ID: "virtio/disks[0]", Data: []byte(`{"queues":1}`)},
			{ID: "empty", Data: []byte{}},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	b, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	f, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := sample()
	want.Sections[2].Data = []byte{}
	if !reflect.DeepEqual(f.Header, want.Header) {
		t.Errorf("header %+v, want %+v", f.Header, want.Header)
	}
	for i, s := range want.Sections {
		if f.Sections[i].ID != s.ID || !bytes.Equal(f.Sections[i].Data, s.Data) {
			t.Errorf("section %d: %q %q, want %q %q", i, f.Sections[i].ID, f.Sections[i].Data, s.ID, s.Data)
		}
	}
	if d, ok := f.Section("vcpu/0"); !ok || string(d) != `{"rip":4096}` {
		t.Errorf("Section(vcpu/0) = %q, %v", d, ok)
	}
	if _, ok := f.Section("nothing"); ok {
		t.Error("Section(nothing) found something")
	}
}

// TestGolden keeps the encoding of version 3 as it is: a change to the
// layout shows as a difference from testdata/v3.state, which must then
// come with a new Version. A file of version 2 (testdata/v2.state, kept
// as that version wrote it) is read as well.
func TestGolden(t *testing.T) {
	b, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "v3.state")
	if *update {
		if err := os.WriteFile(golden, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("the encoding of the sample differs from %s: a format change needs a new Version (and go test -update)", golden)
	}
	if _, err := ReadFile(golden); err != nil {
		t.Fatal(err)
	}
	old, err := ReadFile(filepath.Join("testdata", "v2.state"))
	if err != nil {
		t.Fatalf("a version 2 file: %v", err)
	}
	if want := sample(); !reflect.DeepEqual(old.Sections, want.Sections) || old.Header.Paddock != want.Header.Paddock {
		t.Errorf("testdata/v2.state read as %+v, want %+v", old, want)
	}
}

// withVersion returns a copy of b claiming format version v.
func withVersion(b []byte, v uint32) []byte {
	c := append([]byte(nil), b...)
	binary.LittleEndian.PutUint32(c[len(Magic):], v)
	return c
}

func TestOtherVersions(t *testing.T) {
	b, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		version uint32
		want    string
	}{
		{4, "format version 4 (a newer format, written by paddock v1.2.3); this paddock reads versions 2 to 3"},
		{1, "format version 1 (an older format, written by paddock v1.2.3)"},
		{0, "format version 0 (an older format, written by paddock v1.2.3)"},
	} {
		_, err := Decode(withVersion(b, tc.version))
		if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("version %d: %v, want ErrVersion saying %q", tc.version, err, tc.want)
		}
	}
	// A file a version-1 paddock wrote (testdata/v1.state, kept as it
	// was) is refused, naming its version and its writer.
	_, err = ReadFile(filepath.Join("testdata", "v1.state"))
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "format version 1 (an older format, written by paddock v1.2.3); this paddock reads versions 2 to 3") {
		t.Errorf("testdata/v1.state: %v, want ErrVersion naming version 1", err)
	}
}

// TestTruncated cuts a state file at every length: each is refused as
// cut short (or as not a state file at all, before the magic is whole).
func TestTruncated(t *testing.T) {
	b, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(b); n++ {
		_, err := Decode(b[:n])
		if !errors.Is(err, ErrFormat) {
			t.Fatalf("cut to %d bytes: %v, want ErrFormat", n, err)
		}
		if n >= len(Magic) && !strings.Contains(err.Error(), "cut short") && !strings.Contains(err.Error(), "checksum") {
			t.Fatalf("cut to %d bytes: %v, want it to say the file was cut short", n, err)
		}
	}
}

// TestCorrupted flips each byte of a state file: every flip is caught
// (by the magic, a length, the version or a checksum).
func TestCorrupted(t *testing.T) {
	b, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 0x40
		if _, err := Decode(c); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
}

func TestHostile(t *testing.T) {
	good, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	head := func(hdrLen uint32) []byte {
		b := []byte(Magic)
		b = le.AppendUint32(b, Version)
		return le.AppendUint32(b, hdrLen)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "magic"},
		{"another file", []byte("QFI\xfb\x00\x00\x00\x03 a qcow2 image, say"), "magic"},
		{"huge header", head(1 << 30), "header of"},
		{"trailing bytes", append(append([]byte(nil), good...), 0), "follow the last section"},
		{"too big", make([]byte, MaxFileSize+1), "more than a state file may be"},
	} {
		_, err := Decode(tc.b)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrFormat saying %q", tc.name, err, tc.want)
		}
	}
	// A section claiming more than the cap, with a valid header.
	f := &File{Header: sample().Header}
	b, err := Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	b = b[:len(b)-4]
	upToCount := b // the magic, version and header, without the count
	b = le.AppendUint32(b, 1)
	b = le.AppendUint16(b, 1)
	b = append(b, 'x')
	b = le.AppendUint32(b, MaxSectionSize+1)
	if _, err := Decode(b); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversized section: %v", err)
	}
	// The same valid header, then a section count and sections as a
	// hostile writer makes them: each refused by its own cap or check.
	body := func(count uint32, ids ...string) []byte {
		out := le.AppendUint32(append([]byte(nil), upToCount...), count)
		for _, id := range ids {
			out = le.AppendUint16(out, uint16(len(id)))
			out = append(out, id...)
			out = le.AppendUint32(out, 0)                   // no data
			out = le.AppendUint32(out, sectionSum(id, nil)) // its checksum
		}
		return out
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"too many sections", body(MaxSections + 1), "sections, more than"},
		{"an id too long", body(1, strings.Repeat("x", MaxIDLen+1)), "invalid id"},
		{"an id with a space", body(1, "a b"), "invalid id"},
		{"an empty id", body(1, ""), "invalid id"},
		{"a repeated id", body(2, "a", "a"), "appears twice"},
		{"fewer sections than counted", body(2, "a"), "cut short"},
	} {
		if _, err := Decode(tc.b); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrFormat saying %q", tc.name, err, tc.want)
		}
	}
	if _, err := Decode(body(2, "a", "b")); err != nil {
		t.Errorf("two good empty sections: %v", err)
	}
	// Encode refuses what Decode would.
	for _, s := range []Section{{ID: ""}, {ID: "a b"}, {ID: strings.Repeat("x", MaxIDLen+1)}, {ID: "big", Data: make([]byte, MaxSectionSize+1)}} {
		if _, err := Encode(&File{Sections: []Section{s}}); err == nil {
			t.Errorf("Encode accepted section %q of %d bytes", s.ID, len(s.Data))
		}
	}
	if _, err := Encode(&File{Sections: []Section{{ID: "a"}, {ID: "a"}}}); err == nil {
		t.Error("Encode accepted a repeated section id")
	}
}

func TestReadFileNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ReadFile(path)
	if err == nil || !strings.Contains(err.Error(), path) || strings.Count(err.Error(), path) != 1 {
		t.Fatalf("ReadFile of garbage: %v, want one error naming %s once", err, path)
	}
}

// FuzzDecode feeds Decode arbitrary bytes: it must never panic, and what
// it accepts must encode back to a file that decodes the same.
func FuzzDecode(f *testing.F) {
	good, err := Encode(sample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(withVersion(good, Version+1))
	f.Add(good[:len(good)/2])
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error wraps neither ErrFormat nor ErrVersion: %v", err)
			}
			return
		}
		again, err := Encode(file)
		if err != nil {
			t.Fatalf("a decoded file does not encode: %v", err)
		}
		back, err := Decode(again)
		if err != nil {
			t.Fatalf("a re-encoded file does not decode: %v", err)
		}
		if !reflect.DeepEqual(back.Header, file.Header) || len(back.Sections) != len(file.Sections) {
			t.Fatalf("re-encoding changed the file")
		}
	})
}
