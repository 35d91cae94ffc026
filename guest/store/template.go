package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Templates live beside the VMs, one directory each:
//
//	templates/NAME/template.json   what the template is (TemplateMeta):
//	                               OS, kernel release, sizes, SHA-256s
//	templates/NAME/spec.yaml       what it was made from: the build's
//	                               parameters, or the VM's spec without
//	                               its identity
//	templates/NAME/vmlinuz         the kernel its VMs boot
//	templates/NAME/initrd.img      their initial ramdisk
//	templates/NAME/disks/*.qcow2   the base disks, read-only
//	templates/NAME/lock            shared by commands that make VMs from
//	                               it, exclusive for removing it
//
// The file names other than template.json, spec.yaml and lock are the
// metadata's to choose; a template frozen from a VM with a memory
// snapshot adds its snapshot's files the same way, named in a newer
// template.json version. Every file of a template is read-only (0400)
// and checksummed in template.json. A template appears in one rename of
// a directory built aside (TemplateStage) and leaves in one rename to a
// trash name, as VMs do.
const (
	templatesDir = "templates"
	// TemplateMetaFile is a template's metadata, TemplateSpecFile what it
	// was made from, TemplateLockFile its lock.
	TemplateMetaFile = "template.json"
	TemplateSpecFile = "spec.yaml"
	// TemplateStampsFile remembers the stamps of the files the last
	// Verify found good (a cache: Verify reads again a file whose stamp
	// changed or is not there).
	TemplateStampsFile = "verified.json"
	TemplateLockFile   = "lock"
)

// Errors about templates, wrapped with the template's name; test with
// errors.Is.
var (
	// ErrTemplateNotFound: there is no template of that name.
	ErrTemplateNotFound = errors.New("no such template")
	// ErrTemplateExists: a template of that name exists already.
	ErrTemplateExists = errors.New("template exists already")
	// ErrTemplateBusy: another command is making a VM from the template
	// or removing it.
	ErrTemplateBusy = errors.New("another paddock command is using or removing this template")
)

// Template is one template's directory and its metadata.
type Template struct {
	Name string
	Dir  string
	Meta TemplateMeta
}

// Path returns the path of file, relative to the template's directory.
func (t *Template) Path(file string) string { return filepath.Join(t.Dir, file) }

// TemplatesDir returns the directory that holds the templates.
func (s *Store) TemplatesDir() string { return filepath.Join(s.home, templatesDir) }

// templates returns the templates directory, creating it (mode 0700) if
// needed, after the trust checks; it removes what interrupted builds and
// removals left behind.
func (s *Store) templates() (string, error) {
	dir := s.TemplatesDir()
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("store: %w", err)
	}
	if err := checkEntry(s.home, templatesDir, false); err != nil {
		return "", err
	}
	sweepTemplates(dir)
	return dir, nil
}

// sweepTemplates removes removed templates' trash and the stages of
// builds whose process is gone (a stage's directory is flocked by its
// builder for as long as it lives). Errors are ignored: the next sweep
// tries again.
func sweepTemplates(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		switch {
		case strings.HasPrefix(e.Name(), trashPrefix):
			os.RemoveAll(path)
		case strings.HasPrefix(e.Name(), newPrefix):
			f, err := os.Open(path)
			if err != nil {
				continue
			}
			if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
				os.RemoveAll(path)
			}
			f.Close()
		}
	}
}

// TemplateNames returns the names of the templates, sorted.
func (s *Store) TemplateNames() ([]string, error) {
	dir, err := s.templates()
	if err != nil {
		return nil, err
	}
	names, err := dirNames(dir, ValidName)
	if err != nil {
		return nil, fmt.Errorf("store: list templates: %w", err)
	}
	return names, nil
}

// Template returns the template called name, its metadata read and
// checked: ErrTemplateNotFound if there is none. Its directory and every
// file it has must be owned by the current user or root and writable by
// no one else (*UnsafeError), and the files its metadata names must be
// regular files. Their contents are not read: Verify checks them.
func (s *Store) Template(name string) (*Template, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("store: template %q: %w", name, ErrTemplateNotFound)
	}
	root, err := s.templates()
	if err != nil {
		return nil, err
	}
	t := &Template{Name: name, Dir: filepath.Join(root, name)}
	fi, err := os.Lstat(t.Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("store: template %s: %w", name, ErrTemplateNotFound)
	case err != nil:
		return nil, fmt.Errorf("store: template %s: %w", name, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("store: template %s: %s is not a directory", name, t.Dir)
	}
	if err := checkEntry(root, name, false); err != nil {
		return nil, err
	}
	for _, f := range []string{TemplateMetaFile, TemplateSpecFile, TemplateLockFile} {
		if err := checkEntry(t.Dir, f, f != TemplateMetaFile); err != nil {
			return nil, err
		}
	}
	path := t.Path(TemplateMetaFile)
	data, err := readCapped(path, maxTemplateMeta)
	if err != nil {
		return nil, fmt.Errorf("store: template %s: %w", name, err)
	}
	if t.Meta, err = ParseTemplateMeta(data, path); err != nil {
		return nil, err
	}
	if t.Meta.Name != name {
		return nil, fmt.Errorf("store: %s: the template is called %q, not %q: a template cannot be renamed by renaming its directory", path, t.Meta.Name, name)
	}
	for _, f := range t.Meta.Files() {
		if err := checkTemplateEntry(t.Dir, f.File); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// checkTemplateEntry checks one file a template's metadata names: a
// regular file (not a link) in a directory of the template, owned by the
// user or root and writable by no one else.
func checkTemplateEntry(dir, file string) error {
	parent := dir
	for _, part := range strings.Split(filepath.Dir(file), "/") {
		if part == "." {
			continue
		}
		if err := checkEntry(parent, part, false); err != nil {
			return err
		}
		parent = filepath.Join(parent, part)
	}
	path := filepath.Join(dir, file)
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("store: template file %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("store: template file %s is not a regular file", path)
	}
	return checkInfo(path, fi, true)
}

// readCapped reads a file of at most limit bytes.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, err
	}
	return data, nil
}

// TemplateLock is a lock on a template: shared while a command makes a
// VM from it, exclusive while one removes it. An flock(2) on the
// template's lock file, released by Unlock or when the process dies.
type TemplateLock struct {
	f *os.File
}

// Lock takes the template's lock without waiting, shared or exclusive:
// ErrTemplateBusy if another process holds it in the other mode (or
// exclusively), ErrTemplateNotFound if the template was removed
// meanwhile.
func (t *Template) Lock(exclusive bool) (*TemplateLock, error) {
	path := t.Path(TemplateLockFile)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store: template %s: %w", t.Name, ErrTemplateNotFound)
		}
		return nil, fmt.Errorf("store: lock template %s: %w", t.Name, err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("store: template %s: %w", t.Name, ErrTemplateBusy)
		}
		return nil, fmt.Errorf("store: lock template %s: %w", t.Name, err)
	}
	if !sameFile(f, path) {
		f.Close()
		return nil, fmt.Errorf("store: template %s: %w", t.Name, ErrTemplateNotFound)
	}
	return &TemplateLock{f: f}, nil
}

// Unlock releases the lock. Safe to call more than once.
func (l *TemplateLock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// TemplateUsers returns the VMs made from the template called name
// (their from.json names it), sorted; a VM whose from.json cannot be
// read counts as a user, since it may be one.
func (s *Store) TemplateUsers(name string) ([]string, error) {
	names, err := s.Names()
	if err != nil {
		return nil, err
	}
	var users []string
	for _, n := range names {
		v := &VM{Name: n, Dir: filepath.Join(s.vms(), n)}
		from, err := v.ReadFrom()
		if err != nil || from != nil && from.Template == name {
			users = append(users, n)
		}
	}
	return users, nil
}

// RemoveTemplate deletes the template's directory and everything in it.
// The template first leaves templates/ in one rename, so no command sees
// it half-removed. Precondition: the caller holds the template's
// exclusive Lock and found no VM using it (TemplateUsers).
func (s *Store) RemoveTemplate(t *Template) error {
	return removeDir(t.Dir, "template "+t.Name, ErrTemplateNotFound)
}
