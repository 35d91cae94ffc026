package vmm

import (
	"path/filepath"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/guest/store"
)

// OverlayBacking returns the backing-file policy of each of a VM's disks,
// index by index (nil: the spec's own), from the VM's from.json: a disk
// that is an overlay on a template's base disk may be backed only by
// files in the template's disk directory (or its own), never by any
// other file of the host, whatever a header says (disk.ConfinedTo). A VM
// not made from a template gets nil.
func OverlayBacking(v *store.VM) ([]*disk.BackingPolicy, error) {
	from, err := v.ReadFrom()
	if err != nil || from == nil {
		return nil, err
	}
	var out []*disk.BackingPolicy
	for _, o := range from.Overlays {
		if o.Index < 0 || o.Index >= 1<<10 {
			continue
		}
		for len(out) <= o.Index {
			out = append(out, nil)
		}
		out[o.Index] = ConfinedOverlay(o)
	}
	return out, nil
}

// ConfinedOverlay is the backing-file policy of one overlay: its own
// directory and its base disk's.
func ConfinedOverlay(o store.Overlay) *disk.BackingPolicy {
	return disk.ConfinedTo(filepath.Dir(o.Path), filepath.Dir(o.Base))
}
