package machine

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"
)

// firstIn answers the inloop guest's reads and notes when the first one
// arrives.
type firstIn struct {
	at   time.Time
	done chan struct{}
}

func (d *firstIn) ReadPort(port uint16, data []byte) {
	if d.at.IsZero() {
		d.at = time.Now()
		close(d.done)
	}
}

func (d *firstIn) WritePort(port uint16, data []byte) {}

// savedInloop boots the inloop guest with memory bytes of RAM, pauses it
// on one of its IN exits and saves it into dir.
func savedInloop(b *testing.B, memory uint64, dir string) (Config, *State) {
	b.Helper()
	cfg := Config{KVM: testKVM(b), CPUs: 1, Memory: memory}
	m, err := New(cfg, BootConfig{Kernel: guestKernel(b, "inloop", nil)})
	if err != nil {
		b.Fatal(err)
	}
	dev := &inPort{m: m, pauseAt: 3}
	if err := m.ports.register(0x510, 4, dev); err != nil {
		b.Fatal(err)
	}
	run := runMachine(b, m)
	waitParked(b, m, 1)
	st := pauseSave(b, m, run, dir)
	return cfg, st
}

// BenchmarkRestoreToRunning restores a saved 1 GiB and 8 GiB guest into
// a new machine and times Restore (KVM VM, memory file mapped, every
// vCPU and device state loaded, disks reverted) up to the guest's first
// instruction after the restore (its next port access). The memory file
// is mapped MAP_PRIVATE, so the time does not grow with the RAM.
// Target (docs/architecture.md): at most 10 ms, whatever the RAM size.
//
//	go test -run '^$' -bench RestoreToRunning -benchtime 20x ./hypervisor/machine
func BenchmarkRestoreToRunning(b *testing.B) {
	requireKVM(b)
	for _, memory := range []uint64{1 << 30, 8 << 30} {
		b.Run(fmt.Sprintf("memory=%dGiB", memory>>30), func(b *testing.B) {
			dir := b.TempDir()
			cfg, st := savedInloop(b, memory, dir)
			var times []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f, err := os.Open(filepath.Join(dir, "memory"))
				if err != nil {
					b.Fatal(err)
				}
				dev := &firstIn{done: make(chan struct{})}
				start := time.Now()
				m, err := Restore(cfg, st, f)
				if err != nil {
					b.Fatal(err)
				}
				if err := m.ports.register(0x510, 4, dev); err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				ran := make(chan struct{})
				go func() {
					defer close(ran)
					m.Run(ctx)
				}()
				<-dev.done
				times = append(times, dev.at.Sub(start))
				b.StopTimer()
				cancel()
				<-ran
				m.Close()
				b.StartTimer()
			}
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms-median")
			b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "ms-max")
		})
	}
}

// BenchmarkSnapshotCreate saves a 4 GiB guest whose memory has 200 MiB
// of data (written by the VMM into guest RAM, as the guest's own writes
// would land): the memory file must hold about that much, not 4 GiB. It
// reports the time Save takes (state, memory, fsync) and what the file
// takes on disk.
//
//	go test -run '^$' -bench SnapshotCreate -benchtime 3x ./hypervisor/machine
func BenchmarkSnapshotCreate(b *testing.B) {
	requireKVM(b)
	for _, touched := range []uint64{0, 200 << 20} {
		b.Run(fmt.Sprintf("memory=4GiB/touched=%dMiB", touched>>20), func(b *testing.B) {
			cfg := Config{KVM: testKVM(b), CPUs: 1, Memory: 4 << 30}
			m, err := New(cfg, BootConfig{Kernel: guestKernel(b, "cpl3count", nil)})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			if err := m.Hold(); err != nil {
				b.Fatal(err)
			}
			if touched > 0 {
				data, err := m.Memory().Slice(64<<20, touched)
				if err != nil {
					b.Fatal(err)
				}
				rand.Read(data)
			}
			dir := b.TempDir()
			var total time.Duration
			var onDisk, written int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f, err := os.Create(filepath.Join(dir, fmt.Sprintf("memory%d", i)))
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				res, err := m.Save(SaveOptions{Memory: f})
				if err == nil {
					err = f.Sync()
				}
				total += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				var st syscall.Stat_t
				if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
					b.Fatal(err)
				}
				onDisk, written = st.Blocks*512, res.Memory.Written
				f.Close()
				b.StopTimer()
				os.Remove(f.Name())
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/save")
			b.ReportMetric(float64(written)/(1<<20), "MiB-written")
			b.ReportMetric(float64(onDisk)/(1<<20), "MiB-on-disk")
		})
	}
}
