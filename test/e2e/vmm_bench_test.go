package e2e

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/internal/testguest"
)

// The VMM benchmarks run the real binary with tiny guests on this host's
// /dev/kvm, side by side with QEMU (microvm, direct PVH kernel boot) on
// the same guest in the same run.

// benchRuns is how many starts each side gets; medians are reported.
const benchRuns = 25

// benchMemory is the guest RAM of the benchmark VMs.
const benchMemoryMiB = 256

// vmmSide is one VMM under benchmark: how to start it on a guest ELF.
type vmmSide struct {
	name string
	cmd  func(elf string) *exec.Cmd
}

func benchSides(b *testing.B, e *managedEnv) []vmmSide {
	sides := []vmmSide{{
		name: "paddock",
		cmd: func(elf string) *exec.Cmd {
			y := filepath.Join(e.dir, filepath.Base(elf)+".yaml")
			spec := fmt.Sprintf("name: bench\ncpus: 1\nmemory: %dMiB\nkernel: %s\nconsole: stdio\n", benchMemoryMiB, elf)
			if err := os.WriteFile(y, []byte(spec), 0o644); err != nil {
				b.Fatal(err)
			}
			return exec.Command(e.bin, "run", "-f", y)
		},
	}}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		b.Logf("qemu-system-x86_64 not installed: no peer figures")
		return sides
	}
	return append(sides, vmmSide{
		name: "qemu",
		cmd: func(elf string) *exec.Cmd {
			return exec.Command("qemu-system-x86_64", "-enable-kvm", "-M", "microvm,x-option-roms=off", "-bios", "qboot.rom",
				"-m", strconv.Itoa(benchMemoryMiB), "-nodefaults", "-no-user-config", "-display", "none",
				"-serial", "stdio", "-no-reboot", "-kernel", elf)
		},
	})
}

// startToFirstByte execs cmd and returns the time until the guest's first
// console byte reaches its stdout; the process is left running, with its
// stdout drained, for the caller to inspect and stop.
func startToFirstByte(b *testing.B, cmd *exec.Cmd) (time.Duration, func()) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdin = nil
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	r := bufio.NewReader(out)
	if _, err := r.ReadByte(); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		b.Fatalf("%s: no console byte: %v", cmd.Path, err)
	}
	d := time.Since(t0)
	go io.Copy(io.Discard, r)
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	return d, stop
}

// median returns the middle of xs (the upper middle for an even count).
func median[T cmp.Ordered](xs []T) T {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}

// BenchmarkVMMStart: exec of the VMM to the guest's first instruction (its
// first OUT to the serial port reaching the VMM's stdout), median of
// benchRuns starts. Its target is in docs/architecture.md.
func BenchmarkVMMStart(b *testing.B) {
	e := newManagedEnv(b)
	elf := testguest.Build(b, "first")
	for i := 0; i < b.N; i++ {
		res := map[string]time.Duration{}
		for _, s := range benchSides(b, e) {
			var ds []time.Duration
			for j := 0; j < benchRuns; j++ {
				d, stop := startToFirstByte(b, s.cmd(elf))
				stop()
				ds = append(ds, d)
			}
			res[s.name] = median(ds)
			b.ReportMetric(float64(res[s.name].Microseconds())/1000, s.name+"-ms")
		}
		if q, ok := res["qemu"]; ok {
			b.ReportMetric(float64(res["paddock"])/float64(q), "paddock/qemu")
		}
	}
}

// BenchmarkVMMMemory: the VMM's resident memory minus the guest RAM the
// guest touched, sampled while an idle guest halts. Its target is in
// docs/architecture.md.
func BenchmarkVMMMemory(b *testing.B) {
	e := newManagedEnv(b)
	elf := testguest.Build(b, "idle")
	for i := 0; i < b.N; i++ {
		for _, s := range benchSides(b, e) {
			var overheads []float64
			for j := 0; j < 5; j++ {
				cmd := s.cmd(elf)
				_, stop := startToFirstByte(b, cmd)
				total, guest, err := vmmRSS(cmd.Process.Pid, benchMemoryMiB<<20)
				stop()
				if err != nil {
					b.Fatal(err)
				}
				overheads = append(overheads, float64(total-guest)/(1<<20))
			}
			b.ReportMetric(median(overheads), s.name+"-MiB")
		}
	}
}

// vmmRSS reads a process's resident memory and the part of it that is
// guest RAM: the anonymous mappings at least as large as the guest's
// memory (QEMU adds alignment around its RAM block).
func vmmRSS(pid int, guestBytes uint64) (total, guest uint64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var size uint64
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && strings.HasSuffix(fields[0], ":") && len(fields) == 3 && fields[2] == "kB" {
			v, _ := strconv.ParseUint(fields[1], 10, 64)
			switch fields[0] {
			case "Size:":
				size = v << 10
			case "Rss:":
				total += v << 10
				if size >= guestBytes {
					guest += v << 10
				}
			}
		}
	}
	return total, guest, sc.Err()
}
