package guest

import (
	"context"
	"fmt"
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
