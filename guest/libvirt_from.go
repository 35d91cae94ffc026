package guest

import (
	"fmt"

	lv "github.com/paddock-vm/paddock/guest/libvirt"
	"github.com/paddock-vm/paddock/guest/store"
)

// libvirtFrom is what a libvirt VM made from a template takes from it:
// the SHA-256s of the template's files (by path here), which Share
// checks the host's volumes against instead of hashing the files again,
// and the VM's overlays (by disk index) with the base disk of each.
// A VM not made from a template has none.
type libvirtFrom struct {
	sums     map[string]string
	overlays map[int]store.Overlay
	disks    map[int]store.TemplateDisk
}

// template reads what the VM v takes from its template (from.json and
// the template's metadata). Precondition: the template was verified
// (planFrom) and its lock is held.
func (b *libvirtBackend) template(v *store.VM) (libvirtFrom, error) {
	from, err := v.ReadFrom()
	if err != nil || from == nil {
		return libvirtFrom{}, err
	}
	t, err := b.store.Template(from.Template)
	if err != nil {
		return libvirtFrom{}, fmt.Errorf("VM %s: from: %w", v.Name, err)
	}
	if t.Meta.ID != from.ID {
		return libvirtFrom{}, fmt.Errorf("VM %s: from: template %s was replaced while the VM was made", v.Name, t.Name)
	}
	out := libvirtFrom{sums: map[string]string{}, overlays: map[int]store.Overlay{}, disks: map[int]store.TemplateDisk{}}
	for _, f := range t.Meta.Files() {
		out.sums[t.Path(f.File)] = f.SHA256
	}
	for _, o := range from.Overlays {
		found := false
		for _, d := range t.Meta.Disks {
			if t.Path(d.File) == o.Base {
				out.overlays[o.Index], out.disks[o.Index] = o, d
				found = true
			}
		}
		if !found {
			return libvirtFrom{}, fmt.Errorf("VM %s: from: template %s has no base disk %s", v.Name, t.Name, o.Base)
		}
	}
	return out, nil
}

// putOverlay makes the VM's disk o on the host: the template's base disk
// d goes into the pool as shared content (share: uploaded once, checked
// against the template's SHA-256), and the VM's own volume is a qcow2
// overlay on it of the overlay's size (root_size for the root disk).
func (b *libvirtBackend) putOverlay(pool *lv.Pool, pl *lv.Placement, v *store.VM, share func(string) (lv.Volume, error), o store.Overlay, d store.TemplateDisk) (lv.Volume, error) {
	base, err := share(o.Base)
	if err != nil {
		return lv.Volume{}, err
	}
	name, err := ownVolume(v, pl, o.Index)
	if err != nil {
		return lv.Volume{}, err
	}
	size := o.Size
	if size == 0 {
		size = d.VirtualSize
	}
	return pool.Overlay(name, base, d.Format, uint64(size))
}

// ownVolume names the volume of the VM's i-th disk and records it in the
// VM's placement before it is made, so that an interrupted create's
// volume is found and removed with the VM.
func ownVolume(v *store.VM, pl *lv.Placement, i int) (string, error) {
	name := fmt.Sprintf("%sdisk%d", pl.VolumePrefix(), i)
	pl.Volumes = append(pl.Volumes, name)
	return name, lv.WritePlacement(v.Dir, pl)
}
