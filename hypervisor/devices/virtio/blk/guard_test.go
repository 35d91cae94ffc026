package blk_test

import (
	"bytes"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/virtiotest"
)

const qcow2Magic = "QFI\xfb"

// racingImage is a raw image whose writes first call race: the test
// plays a second vCPU that rewrites the guest's data buffer at that
// moment, after every check the device made on guest memory and before
// the bytes reach the file. It has no WritevAt, so the device moves data
// with WriteAt; racingVectored adds pwritev.
type racingImage struct {
	disk.Image
	hook atomic.Pointer[func()]
}

// race runs the hook, if one is set.
func (r *racingImage) race() {
	if f := r.hook.Load(); f != nil {
		(*f)()
	}
}

func (r *racingImage) WriteAt(p []byte, off int64) (int, error) {
	r.race()
	return r.Image.WriteAt(p, off)
}

type racingVectored struct{ *racingImage }

func (r racingVectored) ReadvAt(bufs [][]byte, off int64) (int, error) {
	return r.Image.(blk.Vectored).ReadvAt(bufs, off)
}

func (r racingVectored) WritevAt(bufs [][]byte, off int64) (int, error) {
	r.race()
	return r.Image.(blk.Vectored).WritevAt(bufs, off)
}

// writeSector0 makes a write of data to sector 0 available on queue 0,
// the data in pieces buffers, and returns its status once used.
func (g *rig) writeSector0(t *testing.T, data uint64, n uint32, pieces int) byte {
	t.Helper()
	hdr := g.mem.Put(make([]byte, 16)) // VIRTIO_BLK_T_OUT, sector 0
	g.mem.PutU32(hdr, tOut)
	status := g.mem.Put([]byte{0xaa})
	bufs := []virtiotest.Buf{{Addr: hdr, Len: 16}}
	if pieces == 1 {
		bufs = append(bufs, virtiotest.Buf{Addr: data, Len: n})
	} else {
		bufs = append(bufs, virtiotest.Buf{Addr: data, Len: 8}, virtiotest.Buf{Addr: data + 8, Len: n - 8})
	}
	bufs = append(bufs, virtiotest.Buf{Addr: status, Len: 1, Write: true})
	q := g.drv.Queues[0]
	if _, err := q.Add(bufs); err != nil {
		t.Fatal(err)
	}
	g.drv.Kick(0)
	if _, err := q.WaitUsed(); err != nil {
		t.Fatal(err)
	}
	return g.mem.Read(status, 1)[0]
}

// fileHead returns the first four bytes of the image file.
func fileHead(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// guardPaths are the ways a write reaches the image: one buffer with
// WriteAt or pwritev, several with pwritev, several gathered into a
// staging buffer.
var guardPaths = []struct {
	name     string
	vectored bool
	pieces   int
}{
	{"one buffer", false, 1},
	{"one buffer, vectored image", true, 1},
	{"two buffers, vectored image", true, 2},
	{"two buffers, staged", false, 2},
}

// newRacingRig is a guarded device on a new raw image that can race its
// writes, taking pwritev when vectored.
func newRacingRig(t *testing.T, vectored bool) (*rig, *racingImage, string) {
	t.Helper()
	path := newImage(t, disk.FormatRaw)
	raw, err := disk.OpenRaw(path, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	ri := &racingImage{Image: raw}
	var img disk.Image = ri
	if vectored {
		img = racingVectored{ri}
	}
	return newRigOn(t, img, blk.Config{GuardFormat: true}, 0), ri, path
}

// TestGuardFormatDoubleFetch: a second vCPU rewrites the data of a
// sector-0 write into a qcow2 magic after the guard looked at it. The
// device must write the bytes it checked, never the guest's new ones:
// otherwise a guest plants a qcow2 header (with a backing file of its
// choosing) in a raw disk, and the host opens that backing file on the
// next start.
func TestGuardFormatDoubleFetch(t *testing.T) {
	for _, tc := range guardPaths {
		t.Run(tc.name, func(t *testing.T) {
			r, ri, path := newRacingRig(t, tc.vectored)
			data := r.mem.Put(append([]byte("XFI\xfb"), make([]byte, 508)...))
			guest := r.mem.Bytes(data, 4)

			// The racing vCPU: told when the device writes, it turns
			// the guest's buffer into a qcow2 magic and answers.
			poke, poked := make(chan struct{}), make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range poke {
					copy(guest, qcow2Magic)
					poked <- struct{}{}
				}
			}()
			defer wg.Wait()
			defer close(poke)
			race := func() { poke <- struct{}{}; <-poked }
			ri.hook.Store(&race)

			st := r.writeSector0(t, data, 512, tc.pieces)
			if head := fileHead(t, path); string(head) == qcow2Magic {
				t.Fatalf("status %d and the raw disk now starts with the qcow2 magic: the guard checked other bytes than it wrote", st)
			}
			if st != sOK || !bytes.Equal(fileHead(t, path), []byte("XFI\xfb")) {
				t.Fatalf("status %d, disk starts % x: want OK and the bytes the guard checked", st, fileHead(t, path))
			}
			if f, err := disk.Detect(path); err != nil || f != disk.FormatRaw {
				t.Fatalf("image detected as %q (%v)", f, err)
			}
		})
	}
}

// TestGuardFormatRacingWriter: a goroutine flips the guest's sector-0
// data between a qcow2 magic and harmless bytes without pause while the
// driver writes sector 0 over and over, through each of the device's
// paths to the image. The disk must never start with the magic.
func TestGuardFormatRacingWriter(t *testing.T) {
	const rounds = 1000
	for _, tc := range guardPaths {
		t.Run(tc.name, func(t *testing.T) {
			r, _, path := newRacingRig(t, tc.vectored)
			data := r.mem.Put(append([]byte(qcow2Magic), make([]byte, 4096-4)...))
			first := r.mem.Bytes(data, 1)
			mark := r.mem.Mark()

			var stop atomic.Bool
			done := make(chan struct{})
			go func() {
				defer close(done)
				for !stop.Load() {
					first[0] ^= 'Q' ^ 'X'
				}
			}()
			defer func() { stop.Store(true); <-done }()
			refused := 0
			for i := 0; i < rounds; i++ {
				if r.writeSector0(t, data, 4096, tc.pieces) == sIOErr {
					refused++
				}
				r.mem.Release(mark)
				if head := fileHead(t, path); string(head) == qcow2Magic {
					t.Fatalf("round %d: the raw disk starts with the qcow2 magic", i)
				}
			}
			t.Logf("%d of %d writes refused", refused, rounds)
		})
	}
}
