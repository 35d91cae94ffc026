package machine

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fill writes a recognisable page at gpa.
func fill(t *testing.T, m *Memory, gpa uint64, v byte) {
	t.Helper()
	b, err := m.Slice(gpa, pageSize)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = v + byte(i)
	}
}

// page returns a copy of the page at gpa.
func page(t *testing.T, m *Memory, gpa uint64) []byte {
	t.Helper()
	b, err := m.Slice(gpa, pageSize)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), b...)
}

// dataPages lists the pages of f that are data, not holes.
func dataPages(t *testing.T, f *os.File) []int64 {
	t.Helper()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	set := make(pageSet, (fi.Size()/pageSize+63)/64)
	if err := addFileData(set, f, 0, fi.Size()); err != nil {
		t.Fatal(err)
	}
	var out []int64
	for p := int64(0); p < fi.Size()/pageSize; p++ {
		if set.has(int(p)) {
			out = append(out, p)
		}
	}
	return out
}

// TestMemoryFile writes guest RAM to a memory file, maps the file as the
// RAM of a new Memory, and checks what the issue asks of it: only
// touched, non-zero pages are written (holes stay holes), the new RAM
// holds the same bytes, the guest's writes to it never reach the file,
// and a second save of file-backed RAM keeps the pages it never touched.
func TestMemoryFile(t *testing.T) {
	const size = LowRAMMax + 64<<20 // two regions: the file skips the hole
	src, err := newMemory(size)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	written := []uint64{0, 0x10_0000, LowRAMMax - pageSize, HighRAMStart, HighRAMStart + 64<<20 - pageSize}
	for i, gpa := range written {
		fill(t, src, gpa, byte(i+1))
	}
	// Touched but zero: read, and written with zeros.
	_ = page(t, src, 0x20_0000)
	zero, _ := src.Slice(0x30_0000, pageSize)
	zero[7] = 1
	zero[7] = 0

	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := src.WriteTo(f)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != size || st.Written != int64(len(written))*pageSize {
		t.Fatalf("WriteTo = %+v, want size %d and %d pages written", st, int64(size), len(written))
	}
	if st.Candidates >= size/2 {
		t.Errorf("WriteTo looked at %d MiB of the %d MiB of RAM: it did not tell touched pages from untouched ones", st.Candidates>>20, size>>20)
	}
	// The file's data pages are exactly the written ones, at their file
	// offsets (high RAM follows low RAM directly).
	var want []int64
	for _, gpa := range written {
		off := gpa
		if gpa >= HighRAMStart {
			off = gpa - HighRAMStart + LowRAMMax
		}
		want = append(want, int64(off/pageSize))
	}
	if got := dataPages(t, f); !slices.Equal(got, want) {
		t.Fatalf("data pages of the memory file %v, want %v", got, want)
	}
	f.Close()

	mf, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	restored, err := newFileMemory(size, mf)
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	if !restored.FileBacked() {
		t.Fatal("FileBacked() = false for a memory file")
	}
	for _, gpa := range append(written, 0x20_0000, 0x40_0000) {
		if !bytes.Equal(page(t, restored, gpa), page(t, src, gpa)) {
			t.Fatalf("restored page %#x differs from the saved one", gpa)
		}
	}
	// The guest writes: a page that came from the file, and a hole.
	fill(t, restored, 0x10_0000, 0x80)
	fill(t, restored, 0x50_0000, 0x90)
	// The file still has exactly its pages, with their old contents. On
	// a tmpfs a fault on a hole (a read, or a private write's read of the
	// page it copies) allocates a page of zeros in the file: its content
	// is the same, it is only less sparse.
	got := dataPages(t, mf)
	if tmpfs(t, mf.Name()) {
		got = slices.DeleteFunc(got, func(p int64) bool {
			if slices.Contains(want, p) {
				return false
			}
			b := make([]byte, pageSize)
			if _, err := mf.ReadAt(b, p*pageSize); err != nil {
				t.Fatal(err)
			}
			return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 })
		})
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after guest writes, data pages of the memory file %v, want %v", got, want)
	}
	for i, p := range want {
		b := make([]byte, pageSize)
		if _, err := mf.ReadAt(b, p*pageSize); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, page(t, src, written[i])) {
			t.Fatalf("writes to file-backed guest memory changed page %d of the memory file", p)
		}
	}

	// Saving the restored RAM keeps the file's pages it never touched.
	g, err := os.Create(filepath.Join(dir, "memory2"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := restored.WriteTo(g); err != nil {
		t.Fatal(err)
	}
	g.Close()
	again, err := os.Open(g.Name())
	if err != nil {
		t.Fatal(err)
	}
	third, err := newFileMemory(size, again)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	for _, gpa := range append(written, 0x50_0000) {
		if !bytes.Equal(page(t, third, gpa), page(t, restored, gpa)) {
			t.Fatalf("page %#x after a second save differs", gpa)
		}
	}
}

// TestMemoryFileRefused checks that a memory file of the wrong size, or
// not a regular file, is refused before anything is mapped.
func TestMemoryFileRefused(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, make([]byte, pageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
	}{
		{short, "cut short"},
		{dir, "not a regular file"},
	} {
		f, err := os.Open(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := newFileMemory(64<<20, f)
		if err == nil {
			m.Close()
			t.Fatalf("%s: accepted", tc.path)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.path, err, tc.want)
		}
		// The file is still the caller's.
		if _, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0); err != nil {
			t.Errorf("%s: the refused file was closed: %v", tc.path, err)
		}
		f.Close()
	}
}

// tmpfs reports whether path lies on a tmpfs.
func tmpfs(t *testing.T, path string) bool {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Type == unix.TMPFS_MAGIC
}

// TestFileMemoryLazy checks that RAM mapped from a memory file loads on
// first touch: right after the mapping, none of the file's 16 MiB of
// data is in this process's page tables (no read of the whole file, no
// MAP_POPULATE); reading one page brings in that page and at most the
// kernel's fault-around window of its neighbours, not the file.
func TestFileMemoryLazy(t *testing.T) {
	const size, data = 64 << 20, 16 << 20
	src, err := newMemory(size)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for gpa := uint64(0); gpa < data; gpa += pageSize {
		fill(t, src, gpa, byte(gpa/pageSize)|1)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "memory"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if st, err := src.WriteTo(f); err != nil || st.Written != data {
		t.Fatalf("WriteTo = %+v, %v; want %d bytes written", st, err, data)
	}
	restored, err := newFileMemory(size, f)
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	if n := presentPages(t, restored); n != 0 {
		t.Fatalf("%d pages of the restored RAM are mapped before the guest touched any", n)
	}
	if !bytes.Equal(page(t, restored, data/2), page(t, src, data/2)) {
		t.Fatal("the restored page differs from the saved one")
	}
	// The kernel maps a faulting page's neighbours that are in the page
	// cache: 16 pages, or a whole large folio of it (256 on this host's
	// kernel). Far from the file's 4096.
	if n := presentPages(t, restored); n == 0 || n > data/pageSize/4 {
		t.Fatalf("%d pages of the restored RAM are mapped after one page was read; want that page and at most a fault-around window", n)
	}
}

// presentPages counts the pages of m's RAM that /proc/self/pagemap says
// are in this process's page tables.
func presentPages(t *testing.T, m *Memory) int {
	t.Helper()
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	n := 0
	for _, b := range m.maps {
		entries := make([]byte, 8*(len(b)/pageSize))
		if _, err := pm.ReadAt(entries, 8*int64(hostAddr(b)/pageSize)); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(entries); i += 8 {
			if binary.NativeEndian.Uint64(entries[i:])&pagemapPresent != 0 {
				n++
			}
		}
	}
	return n
}
