package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// linuxAndSmall writes linux.yaml (a bzImage: Linux) and small.yaml (a
// small PVH guest) into a new directory and returns their paths.
func linuxAndSmall(t *testing.T) (linux, small string) {
	t.Helper()
	dir := t.TempDir()
	testguest.BzImage(t, dir, "vmlinuz")
	testguest.PVHStub(t, dir, "small.elf")
	linux, small = filepath.Join(dir, "linux.yaml"), filepath.Join(dir, "small.yaml")
	for path, y := range map[string]string{
		linux: "name: linux\nmemory: 64MiB\nkernel: vmlinuz\nconsole: log\n",
		small: "name: small\nmemory: 64MiB\nkernel: small.elf\nconsole: log\n",
	} {
		if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return linux, small
}

// refusal is what run, up and start say about a Linux kernel on a host
// whose KVM emulates guest kernel code.
func refusal(file, kernel string) string {
	return file + ":3:9: kernel: " + kernel + " is a Linux kernel, which this host cannot boot: its KVM has no hardware virtualization (no VT-x/AMD-V; see paddock doctor) and emulates guest kernel code, so the guest would hang with an empty console; use a host with VT-x/AMD-V or nested virtualization, or paddock's nested KVM lab (make demo); --allow-emulated (PADDOCK_ALLOW_EMULATED=1) starts it anyway\n"
}

// TestCheckBootable checks the decision for each kind of host, kernel and
// override, independently of this host.
func TestCheckBootable(t *testing.T) {
	linux, small := linuxAndSmall(t)
	load := func(path string) *configs.VM {
		vm, err := configs.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		vm.FillDefaults()
		return vm
	}
	kernel := filepath.Join(filepath.Dir(linux), "vmlinuz")
	emulated, hardware := configs.Host{EmulatedKVM: true}, configs.Host{}
	for _, tt := range []struct {
		name          string
		file          string
		host          configs.Host
		allow         bool
		err, warnings string
	}{
		{"Linux on an emulating KVM", linux, emulated, false, strings.TrimSuffix(refusal(linux, kernel), "\n"), ""},
		{"Linux on an emulating KVM, allowed", linux, emulated, true, "",
			"paddock: warning: " + linux + ":3:9: kernel: " + kernel + " is a Linux kernel, which this host cannot boot: its KVM has no hardware virtualization (no VT-x/AMD-V; see paddock doctor) and emulates guest kernel code, so the guest would hang with an empty console; starting it anyway (--allow-emulated)\n"},
		{"Linux with hardware virtualization", linux, hardware, false, "", ""},
		{"small guest on an emulating KVM", small, emulated, false, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cmd := &cobra.Command{}
			cmd.SetErr(&stderr)
			err := checkBootable(cmd, load(tt.file), tt.host, tt.allow)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.err || stderr.String() != tt.warnings {
				t.Errorf("error %q, stderr %q\nwant %q, %q", got, stderr.String(), tt.err, tt.warnings)
			}
		})
	}
	t.Setenv(envAllowEmulated, "1")
	if !allowEmulated(false) {
		t.Errorf("%s=1 does not allow", envAllowEmulated)
	}
	t.Setenv(envAllowEmulated, "0")
	if allowEmulated(false) || !allowEmulated(true) {
		t.Errorf("%s=0: allowEmulated(false) %v, allowEmulated(true) %v", envAllowEmulated, allowEmulated(false), allowEmulated(true))
	}
}

// TestEmulatedHost runs the commands on this host. Where its KVM emulates
// guest kernel code (as on paddock's build hosts), run, up and start refuse
// a Linux kernel before anything starts, and validate and create warn;
// elsewhere nothing is refused or warned about.
func TestEmulatedHost(t *testing.T) {
	managedHome(t)
	linux, _ := linuxAndSmall(t)
	kernel := filepath.Join(filepath.Dir(linux), "vmlinuz")
	r := guest.HostReport()
	emulated := r.Usable && r.Acceleration == machine.AccelEmulated

	stdout, stderr, status := runPaddock(t, "", "validate", "-f", linux, "--json")
	var rep validateReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || status != 0 || stderr != "" {
		t.Fatalf("validate --json: status %d, stderr %q, %v", status, stderr, err)
	}
	if !emulated {
		if rep.Warnings != nil {
			t.Errorf("warnings on a host that is not emulating: %+v", rep.Warnings)
		}
		t.Logf("this host's KVM is %s, not emulated: nothing to refuse", r.Acceleration)
		return
	}
	if len(rep.Warnings) != 1 || rep.Warnings[0].Field != "kernel" || rep.Warnings[0].Line != 3 || !strings.Contains(rep.Warnings[0].Message, "is a Linux kernel, which this host cannot boot") {
		t.Errorf("validate --json warnings: %+v", rep.Warnings)
	}
	if stdout, stderr, status = runPaddock(t, "", "validate", "-f", linux); status != 0 || stdout != linux+": ok\n" || !strings.HasPrefix(stderr, "paddock: warning: "+linux+":3:9: kernel: ") {
		t.Errorf("validate: status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	if _, stderr, status = runPaddock(t, "", "run", "-f", linux); status != 1 || stderr != refusal(linux, kernel) {
		t.Errorf("run: status %d, stderr %q", status, stderr)
	}
	if _, stderr, status = runPaddock(t, "", "up", "-f", linux); status != 1 || stderr != refusal(linux, kernel) {
		t.Errorf("up: status %d, stderr %q", status, stderr)
	}
	if stdout, _, _ = runPaddock(t, "", "ls", "-q"); stdout != "idle\n" {
		t.Errorf("up refused, but ls shows %q", stdout)
	}
	if stdout, stderr, status = runPaddock(t, "", "create", "-f", linux); status != 0 || stdout != "linux: created\n" || !strings.Contains(stderr, "paddock run, up and start refuse it here unless --allow-emulated") {
		t.Errorf("create: status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	spec := filepath.Join(os.Getenv("PADDOCK_HOME"), "vms", "linux", "vm.yaml")
	if _, stderr, status = runPaddock(t, "", "start", "linux"); status != 1 || !strings.HasPrefix(stderr, spec+":") || !strings.Contains(stderr, " is a Linux kernel, which this host cannot boot") {
		t.Errorf("start: status %d, stderr %q", status, stderr)
	}
	if stdout, _, _ = runPaddock(t, "", "inspect", "linux"); !strings.Contains(stdout, `"state": "created"`) {
		t.Errorf("start refused, but the VM is not created: %s", stdout)
	}
	// Programs see it too: ls --json and inspect carry the warning for the
	// Linux VM and for no other; the table's reader gets it on stderr.
	var infos []guest.Info
	stdout, _, _ = runPaddock(t, "", "ls", "--json")
	if err := json.Unmarshal([]byte(stdout), &infos); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, stdout)
	}
	for _, in := range infos {
		warned := len(in.Warnings) == 1 && strings.Contains(in.Warnings[0], "is a Linux kernel, which this host cannot boot")
		if warned != (in.Name == "linux") {
			t.Errorf("ls --json: VM %s has warnings %q", in.Name, in.Warnings)
		}
	}
	var info guest.Info
	stdout, _, _ = runPaddock(t, "", "inspect", "linux")
	if err := json.Unmarshal([]byte(stdout), &info); err != nil || len(info.Warnings) != 1 {
		t.Errorf("inspect: warnings %q (%v)", info.Warnings, err)
	}
	if _, stderr, _ = runPaddock(t, "", "ls"); !strings.Contains(stderr, "paddock: warning: VM linux: ") || strings.Contains(stderr, "VM idle") {
		t.Errorf("ls: stderr %q", stderr)
	}
	// clone --start refuses clones of a Linux VM's template before it
	// makes any of them.
	img := filepath.Join(filepath.Dir(linux), "root.qcow2")
	d, err := disk.Create(img, disk.CreateOptions{Size: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	withDisk := filepath.Join(filepath.Dir(linux), "disk.yaml")
	if err := os.WriteFile(withDisk, []byte("name: linuxd\nmemory: 64MiB\nkernel: vmlinuz\nconsole: log\ndisks: [{path: root.qcow2}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, status = runPaddock(t, "", "create", "-f", withDisk); status != 0 {
		t.Fatalf("create %s: status %d, stderr %q", withDisk, status, stderr)
	}
	if _, stderr, status = runPaddock(t, "", "template", "create", "linux-tpl", "--from", "linuxd"); status != 0 {
		t.Fatalf("template create: status %d, stderr %q", status, stderr)
	}
	if _, stderr, status = runPaddock(t, "", "clone", "linux-tpl", "c", "-n", "2", "--start"); status != 1 || !strings.Contains(stderr, "clone c-1 of template linux-tpl: ") || !strings.Contains(stderr, " is a Linux kernel, which this host cannot boot") {
		t.Errorf("clone --start: status %d, stderr %q", status, stderr)
	}
	if stdout, _, _ = runPaddock(t, "", "ls", "-q"); strings.Contains(stdout, "c-") {
		t.Errorf("clone --start refused, but ls shows %q", stdout)
	}
}
