package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// EnvVMMs selects the VMMs BenchmarkBootToInit compares, comma-separated
// ("qemu,paddock"); by default QEMU, plus paddock once its binary has a
// `run` command.
const EnvVMMs = "PADDOCK_LAB_VMMS"

// benchVMMs returns the VMMs to compare.
func benchVMMs(b *testing.B) []VMM {
	all := map[string]VMM{"qemu": QEMU{}, "paddock": Paddock{}}
	names := os.Getenv(EnvVMMs)
	if names == "" {
		names = "qemu"
		if paddockCanRun(b) {
			names += ",paddock"
		} else {
			b.Logf("paddock has no `run` command yet: comparing QEMU only (set %s=qemu,paddock to force)", EnvVMMs)
		}
	}
	var vmms []VMM
	for _, n := range strings.Split(names, ",") {
		v, ok := all[strings.TrimSpace(n)]
		if !ok {
			b.Fatalf("%s: unknown VMM %q (have qemu, paddock)", EnvVMMs, n)
		}
		vmms = append(vmms, v)
	}
	return vmms
}

// paddockCanRun builds paddock and asks it for `run --help`.
func paddockCanRun(b *testing.B) bool {
	bin := os.Getenv(EnvPaddock)
	if bin == "" {
		bin = filepath.Join(b.TempDir(), "paddock")
		if err := BuildPaddock(context.Background(), bin); err != nil {
			b.Logf("%v", err)
			return false
		}
	}
	return exec.Command(bin, "run", "--help").Run() == nil
}

// benchScenario returns the scenario that boots every guest with every
// VMM (BootScenario), with the lab image built before the timing starts.
func benchScenario(b *testing.B, l *Lab, vmms []VMM, guests []L2, stepTimeout time.Duration) Scenario {
	sc, err := BootScenario(vmms, guests, stepTimeout)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := l.Image(context.Background()); err != nil {
		b.Fatal(err)
	}
	return sc
}

// BenchmarkBootToInit boots the same stock Debian kernel (bzImage, and ELF
// vmlinux via PVH) with the hello initrd under each VMM, in sequence in ONE
// L1 run, and reports the L1 wall time from exec'ing the VMM to the guest's
// /init marker ("<vmm>-<kernel>-s"), the guest kernel's own uptime at /init
// ("<vmm>-<kernel>-uptime-s"), L1's own boot to /init ("l1-init-s") and,
// when paddock runs, the ratio paddock/QEMU per kernel format. Only ratios
// within one run are meaningful: everything is emulated.
//
//	go test ./test/lab -run '^$' -bench BootToInit -benchtime 1x
func BenchmarkBootToInit(b *testing.B) {
	l := New(b)
	vmms := benchVMMs(b)
	guests := []L2{HelloL2(false, "boot"), HelloL2(true, "boot")}
	// A boot to /init takes seconds; the timeout only bounds a VMM that
	// does not exit when the guest powers off.
	sc := benchScenario(b, l, vmms, guests, 2*time.Minute)
	ctx := context.Background()
	wall := map[string]float64{}
	uptime := map[string]float64{}
	l1 := 0.0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := l.Run(ctx, sc)
		if err != nil {
			b.Fatal(err)
		}
		if m, ok := res.Marker("l1.init"); ok {
			l1 += m.At.Seconds()
		}
		for _, st := range sc.Steps {
			r, _ := res.Step(st.Name)
			if r.RC != 0 {
				b.Errorf("%s: exit status %d (timed out: %v): the VMM did not exit cleanly after the guest powered off", st.Name, r.RC, r.TimedOut)
			}
			d, err := r.Between("vmm.exec", "l2.init")
			if err != nil {
				b.Errorf("%s: %v", st.Name, err)
				continue
			}
			key := strings.ReplaceAll(st.Name, "/", "-")
			wall[key] += d.Seconds()
			if m, ok := r.Marker("l2.init"); ok {
				if up, err := m.Float(); err == nil {
					uptime[key] += up
				}
			}
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(l1/n, "l1-init-s")
	for key, sum := range wall {
		b.ReportMetric(sum/n, key+"-s")
		b.ReportMetric(uptime[key]/n, key+"-uptime-s")
	}
	for _, g := range guests {
		q, p := wall["qemu-"+g.Name], wall["paddock-"+g.Name]
		if q > 0 && p > 0 {
			b.ReportMetric(p/q, "paddock/qemu-"+g.Name)
		}
	}
}

// EnvSMPBoots sets how many times BenchmarkSMPBoot boots each VMM
// (default 10).
const EnvSMPBoots = "PADDOCK_LAB_SMP_BOOTS"

// BenchmarkSMPBoot boots a 2-vCPU hello guest (bzImage and PVH in turn)
// again and again under each VMM, in one L1 run, and reports the share of boots that reached
// /init with both CPUs online ("<vmm>-ok-pct"); each failure's console
// tail is logged. L1's emulated AMD-V (TCG) has flaws of its own: QEMU's
// rate beside paddock's tells an emulator flaw from a paddock bug.
//
//	PADDOCK_LAB_SMP_BOOTS=20 go test ./test/lab -run '^$' -bench SMPBoot -benchtime 1x
func BenchmarkSMPBoot(b *testing.B) {
	l := New(b)
	boots := 10
	if v := os.Getenv(EnvSMPBoots); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive number", EnvSMPBoots, v)
		}
		boots = n
	}
	vmms := benchVMMs(b)
	var guests []L2
	for i := 0; i < boots; i++ {
		g := HelloL2(i%2 == 1, "facts")
		g.Name, g.CPUs = fmt.Sprintf("smp-%s-%d", g.Name, i), 2
		guests = append(guests, g)
	}
	sc := benchScenario(b, l, vmms, guests, 3*time.Minute)
	ctx := context.Background()
	ok := map[string]int{}
	for b.Loop() {
		res, err := l.Run(ctx, sc)
		if err != nil {
			b.Fatal(err)
		}
		for _, st := range sc.Steps {
			r, found := res.Step(st.Name)
			if !found {
				b.Fatalf("step %s did not run; transcript tail:\n%s", st.Name, res.Tail(40))
			}
			nproc, _ := r.Marker("l2.nproc")
			if r.Done && r.RC == 0 && strings.TrimSpace(nproc.Value) == "2" {
				ok[strings.Split(st.Name, "/")[0]]++
				continue
			}
			var tail []string
			for _, ln := range res.Lines {
				if ln.At >= r.Begin && (ln.At <= r.End || !r.Done) {
					tail = append(tail, ln.String())
				}
			}
			b.Logf("%s failed (done %v, exit status %d, nproc %q); console tail:\n%s", st.Name, r.Done, r.RC, nproc.Value, strings.Join(tail[max(0, len(tail)-30):], "\n"))
		}
	}
	for _, v := range vmms {
		b.ReportMetric(100*float64(ok[v.Name()])/float64(boots*b.N), v.Name()+"-ok-pct")
	}
	b.ReportMetric(0, "ns/op")
}
