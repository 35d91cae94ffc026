package guest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/console"
	"github.com/paddock-vm/paddock/guest/jail"
	"github.com/paddock-vm/paddock/guest/store"
)

// waitLogFile waits until the VM's console.log on disk holds text: its
// VMM writes the file a moment after its console clients saw the output.
func waitLogFile(t *testing.T, m *Manager, name, text string) {
	t.Helper()
	v, err := m.store.VM(name)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		data, err := console.ReadLog(v.Path(store.ConsoleFile))
		switch {
		case err != nil:
			t.Fatal(err)
		case strings.Contains(string(data), text):
			return
		case time.Now().After(deadline):
			t.Fatalf("console.log of %s did not show %q", name, text)
		}
	}
}

// chattyOutput is what the chatty test guest prints.
func chattyOutput() string {
	var b strings.Builder
	for i := range 256 {
		fmt.Fprintf(&b, "chatty %08x 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK\n", i)
	}
	return b.String() + "done\n"
}

// TestManagerConsoleLogBounded runs a managed VM whose guest prints four
// times what its console logs may hold: its own console.log and the
// spec's console.log rotate within console.log_size and log_keep, keep
// the newest output, and paddock logs reads it all back in order. As
// root it runs twice: jailed, when the spec's console.log, outside the
// VM's directory and so out of the VMM's reach, is opened by the start
// and handed over (rotated by copying); and unjailed, when the VMM opens
// it by path (rotated by renaming).
func TestManagerConsoleLogBounded(t *testing.T) {
	modes := []string{"nojail"}
	if jail.Enabled() {
		modes = append(modes, "jail")
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			if mode == "nojail" {
				t.Setenv(jail.NoJailEnv, "1")
			}
			testConsoleLogBounded(t, mode == "jail")
		})
	}
}

// testConsoleLogBounded is TestManagerConsoleLogBounded with the VMM
// jailed or not.
func testConsoleLogBounded(t *testing.T, jailed bool) {
	m := testManager(t)
	vm := testVM(t, "chat", "chatty")
	user := filepath.Join(t.TempDir(), "user.log")
	vm.Console.Log, vm.Console.LogSize, vm.Console.LogKeep = user, 4*configs.KiB, 2
	if _, err := m.Create(vm, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(context.Background(), "chat"); err != nil {
		t.Fatal(err)
	}
	v, err := m.store.VM("chat")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.WaitRunUnlocked(time.Minute); err != nil {
		t.Fatal(err)
	}
	if info, err := m.Inspect("chat"); err != nil || info.State != store.StateStopped {
		t.Fatalf("after the guest's end: %+v, %v", info, err)
	}
	if _, ok := v.JailID(); ok != jailed {
		t.Errorf("the VMM ran jailed: %v, want %v", ok, jailed)
	}
	want := chattyOutput()
	for _, log := range []struct {
		path string
		perm os.FileMode
	}{{v.Path(store.ConsoleFile), 0o600}, {user, 0o640}} {
		var all string
		for _, suffix := range []string{".2", ".1", ""} {
			fi, err := os.Stat(log.path + suffix)
			if err != nil || fi.Size() > 4096 || fi.Mode().Perm() != log.perm {
				t.Errorf("%s%s: %v, %v; want at most 4KiB, mode %v", log.path, suffix, fi, err, log.perm)
				continue
			}
			b, _ := os.ReadFile(log.path + suffix)
			all += string(b)
		}
		if _, err := os.Stat(log.path + ".3"); err == nil {
			t.Errorf("%s.3 exists: log_keep is 2", log.path)
		}
		if len(all) < 2*4096 || !strings.HasSuffix(want, all) {
			t.Errorf("%s and its rotated files hold %d bytes, not the newest output in order", log.path, len(all))
		}
	}
	rc, err := m.Logs(context.Background(), "chat", LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || len(got) < 2*4096 || !strings.HasSuffix(want, string(got)) {
		t.Errorf("paddock logs: %d bytes, %v; want the newest output in order", len(got), err)
	}
}
