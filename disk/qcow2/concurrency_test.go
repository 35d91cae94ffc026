package qcow2

import (
	"fmt"
	"math/rand"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// Concurrency: virtio-blk queues issue requests from several goroutines.
// Writers own interleaved 1.5 KiB stripes (so they share clusters and L2
// tables), readers check that every byte they see is one that was
// written there, and a snapshotter takes snapshots meanwhile. Run under
// the race detector in CI.

const stripe = 1536

// stripeByte is the value of byte i of stripe s at version v (v >= 1).
func stripeByte(s, v, i int) byte {
	h := uint32(s)*2654435761 ^ uint32(v)*40503 ^ uint32(i)*2246822519
	h ^= h >> 13
	return byte(h*3266489917>>24) | 1 // never 0: zeros mean "zeroed"
}

func TestConcurrentIO(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    CreateOptions
		backing bool
	}{
		{"c4k", CreateOptions{ClusterSize: 4096}, false},
		{"extl2-backing", CreateOptions{ExtendedL2: true, ClusterSize: 32768}, true},
		{"c64k-backing", CreateOptions{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			const size = 6 << 20
			initial := make([]byte, size)
			o := tc.opts
			o.Size = size
			if tc.backing {
				base := filepath.Join(dir, "base.raw")
				initial = writeRawImage(t, base, size, 9)
				o.BackingFile = "base.raw"
				o.BackingFormat = "raw"
			}
			q := filepath.Join(dir, "img.qcow2")
			if err := Create(q, o); err != nil {
				t.Fatal(err)
			}
			img, err := Open(q, Options{L2CacheBytes: 256 << 10})
			if err != nil {
				t.Fatal(err)
			}
			nStripes := size / stripe
			versions := make([]atomic.Int32, nStripes) // highest version started
			final := make([]int32, nStripes)           // last version written (-1: zeroed)
			const writers = 6
			ops := scaled(1500)
			plausible := func(buf []byte, off int64) error {
				for k, b := range buf {
					x := off + int64(k)
					if b == initial[x] || b == 0 {
						continue
					}
					s, i := int(x/stripe), int(x%stripe)
					ok := false
					for v := int(versions[s].Load()); v >= 1; v-- {
						if stripeByte(s, v, i) == b {
							ok = true
							break
						}
					}
					if !ok {
						return fmt.Errorf("byte %#x = %#02x was never written there", x, b)
					}
				}
				return nil
			}
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			stop := make(chan struct{})
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					r := rand.New(rand.NewSource(int64(w)))
					buf := make([]byte, stripe)
					for n := 0; n < ops; n++ {
						s := w + writers*r.Intn(nStripes/writers)
						off := int64(s) * stripe
						var err error
						switch k := r.Intn(20); {
						case k == 0:
							err = img.Flush()
						case k < 3:
							final[s] = -1
							err = img.WriteZeroes(off, stripe, k == 1)
						default:
							v := int(versions[s].Add(1))
							for i := range buf {
								buf[i] = stripeByte(s, v, i)
							}
							final[s] = int32(v)
							_, err = img.WriteAt(buf, off)
						}
						if err != nil {
							errs <- fmt.Errorf("writer %d: %w", w, err)
							return
						}
					}
				}(w)
			}
			var readers sync.WaitGroup
			for rd := 0; rd < 2; rd++ {
				readers.Add(1)
				go func(rd int) {
					defer readers.Done()
					r := rand.New(rand.NewSource(int64(100 + rd)))
					for {
						select {
						case <-stop:
							return
						default:
						}
						n := int64(r.Intn(200<<10) + 1)
						off := r.Int63n(size - n)
						buf := make([]byte, n)
						if _, err := img.ReadAt(buf, off); err != nil {
							errs <- fmt.Errorf("reader: %w", err)
							return
						}
						if err := plausible(buf, off); err != nil {
							errs <- fmt.Errorf("reader: %w", err)
							return
						}
					}
				}(rd)
			}
			readers.Add(1)
			var snaps []string
			go func() {
				defer readers.Done()
				for i := 0; i < 3; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("s%d", i)
					if _, err := img.CreateSnapshot(name, SnapshotOptions{}); err != nil {
						errs <- fmt.Errorf("snapshot: %w", err)
						return
					}
					snaps = append(snaps, name)
				}
			}()
			wg.Wait()
			close(stop)
			readers.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			got := readAll(t, img, size)
			for s := 0; s < nStripes; s++ {
				for i := 0; i < stripe; i++ {
					x := s*stripe + i
					var want byte
					switch v := final[s]; {
					case v > 0:
						want = stripeByte(s, int(v), i)
					case v == 0:
						want = initial[x]
					}
					if got[x] != want {
						t.Fatalf("stripe %d byte %d: %#02x, want %#02x", s, i, got[x], want)
					}
				}
			}
			for _, name := range snaps {
				v, err := img.SnapshotView(name)
				if err != nil {
					t.Fatal(err)
				}
				if err := plausible(readAll(t, v, v.Size()), 0); err != nil {
					t.Fatalf("snapshot %s: %v", name, err)
				}
			}
			res, err := img.Check(RepairNone)
			if err != nil {
				t.Fatal(err)
			}
			if res.Corruptions != 0 || res.Leaks != 0 {
				t.Fatalf("check: %+v\n%s", res, strings.Join(res.Messages, "\n"))
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			if testenv.HasTool(t, "qemu-img", "qemu-utils") {
				if leaks := qemuCheck(t, q); leaks != 0 {
					t.Fatalf("%d leaks", leaks)
				}
			}
		})
	}
}
