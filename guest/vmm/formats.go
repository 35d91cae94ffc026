package vmm

import (
	"fmt"
	"slices"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/guest/store"
)

// DetectFormats detects the format of each of vm's disks whose spec
// leaves it out, for the VM's formats.json (store.DiskFormat).
func DetectFormats(vm *configs.VM) ([]store.DiskFormat, error) {
	var out []store.DiskFormat
	for i, d := range vm.Disks {
		if d.Format != "" {
			continue
		}
		f, err := disk.Detect(d.Path)
		if err != nil {
			return nil, fmt.Errorf("disks[%d]: %w", i, err)
		}
		out = append(out, store.DiskFormat{Index: i, Path: d.Path, Format: f})
	}
	return out, nil
}

// PinFormats returns the format each of vm's disks opens in, index by
// index: "" for a disk whose spec sets its format (the spec rules), else
// the format recorded in the VM's formats.json. A disk without a record
// (a VM created before paddock recorded formats) is detected now and
// recorded. A disk whose image no longer reads as its recorded format is
// refused: once a guest has run, its writable disk's contents are the
// guest's, and detecting the format again would let a guest that wrote a
// qcow2 header into a raw disk choose what the host opens.
// Precondition: the caller holds the VM's lock or run lock.
func PinFormats(v *store.VM, vm *configs.VM) ([]string, error) {
	recorded, err := v.ReadFormats()
	if err != nil {
		return nil, fmt.Errorf("%w; remove it to detect the disks' formats again", err)
	}
	byIndex := map[int]store.DiskFormat{}
	for _, r := range recorded {
		byIndex[r.Index] = r
	}
	detected, err := DetectFormats(vm)
	if err != nil {
		return nil, err
	}
	pins := make([]string, len(vm.Disks))
	var add []store.DiskFormat
	for _, now := range detected {
		r, ok := byIndex[now.Index]
		switch {
		case !ok || r.Path != now.Path:
			add = append(add, now)
			r = now
		case r.Format != now.Format:
			return nil, &FormatChangedError{VM: v.Name, Index: now.Index, Path: now.Path, Was: r.Format, Now: now.Format}
		}
		pins[now.Index] = r.Format
	}
	if len(add) > 0 {
		keep := add
		for _, r := range recorded {
			if r.Index >= 0 && r.Index < len(vm.Disks) && vm.Disks[r.Index].Path == r.Path {
				keep = append(keep, r)
			}
		}
		slices.SortFunc(keep, func(a, b store.DiskFormat) int { return a.Index - b.Index })
		if err := v.WriteFormats(keep); err != nil {
			return nil, err
		}
	}
	return pins, nil
}

// FormatChangedError is a disk whose image reads as another format than
// the one recorded when its VM was created.
type FormatChangedError struct {
	VM       string
	Index    int
	Path     string
	Was, Now string
}

func (e *FormatChangedError) Error() string {
	return fmt.Sprintf("disks[%d]: %s was a %s image when VM %s was created and reads as %s now, and paddock does not let a disk's contents change its format; if you converted it yourself, set disks[%d].format: %s in the VM's YAML and create the VM again (paddock rm %s, then paddock create)",
		e.Index, e.Path, e.Was, e.VM, e.Now, e.Index, e.Now, e.VM)
}
