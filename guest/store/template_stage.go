package store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TemplateStage is a template being made: a private directory in
// templates/ that its maker fills and then commits, or aborts. The maker
// holds an flock on the directory for as long as it lives, so a stage
// whose maker died (even by SIGKILL) is removed by the next command that
// looks at the templates, and a live one is left alone.
type TemplateStage struct {
	// Dir is the directory to fill: the template's files go there under
	// the names the metadata gives them.
	Dir  string
	name string
	s    *Store
	lock *os.File // the flocked directory
}

// NewTemplate starts making the template called name: ErrBadName if it
// cannot be a template's name, ErrTemplateExists if one of that name
// exists already (checked again by Commit).
func (s *Store) NewTemplate(name string) (*TemplateStage, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("store: %q: %w", name, ErrBadName)
	}
	root, err := s.templates()
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(filepath.Join(root, name)); err == nil {
		return nil, fmt.Errorf("store: template %s: %w", name, ErrTemplateExists)
	}
	dir, err := os.MkdirTemp(root, newPrefix+name+"-")
	if err != nil {
		return nil, fmt.Errorf("store: make template %s: %w", name, err)
	}
	f, err := os.Open(dir)
	if err == nil {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("store: make template %s: lock %s: %w", name, dir, err)
	}
	return &TemplateStage{Dir: dir, name: name, s: s, lock: f}, nil
}

// Name returns the name of the template being made.
func (st *TemplateStage) Name() string { return st.name }

// Path returns the path of file in the stage.
func (st *TemplateStage) Path(file string) string { return filepath.Join(st.Dir, file) }

// Abort removes the stage and everything in it. Safe to call after
// Commit (then it does nothing) and more than once.
func (st *TemplateStage) Abort() error {
	if st.lock == nil {
		return nil
	}
	err := os.RemoveAll(st.Dir)
	st.lock.Close()
	st.lock = nil
	if err != nil {
		return fmt.Errorf("store: remove the unfinished template %s: %w", st.name, err)
	}
	return nil
}

// Commit makes the stage the template: it fills in the size and SHA-256
// of every file meta names (and the name, a new ID and the creation time
// where unset), refuses a stage that holds anything else, makes the
// files read-only, writes template.json, spec (if not nil) and the lock
// file, syncs it all and renames the stage into place. Of two Commits of
// one name, one wins; the other gets ErrTemplateExists and keeps its
// stage for Abort.
func (st *TemplateStage) Commit(meta TemplateMeta, spec []byte) (*Template, error) {
	if st.lock == nil {
		return nil, fmt.Errorf("store: template %s: the stage was committed or aborted already", st.name)
	}
	meta.Name, meta.Version = st.name, templateVersionCold
	if meta.Warm != nil {
		meta.Version = TemplateVersion
	}
	if meta.ID == "" {
		var id [16]byte
		if _, err := rand.Read(id[:]); err != nil {
			return nil, fmt.Errorf("store: make template %s: %w", st.name, err)
		}
		meta.ID = hex.EncodeToString(id[:])
	}
	if meta.Created.IsZero() {
		meta.Created = time.Now().UTC().Truncate(time.Second)
	}
	// Checksum the files (their fields must pass check meanwhile).
	files := meta.filePtrs()
	for _, f := range files {
		f.SHA256 = zeroSum
	}
	if err := meta.check(); err != nil {
		return nil, fmt.Errorf("store: make template %s: %w", st.name, err)
	}
	if err := st.onlyListed(files); err != nil {
		return nil, err
	}
	for _, f := range files {
		path := st.Path(f.File)
		if err := os.Chmod(path, 0o400); err != nil {
			return nil, fmt.Errorf("store: make template %s: %w", st.name, err)
		}
		size, sum, err := hashFile(path, true)
		if err != nil {
			return nil, fmt.Errorf("store: make template %s: %w", st.name, err)
		}
		f.Size, f.SHA256 = size, sum
	}
	data, err := meta.marshal()
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		data []byte
		skip bool
	}{{TemplateMetaFile, data, false}, {TemplateSpecFile, spec, spec == nil}, {TemplateLockFile, nil, false}} {
		if f.skip {
			continue
		}
		if err := writeSynced(st.Path(f.name), f.data, 0o400); err != nil {
			return nil, fmt.Errorf("store: make template %s: %w", st.name, err)
		}
	}
	if err := syncTree(st.Dir); err != nil {
		return nil, err
	}
	final := filepath.Join(st.s.TemplatesDir(), st.name)
	if err := unix.Renameat2(unix.AT_FDCWD, st.Dir, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
			return nil, fmt.Errorf("store: template %s: %w", st.name, ErrTemplateExists)
		}
		return nil, fmt.Errorf("store: make template %s: rename %s to %s: %w", st.name, st.Dir, final, err)
	}
	st.lock.Close()
	st.lock = nil
	if err := syncDir(st.s.TemplatesDir()); err != nil {
		return nil, err
	}
	return &Template{Name: st.name, Dir: final, Meta: meta}, nil
}

// zeroSum stands in for checksums not computed yet.
var zeroSum = hex.EncodeToString(make([]byte, 32))

// onlyListed checks that the stage holds the listed files, as regular
// files, and the directories on their way, and nothing else: a builder's
// work files must not become part of the template.
func (st *TemplateStage) onlyListed(files []*TemplateFile) error {
	want := map[string]bool{}
	for _, f := range files {
		want[f.File] = true
		for d := filepath.Dir(f.File); d != "."; d = filepath.Dir(d) {
			want[d+"/"] = true
		}
	}
	found := map[string]bool{}
	err := filepath.WalkDir(st.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == st.Dir {
			return nil
		}
		rel, _ := filepath.Rel(st.Dir, path)
		key := rel
		if d.IsDir() {
			key += "/"
		} else if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", path)
		}
		if !want[key] {
			return fmt.Errorf("%s is not one of the template's files", path)
		}
		found[key] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: make template %s: %w", st.name, err)
	}
	for _, f := range files {
		if !found[f.File] {
			return fmt.Errorf("store: make template %s: %s is missing", st.name, st.Path(f.File))
		}
	}
	return nil
}

// syncTree syncs every directory under dir, dir included (the files were
// synced as they were checksummed or written).
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("store: sync %s: %w", path, err)
		}
		if d.IsDir() {
			return syncDir(path)
		}
		return nil
	})
}
