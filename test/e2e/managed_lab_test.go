package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/images"
	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/images/hello"
	"github.com/paddock-vm/paddock/images/initramfs"
	"github.com/paddock-vm/paddock/images/kmod"
	"github.com/paddock-vm/paddock/internal/testguest"
	"github.com/paddock-vm/paddock/test/lab"
)

// managedLabInitrd is the hello guest with the power button drivers, so
// that it powers off on the ACPI power button (busybox acpid).
const managedLabInitrd = "/guest/hello-acpi.img"

// managedLabVM is the VM the lab scenario manages: the stock Debian
// kernel booted through PVH, the hello guest's interactive shell on its
// console, console to the log only.
const managedLabVM = `name: web
cpus: 1
memory: 512MiB
kernel: ` + lab.GuestVmlinux + `
initrd: ` + managedLabInitrd + `
cmdline: console=ttyS0 quiet
console: log
labels: {lab: managed}
`

// stateOf is sh that prints a VM's state from paddock ls --json.
const stateOf = `paddock ls --json | sed -n 's/^ *"state": "\([a-z]*\)".*/\1/p'`

// The scenario's steps. Each prints "@@LAB managed.KEY VALUE" markers the
// test checks; waits are on the console stream (paddock logs -f into a
// FIFO read by grep -m1), never on sleeps.
const (
	managedUpStep = `
paddock up -f /guest/web.yaml
echo "@@LAB managed.up-rc $?"
echo "@@LAB managed.up-state $(` + stateOf + `)"
mkfifo /tmp/log
paddock logs -f web > /tmp/log &
lp=$!
grep -m1 -q "Type 'poweroff'" < /tmp/log
echo "@@LAB managed.shell $?"
kill $lp
paddock ls
`
	managedConsoleStep = `
mkfifo /tmp/in /tmp/log2
paddock console web < /tmp/in > /tmp/console.out 2> /tmp/console.err &
cp=$!
exec 3> /tmp/in
paddock logs -f web > /tmp/log2 &
lp=$!
echo 'echo "@@LAB managed.console-echo $((6*7))"' >&3
grep -m1 -o '@@LAB managed.console-echo [0-9][0-9]*' < /tmp/log2
kill $lp
kill -TERM $cp
wait $cp
echo "@@LAB managed.detach-rc $?"
exec 3>&-
echo "@@LAB managed.console-saw $(grep -c 'managed.console-echo 42' /tmp/console.out)"
echo "@@LAB managed.detach-message $(tr -d '\r' < /tmp/console.err | grep -o 'detached from web.*')"
echo "@@LAB managed.after-detach $(` + stateOf + `)"
`
	managedStopStep = `
paddock stop web --timeout 2m > /tmp/stop.out
echo "@@LAB managed.stop-rc $?"
cat /tmp/stop.out
echo "@@LAB managed.stop-how $(paddock inspect web | sed -n 's/^ *"how": "\([a-z]*\)".*/\1/p')"
echo "@@LAB managed.stopped $(` + stateOf + `)"
echo "@@LAB managed.handler $(paddock logs web | grep -c 'ACPI power button pressed')"
paddock rm web
echo "@@LAB managed.rm-rc $?"
echo "@@LAB managed.left $(paddock ls -q | wc -l)"
`
)

// TestManagedLab runs a stock Debian guest as a managed VM in the nested
// lab: started detached, its console attached and detached while it keeps
// running, and stopped through the ACPI power button within the timeout;
// then a guest that triple-faults on purpose, whose shutdown L1 counts.
// One L1 boot runs every step.
func TestManagedLab(t *testing.T) {
	l := lab.New(t)
	ctx := context.Background()
	im, err := l.Image(ctx)
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := powerButtonInitrd(ctx, im)
	if err != nil {
		t.Fatal(err)
	}
	// A guest that triple-faults on purpose: the lab counts its shutdown
	// (lab.StepResult.L2Shutdowns).
	reset, err := testguest.BuildIn(t.TempDir(), "reset", nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := lab.Scenario{
		WithPaddock: true,
		WithVmlinux: true,
		Files: map[string]lab.File{
			managedLabInitrd:  {Source: initrd},
			"/guest/web.yaml": {Data: []byte(managedLabVM)},
			"/guest/reset":    {Source: reset},
			"/guest/tf.yaml":  {Data: []byte("name: tf\nmemory: 64MiB\nkernel: /guest/reset\nconsole: stdio\n")},
		},
		Steps: []lab.Step{
			{Name: "managed/up", Script: managedUpStep, Timeout: 5 * time.Minute, RetryFaults: true},
			{Name: "managed/console", Script: managedConsoleStep, Timeout: 3 * time.Minute, RetryFaults: true},
			{Name: "managed/stop", Script: managedStopStep, Timeout: 4 * time.Minute, RetryFaults: true},
			{Name: "managed/triplefault", Script: "paddock run -f /guest/tf.yaml > /dev/null 2>&1\necho \"@@LAB managed.tf-rc $?\"\n", Timeout: time.Minute},
		},
	}
	res, err := l.Run(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	up := managedStep(t, res, "managed/up")
	expectMarker(t, up, "managed.up-rc", "0")
	expectMarker(t, up, "managed.up-state", "running")
	expectMarker(t, up, "managed.shell", "0")

	con := managedStep(t, res, "managed/console")
	expectMarker(t, con, "managed.console-echo", "42")
	expectMarker(t, con, "managed.detach-rc", "0")
	expectMarker(t, con, "managed.console-saw", "1")
	expectMarker(t, con, "managed.detach-message", "detached from web (terminated); it keeps running")
	expectMarker(t, con, "managed.after-detach", "running")

	stop := managedStep(t, res, "managed/stop")
	expectMarker(t, stop, "managed.stop-rc", "0")
	expectMarker(t, stop, "managed.stop-how", "acpi")
	expectMarker(t, stop, "managed.stopped", "stopped")
	expectMarker(t, stop, "managed.handler", "1")
	expectMarker(t, stop, "managed.rm-rc", "0")
	expectMarker(t, stop, "managed.left", "0")
	if d := stop.End - stop.Begin; d > 0 {
		t.Logf("the stop step (ACPI shutdown of the stock guest, then rm) took %.1fs of L1 wall time", d.Seconds())
	}

	// paddock run ends with the reboot status (3) on the triple fault,
	// and L1 counted the one shutdown.
	tf := managedStep(t, res, "managed/triplefault")
	expectMarker(t, tf, "managed.tf-rc", "3")
	if tf.L2Shutdowns != 1 {
		t.Errorf("L1 counted %d L2 shutdowns in the triple-fault step, want 1 (-1: it could not count them)", tf.L2Shutdowns)
	}
}

// powerButtonInitrd builds the hello initramfs with the power button
// modules of the lab's guest kernel.
func powerButtonInitrd(ctx context.Context, im *lab.Image) (string, error) {
	return helloInitrd(ctx, im, "hello-acpi", hello.PowerButtonModules, nil)
}

// helloInitrd builds (into the cache, as name) the hello initramfs with
// the given modules of the lab's guest kernel, and their dependencies,
// and the given built-in scripts (name -> sh source).
func helloInitrd(ctx context.Context, im *lab.Image, name string, modules []string, scripts map[string]string) (string, error) {
	k := im.Guest.Kernel
	ix, err := kmod.Open(k.ModulesDir)
	if err != nil {
		return "", err
	}
	mods, err := ix.Resolve(ctx, modules...)
	if err != nil {
		return "", err
	}
	var paths []string
	for _, m := range mods {
		paths = append(paths, m.Path)
	}
	spec, err := hello.Spec(hello.Options{
		Busybox: im.Guest.Busybox,
		Modules: &initramfs.Modules{Dir: k.ModulesDir, Release: k.Release, Paths: paths},
		Scripts: scripts,
	})
	if err != nil {
		return "", err
	}
	c, err := cache.Default()
	if err != nil {
		return "", err
	}
	return images.CachedInitramfs(ctx, c, name, spec)
}

// managedStep returns a step that finished with status 0.
func managedStep(t *testing.T, res *lab.Result, name string) *lab.StepResult {
	t.Helper()
	st, ok := res.Step(name)
	if !ok || !st.Done {
		t.Fatalf("step %s did not finish", name)
	}
	if st.RC != 0 {
		t.Errorf("step %s exited %d", name, st.RC)
	}
	return st
}

// expectMarker checks a step's marker value.
func expectMarker(t *testing.T, st *lab.StepResult, key, want string) {
	t.Helper()
	m, ok := st.Marker(key)
	if !ok {
		t.Errorf("step %s printed no %s", st.Name, key)
		return
	}
	if got := strings.TrimSpace(m.Value); got != want {
		t.Errorf("step %s: %s = %q, want %q", st.Name, key, got, want)
	}
}
