// Package netdev is paddock's host networking: tap devices with a
// virtio-net header (an existing tap, or one paddock creates), attaching
// taps to Linux bridges, and MAC addresses.
//
// A tap paddock creates is not persistent: the kernel destroys it (and
// removes it from its bridge) when the last file descriptor on it is
// closed, which happens when the VMM process exits for any reason,
// SIGKILL and crashes included. Nothing is left behind to clean up.
//
// Everything here uses plain ioctls through golang.org/x/sys/unix and
// reads /sys/class/net; it needs CAP_NET_ADMIN to create taps and change
// bridges.
package netdev

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Errors, for errors.Is.
var (
	// ErrNotFound: no network interface has the name.
	ErrNotFound = errors.New("no such network interface")
	// ErrExists: an interface already has the name paddock wanted to
	// create.
	ErrExists = errors.New("network interface already exists")
	// ErrBusy: the tap is attached to another process.
	ErrBusy = errors.New("tap is in use by another process")
	// ErrNotTap: the interface exists but is not a tap device.
	ErrNotTap = errors.New("not a tap device")
	// ErrNotBridge: the interface exists but is not a bridge.
	ErrNotBridge = errors.New("not a bridge")
)

// MaxNameLen is the longest interface name (IFNAMSIZ - 1).
const MaxNameLen = unix.IFNAMSIZ - 1

// CheckName validates an interface name as the kernel would.
func CheckName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("interface name %q is not valid", name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("interface name %q is longer than %d bytes", name, MaxNameLen)
	case strings.ContainsAny(name, "/: \t\n") || strings.ContainsRune(name, 0):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", name)
	}
	return nil
}

// The checks below use ioctls, not /sys/class/net: sysfs shows the
// network namespace it was mounted in, an ioctl the calling thread's.

// Exists reports whether an interface named name exists.
func Exists(name string) bool {
	if CheckName(name) != nil {
		return false
	}
	_, err := Index(name)
	return err == nil
}

// driverInfo returns the interface's driver and bus names (ethtool).
func driverInfo(name string) (driver, bus string, err error) {
	if err := CheckName(name); err != nil {
		return "", "", err
	}
	fd, err := ifaceSocket()
	if err != nil {
		return "", "", err
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, name)
	if errors.Is(err, unix.ENODEV) {
		return "", "", fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err != nil {
		return "", "", fmt.Errorf("%s: driver information: %w", name, err)
	}
	return unix.ByteSliceToString(info.Driver[:]), unix.ByteSliceToString(info.Bus_info[:]), nil
}

// IsBridge returns nil if the interface is a Linux bridge, else an error
// wrapping ErrNotFound or ErrNotBridge.
func IsBridge(name string) error {
	driver, _, err := driverInfo(name)
	if err != nil {
		return fmt.Errorf("bridge %w", err)
	}
	if driver != "bridge" {
		return fmt.Errorf("%s (driver %s): %w", name, driver, ErrNotBridge)
	}
	return nil
}

// IsTap returns nil if the interface is a tap device, else an error
// wrapping ErrNotFound or ErrNotTap.
func IsTap(name string) error {
	driver, bus, err := driverInfo(name)
	if err != nil {
		return fmt.Errorf("tap %w", err)
	}
	switch {
	case driver != "tun":
		return fmt.Errorf("%s (driver %s): %w", name, driver, ErrNotTap)
	case bus != "tap":
		return fmt.Errorf("%s is a tun (layer 3) device: %w", name, ErrNotTap)
	}
	return nil
}

// ifaceSocket returns a datagram socket for interface ioctls.
func ifaceSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket for interface ioctls: %w", err)
	}
	return fd, nil
}

// SetUp brings the interface up (IFF_UP).
func SetUp(name string) error {
	fd, err := ifaceSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: get flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: bring up: %w", name, err)
	}
	return nil
}

// Index returns the interface's index.
func Index(name string) (int, error) {
	fd, err := ifaceSocket()
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return 0, fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		return 0, fmt.Errorf("%s: index: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

// AddToBridge makes the interface a port of the bridge and brings it up.
func AddToBridge(name, bridge string) error {
	if err := IsBridge(bridge); err != nil {
		return err
	}
	idx, err := Index(name)
	if err != nil {
		return err
	}
	fd, err := ifaceSocket()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(bridge)
	if err != nil {
		return fmt.Errorf("%s: %w", bridge, err)
	}
	ifr.SetUint32(uint32(idx))
	if err := unix.IoctlIfreq(fd, unix.SIOCBRADDIF, ifr); err != nil {
		return fmt.Errorf("add %s to bridge %s: %w", name, bridge, err)
	}
	return SetUp(name)
}
