package e2e

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/guest/jail"
)

// managedBenchRuns is how many timed runs one benchmark iteration makes;
// the benchmarks report the median (and the 90th percentile) of all runs,
// since `make bench` runs each benchmark once (-benchtime 1x).
const managedBenchRuns = 31

// reportMedian reports the median and 90th percentile of samples, in ms.
func reportMedian(b *testing.B, samples []time.Duration) {
	slices.Sort(samples)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(samples[len(samples)/2]), "median-ms")
	b.ReportMetric(ms(samples[len(samples)*9/10]), "p90-ms")
	b.ReportMetric(0, "ns/op") // the loop's own time means nothing here
}

// BenchmarkManagedStart measures `paddock start` of a tiny-guest VM, from
// exec to the command's return, which is when the VMM reports the guest
// running (machine built, vCPUs about to enter the guest). The VM is
// killed between runs (untimed).
//
// As root it runs twice: jailed (the default) and with PADDOCK_NO_JAIL=1,
// and reports the VMM's memory once started: resident (VmRSS) and
// proportional (Pss, shared pages divided among their users), both of
// which include the guest RAM the tiny guest touched.
func BenchmarkManagedStart(b *testing.B) {
	for _, mode := range []string{"jail", "nojail"} {
		b.Run(mode, func(b *testing.B) {
			if mode == "nojail" {
				b.Setenv(jail.NoJailEnv, "1")
			}
			e := newManagedEnv(b)
			e.ok("create", "-f", e.guestVM("bench", "counter", ""))
			var samples []time.Duration
			var rss, pss int
			for b.Loop() {
				for i := 0; i < managedBenchRuns; i++ {
					start := time.Now()
					e.ok("start", "bench")
					samples = append(samples, time.Since(start))
					pid := e.ls()["bench"].PID
					rss, pss = procKiB(pid, "status", "VmRSS:"), procKiB(pid, "smaps_rollup", "Pss:")
					e.ok("kill", "bench")
				}
			}
			reportMedian(b, samples)
			b.ReportMetric(float64(rss), "VmRSS-KiB")
			b.ReportMetric(float64(pss), "Pss-KiB")
		})
	}
}

// procKiB is the value, in KiB, of the line starting with key in
// /proc/PID/file (0 if unknown).
func procKiB(pid int, file, key string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// BenchmarkManagedLs50 measures `paddock ls` (exec to exit) with 50 VMs
// defined, 5 of them running.
func BenchmarkManagedLs50(b *testing.B) {
	e := newManagedEnv(b)
	f := e.guestVM("vm", "counter", "")
	for i := 0; i < 50; i++ {
		e.ok("create", "-f", f, "--name", fmt.Sprintf("vm-%02d", i))
	}
	for i := 0; i < 5; i++ {
		e.ok("start", fmt.Sprintf("vm-%02d", i*10))
	}
	var samples []time.Duration
	for b.Loop() {
		for i := 0; i < managedBenchRuns; i++ {
			start := time.Now()
			e.ok("ls")
			samples = append(samples, time.Since(start))
		}
	}
	reportMedian(b, samples)
}
