// Package cache is paddock's on-disk cache of downloaded and derived guest
// images (kernel packages, extracted vmlinux files, lab initramfs images).
//
// Every entry is a directory named by a key that identifies its contents
// (a package version or a content hash). An entry is built in a temporary
// directory and renamed into place, so a visible entry is always complete;
// builders of the same key serialise on a lock file, so concurrent callers
// (parallel `go test` processes) build each entry once.
package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// EnvDir is the environment variable that overrides the cache location.
const EnvDir = "PADDOCK_CACHE"

// Cache is a cache rooted at Dir.
type Cache struct {
	Dir string
}

// New returns a cache rooted at dir.
func New(dir string) *Cache { return &Cache{Dir: dir} }

// DefaultDir returns $PADDOCK_CACHE, else $XDG_CACHE_HOME/paddock, else
// ~/.cache/paddock.
func DefaultDir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "paddock"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache: no cache directory: set %s or HOME: %w", EnvDir, err)
	}
	return filepath.Join(home, ".cache", "paddock"), nil
}

// Default returns the cache at DefaultDir.
func Default() (*Cache, error) {
	d, err := DefaultDir()
	if err != nil {
		return nil, err
	}
	return New(d), nil
}

// Path returns the directory of the entry key (which may not exist yet).
func (c *Cache) Path(key string) string { return filepath.Join(c.Dir, filepath.FromSlash(key)) }

// Lookup returns the directory of a complete entry, or ok=false.
func (c *Cache) Lookup(key string) (dir string, ok bool) {
	if checkKey(key) != nil {
		return "", false
	}
	dir = c.Path(key)
	fi, err := os.Stat(dir)
	return dir, err == nil && fi.IsDir()
}

// Ensure returns the directory of entry key, calling build to create it
// if it does not exist yet. build fills tmp, an empty directory on the same
// file system; when it returns nil, tmp is renamed to the entry's path.
// Keys are slash-separated relative paths ("debian/linux-image-6.1.0_6.1.1").
//
// Concurrent callers of the same key, in this or other processes, wait for
// the first builder and then share its result. If build fails, nothing is
// cached and the next caller tries again.
func (c *Cache) Ensure(ctx context.Context, key string, build func(tmp string) error) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	if dir, ok := c.Lookup(key); ok {
		return dir, nil
	}
	dir := c.Path(key)
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("cache: create %s: %w", parent, err)
	}
	unlock, err := lock(ctx, dir+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	// Someone else may have built it while we waited.
	if dir, ok := c.Lookup(key); ok {
		return dir, nil
	}
	// Holding the lock, any temporary directory of this key is a leftover
	// of a builder that died: remove it.
	base := filepath.Base(dir)
	if old, _ := filepath.Glob(filepath.Join(parent, ".tmp-"+base+"-*")); len(old) > 0 {
		for _, o := range old {
			_ = os.RemoveAll(o)
		}
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-"+base+"-")
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	// MkdirTemp makes it 0700; entries are readable by all, like the cache.
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("cache: %w", err)
	}
	if err := ctx.Err(); err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	if err := build(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	if err := syncDir(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("cache: install entry %s: %w", key, err)
	}
	return dir, nil
}

// Entries returns the keys of complete entries directly under prefix
// (a slash-separated directory of keys), sorted by name.
func (c *Cache) Entries(prefix string) ([]string, error) {
	ents, err := os.ReadDir(c.Path(prefix))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	var keys []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			keys = append(keys, prefix+"/"+e.Name())
		}
	}
	return keys, nil
}

// checkKey rejects keys that would escape the cache or collide with its
// own temporary and lock files.
func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") {
		return fmt.Errorf("cache: invalid key %q", key)
	}
	for _, c := range strings.Split(key, "/") {
		if c == "" || c == "." || c == ".." || strings.HasPrefix(c, ".") || strings.HasSuffix(c, ".lock") {
			return fmt.Errorf("cache: invalid key %q", key)
		}
	}
	return nil
}

// Lock takes the exclusive lock of key (a file key.lock beside its
// entry), for callers that keep a directory of their own under key
// rather than an entry that Ensure builds once: the package cache of
// template builds, say. It waits for other holders, calling waiting
// first if there are any; the wait ends early with ctx's error when ctx
// is done.
func (c *Cache) Lock(ctx context.Context, key string, waiting func()) (unlock func(), err error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	path := c.Path(key)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return lockWaiting(ctx, path+".lock", waiting)
}

// lock takes an exclusive flock on path, waiting for other holders. The
// wait ends early with ctx's error when ctx is done.
func lock(ctx context.Context, path string) (unlock func(), err error) {
	return lockWaiting(ctx, path, nil)
}

// lockWaiting is lock, calling waiting (if not nil) before it waits.
func lockWaiting(ctx context.Context, path string, waiting func()) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache: lock %s: %w", path, err)
	}
	// Fast path: uncontended.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		return func() { f.Close() }, nil
	}
	if waiting != nil {
		waiting()
	}
	done := make(chan error, 1)
	go func() { done <- flockWait(f) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("cache: lock %s: %w", path, err)
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		// Closing the file releases the lock if the waiter gets it later.
		go func() {
			<-done
			f.Close()
		}()
		return nil, fmt.Errorf("cache: waiting for lock %s: %w", path, ctx.Err())
	}
}

// flockWait blocks until it holds an exclusive lock on f.
func flockWait(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}

// syncDir flushes the file system holding dir (one syncfs instead of an
// fsync per file), so that an entry that becomes visible by rename
// survives a crash with all its contents.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cache: sync %s: %w", dir, err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("cache: sync %s: %w", dir, err)
	}
	return nil
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory, fsyncs it and renames it into place.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	return WriteAtomic(path, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// WriteAtomic creates path through a temporary file in the same directory:
// write fills it, then it is fsynced and renamed into place. On error the
// temporary file is removed and path is untouched.
func WriteAtomic(path string, perm fs.FileMode, write func(f *os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := write(f); err != nil {
		return fail(err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Touch marks entry key as used now; Prune keeps recently used entries.
func (c *Cache) Touch(key string) {
	now := time.Now()
	_ = os.Chtimes(c.Path(key), now, now)
}

// Prune removes the complete entries under dir (a slash-separated key
// prefix) whose name starts with namePrefix and that were neither built
// nor touched within maxAge. It is for entries that accumulate, like
// builds of a binary under development. Each removal takes the entry's
// lock, so it never races a builder of the same key.
func (c *Cache) Prune(dir, namePrefix string, maxAge time.Duration) error {
	keys, err := c.Entries(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		if !strings.HasPrefix(path.Base(k), namePrefix) {
			continue
		}
		p := c.Path(k)
		fi, err := os.Stat(p)
		if err != nil || time.Since(fi.ModTime()) < maxAge {
			continue
		}
		unlock, err := lock(context.Background(), p+".lock")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("cache: prune %s: %w", k, err))
		} else {
			_ = os.Remove(p + ".lock")
		}
		unlock()
	}
	return errors.Join(errs...)
}
