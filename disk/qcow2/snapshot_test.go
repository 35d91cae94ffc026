package qcow2

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSnapshotsPaddockToQemu: snapshots paddock makes are listed and read
// by qemu-img, revert and delete keep the image consistent, and VM state
// round-trips.
func TestSnapshotsPaddockToQemu(t *testing.T) {
	needTool(t, "qemu-img")
	for i, o := range []CreateOptions{
		{},
		{Version: 2},
		{ExtendedL2: true},
		{ClusterSize: 4096, RefcountBits: 8},
	} {
		t.Run(strings.ReplaceAll(describe(o), " ", "_"), func(t *testing.T) {
			t.Parallel()
			dir := tempDir(t)
			q := filepath.Join(dir, "img.qcow2")
			const size = 8 << 20
			o.Size = size
			if err := Create(q, o); err != nil {
				t.Fatal(err)
			}
			img, err := Open(q, Options{})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewSource(int64(i)))
			m := &model{data: make([]byte, size)}
			randomOps(t, img, m, r, 60, true)
			states := map[string][]byte{}
			vmstate := make([]byte, 300<<10+7)
			fillPattern(vmstate, 99)
			for _, name := range []string{"alpha", "beta", "gamma"} {
				var so SnapshotOptions
				if name == "beta" {
					if _, err := img.WriteVMState(vmstate, 0); err != nil {
						t.Fatal(err)
					}
					so.VMStateSize = int64(len(vmstate))
					so.VMClock = 1500 * time.Millisecond
				}
				if _, err := img.CreateSnapshot(name, so); err != nil {
					t.Fatal(err)
				}
				states[name] = bytes.Clone(m.data)
				randomOps(t, img, m, r, 40, true)
			}
			if _, err := img.CreateSnapshot("alpha", SnapshotOptions{}); err == nil {
				t.Fatal("duplicate snapshot name accepted")
			}
			active := bytes.Clone(m.data)
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			qemuCheck(t, q)
			list := qemuImg(t, "snapshot", "-l", q)
			for name := range states {
				if !strings.Contains(list, name) {
					t.Fatalf("qemu-img snapshot -l lacks %q:\n%s", name, list)
				}
			}
			if !strings.Contains(list, "1.5") && !strings.Contains(list, "00:00:01.500") {
				t.Errorf("qemu-img does not show the VM clock:\n%s", list)
			}
			sameBytes(t, "active", qemuRaw(t, q), active)
			for name, want := range states {
				sameBytes(t, "qemu-img convert -l "+name, qemuRaw(t, q, "-l", name), want)
			}

			// Revert, delete, and check after each step.
			img, err = Open(q, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := img.ApplySnapshot("beta"); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "after revert", readAll(t, img, size), states["beta"])
			got := make([]byte, len(vmstate))
			if _, err := img.ReadVMState(got, 0); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "vm state", got, vmstate)
			v, err := img.SnapshotView("beta")
			if err != nil {
				t.Fatal(err)
			}
			got2 := make([]byte, len(vmstate))
			if _, err := v.ReadVMState(got2, 0); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "snapshot vm state", got2, vmstate)
			m.data = bytes.Clone(states["beta"])
			randomOps(t, img, m, r, 40, true)
			if err := img.DeleteSnapshot("alpha"); err != nil {
				t.Fatal(err)
			}
			if err := img.DeleteSnapshot("2"); err != nil { // beta, by ID
				t.Fatal(err)
			}
			if err := img.DeleteSnapshot("nope"); err == nil {
				t.Fatal("deleting an unknown snapshot succeeded")
			}
			sameBytes(t, "after delete", readAll(t, img, size), m.data)
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			if leaks := qemuCheck(t, q); leaks != 0 {
				t.Errorf("%d leaks after snapshot delete", leaks)
			}
			sameBytes(t, "gamma survives", qemuRaw(t, q, "-l", "gamma"), states["gamma"])
			sameBytes(t, "active survives", qemuRaw(t, q), m.data)
			list = qemuImg(t, "snapshot", "-l", q)
			if strings.Contains(list, "alpha") || strings.Contains(list, "beta") {
				t.Fatalf("deleted snapshots still listed:\n%s", list)
			}
		})
	}
}

func describe(o CreateOptions) string {
	var parts []string
	if o.Version != 0 {
		parts = append(parts, "v"+string(rune('0'+o.Version)))
	}
	if o.ExtendedL2 {
		parts = append(parts, "extl2")
	}
	if o.ClusterSize != 0 {
		parts = append(parts, "cs"+itoa(o.ClusterSize))
	}
	if o.RefcountBits != 0 {
		parts = append(parts, "rc"+itoa(int64(o.RefcountBits)))
	}
	if len(parts) == 0 {
		return "default"
	}
	return strings.Join(parts, " ")
}

func itoa(v int64) string {
	var b []byte
	for v > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + v%10)}, b...)
		v /= 10
	}
	return string(b)
}

// TestSnapshotsQemuToPaddock: paddock reverts to and deletes snapshots
// that qemu-img made, and qemu-img agrees with the result.
func TestSnapshotsQemuToPaddock(t *testing.T) {
	needTool(t, "qemu-io")
	dir := tempDir(t)
	q := filepath.Join(dir, "img.qcow2")
	qemuImg(t, "create", "-f", "qcow2", q, "4M")
	qemuIO(t, q, "write -P 0x61 0 2M")
	qemuImg(t, "snapshot", "-c", "s1", q)
	qemuIO(t, q, "write -P 0x62 1M 2M")
	qemuImg(t, "snapshot", "-c", "s2", q)
	qemuIO(t, q, "write -P 0x63 0 512k")
	s1 := qemuRaw(t, q, "-l", "s1")
	s2 := qemuRaw(t, q, "-l", "s2")

	img, err := Open(q, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.ApplySnapshot("s1"); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "reverted to s1", readAll(t, img, img.Size()), s1)
	p := make([]byte, 8192)
	fillPattern(p, 5)
	if _, err := img.WriteAt(p, 3<<20); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(s1)
	copy(want[3<<20:], p)
	if err := img.DeleteSnapshot("s1"); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	if leaks := qemuCheck(t, q); leaks != 0 {
		t.Errorf("%d leaks", leaks)
	}
	sameBytes(t, "active", qemuRaw(t, q), want)
	sameBytes(t, "s2", qemuRaw(t, q, "-l", "s2"), s2)
	// And QEMU can still revert to what is left.
	qemuImg(t, "snapshot", "-a", "s2", q)
	sameBytes(t, "qemu revert", qemuRaw(t, q), s2)
	qemuCheck(t, q)
}

// TestSnapshotSharedWrites: after a snapshot every cluster is shared;
// writes must copy L2 tables and data clusters, never modify the
// snapshot.
func TestSnapshotSharedWrites(t *testing.T) {
	dir := tempDir(t)
	q := filepath.Join(dir, "img.qcow2")
	if err := Create(q, CreateOptions{Size: 4 << 20, ClusterSize: 4096}); err != nil {
		t.Fatal(err)
	}
	img, err := Open(q, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	full := make([]byte, 4<<20)
	fillPattern(full, 1)
	if _, err := img.WriteAt(full, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := img.CreateSnapshot("base", SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 100)
	fillPattern(p, 2)
	if _, err := img.WriteAt(p, 12345); err != nil {
		t.Fatal(err)
	}
	v, err := img.SnapshotView("base")
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "snapshot unchanged", readAll(t, v, v.Size()), full)
	want := bytes.Clone(full)
	copy(want[12345:], p)
	sameBytes(t, "active changed", readAll(t, img, img.Size()), want)
	res, err := img.Check(RepairNone)
	if err != nil {
		t.Fatal(err)
	}
	if res.Corruptions != 0 || res.Leaks != 0 {
		t.Fatalf("check: %+v", res)
	}
	_ = os.Remove
}
