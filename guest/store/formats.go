package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// FormatsVersion is the version of formats.json this code writes.
const FormatsVersion = 1

// DiskFormat is the image format paddock detected for one of a VM's disks
// whose spec leaves the format out, recorded once (at create, or at the
// first start of a VM created before formats were recorded) so that later
// starts open the disk in that format instead of detecting it again: a
// guest that writes a qcow2 header into a raw disk must not make the host
// read the disk as qcow2 (and follow a backing file of the guest's
// choice).
type DiskFormat struct {
	// Index is the disk's place in the spec's disks list; Path its image.
	Index int    `json:"index"`
	Path  string `json:"path"`
	// Format is "raw" or "qcow2".
	Format string `json:"format"`
}

// formatsFile is formats.json.
type formatsFile struct {
	Version int          `json:"version"`
	Disks   []DiskFormat `json:"disks"`
}

// ReadFormats returns the disk formats recorded for the VM; none (and no
// error) if none were recorded yet.
func (v *VM) ReadFormats() ([]DiskFormat, error) {
	path := v.Path(FormatsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: VM %s: %w", v.Name, err)
	}
	return parseFormats(data, path)
}

// parseFormats decodes formats.json content; path names it in errors.
func parseFormats(data []byte, path string) ([]DiskFormat, error) {
	var f formatsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	if f.Version > FormatsVersion {
		return nil, fmt.Errorf("store: %s: version %d %w (this one reads version %d)", path, f.Version, ErrRecordVersion, FormatsVersion)
	}
	return f.Disks, nil
}

// marshalFormats encodes formats.json.
func marshalFormats(disks []DiskFormat) ([]byte, error) {
	data, err := json.MarshalIndent(formatsFile{Version: FormatsVersion, Disks: disks}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("store: encode disk formats: %w", err)
	}
	return append(data, '\n'), nil
}

// WriteFormats replaces the VM's formats.json atomically.
func (v *VM) WriteFormats(disks []DiskFormat) error {
	data, err := marshalFormats(disks)
	if err != nil {
		return err
	}
	return WriteFileAtomic(v.Path(FormatsFile), data, 0o600)
}
