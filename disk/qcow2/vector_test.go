package qcow2

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// splitRandom cuts p into random pieces (empty ones included), as a guest
// request arrives over scattered buffers.
func splitRandom(p []byte, r *rand.Rand) [][]byte {
	var bufs [][]byte
	for len(p) > 0 {
		var n int
		switch r.Intn(4) {
		case 0:
			n = 0
		case 1:
			n = r.Intn(600) + 1
		case 2:
			n = 4096
		default:
			n = r.Intn(70000) + 1
		}
		n = min(n, len(p))
		bufs = append(bufs, p[:n])
		p = p[n:]
	}
	return bufs
}

// readAllVec reads the whole disk with ReadvAt, in requests of random
// sizes split over random buffers.
func readAllVec(t testing.TB, img *Image, seed int64) []byte {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	size := img.Size()
	buf := make([]byte, size)
	for off := int64(0); off < size; {
		n := min(size-off, int64(r.Intn(3<<20)+1))
		got, err := img.ReadvAt(splitRandom(buf[off:off+n], r), off)
		if err != nil || int64(got) != n {
			t.Fatalf("ReadvAt %#x+%d: %d, %v", off, n, got, err)
		}
		off += n
	}
	return buf
}

func TestIOVPieces(t *testing.T) {
	v := newIOV([][]byte{[]byte("abc"), nil, []byte("defg"), []byte("h")})
	if v.total != 8 {
		t.Fatalf("total %d", v.total)
	}
	for _, tc := range []struct {
		from, n int64
		want    string
	}{{0, 8, "abc|defg|h"}, {2, 3, "c|de"}, {3, 4, "defg"}, {7, 1, "h"}, {4, 0, ""}} {
		var parts [][]byte
		for _, p := range v.pieces(tc.from, tc.n) {
			parts = append(parts, p)
		}
		if got := string(bytes.Join(parts, []byte("|"))); got != tc.want {
			t.Errorf("pieces(%d, %d) = %q, want %q", tc.from, tc.n, got, tc.want)
		}
	}
	dst := make([]byte, 5)
	v.gather(dst, 1)
	if string(dst) != "bcdef" {
		t.Errorf("gather = %q", dst)
	}
	v.scatter([]byte("XYZ"), 2)
	if got := string(bytes.Join(v.bufs, nil)); got != "abXYZfgh" {
		t.Errorf("after scatter: %q", got)
	}
}

// TestVectoredIO: WritevAt and ReadvAt do what WriteAt and ReadAt do, over
// data, zero, unallocated and backing-file clusters, on a file (preadv
// and pwritev) and on a store without vectored calls; at the end of the
// disk ReadvAt returns io.EOF with the bytes that exist.
func TestVectoredIO(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts CreateOptions
		mem  bool
	}{
		{"default", CreateOptions{}, false},
		{"c4k", CreateOptions{ClusterSize: 4096}, false},
		{"extl2", CreateOptions{ExtendedL2: true}, false},
		{"memory store", CreateOptions{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			base := filepath.Join(dir, "base.raw")
			const size = 12 << 20
			want := writeRawImage(t, base, 8<<20, 9)
			want = append(want, make([]byte, size-len(want))...)
			o := tc.opts
			o.Size = size
			o.BackingFile = base
			o.BackingFormat = "raw"
			q := filepath.Join(dir, "top.qcow2")
			if err := Create(q, o); err != nil {
				t.Fatal(err)
			}
			var opts Options
			if tc.mem {
				data, err := os.ReadFile(q)
				if err != nil {
					t.Fatal(err)
				}
				opts.Storage = &memStorage{data: data}
			}
			img, err := Open(q, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if _, ok := img.f.(vectorReader); ok == tc.mem {
				t.Fatalf("store %T: vectored %v", img.f, ok)
			}
			r := rand.New(rand.NewSource(5))
			for i := 0; i < 60; i++ {
				n := int64(r.Intn(2<<20) + 1)
				off := r.Int63n(size - n + 1)
				switch r.Intn(5) {
				case 0:
					if err := img.WriteZeroes(off, n, r.Intn(2) == 0); err != nil {
						t.Fatal(err)
					}
					clear(want[off : off+n])
				default:
					p := make([]byte, n)
					fillPattern(p, r.Int63())
					got, err := img.WritevAt(splitRandom(p, r), off)
					if err != nil || int64(got) != n {
						t.Fatalf("WritevAt %#x+%d: %d, %v", off, n, got, err)
					}
					copy(want[off:], p)
				}
			}
			sameBytes(t, "ReadAt after WritevAt", readAll(t, img, size), want)
			sameBytes(t, "ReadvAt", readAllVec(t, img, 6), want)
			// Across the end of the disk.
			tail := make([]byte, 3000)
			n, err := img.ReadvAt(splitRandom(tail, r), size-1000)
			if n != 1000 || err != io.EOF || !bytes.Equal(tail[:1000], want[size-1000:]) {
				t.Fatalf("ReadvAt across the end: %d, %v", n, err)
			}
			if _, err := img.WritevAt([][]byte{make([]byte, 10)}, size-5); err == nil {
				t.Fatal("WritevAt past the end succeeded")
			}
		})
	}
}
