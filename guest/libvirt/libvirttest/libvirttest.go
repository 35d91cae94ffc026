// Package libvirttest starts real libvirt daemons for tests: Debian's
// monolithic libvirtd 9.0 with its virtlogd, each in private mount and
// PID namespaces, so that its state (/etc/libvirt, /var/lib/libvirt,
// /run/libvirt, /var/log/libvirt, /var/cache/libvirt) is its own and
// everything it runs dies with it. tini is the namespace's init: it
// reaps QEMU's children (without a reaper every domain stop takes ~2 s
// longer).
//
// A local daemon listens on a unix socket in its temporary directory; a
// remote one lives in a network namespace of its own, reachable only
// over TCP, or SSH to an sshd beside it, on an address there (a veth
// pair links it to the test), with a private /tmp: like another
// machine, it shares no path with the test.
//
// The first connection to a new daemon waits for it to probe QEMU
// (several seconds), so a test process shares its daemons (Shared,
// SharedRemote) across its tests, and stops them in TestMain (Cleanup).
// docs/libvirt.md describes the setup.
package libvirttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/guest/libvirt"
	"github.com/paddock-vm/paddock/images"
	"github.com/paddock-vm/paddock/images/hello"
	"github.com/paddock-vm/paddock/images/initramfs"
	"github.com/paddock-vm/paddock/images/kmod"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// Daemon is a libvirtd a test process started.
type Daemon struct {
	// Name tells the daemons of one test process apart ("local",
	// "remote").
	Name string
	// URI reaches it: qemu:///system?socket=... for a local daemon,
	// qemu+tcp://ADDR/system for a remote one.
	URI string
	// Dir is its temporary directory: its private state, its log.
	Dir string
	// NetNS is the network namespace of a remote daemon.
	NetNS string
	// Addr is a remote daemon's address.
	Addr string
	// SSHURI reaches a remote daemon over SSH too: its namespaces run
	// an sshd on Addr:22 with a host key of its own, which lets root in
	// with SSHKey; KnownHosts has the host key (sshd.go).
	SSHURI, SSHKey, KnownHosts string

	cmd      *exec.Cmd
	exited   chan struct{} // closed once cmd was waited for
	hostVeth string
}

// Host is the daemon as a paddock libvirt host called name.
func (d *Daemon) Host(name string) libvirt.Host { return libvirt.Host{Name: name, URI: d.URI} }

// Options configure a daemon.
type Options struct {
	// Remote puts it in a network namespace of its own, listening on TCP
	// only (and reachable over SSH: SSHURI), with a private /tmp.
	Remote bool
}

// Require ends tb (testenv.Unavailable: a skip outside CI, a failure in
// CI) unless this machine can run daemons: root, libvirtd, virtlogd,
// tini, unshare, QEMU, and ip and sshd for remote daemons.
func Require(tb testing.TB) {
	tb.Helper()
	testenv.RequireRoot(tb, "a libvirt daemon needs root")
	testenv.RequireTool(tb, "libvirtd", "libvirt-daemon-system")
	testenv.RequireTool(tb, "virtlogd", "libvirt-daemon-system")
	testenv.RequireTool(tb, "tini", "tini")
	testenv.RequireTool(tb, "unshare", "util-linux")
	testenv.RequireTool(tb, "ip", "iproute2")
	testenv.RequireTool(tb, "qemu-system-x86_64", "qemu-system-x86")
	if _, err := os.Stat(sshdPath); err != nil {
		testenv.Unavailable(tb, "%s is not installed (Debian package openssh-server): remote daemons are reached over SSH too", sshdPath)
	}
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so"); err != nil {
		testenv.Unavailable(tb, "libvirt's QEMU driver is not installed (Debian package libvirt-daemon-driver-qemu)")
	}
}

// shared are a test process's daemons, by Options.
var shared struct {
	sync.Mutex
	daemons map[Options]*Daemon
	errs    map[Options]error
}

// Shared returns this process's local daemon, starting it on first use.
func Shared(tb testing.TB) *Daemon { return sharedDaemon(tb, Options{}) }

// SharedRemote returns this process's remote daemon, starting it on
// first use.
func SharedRemote(tb testing.TB) *Daemon { return sharedDaemon(tb, Options{Remote: true}) }

func sharedDaemon(tb testing.TB, o Options) *Daemon {
	tb.Helper()
	Require(tb)
	shared.Lock()
	defer shared.Unlock()
	if d := shared.daemons[o]; d != nil {
		return d
	}
	if err := shared.errs[o]; err != nil {
		tb.Fatalf("libvirttest: %v", err)
	}
	d, err := Start(o)
	if err != nil {
		if shared.errs == nil {
			shared.errs = map[Options]error{}
		}
		shared.errs[o] = err
		tb.Fatalf("libvirttest: %v", err)
	}
	if shared.daemons == nil {
		shared.daemons = map[Options]*Daemon{}
	}
	shared.daemons[o] = d
	return d
}

// Cleanup stops the shared daemons; TestMain calls it after the tests.
func Cleanup() {
	shared.Lock()
	defer shared.Unlock()
	for o, d := range shared.daemons {
		d.Stop()
		delete(shared.daemons, o)
	}
}

// readyTimeout bounds how long Start waits for a daemon to answer: it
// probes QEMU first, which takes seconds, more on a loaded machine.
const readyTimeout = 2 * time.Minute

// Start starts a daemon and returns once it answers. Stop ends it; it
// also dies with the test process (the launcher has a parent-death
// signal and kills the namespace's init when it dies).
func Start(o Options) (*Daemon, error) {
	dir, err := os.MkdirTemp("", "paddock-libvirtd-")
	if err != nil {
		return nil, err
	}
	d := &Daemon{Name: "local", Dir: dir}
	if o.Remote {
		d.Name = "remote"
	}
	ok := false
	defer func() {
		if !ok {
			d.Stop()
		}
	}()
	// libvirt-qemu (QEMU's user) must traverse to the pool's volumes.
	for _, sub := range []string{"etc", "lib", "log/qemu", "cache", "sock"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.Command("cp", "-a", "/etc/libvirt/.", filepath.Join(dir, "etc")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy /etc/libvirt: %v: %s", err, out)
	}
	conf := []string{`listen_tls = 0`, `auth_unix_rw = "none"`, `auth_unix_ro = "none"`}
	var argv []string
	if o.Remote {
		if err := d.makeNetNS(); err != nil {
			return nil, err
		}
		if err := d.setupSSH(); err != nil {
			return nil, fmt.Errorf("the remote daemon's sshd: %w", err)
		}
		conf = append(conf, `listen_tcp = 1`, `auth_tcp = "none"`, fmt.Sprintf("listen_addr = %q", d.Addr))
		d.URI = fmt.Sprintf("qemu+tcp://%s/system", d.Addr)
		argv = []string{"ip", "netns", "exec", d.NetNS}
	} else {
		conf = append(conf, `listen_tcp = 0`, fmt.Sprintf("unix_sock_dir = %q", filepath.Join(dir, "sock")))
		d.URI = "qemu:///system?socket=" + filepath.Join(dir, "sock", "libvirt-sock")
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "libvirtd.conf"), []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	script := startScript
	if o.Remote {
		script = strings.Replace(script, "#REMOTE ", "", -1)
	}
	argv = append(argv, "unshare", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private",
		"sh", "-ec", script, "sh", dir)
	if o.Remote {
		argv = append(argv, "--listen")
	}
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	// The parent-death signal comes when the thread that started the
	// launcher ends, not the process, and the Go runtime ends a thread
	// whenever a goroutine locked to it returns (paddock discards
	// threads so: network namespaces). Start it from a thread locked
	// until it exits.
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := d.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		d.cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s libvirtd: %w", d.Name, err)
	}
	d.exited = exited
	if err := d.waitReady(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
		sshdLog, _ := os.ReadFile(filepath.Join(dir, "ssh", "sshd.log"))
		return nil, fmt.Errorf("%s libvirtd: %w\n%s%s", d.Name, err, tail(string(log), 30), tail(string(sshdLog), 10))
	}
	ok = true
	return d, nil
}

// startScript runs in the new mount and PID namespaces, as sh -ec SCRIPT
// sh DIR [libvirtd flags]: it puts the daemon's private directories in
// place, starts virtlogd and execs tini (PID 1) running libvirtd, their
// pid files in the private /run/libvirt (not /run: other daemons). A
// remote daemon (#REMOTE lines) also gets a private /run/libvirt and
// /tmp, so that nothing of the test's files is visible to it, and an
// sshd with DIR/ssh as its /etc/ssh (sshd.go); sshd returns once it
// listens, and stays, reparented to tini.
const startScript = `d=$1; shift
mount --bind "$d/etc" /etc/libvirt
mount --bind "$d/lib" /var/lib/libvirt
mount --bind "$d/log" /var/log/libvirt
mount --bind "$d/cache" /var/cache/libvirt
mkdir -p /run/libvirt
mount -t tmpfs -o mode=0755 tmpfs /run/libvirt
#REMOTE mount --bind "$d/ssh" /etc/ssh
#REMOTE mkdir -p /run/sshd
#REMOTE mount -t tmpfs -o mode=1777 tmpfs /tmp
#REMOTE /usr/sbin/sshd -f /etc/ssh/sshd_config -E /etc/ssh/sshd.log
virtlogd -d -p /run/libvirt/virtlogd.pid
exec tini -s -- libvirtd -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid "$@"
`

// waitReady waits until the daemon answers a libvirt connection, or it
// died, or readyTimeout passes. There is nothing to wait on but the
// daemon answering, so it tries every 100 ms.
func (d *Daemon) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			return fmt.Errorf("exited at once (%v)", d.cmd.ProcessState)
		default:
		}
		c, err := libvirt.Connect(d.Host(d.Name))
		if err == nil {
			_, err = c.Facts()
			c.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("did not answer within %s: %v", readyTimeout, last)
}

// makeNetNS makes the network namespace of a remote daemon and a veth
// pair to it, with a /30 of 10.231.0.0/16 that no interface here has.
func (d *Daemon) makeNetNS() error {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	id := hex.EncodeToString(b[:])
	d.NetNS = "paddock-lv-" + id
	d.hostVeth = "pdlv" + id
	nsVeth := "pdlvn" + id[:6]
	// A /30 whose network address is 4*n in 10.231.0.0/16.
	n := (int(b[0])<<8 | int(b[1])) & 0x3fff
	hostIP := net.IPv4(10, 231, byte(n>>6), byte(n&0x3f)<<2|1)
	d.Addr = net.IPv4(10, 231, byte(n>>6), byte(n&0x3f)<<2|2).String()
	steps := [][]string{
		{"ip", "netns", "add", d.NetNS},
		{"ip", "link", "add", d.hostVeth, "type", "veth", "peer", "name", nsVeth},
		{"ip", "link", "set", nsVeth, "netns", d.NetNS},
		{"ip", "addr", "add", hostIP.String() + "/30", "dev", d.hostVeth},
		{"ip", "link", "set", d.hostVeth, "up"},
		{"ip", "-n", d.NetNS, "addr", "add", d.Addr + "/30", "dev", nsVeth},
		{"ip", "-n", d.NetNS, "link", "set", nsVeth, "up"},
		{"ip", "-n", d.NetNS, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return nil
}

// Stop kills the daemon (its namespace's init, so every process there
// dies: virtlogd, QEMU) and removes what it had.
func (d *Daemon) Stop() {
	if d.exited != nil {
		// unshare ignores SIGTERM while its child runs; killed, it
		// kills the child (--kill-child), the namespace's init.
		d.cmd.Process.Kill()
		<-d.exited
	}
	if d.hostVeth != "" {
		exec.Command("ip", "link", "del", d.hostVeth).Run()
	}
	if d.NetNS != "" {
		exec.Command("ip", "netns", "del", d.NetNS).Run()
	}
	if d.Dir != "" {
		os.RemoveAll(d.Dir)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// guest and diskGuest are the Debian guests, each prepared once per test
// process.
var guest, diskGuest struct {
	once sync.Once
	g    *images.Guest
	err  error
}

// GuestMarker is what the hello guest prints once its /init runs.
const GuestMarker = "paddock hello guest:"

// Guest returns Debian's stock kernel and the hello initrd (images,
// built once into paddock's cache): the guest libvirt tests boot. Its
// /init starts a shell on the console and powers off on the ACPI power
// button.
func Guest(tb testing.TB) *images.Guest {
	tb.Helper()
	testenv.RequireTool(tb, "apt-get", "apt")
	guest.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		guest.g, guest.err = images.PrepareGuest(ctx, images.GuestOptions{})
	})
	if guest.err != nil {
		tb.Fatalf("libvirttest: the Debian guest: %v", guest.err)
	}
	return guest.g
}

// DiskGuest is Guest whose initrd also loads the virtio disk and network
// drivers (virtio_pci, virtio_blk, virtio_net): its shell sees the VM's
// disks as /dev/vda, /dev/vdb, ... and its NICs as eth0, ...
func DiskGuest(tb testing.TB) *images.Guest {
	tb.Helper()
	base := Guest(tb)
	diskGuest.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		ix, err := kmod.Open(base.Kernel.ModulesDir)
		if err != nil {
			diskGuest.err = err
			return
		}
		mods, err := ix.Resolve(ctx, append(slices.Clone(hello.PowerButtonModules), "virtio_pci", "virtio_blk", "virtio_net")...)
		if err != nil {
			diskGuest.err = err
			return
		}
		var paths []string
		for _, m := range mods {
			paths = append(paths, m.Path)
		}
		diskGuest.g, diskGuest.err = images.PrepareGuest(ctx, images.GuestOptions{Hello: hello.Options{
			Modules: &initramfs.Modules{Dir: base.Kernel.ModulesDir, Release: base.Kernel.Release, Paths: paths},
		}})
	})
	if diskGuest.err != nil {
		tb.Fatalf("libvirttest: the Debian guest with virtio disks and NICs: %v", diskGuest.err)
	}
	return diskGuest.g
}
