package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// UnsafeError is a file or directory of the state tree that someone other
// than the current user and root could change: paddock refuses to read
// VMs from it, as ssh refuses a private key others can read, since another
// user could otherwise plant a VM spec that this user's paddock (root's,
// say) shows and starts.
type UnsafeError struct {
	// Path is the file or directory at fault.
	Path string
	// Problem says what is wrong with it: "is writable by other users
	// (mode 0777)".
	Problem string
	// Fix is a command that makes it safe.
	Fix string
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("%s %s, so paddock does not trust it; fix it with: %s", e.Path, e.Problem, e.Fix)
}

// maxLinks bounds the symbolic links CheckTrusted follows, as the kernel
// bounds path resolution (ELOOP).
const maxLinks = 40

// CheckTrusted checks that no one but the current user and root can
// change the directory or file at path, nor what paddock finds there:
// path must be owned by the current user or root and not writable by its
// group or others; every directory on the way from / (symbolic links
// followed, each link owned by the user or root) must be owned likewise
// and either not writable by group or others or sticky (like /tmp: then
// others cannot rename or remove what they do not own). Write permission
// for the owner's private group (privateGroup) is no one else's. A
// missing path is an fs.ErrNotExist error; anything unsafe is an
// *UnsafeError.
//
// CheckTrusted guards the state directory and its vms/ (Open), and is
// what other trees paddock reads from (templates, networks) use too.
func CheckTrusted(path string) error {
	return checkPath(path, true)
}

// checkParents checks the directories on the way to path, which need not
// exist yet, as CheckTrusted does: before paddock creates path, so that it
// creates nothing in a place it would then refuse.
func checkParents(path string) error {
	dir := filepath.Dir(filepath.Clean(path))
	for {
		_, err := os.Lstat(dir)
		if err == nil {
			return checkPath(dir, false)
		}
		if !errors.Is(err, fs.ErrNotExist) || dir == "/" {
			return fmt.Errorf("store: check %s: %w", dir, err)
		}
		dir = filepath.Dir(dir)
	}
}

// checkPath walks path from /; strict says whether path itself gets the
// strict check (else it is one of the directories on the way).
func checkPath(path string, strict bool) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("store: check %s: not an absolute path", path)
	}
	links := 0
	return walkTrusted(filepath.Clean(path), strict, &links)
}

// walkTrusted checks each component of path, absolute and clean, from /
// down; the last one gets the strict check if strict, the others may be
// sticky. A symbolic link's target is walked in its place: the path up
// to the link has no links, so its ".." components resolve by name.
func walkTrusted(path string, strict bool, links *int) error {
	if path == "/" {
		return checkInfoAt(path, strict)
	}
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	dir := "/"
	for i, part := range parts {
		last := strict && i == len(parts)-1
		next := filepath.Join(dir, part)
		fi, err := os.Lstat(next)
		if err != nil {
			return fmt.Errorf("store: check %s: %w", next, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if err := checkOwner(next, fi); err != nil {
				return err
			}
			if *links++; *links > maxLinks {
				return fmt.Errorf("store: check %s: %w", next, syscall.ELOOP)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("store: check %s: %w", next, err)
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(dir, target)
			}
			return walkTrusted(filepath.Join(target, strings.Join(parts[i+1:], "/")), strict, links)
		}
		if err := checkInfo(next, fi, last); err != nil {
			return err
		}
		dir = next
	}
	return nil
}

// checkInfoAt is checkInfo for a path, following no link at its end.
func checkInfoAt(path string, last bool) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("store: check %s: %w", path, err)
	}
	return checkInfo(path, fi, last)
}

// checkInfo checks one file or directory: owner, and write permission for
// group and others (allowed on a sticky directory unless last; for the
// group, allowed when it is the owner's private group).
func checkInfo(path string, fi fs.FileInfo, last bool) error {
	if err := checkOwner(path, fi); err != nil {
		return err
	}
	mode := fi.Mode()
	if mode.Perm()&0o022 == 0 || !last && mode.IsDir() && mode&fs.ModeSticky != 0 {
		return nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && mode.Perm()&0o002 == 0 && privateGroup(st.Uid, st.Gid, passwdFile, groupFile) {
		return nil
	}
	who := "other users"
	if mode.Perm()&0o002 == 0 {
		who = "its group"
	}
	return &UnsafeError{
		Path:    path,
		Problem: fmt.Sprintf("is writable by %s (mode %s)", who, octalMode(mode)),
		Fix:     "chmod go-w " + path,
	}
}

// checkOwner checks that fi, the file at path, belongs to the current
// user or root.
func checkOwner(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("store: check %s: no owner information", path)
	}
	me := os.Geteuid()
	if int(st.Uid) == me || st.Uid == 0 {
		return nil
	}
	want := "root"
	if me != 0 {
		want = "you (" + userName(me) + ") or root"
	}
	return &UnsafeError{
		Path:    path,
		Problem: fmt.Sprintf("is owned by %s, not by %s", userName(int(st.Uid)), want),
		Fix:     "chown " + userName(me) + " " + path,
	}
}

// userName names uid: "alice (uid 1000)", or "uid 1000" if it has no name.
func userName(uid int) string {
	id := strconv.Itoa(uid)
	if u, err := user.LookupId(id); err == nil && u.Username != "" {
		if uid == os.Geteuid() || uid == 0 {
			return u.Username
		}
		return u.Username + " (uid " + id + ")"
	}
	return "uid " + id
}

// octalMode renders a mode as chmod(1) writes it: 0755, 1777.
func octalMode(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	return fmt.Sprintf("%04o", v)
}

// checkEntry checks name in dir, a directory CheckTrusted accepted: the
// entry must be owned by the current user or root and not writable by
// group or others; a symbolic link is checked all the way, as
// CheckTrusted does. A missing entry is fine when optional.
func checkEntry(dir, name string, optional bool) error {
	path := filepath.Join(dir, name)
	fi, err := os.Lstat(path)
	switch {
	case err != nil && optional && errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("store: check %s: %w", path, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return CheckTrusted(path)
	}
	return checkInfo(path, fi, true)
}
