package store

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// otherUID is a user that is neither root nor the test: nobody.
const otherUID = 65534

// needRoot skips tests that chown files to another user when the test
// does not run as root (it does in CI and on the build hosts).
func needRoot(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t, "this test chowns files to another user")
}

// mkdirs creates dir/rel (mode 0700 each) and returns its path.
func mkdirs(t *testing.T, dir, rel string) string {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(p, 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantUnsafe checks that err is an *UnsafeError about path whose message
// holds each of parts.
func wantUnsafe(t *testing.T, err error, path string, parts ...string) {
	t.Helper()
	var ue *UnsafeError
	if !errors.As(err, &ue) {
		t.Fatalf("got %v, want an UnsafeError about %s", err, path)
	}
	if ue.Path != path {
		t.Errorf("UnsafeError about %s, want %s: %v", ue.Path, path, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%q does not say %q", err, p)
		}
	}
}

func TestCheckTrusted(t *testing.T) {
	base := t.TempDir()
	ok := mkdirs(t, base, "ok/home")
	if err := CheckTrusted(ok); err != nil {
		t.Errorf("a fresh 0700 home: %v", err)
	}
	if err := CheckTrusted("relative"); err == nil {
		t.Error("a relative path was accepted")
	}
	if err := CheckTrusted(filepath.Join(base, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing path: %v, want ErrNotExist", err)
	}

	tests := []struct {
		name string
		// set up makes dir/a/home unsafe (or not) and returns the path
		// the error must name ("" when the home is fine).
		setup func(t *testing.T, dir string) string
		parts []string
	}{
		{"home writable by all", func(t *testing.T, dir string) string {
			return chmod(t, filepath.Join(dir, "a/home"), 0o777)
		}, []string{"is writable by other users (mode 0777)", "fix it with: chmod go-w "}},
		{"home writable by its group", func(t *testing.T, dir string) string {
			return chmod(t, sharedGroup(t, filepath.Join(dir, "a/home")), 0o770)
		}, []string{"is writable by its group (mode 0770)"}},
		{"home writable by the owner's private group", func(t *testing.T, dir string) string {
			home := filepath.Join(dir, "a/home")
			fi, err := os.Stat(home)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if !privateGroup(st.Uid, st.Gid, passwdFile, groupFile) {
				testenv.Unavailable(t, "group %d is not the private group of uid %d here", st.Gid, st.Uid)
			}
			chmod(t, home, 0o770)
			return ""
		}, nil},
		{"sticky home", func(t *testing.T, dir string) string {
			// Others could add VMs to it: sticky only keeps them from
			// removing what is there.
			return chmod(t, filepath.Join(dir, "a/home"), 0o777|fs.ModeSticky)
		}, []string{"(mode 1777)"}},
		{"parent writable by all", func(t *testing.T, dir string) string {
			return chmod(t, filepath.Join(dir, "a"), 0o777)
		}, []string{"is writable by other users (mode 0777)"}},
		{"sticky parent", func(t *testing.T, dir string) string {
			chmod(t, filepath.Join(dir, "a"), 0o777|fs.ModeSticky)
			return ""
		}, nil},
		{"parent readable by all", func(t *testing.T, dir string) string {
			chmod(t, filepath.Join(dir, "a"), 0o755)
			return ""
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			home := mkdirs(t, dir, "a/home")
			bad := tt.setup(t, dir)
			err := CheckTrusted(home)
			if bad == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			wantUnsafe(t, err, bad, tt.parts...)
		})
	}
}

// sharedGroup gives path a group that is not its owner's private group
// (nogroup) and returns path.
func sharedGroup(t *testing.T, path string) string {
	t.Helper()
	needRoot(t)
	if err := os.Chown(path, -1, otherUID); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPrivateGroup(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	group := filepath.Join(dir, "group")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(passwd, "root:x:0:0:root:/root:/bin/bash\n# a comment\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\ncarol:x:1002:1003::/home/carol:/bin/sh\ndave:x:1004:1003::/home/dave:/bin/sh\n")
	write(group, "root:x:0:\nalice:x:1000:\nbob:x:1001:bob,alice\ncarol:x:1003:\nstaff:x:50:alice\n")
	tests := []struct {
		uid, gid uint32
		want     bool
	}{
		{0, 0, true},
		{1000, 1000, true},
		{1001, 1001, false}, // alice is a member of bob's group
		{1002, 1003, false}, // dave's primary group too
		{1000, 50, false},   // not alice's own group
		{1000, 1001, false}, // another user's group
		{4242, 4242, false}, // no such user
	}
	for _, tt := range tests {
		if got := privateGroup(tt.uid, tt.gid, passwd, group); got != tt.want {
			t.Errorf("privateGroup(%d, %d) = %v, want %v", tt.uid, tt.gid, got, tt.want)
		}
	}
	if privateGroup(0, 0, filepath.Join(dir, "missing"), group) {
		t.Error("a missing passwd file: true")
	}
	write(group, "root:x:0:\nwheel:x:0:alice\n") // a second name for gid 0
	if privateGroup(0, 0, passwd, group) {
		t.Error("a gid with two group entries: true")
	}
}

// chmod sets path's mode and returns path.
func chmod(t *testing.T, path string, mode fs.FileMode) string {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckTrustedOwners(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	home := mkdirs(t, dir, "a/home")
	if err := os.Chown(home, otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
	wantUnsafe(t, CheckTrusted(home), home, "is owned by", "uid 65534", "not by root", "fix it with: chown root "+home)

	// An ancestor another user owns: they could rename the home away and
	// put their own in its place.
	dir = t.TempDir()
	home = mkdirs(t, dir, "a/home")
	if err := os.Chown(filepath.Join(dir, "a"), otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
	wantUnsafe(t, CheckTrusted(home), filepath.Join(dir, "a"), "uid 65534")

	// Even sticky: the owner of a directory may rename anything in it.
	chmod(t, filepath.Join(dir, "a"), 0o777|fs.ModeSticky)
	wantUnsafe(t, CheckTrusted(home), filepath.Join(dir, "a"), "uid 65534")
}

func TestCheckTrustedLinks(t *testing.T) {
	dir := t.TempDir()
	real := mkdirs(t, dir, "disk/paddock")
	link := filepath.Join(mkdirs(t, dir, "etc"), "home")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := CheckTrusted(link); err != nil {
		t.Errorf("a link to a safe home: %v", err)
	}
	rel := filepath.Join(dir, "etc", "rel")
	if err := os.Symlink("../disk/paddock", rel); err != nil {
		t.Fatal(err)
	}
	if err := CheckTrusted(filepath.Join(rel, ".")); err != nil {
		t.Errorf("a relative link to a safe home: %v", err)
	}
	// A link into an unsafe place: the target's directory is at fault.
	chmod(t, filepath.Join(dir, "disk"), 0o777)
	wantUnsafe(t, CheckTrusted(link), filepath.Join(dir, "disk"), "writable by other users")
	wantUnsafe(t, CheckTrusted(rel), filepath.Join(dir, "disk"), "writable by other users")
	chmod(t, filepath.Join(dir, "disk"), 0o700)

	// A loop.
	loop := filepath.Join(dir, "etc", "loop")
	if err := os.Symlink("loop", loop); err != nil {
		t.Fatal(err)
	}
	if err := CheckTrusted(loop); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("a link loop: %v, want ELOOP", err)
	}

	if os.Geteuid() == 0 {
		// A link another user owns, in a sticky directory: they can
		// point it elsewhere.
		chmod(t, filepath.Join(dir, "etc"), 0o777|fs.ModeSticky)
		if err := os.Lchown(link, otherUID, otherUID); err != nil {
			t.Fatal(err)
		}
		wantUnsafe(t, CheckTrusted(link), link, "uid 65534")
	}
}

func TestOpenRefusesUnsafeHome(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	if _, err := Open(home); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{home, filepath.Join(home, "vms")} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s created with %v, %v; want mode 0700", p, fi.Mode(), err)
		}
	}
	vms := chmod(t, filepath.Join(home, "vms"), 0o777)
	_, err := Open(home)
	wantUnsafe(t, err, vms)
	want := vms + " is writable by other users (mode 0777), so paddock does not trust it; fix it with: chmod go-w " + vms
	if err.Error() != want {
		t.Errorf("error:\n %s\nwant:\n %s", err, want)
	}
	chmod(t, vms, 0o755)
	chmod(t, sharedGroup(t, home), 0o775)
	_, err = Open(home)
	wantUnsafe(t, err, home, "writable by its group")
	chmod(t, home, 0o755)
	if _, err := Open(home); err != nil {
		t.Errorf("after the fix: %v", err)
	}

	// A new home in a directory others can change is refused before
	// anything is created there; in a sticky one (/tmp) it is fine.
	open := chmod(t, mkdirs(t, t.TempDir(), "open"), 0o777)
	_, err = Open(filepath.Join(open, "a", "home"))
	wantUnsafe(t, err, open, "writable by other users (mode 0777)")
	if _, err := os.Stat(filepath.Join(open, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused Open created %s/a: %v", open, err)
	}
	chmod(t, open, 0o777|fs.ModeSticky)
	if _, err := Open(filepath.Join(open, "a", "home")); err != nil {
		t.Errorf("a new home in a sticky directory: %v", err)
	}
}

func TestVMRefusesUnsafeFiles(t *testing.T) {
	s := newStore(t)
	v, err := s.Create("web", []byte("name: web\n"), Record{Phase: PhaseCreated})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{SpecFile, RecordFile, FormatsFile} {
		if fi, err := os.Stat(v.Path(f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s created with %v, %v; want mode 0600", f, fi.Mode(), err)
		}
	}
	check := func(path string, parts ...string) {
		t.Helper()
		_, err := s.VM("web")
		wantUnsafe(t, err, path, parts...)
		// The VM list does not hide it either.
		if names, err := s.Names(); err != nil || len(names) != 1 {
			t.Errorf("Names = %v, %v", names, err)
		}
	}
	chmod(t, v.Dir, 0o757)
	check(v.Dir, "writable by other users (mode 0757)")
	chmod(t, v.Dir, 0o700)
	for _, f := range []string{SpecFile, RecordFile, FormatsFile} {
		chmod(t, v.Path(f), 0o622)
		check(v.Path(f), "writable by other users (mode 0622)")
		chmod(t, v.Path(f), 0o644)
	}
	if os.Geteuid() == 0 {
		for _, p := range []string{v.Dir, v.Path(SpecFile), v.Path(RecordFile)} {
			if err := os.Chown(p, otherUID, otherUID); err != nil {
				t.Fatal(err)
			}
			check(p, "uid 65534", "not by root")
			if err := os.Chown(p, 0, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A missing state.json is a created VM, not a problem.
	os.Remove(v.Path(RecordFile))
	if _, err := s.VM("web"); err != nil {
		t.Errorf("after the fixes: %v", err)
	}
}

// TestTrustNonRoot runs the checks as an unprivileged user (nobody), in
// a copy of this test binary: its own directories and root's are fine,
// another user's are not.
func TestTrustNonRoot(t *testing.T) {
	needRoot(t)
	base, err := os.MkdirTemp("", "paddock-trust-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	chmod(t, base, 0o755)
	exe := filepath.Join(base, "store.test")
	copyFile(t, "/proc/self/exe", exe, 0o755)

	own := mkdirs(t, base, "own")
	if err := os.Chown(own, otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
	rootOwned := mkdirs(t, base, "root")
	chmod(t, rootOwned, 0o755)
	theirs := mkdirs(t, base, "theirs")
	if err := os.Chown(theirs, otherUID-1, otherUID-1); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want string // "" for accepted
	}{
		{own, ""},
		{rootOwned, ""},
		{theirs, theirs + " is owned by uid 65533, not by you (nobody) or root"},
	}
	for _, tt := range tests {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), "PADDOCK_STORE_HELPER=trust", "PADDOCK_STORE_DIR="+tt.path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: otherUID, Gid: otherUID}}
		out, err := cmd.CombinedOutput()
		got := strings.TrimSpace(string(out))
		if err != nil {
			t.Fatalf("helper for %s: %v: %s", tt.path, err, out)
		}
		if tt.want == "" && got != "ok" || tt.want != "" && !strings.HasPrefix(got, tt.want) {
			t.Errorf("as nobody, %s: %q, want %q", tt.path, got, tt.want)
		}
	}
}

// copyFile copies src to a new file dst with mode perm.
func copyFile(t *testing.T, src, dst string, perm fs.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
