package e2e

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	lv "github.com/paddock-vm/paddock/guest/libvirt"
	"github.com/paddock-vm/paddock/guest/libvirt/libvirttest"
)

// libvirtBenchRuns is how many timed runs of each verb one iteration of
// BenchmarkLibvirtVerbs makes, for paddock and for virsh each.
const libvirtBenchRuns = 11

// ms is a duration in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkLibvirtVerbs measures each lifecycle verb of a libvirt VM
// through paddock's binary (exec to exit) beside the same operation
// through virsh on the same domain of this test's libvirtd, alternating
// the two, and reports per verb the medians paddock-ms and virsh-ms,
// their difference (overhead-ms), and calls-ms: the libvirt calls the
// verb makes (connect, find the domain and check it is paddock's, its
// state, the operation), made from this process. paddock-ms minus
// calls-ms is what paddock adds: its process, the state directory, the
// output. start and kill spawn and end QEMU (TCG); the guest is not
// waited for.
//
//	go test ./test/e2e -run '^$' -bench LibvirtVerbs -benchtime 1x
func BenchmarkLibvirtVerbs(b *testing.B) {
	d := libvirttest.Shared(b)
	virsh, err := exec.LookPath("virsh")
	if err != nil {
		b.Fatalf("virsh is not installed (Debian package libvirt-clients)")
	}
	e := newEnv(b)
	e.ok("host", "add", "local", d.URI)
	e.ok("create", "-f", e.libvirtVM("web", ""))
	vsh := func(args ...string) []string { return append([]string{virsh, "-c", d.URI}, args...) }
	pad := func(args ...string) []string { return append([]string{e.bin}, args...) }
	// Each verb: the two commands, and what to do (untimed) before each run
	// so that the verb can run.
	type verb struct {
		name           string
		paddock, virsh []string
		before         func()
		// op is the verb's libvirt operation, for calls-ms (nil: none
		// beyond the lookup and state).
		op func(*lv.Dom) error
	}
	running := func() {
		if out, _, _ := e.paddock("ls", "--json"); !strings.Contains(out, `"state": "running"`) && !strings.Contains(out, `"state": "paused"`) {
			e.ok("start", "web")
		}
	}
	stopped := func() {
		if out, _, _ := e.paddock("ls", "--json"); strings.Contains(out, `"state": "running"`) || strings.Contains(out, `"state": "paused"`) {
			e.ok("kill", "web")
		}
	}
	verbs := []verb{
		{"start", pad("start", "web"), vsh("start", "web"), stopped, (*lv.Dom).Start},
		{"pause", pad("pause", "web"), vsh("suspend", "web"), func() { running(); e.paddock("resume", "web") }, (*lv.Dom).Suspend},
		{"resume", pad("resume", "web"), vsh("resume", "web"), func() { running(); e.paddock("pause", "web") }, (*lv.Dom).Resume},
		{"kill", pad("kill", "web"), vsh("destroy", "web"), running, (*lv.Dom).Destroy},
		{"ls", pad("ls"), vsh("list", "--all"), func() {}, nil},
		{"inspect", pad("inspect", "web"), vsh("dominfo", "web"), func() {}, nil},
	}
	var info struct {
		UUID string `json:"uuid"`
	}
	if err := json.Unmarshal([]byte(e.ok("inspect", "web")), &info); err != nil {
		b.Fatal(err)
	}
	// calls makes the verb's libvirt calls from this process.
	calls := func(v verb) time.Duration {
		start := time.Now()
		c, err := lv.Connect(d.Host("local"))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		dom, err := c.Domain("web", info.UUID)
		if err == nil {
			_, err = dom.State()
		}
		if err == nil && v.op != nil {
			err = v.op(dom)
		}
		if err != nil {
			b.Fatalf("%s: %v", v.name, err)
		}
		return time.Since(start)
	}
	cmd := e.command() // for its environment ($PADDOCK_HOME)
	for b.Loop() {
		for _, v := range verbs {
			var ps, vs, cs []time.Duration
			for i := 0; i < libvirtBenchRuns; i++ {
				v.before()
				cs = append(cs, calls(v))
				for _, who := range []string{"paddock", "virsh"} {
					v.before()
					argv := v.virsh
					if who == "paddock" {
						argv = v.paddock
					}
					c := exec.Command(argv[0], argv[1:]...)
					c.Env, c.Dir = cmd.Env, cmd.Dir
					start := time.Now()
					if out, err := c.CombinedOutput(); err != nil {
						b.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
					}
					took := time.Since(start)
					if who == "paddock" {
						ps = append(ps, took)
					} else {
						vs = append(vs, took)
					}
				}
			}
			p, q := ms(median(ps)), ms(median(vs))
			b.ReportMetric(p, v.name+"-paddock-ms")
			b.ReportMetric(q, v.name+"-virsh-ms")
			b.ReportMetric(p-q, v.name+"-overhead-ms")
			b.ReportMetric(ms(median(cs)), v.name+"-calls-ms")
		}
	}
	b.ReportMetric(0, "ns/op")
	e.ok("rm", "--force", "web")
}

// BenchmarkLibvirtUpToMarker measures `paddock up` of the Debian hello
// guest as a libvirt VM (TCG) to its console marker: from exec'ing up to
// the marker on the console (paddock console, attached right after up),
// the up command alone (create: host capabilities, pool, uploads reused
// after the first run, define; start), to /init's first line
// (up-to-init-s, the lab's marker), and the guest kernel's uptime at
// /init as it prints it. The native
// backend's figure for the same guest comes from the nested lab
// (test/lab BenchmarkBootToInit); docs/libvirt.md puts the two side by
// side.
//
//	go test ./test/e2e -run '^$' -bench LibvirtUpToMarker -benchtime 1x
func BenchmarkLibvirtUpToMarker(b *testing.B) {
	d := libvirttest.Shared(b)
	e := newEnv(b)
	e.ok("host", "add", "local", d.URI)
	yaml := e.libvirtVM("web", "")
	const runs = 3
	var walls, ups, inits []time.Duration
	var uptimes []float64
	for b.Loop() {
		for i := 0; i < runs; i++ {
			start := time.Now()
			e.ok("up", "-f", yaml)
			ups = append(ups, time.Since(start))
			con := e.command("console", "web", "--tail", "100")
			out, err := con.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			in, _ := con.StdinPipe()
			if err := con.Start(); err != nil {
				b.Fatal(err)
			}
			sc := bufio.NewScanner(out)
			found := false
			for sc.Scan() {
				line := sc.Text()
				if up, ok := strings.CutPrefix(strings.TrimSpace(line), "@@LAB l2.init "); ok {
					inits = append(inits, time.Since(start))
					if f, err := strconv.ParseFloat(up, 64); err == nil {
						uptimes = append(uptimes, f)
					}
				}
				if strings.Contains(line, libvirttest.GuestMarker) {
					walls = append(walls, time.Since(start))
					found = true
					break
				}
			}
			in.Close()
			con.Process.Kill()
			con.Wait()
			if !found {
				b.Fatalf("the console ended before %q", libvirttest.GuestMarker)
			}
			e.ok("rm", "--force", "web")
		}
	}
	b.ReportMetric(median(walls).Seconds(), "up-to-marker-s")
	b.ReportMetric(median(ups).Seconds(), "up-command-s")
	if len(inits) > 0 {
		// The lab's BenchmarkBootToInit times the native backend to this
		// same marker (vmm.exec to l2.init).
		b.ReportMetric(median(inits).Seconds(), "up-to-init-s")
	}
	if len(uptimes) > 0 {
		b.ReportMetric(median(uptimes), "guest-uptime-at-init-s")
	}
	b.ReportMetric(0, "ns/op")
}
