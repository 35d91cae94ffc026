package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/guest/libvirt/libvirttest"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// libvirtTimeout bounds each wait for a TCG guest: seconds on an idle
// machine, much more on a loaded one.
const libvirtTimeout = 4 * time.Minute

// libvirtVM writes NAME.yaml: the Debian guest as a libvirt VM with a
// writable qcow2 disk, and extra YAML lines.
func (e *managedEnv) libvirtVM(name, extra string) string {
	e.t.Helper()
	g := libvirttest.Guest(e.t)
	img := filepath.Join(e.dir, name+".qcow2")
	im, err := disk.Create(img, disk.CreateOptions{Size: 32 << 20})
	if err != nil {
		e.t.Fatal(err)
	}
	im.Close()
	p := filepath.Join(e.dir, name+".yaml")
	y := fmt.Sprintf("name: %s\nmemory: 256MiB\nkernel: %s\ninitrd: %s\ncmdline: console=ttyS0 quiet\ndisks: [%s]\nbackend: libvirt\n%s",
		name, g.Vmlinuz, g.Initrd, img, extra)
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// hostEntry is one host of `paddock host ls --json`.
type hostEntry struct {
	Name       string `json:"name"`
	URI        string `json:"uri"`
	State      string `json:"state"`
	Problem    string `json:"problem"`
	VMs        int    `json:"vms"`
	CPUs       int    `json:"cpus"`
	FreeMemory uint64 `json:"free_memory"`
	Libvirt    string `json:"libvirt_version"`
	DomainType string `json:"domain_type"`
}

// hosts returns `paddock host ls --json` by name.
func (e *managedEnv) hosts() map[string]hostEntry {
	e.t.Helper()
	var list []hostEntry
	out := e.ok("host", "ls", "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		e.t.Fatalf("host ls --json: %v\n%s", err, out)
	}
	m := map[string]hostEntry{}
	for _, h := range list {
		m[h.Name] = h
	}
	return m
}

// virsh runs virsh on the daemon d and returns its output.
func virsh(t *testing.T, d *libvirttest.Daemon, args ...string) string {
	t.Helper()
	bin := testenv.RequireTool(t, "virsh", "libvirt-clients")
	out, err := exec.Command(bin, append([]string{"-c", d.URI}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("virsh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// noneLeft checks that the daemon has no domain called name and no
// volume of a VM in its pool.
func noneLeft(t *testing.T, d *libvirttest.Daemon, name string) {
	t.Helper()
	if out := virsh(t, d, "list", "--all", "--name"); strings.Contains(out, name) {
		t.Errorf("domains left: %q", out)
	}
	if out := virsh(t, d, "vol-list", "paddock"); strings.Contains(out, "vm-") {
		t.Errorf("volumes left:\n%s", out)
	}
}

// TestLibvirtCLI drives a libvirt VM through the commands a user types,
// on a libvirtd this test started (TCG): the same verbs, messages and
// exit statuses as a native VM's (TestManagedLifecycle).
func TestLibvirtCLI(t *testing.T) {
	d := libvirttest.Shared(t)
	e := newEnv(t)
	out := e.ok("host", "add", "local", d.URI)
	if !regexp.MustCompile(`^local: added \(` + regexp.QuoteMeta(d.URI) + `\): libvirt 9\.0\.\d+, QEMU \S+, \d+ CPUs, \S+ free; domains run as (kvm|qemu \(TCG: .+\))\n$`).MatchString(out) {
		t.Errorf("host add: %q", out)
	}
	web := e.libvirtVM("web", "labels: {tier: front}\n")
	if out := e.ok("up", "-f", web); out != "web: created\nweb: started (libvirt host local)\n" {
		t.Errorf("up: %q", out)
	}
	if out := e.ok("up", "-f", web); out != "web: running already\n" {
		t.Errorf("second up: %q", out)
	}
	e.fails(4, "paddock: cannot start VM 'web': it is running\n", "start", "web")
	vm := e.ls()["web"]
	if vm.State != "running" || vm.CPUs != 1 || vm.Memory != 256<<20 || vm.Backend != "libvirt" || vm.Labels["tier"] != "front" {
		t.Errorf("ls --json: %+v", vm)
	}
	if out := e.ok("ls"); !regexp.MustCompile(`^NAME  STATE    CPUS  MEMORY  UPTIME  ADDRESS  BACKEND\nweb   running  1     256MiB  \S+ +-        libvirt:local\n$`).MatchString(out) {
		t.Errorf("ls:\n%s", out)
	}
	if out := e.ok("host", "ls"); !regexp.MustCompile(`(?m)^local  ` + regexp.QuoteMeta(d.URI) + `  up     1    \d+ +\S+ +(kvm|qemu \(TCG: .+\))$`).MatchString(out) {
		t.Errorf("host ls:\n%s", out)
	}
	e.waitConsoleFor("web", libvirttest.GuestMarker, libvirtTimeout)

	// The console, without a terminal: what is typed reaches the guest's
	// shell; a signal detaches and the VM keeps running.
	cmd := e.command("console", "web")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = outW, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	fmt.Fprintf(in, "echo console-$((6*7))\n")
	readUntil(t, outR, "console-42")
	// libvirt gives its console to one client at a time.
	_, stderr2, status := e.paddock("console", "web")
	if status != 1 || !strings.HasPrefix(stderr2, "paddock: VM web: libvirt host local (") || !strings.HasSuffix(stderr2, "): domain web: another console is attached to it (libvirt allows one at a time)\n") {
		t.Errorf("a second console: status %d, %q", status, stderr2)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil || stderr.String() != "\r\npaddock: detached from web (terminated); it keeps running\r\n" {
		t.Errorf("console: %v, stderr %q", err, stderr.String())
	}
	if st := e.state("web"); st != "running" {
		t.Errorf("state after detaching: %s", st)
	}
	if out := e.ok("logs", "web"); !strings.Contains(out, libvirttest.GuestMarker) || !strings.Contains(out, "console-42") {
		t.Errorf("logs: %q", out)
	}

	e.pauseResume("web")

	// Snapshots: libvirt's internal ones, through the same commands.
	if out := e.ok("snapshot", "create", "web", "s1"); !strings.HasPrefix(out, "web: snapshot s1 taken (libvirt's internal snapshot: the memory is in the VM's first qcow2 disk; guest held ") {
		t.Errorf("snapshot create: %q", out)
	}
	if out := e.ok("snapshot", "ls", "web"); !regexp.MustCompile(`(?m)^s1    \S+ \S+  running   disks\[0\]  256MiB in the disk$`).MatchString(out) {
		t.Errorf("snapshot ls:\n%s", out)
	}
	e.fails(4, "paddock: cannot restore a snapshot of VM 'web': it is running; stop it first (paddock stop web), or use --force to discard what it did since\n", "snapshot", "restore", "web", "s1")
	if out := e.ok("snapshot", "restore", "--force", "web", "s1"); out != "web: restored snapshot s1 (libvirt host local; libvirt loaded all its memory before the guest went on, not lazily)\n" {
		t.Errorf("snapshot restore: %q", out)
	}
	if out := e.ok("snapshot", "rm", "web", "s1"); !strings.HasPrefix(out, "web: ") {
		t.Errorf("snapshot rm: %q", out)
	}
	e.fails(3, "paddock: VM 'web' has no snapshot called 's1' (paddock snapshot ls web lists them)\n", "snapshot", "rm", "web", "s1")
	if out := e.ok("stop", "web", "--timeout", "3m"); !strings.HasPrefix(out, "web: stopped: the guest shut down after the ACPI power button (") {
		t.Errorf("stop: %q", out)
	}
	if st := e.state("web"); st != "stopped" {
		t.Errorf("state after stop: %s", st)
	}
	e.fails(4, "paddock: cannot pause VM 'web': it is stopped\n", "pause", "web")
	e.fails(4, "paddock: cannot stop VM 'web': it is stopped\n", "stop", "web")
	e.fails(4, "paddock: cannot kill VM 'web': it is stopped\n", "kill", "web")
	e.fails(4, "paddock: cannot attach to VM 'web': it is stopped\n", "console", "web")

	if out := e.ok("start", "web"); out != "web: started (libvirt host local)\n" {
		t.Errorf("start: %q", out)
	}
	// No time to hear the button: forced off.
	if out := e.ok("stop", "web", "-t", "0"); !strings.HasPrefix(out, "web: forced off: the guest did not power off within 0s of the ACPI power button (") {
		t.Errorf("stop -t 0: %q", out)
	}
	e.ok("start", "web")
	if out := e.ok("kill", "web"); !strings.HasPrefix(out, "web: killed (") {
		t.Errorf("kill: %q", out)
	}
	var info struct {
		State    string `json:"state"`
		Backend  string `json:"backend"`
		Host     string `json:"host"`
		LastExit *struct {
			Reason string `json:"reason"`
		} `json:"last_exit"`
	}
	if err := json.Unmarshal([]byte(e.ok("inspect", "web")), &info); err != nil {
		t.Fatal(err)
	}
	if info.State != "stopped" || info.Backend != "libvirt" || info.Host != "local" || info.LastExit == nil || info.LastExit.Reason != "kill" {
		t.Errorf("inspect: %+v", info)
	}
	if out := e.ok("rm", "web"); out != "web: removed\n" {
		t.Errorf("rm: %q", out)
	}
	noneLeft(t, d, "web")
	if ents, _ := os.ReadDir(e.home + "/vms"); len(ents) != 0 {
		t.Errorf("left in vms/: %v", ents)
	}
}

// TestLibvirtRemote runs a VM on a second libvirtd that lives in a
// network namespace of its own and is reachable only over TCP, or SSH to
// an sshd beside it: paddock reaches it over SSH (qemu+ssh, a key and a
// known_hosts of the test's), uploads the kernel, initrd and disk into
// its pool (it shares no path with this machine) and the VM boots there;
// host ls shows the hosts, the same daemon over TCP too; --host auto
// places a VM on a reachable host, passing over one that is not. An SSH
// host whose host key is not known, or which refuses the key, is not
// added: one sentence each.
func TestLibvirtRemote(t *testing.T) {
	local := libvirttest.Shared(t)
	remote := libvirttest.SharedRemote(t)
	e := newEnv(t)
	e.ok("host", "add", "local", local.URI)
	e.ok("host", "add", "lab1", remote.SSHURI)
	e.ok("host", "add", "lab1tcp", remote.URI)
	dir := t.TempDir()
	empty, stranger := dir+"/known_hosts", dir+"/id_ed25519"
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := libvirttest.WriteSSHKey(stranger); err != nil {
		t.Fatal(err)
	}
	addr := remote.Addr + ":22"
	uri := remote.SSHURIWith(remote.SSHKey, empty)
	e.fails(1, "paddock: libvirt host lab6 ("+uri+"): cannot connect: the SSH host key of "+addr+" is not in "+empty+
		": check the host's key and add it there (e.g. ssh-keyscan -p 22 "+remote.Addr+" >> "+empty+"), or name another file with ?known_hosts=PATH; check the URI, or add it anyway with --force\n",
		"host", "add", "lab6", uri)
	uri = remote.SSHURIWith(stranger, remote.KnownHosts)
	e.fails(1, "paddock: libvirt host lab7 ("+uri+"): cannot connect: root@"+addr+" refused "+stranger+
		": put its public key in the host's authorized_keys, or name the key with ?keyfile=PATH; check the URI, or add it anyway with --force\n",
		"host", "add", "lab7", uri)
	if b, _ := os.ReadFile(empty); len(b) != 0 {
		t.Errorf("the unknown host key was added to known_hosts: %q", b)
	}

	web := e.libvirtVM("web", "")
	if out := e.ok("up", "-f", web, "--host", "lab1"); out != "web: created\nweb: started (libvirt host lab1)\n" {
		t.Errorf("up --host lab1: %q", out)
	}
	e.waitConsoleFor("web", libvirttest.GuestMarker, libvirtTimeout)
	def := virsh(t, remote, "dumpxml", "web")
	if !strings.Contains(def, "<kernel>/var/lib/libvirt/paddock/sha256-") || !strings.Contains(def, "<initrd>/var/lib/libvirt/paddock/sha256-") ||
		!strings.Contains(def, "volume='vm-") || strings.Contains(def, "<source file=") {
		t.Errorf("the remote domain does not use its pool's volumes:\n%s", def)
	}
	if out := virsh(t, local, "list", "--all", "--name"); strings.Contains(out, "web") {
		t.Errorf("web is on local too: %q", out)
	}

	hosts := e.hosts()
	if l, r, rt := hosts["local"], hosts["lab1"], hosts["lab1tcp"]; l.State != "up" || r.State != "up" || r.VMs != 1 || l.VMs != 0 || r.CPUs < 1 || r.FreeMemory == 0 || !strings.HasPrefix(r.Libvirt, "9.0.") ||
		rt.State != "up" || rt.VMs != 0 || rt.Libvirt != r.Libvirt || len(hosts) != 3 {
		t.Errorf("host ls: %+v", hosts)
	}

	// auto: a reachable host with the most free memory; never the
	// unreachable one.
	e.ok("host", "add", "lab9", "qemu+tcp://127.0.0.1:1/system", "--force")
	e.fails(1, "paddock: libvirt host lab8 (qemu+tcp://127.0.0.1:1/system): cannot connect: dial tcp 127.0.0.1:1: connect: connection refused; check the URI, or add it anyway with --force\n",
		"host", "add", "lab8", "qemu+tcp://127.0.0.1:1/system")
	db := e.libvirtVM("db", "")
	if out := e.ok("create", "-f", db, "--host", "auto"); out != "db: created\n" {
		t.Errorf("create --host auto: %q", out)
	}
	hosts = e.hosts()
	if h := hosts["lab9"]; h.State != "unreachable" || !strings.Contains(h.Problem, "cannot connect") {
		t.Errorf("lab9: %+v", h)
	}
	best := "local"
	if hosts["lab1"].FreeMemory > hosts["local"].FreeMemory {
		best = "lab1 (lab1tcp)"
	}
	var info struct {
		Host string `json:"host"`
	}
	json.Unmarshal([]byte(e.ok("inspect", "db")), &info)
	if info.Host != "local" && info.Host != "lab1" && info.Host != "lab1tcp" {
		t.Errorf("auto placed db on %q", info.Host)
	}
	t.Logf("auto placed db on %s (the most free memory: %s)", info.Host, best)

	e.ok("rm", "--force", "web", "db")
	noneLeft(t, remote, "web")
	// Only the daemon db was placed on has a pool to look in: local and
	// remote have about the same free memory, so either may be chosen.
	placed := remote
	if info.Host == "local" {
		placed = local
	}
	noneLeft(t, placed, "db")
	if out := virsh(t, remote, "vol-list", "paddock"); !strings.Contains(out, "sha256-") {
		t.Errorf("the shared kernel and initrd went with the VM:\n%s", out)
	}
}

// TestLibvirtHostGoesAway: a host that stops answering gives each command
// one clear error naming it, and the VM shows as unknown; a follow of the
// console ends saying the connection was lost.
func TestLibvirtHostGoesAway(t *testing.T) {
	libvirttest.Require(t)
	d, err := libvirttest.Start(libvirttest.Options{Remote: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	e := newEnv(t)
	e.ok("host", "add", "lab2", d.URI)
	web := e.libvirtVM("web", "")
	e.ok("up", "-f", web, "--host", "lab2")
	follow := e.command("logs", "-f", "web")
	var fout, ferr strings.Builder
	follow.Stdout, follow.Stderr = &fout, &ferr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitConsoleFor("web", libvirttest.GuestMarker, libvirtTimeout)
	d.Stop()
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(ferr.String(), "libvirt host lab2 ("+d.URI+")") || strings.Count(ferr.String(), "\n") != 1 {
			t.Errorf("logs -f when the host went: %v, stderr %q", err, ferr.String())
		}
		t.Logf("logs -f: %s", ferr.String())
	case <-time.After(time.Minute):
		follow.Process.Kill()
		t.Errorf("logs -f went on after its host went away")
	}
	if st := e.ls()["web"]; st.State != "unknown" {
		t.Errorf("ls: %+v", st)
	}
	_, stderr, status := e.paddock("stop", "web")
	t.Logf("stop: %s", stderr)
	if status != 1 || !strings.HasPrefix(stderr, "paddock: VM web: libvirt host lab2 ("+d.URI+"): cannot connect: ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stop: status %d, %q", status, stderr)
	}
	_, stderr, status = e.paddock("rm", "web")
	if status != 1 || !strings.HasPrefix(stderr, "paddock: VM web: cannot remove its domain and volumes: libvirt host lab2 ("+d.URI+"): cannot connect: ") ||
		!strings.HasSuffix(stderr, "; paddock rm --force web forgets the VM and leaves them there\n") {
		t.Errorf("rm: status %d, %q", status, stderr)
	}
	e.ok("rm", "--force", "web")
}
