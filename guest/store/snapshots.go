package store

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A VM's snapshots live in its directory, one directory each:
//
//	vms/NAME/snapshots/SNAP/snapshot.json  what the snapshot is (SnapshotMeta)
//	vms/NAME/snapshots/SNAP/state          the machine's state (hypervisor/snapshot)
//	vms/NAME/snapshots/SNAP/memory         guest RAM, sparse
//
// The disks' contents are internal qcow2 snapshots named SNAP in the disk
// images themselves. A snapshot's directory is built aside and renamed
// into place when it is complete.
const (
	SnapshotsDir       = "snapshots"
	SnapshotMetaFile   = "snapshot.json"
	SnapshotStateFile  = "state"
	SnapshotMemoryFile = "memory"
)

// SnapshotMetaFormat is the version of snapshot.json this code writes
// and reads.
const SnapshotMetaFormat = 1

// Snapshot errors.
var (
	// ErrNoSnapshot: the VM has no snapshot of that name.
	ErrNoSnapshot = errors.New("no such snapshot")
	// ErrSnapshotExists: the VM has a snapshot of that name already.
	ErrSnapshotExists = errors.New("a snapshot of that name exists already")
	// ErrBadSnapshotName: the name cannot be a snapshot's.
	ErrBadSnapshotName = errors.New("not a snapshot name")
)

// SnapshotMeta is snapshot.json: what a snapshot holds and where, for
// listing and removing it without reading its state.
type SnapshotMeta struct {
	Format  int       `json:"format"`
	Name    string    `json:"name"`
	VM      string    `json:"vm"`
	Created time.Time `json:"created"`
	// VMState is what the VM was doing at the snapshot: running or
	// paused. A restored VM runs either way.
	VMState string `json:"vm_state"`
	// Paddock is the version of the paddock that took the snapshot.
	Paddock string `json:"paddock"`
	CPUs    int    `json:"cpus"`
	Memory  uint64 `json:"memory"` // bytes of guest RAM
	// MemoryWritten is how many bytes of the memory file hold data; the
	// rest are holes (RAM the guest never touched, or zeros).
	MemoryWritten int64          `json:"memory_written"`
	Disks         []SnapshotDisk `json:"disks"`
}

// SnapshotDisk is one of the VM's disks at the snapshot.
type SnapshotDisk struct {
	Index int    `json:"index"`
	Path  string `json:"path"`
	// Snapshot is the internal qcow2 snapshot holding the disk's contents
	// of the snapshot's instant; empty for a read-only disk, which the
	// guest could not change.
	Snapshot string `json:"snapshot,omitempty"`
}

// ValidSnapshotName reports whether name can name a snapshot: 1 to 63
// letters, digits, '.', '_' and '-', starting with a letter or digit (it
// is a directory name and a qcow2 snapshot name).
func ValidSnapshotName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case i > 0 && (b == '.' || b == '_' || b == '-'):
		default:
			return false
		}
	}
	return true
}

// SnapshotDir returns the directory of the snapshot called name.
func (v *VM) SnapshotDir(name string) string {
	return filepath.Join(v.Dir, SnapshotsDir, name)
}

// SnapshotNames returns the names of the VM's complete snapshots, sorted.
func (v *VM) SnapshotNames() ([]string, error) {
	names, err := dirNames(filepath.Join(v.Dir, SnapshotsDir), ValidSnapshotName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: list the snapshots of VM %s: %w", v.Name, err)
	}
	return names, nil
}

// maxSnapshotMeta caps what ReadSnapshot reads of a snapshot.json.
const maxSnapshotMeta = 1 << 20

// ReadSnapshot reads the snapshot.json of the snapshot called name.
func (v *VM) ReadSnapshot(name string) (SnapshotMeta, error) {
	if !ValidSnapshotName(name) {
		return SnapshotMeta{}, fmt.Errorf("store: %q: %w", name, ErrBadSnapshotName)
	}
	path := filepath.Join(v.SnapshotDir(name), SnapshotMetaFile)
	f, err := v.OpenSnapshotFile(name, SnapshotMetaFile)
	if err != nil {
		return SnapshotMeta{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSnapshotMeta+1))
	if err != nil {
		return SnapshotMeta{}, fmt.Errorf("store: read %s: %w", path, err)
	}
	if len(b) > maxSnapshotMeta {
		return SnapshotMeta{}, fmt.Errorf("store: %s is larger than %d bytes", path, maxSnapshotMeta)
	}
	var m SnapshotMeta
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return SnapshotMeta{}, fmt.Errorf("store: %s: %w", path, err)
	}
	if m.Format != SnapshotMetaFormat {
		return SnapshotMeta{}, fmt.Errorf("store: %s is format %d; this paddock reads format %d only", path, m.Format, SnapshotMetaFormat)
	}
	return m, nil
}

// NewSnapshotDir starts the snapshot called name: it returns a new empty
// directory beside where the snapshot will be, for its files, which
// CommitSnapshotDir then renames into place (or the caller removes). It
// fails with ErrSnapshotExists if the VM has a snapshot of that name.
func (v *VM) NewSnapshotDir(name string) (string, error) {
	if !ValidSnapshotName(name) {
		return "", fmt.Errorf("store: %q: %w", name, ErrBadSnapshotName)
	}
	parent := filepath.Join(v.Dir, SnapshotsDir)
	if err := os.Mkdir(parent, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("store: %w", err)
	}
	d, err := v.openSnapshotsDir() // a directory, not a link a jailed VMM left
	if err != nil {
		return "", err
	}
	d.Close()
	if _, err := os.Lstat(v.SnapshotDir(name)); err == nil {
		return "", fmt.Errorf("store: VM %s: snapshot %s: %w", v.Name, name, ErrSnapshotExists)
	}
	tmp, err := os.MkdirTemp(parent, newPrefix+name+"-")
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	return tmp, nil
}

// CommitSnapshotDir makes the directory NewSnapshotDir returned the
// snapshot called name, durably: its files must be synced already.
func (v *VM) CommitSnapshotDir(tmp, name string) error {
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, v.SnapshotDir(name), unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("store: VM %s: snapshot %s: %w", v.Name, name, ErrSnapshotExists)
		}
		return fmt.Errorf("store: VM %s: put snapshot %s in place: %w", v.Name, name, err)
	}
	return syncDir(filepath.Dir(tmp))
}

// RemoveSnapshotDir deletes the snapshot called name's directory: it
// leaves the list in one rename, then its files go. It works through
// the open snapshots directory and follows no link (OpenSnapshotFile).
func (v *VM) RemoveSnapshotDir(name string) error {
	if !ValidSnapshotName(name) {
		return fmt.Errorf("store: %q: %w", name, ErrBadSnapshotName)
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("store: remove snapshot %s: %w", name, err)
	}
	parent, err := v.openSnapshotsDir()
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: VM %s: snapshot %s: %w", v.Name, name, ErrNoSnapshot)
	}
	if err != nil {
		return err
	}
	defer parent.Close()
	pfd := int(parent.Fd())
	trash := trashPrefix + name + "-" + hex.EncodeToString(rnd[:])
	if err := unix.Renameat2(pfd, name, pfd, trash, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store: VM %s: snapshot %s: %w", v.Name, name, ErrNoSnapshot)
		}
		return fmt.Errorf("store: VM %s: remove snapshot %s: %w", v.Name, name, err)
	}
	if err := parent.Sync(); err != nil {
		return fmt.Errorf("store: VM %s: remove snapshot %s: %w", v.Name, name, err)
	}
	if err := removeAt(pfd, trash, 0); err != nil {
		return fmt.Errorf("store: VM %s: remove snapshot %s: %w", v.Name, name, err)
	}
	return nil
}

// SweepSnapshotDirs removes what interrupted snapshot creations and
// removals left in the VM's snapshots directory, following no link.
// Precondition: no VMM runs the VM, or the VM's lock is held (nothing is
// creating one).
func (v *VM) SweepSnapshotDirs() {
	parent, err := v.openSnapshotsDir()
	if err != nil {
		return
	}
	defer parent.Close()
	names, err := parent.Readdirnames(-1)
	if err != nil {
		return
	}
	for _, n := range names {
		if strings.HasPrefix(n, newPrefix) || strings.HasPrefix(n, trashPrefix) {
			removeAt(int(parent.Fd()), n, 0)
		}
	}
}
