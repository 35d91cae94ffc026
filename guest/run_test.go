package guest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// syncBuffer is a console writer tests can read while the VM writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRun boots tiny guests in the foreground.
func TestRun(t *testing.T) {
	testguest.RequireKVM(t)
	tests := []struct {
		name, guest, spec, input string
		reason                   exit.Reason
		boots                    int
		console, detail          string
	}{
		{"poweroff", "serial", "", "", exit.PowerOff, 1, "hello from the serial guest\n", ""},
		{"input", "irq", "", "abq", exit.PowerOff, 1, "ready\nabq", ""},
		{"reboot exits", "reset", "", "", exit.Reboot, 1, "rebooting\n", "triple-faulted"},
		{"reboot restarts, bounded", "reset", "on_reboot: restart\n", "", exit.Reboot, 11, strings.Repeat("rebooting\n", 11), "gave up after 10 restarts"},
		{"crash", "crash", "", "", exit.Crash, 1, "crashing\n", "KVM internal error"},
		{"console none", "serial", "console: none\n", "", exit.PowerOff, 1, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm, err := configs.Parse([]byte("name: fg\nmemory: 64MiB\nkernel: "+testguest.Build(t, tt.guest)+"\n"+tt.spec), "")
			if err != nil {
				t.Fatal(err)
			}
			vm.FillDefaults()
			var out syncBuffer
			opts := RunOptions{Console: &out}
			if tt.input != "" {
				opts.Input = strings.NewReader(tt.input)
			}
			boots := 0
			opts.OnBoot = func(boot int, entry string) {
				if boot != boots || entry != "PVH" {
					t.Errorf("OnBoot(%d, %q), want boot %d, PVH", boot, entry, boots)
				}
				boots++
			}
			res, err := Run(context.Background(), vm, opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Reason != tt.reason || res.Boots != tt.boots || boots != tt.boots || !strings.Contains(res.Detail, tt.detail) {
				t.Errorf("result %+v (%d boots seen); want %v after %d boots, detail with %q", res, boots, tt.reason, tt.boots, tt.detail)
			}
			if got := out.String(); got != tt.console {
				t.Errorf("console %q, want %q", got, tt.console)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	testguest.RequireKVM(t)
	vm := &configs.VM{Name: "bad", Kernel: "/dev/null", Memory: 64 * configs.MiB}
	vm.FillDefaults()
	if _, err := Run(context.Background(), vm, RunOptions{}); err == nil || !strings.HasPrefix(err.Error(), "VM bad: ") {
		t.Errorf("Run with a bad kernel: %v", err)
	}
	vm.Backend = configs.BackendLibvirt
	if _, err := Run(context.Background(), vm, RunOptions{}); err == nil || err.Error() != `backend "libvirt": foreground runs use the native backend` {
		t.Errorf("Run on libvirt: %v", err)
	}
}

func TestRunCancel(t *testing.T) {
	testguest.RequireKVM(t)
	vm := &configs.VM{Name: "fg", Kernel: testguest.Build(t, "counter"), Memory: 64 * configs.MiB, Restart: configs.RestartAlways}
	vm.FillDefaults()
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result, 1)
	started := make(chan struct{})
	go func() {
		res, err := Run(ctx, vm, RunOptions{Console: &out, OnBoot: func(int, string) { close(started) }})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	<-started
	cancel()
	if res := <-done; res.Reason != exit.Stop || res.Boots != 1 {
		t.Errorf("after cancel: %+v", res)
	}
}

// TestRunConsoleLogFull runs a guest that prints far more than the file
// system of its console log holds: it runs to its end, the terminal gets
// all of its output, and the log as much as fits.
func TestRunConsoleLogFull(t *testing.T) {
	testguest.RequireKVM(t)
	testenv.RequireRoot(t, "this test mounts a small tmpfs")
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=8k,mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	log := filepath.Join(dir, "console.log")
	vm, err := configs.Parse([]byte("name: fg\nmemory: 64MiB\nkernel: "+testguest.Build(t, "chatty")+"\nconsole: {log: "+log+"}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	var out syncBuffer
	res, err := Run(context.Background(), vm, RunOptions{Console: &out})
	if err != nil || res.Reason != exit.PowerOff {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	shown := out.String()
	if len(shown) != 256*64+len("done\n") || !strings.HasSuffix(shown, "chatty 000000ff 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK\ndone\n") {
		t.Errorf("the terminal got %d bytes, ending %q", len(shown), shown[max(0, len(shown)-80):])
	}
	logged, err := os.ReadFile(log)
	if err != nil || len(logged) == 0 || len(logged) > 8<<10 || !strings.HasPrefix(shown, string(logged)) {
		t.Errorf("the log holds %d bytes (%v): want the start of the output, as much as fits", len(logged), err)
	}
}

// TestRunConsoleLogUnwritable checks the error for a console log paddock
// cannot open: one sentence naming the field and the file.
func TestRunConsoleLogUnwritable(t *testing.T) {
	testguest.RequireKVM(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "console.log")
	if err := os.Mkdir(log, 0o700); err != nil {
		t.Fatal(err)
	}
	vm, err := configs.Parse([]byte("name: fg\nmemory: 64MiB\nkernel: "+testguest.Build(t, "serial")+"\nconsole: {log: "+log+"}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	_, err = Run(context.Background(), vm, RunOptions{})
	if want := "console.log: open " + log + ": is a directory"; err == nil || err.Error() != want {
		t.Errorf("Run = %v, want %q", err, want)
	}
}

func TestRunUUID(t *testing.T) {
	a, b := RunUUID("web"), RunUUID("web")
	if a != b || a.Version() != 5 {
		t.Errorf("RunUUID(web) = %s then %s; want one name-based (version 5) UUID", a, b)
	}
	if RunUUID("db") == a {
		t.Error("two names share a UUID")
	}
}
