package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// FromFile records, for a VM made from a template, which template it was
// and what the VM's disks on it are.
const FromFile = "from.json"

// FromVersion is the newest version of from.json this code reads and
// writes. Version 2 added Warm; a record without it is written as
// version 1, which older paddocks read.
const FromVersion = 2

// maxFromRecord bounds from.json.
const maxFromRecord = 1 << 20

// DisksDir holds the disks paddock made for a VM (its overlays on a
// template's base disks), in the VM's directory.
const DisksDir = "disks"

// FromRecord is from.json: the template a VM was made from. The VM's
// spec (vm.yaml) is already resolved: it boots the template's kernel and
// initrd and has its overlays among its disks; this record is what ties
// them to the template, for the checks before each start and for
// template rm.
type FromRecord struct {
	Version int `json:"version"`
	// Template is the template's name, ID its TemplateMeta.ID: a VM
	// refuses to start on another template of the same name.
	Template string `json:"template"`
	ID       string `json:"id"`
	// Overlays are the VM's disks on the template's base disks.
	Overlays []Overlay `json:"overlays"`
	// Verified are the stamps of the template's files when their
	// checksums were last verified (Template.Verify).
	Verified []FileStamp `json:"verified,omitempty"`
	// Warm says the VM is a warm clone that has not run yet: its next
	// start restores the template's memory snapshot instead of booting
	// (the overlays are still the disks of the snapshot's instant). The
	// start that succeeds clears it. Version 2.
	Warm bool `json:"warm,omitempty"`
}

// Overlay is one of a VM's qcow2 overlays on a template's base disk.
type Overlay struct {
	// Index is the disk's place in the VM's spec.
	Index int `json:"index"`
	// Path is the overlay, in the VM's disks directory; Base the
	// template's base disk it is backed by, as recorded in its header.
	// A libvirt VM has no file at Path: its overlay is a volume in its
	// host's storage pool, on the base disk's volume there.
	Path string `json:"path"`
	Base string `json:"base"`
	// Size is the overlay's virtual size in bytes: the base disk's, or
	// root_size for the root disk (0 in records older than the field:
	// the base disk's).
	Size int64 `json:"size,omitempty"`
}

func (r FromRecord) marshal() ([]byte, error) {
	r.Version = 1
	if r.Warm {
		r.Version = FromVersion
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("store: encode %s: %w", FromFile, err)
	}
	return append(data, '\n'), nil
}

// ReadFrom returns the VM's from.json; nil (and no error) for a VM not
// made from a template.
func (v *VM) ReadFrom() (*FromRecord, error) {
	path := v.Path(FromFile)
	data, err := readCapped(path, maxFromRecord)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: VM %s: %w", v.Name, err)
	}
	var r FromRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	if r.Version > FromVersion {
		return nil, fmt.Errorf("store: %s: version %d %w (this one reads version %d)", path, r.Version, ErrRecordVersion, FromVersion)
	}
	if r.Template == "" || r.ID == "" {
		return nil, fmt.Errorf("store: %s: names no template", path)
	}
	return &r, nil
}

// WriteFrom replaces the VM's from.json atomically.
func (v *VM) WriteFrom(r FromRecord) error {
	data, err := r.marshal()
	if err != nil {
		return err
	}
	return WriteFileAtomic(v.Path(FromFile), data, 0o600)
}

// CreateOptions add to what CreateVM puts into a new VM's directory.
type CreateOptions struct {
	// Formats are the detected formats of its disks (formats.json).
	Formats []DiskFormat
	// From, if set, is written as from.json.
	From *FromRecord
	// Prepare, if set, adds files to the VM's directory while it is
	// still private to CreateVM: dir is where it is being built, final
	// where it will be once complete (the paths the spec names). A
	// failure removes everything.
	Prepare func(dir, final string) error
}

// VMDir returns the directory the VM called name has, or would have.
func (s *Store) VMDir(name string) string { return filepath.Join(s.vms(), name) }
