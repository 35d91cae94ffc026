package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/disk/qemutest"
)

// TestManagedDiskLocks runs a managed VM (a paddock VMM on host /dev/kvm
// with a tiny guest) on a writable qcow2 disk and a read-only base, and
// checks that its disks are locked the way QEMU locks them: paddock
// image's writing subcommands are refused naming the VM, its reading ones
// need -U, qemu-io, qemu-img and qemu-system-x86_64 refuse the disk, and
// the read-only base stays shared with another VM and with QEMU. Once the
// VM is stopped, everything works again. The locks are taken by `paddock
// up`, which opens the disks and hands them to the VMM as descriptors
// (docs/architecture.md, "Handles"), and has exited by then: they belong
// to the open files, which the VMM holds, and /proc names the VMM.
func TestManagedDiskLocks(t *testing.T) {
	for _, tool := range []string{"qemu-img", "qemu-io", "qemu-system-x86_64"} {
		qemutest.NeedTool(t, tool)
	}
	e := newManagedEnv(t)
	d, base, ov := e.dir+"/d.qcow2", e.dir+"/base.qcow2", e.dir+"/ov.qcow2"
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", d, "16M")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", base, "16M")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", "-b", d, "-F", "qcow2", ov)
	e.ok("up", "-f", e.guestVM("web", "idle", fmt.Sprintf(
		"disks:\n  - {path: %s, format: qcow2}\n  - {path: %s, format: qcow2, readonly: true}\n", d, base)))
	e.waitConsole("web", "!")
	inUse := fmt.Sprintf("paddock: image %s is in use: VM \"web\" (pid %d) writes it; stop the VM first (paddock stop web)", d, e.ls()["web"].PID)

	// paddock image: writers are refused, readers need -U.
	for _, args := range [][]string{
		{"image", "snapshot", "-c", "x", d},
		{"image", "resize", d, "+1M"},
		{"image", "check", "-r", "all", d},
		{"image", "create", "-q", d, "1M"},
		{"image", "convert", "-q", base, d},
		{"image", "rebase", "-q", "-u", "-b", "", d},
		{"image", "commit", "-q", ov},
	} {
		e.fails(1, inUse+"\n", args...)
	}
	for _, args := range [][]string{
		{"image", "info", d}, {"image", "map", d}, {"image", "snapshot", "-l", d},
	} {
		e.fails(1, inUse+", or pass -U (--force-share) to read it anyway\n", args...)
		e.ok(append(append(args[:2:2], "-U"), args[2:]...)...)
	}

	// QEMU's tools and QEMU itself.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"qemu-io", "-f", "qcow2", "-c", "write 0 4k", d}, `Failed to get "write" lock`},
		{[]string{"qemu-img", "info", d}, `Failed to get shared "write" lock`},
		{[]string{"qemu-img", "snapshot", "-c", "x", d}, `Failed to get "write" lock`},
		{[]string{"qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S", "-drive", "file=" + d + ",format=qcow2,if=none"}, `Failed to get "write" lock`},
		{[]string{"qemu-io", "-f", "qcow2", "-c", "write 0 4k", base}, `Failed to get "write" lock`},
	} {
		// A QEMU that got the disk would run on: bound it.
		ctx, cancel := context.WithTimeout(context.Background(), managedTimeout)
		out, err := exec.CommandContext(ctx, tc.args[0], tc.args[1:]...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s on a running VM's disk: %v\n%s", strings.Join(tc.args, " "), err, out)
		}
	}
	qemutest.QemuImg(t, "info", "-U", d)
	qemutest.Run(t, "qemu-io", "-r", "-f", "qcow2", "-c", "read 0 4k", base)
	e.ok("image", "info", base)

	// The read-only base is shared with a second VM.
	e.ok("up", "-f", e.guestVM("db", "idle", fmt.Sprintf("disks:\n  - {path: %s, format: qcow2, readonly: true}\n", base)))
	e.waitConsole("db", "!")

	e.ok("kill", "web", "db")
	e.waitVMMGone("web")
	e.waitVMMGone("db")
	e.ok("image", "snapshot", "-c", "x", d)
	qemutest.QemuIO(t, d, "write 0 4k")
	qemutest.QemuIO(t, base, "write 0 4k")
	e.ok("rm", "web", "db")
}
