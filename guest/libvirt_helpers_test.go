package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	lv "github.com/paddock-vm/paddock/guest/libvirt"
	"github.com/paddock-vm/paddock/guest/libvirt/libvirttest"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/images"
)

// guestTimeout bounds how long a test waits for a TCG guest: the stock
// kernel reaches /init in seconds on an idle machine, many times that on
// a loaded one.
const guestTimeout = 3 * time.Minute

// helloMarker is what the hello guest prints once its /init runs.
const helloMarker = libvirttest.GuestMarker

// libvirtManager returns a Manager of a new state directory whose
// "local" libvirt host is this test process's libvirt daemon.
func libvirtManager(t *testing.T) (*Manager, *libvirttest.Daemon) {
	t.Helper()
	d := libvirttest.Shared(t)
	m := testManager(t)
	if err := m.Hosts().Add(d.Host(lv.LocalHost)); err != nil {
		t.Fatal(err)
	}
	return m, d
}

// libvirtVM returns the validated spec of the hello guest as a libvirt
// VM, with a writable qcow2 disk, and extra YAML lines appended.
func libvirtVM(t *testing.T, name string, extra ...string) *configs.VM {
	t.Helper()
	return libvirtVMOf(t, libvirttest.Guest(t), name, extra...)
}

// libvirtVMOf is libvirtVM with the guest g.
func libvirtVMOf(t *testing.T, g *images.Guest, name string, extra ...string) *configs.VM {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "data.qcow2")
	im, err := disk.Create(img, disk.CreateOptions{Size: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	im.Close()
	y := fmt.Sprintf("name: %s\nmemory: 256MiB\nkernel: %s\ninitrd: %s\ncmdline: console=ttyS0 quiet\ndisks: [%s]\nbackend: libvirt\n%s\n",
		name, g.Vmlinuz, g.Initrd, img, strings.Join(extra, "\n"))
	return parseVM(t, y, filepath.Join(dir, name+".yaml"))
}

// readUntil reads r until what it read contains text, and returns it;
// the test fails if r ends or timeout passes first. r is closed on a
// timeout, to end the read.
func readUntil(t *testing.T, r io.ReadCloser, text string, timeout time.Duration) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var b []byte
		buf := make([]byte, 4096)
		for !strings.Contains(string(b), text) {
			n, err := r.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				break
			}
		}
		got <- string(b)
	}()
	select {
	case s := <-got:
		if !strings.Contains(s, text) {
			t.Fatalf("the stream ended before %q: %q", text, tailOf(s))
		}
		return s
	case <-time.After(timeout):
		r.Close()
		t.Fatalf("no %q within %s: %q", text, timeout, tailOf(<-got))
	}
	return ""
}

// libvirtTemplate makes the built template tiny of the hello guest with
// virtio disks (the Debian kernel, its initrd and a qcow2 base with a
// pattern, which it returns).
func libvirtTemplate(t *testing.T, m *Manager) (*store.Template, []byte) {
	t.Helper()
	g := libvirttest.DiskGuest(t)
	initrd, err := os.ReadFile(g.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	return templateOf(t, m, "tiny", g.Vmlinuz, initrd, "", "console=ttyS0 quiet")
}

// waitHello waits until the hello guest of the libvirt VM name runs its
// /init, reading its console from the log's last 100 lines on.
func waitHello(t *testing.T, m *Manager, name string) {
	t.Helper()
	conn, err := m.Attach(context.Background(), name, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	readUntil(t, conn, helloMarker, guestTimeout)
}

// tailOf is the end of s, for messages.
func tailOf(s string) string {
	if len(s) > 600 {
		return "..." + s[len(s)-600:]
	}
	return s
}

// quiet reads from conn for d and returns what came: the console of a
// frozen guest stays silent.
func quiet(conn net.Conn, d time.Duration) string {
	conn.SetReadDeadline(time.Now().Add(d))
	defer conn.SetReadDeadline(time.Time{})
	var b []byte
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			return string(b)
		}
	}
}

// poolNames lists the volumes of the daemon's paddock pool whose names
// contain s.
func poolNames(t *testing.T, d *libvirttest.Daemon, s string) []string {
	t.Helper()
	c, err := lv.Connect(d.Host("check"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pool, err := c.Pool(false)
	if errors.Is(err, lv.ErrNoPool) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Refresh(); err != nil {
		t.Fatal(err)
	}
	all, err := pool.Names("")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range all {
		if strings.Contains(n, s) {
			out = append(out, n)
		}
	}
	return out
}

// hostPool returns the daemon's paddock pool, on a connection of its
// own closed when the test ends.
func hostPool(t *testing.T, d *libvirttest.Daemon) *lv.Pool {
	t.Helper()
	c, err := lv.Connect(d.Host("check"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pool, err := c.Pool(false)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// checkOverlayVolume checks that the VM's disk volume vm-UUID.disk0 is a
// qcow2 image of size bytes backed by the volume base, and that the VM
// has no disks directory here.
func checkOverlayVolume(t *testing.T, m *Manager, pool *lv.Pool, in *Info, base *libvirtxml.StorageVolume, size uint64) {
	t.Helper()
	x, _ := poolVolume(t, pool, "vm-"+in.UUID+".disk0")
	if x.Target == nil || x.Target.Format == nil || x.Target.Format.Type != "qcow2" || x.Capacity == nil || x.Capacity.Value != size ||
		x.BackingStore == nil || x.BackingStore.Path != base.Target.Path {
		t.Errorf("%s's root disk volume: %+v, capacity %+v, backing store %+v", in.Name, x.Target, x.Capacity, x.BackingStore)
	}
	if fileExists(filepath.Join(m.store.VMDir(in.Name), store.DisksDir)) {
		t.Errorf("%s has a local disks directory", in.Name)
	}
}

// domainNames lists the daemon's domains.
func domainNames(t *testing.T, d *libvirttest.Daemon) []string {
	t.Helper()
	c, err := lv.Connect(d.Host("check"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names, err := c.DomainNames()
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// fileExists reports whether path exists.
func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
