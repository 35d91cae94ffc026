package blk

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
)

// FuzzRequest feeds arbitrary request headers, payloads (discard and
// write-zeroes segments included) and buffer layouts to the request
// handler over a real raw image: every request gets a status, and the
// handler never panics or touches bytes outside the chain's buffers.
func FuzzRequest(f *testing.F) {
	seg := func(sector uint64, n, flags uint32) []byte {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint64(b, sector)
		binary.LittleEndian.PutUint32(b[8:], n)
		binary.LittleEndian.PutUint32(b[12:], flags)
		return b
	}
	hdr := func(typ uint32, sector uint64) []byte {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint32(b, typ)
		binary.LittleEndian.PutUint64(b[8:], sector)
		return b
	}
	f.Add(hdr(typeIn, 3), uint16(512), uint16(1), uint8(1))
	f.Add(append(hdr(typeOut, 7), make([]byte, 1024)...), uint16(0), uint16(1), uint8(3))
	f.Add(append(hdr(typeDiscard, 0), seg(0, 8, 0)...), uint16(0), uint16(1), uint8(1))
	f.Add(append(hdr(typeWriteZeroes, 0), append(seg(8, 16, 1), seg(1<<40, 1, 0)...)...), uint16(0), uint16(1), uint8(2))
	f.Add(hdr(typeGetID, 0), uint16(20), uint16(1), uint8(1))
	f.Add([]byte{1, 2, 3}, uint16(7), uint16(0), uint8(0))
	path := filepath.Join(f.TempDir(), "fuzz.raw")
	if err := disk.CreateRaw(path, 64<<10); err != nil {
		f.Fatal(err)
	}
	img, err := disk.Open(path, disk.Options{Format: disk.FormatRaw})
	if err != nil {
		f.Fatal(err)
	}
	defer img.Close()
	d, err := New(Config{Image: img, Serial: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, readable []byte, inLen, statusLen uint16, pieces uint8) {
		// The readable bytes are split into up to pieces buffers, as a
		// driver might scatter them; the writable side is inLen bytes
		// of data room and statusLen more.
		var rd, wr [][]byte
		n := int(pieces%8) + 1
		for i := 0; i < n; i++ {
			lo, hi := len(readable)*i/n, len(readable)*(i+1)/n
			if hi > lo {
				rd = append(rd, readable[lo:hi])
			}
		}
		writable := make([]byte, int(inLen%8192)+int(statusLen%4))
		guard := make([]byte, len(writable)+64)
		copy(guard, writable)
		region := guard[:len(writable)]
		if len(region) > 0 {
			half := len(region) / 2
			wr = append(wr, region[:half], region[half:])
		}
		written, err := d.handle(virtio.NewChain(1, rd, wr))
		if len(region) == 0 {
			if err == nil {
				t.Fatal("a chain without a status byte was accepted")
			}
			return
		}
		if err != nil {
			t.Fatalf("handle: %v", err)
		}
		if written < 1 || uint64(written) > uint64(len(region)) {
			t.Fatalf("used length %d for %d writable bytes", written, len(region))
		}
		if st := region[len(region)-1]; st > statusUnsupp {
			t.Fatalf("status %d", st)
		}
		for _, b := range guard[len(region):] {
			if b != 0 {
				t.Fatal("the handler wrote past the chain's buffers")
			}
		}
	})
}
