package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/guest/jail"
	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// procStatus reads the fields of /proc/PID/status, or of the status of
// the thread tid of PID (/proc/PID/task/TID/status).
func procStatus(t *testing.T, pid int, tid ...string) map[string]string {
	t.Helper()
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	if len(tid) > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/task/" + tid[0] + "/status"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestManagedJail: the VMM of a running VM runs jailed (guest/jail): not
// root, no capability in any set, no_new_privs, a seccomp filter, its own
// namespaces with a root that holds its VM's directory and nothing else
// of the host, and a cgroup with its limits.
func TestManagedJail(t *testing.T) {
	testenv.RequireRoot(t, "a jailed VMM needs paddock to run as root")
	e := newManagedEnv(t)
	e.ok("up", "-f", e.guestVM("web", "counter", ""))
	e.ok("up", "-f", e.guestVM("db", "counter", ""))
	e.waitConsoleLog("web", "counting\n")
	pid := e.ls()["web"].PID
	st := procStatus(t, pid)
	// Every thread of it: the jail is finished in the VMM's own process,
	// which runs several threads by then (guest/jail.Enter).
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil || len(tasks) < 2 {
		t.Fatalf("the VMM's threads: %d, %v", len(tasks), err)
	}
	// ... not by executing paddock again in the jail, as a test binary
	// built with cgo has to, whose argv[0] is the jail's jail.ExePath.
	if cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err != nil || strings.HasPrefix(string(cmdline), jail.ExePath+"\x00") {
		t.Errorf("the VMM's command line %q (%v): the jail was finished by a second stage", cmdline, err)
	}
	for _, task := range tasks {
		tst := procStatus(t, pid, task.Name())
		what := "the VMM's thread " + task.Name()
		uid := strings.Fields(tst["Uid"])
		gid := strings.Fields(tst["Gid"])
		if len(uid) != 4 || uid[0] == "0" || uid[1] == "0" || uid[2] == "0" || uid[3] == "0" ||
			len(gid) != 4 || gid[0] == "0" || gid[1] == "0" || gid[2] == "0" || gid[3] == "0" || tst["Groups"] != "" {
			t.Errorf("%s's ids: Uid %q Gid %q Groups %q", what, tst["Uid"], tst["Gid"], tst["Groups"])
		}
		for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
			if tst[k] != "0000000000000000" {
				t.Errorf("%s's %s is %s", what, k, tst[k])
			}
		}
		if tst["NoNewPrivs"] != "1" {
			t.Errorf("%s's NoNewPrivs: %q", what, tst["NoNewPrivs"])
		}
		if tst["Seccomp"] != "2" {
			t.Errorf("%s's Seccomp: %q", what, tst["Seccomp"])
		}
		cg, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + task.Name() + "/cgroup")
		if leaf := jail.LeafName("web", e.vm("web").Dir); err != nil || !strings.Contains(string(cg), "/paddock/"+leaf+"\n") {
			t.Errorf("%s's cgroups (%v):\n%s", what, err, cg)
		}
	}
	if ns := strings.Fields(st["NSpid"]); len(ns) != 2 || ns[1] != "1" {
		t.Errorf("NSpid %q: the VMM is not PID 1 of its own PID namespace", st["NSpid"])
	}
	for _, ns := range []string{"mnt", "pid", "ipc", "uts"} {
		mine, err1 := os.Readlink("/proc/self/ns/" + ns)
		its, err2 := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/" + ns)
		if err1 != nil || err2 != nil || mine == its {
			t.Errorf("%s namespace: mine %s, the VMM's %s (%v, %v)", ns, mine, its, err1, err2)
		}
	}
	// Its root: its VM's directory, nothing else of the host.
	root := "/proc/" + strconv.Itoa(pid) + "/root"
	for _, p := range []string{"/etc/shadow", "/etc/passwd", "/usr/bin", "/dev/kvm", e.vm("db").Dir, filepath.Join(e.home, "vms", "db")} {
		if _, err := os.Lstat(root + p); !os.IsNotExist(err) {
			t.Errorf("%s exists in the VMM's root: %v", p, err)
		}
	}
	for _, p := range []string{e.vm("web").Path("vm.yaml"), e.vm("web").Path("ctl.sock"), e.vm("web").Path("console.log")} {
		if _, err := os.Lstat(root + p); err != nil {
			t.Errorf("%s is missing from the VMM's root: %v", p, err)
		}
	}
	// Its cgroup and limits (64 MiB of guest RAM, 1 vCPU).
	cg, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	leaf := jail.LeafName("web", e.vm("web").Dir)
	if !strings.Contains(string(cg), "/paddock/"+leaf+"\n") {
		t.Fatalf("the VMM's cgroups:\n%s", cg)
	}
	v, err := jail.CgroupVersion()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"memory.max": strconv.Itoa(64<<20 + jail.MemoryOverhead), "pids.max": strconv.Itoa(jail.PidsMax), "cpu.max": "100000 100000"}
	if v == 1 {
		want = map[string]string{"memory.limit_in_bytes": want["memory.max"], "pids.max": want["pids.max"], "cpu.cfs_quota_us": "100000"}
	}
	found := 0
	for _, line := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if !strings.HasSuffix(parts[2], "/paddock/"+leaf) {
			continue
		}
		for f, val := range want {
			dir := cgroupDir(t, parts[1], parts[2])
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				continue // not this hierarchy's file
			}
			found++
			if got := strings.TrimSpace(string(b)); got != val {
				t.Errorf("%s: %s, want %s", f, got, val)
			}
		}
	}
	if found != len(want) {
		t.Errorf("found %d of the %d limits %v", found, len(want), want)
	}
	// Still a working VM, through its control socket.
	e.pauseResume("web")
	e.ok("stop", "web")
	e.ok("start", "web")
	e.ok("rm", "--force", "web", "db")
}

// cgroupDir is where the cgroup path of a /proc/PID/cgroup line is, on
// v2 (controllers "") or on the v1 hierarchy of controllers.
func cgroupDir(t *testing.T, controllers, path string) string {
	if controllers == "" {
		return filepath.Join(jail.CgroupRoot, path)
	}
	for _, c := range strings.Split(controllers, ",") {
		if strings.HasPrefix(c, "name=") {
			return ""
		}
	}
	return filepath.Join(jail.CgroupRoot, controllers, path)
}

// TestManagedJailSeccomp: a jailed VMM that makes a system call its
// filter forbids while it starts is killed, and the VM's start error says
// so, naming the call.
func TestManagedJailSeccomp(t *testing.T) {
	e, out, err := startWithForbiddenSyscall(t, "1")
	const why = "the VMM was killed by seccomp (system call 101, ptrace) before the guest ran"
	if err == nil || !strings.Contains(string(out), why) {
		t.Fatalf("start with a forbidden system call: %v\n%s", err, out)
	}
	if st := e.state("web"); st != "created" {
		t.Errorf("state after the VMM was killed: %s", st)
	}
	if out := e.ok("inspect", "web"); !strings.Contains(out, why) {
		t.Errorf("inspect does not say why the start failed:\n%s", out)
	}
}

// startWithForbiddenSyscall creates the jailed VM web and starts it with
// the test hook jail.ForbiddenSyscallEnv set to hook; it returns the
// output of paddock start and how it ended.
func startWithForbiddenSyscall(t *testing.T, hook string) (*managedEnv, []byte, error) {
	testenv.RequireRoot(t, "a jailed VMM needs paddock to run as root")
	e := newManagedEnv(t)
	e.ok("create", "-f", e.guestVM("web", "counter", ""))
	cmd := e.command("start", "web")
	cmd.Env = append(cmd.Env, jail.ForbiddenSyscallEnv+"="+hook)
	out, err := cmd.CombinedOutput()
	return e, out, err
}

// TestManagedJailSeccompRunning: a jailed VMM that makes a forbidden
// system call while its guest runs is killed, and the VM shows as
// crashed, with the call as the reason, in ls and inspect.
func TestManagedJailSeccompRunning(t *testing.T) {
	e, out, err := startWithForbiddenSyscall(t, "signal")
	if err != nil {
		t.Fatalf("start: %v\n%s", err, out)
	}
	e.waitConsoleLog("web", "counting\n")
	if err := syscall.Kill(e.ls()["web"].PID, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	e.waitVMMGone("web")
	const why = "the VMM was killed by seccomp (system call 101, ptrace)"
	got := e.ls()["web"]
	if got.State != "crashed" || got.LastExit == nil || got.LastExit.Reason != exit.VMMDied || got.LastExit.Detail != why {
		t.Errorf("ls after the forbidden system call: state %s, last exit %+v; want crashed, %s: %s", got.State, got.LastExit, exit.VMMDied, why)
	}
	if out := e.ok("inspect", "web"); !strings.Contains(out, why) {
		t.Errorf("inspect does not say why the VMM ended:\n%s", out)
	}
	// It starts again, without the hook.
	e.ok("start", "web")
	e.ok("rm", "--force", "web")
}

// TestJailKillChecksPID: a jailed VMM writes its own run lock, so a
// compromised one could name another process there for root to kill.
// paddock kill of a VMM that does not answer (stopped with SIGSTOP)
// refuses to SIGKILL a pid that is not a process of the VM's jail user,
// and kills the real VMM once the lock names it again.
func TestJailKillChecksPID(t *testing.T) {
	testenv.RequireRoot(t, "a jailed VMM needs paddock to run as root")
	e := newManagedEnv(t)
	e.ok("up", "-f", e.guestVM("web", "counter", ""))
	e.waitConsoleLog("web", "counting\n")
	vmm := e.ls()["web"].PID
	lockPath := e.vm("web").Path("vmm.lock")
	real, err := os.ReadFile(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	pid, runID, ok := strings.Cut(strings.TrimSpace(string(real)), " ")
	if !ok || pid != strconv.Itoa(vmm) {
		t.Fatalf("vmm.lock holds %q; want the VMM's pid %d and its run id", real, vmm)
	}
	// A root process the "compromised" VMM names instead of itself.
	victim := exec.Command("sleep", "600")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer victim.Process.Kill()
	if err := os.WriteFile(lockPath, []byte(strconv.Itoa(victim.Process.Pid)+" "+runID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(vmm, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(vmm, syscall.SIGCONT)
	if _, stderr, status := e.paddock("kill", "web"); status != 1 || !strings.Contains(stderr, "which is not a process of its jail's user") {
		t.Errorf("paddock kill with another process in the run lock: status %d, stderr %q", status, stderr)
	}
	if st := procStatus(t, victim.Process.Pid)["State"]; !strings.HasPrefix(st, "S") {
		t.Fatalf("the process the run lock named is in state %q after paddock kill; want it sleeping on", st)
	}
	if err := os.WriteFile(lockPath, real, 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok("kill", "web")
	if s := e.state("web"); s != "stopped" && s != "crashed" {
		t.Errorf("after kill the VM is %s", s)
	}
}
