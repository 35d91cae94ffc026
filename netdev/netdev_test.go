package netdev_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/netnstest"
)

func TestParseMAC(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"52:54:00:12:34:56", "52:54:00:12:34:56", true},
		{"02-AB-cd-00-00-01", "02:ab:cd:00:00:01", true},
		{"00:00:00:00:00:00", "", false},
		{"01:00:5e:00:00:01", "", false}, // multicast
		{"ff:ff:ff:ff:ff:ff", "", false},
		{"52:54:00:12:34", "", false},
		{"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "", false},
		{"hello", "", false},
	}
	for _, tc := range tests {
		m, err := netdev.ParseMAC(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseMAC(%q): %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && m.String() != tc.want {
			t.Errorf("ParseMAC(%q) = %s, want %s", tc.in, m, tc.want)
		}
	}
}

func TestGenerateMAC(t *testing.T) {
	seen := map[netdev.MAC]string{}
	for _, seed := range []string{"web-1/0", "web-1/1", "web-2/0", "", "a"} {
		m := netdev.GenerateMAC(seed)
		if m != netdev.GenerateMAC(seed) {
			t.Fatalf("GenerateMAC(%q) is not stable", seed)
		}
		if !m.Local() || m.Multicast() {
			t.Errorf("GenerateMAC(%q) = %s: want a locally administered unicast address", seed, m)
		}
		if other, dup := seen[m]; dup {
			t.Errorf("seeds %q and %q give the same MAC %s", seed, other, m)
		}
		seen[m] = seed
		if _, err := netdev.ParseMAC(m.String()); err != nil {
			t.Errorf("generated %s does not parse: %v", m, err)
		}
	}
}

func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{
		"tap0": true, "pd1234abcd-0": true, "123456789012345": true,
		"": false, "1234567890123456": false, "a/b": false, "a b": false, "eth0:1": false, "..": false,
	} {
		if err := netdev.CheckName(name); (err == nil) != ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

// inNS runs fn in the namespace and fails the test on its error.
func inNS(t *testing.T, ns *netnstest.NS, fn func() error) {
	t.Helper()
	if err := ns.Do(fn); err != nil {
		t.Fatal(err)
	}
}

func TestCreateTapOnBridge(t *testing.T) {
	ns := netnstest.New(t)
	ns.Bridge(t, "br0")
	var tap *netdev.Tap
	inNS(t, ns, func() error {
		var err error
		if tap, err = netdev.CreateTap("pdtest%d"); err != nil {
			return err
		}
		if err := netdev.IsTap(tap.Name()); err != nil {
			return err
		}
		return netdev.AddToBridge(tap.Name(), "br0")
	})
	if !strings.HasPrefix(tap.Name(), "pdtest") || !tap.Created() {
		t.Fatalf("tap %q, created=%v", tap.Name(), tap.Created())
	}
	link := ns.IP(t, "-d", "link", "show", tap.Name())
	for _, want := range []string{"master br0", "tun type tap", "<BROADCAST,MULTICAST,UP"} {
		if !strings.Contains(link, want) {
			t.Errorf("ip link show %s lacks %q:\n%s", tap.Name(), want, link)
		}
	}
	if err := tap.Close(); err != nil {
		t.Fatal(err)
	}
	inNS(t, ns, func() error {
		if netdev.Exists(tap.Name()) {
			return fmt.Errorf("tap %s still exists after Close", tap.Name())
		}
		return nil
	})
}

func TestTapErrors(t *testing.T) {
	ns := netnstest.New(t)
	ns.Bridge(t, "br0")
	ns.Veth(t, "ve0", "ve1", "")
	ns.IP(t, "tuntap", "add", "tap7", "mode", "tap")
	ns.IP(t, "tuntap", "add", "tun7", "mode", "tun")
	inNS(t, ns, func() error {
		first, err := netdev.OpenTap("tap7")
		if err != nil {
			return err
		}
		defer first.Close()
		if first.Created() {
			return errors.New("an existing tap reports it was created")
		}
		checks := []struct {
			what string
			err  error
			want error
		}{
			{"second open of a busy tap", open("tap7"), netdev.ErrBusy},
			{"missing tap", open("nosuchtap"), netdev.ErrNotFound},
			{"a bridge as tap", open("br0"), netdev.ErrNotTap},
			{"a tun as tap", open("tun7"), netdev.ErrNotTap},
			{"create an existing name", create("ve0"), netdev.ErrExists},
			{"missing bridge", netdev.AddToBridge("tap7", "nosuchbr"), netdev.ErrNotFound},
			{"a veth as bridge", netdev.AddToBridge("tap7", "ve1"), netdev.ErrNotBridge},
			{"bridge a missing interface", netdev.AddToBridge("nosuch", "br0"), netdev.ErrNotFound},
		}
		for _, c := range checks {
			if !errors.Is(c.err, c.want) {
				return fmt.Errorf("%s: %v, want %v", c.what, c.err, c.want)
			}
		}
		return nil
	})
	// Closing an attached persistent tap leaves it in place.
	ns.IP(t, "link", "show", "tap7")
}

func open(name string) error {
	tap, err := netdev.OpenTap(name)
	if err == nil {
		tap.Close()
	}
	return err
}

func create(name string) error {
	tap, err := netdev.CreateTap(name)
	if err == nil {
		tap.Close()
	}
	return err
}

// frame builds an Ethernet frame with a test EtherType and a payload.
func frame(dst, src netdev.MAC, payload string) []byte {
	f := append(append(append([]byte(nil), dst[:]...), src[:]...), 0x88, 0xb5) // local experimental EtherType
	return append(f, payload...)
}

func isTest(f []byte) bool { return len(f) >= 14 && f[12] == 0x88 && f[13] == 0xb5 }

// TestFrames: frames sent on the bridge reach a tap reader with a
// virtio-net header; frames written to the tap appear on the bridge.
func TestFrames(t *testing.T) {
	ns := netnstest.New(t)
	ns.Bridge(t, "br0")
	ns.Veth(t, "ve0", "ve1", "br0")
	var tap *netdev.Tap
	inNS(t, ns, func() error {
		var err error
		if tap, err = netdev.CreateTap("pdframes"); err != nil {
			return err
		}
		return netdev.AddToBridge(tap.Name(), "br0")
	})
	defer tap.Close()
	sock := ns.OpenPacketSocket(t, "ve1", 5000)
	guest := netdev.GenerateMAC("guest")
	host := netdev.GenerateMAC("host")

	// Host to tap. The bridge floods to unknown destinations.
	in := frame(guest, host, "hello tap")
	if err := sock.Send(in); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for {
		n, err := tap.Read([][]byte{buf[:netdev.VnetHdrLen], buf[netdev.VnetHdrLen:]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := buf[netdev.VnetHdrLen:n]
		if !isTest(got) {
			continue // IPv6 router solicitations and the like
		}
		if !bytes.Equal(got, in) {
			t.Fatalf("tap read %x, want %x", got, in)
		}
		if hdr := buf[:netdev.VnetHdrLen]; !bytes.Equal(hdr, make([]byte, netdev.VnetHdrLen)) {
			t.Errorf("vnet header % x for a plain frame, want zeros", hdr)
		}
		break
	}

	// Tap to host.
	out := frame(host, guest, "hello bridge")
	if _, err := tap.Write([][]byte{make([]byte, netdev.VnetHdrLen), out}); err != nil {
		t.Fatal(err)
	}
	got, err := sock.Recv(func(f []byte) bool { return isTest(f) && bytes.Contains(f, []byte("hello bridge")) })
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, out) {
		t.Fatalf("host received %x, want %x", got, out)
	}

	// With nothing queued, Read calls idle before it waits; a frame
	// sent from idle is then read.
	idles := 0
	late := frame(guest, host, "after idle")
	for {
		n, err := tap.Read([][]byte{buf}, func() {
			if idles++; idles == 1 {
				if err := sock.Send(late); err != nil {
					t.Error(err)
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := buf[netdev.VnetHdrLen:n]; isTest(got) {
			if !bytes.Equal(got, late) {
				t.Fatalf("tap read %x, want %x", got, late)
			}
			break
		}
	}
	if idles == 0 { // more than once if a stray frame came between
		t.Fatal("idle was not called")
	}

	// A blocked reader is released by Interrupt.
	done := make(chan error, 1)
	go func() {
		_, err := tap.Read([][]byte{buf}, nil)
		for err == nil { // drop stray frames until interrupted
			_, err = tap.Read([][]byte{buf}, nil)
		}
		done <- err
	}()
	tap.Interrupt()
	select {
	case err := <-done:
		if !errors.Is(err, netdev.ErrInterrupted) {
			t.Fatalf("interrupted read: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Interrupt did not release the reader")
	}
	tap.Rearm()
	if err := tap.SetOffload(netdev.OffloadCsum | netdev.OffloadTSO4 | netdev.OffloadTSO6); err != nil {
		t.Fatal(err)
	}
}

// childEnv makes the test binary a child that creates a tap in the named
// namespace, attaches it to br0, prints its name and waits to be killed.
const childEnv = "PADDOCK_NETDEV_TEST_CHILD"

func TestMain(m *testing.M) {
	if ns := os.Getenv(childEnv); ns != "" {
		os.Exit(child(ns))
	}
	os.Exit(m.Run())
}

func child(ns string) int {
	// Setns moves only this thread; the goroutine must stay on it.
	runtime.LockOSThread()
	fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY, 0)
	if err == nil {
		err = unix.Setns(fd, unix.CLONE_NEWNET)
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	tap, err := netdev.CreateTap("pdcrash%d")
	if err == nil {
		err = netdev.AddToBridge(tap.Name(), "br0")
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("tap", tap.Name())
	select {}
}

// TestCreatedTapVanishesWhenVMMDies kills a process holding a created tap
// with SIGKILL: the kernel removes the tap and its bridge port.
func TestCreatedTapVanishesWhenVMMDies(t *testing.T) {
	ns := netnstest.New(t)
	ns.Bridge(t, "br0")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+ns.Name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("child: %v", err)
	}
	name, ok := strings.CutPrefix(strings.TrimSpace(line), "tap ")
	if !ok {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %s", line)
	}
	if !strings.Contains(ns.IP(t, "link", "show", name), "master br0") {
		t.Fatalf("child's tap %s is not on br0", name)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The process is reaped, so its files are closed: the tap is gone.
	inNS(t, ns, func() error {
		if netdev.Exists(name) {
			return fmt.Errorf("tap %s survived the SIGKILL of its VMM", name)
		}
		return nil
	})
	if out := ns.IP(t, "link", "show", "master", "br0"); strings.Contains(out, name) {
		t.Fatalf("br0 still lists %s:\n%s", name, out)
	}
}

// TestTapFromFD makes a Tap of a created tap's descriptor, as a VMM
// handed one does: it learns the tap's name, carries frames, keeps the
// tap after the creator closes its own descriptor, and the tap goes with
// the last one. A descriptor of anything else is refused, and closed.
func TestTapFromFD(t *testing.T) {
	ns := netnstest.New(t)
	ns.Bridge(t, "br0")
	ns.Veth(t, "ve0", "ve1", "br0")
	var orig *netdev.Tap
	inNS(t, ns, func() error {
		var err error
		if orig, err = netdev.CreateTap("pdhanded"); err != nil {
			return err
		}
		return netdev.AddToBridge(orig.Name(), "br0")
	})
	fd, err := unix.Dup(int(orig.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	handed, err := netdev.TapFromFD(fd, true)
	if err != nil {
		t.Fatal(err)
	}
	if handed.Name() != "pdhanded" || !handed.Created() {
		t.Errorf("handed tap %q, created %v", handed.Name(), handed.Created())
	}
	if err := orig.Close(); err != nil {
		t.Fatal(err)
	}
	ns.IP(t, "link", "show", "pdhanded") // the handed descriptor keeps it
	sock := ns.OpenPacketSocket(t, "ve1", 5000)
	out := frame(netdev.GenerateMAC("host"), netdev.GenerateMAC("guest"), "handed over")
	if _, err := handed.Write([][]byte{make([]byte, netdev.VnetHdrLen), out}); err != nil {
		t.Fatal(err)
	}
	if _, err := sock.Recv(func(f []byte) bool { return isTest(f) && bytes.Contains(f, []byte("handed over")) }); err != nil {
		t.Fatal(err)
	}
	// Reads go through the poller again: Interrupt releases a blocked one.
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		_, err := handed.Read([][]byte{buf}, nil)
		for err == nil {
			_, err = handed.Read([][]byte{buf}, nil)
		}
		done <- err
	}()
	handed.Interrupt()
	select {
	case err := <-done:
		if !errors.Is(err, netdev.ErrInterrupted) {
			t.Fatalf("interrupted read: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Interrupt did not release the reader of a handed tap")
	}
	if err := handed.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := ns.Try("ip", "link", "show", "pdhanded"); err == nil {
		t.Fatalf("the tap outlived its last descriptor:\n%s", out)
	}

	null, err := unix.Open(os.DevNull, unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := netdev.TapFromFD(null, false); err == nil || !strings.Contains(err.Error(), "is not a tap device") {
		t.Errorf("TapFromFD of /dev/null: %v", err)
	}
	if _, err := unix.FcntlInt(uintptr(null), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("the refused descriptor is still open: %v", err)
	}
}
