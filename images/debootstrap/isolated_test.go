package debootstrap

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// mountedUnder returns the mount points under dir that this process's
// mount namespace sees.
func mountedUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// alive reports whether a process pid exists (and is not a zombie of
// ours).
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(data))
	return len(f) > 2 && f[2] != "Z"
}

// TestRunIsolated: the script's mounts are invisible outside it, and
// when its context is cancelled it ends with every process it started
// and every mount it made, leaving the directory removable; its steps
// and lines reach the callbacks.
func TestRunIsolated(t *testing.T) {
	testenv.RequireRoot(t, "private PID and mount namespaces need CAP_SYS_ADMIN")
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `set -eu
echo "@@step one"
mount -t tmpfs tmpfs "$MNT"
echo inside > "$MNT/file"
# The child says its pid as the host sees it: this /proc is the host's.
sh -c 'read -r pid rest < /proc/self/stat; echo "child $pid"; exec sleep 600' &
echo "@@step two"
wait
`
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var steps, lines []string
	child := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		done <- runIsolated(ctx, script, []string{"MNT=" + mnt, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
			func(s string) { steps = append(steps, s) },
			func(l string) {
				lines = append(lines, l)
				var pid int
				if n, _ := fmt.Sscanf(l, "child %d", &pid); n == 1 {
					child <- pid
				}
			})
	}()
	var pid int
	select {
	case pid = <-child:
	case err := <-done:
		t.Fatalf("the script ended early: %v (output %q)", err, lines)
	case <-time.After(time.Minute):
		t.Fatal("the script did not start its child within a minute")
	}
	if got := mountedUnder(t, dir); len(got) != 0 {
		t.Errorf("the script's mounts are visible outside it: %v", got)
	}
	if _, err := os.Stat(filepath.Join(mnt, "file")); err == nil {
		t.Error("the script's tmpfs shows outside it")
	}
	cancel()
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "stopped in step two") {
		t.Errorf("runIsolated after cancel: %v, want it stopped in step two", err)
	}
	if strings.Join(steps, ",") != "one,two" {
		t.Errorf("steps %v", steps)
	}
	// The kernel kills the namespace's processes when its first one dies;
	// reaping them takes a moment.
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("the script's background process %d outlived it", pid)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("remove the build directory: %v", err)
	}
}

// TestRunIsolatedFailure: a failing script's error names its step and
// quotes its last lines.
func TestRunIsolatedFailure(t *testing.T) {
	testenv.RequireRoot(t, "private PID and mount namespaces need CAP_SYS_ADMIN")
	script := "echo '@@step packages'; echo 'E: Unable to locate package nosuch'; exit 100"
	err := runIsolated(context.Background(), script, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "failed in step packages (installing the kernel") ||
		!strings.Contains(err.Error(), "exit status 100") || !strings.Contains(err.Error(), "E: Unable to locate package nosuch") {
		t.Errorf("runIsolated of a failing script: %v", err)
	}
	err = runIsolated(context.Background(), "echo '@@step configure'", nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "without finishing") {
		t.Errorf("a script that stops before its done step: %v", err)
	}
}
