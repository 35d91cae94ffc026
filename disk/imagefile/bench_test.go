package imagefile

import (
	"os"
	"testing"
)

// BenchmarkOpen measures opening and closing an image file with each
// access: the difference to Unlocked is what locking adds to every disk a
// VMM opens (a writer of a free image: 4 lock calls for its own bytes, 1
// test of everyone else's, 2 unlocks on close).
func BenchmarkOpen(b *testing.B) {
	path := b.TempDir() + "/disk.img"
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		a    Access
	}{{"unlocked", Unlocked}, {"read", Read}, {"read-shared", ReadShared}, {"write", Write}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				f, err := Open(path, tc.a)
				if err != nil {
					b.Fatal(err)
				}
				Close(f)
			}
		})
	}
}
