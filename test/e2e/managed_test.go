package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// TestManagedLifecycle drives one VM through every managed command, and
// their errors, through the real binary.
func TestManagedLifecycle(t *testing.T) {
	e := newManagedEnv(t)
	web := e.guestVM("web", "counter", "labels: {tier: front}\n")

	if out := e.ok("create", "-f", web); out != "web: created\n" {
		t.Errorf("create: %q", out)
	}
	e.fails(4, "paddock: a VM named 'web' exists already: remove it (paddock rm web) or pick another name (--name)\n", "create", "-f", web)
	if out := e.ok("ls"); out != "NAME  STATE    CPUS  MEMORY  UPTIME  ADDRESS  BACKEND\nweb   created  1     64MiB   -       -        native\n" {
		t.Errorf("ls:\n%s", out)
	}

	out := e.ok("start", "web")
	if !regexp.MustCompile(`^web: started \(VMM pid \d+\)\n$`).MatchString(out) {
		t.Errorf("start: %q", out)
	}
	e.fails(4, "paddock: cannot start VM 'web': it is running\n", "start", "web")
	vm := e.ls()["web"]
	if vm.State != "running" || vm.PID == 0 || vm.CPUs != 1 || vm.Memory != 64<<20 || vm.Backend != "native" || vm.Labels["tier"] != "front" {
		t.Errorf("ls --json while running: %+v", vm)
	}
	if out := e.ok("ls", "--label", "tier=front", "-q"); out != "web\n" {
		t.Errorf("ls --label tier=front: %q", out)
	}
	if out := e.ok("ls", "--label", "tier=back", "-q"); out != "" {
		t.Errorf("ls --label tier=back: %q", out)
	}
	e.waitConsole("web", "counting\n")

	e.pauseResume("web")

	// The counter guest ignores the power button: forced off.
	if out := e.ok("stop", "web", "--timeout", "200ms"); !strings.HasPrefix(out, "web: forced off: the guest did not power off within 200ms of the ACPI power button (") {
		t.Errorf("stop: %q", out)
	}
	if st := e.state("web"); st != "stopped" {
		t.Errorf("state after stop: %s", st)
	}
	if out := e.ok("logs", "web"); out != "counting\n" {
		t.Errorf("logs: %q", out)
	}
	if out := e.ok("logs", "web", "--json"); out != `{"vm":"web","line":"counting"}`+"\n" {
		t.Errorf("logs --json: %q", out)
	}
	e.fails(4, "paddock: cannot pause VM 'web': it is stopped\n", "pause", "web")
	e.fails(4, "paddock: cannot stop VM 'web': it is stopped\n", "stop", "web")
	e.fails(4, "paddock: cannot kill VM 'web': it is stopped\n", "kill", "web")
	e.fails(4, "paddock: cannot attach to VM 'web': it is stopped\n", "console", "web")
	e.fails(3, "paddock: no VM named 'wbe'; did you mean 'web'?\n", "pause", "wbe")
	e.fails(3, "paddock: no VM named 'nothing' (paddock ls lists them)\n", "inspect", "nothing")

	// A guest that handles the power button stops through ACPI.
	btn := e.guestVM("btn", "pwrbtn", "")
	if out := e.ok("up", "-f", btn); !strings.HasPrefix(out, "btn: created\nbtn: started (VMM pid ") {
		t.Errorf("up: %q", out)
	}
	if out := e.ok("up", "-f", btn); out != "btn: running already\n" {
		t.Errorf("second up: %q", out)
	}
	e.waitConsole("btn", "armed\n")
	if out := e.ok("stop", "btn"); !strings.HasPrefix(out, "btn: stopped: the guest shut down after the ACPI power button (") {
		t.Errorf("stop btn: %q", out)
	}
	if out := e.ok("logs", "btn"); out != "armed\nbutton\n" {
		t.Errorf("logs btn: %q", out)
	}

	// kill, then inspect's account of it.
	e.ok("start", "web")
	if out := e.ok("kill", "web"); !strings.HasPrefix(out, "web: killed (") {
		t.Errorf("kill: %q", out)
	}
	var info struct {
		Name     string      `json:"name"`
		State    string      `json:"state"`
		LastExit *store.Exit `json:"last_exit"`
		Config   struct {
			Kernel string `json:"kernel"`
		} `json:"config"`
		Paths struct {
			Dir string `json:"dir"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(e.ok("inspect", "web")), &info); err != nil {
		t.Fatal(err)
	}
	if info.State != "stopped" || info.LastExit == nil || info.LastExit.Reason != exit.Kill || !strings.HasSuffix(info.Config.Kernel, "/counter.elf") || info.Paths.Dir != e.vm("web").Dir {
		t.Errorf("inspect after kill: %+v", info)
	}

	if out := e.ok("rm", "web", "btn"); out != "web: removed\nbtn: removed\n" {
		t.Errorf("rm: %q", out)
	}
	if out := e.ok("ls"); out != "NAME  STATE  CPUS  MEMORY  UPTIME  ADDRESS  BACKEND\n" {
		t.Errorf("ls after rm: %q", out)
	}
	if ents, _ := os.ReadDir(e.home + "/vms"); len(ents) != 0 {
		t.Errorf("left in vms/: %v", ents)
	}
}

// TestManagedUsage checks usage errors (status 2) and completion.
func TestManagedUsage(t *testing.T) {
	e := newManagedEnv(t)
	tests := []struct {
		args   []string
		stderr string
	}{
		{[]string{"start"}, "paddock: start needs at least one VM name (usage: paddock start NAME...)\n"},
		{[]string{"inspect", "a", "b"}, "paddock: inspect needs one VM name, got 2 arguments (usage: paddock inspect NAME)\n"},
		{[]string{"ls", "extra"}, "paddock: ls takes no arguments, got \"extra\" (usage: paddock ls [--json] [--label KEY=VALUE]... [--tenant NAME])\n"},
		{[]string{"ls", "--bogus"}, "paddock: unknown flag: --bogus (see paddock ls --help)\n"},
		{[]string{"stop", "x", "--timeout", "soon"}, "paddock: invalid argument \"soon\" for \"-t, --timeout\" flag: want seconds (10) or a duration (90s, 2m), got \"soon\" (see paddock stop --help)\n"},
		{[]string{"stop", "x", "--timeout", "-1s"}, "paddock: --timeout -1s: want 0 to 24h0m0s\n"},
		{[]string{"create", "-f", "x.yaml", "--name", "Bad_Name"}, "paddock: --name \"Bad_Name\": a VM name is a DNS label (1 to 63 lowercase letters, digits and '-', not starting or ending with '-')\n"},
		{[]string{"logs", "x", "--tail", "-3"}, "paddock: --tail -3: want a line count, 0 for all\n"},
	}
	for _, tt := range tests {
		e.fails(2, tt.stderr, tt.args...)
	}
	e.ok("create", "-f", e.guestVM("web-1", "counter", ""))
	e.ok("create", "-f", e.guestVM("web-2", "counter", ""))
	out := e.ok("__complete", "start", "web")
	if !strings.HasPrefix(out, "web-1\tcreated\nweb-2\tcreated\n:4\n") {
		t.Errorf("completion of start: %q", out)
	}
	if out := e.ok("__complete", "pause", ""); !strings.HasPrefix(out, ":4\n") {
		t.Errorf("completion of pause (nothing runs): %q", out)
	}
}

// TestManagedTwoVMs runs two VMs from one file at once.
func TestManagedTwoVMs(t *testing.T) {
	e := newManagedEnv(t)
	f := e.guestVM("vm", "counter", "")
	e.ok("create", "-f", f, "--name", "a")
	e.ok("create", "-f", f, "--name", "b")
	e.ok("start", "a", "b")
	vms := e.ls()
	if vms["a"].State != "running" || vms["b"].State != "running" || vms["a"].PID == vms["b"].PID {
		t.Fatalf("two VMs: %+v", vms)
	}
	e.ok("stop", "--timeout", "0s", "a")
	vms = e.ls()
	if vms["a"].State != "stopped" || vms["b"].State != "running" {
		t.Errorf("after stopping a: %+v", vms)
	}
	e.ok("kill", "b")
	e.ok("rm", "a", "b")
}

// TestManagedConcurrent runs the same command on one VM from several
// processes at once: one wins, the others fail with a clear message.
func TestManagedConcurrent(t *testing.T) {
	e := newManagedEnv(t)
	e.ok("create", "-f", e.guestVM("web", "counter", ""))
	run := func(n int, args ...string) []result {
		var wg sync.WaitGroup
		res := make([]result, n)
		for i := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i].stdout, res[i].stderr, res[i].status = e.paddock(args...)
			}()
		}
		wg.Wait()
		return res
	}
	allowed := map[int]*regexp.Regexp{
		4: regexp.MustCompile(`^paddock: cannot start VM 'web': it is (running|starting)\n$`),
		5: regexp.MustCompile(`^paddock: VM 'web' is busy: another paddock command is changing it; try again when it is done\n$`),
	}
	checkOneWins(t, "start", run(4, "start", "web"), allowed)
	if st := e.state("web"); st != "running" {
		t.Fatalf("after concurrent starts: %s", st)
	}
	allowed = map[int]*regexp.Regexp{
		3: regexp.MustCompile(`^paddock: no VM named 'web' \(paddock ls lists them\)\n$`),
		5: regexp.MustCompile(`^paddock: VM 'web' is busy: another paddock command is changing it; try again when it is done\n$`),
	}
	checkOneWins(t, "rm --force", run(3, "rm", "--force", "web"), allowed)
}

type result struct {
	stdout, stderr string
	status         int
}

// checkOneWins checks that exactly one result succeeded and that the
// others failed with an allowed status and message.
func checkOneWins(t *testing.T, what string, res []result, allowed map[int]*regexp.Regexp) {
	t.Helper()
	won := 0
	for _, r := range res {
		if r.status == 0 {
			won++
			continue
		}
		if re, ok := allowed[r.status]; !ok || !re.MatchString(r.stderr) {
			t.Errorf("%s: status %d, stderr %q", what, r.status, r.stderr)
		}
	}
	if won != 1 {
		t.Errorf("%s: %d of %d won, want 1: %+v", what, won, len(res), res)
	}
}

// TestManagedVMMKilled kills a VMM with SIGKILL: ls shows the VM crashed,
// inspect has the last words, and the VM starts again and is removed
// cleanly.
func TestManagedVMMKilled(t *testing.T) {
	e := newManagedEnv(t)
	e.ok("up", "-f", e.guestVM("web", "counter", ""))
	e.waitConsoleLog("web", "counting\n")
	pid := e.ls()["web"].PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitVMMGone("web")
	if out := e.ok("ls"); out != "NAME  STATE    CPUS  MEMORY  UPTIME  ADDRESS  BACKEND\nweb   crashed  1     64MiB   -       -        native\n" {
		t.Errorf("ls after SIGKILL:\n%s", out)
	}
	x := e.ls()["web"].LastExit
	if x == nil || x.Reason != exit.VMMDied || x.Detail != fmt.Sprintf("the VMM (pid %d) ended without recording why: it was killed (SIGKILL, the OOM killer) or crashed; its last messages are in vmm_log_tail", pid) ||
		len(x.ConsoleTail) == 0 || x.ConsoleTail[len(x.ConsoleTail)-1] != "counting" || len(x.VMMLogTail) == 0 {
		t.Errorf("last exit after SIGKILL: %+v", x)
	}
	if _, err := os.Stat(e.vm("web").Path(store.SocketFile)); !os.IsNotExist(err) {
		t.Errorf("the dead VMM's socket is still there: %v", err)
	}
	e.ok("start", "web")
	if st := e.state("web"); st != "running" {
		t.Errorf("restarted VM: %s", st)
	}
	e.ok("rm", "--force", "web")
	if _, err := os.Stat(e.vm("web").Dir); !os.IsNotExist(err) {
		t.Errorf("the VM's directory survived rm: %v", err)
	}
}

// TestManagedStartFailure checks that a VMM that cannot start the guest
// reports why and leaves the VM as it was, and that start validates the
// stored spec again (its files may have changed since create).
func TestManagedStartFailure(t *testing.T) {
	e := newManagedEnv(t)
	kernel, initrd := e.dir+"/vmlinux", e.dir+"/initrd.img"
	f := e.guestVM("bad", "counter", "")
	data, _ := os.ReadFile(e.dir + "/counter.elf")
	os.WriteFile(kernel, data, 0o644)
	os.WriteFile(initrd, []byte("070701"), 0o644)
	os.WriteFile(f, []byte("name: bad\nmemory: 32MiB\nkernel: vmlinux\ninitrd: initrd.img\n"), 0o644)
	e.ok("create", "-f", f)
	// An initrd larger than the VM's RAM passes validation; the VMM's
	// loader refuses it.
	os.Truncate(initrd, 64<<20)
	_, errOut, status := e.paddock("start", "bad")
	if status != 1 || !strings.HasPrefix(errOut, "paddock: start VM 'bad': ") || !strings.Contains(errOut, "does not fit") {
		t.Errorf("start with an initrd larger than RAM: %d %q", status, errOut)
	}
	if st := e.state("bad"); st != "created" {
		t.Errorf("state after the failed start: %s", st)
	}
	os.WriteFile(kernel, []byte("no kernel here"), 0o644)
	_, errOut, status = e.paddock("start", "bad")
	if status != 1 || !strings.Contains(errOut, "vm.yaml:6:9: kernel: "+kernel+": not a Linux kernel (no bzImage header and not an ELF file)") {
		t.Errorf("start with a kernel that is not one: %d %q", status, errOut)
	}
	os.Remove(kernel)
	_, errOut, status = e.paddock("start", "bad")
	if status != 1 || !strings.Contains(errOut, "vm.yaml:6:9: kernel: "+kernel+": no such file or directory") {
		t.Errorf("start without the kernel: %d %q", status, errOut)
	}
}

// TestManagedRestart checks restart: on-failure through the binary: the
// crashing guest boots again, and stop ends it.
func TestManagedRestart(t *testing.T) {
	e := newManagedEnv(t)
	e.ok("up", "-f", e.guestVM("crash", "crash", "restart: on-failure\n"))
	e.waitConsole("crash", "crashing\ncrashing\n") // the first restart is after 1s
	out := e.ok("stop", "crash")
	if !strings.HasPrefix(out, "crash: stopped while waiting to restart (") && !strings.HasPrefix(out, "crash: forced off") {
		t.Errorf("stop: %q", out)
	}
	var info struct {
		State    string      `json:"state"`
		LastExit *store.Exit `json:"last_exit"`
	}
	json.Unmarshal([]byte(e.ok("inspect", "crash")), &info)
	if info.State != "stopped" || info.LastExit == nil || info.LastExit.Reason != exit.Stop {
		t.Errorf("after stop: %+v", info)
	}
	log := e.ok("logs", "crash")
	if strings.Count(log, "crashing\n") < 2 {
		t.Errorf("logs %q: want at least two boots", log)
	}
}

// TestManagedConsole attaches a terminal (a pty) to the echoing guest,
// types, and detaches with Ctrl-]; then attaches through a pipe, where
// input passes unchanged.
func TestManagedConsole(t *testing.T) {
	e := newManagedEnv(t)
	e.ok("up", "-f", e.guestVM("echo", "irq", ""))
	e.waitConsole("echo", "ready\n")

	master, slave := openPTY(t)
	cmd := e.command("console", "echo")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readUntil(t, master, "attached to the console of echo; Ctrl-] detaches")
	master.Write([]byte("hi"))
	readUntil(t, master, "hi")
	master.Write([]byte{0x1d}) // Ctrl-]
	readUntil(t, master, "detached from echo (Ctrl-]); it keeps running")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("console after Ctrl-]: %v", err)
	}
	if st := e.state("echo"); st != "running" {
		t.Errorf("state after detaching: %s", st)
	}

	// Not a terminal: bytes pass as they are; q makes the guest power off.
	pipe := e.command("console", "echo")
	pipe.Stdin = strings.NewReader("x\x1dq")
	out, err := pipe.Output()
	var ee *exec.ExitError
	if err != nil {
		if errors.As(err, &ee) {
			t.Fatalf("console through a pipe: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	if string(out) != "x\x1dq" {
		t.Errorf("console output %q, want the echo of x, Ctrl-], q", out)
	}
	e.waitVMMGone("echo")
	if st := e.state("echo"); st != "stopped" {
		t.Errorf("state after q: %s", st)
	}
	if out := e.ok("logs", "echo"); out != "ready\nhix\x1dq" {
		t.Errorf("logs: %q", out)
	}
}

// TestManagedVMMSignal sends SIGTERM to a VMM: it shuts the guest down
// through ACPI, as paddock stop does.
func TestManagedVMMSignal(t *testing.T) {
	e := newManagedEnv(t)
	e.ok("up", "-f", e.guestVM("btn", "pwrbtn", ""))
	e.waitConsole("btn", "armed\n")
	if err := syscall.Kill(e.ls()["btn"].PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e.waitVMMGone("btn")
	x := e.ls()["btn"].LastExit
	if x == nil || x.Reason != exit.Stop || x.How != "acpi" {
		t.Errorf("after SIGTERM: %+v", x)
	}
}

// TestManagedDiskInUse checks that a managed VM's disk is attached: the
// VMM holds its image's lock, so a second VM on the same image cannot
// start while the first runs, and can once it stopped.
func TestManagedDiskInUse(t *testing.T) {
	e := newManagedEnv(t)
	img := e.dir + "/data.raw"
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	disk := "disks:\n  - path: " + img + "\n"
	e.ok("create", "-f", e.guestVM("two", "counter", disk))
	e.ok("up", "-f", e.guestVM("one", "counter", disk))
	_, errOut, status := e.paddock("start", "two")
	holder := fmt.Sprintf(`VM "one" (pid %d)`, e.ls()["one"].PID)
	if status != 1 || !strings.Contains(errOut, "disks[0].path: "+img+" is in use: "+holder+" writes it") {
		t.Errorf("start of a second VM on the same disk: %d %q", status, errOut)
	}
	e.ok("kill", "one")
	e.ok("start", "two")
	e.ok("rm", "--force", "one", "two")
}
