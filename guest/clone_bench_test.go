package guest

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// BenchmarkCloneToRunning measures clone to running on this host's KVM
// (docs/cli.md, "Warm clones"): Manager.Clone with Start, as paddock
// clone TEMPLATE NAME [-n N] --start runs it, from the call until every
// clone's VMM has reported its guest running; for a warm template
// (overlays + restore of the template's memory snapshot) and, as the
// peer figure of the same run, a cold template of the same VM (overlays
// + boot). The VM is the ticks guest with 64 MiB of RAM. It reports ms
// per clone for 1 clone and for 20 at once, and the ms of verifying the
// template's checksums, which every clone command does once.
//
//	go test -run '^$' -bench CloneToRunning -benchtime 5x ./guest
func BenchmarkCloneToRunning(b *testing.B) {
	testenv.RequireTool(b, "qemu-img", "qemu-utils")
	testguest.RequireKVM(b)
	m := testManager(b)
	testTemplate(b, m, "tiny", testguest.Build(b, "ticks"), "")
	vm, err := configs.Parse([]byte("name: src\nfrom: tiny\nmemory: 64MiB\nconsole: log\ncloud_init: false\n"), "")
	if err != nil {
		b.Fatal(err)
	}
	vm.FillDefaults()
	if err := vm.Validate(configs.Host{Templates: m.TemplateLookup()}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := m.Create(vm, ""); err != nil {
		b.Fatal(err)
	}
	if _, err := m.CreateTemplateFromVM(ctx, "cold", "src", TemplateFromVMOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := m.Start(ctx, "src"); err != nil {
		b.Fatal(err)
	}
	waitLogTB(b, m, "src", "tick 00000002")
	if _, err := m.CreateTemplateFromVM(ctx, "warm", "src", TemplateFromVMOptions{Memory: true}); err != nil {
		b.Fatal(err)
	}
	if _, err := m.Kill(ctx, "src"); err != nil {
		b.Fatal(err)
	}
	for _, tmpl := range []string{"warm", "cold"} {
		t, err := m.Template(tmpl)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{1, 20} {
			b.Run(fmt.Sprintf("%s/%d", tmpl, n), func(b *testing.B) {
				var total, verify time.Duration
				for range b.N {
					start := time.Now()
					if _, err := t.Verify(nil); err != nil {
						b.Fatal(err)
					}
					verify += time.Since(start)
					total += benchClone(b, m, tmpl, n)
				}
				b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/op")
				b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N*n), "ms/clone")
				b.ReportMetric(float64(verify.Microseconds())/1000/float64(b.N), "verify-ms")
			})
		}
	}
}

// benchClone runs one clone command of n clones (n > 1: -n n) of tmpl
// with --start, and returns how long it took; it removes the clones
// afterwards.
func benchClone(b *testing.B, m *Manager, tmpl string, n int) time.Duration {
	b.Helper()
	ctx := context.Background()
	o := CloneOptions{Start: true}
	if n > 1 {
		o.Numbered, o.Count = true, n
	}
	start := time.Now()
	names, err := m.Clone(ctx, tmpl, "c", o)
	d := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	for _, c := range names {
		if err := m.Remove(ctx, c, true); err != nil {
			b.Fatal(err)
		}
	}
	b.StartTimer()
	return d
}

// EnvCloneBenchCount sets how many clones (and peer VMs or copies)
// BenchmarkCloneMemory and BenchmarkCloneDisk make. Default 100.
const EnvCloneBenchCount = "PADDOCK_CLONE_BENCH_COUNT"

// cloneBenchCount is EnvCloneBenchCount's value, or 100.
func cloneBenchCount(b *testing.B) int {
	v := os.Getenv(EnvCloneBenchCount)
	if v == "" {
		return 100
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxClones {
		b.Fatalf("%s=%q: want 1 to %d", EnvCloneBenchCount, v, MaxClones)
	}
	return n
}

// cloneBenchFill is the end of the warm guest's filled memory in
// BenchmarkCloneMemory: 32 MiB from 16 MiB, in a 64 MiB guest, so that
// its cold peers fit a test host's RAM a hundred times over.
const cloneBenchFill = 0x3000000

// BenchmarkCloneMemory runs N warm clones of a warm template (docs/cli.md,
// "Warm clones"), then, as the peer figure of the same run, N cold
// clones of a cold template of the same VM, which boot, and reports the
// VMM processes' combined PSS (/proc/PID/smaps_rollup) of each, in MiB,
// and the cold figure over the warm one. The guest is the warm test
// guest in 64 MiB, filling 32 MiB: a cold clone fills that memory itself
// (its pass 1); a warm clone is restored after the fill and reads every
// filled page again (its pass 2), so both touch the same memory. N is
// EnvCloneBenchCount (100).
//
//	go test -run '^$' -bench CloneMemory -benchtime 1x ./guest
func BenchmarkCloneMemory(b *testing.B) {
	testguest.RequireKVM(b)
	n := cloneBenchCount(b)
	kernel := testguest.BuildWith(b, "warm", map[string]uint64{"FILL_END": cloneBenchFill})
	m, _, _ := warmTemplateOf(b, kernel, "64MiB", "")
	ctx := context.Background()
	if _, err := m.Kill(ctx, "web"); err != nil {
		b.Fatal(err)
	}
	if _, err := m.CreateTemplateFromVM(ctx, "cold", "web", TemplateFromVMOptions{}); err != nil {
		b.Fatal(err)
	}
	if avail := memAvailable(b); avail < int64(n)*80<<20 {
		b.Fatalf("the host has %d MiB of memory available; %d cold VMs need about %d MiB", avail>>20, n, n*80)
	}
	pssOf := func(tmpl string, pass int) int64 {
		b.Helper()
		names, err := m.Clone(ctx, tmpl, tmpl, CloneOptions{Numbered: true, Count: n, Start: true})
		if err != nil {
			b.Fatal(err)
		}
		defer func() {
			for _, c := range names {
				if err := m.Remove(ctx, c, true); err != nil {
					b.Error(err)
				}
			}
		}()
		var total int64
		for _, c := range names {
			waitPass(b, m, c, pass, 10*time.Minute)
			info, err := m.Inspect(c)
			if err != nil || info.PID == 0 {
				b.Fatalf("clone %s: %+v, %v", c, info, err)
			}
			total += pss(b, info.PID)
		}
		return total
	}
	var warm, cold int64
	for range b.N {
		warm += pssOf("warm", 2)
		cold += pssOf("cold", 1)
	}
	w, c := float64(warm)/float64(b.N)/(1<<20), float64(cold)/float64(b.N)/(1<<20)
	b.ReportMetric(w, "warm-MiB")
	b.ReportMetric(c, "cold-MiB")
	b.ReportMetric(c/w, "cold/warm")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d VMs of a 64 MiB guest that touched 32 MiB: combined PSS %.0f MiB warm (%.1f MiB each), %.0f MiB cold (%.1f MiB each): cold/warm %.2f",
		n, w, w/float64(n), c, c/float64(n), c/w)
}

// BenchmarkCloneDisk makes N clones of a template made from a VM that
// wrote 32 MiB to its disk (paddock clone -n N: one qcow2 overlay each)
// and, as the peer of the same run, N full copies of the template's base
// with qemu-img convert -O qcow2, as a tool that copies disks makes; it
// reports the disk space each takes (allocated blocks, as du counts
// them: the clones' whole directories, the copies' files), in MiB, the
// time each took, and the copies' figures over the clones'. N is
// EnvCloneBenchCount (100).
//
//	go test -run '^$' -bench CloneDisk -benchtime 1x ./guest
func BenchmarkCloneDisk(b *testing.B) {
	testenv.RequireTool(b, "qemu-img", "qemu-utils")
	n := cloneBenchCount(b)
	m := testManager(b)
	testTemplate(b, m, "tiny", testguest.Build(b, "counter"), "")
	if _, err := m.Create(fromVM(b, m, "web", "tiny", ""), ""); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 32<<20)
	for i := range data {
		data[i] = byte(i/4096 + i)
	}
	writeDisk(b, filepath.Join(m.Home(), "vms", "web", "disks", "root.qcow2"), data, 8<<20)
	tmpl, err := m.CreateTemplateFromVM(context.Background(), "web-tpl", "web", TemplateFromVMOptions{})
	if err != nil {
		b.Fatal(err)
	}
	base := tmpl.Path(tmpl.Meta.Disks[0].File)
	copies := b.TempDir()
	var cloneSpace, copySpace int64
	var cloneTime, copyTime time.Duration
	for range b.N {
		start := time.Now()
		names, err := m.Clone(context.Background(), "web-tpl", "c", CloneOptions{Numbered: true, Count: n})
		cloneTime += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range names {
			cloneSpace += allocated(b, filepath.Join(m.Home(), "vms", c))
		}
		start = time.Now()
		for i := range n {
			out := filepath.Join(copies, fmt.Sprintf("copy-%d.qcow2", i))
			if msg, err := exec.Command("qemu-img", "convert", "-U", "-O", "qcow2", base, out).CombinedOutput(); err != nil {
				b.Fatalf("qemu-img convert: %v\n%s", err, msg)
			}
		}
		copyTime += time.Since(start)
		copySpace += allocated(b, copies)
		b.StopTimer()
		for _, c := range names {
			if err := m.Remove(context.Background(), c, false); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.RemoveAll(copies); err != nil {
			b.Fatal(err)
		}
		if err := os.Mkdir(copies, 0o700); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	mib := func(x int64) float64 { return float64(x) / float64(b.N) / (1 << 20) }
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(mib(cloneSpace), "clones-MiB")
	b.ReportMetric(mib(copySpace), "copies-MiB")
	b.ReportMetric(mib(copySpace)/mib(cloneSpace), "copies/clones")
	b.ReportMetric(ms(cloneTime), "clones-ms")
	b.ReportMetric(ms(copyTime), "copies-ms")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d clones of a template whose base holds %.1f MiB: %.1f MiB on disk in %.0f ms (paddock clone -n %d); %d qemu-img convert copies: %.1f MiB in %.0f ms: %.0fx the space, %.1fx the time",
		n, float64(allocated(b, base))/(1<<20), mib(cloneSpace), ms(cloneTime), n, n, mib(copySpace), ms(copyTime), mib(copySpace)/mib(cloneSpace), ms(copyTime)/ms(cloneTime))
}

// allocated is the disk space the files under path take: their
// allocated blocks, as du counts them.
func allocated(b *testing.B, path string) int64 {
	b.Helper()
	var total int64
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		total += st.Blocks * 512
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}
