package bzimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/images/debian"
	"github.com/paddock-vm/paddock/images/internal/elftest"
	"github.com/paddock-vm/paddock/internal/testenv"
)

var (
	note    = elftest.Note
	makeELF = elftest.Exec
	pvhELF  = elftest.PVHExec
)

// makeBzImage builds a bzImage-shaped file: setup sectors with a setup
// header, then the protected-mode code holding payload and its size word.
func makeBzImage(setupSects int, payload []byte, uncompressed uint32) []byte {
	le := binary.LittleEndian
	setup := make([]byte, (setupSects+1)*512)
	setup[offSetupSects] = byte(setupSects)
	le.PutUint16(setup[offBootFlag:], bootFlag)
	copy(setup[offHeaderMagic:], headerMagic)
	le.PutUint16(setup[offVersion:], 0x020f)
	le.PutUint16(setup[offKernelVersion:], 0x300-0x200)
	copy(setup[0x300:], "6.1.0-test-amd64 (nobody@example) #1 SMP\x00")
	le.PutUint16(setup[offXLoadFlags:], 0x7f)
	const codeBefore = 0x40 // decompressor code before the payload
	le.PutUint32(setup[offPayloadOffset:], codeBefore)
	le.PutUint32(setup[offPayloadLength:], uint32(len(payload)+4))
	le.PutUint32(setup[offInitSize:], 0x1000000)
	img := append(setup, make([]byte, codeBefore)...)
	img = append(img, payload...)
	img = le.AppendUint32(img, uncompressed)
	return append(img, make([]byte, 100)...) // trailing decompressor code
}

func gzipped(b []byte) []byte {
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	w.Write(b)
	w.Close()
	return z.Bytes()
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParse(t *testing.T) {
	elfData := pvhELF(0x1000000)
	img := makeBzImage(27, gzipped(elfData), uint32(len(elfData)))
	h, err := Parse(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if h.SetupSects != 27 || h.Protocol != 0x020f || h.XLoadFlags != 0x7f || h.InitSize != 0x1000000 {
		t.Errorf("header %+v", h)
	}
	if h.KernelStart() != 28*512 || h.PayloadStart() != 28*512+0x40 {
		t.Errorf("kernel start %#x, payload start %#x", h.KernelStart(), h.PayloadStart())
	}
	if h.Release() != "6.1.0-test-amd64" {
		t.Errorf("release %q from version %q", h.Release(), h.KernelVersion)
	}
	stream, size, err := h.Payload(bytes.NewReader(img))
	if err != nil || size != uint32(len(elfData)) || stream.Size() != int64(len(gzipped(elfData))) {
		t.Errorf("payload size %d stream %d err %v", size, stream.Size(), err)
	}
}

func TestParseErrors(t *testing.T) {
	good := makeBzImage(4, gzipped([]byte("x")), 1)
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte{}, good...)) }
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too small"},
		{"not a kernel", bytes.Repeat([]byte("hello"), 200), "no \"HdrS\" magic"},
		{"bad boot flag", mutate(func(b []byte) []byte { b[offBootFlag] = 0; return b }), "boot flag"},
		{"old protocol", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[offVersion:], 0x0204); return b }), "older than 2.08"},
		{"setup past EOF", mutate(func(b []byte) []byte { b[offSetupSects] = 200; return b }), "setup sectors extend past"},
		{"payload past EOF", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[offPayloadLength:], 1<<30); return b }), "extends past the end"},
		{"tiny payload", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[offPayloadLength:], 2); return b }), "too small"},
		{"truncated", good[:0x300], "past the end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(bytes.NewReader(tt.data), int64(len(tt.data)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := Parse(bytes.NewReader(nil), 0); !errors.Is(err, ErrNotBzImage) {
		t.Errorf("empty file: %v, want ErrNotBzImage", err)
	}
}

func TestDetectCompression(t *testing.T) {
	tests := map[string]Compression{
		"\x1f\x8b\x08":       Gzip,
		"BZh91AY":            Bzip2,
		"\xfd7zXZ\x00\x00":   XZ,
		"\x5d\x00\x00\x80":   LZMA,
		"\x89LZO\x00":        LZO,
		"\x02\x21\x4c\x18":   LZ4,
		"\x28\xb5\x2f\xfd":   Zstd,
		"\x7fELF\x02":        Uncompressed,
		"MZ\x90":             Unknown,
		"":                   Unknown,
		"\xfd7zX":            Unknown,
		"\x28\xb5\x2f\xfe00": Unknown,
	}
	for magic, want := range tests {
		if got := DetectCompression([]byte(magic)); got != want {
			t.Errorf("DetectCompression(% x) = %v, want %v", magic, got, want)
		}
	}
}

func TestExtractGzip(t *testing.T) {
	elfData := pvhELF(0x1234567)
	bz := writeTemp(t, "vmlinuz", makeBzImage(4, gzipped(elfData), uint32(len(elfData))))
	out := filepath.Join(t.TempDir(), "vmlinux")
	if err := ExtractFile(context.Background(), bz, out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, elfData) {
		t.Fatalf("extracted %d bytes (%v), want the %d-byte ELF", len(got), err, len(elfData))
	}
	f, _ := os.Open(out)
	defer f.Close()
	if e, err := PVHEntry(f); err != nil || e != 0x1234567 {
		t.Errorf("PVHEntry = %#x, %v", e, err)
	}
}

func TestExtractXZ(t *testing.T) {
	testenv.RequireTool(t, "xz", "xz-utils")
	elfData := pvhELF(0x1000000)
	cmd := exec.Command("xz", "-c", "--check=crc32")
	cmd.Stdin = bytes.NewReader(elfData)
	xzData, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	bz := writeTemp(t, "vmlinuz", makeBzImage(4, xzData, uint32(len(elfData))))
	var out bytes.Buffer
	comp, err := Extract(context.Background(), bz, &out)
	if err != nil || comp != XZ || !bytes.Equal(out.Bytes(), elfData) {
		t.Fatalf("Extract = %v, %v, %d bytes", comp, err, out.Len())
	}
}

func TestExtractErrors(t *testing.T) {
	elfData := pvhELF(0x1000000)
	noPVH := makeELF(2, 62, note("Xen", 6, []byte("linux\x00")))
	tests := []struct {
		name  string
		image []byte
		path  string // PATH for the test, "" = unchanged
		want  string
	}{
		{"wrong recorded size", makeBzImage(4, gzipped(elfData), uint32(len(elfData)+10)), "", "recorded"},
		{"longer than recorded", makeBzImage(4, gzipped(elfData), 100), "", "longer than the size"},
		{"unknown format", makeBzImage(4, []byte("MZ not compressed"), 5), "", "not a compression format"},
		{"corrupt gzip", makeBzImage(4, []byte("\x1f\x8b\x08\x00garbage"), 5), "", "gzip payload"},
		{"missing tool", makeBzImage(4, []byte("\x02\x21\x4c\x18rest"), 5), "empty", `needs the "lz4" tool`},
		{"no PVH note", makeBzImage(4, gzipped(noPVH), uint32(len(noPVH))), "", "no PVH entry note"},
		{"not a bzImage", []byte("plain text"), "", "not a bzImage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.path != "" {
				t.Setenv("PATH", t.TempDir())
			}
			bz := writeTemp(t, "vmlinuz", tt.image)
			out := filepath.Join(t.TempDir(), "vmlinux")
			err := ExtractFile(context.Background(), bz, out)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), bz) {
				t.Fatalf("error %v, want one naming %s and containing %q", err, bz, tt.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a failed extraction left %s", out)
			}
		})
	}
}

func TestPVHEntry(t *testing.T) {
	tests := []struct {
		name  string
		data  []byte
		entry uint32
		want  string
	}{
		{"4-byte entry", pvhELF(0x1000abc), 0x1000abc, ""},
		{"8-byte entry", makeELF(2, 62, note("Xen", 18, []byte{0x10, 0, 0, 1, 0, 0, 0, 0})), 0x1000010, ""},
		{"entry above 4G", makeELF(2, 62, note("Xen", 18, []byte{0, 0, 0, 0, 1, 0, 0, 0})), 0, "above 4 GiB"},
		{"odd descriptor", makeELF(2, 62, note("Xen", 18, []byte{1, 2})), 0, "2-byte descriptor"},
		{"no note", makeELF(2, 62, note("GNU", 3, []byte("abcd"))), 0, "no PVH entry note"},
		{"truncated note", makeELF(2, 62, note("Xen", 18, []byte{1, 2, 3, 4})[:14]), 0, "no PVH entry note"},
		{"32-bit ELF", makeELF(1, 3, nil), 0, "not an ELF file"},
		{"wrong machine", makeELF(2, 183, nil), 0, "want 64-bit x86-64"},
		{"not ELF", []byte("MZ"), 0, "not an ELF file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := PVHEntry(bytes.NewReader(tt.data))
			if tt.want == "" {
				if err != nil || e != tt.entry {
					t.Fatalf("PVHEntry = %#x, %v; want %#x", e, err, tt.entry)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestDebianKernel extracts the vmlinux of the real Debian kernel (shared
// cache) and checks the facts the lab relies on: XZ payload, PVH note,
// release matching the package.
func TestDebianKernel(t *testing.T) {
	testenv.RequireTool(t, "apt-get", "apt")
	testenv.RequireTool(t, "dpkg-deb", "dpkg")
	testenv.RequireTool(t, "xz", "xz-utils")
	c, err := cache.Default()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k, err := (&debian.Client{Cache: c}).FetchKernel(ctx, debian.KernelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(k.BzImage)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	h, err := Parse(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	if h.Release() != k.Release || h.Protocol < 0x020c || h.XLoadFlags&1 == 0 {
		t.Errorf("header: release %q (package %q), protocol %#x, xloadflags %#x", h.Release(), k.Release, h.Protocol, h.XLoadFlags)
	}
	stream, size, err := h.Payload(f)
	if err != nil {
		t.Fatal(err)
	}
	var magic [6]byte
	stream.ReadAt(magic[:], 0)
	if DetectCompression(magic[:]) != XZ {
		t.Errorf("payload is %v, docs/hosts.md says Debian's generic kernel is XZ", DetectCompression(magic[:]))
	}
	vmlinux, err := Cached(ctx, c, k.BzImage)
	if err != nil {
		t.Fatal(err)
	}
	vf, err := os.Open(vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	defer vf.Close()
	vfi, _ := vf.Stat()
	if vfi.Size() != int64(size) {
		t.Errorf("vmlinux is %d bytes, recorded size %d", vfi.Size(), size)
	}
	entry, err := PVHEntry(vf)
	if err != nil || entry < 0x100000 {
		t.Errorf("PVH entry %#x, %v", entry, err)
	}
	again, err := Cached(ctx, c, k.BzImage)
	if err != nil || again != vmlinux {
		t.Errorf("second Cached = %s, %v; want %s", again, err, vmlinux)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(makeBzImage(4, gzipped([]byte("x")), 1))
	f.Add([]byte("HdrS"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := Parse(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if end := h.PayloadStart() + int64(h.PayloadLength); end > int64(len(data)) {
			t.Fatalf("accepted a payload ending at %d in %d bytes", end, len(data))
		}
		if _, _, err := h.Payload(bytes.NewReader(data)); err != nil {
			t.Fatalf("accepted header but Payload failed: %v", err)
		}
	})
}

func FuzzPVHEntry(f *testing.F) {
	f.Add(pvhELF(0x1000000))
	f.Add(makeELF(2, 62, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		PVHEntry(bytes.NewReader(data))
	})
}
