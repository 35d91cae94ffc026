package libvirt

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/paddock-vm/paddock/guest/store"
)

// PlacementFile is the file in a libvirt VM's directory that says where
// the VM lives.
const PlacementFile = store.LibvirtFile

// PlacementVersion is the version of libvirt.json this code writes; a
// newer one is refused.
const PlacementVersion = 1

// Placement is what paddock remembers about a libvirt VM (libvirt.json):
// the host, the domain, and the volumes made for it. It is written before
// anything is made on the host, so that removing the VM finds everything
// an interrupted create left there.
type Placement struct {
	Version int `json:"version"`
	// Host is the VM's host as it was when the VM was created (the hosts
	// file may change later; the VM stays where it is).
	Host Host `json:"host"`
	// UUID is the domain's UUID, which paddock chose; a domain of the
	// VM's name with another UUID is not this VM.
	UUID string `json:"uuid"`
	// DomainType is kvm or qemu, decided when the domain was defined.
	DomainType string `json:"domain_type,omitempty"`
	// Volumes are the VM's own volumes in the host's pool (writable
	// disks), deleted with the VM; their names start with VolumePrefix.
	Volumes []string `json:"volumes,omitempty"`
	// Shared are the content volumes the VM uses (kernel, initrd,
	// read-only disks): kept when the VM goes, for other VMs to reuse.
	Shared []string `json:"shared,omitempty"`
	// ConsoleLog is the path, on the host, of the file libvirt logs the
	// guest's console to (in the pool's directory).
	ConsoleLog string `json:"console_log,omitempty"`
	// Defined is set once the domain exists.
	Defined bool `json:"defined"`
}

// VolumePrefix starts the names of a VM's own volumes: "vm-UUID.".
func (p *Placement) VolumePrefix() string { return "vm-" + p.UUID + "." }

// ConsoleLogName is the name of the VM's console log in the pool.
func (p *Placement) ConsoleLogName() string { return p.VolumePrefix() + "console.log" }

// ReadPlacement reads dir's libvirt.json; fs.ErrNotExist (wrapped) when
// the VM has none, as a native VM.
func ReadPlacement(dir string) (*Placement, error) {
	path := filepath.Join(dir, PlacementFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("libvirt: %w", err)
	}
	var p Placement
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("libvirt: %s: %w", path, err)
	}
	if p.Version > PlacementVersion {
		return nil, fmt.Errorf("libvirt: %s: version %d was written by a newer paddock (this one reads version %d)", path, p.Version, PlacementVersion)
	}
	if p.UUID == "" || p.Host.URI == "" {
		return nil, fmt.Errorf("libvirt: %s: no host or UUID", path)
	}
	return &p, nil
}

// HasPlacement reports whether dir holds a libvirt.json.
func HasPlacement(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, PlacementFile))
	return !errors.Is(err, fs.ErrNotExist)
}

// WritePlacement replaces dir's libvirt.json atomically.
func WritePlacement(dir string, p *Placement) error {
	p.Version = PlacementVersion
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("libvirt: encode placement: %w", err)
	}
	return store.WriteFileAtomic(filepath.Join(dir, PlacementFile), append(data, '\n'), 0o600)
}
