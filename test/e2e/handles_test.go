package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/disk/qemutest"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
)

// vmmFiles returns the files the process pid holds open, by descriptor:
// what /proc/PID/fd links to.
func vmmFiles(t *testing.T, pid int) map[int]string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[int]string{}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		files[fd] = target
	}
	return files
}

// pathFiles keeps the descriptors that name files of the file system (not
// sockets, pipes, eventfds, KVM's anonymous VM and vCPU files), with a
// " (deleted)" suffix dropped.
func pathFiles(files map[int]string) map[int]string {
	out := map[int]string{}
	for fd, target := range files {
		if strings.HasPrefix(target, "/") {
			out[fd] = strings.TrimSuffix(target, " (deleted)")
		}
	}
	return out
}

// holding returns the descriptors of files that open target.
func holding(files map[int]string, target string) []int {
	var fds []int
	for fd, t := range files {
		if t == target {
			fds = append(fds, fd)
		}
	}
	slices.Sort(fds)
	return fds
}

// TestManagedHandlesAcrossReboot runs a managed VM with a qcow2 disk on a
// backing file, a raw disk and an initrd, and makes the guest reboot. The
// VMM holds every file the VM needs exactly once, from the descriptors
// paddock start handed it (vmm.FirstFD on); with the kernel, the initrd
// and the backing file deleted, the guest still boots again, and after
// the reboot the VMM holds the same files on the same descriptors and no
// other: it opened nothing by path.
func TestManagedHandlesAcrossReboot(t *testing.T) {
	qemutest.NeedTool(t, "qemu-img")
	e := newManagedEnv(t)
	base, ov, raw := e.dir+"/base.qcow2", e.dir+"/ov.qcow2", e.dir+"/data.raw"
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", base, "16M")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", ov)
	if err := os.WriteFile(raw, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	initrd := e.dir + "/initrd.img"
	if err := os.WriteFile(initrd, []byte("070701 an initrd the guest never reads"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := e.guestVM("rb", "rekey", fmt.Sprintf("on_reboot: restart\ninitrd: %s\ndisks:\n  - {path: %s, format: qcow2}\n  - {path: %s}\n", initrd, ov, raw))
	// The kernel of this VM alone, to delete it.
	kernel := e.dir + "/rb-kernel.elf"
	data, err := os.ReadFile(e.dir + "/rekey.elf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kernel, data, 0o644); err != nil {
		t.Fatal(err)
	}
	y, _ := os.ReadFile(spec)
	os.WriteFile(spec, []byte(strings.Replace(string(y), e.dir+"/rekey.elf", kernel, 1)), 0o644)
	e.ok("up", "-f", spec)
	e.waitConsole("rb", "ready\n")
	pid := e.ls()["rb"].PID

	before := vmmFiles(t, pid)
	for _, f := range []string{"/dev/kvm", kernel, initrd, ov, base, raw} {
		fds := holding(before, f)
		if len(fds) != 1 || fds[0] < vmm.FirstFD {
			t.Errorf("the VMM holds %s on descriptors %v, want one handed over (from %d)", f, fds, vmm.FirstFD)
		}
	}
	if fds := holding(before, e.vm("rb").Path(store.SeedFile)); len(fds) != 0 {
		t.Errorf("a VM without cloud_init has its seed volume open on %v", fds)
	}

	for _, f := range []string{kernel, initrd, base} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	console := e.command("console", "rb")
	console.Stdin = strings.NewReader("r")
	if err := console.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitConsole("rb", "ready\nrready\n") // the echo of r, then the second boot
	console.Process.Kill()
	console.Wait()
	if st := e.state("rb"); st != "running" {
		t.Fatalf("state after the reboot: %s", st)
	}
	if got := e.ls()["rb"].PID; got != pid {
		t.Fatalf("the VMM changed: pid %d, then %d", pid, got)
	}
	after := vmmFiles(t, pid)
	t.Logf("the VMM's files after the reboot: %v", pathFiles(after))
	if b, a := pathFiles(before), pathFiles(after); !mapsEqual(b, a) {
		t.Errorf("the VMM's files changed across the reboot:\nbefore %v\nafter  %v", b, a)
	}
	for _, f := range []string{"/dev/kvm", kernel + " (deleted)", initrd + " (deleted)", ov, base + " (deleted)", raw} {
		if fds := holding(after, f); len(fds) != 1 {
			t.Errorf("after the reboot the VMM holds %s on %v, want one descriptor", f, fds)
		}
	}
	if out := e.ok("inspect", "rb"); !strings.Contains(out, "boots: 2") && !strings.Contains(out, `"boots": 2`) {
		t.Errorf("inspect after one reboot:\n%s", out)
	}
	e.ok("kill", "rb")
}

// mapsEqual reports whether a and b hold the same pairs.
func mapsEqual(a, b map[int]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestVMMBadFDTable starts `paddock vmm` as paddock start does, but with
// descriptor tables it cannot use: garbled, of another version, naming
// descriptors it was not given, or a file of the wrong kind. Each VMM
// fails with one sentence on its readiness pipe and in its exit, and
// leaves nothing behind: the VM's record is unchanged, no control socket,
// the run lock free, the VM still created.
func TestVMMBadFDTable(t *testing.T) {
	e := newManagedEnv(t)
	e.ok("create", "-f", e.guestVM("bad", "counter", ""))
	v := e.vm("bad")
	record, err := os.ReadFile(v.Path(store.RecordFile))
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := os.Open(e.dir + "/counter.elf")
	if err != nil {
		t.Fatal(err)
	}
	defer kernel.Close()
	prefix := "vmm: the descriptor table in " + vmm.FDTableEnv + ": "
	for _, tc := range []struct {
		name  string
		table string
		files []*os.File // from vmm.FirstFD
		want  string
	}{
		{"garbled", `{"version":1,"kvm":4,`, nil, "it is not a table"},
		{"other version", `{"version":99,"kvm":4,"kernel":5}`, nil, "format version 99; this paddock reads version 1"},
		{"descriptors missing", `{"version":1,"kvm":4,"kernel":5,"disks":[],"nics":[]}`, nil, "kvm: descriptor 4 "}, // not open, or the runtime's,
		{"kvm is the kernel", `{"version":1,"kvm":4,"kernel":4,"disks":[],"nics":[]}`, []*os.File{kernel}, "kernel: descriptor 4 is kvm already"},
		{"kernel for kvm", `{"version":1,"kvm":4,"kernel":5,"disks":[],"nics":[]}`, []*os.File{kernel, kernel}, "kvm: kvm: KVM_GET_API_VERSION (descriptor 4): inappropriate ioctl for device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			cmd := e.command("vmm", "--home", e.home, "--ready-fd", "3", "bad")
			cmd.Env = append(cmd.Env, vmm.FDTableEnv+"="+tc.table)
			cmd.ExtraFiles = append([]*os.File{w}, tc.files...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err = cmd.Start()
			w.Close()
			if err != nil {
				t.Fatal(err)
			}
			ready, _ := io.ReadAll(r)
			err = cmd.Wait()
			want := prefix + tc.want
			var msg vmm.Ready
			if jerr := json.Unmarshal(ready, &msg); jerr != nil || msg.OK || !strings.HasPrefix(msg.Error, want) || strings.Contains(msg.Error, "\n") {
				t.Errorf("readiness message %q, want an error starting %q", ready, want)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if err == nil || !strings.HasPrefix(lines[len(lines)-1], "paddock: "+want) {
				t.Errorf("exit %v, stderr %q; want a failure saying %q", err, stderr.String(), want)
			}
			if now, _ := os.ReadFile(v.Path(store.RecordFile)); !bytes.Equal(now, record) {
				t.Errorf("the record changed:\n%s\nwas\n%s", now, record)
			}
			if _, err := os.Stat(v.Path(store.SocketFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("control socket: %v", err)
			}
			if h, err := v.RunHolder(); err != nil || h.Alive {
				t.Errorf("run lock: %+v, %v", h, err)
			}
		})
	}
	if st := e.state("bad"); st != "created" {
		t.Errorf("state: %s, want created", st)
	}
	e.ok("start", "bad") // a good start still works
	e.ok("kill", "bad")
}
