package store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Errors the store reports, wrapped with the VM's name; test with
// errors.Is.
var (
	// ErrNotFound: there is no VM of that name.
	ErrNotFound = errors.New("no such VM")
	// ErrExists: a VM of that name exists already.
	ErrExists = errors.New("VM exists already")
	// ErrBusy: another command holds the VM's lock.
	ErrBusy = errors.New("another paddock command is changing this VM")
	// ErrRunning: a VMM holds the VM's run lock.
	ErrRunning = errors.New("a VMM is running this VM already")
	// ErrBadName: the name cannot be a VM's.
	ErrBadName = errors.New("not a VM name")
)

// MaxNameLen is the longest VM name (configs.MaxNameLen).
const MaxNameLen = 63

// Files of a VM directory.
const (
	SpecFile     = "vm.yaml"
	RecordFile   = "state.json"
	LockFile     = "lock"
	RunLockFile  = "vmm.lock"
	SocketFile   = "ctl.sock"
	ConsoleFile  = "console.log"
	VMMLogFile   = "vmm.log"
	FormatsFile  = "formats.json"
	IdentityFile = "identity.json"
	SeedFile     = "seed.iso"
	// LibvirtFile says where a libvirt VM lives (guest/libvirt's
	// Placement).
	LibvirtFile  = "libvirt.json"
	vmsDir       = "vms"
	newPrefix    = ".new-"
	trashPrefix  = ".trash-"
	staleNewDirs = time.Hour
)

// Store is a home directory of managed VMs. Its methods are safe for
// concurrent use, by any number of processes.
type Store struct {
	home string
}

// Open returns the store in home, creating the directory (mode 0700) if
// needed, and removes what interrupted commands left behind: half-removed
// VMs and half-created ones older than an hour. It refuses (*UnsafeError)
// a home or vms/ that someone other than the current user and root could
// change (CheckTrusted).
func Open(home string) (*Store, error) {
	if !filepath.IsAbs(home) {
		return nil, fmt.Errorf("store: home %q is not an absolute path", home)
	}
	s := &Store{home: home}
	if err := checkParents(home); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.vms(), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := CheckTrusted(home); err != nil {
		return nil, err
	}
	if err := checkEntry(home, vmsDir, false); err != nil {
		return nil, err
	}
	s.sweep()
	return s, nil
}

// Home returns the store's home directory.
func (s *Store) Home() string { return s.home }

func (s *Store) vms() string { return filepath.Join(s.home, vmsDir) }

// sweep removes leftovers of interrupted Create and Remove calls. Errors
// are ignored: a leftover is harmless and the next Open tries again.
func (s *Store) sweep() {
	ents, err := os.ReadDir(s.vms())
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, trashPrefix):
			os.RemoveAll(filepath.Join(s.vms(), name))
		case strings.HasPrefix(name, newPrefix):
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleNewDirs {
				os.RemoveAll(filepath.Join(s.vms(), name))
			}
		}
	}
}

// Names returns the names of the VMs in the store, sorted.
func (s *Store) Names() ([]string, error) {
	names, err := dirNames(s.vms(), ValidName)
	if err != nil {
		return nil, fmt.Errorf("store: list VMs: %w", err)
	}
	return names, nil
}

// dirNames returns the sorted names of the directories in dir that valid
// accepts.
func dirNames(dir string, valid func(string) bool) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && valid(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// ValidName reports whether name can name a VM: a DNS label, as configs
// requires (1 to 63 of a-z, 0-9 and '-', not starting or ending with '-').
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameLen || name[0] == '-' || name[len(name)-1] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-') {
			return false
		}
	}
	return true
}

// VM is one VM's directory.
type VM struct {
	Name string
	Dir  string
}

// Path returns the path of file in the VM's directory.
func (v *VM) Path(file string) string { return filepath.Join(v.Dir, file) }

// VM returns the VM called name; ErrNotFound if there is none. Its
// directory and the files paddock reads from it (vm.yaml, state.json,
// formats.json, identity.json, libvirt.json) must be owned by the current user or root and writable by
// no one else (*UnsafeError otherwise).
func (s *Store) VM(name string) (*VM, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("store: %q: %w", name, ErrBadName)
	}
	v := &VM{Name: name, Dir: filepath.Join(s.vms(), name)}
	fi, err := os.Stat(v.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store: VM %s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("store: VM %s: %w", name, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("store: VM %s: %s is not a directory", name, v.Dir)
	}
	if err := checkVMDir(s.vms(), name); err != nil {
		return nil, err
	}
	return v, nil
}

// trustedFiles are the files of a VM directory whose contents paddock
// acts on, checked by Store.VM.
var trustedFiles = []string{SpecFile, RecordFile, FormatsFile, IdentityFile, LibvirtFile, FromFile, DisksDir}

// Create adds the VM called name with the given spec (vm.yaml), record
// (state.json), the detected formats of its disks (formats.json) and a
// new identity (identity.json, a fresh UUID; NewIdentity): the
// VM's directory is built aside and renamed into place, so other commands
// see all of it or nothing, and of two concurrent Creates of one name
// exactly one succeeds (the other gets ErrExists).
func (s *Store) Create(name string, spec []byte, rec Record, formats ...DiskFormat) (*VM, error) {
	return s.CreateVM(name, spec, rec, CreateOptions{Formats: formats})
}

// CreateVM is Create with more in the new VM's directory: from.json and
// the files o.Prepare makes, all of which appear with the VM or not at
// all.
func (s *Store) CreateVM(name string, spec []byte, rec Record, o CreateOptions) (*VM, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("store: %q: %w", name, ErrBadName)
	}
	tmp, err := os.MkdirTemp(s.vms(), newPrefix+name+"-")
	if err != nil {
		return nil, fmt.Errorf("store: create VM %s: %w", name, err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("store: create VM %s: %w", name, err)
	}
	data, err := rec.marshal()
	if err != nil {
		return nil, err
	}
	fdata, err := marshalFormats(o.Formats)
	if err != nil {
		return nil, err
	}
	id, err := NewIdentity()
	if err != nil {
		return nil, err
	}
	idata, err := marshalIdentity(id)
	if err != nil {
		return nil, err
	}
	type file struct {
		name string
		data []byte
		perm fs.FileMode
	}
	files := []file{{SpecFile, spec, 0o600}, {RecordFile, data, 0o600}, {FormatsFile, fdata, 0o600}, {IdentityFile, idata, identityMode}, {LockFile, nil, 0o600}}
	if o.From != nil {
		from, err := o.From.marshal()
		if err != nil {
			return nil, err
		}
		files = append(files, file{FromFile, from, 0o600})
	}
	for _, f := range files {
		if err := writeSynced(filepath.Join(tmp, f.name), f.data, f.perm); err != nil {
			return nil, fmt.Errorf("store: create VM %s: %w", name, err)
		}
	}
	final := s.VMDir(name)
	if o.Prepare != nil {
		if err := o.Prepare(tmp, final); err != nil {
			return nil, err
		}
		if err := syncTree(tmp); err != nil {
			return nil, err
		}
	}
	if err := syncDir(tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("store: VM %s: %w", name, ErrExists)
		}
		return nil, fmt.Errorf("store: create VM %s: %w", name, err)
	}
	done = true
	if err := syncDir(s.vms()); err != nil {
		return nil, err
	}
	return &VM{Name: name, Dir: final}, nil
}

// writeSynced writes a new file with mode perm and syncs it.
func writeSynced(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Remove deletes the VM's directory and everything in it. The VM first
// leaves vms/ in one rename, so no command sees it half-removed.
// Precondition: the caller holds the VM's Lock and no VMM runs it.
func (s *Store) Remove(v *VM) error {
	return removeDir(v.Dir, "VM "+v.Name, ErrNotFound)
}

// removeDir deletes dir, the directory of what (say "VM web"), and
// everything in it: first a rename to a trash name beside it, so it
// disappears in one step, then the deletion. A dir already gone is
// notFound.
func removeDir(dir, what string, notFound error) error {
	parent := filepath.Dir(dir)
	trash, err := trashName(parent, filepath.Base(dir))
	if err != nil {
		return fmt.Errorf("store: remove %s: %w", what, err)
	}
	// rename(2) itself: os.Rename refuses directories as targets.
	if err := unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, trash, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store: %s: %w", what, notFound)
		}
		return fmt.Errorf("store: remove %s: rename %s to %s: %w", what, dir, trash, err)
	}
	if err := syncDir(parent); err != nil {
		return err
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("store: remove %s: delete its files: %w", what, err)
	}
	return nil
}

// RemoveDir deletes dir, the directory of what (say "tenant acme"), as
// Remove deletes a VM's: first a rename to a trash name beside it, then
// the deletion. A dir already gone is an error wrapping notFound.
func RemoveDir(dir, what string, notFound error) error { return removeDir(dir, what, notFound) }

// trashName returns a new name in dir for name's directory on its way
// out: the sweep of the next Open removes what a crash left there.
func trashName(dir, name string) (string, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	return filepath.Join(dir, trashPrefix+name+"-"+hex.EncodeToString(rnd[:])), nil
}
