package qemutest

import (
	"bufio"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// Holder is a QEMU process that keeps images open (and locked) until the
// test ends.
type Holder struct {
	Cmd *exec.Cmd
	PID int

	out    *bufio.Reader
	stderr *strings.Builder
}

// HoldIO runs qemu-io interactively with args (options and the image) and
// returns once it has the image open: it reads the image's first sector
// and waits for the answer. The process stays until the test ends.
func HoldIO(t testing.TB, args ...string) *Holder {
	t.Helper()
	NeedTool(t, "qemu-io")
	cmd := exec.Command("qemu-io", args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, cmd)
	if _, err := io.WriteString(stdin, "read 0 512\n"); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, "read 512/512 bytes at offset 0")
	return h
}

// HoldVM runs qemu-system-x86_64 with the given -drive specifications,
// each attached to a virtio-blk-pci device (QEMU takes a disk's write
// permission only for a device that can write), stopped before its first
// instruction (-S), and returns once the devices hold their drives: QEMU
// greets on its QMP monitor before it creates the devices (a raw drive
// gets its write lock only then), but answers commands only from its main
// loop, once they are all created. The process stays until the test
// ends.
func HoldVM(t testing.TB, drives ...string) *Holder {
	t.Helper()
	NeedTool(t, "qemu-system-x86_64")
	args := []string{"-machine", "pc", "-accel", "tcg", "-nodefaults", "-nographic", "-S", "-qmp", "stdio"}
	for i, d := range drives {
		id := "d" + string(rune('0'+i))
		args = append(args, "-drive", d+",if=none,id="+id, "-device", "virtio-blk-pci,drive="+id)
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	qmp, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, cmd)
	h.waitFor(t, `{"QMP":`)
	if _, err := io.WriteString(qmp, `{"execute": "qmp_capabilities"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, `{"return"`)
	return h
}

// start starts cmd with its output piped, and kills it when the test ends.
func start(t testing.TB, cmd *exec.Cmd) *Holder {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	h := &Holder{Cmd: cmd, PID: cmd.Process.Pid}
	h.out = bufio.NewReader(stdout)
	h.stderr = &stderr
	return h
}

// waitFor reads the holder's output until a line contains text; the
// process dying first fails the test with what it said.
func (h *Holder) waitFor(t testing.TB, text string) {
	t.Helper()
	for {
		line, err := h.out.ReadString('\n')
		if strings.Contains(line, text) {
			return
		}
		if err != nil {
			h.Cmd.Wait()
			t.Fatalf("%s exited before %q: %v\n%s", strings.Join(h.Cmd.Args, " "), text, err, h.stderr.String())
		}
	}
}
