package netdev

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// VnetHdrLen is the size of the virtio-net header a Tap exchanges with
// every frame (struct virtio_net_hdr_v1, num_buffers included).
const VnetHdrLen = 12

// Offload flags for SetOffload (TUN_F_*): what the reader of the tap
// accepts in frames the kernel hands it.
const (
	OffloadCsum   = unix.TUN_F_CSUM // partial checksums
	OffloadTSO4   = unix.TUN_F_TSO4
	OffloadTSO6   = unix.TUN_F_TSO6
	OffloadTSOECN = unix.TUN_F_TSO_ECN
	OffloadUFO    = unix.TUN_F_UFO
)

// tunDevice is the clone device for taps.
const tunDevice = "/dev/net/tun"

// Tap is an open tap device whose frames carry a virtio-net header
// (IFF_VNET_HDR, VnetHdrLen bytes). Reads and writes go through Go's
// poller, so a goroutine blocked on a Tap holds no OS thread. It is safe
// for one reader and one writer at a time.
type Tap struct {
	name    string
	created bool
	f       *os.File
	rc      syscall.RawConn
}

// OpenTap attaches to the existing tap device name (created by an
// administrator, e.g. `ip tuntap add NAME mode tap`). It fails with
// ErrNotFound, ErrNotTap or ErrBusy (another process has it open).
func OpenTap(name string) (*Tap, error) {
	if err := IsTap(name); err != nil {
		return nil, err
	}
	return openTun(name, false)
}

// CreateTap creates a new, non-persistent tap device and brings it up.
// name may end in "%d" for the kernel to pick a free number. It fails
// with ErrExists if the name is taken. The tap disappears when the Tap
// is closed or the process exits.
func CreateTap(name string) (*Tap, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if Exists(name) {
		return nil, fmt.Errorf("tap %s: %w", name, ErrExists)
	}
	t, err := openTun(name, true)
	if err != nil {
		return nil, err
	}
	if err := SetUp(t.name); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// CreateTapFor creates a tap (CreateTap) for a NIC with the MAC: named
// pdXXXXXXXX after the MAC's last four bytes, so that it is easy to match
// with its VM, or pdtapN if that name is taken.
func CreateTapFor(mac MAC) (*Tap, error) {
	t, err := CreateTap(fmt.Sprintf("pd%02x%02x%02x%02x", mac[2], mac[3], mac[4], mac[5]))
	if errors.Is(err, ErrExists) {
		t, err = CreateTap("pdtap%d")
	}
	return t, err
}

// openTun opens /dev/net/tun and binds it to the tap name.
func openTun(name string, create bool) (*Tap, error) {
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tap %s: open %s: %w", name, tunDevice, err)
	}
	fail := func(err error) (*Tap, error) {
		unix.Close(fd)
		return nil, err
	}
	features, err := unix.IoctlGetUint32(fd, unix.TUNGETFEATURES)
	if err != nil {
		return fail(fmt.Errorf("tap %s: TUNGETFEATURES: %w", name, err))
	}
	if features&unix.IFF_VNET_HDR == 0 {
		return fail(fmt.Errorf("tap %s: this kernel's tun driver lacks IFF_VNET_HDR", name))
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fail(fmt.Errorf("tap %s: %w", name, err))
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		switch {
		case errors.Is(err, unix.EBUSY):
			return fail(fmt.Errorf("tap %s: %w", name, ErrBusy))
		case errors.Is(err, unix.EPERM):
			return fail(fmt.Errorf("tap %s: not permitted (it belongs to another user, or paddock lacks CAP_NET_ADMIN): %w", name, err))
		case errors.Is(err, unix.EINVAL) && !create:
			return fail(fmt.Errorf("tap %s: attach: %w (a multi-queue tap is not supported)", name, err))
		}
		return fail(fmt.Errorf("tap %s: TUNSETIFF: %w", name, err))
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
		return fail(fmt.Errorf("tap %s: TUNSETVNETHDRSZ: %w", name, err))
	}
	t := &Tap{name: ifr.Name(), created: create, f: os.NewFile(uintptr(fd), tunDevice)}
	if t.rc, err = t.f.SyscallConn(); err != nil {
		t.f.Close()
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	return t, nil
}

// Name is the tap's interface name.
func (t *Tap) Name() string { return t.name }

// Created reports whether paddock created the tap (and so it vanishes on
// Close).
func (t *Tap) Created() bool { return t.created }

// SetOffload tells the kernel which offloads (Offload* flags) the reader
// accepts: with OffloadCsum and OffloadTSO4 the kernel hands over large
// TCP segments with partial checksums, described in the virtio-net
// header, instead of doing the work itself.
func (t *Tap) SetOffload(flags int) error {
	var err error
	cerr := t.rc.Control(func(fd uintptr) {
		err = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, flags)
	})
	if cerr != nil {
		return fmt.Errorf("tap %s: %w", t.name, cerr)
	}
	if err != nil {
		return fmt.Errorf("tap %s: TUNSETOFFLOAD %#x: %w", t.name, flags, err)
	}
	return nil
}

// ErrInterrupted is returned by Read after Interrupt.
var ErrInterrupted = errors.New("tap read interrupted")

// Read reads one frame (virtio-net header first) into bufs, blocking
// until one arrives. A frame larger than bufs is truncated. If no frame
// is queued, Read calls idle (if not nil) before it blocks: the place to
// finish the work of a burst, such as interrupting the guest once for
// all the frames read so far.
func (t *Tap) Read(bufs [][]byte, idle func()) (int, error) {
	var n int
	var err error
	rerr := t.rc.Read(func(fd uintptr) bool {
		n, err = unix.Readv(int(fd), bufs)
		if !errors.Is(err, unix.EAGAIN) {
			return true
		}
		if idle != nil {
			// Once per wait: a frame that arrives meanwhile wakes
			// the poller, and the next try reads it.
			idle()
			idle = nil
		}
		return false
	})
	if rerr != nil {
		if errors.Is(rerr, os.ErrDeadlineExceeded) {
			return 0, ErrInterrupted
		}
		return 0, fmt.Errorf("tap %s: read: %w", t.name, rerr)
	}
	if err != nil {
		return 0, fmt.Errorf("tap %s: read: %w", t.name, err)
	}
	return n, nil
}

// Write sends one frame (virtio-net header first) gathered from bufs.
func (t *Tap) Write(bufs [][]byte) (int, error) {
	var n int
	var err error
	werr := t.rc.Write(func(fd uintptr) bool {
		n, err = unix.Writev(int(fd), bufs)
		return !errors.Is(err, unix.EAGAIN)
	})
	if werr != nil {
		return 0, fmt.Errorf("tap %s: write: %w", t.name, werr)
	}
	if err != nil {
		return 0, fmt.Errorf("tap %s: write: %w", t.name, err)
	}
	return n, nil
}

// Interrupt makes a blocked Read (and later ones) return ErrInterrupted,
// until Rearm.
func (t *Tap) Interrupt() { _ = t.f.SetReadDeadline(time.Unix(1, 0)) }

// Rearm undoes Interrupt.
func (t *Tap) Rearm() { _ = t.f.SetReadDeadline(time.Time{}) }

// Close closes the tap; a tap paddock created disappears.
func (t *Tap) Close() error {
	if err := t.f.Close(); err != nil {
		return fmt.Errorf("tap %s: close: %w", t.name, err)
	}
	return nil
}

// File is the tap's open file, for handing it to another process (which
// makes a Tap of it with TapFromFD). It stays the Tap's.
func (t *Tap) File() *os.File { return t.f }

// TapFromFD makes a Tap of fd, a tap device's descriptor another process
// opened (OpenTap, CreateTap) and handed over: it checks that fd is a tap
// that exchanges virtio-net headers and learns its name from it. created
// says the other process created the tap (it disappears with its last
// descriptor). TapFromFD takes fd over: it is closed with the Tap, or at
// once if TapFromFD fails.
func TapFromFD(fd int, created bool) (*Tap, error) {
	fail := func(err error) (*Tap, error) {
		unix.Close(fd)
		return nil, err
	}
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return fail(fmt.Errorf("tap descriptor %d: %w", fd, err))
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return fail(fmt.Errorf("descriptor %d is not a tap device: TUNGETIFF: %w", fd, err))
	}
	name := ifr.Name()
	if flags := ifr.Uint16(); flags&unix.IFF_TAP == 0 || flags&unix.IFF_VNET_HDR == 0 || flags&unix.IFF_NO_PI == 0 {
		return fail(fmt.Errorf("tap %s (descriptor %d): not a tap with virtio-net headers (flags %#x)", name, fd, flags))
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
		return fail(fmt.Errorf("tap %s: TUNSETVNETHDRSZ: %w", name, err))
	}
	// Handing a file over can leave it blocking (os/exec does); the
	// poller needs it non-blocking.
	if err := unix.SetNonblock(fd, true); err != nil {
		return fail(fmt.Errorf("tap %s: %w", name, err))
	}
	unix.CloseOnExec(fd)
	t := &Tap{name: name, created: created, f: os.NewFile(uintptr(fd), tunDevice)}
	if t.rc, err = t.f.SyscallConn(); err != nil {
		t.f.Close()
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	return t, nil
}
