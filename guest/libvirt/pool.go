package libvirt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirtxml"
)

// systemPoolDir is where paddock makes DefaultPool on a host whose URI
// is a /system one and that has no such pool yet.
const systemPoolDir = "/var/lib/libvirt/paddock"

// Pool is the storage pool paddock keeps a host's volumes in: a
// directory pool (its volumes are files the host's QEMU opens).
type Pool struct {
	c    *Conn
	p    golibvirt.StoragePool
	Name string
	// Dir is the pool's directory on the host.
	Dir string
}

// Volume is a volume in a Pool.
type Volume struct {
	Name string
	// Path is the volume's file on the host.
	Path string
}

// ErrNoPool: the host has no storage pool of the name paddock uses.
var ErrNoPool = errors.New("no such storage pool")

// Pool returns the host's pool, started. With create, DefaultPool is made
// (a directory pool in /var/lib/libvirt/paddock, started and set to
// start with the daemon) when the host lacks it and its URI is a /system
// one; a pool the host was given by name must exist. Without create, a
// missing pool is ErrNoPool (wrapped).
func (c *Conn) Pool(create bool) (*Pool, error) {
	name := c.Host.PoolName()
	p, err := c.l.StoragePoolLookupByName(name)
	if code(err) == golibvirt.ErrNoStoragePool {
		if !create {
			return nil, fmt.Errorf("%s: storage pool %s: %w", c.where(), name, ErrNoPool)
		}
		p, err = c.makePool(name)
	}
	if err != nil {
		return nil, c.fail("find storage pool "+name, err)
	}
	active, err := c.l.StoragePoolIsActive(p)
	if err != nil {
		return nil, c.fail("check storage pool "+name, err)
	}
	if active == 0 {
		if err := c.l.StoragePoolCreate(p, 0); err != nil {
			return nil, c.fail("start storage pool "+name, err)
		}
	}
	desc, err := c.l.StoragePoolGetXMLDesc(p, 0)
	if err != nil {
		return nil, c.fail("read storage pool "+name, err)
	}
	var x libvirtxml.StoragePool
	if err := x.Unmarshal(desc); err != nil {
		return nil, fmt.Errorf("%s: storage pool %s: %w", c.where(), name, err)
	}
	if x.Type != "dir" || x.Target == nil || x.Target.Path == "" {
		return nil, fmt.Errorf("%s: storage pool %s is of type %s: paddock needs a directory pool (type dir)", c.where(), name, x.Type)
	}
	return &Pool{c: c, p: p, Name: name, Dir: x.Target.Path}, nil
}

// makePool defines, builds and starts DefaultPool.
func (c *Conn) makePool(name string) (golibvirt.StoragePool, error) {
	if name != DefaultPool || !strings.HasSuffix(strings.TrimSuffix(c.Host.URI, "/"), "/system") && !strings.Contains(c.Host.URI, "/system?") {
		return golibvirt.StoragePool{}, fmt.Errorf("no storage pool %s: make a directory pool of that name there (virsh pool-define-as %s dir --target DIR; virsh pool-build %s; virsh pool-start %s)", name, name, name, name)
	}
	x := libvirtxml.StoragePool{Type: "dir", Name: name, Target: &libvirtxml.StoragePoolTarget{
		Path:        systemPoolDir,
		Permissions: &libvirtxml.StoragePoolTargetPermissions{Mode: "0711"},
	}}
	desc, err := x.Marshal()
	if err != nil {
		return golibvirt.StoragePool{}, err
	}
	p, err := c.l.StoragePoolDefineXML(desc, 0)
	if err != nil {
		if lp, lerr := c.l.StoragePoolLookupByName(name); lerr == nil {
			return lp, nil // someone else made it meanwhile
		}
		return p, fmt.Errorf("define storage pool %s: %w", name, err)
	}
	if err := c.l.StoragePoolBuild(p, 0); err != nil {
		return p, fmt.Errorf("build storage pool %s in %s: %w", name, systemPoolDir, err)
	}
	if err := c.l.StoragePoolSetAutostart(p, 1); err != nil {
		return p, fmt.Errorf("set storage pool %s to autostart: %w", name, err)
	}
	return p, nil
}

// Lookup returns the named volume; ok is false when there is none.
func (p *Pool) Lookup(name string) (v Volume, ok bool, err error) {
	vol, err := p.c.l.StorageVolLookupByName(p.p, name)
	if code(err) == golibvirt.ErrNoStorageVol {
		return Volume{}, false, nil
	}
	if err != nil {
		return Volume{}, false, p.c.fail("look up volume "+name, err)
	}
	path, err := p.c.l.StorageVolGetPath(vol)
	if err != nil {
		return Volume{}, false, p.c.fail("get the path of volume "+name, err)
	}
	return Volume{Name: name, Path: path}, true, nil
}

// Refresh makes the pool see files that appeared in its directory (the
// console logs libvirt writes there).
func (p *Pool) Refresh() error {
	if err := p.patiently(func() error { return p.c.l.StoragePoolRefresh(p.p, 0) }); err != nil {
		return p.c.fail("refresh storage pool "+p.Name, err)
	}
	return nil
}

// patiently calls op until it succeeds, fails otherwise than with
// libvirt's refusals for another client's job in the pool (busy), or
// refreshPatience passes.
//
// libvirt refuses to refresh a pool while any client is starting a
// volume's download or upload or building a volume in it ("has
// asynchronous jobs running"), and to delete a volume while a download
// of it is being started ("is still in use"): two paddocks reading one
// host's consoles at once meet that often. Those jobs are short.
func (p *Pool) patiently(op func() error) error {
	wait := 5 * time.Millisecond
	deadline := time.Now().Add(refreshPatience)
	for {
		err := op()
		if err == nil || !busy(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// refreshPatience is how long patiently waits for a pool's other jobs.
const refreshPatience = 30 * time.Second

// busy reports whether err is libvirt refusing a pool or volume
// operation because another client's volume job is under way.
func busy(err error) bool {
	var e golibvirt.Error
	if !errors.As(err, &e) {
		return false
	}
	switch golibvirt.ErrorNumber(e.Code) {
	case golibvirt.ErrInternalError:
		return strings.Contains(e.Message, "asynchronous jobs running")
	case golibvirt.ErrOperationInvalid:
		return strings.Contains(e.Message, "is still in use")
	}
	return false
}

// Delete deletes the named volume; a missing one is fine.
func (p *Pool) Delete(name string) error {
	vol, err := p.c.l.StorageVolLookupByName(p.p, name)
	if code(err) == golibvirt.ErrNoStorageVol {
		return nil
	}
	if err == nil {
		err = p.patiently(func() error { return p.c.l.StorageVolDelete(vol, 0) })
	}
	if err != nil && code(err) != golibvirt.ErrNoStorageVol {
		return p.c.fail("delete volume "+name, err)
	}
	return nil
}

// Names lists the pool's volumes that start with prefix.
func (p *Pool) Names(prefix string) ([]string, error) {
	vols, _, err := p.c.l.StoragePoolListAllVolumes(p.p, 1, 0)
	if err != nil {
		return nil, p.c.fail("list the volumes of storage pool "+p.Name, err)
	}
	var names []string
	for _, v := range vols {
		if strings.HasPrefix(v.Name, prefix) {
			names = append(names, v.Name)
		}
	}
	return names, nil
}

// sharedPrefix starts the names of content volumes: "sha256-" and the
// hex SHA-256 of the content.
const sharedPrefix = "sha256-"

// partialSuffix marks a content volume being uploaded by paddocks that
// uploaded to a partial name first: NAME.part-RANDOM.
const partialSuffix = ".part-"

// stalePartial is the age past which a partial upload is a leftover of
// an interrupted (older) paddock, which Share removes.
const stalePartial = time.Hour

// Share puts the file src.Path into the pool once: the volume is named
// by the SHA-256 of the file's content, and a volume of that name already
// there is reused once verified to hold that content (ver; see
// Verified). A volume that does not is replaced when no volume is an
// overlay on it, and refused (a *ContentMismatchError) otherwise; a
// volume an interrupted upload left incomplete is such a volume.
func (p *Pool) Share(ctx context.Context, src Content, ver *Verified) (Volume, error) {
	path := src.Path
	sum := src.SHA256
	fi, err := os.Stat(path)
	if err != nil {
		return Volume{}, fmt.Errorf("libvirt: %w", err)
	}
	size := uint64(fi.Size())
	if sum == "" {
		if sum, size, err = hashFile(ctx, path); err != nil {
			return Volume{}, err
		}
	}
	name := sharedPrefix + sum
	v, ok, err := p.Lookup(name)
	if err != nil {
		return Volume{}, err
	}
	if ok {
		good, got, err := p.verify(ctx, name, sum, ver)
		if err != nil || good {
			return v, err
		}
		users, err := p.OverlaysOn(v)
		if err != nil {
			return Volume{}, err
		}
		if len(users) > 0 {
			return Volume{}, &ContentMismatchError{Where: p.c.where(), Volume: name, Sum: got, Users: users}
		}
		if err := p.Delete(name); err != nil {
			return Volume{}, err
		}
	}
	p.sweepPartials()
	// Uploaded under its final name: a copy from a partial name would be
	// converted (libvirt probes an uploaded qcow2 image as qcow2, and
	// copies it into a raw volume as raw), and a volume left incomplete
	// is found by the check above, as any other that does not hold what
	// its name says.
	vol, err := p.c.l.StorageVolCreateXML(p.p, rawVolumeXML(name, size), 0)
	if code(err) == golibvirt.ErrStorageVolExist {
		return Volume{}, fmt.Errorf("%s: volume %s appeared while paddock was about to upload it (another paddock uploading the same file?): try again", p.c.where(), name)
	}
	if err != nil {
		return Volume{}, p.c.fail("create volume "+name+" in storage pool "+p.Name, err)
	}
	if err := p.upload(ctx, vol, name, path); err != nil {
		p.Delete(name)
		return Volume{}, err
	}
	v, ok, err = p.Lookup(name)
	if err == nil && !ok {
		err = fmt.Errorf("%s: volume %s vanished right after it was made", p.c.where(), name)
	}
	if err == nil {
		// Its content is what was just uploaded.
		if st, serr := p.stamp(name); serr == nil {
			ver.note(volumeKey(p.c, p.Name, name), st)
		}
	}
	return v, err
}

// Import makes the volume name, with the content of the file at path,
// for one VM (a writable disk). A volume of that name is refused.
func (p *Pool) Import(ctx context.Context, name, path string) (Volume, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Volume{}, fmt.Errorf("libvirt: %w", err)
	}
	vol, err := p.create(name, uint64(fi.Size()))
	if err != nil {
		return Volume{}, err
	}
	if err := p.upload(ctx, vol, name, path); err != nil {
		p.Delete(name)
		return Volume{}, err
	}
	v, ok, err := p.Lookup(name)
	if err == nil && !ok {
		err = fmt.Errorf("%s: volume %s vanished right after it was made", p.c.where(), name)
	}
	return v, err
}

// create makes an empty (sparse) raw volume of size bytes.
func (p *Pool) create(name string, size uint64) (golibvirt.StorageVol, error) {
	vol, err := p.c.l.StorageVolCreateXML(p.p, rawVolumeXML(name, size), 0)
	if err != nil {
		return vol, p.c.fail("create volume "+name+" in storage pool "+p.Name, err)
	}
	return vol, nil
}

// rawVolumeXML describes a sparse file volume of size bytes. Volumes hold
// a file's bytes as they are: a qcow2 image is uploaded as its file, and
// the domain says its format.
func rawVolumeXML(name string, size uint64) string {
	x := libvirtxml.StorageVolume{
		Name:       name,
		Capacity:   &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: size},
		Allocation: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: 0},
		Target: &libvirtxml.StorageVolumeTarget{
			Format:      &libvirtxml.StorageVolumeTargetFormat{Type: "raw"},
			Permissions: &libvirtxml.StorageVolumeTargetPermissions{Mode: "0600"},
		},
	}
	s, _ := x.Marshal() // a plain struct always marshals
	return s
}

// upload sends the data extents of the file at path into vol (made with
// the file's size and no data): holes stay holes on the host and are not
// sent.
func (p *Pool) upload(ctx context.Context, vol golibvirt.StorageVol, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("libvirt: %w", err)
	}
	defer f.Close()
	extents, err := dataExtents(f)
	if err != nil {
		return fmt.Errorf("libvirt: find the data in %s: %w", path, err)
	}
	for _, e := range extents {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("libvirt: upload %s: %w", path, err)
		}
		r := io.NewSectionReader(f, e.off, e.len)
		if err := p.c.l.StorageVolUpload(vol, r, uint64(e.off), uint64(e.len), 0); err != nil {
			return p.c.fail(fmt.Sprintf("upload %s to volume %s", path, name), err)
		}
	}
	return nil
}

// extent is a run of bytes in a file.
type extent struct{ off, len int64 }

// dataExtents lists the runs of f that hold data (SEEK_DATA/SEEK_HOLE);
// a file system without hole support reports the whole file as data.
func dataExtents(f *os.File) ([]extent, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	var out []extent
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return nil, err
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		hole = min(hole, size)
		out = append(out, extent{data, hole - data})
		off = hole
	}
	return out, nil
}

// hashFile returns the hex SHA-256 of the file at path and its size.
func hashFile(ctx context.Context, path string) (string, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("libvirt: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, f})
	if err != nil {
		return "", 0, fmt.Errorf("libvirt: read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), uint64(n), nil
}

// ctxReader stops reading once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// sweepPartials deletes partial uploads older than stalePartial, left by
// paddocks that were interrupted. Errors are ignored: a leftover only
// takes room, and the next upload tries again.
func (p *Pool) sweepPartials() {
	vols, _, err := p.c.l.StoragePoolListAllVolumes(p.p, 1, 0)
	if err != nil {
		return
	}
	for _, v := range vols {
		if !strings.HasPrefix(v.Name, sharedPrefix) || !strings.Contains(v.Name, partialSuffix) {
			continue
		}
		desc, err := p.c.l.StorageVolGetXMLDesc(v, 0)
		if err != nil {
			continue
		}
		var x libvirtxml.StorageVolume
		if x.Unmarshal(desc) != nil || x.Target == nil || x.Target.Timestamps == nil {
			continue
		}
		sec, _, _ := strings.Cut(x.Target.Timestamps.Mtime, ".")
		t, err := strconv.ParseInt(sec, 10, 64)
		if err == nil && time.Since(time.Unix(t, 0)) > stalePartial {
			_ = p.c.l.StorageVolDelete(v, 0)
		}
	}
}
