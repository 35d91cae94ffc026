package qcow2

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestClusterSet: the index of metadata clusters behind the overlap
// checks.
func TestClusterSet(t *testing.T) {
	const cs = 4096
	s := newClusterSet([]uint64{0, 5 * cs, 2*cs | oflagCopied, 9 * cs, 5 * cs}, l1OffsetMask)
	if want := []int64{2 * cs, 5 * cs, 9 * cs}; !slices.Equal(s.offs, want) || !slices.Equal(s.counts, []int64{1, 2, 1}) {
		t.Fatalf("newClusterSet: %v, want %v with 5*cs twice", s, want)
	}
	cases := []struct {
		off, n int64
		want   int64 // 0: no overlap
	}{
		{0, cs, 0},
		{2 * cs, cs, 2 * cs},
		{2*cs + 100, 1, 2 * cs},
		{cs, 2 * cs, 2 * cs},
		{3 * cs, 2 * cs, 0},
		{3 * cs, 2*cs + 1, 5 * cs},
		{6*cs - 1, 1, 5 * cs},
		{6 * cs, 3 * cs, 0},
		{10 * cs, 100 * cs, 0},
		{0, 100 * cs, 2 * cs},
	}
	for _, c := range cases {
		got, ok := s.overlapping(c.off, c.n, cs)
		if ok != (c.want != 0) || got != c.want {
			t.Errorf("overlapping(%#x, %#x) = %#x, %v; want %#x", c.off, c.n, got, ok, c.want)
		}
	}
	// A cluster named twice stays indexed until both are gone.
	s.remove(5 * cs)
	if _, ok := s.overlapping(5*cs, 1, cs); !ok {
		t.Fatal("one of two mentions removed, the cluster is no longer indexed")
	}
	s.remove(5 * cs)
	if _, ok := s.overlapping(5*cs, 1, cs); ok {
		t.Fatal("both mentions removed, the cluster is still indexed")
	}
	s.remove(7 * cs) // absent: no effect
	s.add(7 * cs)
	s.add(1 * cs)
	if want := []int64{cs, 2 * cs, 7 * cs, 9 * cs}; !slices.Equal(s.offs, want) {
		t.Fatalf("after add/remove: %v, want %v", s.offs, want)
	}
}

// TestDataWriteOverUncachedMetadataRefused: an image made by qemu-img,
// then damaged so that an L2 entry maps a guest cluster onto another
// active L2 table, or onto a refcount block. A write to that guest
// cluster, while the target table is not in paddock's cache, must be
// refused (the image marked corrupt, the table intact), as QEMU refuses
// it ("Preventing invalid write on metadata"); afterwards qemu-img check
// must find what paddock's check finds, and the data the table maps must
// still read back through QEMU.
func TestDataWriteOverUncachedMetadataRefused(t *testing.T) {
	needTool(t, "qemu-img")
	needTool(t, "qemu-io")
	for _, target := range []string{"L2 table", "refcount block"} {
		t.Run(strings.ReplaceAll(target, " ", "_"), func(t *testing.T) {
			dir := tempDir(t)
			path := filepath.Join(dir, "hostile.qcow2")
			// 4 KiB clusters: an L2 table maps 2 MiB, so guest offsets 0
			// and 8 MiB live in two L2 tables; with 64-bit refcounts a
			// refcount block covers 2 MiB of the file, so 3 MiB more
			// data makes a second block, the one paddock reads at open.
			qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096,refcount_bits=64", path, "64M")
			qemuIO(t, path, "write -P 0x11 0 8k", "write -P 0x22 8M 4k", "write -P 0x33 16M 3M")
			info, err := Open(path, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			cs := info.g.cs
			tableA := int64(info.l1[0] & l1OffsetMask)
			tableB := int64(info.l1[(8<<20)>>(info.g.clusterBits+info.g.l2Bits)] & l1OffsetMask)
			refBlock := int64(info.rt[0] & rtOffsetMask)
			info.Close()
			if tableA == 0 || tableB == 0 || tableA == tableB || refBlock == 0 {
				t.Fatalf("layout: L2 tables %#x and %#x, refcount block %#x", tableA, tableB, refBlock)
			}
			victim := tableB
			if target == "refcount block" {
				victim = refBlock
			}
			// Guest cluster 1 (offset 4 KiB, in table A) now points at
			// the victim, with the COPIED flag its refcount of 1 allows.
			patchFile(t, path, tableA+8, uint64(victim)|oflagCopied)
			qemuCopy := filepath.Join(dir, "qemu.qcow2")
			copyFile(t, path, qemuCopy)

			before := readFileRange(t, path, victim, cs)
			img, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if img.l2c.m[victim] != nil || img.rbc.m[victim] != nil {
				t.Fatalf("the %s at %#x is cached before the write; the test needs it uncached", target, victim)
			}
			_, werr := img.WriteAt(bytes.Repeat([]byte{0x55}, 4096), 4096)
			if !errors.Is(werr, ErrCorrupt) || !strings.Contains(werr.Error(), "hostile.qcow2") || !strings.Contains(werr.Error(), target) {
				t.Fatalf("write over the %s: %v; want ErrCorrupt naming the image and the %s", target, werr, target)
			}
			if _, err := img.WriteAt(make([]byte, 512), 1<<20); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("a later write to an unrelated cluster: %v, want it refused too", err)
			}
			img.Close()
			if after := readFileRange(t, path, victim, cs); !bytes.Equal(after, before) {
				t.Fatalf("the %s at %#x was overwritten", target, victim)
			}

			// QEMU refuses the same write on the same image.
			out, _ := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0x55 4k 4k", qemuCopy).CombinedOutput()
			if !strings.Contains(string(out), "Preventing invalid write on metadata") {
				t.Fatalf("qemu-io did not refuse the write as paddock did:\n%s", out)
			}

			// qemu-img agrees with paddock about the image afterwards.
			q := qemuCheckJSON(t, path)
			ro, err := Open(path, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			if !ro.Info().Corrupt || !qemuInfoCorrupt(t, path) {
				t.Fatalf("corrupt flag: paddock %v, qemu-img %v; want both set", ro.Info().Corrupt, qemuInfoCorrupt(t, path))
			}
			res, err := ro.Check(RepairNone)
			if err != nil {
				t.Fatal(err)
			}
			if res.Corruptions == 0 || res.Corruptions != q.Corruptions || res.Leaks != q.Leaks {
				t.Fatalf("paddock check: %d corruptions, %d leaks (%s); qemu-img check: %d corruptions, %d leaks",
					res.Corruptions, res.Leaks, strings.Join(res.Messages, "; "), q.Corruptions, q.Leaks)
			}
			// The data the untouched tables map reads back through QEMU.
			out, err = exec.Command("qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x22 8M 4k", "-c", "read -P 0x11 0 4k", path).CombinedOutput()
			if err != nil || strings.Contains(string(out), "fail") {
				t.Fatalf("qemu-io reads after the refusal: %v\n%s", err, out)
			}
		})
	}
}

// TestDiscardOverMetadataRefused: discarding a guest cluster that a
// damaged L2 entry maps onto another active L2 table must not free that
// table (its refcount would drop to 0 and its space would be punched out
// of the file, losing every mapping in it). The flush that would free it
// fails, the image is marked corrupt, and the table and its data stay.
func TestDiscardOverMetadataRefused(t *testing.T) {
	needTool(t, "qemu-img")
	needTool(t, "qemu-io")
	dir := tempDir(t)
	path := filepath.Join(dir, "hostile.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", path, "64M")
	qemuIO(t, path, "write -P 0x11 0 8k", "write -P 0x22 8M 4k")
	info, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	tableA := int64(info.l1[0] & l1OffsetMask)
	tableB := int64(info.l1[(8<<20)>>(info.g.clusterBits+info.g.l2Bits)] & l1OffsetMask)
	cs := info.g.cs
	info.Close()
	patchFile(t, path, tableA+8, uint64(tableB)|oflagCopied)
	before := readFileRange(t, path, tableB, cs)

	img, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Discard(4096, 4096); err != nil {
		t.Fatalf("discard: %v", err)
	}
	ferr := img.Flush()
	if !errors.Is(ferr, ErrCorrupt) || !strings.Contains(ferr.Error(), "L2 table") {
		t.Fatalf("flush after discarding a cluster mapped onto an L2 table: %v; want ErrCorrupt naming the L2 table", ferr)
	}
	img.Close()
	if after := readFileRange(t, path, tableB, cs); !bytes.Equal(after, before) {
		t.Fatal("the L2 table was freed and punched out")
	}
	out, err := exec.Command("qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x22 8M 4k", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "fail") {
		t.Fatalf("qemu-io read of the data the L2 table maps: %v\n%s", err, out)
	}
	if !qemuInfoCorrupt(t, path) {
		t.Fatal("qemu-img info: the image is not marked corrupt")
	}
	// The discard itself is durable: the damaged entry is gone, and both
	// checks find the image otherwise consistent.
	q := qemuCheckJSON(t, path)
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	res, err := ro.Check(RepairNone)
	if err != nil {
		t.Fatal(err)
	}
	if res.Corruptions != q.Corruptions || res.Leaks != q.Leaks || q.CheckErrors != 0 {
		t.Fatalf("paddock check: %d corruptions, %d leaks (%s); qemu-img check: %+v",
			res.Corruptions, res.Leaks, strings.Join(res.Messages, "; "), q)
	}
}

// qemuCheckResult is what qemu-img check --output=json reports.
type qemuCheckResult struct {
	Corruptions int `json:"corruptions"`
	Leaks       int `json:"leaks"`
	CheckErrors int `json:"check-errors"`
}

// qemuCheckJSON runs qemu-img check and returns its counters, whatever
// they are.
func qemuCheckJSON(t *testing.T, path string) qemuCheckResult {
	t.Helper()
	out, _ := exec.Command("qemu-img", "check", "--output=json", path).Output()
	var r qemuCheckResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("qemu-img check %s: %v\n%s", path, err, out)
	}
	return r
}

// qemuInfoCorrupt reports qemu-img info's corrupt flag.
func qemuInfoCorrupt(t *testing.T, path string) bool {
	t.Helper()
	var r struct {
		FormatSpecific struct {
			Data struct {
				Corrupt bool `json:"corrupt"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	out := qemuImg(t, "info", "--output=json", "-U", path)
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("qemu-img info %s: %v\n%s", path, err, out)
	}
	return r.FormatSpecific.Data.Corrupt
}

// patchFile stores v big-endian at off in the file at path.
func patchFile(t *testing.T, path string, off int64, v uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// readFileRange returns n bytes at off of the file at path.
func readFileRange(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// copyFile copies the file at src to dst.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
