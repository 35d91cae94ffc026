package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// patchHeader rewrites the header cluster of a file through fn.
func patchHeader(t *testing.T, path string, fn func(c0 []byte)) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c0 := make([]byte, 4096)
	if _, err := f.ReadAt(c0, 0); err != nil {
		t.Fatal(err)
	}
	fn(c0)
	if _, err := f.WriteAt(c0, 0); err != nil {
		t.Fatal(err)
	}
}

func setU64(b []byte, off int, fn func(uint64) uint64) {
	binary.BigEndian.PutUint64(b[off:], fn(binary.BigEndian.Uint64(b[off:])))
}

// TestFeatureBits: unknown incompatible bits and the corrupt bit refuse;
// unknown compatible bits stay; autoclear bits are cleared on write.
func TestFeatureBits(t *testing.T) {
	dir := tempDir(t)
	q := filepath.Join(dir, "img.qcow2")
	if err := Create(q, CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}

	patchHeader(t, q, func(c0 []byte) { setU64(c0, 72, func(v uint64) uint64 { return v | 1<<40 }) })
	_, err := Open(q, Options{ReadOnly: true})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "bit 40") {
		t.Fatalf("unknown incompatible bit: %v", err)
	}
	patchHeader(t, q, func(c0 []byte) { setU64(c0, 72, func(v uint64) uint64 { return v &^ (1 << 40) }) })

	patchHeader(t, q, func(c0 []byte) { setU64(c0, 72, func(v uint64) uint64 { return v | IncompatCorrupt }) })
	if _, err := Open(q, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt bit, read-write: %v", err)
	}
	img, err := Open(q, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("corrupt bit, read-only: %v", err)
	}
	img.Close()
	patchHeader(t, q, func(c0 []byte) { setU64(c0, 72, func(v uint64) uint64 { return v &^ IncompatCorrupt }) })

	// Unknown compatible bit 7 and autoclear bits 0 and 9.
	patchHeader(t, q, func(c0 []byte) {
		setU64(c0, 80, func(v uint64) uint64 { return v | 1<<7 })
		setU64(c0, 88, func(v uint64) uint64 { return v | 1<<9 | 1 })
	})
	img, err = Open(q, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	img.Close()
	b, _ := os.ReadFile(q)
	h, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.CompatibleFeatures != 1<<7 {
		t.Errorf("compatible features %#x, want the unknown bit preserved", h.CompatibleFeatures)
	}
	if h.AutoclearFeatures != 0 {
		t.Errorf("autoclear features %#x, want cleared", h.AutoclearFeatures)
	}
	if testenv.HasTool(t, "qemu-img", "qemu-utils") {
		qemuCheck(t, q)
	}
}

// TestUnknownExtensionPreserved: an extension paddock does not know
// survives a header rewrite (rebase).
func TestUnknownExtensionPreserved(t *testing.T) {
	dir := tempDir(t)
	q := filepath.Join(dir, "img.qcow2")
	if err := Create(q, CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	img, err := Open(q, Options{})
	if err != nil {
		t.Fatal(err)
	}
	exts := append(img.exts, Extension{Type: 0x12345678, Data: []byte("keep me")})
	img.mu.Lock()
	err = img.rewriteHeaderClusterLocked(exts, "")
	img.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := img.SetBacking("", ""); err != nil {
		t.Fatal(err)
	}
	img.Close()
	img, err = Open(q, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	found := false
	for _, e := range img.exts {
		if e.Type == 0x12345678 && bytes.Equal(e.Data, []byte("keep me")) {
			found = true
		}
	}
	if !found {
		t.Fatalf("unknown extension lost: %+v", img.exts)
	}
}

// TestDirtyImageRepaired: an image QEMU left dirty (lazy refcounts, then
// a crash) reads as QEMU sees it, and opening it for writing repairs the
// refcounts.
func TestDirtyImageRepaired(t *testing.T) {
	needTool(t, "qemu-io")
	dir := tempDir(t)
	q := filepath.Join(dir, "img.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-o", "lazy_refcounts=on", q, "4M")
	// qemu-io exits non-zero on abort; ignore its status.
	_ = exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", "-c", "write -P 0x5b 2M 300k", "-c", "abort", q).Run()
	b, _ := os.ReadFile(q)
	h, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.IncompatibleFeatures&IncompatDirty == 0 {
		testenv.Unavailable(t, "qemu-io's abort left the image clean: this QEMU cannot make the dirty image the test needs")
	}
	ro, err := Open(q, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, ro, ro.Size())
	ro.Close()
	want := make([]byte, 4<<20)
	for i := 0; i < 1<<20; i++ {
		want[i] = 0x5a
	}
	for i := 2 << 20; i < 2<<20+300<<10; i++ {
		want[i] = 0x5b
	}
	sameBytes(t, "dirty image", got, want)
	img, err := Open(q, Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := img.Check(RepairNone)
	if err != nil {
		t.Fatal(err)
	}
	if res.Corruptions != 0 {
		t.Fatalf("after repair on open: %+v", res)
	}
	img.Close()
	b, _ = os.ReadFile(q)
	if h, _ := ParseHeader(b); h.IncompatibleFeatures&IncompatDirty != 0 {
		t.Fatal("dirty bit still set")
	}
	qemuCheck(t, q)
	sameBytes(t, "after repair", qemuRaw(t, q), want)
}

// TestCheckRepairLeaks: paddock's check finds the same leaks as qemu-img
// and repairs them.
func TestCheckRepairLeaks(t *testing.T) {
	needTool(t, "qemu-img")
	dir := tempDir(t)
	q := filepath.Join(dir, "img.qcow2")
	if err := Create(q, CreateOptions{Size: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	img, err := Open(q, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &model{data: make([]byte, 8<<20)}
	randomOps(t, img, m, rand.New(rand.NewSource(3)), 50, true)
	// Leak: raise refcounts of a used cluster and of free ones.
	img.mu.Lock()
	for _, c := range []int64{0, img.allocEnd + 3, img.allocEnd + 4} {
		if _, err := img.addRefcount(c, 1); err != nil {
			t.Fatal(err)
		}
	}
	img.mu.Unlock()
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	if leaks := qemuCheck(t, q); leaks != 3 {
		t.Fatalf("qemu-img sees %d leaks, want 3", leaks)
	}
	img, err = Open(q, Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := img.Check(RepairNone)
	if err != nil {
		t.Fatal(err)
	}
	if res.Leaks != 3 || res.Corruptions != 0 {
		t.Fatalf("paddock check: %+v", res)
	}
	res, err = img.Check(RepairLeaks)
	if err != nil {
		t.Fatal(err)
	}
	if res.LeaksFixed != 3 {
		t.Fatalf("fixed %d leaks, want 3: %+v", res.LeaksFixed, res)
	}
	sameBytes(t, "data intact", readAll(t, img, img.Size()), m.data)
	img.Close()
	if leaks := qemuCheck(t, q); leaks != 0 {
		t.Fatalf("%d leaks after repair", leaks)
	}
}

// TestCheckRepairAll: refcounts that are too low (the dangerous case) are
// found and rebuilt.
func TestCheckRepairAll(t *testing.T) {
	needTool(t, "qemu-img")
	dir := tempDir(t)
	q := filepath.Join(dir, "img.qcow2")
	if err := Create(q, CreateOptions{Size: 8 << 20, ClusterSize: 4096}); err != nil {
		t.Fatal(err)
	}
	img, err := Open(q, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &model{data: make([]byte, 8<<20)}
	randomOps(t, img, m, rand.New(rand.NewSource(4)), 50, true)
	if _, err := img.CreateSnapshot("s", SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	img.mu.Lock()
	// Drop a data cluster's refcount from 2 to 1, another to 0.
	dropped := 0
	for c := int64(10); c < img.allocEnd && dropped < 2; c++ {
		if rc, _ := img.refcount(c); rc == 2 {
			if _, err := img.addRefcount(c, -int64(1+dropped)); err != nil {
				t.Fatal(err)
			}
			dropped++
		}
	}
	img.mu.Unlock()
	if dropped != 2 {
		t.Fatal("no shared clusters to damage")
	}
	img.Close()
	out, _ := exec.Command("qemu-img", "check", q).CombinedOutput()
	if !strings.Contains(string(out), "ERROR") {
		t.Fatalf("qemu-img check does not see the damage:\n%s", out)
	}
	img, err = Open(q, Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := img.Check(RepairNone)
	if err != nil {
		t.Fatal(err)
	}
	if res.Corruptions == 0 {
		t.Fatalf("paddock check misses the damage: %+v", res)
	}
	res, err = img.Check(RepairAll)
	if err != nil {
		t.Fatal(err)
	}
	if res.CorruptionsFixed != res.Corruptions {
		t.Fatalf("repair left corruptions: %+v", res)
	}
	sameBytes(t, "data intact", readAll(t, img, img.Size()), m.data)
	img.Close()
	qemuCheck(t, q)
}
