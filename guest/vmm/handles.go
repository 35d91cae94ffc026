package vmm

import (
	"errors"
	"fmt"
	"os"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/guest/network"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/boot"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/hostnet"
)

// Handles are the host resources a VM's machines run on, opened once for
// the VMM's whole run: by OpenHandles, in the VMM or in the paddock
// command that starts it, which hands them over as descriptors
// (fdtable.go). Every machine of the run — the first boot, each boot
// after a guest reboot or a restart, a restore — is built on the same
// handles; nothing is opened by path again while the VM runs.
type Handles struct {
	// KVM is the KVM device.
	KVM *kvm.System
	// VM, if set, is the VM the next machine is built on, being created
	// ahead (CreateVMAhead); the machine takes it over.
	VM *kvm.VMAhead
	// Kernel and Initrd are the spec's kernel and initrd (Initrd nil
	// without one).
	Kernel, Initrd *os.File
	// Disks are the spec's disks, index by index, then the cloud-init
	// seed volume if the VM has one; each Image open with its locks.
	Disks []Disk
	// NICs are the spec's NICs, index by index, each with its tap.
	NICs []machine.NIC
	// Network is the VM's attachment to its managed networks, held for
	// the VMM's life; nil without NICs on managed networks.
	Network *network.Attachment
	// Warm, for a warm clone's first start, is its warm template's saved
	// machine, which the first machine is restored from (and takes
	// over); nil otherwise.
	Warm *WarmFiles
	// ConsoleLog, if set, are the files of the spec's console.log, opened
	// by the command that starts a jailed VMM, which cannot reach a log
	// outside its VM's directory (console.OpenLogFiles: the log, then
	// each rotated file); nil: the VMM opens the log by path.
	ConsoleLog []*os.File
}

// Disk is one of a VM's disk images, open.
type Disk struct {
	// Image is the open image, holding its locks (disk/imagefile).
	Image disk.Image
	// Path is the image's path, which names it in messages.
	Path string
	// Guard says the image is raw by detection (see machine.Disk).
	Guard bool
}

// NIC is a spec's NIC resolved for this host (ResolveNICs): the tap to
// attach to, the bridge to put a new tap on, or the open tap a managed
// network made (exactly one is set), and the guest's MAC address.
type NIC struct {
	Tap    string
	Bridge string
	Open   *netdev.Tap
	MAC    netdev.MAC
}

// OpenOptions say how OpenHandles opens a VM's resources.
type OpenOptions struct {
	// KVMPath is the KVM device; empty means kvm.DefaultPath.
	KVMPath string
	// Formats are the disks' pinned formats (PinFormats); nil detects
	// each format the spec leaves out (paddock run).
	Formats []string
	// Backing confines the backing chains of disks, index by index
	// (OverlayBacking); a missing or nil entry leaves the disk as the
	// spec says.
	Backing []*disk.BackingPolicy
	// Seed, if set, is the VM's cloud-init seed volume (an ISO 9660
	// image), attached read-only after its disks.
	Seed string
	// NICs are the spec's NICs resolved (ResolveNICs, AttachNetworks),
	// one for each.
	NICs []NIC
	// Network is the managed-network attachment AttachNetworks made;
	// the handles take it over (Close closes it, as does a failed
	// OpenHandles).
	Network *network.Attachment
}

// OpenHandles opens what vm's machines need: the KVM device, the kernel
// and initrd, each disk image (in its pinned format, with its locks:
// shared for a read-only disk, exclusive otherwise), the seed volume,
// and a tap for each NIC (an existing one, or one it creates on the
// NIC's bridge, which disappears with the last descriptor of it). On
// error everything opened so far is closed again.
// Precondition: vm has been through FillDefaults and Validate.
func OpenHandles(vm *configs.VM, o OpenOptions) (_ *Handles, err error) {
	h := &Handles{Network: o.Network}
	defer func() {
		if err != nil {
			// The open taps not handed to a machine.NIC yet.
			for _, n := range o.NICs[min(len(h.NICs), len(o.NICs)):] {
				if n.Open != nil {
					n.Open.Close()
				}
			}
			h.Close()
		}
	}()
	if len(o.NICs) != len(vm.NICs) {
		return nil, fmt.Errorf("vmm: VM %s has %d NICs, %d resolved", vm.Name, len(vm.NICs), len(o.NICs))
	}
	path := o.KVMPath
	if path == "" {
		path = kvm.DefaultPath
	}
	if h.KVM, err = kvm.Open(path); err != nil {
		return nil, fmt.Errorf("vmm: %w", err)
	}
	if h.Kernel, err = boot.OpenKernel(vm.Kernel); err != nil {
		return nil, err
	}
	if vm.Initrd != "" {
		if h.Initrd, err = boot.OpenInitrd(vm.Initrd); err != nil {
			return nil, err
		}
	}
	for i, d := range vm.Disks {
		format, guard := d.Format, false
		if format == "" && i < len(o.Formats) && o.Formats[i] != "" {
			format, guard = o.Formats[i], o.Formats[i] == disk.FormatRaw
		}
		opts := disk.Options{Format: format, ReadOnly: d.ReadOnly}
		if d.Untrusted {
			opts.Backing = disk.ConfinedToImage(d.Path)
		}
		if i < len(o.Backing) && o.Backing[i] != nil {
			opts.Backing = o.Backing[i]
		}
		od, err := openDisk(i, d.Path, opts)
		if err != nil {
			return nil, err
		}
		od.Guard = od.Guard || guard
		h.Disks = append(h.Disks, od)
	}
	if o.Seed != "" {
		od, err := openDisk(len(vm.Disks), o.Seed, disk.Options{Format: disk.FormatRaw, ReadOnly: true})
		if err != nil {
			return nil, err
		}
		h.Disks = append(h.Disks, od)
	}
	for i, n := range o.NICs {
		tap, err := openTap(n)
		if err != nil {
			return nil, fmt.Errorf("nics[%d]: %w", i, err)
		}
		h.NICs = append(h.NICs, machine.NIC{Tap: tap, MAC: n.MAC})
	}
	return h, nil
}

// openDisk opens disk i's image at path with o; a format o leaves out is
// detected, and a raw image found so is guarded.
func openDisk(i int, path string, o disk.Options) (Disk, error) {
	guard := false
	if o.Format == "" {
		format, err := disk.Detect(path)
		if err != nil {
			return Disk{}, fmt.Errorf("disks[%d]: %w", i, err)
		}
		o.Format, guard = format, format == disk.FormatRaw
	}
	img, err := disk.Open(path, o)
	if err != nil {
		return Disk{}, fmt.Errorf("disks[%d]: %w", i, err)
	}
	return Disk{Image: img, Path: path, Guard: guard}, nil
}

// openTap attaches to the NIC's tap, or creates one on its bridge, or
// returns the tap its managed network made.
func openTap(n NIC) (*netdev.Tap, error) {
	if n.MAC.Multicast() || n.MAC == (netdev.MAC{}) {
		return nil, fmt.Errorf("MAC %s is not a unicast address", n.MAC)
	}
	switch {
	case n.Open != nil && (n.Tap != "" || n.Bridge != ""):
		return nil, errors.New("a managed network's NIC has no tap or bridge of its own")
	case n.Open != nil:
		return n.Open, nil
	case n.Tap != "" && n.Bridge != "":
		return nil, errors.New("set tap or bridge, not both")
	case n.Tap != "":
		return netdev.OpenTap(n.Tap)
	case n.Bridge != "":
		return bridgedTap(n)
	}
	return nil, errors.New("needs a tap or a bridge")
}

// bridgedTap creates a tap named after the NIC's MAC (so it is easy to
// match with its VM) and makes it a port of the NIC's bridge.
func bridgedTap(n NIC) (*netdev.Tap, error) {
	if what := hostnet.ManagedInterface(n.Bridge); what != "" {
		return nil, fmt.Errorf("bridge %s is %s: use network: NAME", n.Bridge, what)
	}
	if err := netdev.IsBridge(n.Bridge); err != nil {
		return nil, err
	}
	tap, err := netdev.CreateTapFor(n.MAC)
	if err != nil {
		return nil, err
	}
	if err := netdev.AddToBridge(tap.Name(), n.Bridge); err != nil {
		tap.Close()
		return nil, err
	}
	return tap, nil
}

// Close releases every handle: the disk images are flushed and closed
// (their locks go), the taps closed (a tap paddock created disappears),
// the attachment to the managed networks closed. Closing twice does
// nothing more.
func (h *Handles) Close() error {
	var errs []error
	if h.VM != nil {
		errs = append(errs, h.VM.Close())
	}
	for _, d := range h.Disks {
		errs = append(errs, d.Image.Close())
	}
	for _, n := range h.NICs {
		errs = append(errs, n.Tap.Close())
	}
	for _, f := range []*os.File{h.Kernel, h.Initrd} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	if h.KVM != nil {
		errs = append(errs, h.KVM.Close())
	}
	if h.Network != nil {
		errs = append(errs, h.Network.Close())
	}
	if h.Warm != nil {
		errs = append(errs, h.Warm.Close())
	}
	for _, f := range h.ConsoleLog {
		errs = append(errs, f.Close())
	}
	*h = Handles{}
	return errors.Join(errs...)
}

// VMHandleOptions say how OpenVMHandles opens a managed VM's handles.
type VMHandleOptions struct {
	// Home is the state directory (its managed networks).
	Home string
	// NetdCommand runs a managed network's netd; empty means this
	// executable's `netd` command.
	NetdCommand []string
	// KVMPath overrides kvm.DefaultPath.
	KVMPath string
	// Seed is the VM's seed volume, for a VM with cloud_init.
	Seed string
	// Warm opens the saved machine of the warm template the VM was made
	// from (OpenVMWarm), for a warm clone's first start.
	Warm bool
}

// OpenVMHandles opens the handles of the managed VM v, whose spec is vm:
// its disks in their pinned formats (PinFormats), a clone's overlays
// with their backing chains confined (OverlayBacking), its NICs attached
// to their managed networks (AttachNetworks), everything OpenHandles
// opens, and with o.Warm its warm template's files (OpenVMWarm).
// The VMM calls it when it was handed none; the paddock command that
// starts a VMM calls it to hand them over.
// Precondition: the caller holds v's lock or run lock; vm has been
// through FillDefaults and Validate.
func OpenVMHandles(v *store.VM, vm *configs.VM, o VMHandleOptions) (*Handles, error) {
	formats, err := PinFormats(v, vm)
	if err != nil {
		return nil, err
	}
	backing, err := OverlayBacking(v)
	if err != nil {
		return nil, err
	}
	var warm *WarmFiles
	if o.Warm {
		if warm, err = OpenVMWarm(v, o.Home); err != nil {
			return nil, err
		}
	}
	nics, nets, err := AttachNetworks(vm, NetworkOptions{Home: o.Home, NetdCommand: o.NetdCommand})
	if err != nil {
		if warm != nil {
			warm.Close()
		}
		return nil, err
	}
	h, err := OpenHandles(vm, OpenOptions{KVMPath: o.KVMPath, Formats: formats, Backing: backing, Seed: o.Seed, NICs: nics, Network: nets})
	if err != nil {
		if warm != nil {
			warm.Close()
		}
		return nil, err
	}
	h.Warm = warm
	return h, nil
}

// CreateVMAhead starts creating the VM the next machine is built on
// (kvm.System.CreateVMAhead), so that the kernel's part of it overlaps
// what the VMM does before it builds the machine. Without KVM it does
// nothing; a machine built then creates its own VM.
func (h *Handles) CreateVMAhead() {
	if h.KVM != nil && h.VM == nil {
		h.VM = h.KVM.CreateVMAhead()
	}
}

// takeVM hands over the VM created ahead, if any (nil otherwise),
// waiting for its creation.
func (h *Handles) takeVM() (*kvm.VM, error) {
	a := h.VM
	if a == nil {
		return nil, nil
	}
	h.VM = nil
	vm, err := a.Take()
	if err != nil {
		return nil, fmt.Errorf("vmm: create VM: %w", err)
	}
	return vm, nil
}
