// Package tenant keeps paddock's tenants: each customer's share of a
// host, with the limits its VMs must fit in. A VM names its tenant in its
// YAML (tenant:, configs.DefaultTenant when left out); the tenant's
// quotas count it, and its managed networks are the tenant's own
// (guest/network).
//
// Under the state directory, each tenant has a directory tenants/NAME
// holding
//
//	tenant.json  the tenant: its name, limits and creation time
//	lock         taken by whoever checks the tenant's quotas and then
//	             adds to what it uses (create, clone, start), changes
//	             its limits or removes it
//
// The default tenant always exists: without a tenant.json it has no
// limits, and tenants/default holds only its lock until paddock tenant
// set gives it some.
package tenant

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/store"
)

// Files of the tenants tree.
const (
	TenantFile = "tenant.json"
	LockFile   = "lock"
	tenantsDir = "tenants"
)

// Version is the version of tenant.json this code writes and reads.
const Version = 1

// Default is the tenant of a VM that names none.
const Default = configs.DefaultTenant

// LockWait bounds how long a command waits for a tenant's lock: its
// holders check quotas and create VMs (a clone of many holds it while it
// makes them all).
const LockWait = 2 * time.Minute

// Errors, for errors.Is.
var (
	// ErrNotFound: no tenant has the name (configs.ErrNoTenant, so that
	// Validate recognises it).
	ErrNotFound = configs.ErrNoTenant
	// ErrExists: a tenant of that name exists already.
	ErrExists = errors.New("exists already")
	// ErrInUse: the tenant has VMs or networks.
	ErrInUse = errors.New("in use")
)

// Tenant is a tenant's record (tenant.json).
type Tenant struct {
	Version   int       `json:"version"`
	Name      string    `json:"name"`
	Limits    Limits    `json:"limits"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// Store is the tenants of one state directory. Its methods are safe for
// concurrent use by any number of processes.
type Store struct {
	dir string
}

// Open returns the tenants of the state directory home, creating
// tenants/ (mode 0700) if needed. Like the VM store it refuses a tree
// that someone other than the current user and root could change
// (store.CheckTrusted): a tenant record decides what its VMs may use.
func Open(home string) (*Store, error) {
	dir, err := store.OpenSubdir(home, tenantsDir)
	if err != nil {
		return nil, err
	}
	return &Store{dir: dir}, nil
}

// Dir is the directory of tenant name.
func (s *Store) Dir(name string) string { return filepath.Join(s.dir, name) }

// Get returns the tenant's record: an error wrapping ErrNotFound if there
// is none. The default tenant always has one (without limits, unless
// they were set).
func (s *Store) Get(name string) (*Tenant, error) {
	if err := configs.CheckTenantName(name); err != nil {
		return nil, fmt.Errorf("tenant: %w", err)
	}
	// The record and every directory above it: no one else may have
	// written them.
	path := filepath.Join(s.Dir(name), TenantFile)
	if err := store.CheckTrusted(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return s.missing(name)
		}
		return nil, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s.missing(name)
	}
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", name, err)
	}
	var t Tenant
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("tenant %s: %s: %w", name, path, err)
	}
	if err := t.check(path); err != nil {
		return nil, fmt.Errorf("tenant %s: %w", name, err)
	}
	return &t, nil
}

// missing is the record of a tenant without tenant.json: the default
// tenant's, or ErrNotFound.
func (s *Store) missing(name string) (*Tenant, error) {
	if name == Default {
		return &Tenant{Version: Version, Name: Default}, nil
	}
	return nil, fmt.Errorf("tenant %s: %w", name, ErrNotFound)
}

// check validates a record read from path.
func (t *Tenant) check(path string) error {
	switch {
	case t.Version > Version:
		return fmt.Errorf("%s: version %d is newer than this paddock's (%d)", path, t.Version, Version)
	case t.Name != filepath.Base(filepath.Dir(path)):
		return fmt.Errorf("%s: name %q does not match its directory", path, t.Name)
	}
	if err := t.Limits.Check(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Names returns the names of the tenants, sorted; the default tenant is
// always among them.
func (s *Store) Names() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("tenant: %w", err)
	}
	names := []string{Default}
	for _, e := range ents {
		if e.IsDir() && e.Name() != Default && configs.CheckTenantName(e.Name()) == nil {
			if _, err := os.Stat(filepath.Join(s.dir, e.Name(), TenantFile)); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

// Create adds tenant name with limits l.
func (s *Store) Create(name string, l Limits) (*Tenant, error) {
	if err := configs.CheckTenantName(name); err != nil {
		return nil, fmt.Errorf("tenant: %w", err)
	}
	if err := l.Check(); err != nil {
		return nil, fmt.Errorf("tenant %s: %w", name, err)
	}
	if name == Default {
		return nil, fmt.Errorf("tenant %s: %w: it always does (paddock tenant set %s changes its limits)", name, ErrExists, name)
	}
	lk, err := s.Lock(name)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	if _, err := os.Stat(filepath.Join(s.Dir(name), TenantFile)); err == nil {
		return nil, fmt.Errorf("tenant %s: %w", name, ErrExists)
	}
	t := &Tenant{Version: Version, Name: name, Limits: l, CreatedAt: time.Now().UTC()}
	if err := s.write(t); err != nil {
		return nil, err
	}
	return t, nil
}

// SetLimits replaces the limits of tenant name: the caller holds its
// lock (Lock), so no quota check runs meanwhile. Lower limits than the
// tenant uses are taken: nothing is removed, but nothing more fits
// until enough is.
func (s *Store) SetLimits(lk *Lock, l Limits) (*Tenant, error) {
	t, err := s.Get(lk.name)
	if err != nil {
		return nil, err
	}
	if err := l.Check(); err != nil {
		return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
	}
	t.Limits = l
	if t.CreatedAt.IsZero() {
		t.CreatedAt = time.Now().UTC()
	}
	if err := s.write(t); err != nil {
		return nil, err
	}
	return t, nil
}

// write replaces the tenant's record. Precondition: its directory exists.
func (s *Store) write(t *Tenant) error {
	t.Version = Version
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return fmt.Errorf("tenant %s: %w", t.Name, err)
	}
	return store.WriteFileAtomic(filepath.Join(s.Dir(t.Name), TenantFile), append(b, '\n'), 0o600)
}

// Remove deletes tenant name. inUse, called with the tenant's lock held,
// says what the tenant still has (VMs, networks): an error from it
// refuses the removal. The default tenant cannot be removed.
func (s *Store) Remove(name string, inUse func() error) error {
	if _, err := s.Get(name); err != nil {
		return err
	}
	if name == Default {
		return fmt.Errorf("tenant %s always exists: it cannot be removed (paddock tenant set %s changes its limits)", name, name)
	}
	lk, err := s.Lock(name)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	if _, err := s.Get(name); err != nil {
		return err // removed meanwhile
	}
	if err := inUse(); err != nil {
		return err
	}
	if err := store.RemoveDir(s.Dir(name), "tenant "+name, ErrNotFound); err != nil {
		return err
	}
	return nil
}

// Lock is a tenant's lock: whoever holds it may check the tenant's
// quotas and add to its usage, change its limits or remove it, and no
// one else does meanwhile. It is an flock(2) on the tenant's lock file,
// released by Unlock or when the process dies.
type Lock struct {
	name string
	f    *os.File
}

// Lock takes tenant name's lock, waiting up to LockWait for another
// command to release it. The tenant need not exist (its directory is
// created); the holder checks that it does.
func (s *Store) Lock(name string) (*Lock, error) {
	if err := configs.CheckTenantName(name); err != nil {
		return nil, fmt.Errorf("tenant: %w", err)
	}
	dir := s.Dir(name)
	for {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("tenant %s: %w", name, err)
		}
		if err := store.CheckTrusted(dir); err != nil {
			return nil, err
		}
		path := filepath.Join(dir, LockFile)
		f, err := store.FlockWait(path, LockWait)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", name, err)
		}
		// A Remove may have taken the directory away between the open
		// and the lock: then lock the new one.
		if store.SameFile(f, path) {
			return &Lock{name: name, f: f}, nil
		}
		f.Close()
	}
}

// Name is the locked tenant's name.
func (l *Lock) Name() string { return l.name }

// Unlock releases the lock. Safe to call more than once.
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
