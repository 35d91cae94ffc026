package libvirt

import (
	"encoding/xml"
	"fmt"
	"maps"
	"slices"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/netdev"
)

// MetadataNS is the XML namespace of paddock's element in a domain's
// <metadata>: a domain that has it, with the UUID paddock recorded, is a
// paddock VM; paddock leaves every other domain alone.
const MetadataNS = "https://paddock-vm.github.io/xmlns/libvirt/1"

// Metadata is paddock's element in a domain's <metadata>.
type Metadata struct {
	XMLName xml.Name `xml:"https://paddock-vm.github.io/xmlns/libvirt/1 vm"`
	// Name is the VM's name in paddock.
	Name string `xml:"name,attr"`
	// Home and Machine say which paddock defined the domain: its state
	// directory, on the machine of that name.
	Home    string `xml:"home"`
	Machine string `xml:"machine"`
	// Labels are the spec's labels.
	Labels []Label `xml:"labels>label"`
}

// Label is one of a VM's labels.
type Label struct {
	Key   string `xml:"key,attr"`
	Value string `xml:"value,attr"`
}

// Files are where, on the host, a domain finds what it boots and uses,
// and what paddock decided for it.
type Files struct {
	Kernel, Initrd string // paths of volumes
	// Disks are the spec's disks, in order: the volume of each (in the
	// pool the domain names) and its format (raw or qcow2).
	Disks   []Volume
	Formats []string
	// Seed is the volume of the cloud-init seed (raw, read-only, after
	// the spec's disks), or empty.
	Seed string
	// MACs are the NICs' addresses, by index.
	MACs []netdev.MAC
}

// DomainXML translates a VM spec into the definition of its domain:
// direct kernel boot, the spec's CPUs, memory, virtio disks (from the
// pool's volumes; the cloud-init seed last) and NICs (a bridge, a tap, or
// a libvirt network of the host), an RNG, and a serial console on a pty
// that libvirt also logs to pl.ConsoleLog. Precondition: vm is valid and
// files has one volume per disk and one MAC per NIC.
func DomainXML(vm *configs.VM, pl *Placement, pool string, files Files, md Metadata) (string, error) {
	md.Name = vm.Name
	md.Labels = nil
	for _, k := range slices.Sorted(maps.Keys(vm.Labels)) {
		md.Labels = append(md.Labels, Label{Key: k, Value: vm.Labels[k]})
	}
	meta, err := xml.Marshal(md)
	if err != nil {
		return "", fmt.Errorf("libvirt: encode the metadata of %s: %w", vm.Name, err)
	}
	port := uint(0)
	onReboot := "destroy"
	if vm.OnReboot == configs.RebootRestart {
		onReboot = "restart"
	}
	d := libvirtxml.Domain{
		Type:        pl.DomainType,
		Name:        vm.Name,
		UUID:        pl.UUID,
		Description: "paddock VM " + vm.Name,
		Metadata:    &libvirtxml.DomainMetadata{XML: string(meta)},
		Memory:      &libvirtxml.DomainMemory{Value: uint(vm.Memory / configs.KiB), Unit: "KiB"},
		VCPU:        &libvirtxml.DomainVCPU{Value: uint(vm.CPUs)},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
			Kernel:  files.Kernel,
			Initrd:  files.Initrd,
			Cmdline: vm.Cmdline,
		},
		// ACPI: the power button paddock stop presses; libvirt 9.0 with
		// QEMU 10 also fails to start a domain without it (-no-acpi).
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}, APIC: &libvirtxml.DomainFeatureAPIC{}},
		OnPoweroff: "destroy",
		OnReboot:   onReboot,
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none"}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port},
				Log:    &libvirtxml.DomainChardevLog{File: pl.ConsoleLog, Append: "on"},
			}},
			Consoles: []libvirtxml.DomainConsole{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &port},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	if pl.DomainType == TypeKVM {
		d.CPU = &libvirtxml.DomainCPU{Mode: "host-passthrough"}
	}
	for i, disk := range vm.Disks {
		if i >= len(files.Disks) || i >= len(files.Formats) {
			return "", fmt.Errorf("libvirt: VM %s: no volume for disks[%d]", vm.Name, i)
		}
		x := libvirtxml.DomainDisk{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: files.Formats[i], Cache: string(disk.Cache)},
			Source: &libvirtxml.DomainDiskSource{Volume: &libvirtxml.DomainDiskSourceVolume{Pool: pool, Volume: files.Disks[i].Name}},
			Target: &libvirtxml.DomainDiskTarget{Dev: diskName(i), Bus: "virtio"},
			Serial: disk.Serial,
		}
		if disk.ReadOnly {
			x.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
		}
		d.Devices.Disks = append(d.Devices.Disks, x)
	}
	if files.Seed != "" {
		d.Devices.Disks = append(d.Devices.Disks, libvirtxml.DomainDisk{
			Device:   "disk",
			Driver:   &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
			Source:   &libvirtxml.DomainDiskSource{Volume: &libvirtxml.DomainDiskSourceVolume{Pool: pool, Volume: files.Seed}},
			Target:   &libvirtxml.DomainDiskTarget{Dev: diskName(len(vm.Disks)), Bus: "virtio"},
			ReadOnly: &libvirtxml.DomainDiskReadOnly{},
		})
	}
	if len(files.MACs) != len(vm.NICs) {
		return "", fmt.Errorf("libvirt: VM %s: %d MACs for %d NICs", vm.Name, len(files.MACs), len(vm.NICs))
	}
	for i, nic := range vm.NICs {
		x := libvirtxml.DomainInterface{
			MAC:   &libvirtxml.DomainInterfaceMAC{Address: files.MACs[i].String()},
			Model: &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		}
		switch {
		case nic.Network != "":
			x.Source = &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: nic.Network}}
		case nic.Bridge != "":
			x.Source = &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: nic.Bridge}}
		case nic.Tap != "":
			// An existing tap on the host, which libvirt must not remove.
			x.Source = &libvirtxml.DomainInterfaceSource{Ethernet: &libvirtxml.DomainInterfaceSourceEthernet{}}
			x.Target = &libvirtxml.DomainInterfaceTarget{Dev: nic.Tap, Managed: "no"}
		default:
			return "", fmt.Errorf("libvirt: VM %s: nics[%d] has no network, bridge or tap", vm.Name, i)
		}
		d.Devices.Interfaces = append(d.Devices.Interfaces, x)
	}
	if vm.RNG {
		d.Devices.RNGs = []libvirtxml.DomainRNG{{
			Model:   "virtio",
			Backend: &libvirtxml.DomainRNGBackend{Random: &libvirtxml.DomainRNGBackendRandom{Device: "/dev/urandom"}},
		}}
	}
	s, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("libvirt: encode the domain of %s: %w", vm.Name, err)
	}
	return s, nil
}

// DiskIndex is the index of the virtio disk the guest calls name (vda
// is 0, vdaa 26), or -1 for a name that is not one.
func DiskIndex(name string) int {
	rest, ok := strings.CutPrefix(name, "vd")
	if !ok || rest == "" {
		return -1
	}
	n := 0
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c < 'a' || c > 'z' {
			return -1
		}
		n = n*26 + int(c-'a') + 1
	}
	return n - 1
}

// diskName is the guest's name of the i-th virtio disk: vda, vdb, ...,
// vdz, vdaa, ...
func diskName(i int) string {
	s := ""
	for n := i; ; n = n/26 - 1 {
		s = string(rune('a'+n%26)) + s
		if n < 26 {
			break
		}
	}
	return "vd" + s
}
