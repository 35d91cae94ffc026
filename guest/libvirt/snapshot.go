package libvirt

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// Snapshot is one of a domain's snapshots, as libvirt keeps it: an
// internal snapshot (QEMU's savevm) of a running or paused domain holds
// its memory and devices and, inside each qcow2 disk, the disk's
// content, all of one instant.
type Snapshot struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	// State is what the domain was doing: running, paused, shutoff.
	State string `json:"vm_state"`
	// Memory: the snapshot holds the domain's memory (it was running or
	// paused), so reverting to it goes on from that instant.
	Memory bool `json:"memory"`
	// Disks are the disks (vda, vdb, ...) whose content it holds.
	Disks []string `json:"disks"`
	// Current: libvirt's current snapshot, the one the domain last
	// reverted to or took.
	Current bool `json:"current"`
}

// ErrNoSnapshot: the domain has no snapshot of that name.
var ErrNoSnapshot = errors.New("no such snapshot")

// ErrSnapshotExists: the domain has a snapshot of that name already.
var ErrSnapshotExists = errors.New("a snapshot of that name exists")

// CreateSnapshot takes an internal snapshot called name of the domain,
// memory and disks together: libvirt pauses the guest, QEMU saves its
// state and snapshots each qcow2 disk, and the guest goes on.
// Precondition: the domain's writable disks are all qcow2 (QEMU refuses
// internal snapshots otherwise).
func (d *Dom) CreateSnapshot(name string) (Snapshot, error) {
	if _, err := d.c.l.DomainSnapshotLookupByName(d.d, name, 0); err == nil {
		return Snapshot{}, fmt.Errorf("%s: domain %s: snapshot %s: %w", d.c.where(), d.d.Name, name, ErrSnapshotExists)
	}
	x := libvirtxml.DomainSnapshot{Name: name, Description: "paddock snapshot " + name}
	desc, err := x.Marshal()
	if err != nil {
		return Snapshot{}, err
	}
	snap, err := d.c.l.DomainSnapshotCreateXML(d.d, desc, 0)
	if err != nil {
		return Snapshot{}, d.c.fail("snapshot domain "+d.d.Name, err)
	}
	return d.describe(snap)
}

// Snapshots lists the domain's snapshots, oldest first.
func (d *Dom) Snapshots() ([]Snapshot, error) {
	snaps, _, err := d.c.l.DomainListAllSnapshots(d.d, 1, 0)
	if err != nil {
		return nil, d.c.fail("list the snapshots of domain "+d.d.Name, err)
	}
	var out []Snapshot
	for _, s := range snaps {
		info, err := d.describe(s)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	slices.SortStableFunc(out, func(a, b Snapshot) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// snapshot looks a snapshot up by name: ErrNoSnapshot (wrapped) if the
// domain has none.
func (d *Dom) snapshot(name string) (golibvirt.DomainSnapshot, error) {
	s, err := d.c.l.DomainSnapshotLookupByName(d.d, name, 0)
	if code(err) == golibvirt.ErrNoDomainSnapshot {
		return s, fmt.Errorf("%s: domain %s: snapshot %s: %w", d.c.where(), d.d.Name, name, ErrNoSnapshot)
	}
	if err != nil {
		return s, d.c.fail("look up snapshot "+name+" of domain "+d.d.Name, err)
	}
	return s, nil
}

// describe reads a snapshot's description.
func (d *Dom) describe(s golibvirt.DomainSnapshot) (Snapshot, error) {
	desc, err := d.c.l.DomainSnapshotGetXMLDesc(s, 0)
	if err != nil {
		return Snapshot{}, d.c.fail("read snapshot "+s.Name+" of domain "+d.d.Name, err)
	}
	var x libvirtxml.DomainSnapshot
	if err := x.Unmarshal(desc); err != nil {
		return Snapshot{}, fmt.Errorf("%s: domain %s: snapshot %s: %w", d.c.where(), d.d.Name, s.Name, err)
	}
	info := Snapshot{Name: x.Name, State: x.State, Memory: x.State == "running" || x.State == "paused"}
	if sec, err := strconv.ParseInt(x.CreationTime, 10, 64); err == nil {
		info.Created = time.Unix(sec, 0)
	}
	if x.Disks != nil {
		for _, disk := range x.Disks.Disks {
			if disk.Snapshot == "internal" {
				info.Disks = append(info.Disks, disk.Name)
			}
		}
	}
	if cur, err := d.c.l.DomainSnapshotIsCurrent(s, 0); err == nil {
		info.Current = cur == 1
	}
	return info, nil
}

// RevertSnapshot puts the domain back to its snapshot name: memory,
// devices and disks of the snapshot's instant; a snapshot of a running
// domain comes back running, of a paused one paused. What the domain did
// since is lost.
func (d *Dom) RevertSnapshot(name string) error {
	s, err := d.snapshot(name)
	if err != nil {
		return err
	}
	if err := d.c.l.DomainRevertToSnapshot(s, 0); err != nil {
		return d.c.fail("revert domain "+d.d.Name+" to snapshot "+name, err)
	}
	return nil
}

// DeleteSnapshot deletes the snapshot name: its metadata and what it
// holds inside the disks.
func (d *Dom) DeleteSnapshot(name string) error {
	s, err := d.snapshot(name)
	if err != nil {
		return err
	}
	if err := d.c.l.DomainSnapshotDelete(s, 0); err != nil {
		return d.c.fail("delete snapshot "+name+" of domain "+d.d.Name, err)
	}
	return nil
}
