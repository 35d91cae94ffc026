package configs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/hostnet"
	"go.yaml.in/yaml/v3"

	"github.com/paddock-vm/paddock/disk/imagefile"
)

// Disk is one virtio-blk disk. In YAML it is a mapping, or just the
// image's path: `disks: [root.qcow2]`.
type Disk struct {
	// Path is the image file (qcow2 or raw), resolved like kernel.
	// Required.
	Path string `yaml:"path" json:"path"`
	// Format is raw or qcow2; empty (the default) detects it from the
	// file's contents, never from its name.
	Format string `yaml:"format,omitempty" json:"format,omitempty"`
	// ReadOnly presents the disk read-only to the guest. Default false.
	ReadOnly bool `yaml:"readonly,omitempty" json:"readonly,omitempty"`
	// Serial is the disk's serial number as the guest reads it, at most
	// 20 printable ASCII characters. Default none.
	Serial string `yaml:"serial,omitempty" json:"serial,omitempty"`
	// Cache is writeback, writethrough or unsafe. Default writeback.
	Cache DiskCache `yaml:"cache" json:"cache"`
	// Untrusted says the image came from someone else: its qcow2 backing
	// files must lie in the image's own directory (symbolic links
	// resolved), never a device or special file (disk.ConfinedToImage).
	// Default false: backing files are followed wherever they are, as
	// QEMU does, which is right only for images the user made.
	Untrusted bool `yaml:"untrusted,omitempty" json:"untrusted,omitempty"`
	// Limits limit the disk's bandwidth and requests; nil (the
	// default) limits nothing.
	Limits *Limits `yaml:"limits,omitempty" json:"limits,omitempty"`
}

// DiskCache says how guest flushes relate to host durability.
type DiskCache string

// Cache modes.
const (
	// CacheWriteback: the guest sees a write cache and its flushes make
	// its writes durable on the host.
	CacheWriteback DiskCache = "writeback"
	// CacheWritethrough: every write is durable before it completes.
	CacheWritethrough DiskCache = "writethrough"
	// CacheUnsafe: guest flushes are ignored; a host crash loses data.
	CacheUnsafe DiskCache = "unsafe"
)

// Disk image formats.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
)

// NIC is one virtio-net network interface, on a host tap device: an
// existing one (Tap), or one paddock creates on a bridge (Bridge) or on
// a paddock managed network's bridge (Network) and removes when the VM
// stops.
type NIC struct {
	Tap     string `yaml:"tap,omitempty" json:"tap,omitempty"`
	Bridge  string `yaml:"bridge,omitempty" json:"bridge,omitempty"`
	Network string `yaml:"network,omitempty" json:"network,omitempty"`
	// MAC is the guest's address; empty (the default) derives a stable,
	// locally administered one from the VM's name and the NIC's index.
	MAC string `yaml:"mac,omitempty" json:"mac,omitempty"`
	// Limits limit the NIC's bandwidth and frames, in each direction
	// on its own; nil (the default) limits nothing.
	Limits *Limits `yaml:"limits,omitempty" json:"limits,omitempty"`
}

// Device limits.
const (
	// MaxDevices bounds disks, NICs and the rng device together: each is
	// a PCI device on bus 0, whose slots 1-31 are free for them.
	MaxDevices = 31
	// MaxSerialLen is the longest disk serial (VIRTIO_BLK_ID_BYTES).
	MaxSerialLen = 20
)

func diskFields() []string {
	return []string{"path", "format", "readonly", "serial", "cache", "untrusted", "limits"}
}

func nicFields() []string { return []string{"tap", "bridge", "network", "mac", "limits"} }

// disks decodes the disks list.
func (d *decoder) disks(field string, v *yaml.Node) []Disk {
	if v.Kind != yaml.SequenceNode {
		d.errorf(v, field, "must be a list of disks such as [root.qcow2] or [{path: data.qcow2, readonly: true}], got %s", describe(v))
		return nil
	}
	var disks []Disk
	for i, item := range v.Content {
		item = deref(item)
		f := fmt.Sprintf("%s[%d]", field, i)
		d.src.fields[f] = pos{item.Line, item.Column}
		var disk Disk
		switch {
		case isNull(item):
			d.errorf(item, f, "is empty: write the image's path or a mapping with path")
		case item.Kind == yaml.ScalarNode:
			d.src.fields[f+".path"] = pos{item.Line, item.Column}
			disk.Path = d.path(f+".path", item)
		case item.Kind == yaml.MappingNode:
			d.fields(item, f, diskFields(), func(key, field string, v *yaml.Node) {
				switch key {
				case "path":
					disk.Path = d.path(field, v)
				case "format":
					disk.Format, _ = d.scalar(field, v, "raw or qcow2")
				case "readonly":
					disk.ReadOnly = d.boolean(field, v)
				case "untrusted":
					disk.Untrusted = d.boolean(field, v)
				case "serial":
					disk.Serial, _ = d.scalar(field, v, "a string")
				case "cache":
					s, _ := d.scalar(field, v, "writeback, writethrough or unsafe")
					disk.Cache = DiskCache(s)
				case "limits":
					disk.Limits = d.limits(field, v, true)
				}
			})
		default:
			d.errorf(item, f, "must be an image path or a mapping with path, format, readonly, serial, cache, untrusted and limits, got %s", describe(item))
		}
		disks = append(disks, disk)
	}
	return disks
}

// nics decodes the nics list.
func (d *decoder) nics(field string, v *yaml.Node) []NIC {
	if v.Kind != yaml.SequenceNode {
		d.errorf(v, field, "must be a list of NICs such as [{network: default}], got %s", describe(v))
		return nil
	}
	var nics []NIC
	for i, item := range v.Content {
		item = deref(item)
		f := fmt.Sprintf("%s[%d]", field, i)
		d.src.fields[f] = pos{item.Line, item.Column}
		var nic NIC
		if item.Kind != yaml.MappingNode {
			d.errorf(item, f, "must be a mapping with tap, bridge or network (and mac), such as {network: default}, got %s", describe(item))
		} else {
			d.fields(item, f, nicFields(), func(key, field string, v *yaml.Node) {
				if key == "limits" {
					nic.Limits = d.limits(field, v, false)
					return
				}
				s, _ := d.scalar(field, v, "a name")
				switch key {
				case "tap":
					nic.Tap = s
				case "bridge":
					nic.Bridge = s
				case "network":
					nic.Network = s
				case "mac":
					nic.MAC = s
				}
			})
		}
		nics = append(nics, nic)
	}
	return nics
}

// boolean decodes true or false.
func (d *decoder) boolean(field string, v *yaml.Node) bool {
	var b bool
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" || v.Decode(&b) != nil {
		d.errorf(v, field, "must be true or false, got %s", describe(v))
		return false
	}
	return b
}

// fillDeviceDefaults sets each disk's cache mode unless written.
func (vm *VM) fillDeviceDefaults() {
	for i := range vm.Disks {
		if vm.Disks[i].Cache == "" && !vm.written(fmt.Sprintf("disks[%d].cache", i)) {
			vm.Disks[i].Cache = CacheWriteback
		}
	}
}

// devices checks disks, NICs and their number.
func (c *checker) devices() {
	vm := c.vm
	rng := 0
	if vm.RNG {
		rng = 1
	}
	n := len(vm.Disks) + len(vm.NICs) + rng
	others := fmt.Sprintf("%d rng device", rng)
	if vm.CloudInit {
		n++
		others += " and the cloud-init seed volume"
	}
	if n > MaxDevices {
		field := "disks"
		if len(vm.NICs) > 0 {
			field = "nics"
		}
		c.add(field, "%d disks, %d NICs and %s: at most %d devices fit on the PCI bus", len(vm.Disks), len(vm.NICs), others, MaxDevices)
	}
	paths := map[string]int{}
	for i, d := range vm.Disks {
		f := fmt.Sprintf("disks[%d]", i)
		switch {
		case d.Path == "":
			c.add(f+".path", "must be set: the path of a qcow2 or raw disk image")
		default:
			if j, dup := paths[filepath.Clean(d.Path)]; dup {
				c.add(f+".path", "is the same image as disks[%d]", j)
			}
			paths[filepath.Clean(d.Path)] = i
		}
		switch d.Format {
		case "", FormatRaw, FormatQcow2:
		default:
			c.add(f+".format", "must be raw or qcow2 (or left out to detect it), got %s", quote(d.Format))
		}
		switch d.Cache {
		case CacheWriteback, CacheWritethrough, CacheUnsafe:
		default:
			c.add(f+".cache", "must be one of %s, %s, %s; got %s", CacheWriteback, CacheWritethrough, CacheUnsafe, quote(string(d.Cache)))
		}
		if len(d.Serial) > MaxSerialLen {
			c.add(f+".serial", "is %d bytes long; at most %d", len(d.Serial), MaxSerialLen)
		}
		for j := 0; j < len(d.Serial); j++ {
			if b := d.Serial[j]; b < 0x20 || b > 0x7e {
				c.add(f+".serial", "must be printable ASCII, got byte %#02x at %d", b, j)
				break
			}
		}
		c.checkLimits(f+".limits", d.Limits, true)
	}
	macs, taps := map[netdev.MAC]int{}, map[string]int{}
	for i, n := range vm.NICs {
		f := fmt.Sprintf("nics[%d]", i)
		kinds := 0
		for _, s := range []string{n.Tap, n.Bridge, n.Network} {
			if s != "" {
				kinds++
			}
		}
		switch {
		case kinds == 0:
			c.add(f, "must set network (a paddock managed network, such as default), tap (an existing tap device) or bridge (a bridge paddock puts a new tap on)")
		case kinds > 1:
			field := f + ".bridge"
			if n.Network != "" {
				field = f + ".network"
			}
			c.add(field, "set one of tap, bridge and network, not several")
		case n.Network != "":
			// managedNetworks checks it.
		case vm.Tenant != DefaultTenant && vm.Backend != BackendLibvirt && !c.skip("tenant"):
			// A native VM's tenant has its networks in a namespace of
			// its own; a libvirt VM's NICs are on its libvirt host.
			field := f + ".bridge"
			if n.Tap != "" {
				field = f + ".tap"
			}
			c.add(field, "a VM of tenant %s may not use a tap or bridge of the host (it would be outside the tenant's network namespace): use network: NAME, a network of the tenant's", vm.Tenant)
		case n.Tap != "":
			if err := netdev.CheckName(n.Tap); err != nil {
				c.add(f+".tap", "%w", err)
			} else if j, dup := taps[n.Tap]; dup {
				c.add(f+".tap", "is already used by nics[%d]", j)
			}
			taps[n.Tap] = i
		default:
			if err := netdev.CheckName(n.Bridge); err != nil {
				c.add(f+".bridge", "%w", err)
			} else if what := hostnet.ManagedInterface(n.Bridge); what != "" {
				c.add(f+".bridge", "%s is %s (a VM on it would have no anti-spoofing rules): use network: NAME", n.Bridge, what)
			}
		}
		if n.MAC != "" {
			mac, err := netdev.ParseMAC(n.MAC)
			switch {
			case err != nil:
				c.add(f+".mac", "%w", err)
			default:
				if j, dup := macs[mac]; dup {
					c.add(f+".mac", "is the same address as nics[%d]", j)
				}
				macs[mac] = i
			}
		}
		c.checkLimits(f+".limits", n.Limits, false)
	}
}

// deviceFiles checks the disk images: each exists, is a non-empty regular
// file or block device paddock can read (and write, unless read-only), has
// the configured format, and is not locked by a running VM.
func (c *checker) deviceFiles() {
	for i, d := range c.vm.Disks {
		f := fmt.Sprintf("disks[%d]", i)
		if d.Path == "" || c.skip(f+".path") {
			continue
		}
		if err := checkImage(d.Path, d.ReadOnly); err != nil {
			c.add(f+".path", "%w", err)
			continue
		}
		if d.Format == FormatQcow2 && !c.skip(f+".format") {
			if format, err := disk.Detect(d.Path); err != nil {
				c.add(f+".path", "%s: %w", d.Path, pathErr(err))
			} else if format != disk.FormatQcow2 {
				c.add(f+".format", "is qcow2, but %s is not a qcow2 image", d.Path)
			}
		}
		if d.Untrusted && !c.skip(f+".format") {
			if err := checkConfined(d); err != nil {
				c.add(f+".path", "%w", err)
			}
		}
	}
}

// checkImage checks a disk image file.
func checkImage(path string, readOnly bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, pathErr(err))
	}
	switch {
	case fi.IsDir():
		return fmt.Errorf("%s is a directory, not a disk image", path)
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		// A block device: its size is not in Stat.
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file or a block device", path)
	case fi.Size() == 0:
		return fmt.Errorf("%s is empty (0 bytes)", path)
	}
	mode := uint32(4) // R_OK
	if !readOnly {
		mode |= 2 // W_OK
	}
	if err := syscall.Access(path, mode); err != nil {
		if readOnly {
			return fmt.Errorf("%s is not readable: %w", path, err)
		}
		return fmt.Errorf("%s is not readable and writable (set readonly: true for a read-only disk): %w", path, err)
	}
	return checkUnlocked(path, readOnly)
}

// checkConfined opens an untrusted disk's image and its backing chain as
// the VMM will, under disk.ConfinedToImage, without locking others out
// (it only reads), and reports a backing file the policy refuses.
func checkConfined(d Disk) error {
	format := d.Format
	if format == "" {
		var err error
		if format, err = disk.Detect(d.Path); err != nil {
			return err
		}
	}
	img, err := disk.Open(d.Path, disk.Options{Format: format, ReadOnly: true, ForceShare: true, Backing: disk.ConfinedToImage(d.Path)})
	if err != nil {
		return err
	}
	return img.Close()
}

// checkUnlocked reports an image that a running VM (paddock's or QEMU's)
// or a QEMU tool holds in a way that keeps this VM from opening it: the
// VMM's own open takes QEMU-compatible image locks (disk/imagefile), and
// this tests the same locks without taking them.
func checkUnlocked(path string, readOnly bool) error {
	return imagefile.Check(path, imagefile.AccessFor(readOnly, false))
}

// network checks that each NIC's tap or bridge exists and is one, as
// netdev sees it in this process's network namespace. Whether a tap is
// busy shows only when the VM starts.
func (c *checker) network() {
	for i, n := range c.vm.NICs {
		f := fmt.Sprintf("nics[%d]", i)
		switch {
		case n.Tap != "" && n.Bridge == "" && !c.skip(f+".tap"):
			if err := netdev.IsTap(n.Tap); errors.Is(err, netdev.ErrNotFound) {
				c.add(f+".tap", "no network interface %s: create the tap first (ip tuntap add %s mode tap), or use bridge", n.Tap, n.Tap)
			} else if err != nil {
				c.add(f+".tap", "%w", err)
			}
		case n.Bridge != "" && n.Tap == "" && !c.skip(f+".bridge"):
			if err := netdev.IsBridge(n.Bridge); errors.Is(err, netdev.ErrNotFound) {
				c.add(f+".bridge", "no bridge %s: create it first (ip link add %s type bridge)", n.Bridge, n.Bridge)
			} else if err != nil {
				c.add(f+".bridge", "%w", err)
			}
		}
	}
}
