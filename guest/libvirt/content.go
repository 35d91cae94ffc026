package libvirt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/paddock-vm/paddock/guest/store"
)

// Content is a file Share puts into a pool.
type Content struct {
	// Path is the file here.
	Path string
	// SHA256 is the hex SHA-256 of its content when the caller has just
	// verified it (a template's files, against template.json); empty,
	// Share hashes the file.
	SHA256 string
}

// ContentMismatchError: a content volume on the host does not hold what
// its name (the SHA-256 of its content) says, and volumes of VMs are
// overlays on it, so it cannot be replaced.
type ContentMismatchError struct {
	Where  string // the host
	Volume string
	Sum    string // the SHA-256 its content has
	Users  []string
}

func (e *ContentMismatchError) Error() string {
	return fmt.Sprintf("%s: volume %s holds content of SHA-256 %s, not what its name says (changed on the host): it is not used; volumes %v are overlays on it, so it is not replaced either; remove their VMs, or the volume (virsh vol-delete)", e.Where, e.Volume, e.Sum, e.Users)
}

// VerifiedFile is where paddock records the content volumes it has
// verified on its hosts, in the state directory.
const VerifiedFile = "libvirt-verified.json"

// maxVerified bounds VerifiedFile: past it the record starts afresh (a
// volume is only verified again).
const maxVerified = 4096

// Verified is what this paddock knows of the content volumes on its
// hosts: for each it uploaded or downloaded and hashed, the volume's
// size and modification time then. A volume whose size and time are
// still the recorded ones holds the content that was verified; any other
// is downloaded and hashed before it is used. A write to the volume on
// the host changes its modification time (only a deliberate reset of the
// time on the host, with root there, would hide one).
type Verified struct{ path string }

// OpenVerified returns the record of the state directory home. A nil
// *Verified records nothing: every content volume found on a host is
// downloaded and hashed before it is used.
func OpenVerified(home string) *Verified { return &Verified{path: filepath.Join(home, VerifiedFile)} }

// volStamp is what identifies a volume's content without reading it.
type volStamp struct {
	Size  uint64 `json:"size"`
	Mtime string `json:"mtime"`
}

// verifiedFile is VerifiedFile's content: stamps by volumeKey.
type verifiedFile struct {
	Version int                 `json:"version"`
	Volumes map[string]volStamp `json:"volumes"`
}

// volumeKey names a volume of a pool on a host in the record.
func volumeKey(c *Conn, pool, name string) string {
	return c.Host.URI + " " + pool + " " + name
}

// read returns the record; a missing or unreadable one is empty.
func (v *Verified) read() verifiedFile {
	f := verifiedFile{Volumes: map[string]volStamp{}}
	data, err := os.ReadFile(v.path)
	if err != nil || json.Unmarshal(data, &f) != nil || f.Volumes == nil || len(f.Volumes) > maxVerified {
		return verifiedFile{Volumes: map[string]volStamp{}}
	}
	return f
}

// has reports whether key was verified with stamp s.
func (v *Verified) has(key string, s volStamp) bool {
	if v == nil {
		return false
	}
	got, ok := v.read().Volumes[key]
	return ok && got == s
}

// note records key as verified with stamp s. A failure to record is
// ignored (the volume is only verified again), as is a concurrent
// paddock's record lost to this one.
func (v *Verified) note(key string, s volStamp) {
	if v == nil {
		return
	}
	f := v.read()
	if len(f.Volumes) >= maxVerified {
		f.Volumes = map[string]volStamp{}
	}
	f.Version = 1
	f.Volumes[key] = s
	data, err := json.MarshalIndent(f, "", "  ")
	if err == nil {
		_ = store.WriteFileAtomic(v.path, append(data, '\n'), 0o600)
	}
}

// stamp reads the size and modification time of the named volume.
func (p *Pool) stamp(name string) (volStamp, error) {
	x, err := p.Describe(name)
	if err != nil {
		return volStamp{}, err
	}
	s := volStamp{}
	if x.Capacity != nil {
		s.Size = x.Capacity.Value
	}
	if x.Target != nil && x.Target.Timestamps != nil {
		s.Mtime = x.Target.Timestamps.Mtime
	}
	if s.Mtime == "" {
		return s, fmt.Errorf("%s: volume %s has no modification time: paddock needs a directory pool", p.c.where(), name)
	}
	return s, nil
}

// Describe reads the named volume's description.
func (p *Pool) Describe(name string) (*libvirtxml.StorageVolume, error) {
	vol, err := p.c.l.StorageVolLookupByName(p.p, name)
	if err != nil {
		return nil, p.c.fail("look up volume "+name, err)
	}
	return p.describe(vol)
}

// describe reads a volume's description.
func (p *Pool) describe(vol golibvirt.StorageVol) (*libvirtxml.StorageVolume, error) {
	desc, err := p.c.l.StorageVolGetXMLDesc(vol, 0)
	if err != nil {
		return nil, p.c.fail("read volume "+vol.Name, err)
	}
	var x libvirtxml.StorageVolume
	if err := x.Unmarshal(desc); err != nil {
		return nil, fmt.Errorf("%s: volume %s: %w", p.c.where(), vol.Name, err)
	}
	return &x, nil
}

// verify checks that the content volume name holds content of SHA-256
// sum: by its stamp, if ver recorded it so, else by downloading and
// hashing it (and recording it). It returns the SHA-256 the volume holds
// when that is not sum.
func (p *Pool) verify(ctx context.Context, name, sum string, ver *Verified) (bool, string, error) {
	key := volumeKey(p.c, p.Name, name)
	before, err := p.stamp(name)
	if err != nil {
		return false, "", err
	}
	if ver.has(key, before) {
		return true, sum, nil
	}
	h := sha256.New()
	if err := p.Download(name, ctxWriter{ctx, h}); err != nil {
		return false, "", err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != sum {
		return false, got, nil
	}
	// Recorded with the stamp read before the download: a change during
	// it shows at the next use.
	ver.note(key, before)
	return true, sum, nil
}

// ctxWriter stops taking writes once its context is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(b)
}

// OverlaysOn lists the pool's volumes whose backing store is the volume
// base: the overlays of VMs on it.
func (p *Pool) OverlaysOn(base Volume) ([]string, error) {
	vols, _, err := p.c.l.StoragePoolListAllVolumes(p.p, 1, 0)
	if err != nil {
		return nil, p.c.fail("list the volumes of storage pool "+p.Name, err)
	}
	var users []string
	for _, v := range vols {
		if v.Name == base.Name {
			continue
		}
		x, err := p.describe(v)
		if code(err) == golibvirt.ErrNoStorageVol {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		if x.BackingStore != nil && x.BackingStore.Path == base.Path {
			users = append(users, v.Name)
		}
	}
	slices.Sort(users)
	return users, nil
}

// Overlay makes the volume name, a qcow2 image of size bytes whose
// backing file is the volume base (of format baseFormat): a VM's disk on
// a template's base disk. The host makes it (qemu-img there).
func (p *Pool) Overlay(name string, base Volume, baseFormat string, size uint64) (Volume, error) {
	if _, err := p.c.l.StorageVolCreateXML(p.p, overlayVolumeXML(name, base.Path, baseFormat, size), 0); err != nil {
		return Volume{}, p.c.fail(fmt.Sprintf("create volume %s on %s in storage pool %s", name, base.Name, p.Name), err)
	}
	v, ok, err := p.Lookup(name)
	if err == nil && !ok {
		err = fmt.Errorf("%s: volume %s vanished right after it was made", p.c.where(), name)
	}
	return v, err
}

// overlayVolumeXML describes a qcow2 volume of size bytes on the backing
// file at basePath, of format baseFormat.
func overlayVolumeXML(name, basePath, baseFormat string, size uint64) string {
	x := libvirtxml.StorageVolume{
		Name:       name,
		Capacity:   &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: size},
		Allocation: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: 0},
		Target: &libvirtxml.StorageVolumeTarget{
			Format:      &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"},
			Permissions: &libvirtxml.StorageVolumeTargetPermissions{Mode: "0600"},
		},
		BackingStore: &libvirtxml.StorageVolumeBackingStore{
			Path:   basePath,
			Format: &libvirtxml.StorageVolumeTargetFormat{Type: baseFormat},
		},
	}
	s, _ := x.Marshal() // a plain struct always marshals
	return s
}
