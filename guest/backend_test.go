package guest

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/api"
	"github.com/paddock-vm/paddock/guest/libvirt/libvirttest"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// backendCase is one backend as the lifecycle table runs it: a Manager,
// a guest that powers off on the ACPI power button, and what the guest
// prints once it runs.
type backendCase struct {
	name string
	// setup returns the Manager and the spec of a VM called name.
	setup func(t *testing.T, name string) (*Manager, *configs.VM)
	// marker is what the guest prints once it runs.
	marker string
	// echo: the guest's console echoes what is typed (a shell), which
	// shows that a paused guest is frozen.
	echo bool
	// timeout bounds each wait for the guest.
	timeout time.Duration
	// gone checks that nothing of the VM is left outside the store after
	// rm.
	gone func(t *testing.T, m *Manager, vm *configs.VM)
}

// backendCases are the backends the lifecycle table runs against:
// paddock's VMM with a tiny guest on this host's /dev/kvm, and libvirt
// (a libvirtd this test process started, TCG) with Debian's kernel and
// the hello initrd.
func backendCases() []backendCase {
	return []backendCase{
		{
			name: "native",
			setup: func(t *testing.T, name string) (*Manager, *configs.VM) {
				return testManager(t), testVM(t, name, "pwrbtn")
			},
			marker:  "armed",
			timeout: time.Minute,
			gone:    func(*testing.T, *Manager, *configs.VM) {},
		},
		{
			name: "libvirt",
			setup: func(t *testing.T, name string) (*Manager, *configs.VM) {
				m, _ := libvirtManager(t)
				return m, libvirtVM(t, name)
			},
			marker:  helloMarker,
			echo:    true,
			timeout: guestTimeout,
			gone: func(t *testing.T, m *Manager, vm *configs.VM) {
				d := libvirttest.Shared(t)
				for _, n := range domainNames(t, d) {
					if n == vm.Name {
						t.Errorf("domain %s is still defined", n)
					}
				}
				if left := poolNames(t, d, "vm-"); len(left) > 0 {
					t.Errorf("volumes left in the pool: %v", left)
				}
			},
		},
	}
}

// TestBackendLifecycle runs one VM through every lifecycle verb on each
// backend: create, start, ls, console attach and detach, logs, pause
// (the guest freezes), resume, stop through ACPI, start, kill, rm; the
// same calls give the same states, results and errors on both.
func TestBackendLifecycle(t *testing.T) {
	for _, bc := range backendCases() {
		t.Run(bc.name, func(t *testing.T) { lifecycle(t, bc) })
	}
}

func lifecycle(t *testing.T, bc backendCase) {
	ctx := context.Background()
	m, vm := bc.setup(t, "web")
	info, err := m.Create(vm, "/some/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if info.State != store.StateCreated || info.Backend != bc.name || info.Source != "/some/web.yaml" {
		t.Errorf("created: %+v", info)
	}
	var se *StateError
	if _, err := m.Pause(ctx, "web"); !errors.As(err, &se) || err.Error() != "cannot pause VM 'web': it is created" {
		t.Errorf("Pause of a created VM: %v", err)
	}
	if info, err = m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if info.State != store.StateRunning || info.StartedAt.IsZero() {
		t.Errorf("started: %+v", info)
	}
	if _, err := m.Start(ctx, "web"); !errors.As(err, &se) || err.Error() != "cannot start VM 'web': it is running" {
		t.Errorf("second Start: %v", err)
	}
	if infos, err := m.List(); err != nil || len(infos) != 1 || infos[0].State != store.StateRunning || infos[0].Backend != bc.name {
		t.Errorf("List = %+v, %v", infos, err)
	}

	// The console: the guest's marker (replayed or live), then detach.
	conn, err := m.Attach(ctx, "web", 50)
	if err != nil {
		t.Fatal(err)
	}
	readUntil(t, conn, bc.marker, bc.timeout)
	conn.Close()
	if st, err := m.Status(ctx, "web"); err != nil || st.State != "running" || st.CPUs != 1 {
		t.Errorf("after detaching: %+v, %v", st, err)
	}
	logs, err := m.Logs(ctx, "web", LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(logs); !strings.Contains(string(b), bc.marker) {
		t.Errorf("logs: %q", tailOf(string(b)))
	}

	// Pause freezes the guest; resume lets it go on.
	if bc.echo {
		conn, err = m.Attach(ctx, "web", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte("echo alive-$((6*7))\n")); err != nil {
			t.Fatal(err)
		}
		readUntil(t, conn, "alive-42", bc.timeout)
	}
	if st, err := m.Pause(ctx, "web"); err != nil || st.State != "paused" {
		t.Fatalf("Pause = %+v, %v", st, err)
	}
	if infos, _ := m.List(); len(infos) != 1 || infos[0].State != store.StatePaused {
		t.Errorf("List while paused: %+v", infos)
	}
	if _, err := m.Pause(ctx, "web"); !errors.As(err, &se) || err.Error() != "cannot pause VM 'web': it is paused" {
		t.Errorf("second Pause: %v", err)
	}
	if bc.echo {
		if _, err := conn.Write([]byte("echo frozen-$((6*7))\n")); err != nil {
			t.Fatal(err)
		}
		if out := quiet(conn, 2*time.Second); strings.Contains(out, "frozen-42") {
			t.Errorf("a paused guest answered: %q", out)
		}
	}
	if st, err := m.Resume(ctx, "web"); err != nil || st.State != "running" {
		t.Fatalf("Resume = %+v, %v", st, err)
	}
	if bc.echo {
		readUntil(t, conn, "frozen-42", bc.timeout)
		conn.Close()
	}
	if _, err := m.Resume(ctx, "web"); !errors.As(err, &se) || err.Error() != "cannot resume VM 'web': it is running, not paused" {
		t.Errorf("second Resume: %v", err)
	}

	// Stop: the guest hears the power button.
	res, err := m.Stop(ctx, "web", bc.timeout)
	if err != nil || res.How != api.StopACPI {
		t.Fatalf("Stop = %+v, %v; want acpi", res, err)
	}
	info, err = m.Inspect("web")
	if err != nil {
		t.Fatal(err)
	}
	if info.State != store.StateStopped || info.LastExit == nil || info.LastExit.Reason != exit.Stop || info.LastExit.How != api.StopACPI || info.Config == nil {
		t.Errorf("inspect after stop: %+v (exit %+v)", info, info.LastExit)
	}
	if _, err := m.Stop(ctx, "web", time.Second); !errors.As(err, &se) || err.Error() != "cannot stop VM 'web': it is stopped" {
		t.Errorf("Stop of a stopped VM: %v", err)
	}

	// Start again, and kill.
	if _, err := m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	res, err = m.Kill(ctx, "web")
	if err != nil || res.How != api.StopKilled {
		t.Fatalf("Kill = %+v, %v", res, err)
	}
	if info, _ = m.Inspect("web"); info.State != store.StateStopped || info.LastExit == nil || info.LastExit.Reason != exit.Kill {
		t.Errorf("inspect after kill: %+v", info)
	}
	if _, err := m.Kill(ctx, "web"); !errors.As(err, &se) || err.Error() != "cannot kill VM 'web': it is stopped" {
		t.Errorf("Kill of a stopped VM: %v", err)
	}

	// rm: nothing is left.
	dir := info.Paths.Dir
	if err := m.Remove(ctx, "web", false); err != nil {
		t.Fatal(err)
	}
	var nf *NotFoundError
	if _, err := m.Inspect("web"); !errors.As(err, &nf) {
		t.Errorf("Inspect after Remove: %v", err)
	}
	if fileExists(dir) {
		t.Errorf("%s is still there", dir)
	}
	bc.gone(t, m, vm)
}
