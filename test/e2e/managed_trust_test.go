package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/guest/console"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// waitConsoleLog waits until the VM's console.log on disk holds text.
// The VMM writes the file from its own goroutine, a moment after the
// output reached its console clients: a test that kills the VMM and then
// reads the file waits for that moment first.
func (e *managedEnv) waitConsoleLog(name, text string) {
	e.t.Helper()
	path := e.vm(name).Path(store.ConsoleFile)
	deadline := time.Now().Add(managedTimeout)
	for {
		data, err := console.ReadLog(path)
		if err != nil {
			e.t.Fatal(err)
		}
		if strings.Contains(string(data), text) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s did not show %q", path, text)
		}
		time.Sleep(time.Millisecond) // no notification for a file's growth
	}
}

// TestManagedDiskFormatPinned checks, through the binary, that a managed
// VM's detected disk format is recorded at create and that a raw disk
// that later reads as qcow2 (a header a guest could have written, with a
// backing file of its choice) is refused at start, naming the disk and
// the fix, which then works.
func TestManagedDiskFormatPinned(t *testing.T) {
	qemuImg := testenv.RequireTool(t, "qemu-img", "qemu-utils")
	e := newManagedEnv(t)
	img := filepath.Join(e.dir, "data.raw")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("create", "-f", e.guestVM("web", "counter", "disks:\n  - "+img+"\n"))
	data, err := os.ReadFile(filepath.Join(e.home, "vms", "web", "formats.json"))
	if err != nil {
		t.Fatal(err)
	}
	var formats struct {
		Disks []struct {
			Index        int
			Path, Format string
		}
	}
	if err := json.Unmarshal(data, &formats); err != nil || len(formats.Disks) != 1 || formats.Disks[0].Path != img || formats.Disks[0].Format != "raw" {
		t.Fatalf("formats.json: %s (%v)", data, err)
	}

	// A qcow2 header over the raw disk's start, as QEMU writes it.
	planted := filepath.Join(e.dir, "planted.qcow2")
	if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw", planted, "1M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	hdr, err := os.ReadFile(planted)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	e.fails(1, "paddock: start VM 'web': disks[0]: "+img+" was a raw image when VM web was created and reads as qcow2 now, and paddock does not let a disk's contents change its format; if you converted it yourself, set disks[0].format: qcow2 in the VM's YAML and create the VM again (paddock rm web, then paddock create)\n", "start", "web")
	if st := e.state("web"); st != "created" {
		t.Errorf("state after the refused start: %s", st)
	}
	// The user's word, format: raw, is the way to keep the contents.
	e.ok("rm", "web")
	e.ok("up", "-f", e.guestVM("web", "counter", "disks:\n  - path: "+img+"\n    format: raw\n"))
	if st := e.state("web"); st != "running" {
		t.Errorf("state with format: raw: %s", st)
	}
	e.ok("kill", "web")
}

// TestManagedUntrustedHome checks that paddock refuses a state directory
// other users could change, naming the path and the fix, and works again
// once it is fixed.
func TestManagedUntrustedHome(t *testing.T) {
	e := newManagedEnv(t)
	e.ok("create", "-f", e.guestVM("web", "counter", ""))
	vms := filepath.Join(e.home, "vms")
	if err := os.Chmod(vms, 0o777); err != nil {
		t.Fatal(err)
	}
	want := "paddock: " + vms + " is writable by other users (mode 0777), so paddock does not trust it; fix it with: chmod go-w " + vms + "\n"
	e.fails(1, want, "ls")
	e.fails(1, want, "start", "web")
	if err := os.Chmod(vms, 0o755); err != nil {
		t.Fatal(err)
	}

	spec := filepath.Join(vms, "web", "vm.yaml")
	if err := os.Chmod(spec, 0o666); err != nil {
		t.Fatal(err)
	}
	e.fails(1, "paddock: "+spec+" is writable by other users (mode 0666), so paddock does not trust it; fix it with: chmod go-w "+spec+"\n", "start", "web")
	if err := os.Chmod(spec, 0o600); err != nil {
		t.Fatal(err)
	}

	if os.Geteuid() == 0 {
		// A VM another user planted in root's state directory.
		dir := filepath.Join(vms, "web")
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, errOut, status := e.paddock("start", "web")
		if status != 1 || !strings.HasPrefix(errOut, "paddock: "+dir+" is owned by ") || !strings.Contains(errOut, "uid 65534), not by root, so paddock does not trust it; fix it with: chown root "+dir) {
			t.Errorf("start of a VM another user owns: %d %q", status, errOut)
		}
		if err := os.Chown(dir, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	e.ok("start", "web")
	e.ok("kill", "web")
}
