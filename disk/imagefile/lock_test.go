package imagefile

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// scratch returns a fresh 1 MiB file.
func scratch(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// lockBytes returns the lock lines of f as /proc/self/fdinfo shows them,
// as "start-end" ranges.
func lockBytes(t *testing.T, f *os.File) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 3 && f[0] == "lock:" {
			if f[2] != "OFDLCK" || f[4] != "READ" {
				t.Errorf("not an OFD read lock: %q", l)
			}
			out = append(out, f[len(f)-2]+"-"+f[len(f)-1])
		}
	}
	return strings.Join(out, " ")
}

// TestLockBytes: each access locks exactly the bytes QEMU 10 locks for the
// same use (read from /proc/PID/fdinfo of qemu-system-x86_64 and qemu-io;
// the kernel merges adjacent bytes of one description into one range).
func TestLockBytes(t *testing.T) {
	for _, tc := range []struct {
		a    Access
		want string
	}{
		// A VM's writable qcow2 disk, qemu-io on qcow2: consistent
		// read, write, resize; forbids write and resize.
		{Write, "100-101 103-103 201-201 203-203"},
		// A read-only disk, a backing file: consistent read; forbids
		// write and resize.
		{Read, "100-100 201-201 203-203"},
		// qemu-io -r -U: consistent read only.
		{ReadShared, "100-100"},
		{Unlocked, ""},
	} {
		f, err := Open(scratch(t), tc.a)
		if err != nil {
			t.Fatal(err)
		}
		if got := lockBytes(t, f); got != tc.want {
			t.Errorf("access %d locks %q, want %q", tc.a, got, tc.want)
		}
		f.Close()
	}
}

// TestConflicts opens an image twice in one process: OFD locks belong to
// the open file description, so the two opens see each other exactly as
// two processes would.
func TestConflicts(t *testing.T) {
	accesses := []Access{Read, ReadShared, Write}
	names := map[Access]string{Read: "read", ReadShared: "read-shared", Write: "write"}
	conflict := map[[2]Access]bool{
		{Read, Write}: true, {Write, Read}: true, {Write, Write}: true,
	}
	self := fmt.Sprintf("%s (pid %d)", filepath.Base(os.Args[0]), os.Getpid())
	for _, first := range accesses {
		for _, second := range accesses {
			t.Run(names[first]+"-then-"+names[second], func(t *testing.T) {
				path := scratch(t)
				a, err := Open(path, first)
				if err != nil {
					t.Fatal(err)
				}
				defer a.Close()
				b, err := Open(path, second)
				if !conflict[[2]Access{first, second}] {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					b.Close()
					return
				}
				if err == nil {
					b.Close()
					t.Fatal("both opens succeeded")
				}
				verb := "reads it"
				if first == Write {
					verb = "writes it"
				}
				if want := path + " is in use: " + self + " " + verb; err.Error() != want {
					t.Errorf("error %q\nwant  %q", err, want)
				}
				var ie *InUseError
				if !errors.As(err, &ie) || !errors.Is(err, ErrInUse) || len(ie.Holders) != 1 || ie.Holders[0].PID != os.Getpid() {
					t.Errorf("error %#v", err)
				}
				// The refused open left nothing behind: once the first
				// closes, the second access is granted.
				a.Close()
				b, err = Open(path, second)
				if err != nil {
					t.Fatalf("after the holder closed: %v", err)
				}
				b.Close()
			})
		}
	}
}

// TestCheck reports a conflict without taking anything.
func TestCheck(t *testing.T) {
	path := scratch(t)
	r, err := Open(path, Read)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(path, Write); !errors.Is(err, ErrInUse) {
		t.Errorf("Check(Write) under a reader: %v", err)
	}
	if err := Check(path, Read); err != nil {
		t.Errorf("Check(Read) under a reader: %v", err)
	}
	r.Close()
	if err := Check(path, Write); err != nil {
		t.Errorf("Check(Write) on a free image: %v", err)
	}
	// Check took no locks: a writer gets the image.
	w, err := Open(path, Write)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := Check(path, Read); err == nil || err.Error() != (&InUseError{Path: path, Holders: []Holder{{PID: os.Getpid(), Command: filepath.Base(os.Args[0]), Perm: PermWrite}}}).Error() {
		t.Errorf("Check(Read) under a writer: %v", err)
	}
}

// TestLocksFollowTheDescription hands the locked descriptor to another
// process and closes it here: the lock stays with the child, which is
// named as the holder, and goes when the child exits.
func TestLocksFollowTheDescription(t *testing.T) {
	path := scratch(t)
	f, err := Open(path, Write)
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command("sleep", "600")
	child.ExtraFiles = []*os.File{f}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Open(path, Read)
	want := fmt.Sprintf("%s is in use: sleep (pid %d) writes it", path, child.Process.Pid)
	if err == nil || err.Error() != want {
		t.Errorf("open under the child's lock: %v\nwant %s", err, want)
	}
	child.Process.Kill()
	child.Wait()
	g, err := Open(path, Write)
	if err != nil {
		t.Fatalf("after the child exited: %v", err)
	}
	g.Close()
}

// TestForeignWriteLock: a whole-file write lock taken outside QEMU's
// scheme also keeps paddock out.
func TestForeignWriteLock(t *testing.T) {
	path := scratch(t)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	for _, a := range []Access{Read, ReadShared, Write} {
		if g, err := Open(path, a); !errors.Is(err, ErrInUse) {
			t.Errorf("access %d under a whole-file write lock: %v", a, err)
			if g != nil {
				g.Close()
			}
		}
	}
}

// TestNotImages: directories, FIFOs, sockets and character devices are
// refused at once, naming the path once.
func TestNotImages(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct{ path, kind string }{
		{dir, "a directory"}, {fifo, "a named pipe (FIFO)"}, {sock, "a socket"}, {"/dev/null", "a character device"},
	} {
		for _, a := range []Access{Unlocked, Read, Write} {
			f, err := Open(tc.path, a)
			want := tc.path + " is " + tc.kind + ", not a disk image (images are regular files or block devices)"
			if err == nil || err.Error() != want || !errors.Is(err, ErrNotImage) {
				t.Errorf("Open(%s, %d) = %v\nwant %s", tc.path, a, err, want)
			}
			if f != nil {
				f.Close()
			}
		}
		if _, _, err := Create(tc.path); !errors.Is(err, ErrNotImage) {
			t.Errorf("Create(%s) = %v", tc.path, err)
		}
	}
	_, err = Open(filepath.Join(dir, "missing"), Read)
	if want := "open " + dir + "/missing: no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("missing file: %v", err)
	}
}

// TestCreate makes a new file or opens an existing one, and refuses (and
// leaves alone) a file in use.
func TestCreate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "new.img")
	f, created, err := Create(p)
	if err != nil || !created {
		t.Fatalf("Create new: %v, %v", created, err)
	}
	if got := lockBytes(t, f); got != "100-101 103-103 201-201 203-203" {
		t.Errorf("Create locks %q", got)
	}
	f.Close()
	if err := os.WriteFile(p, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, created, err = Create(p)
	if err != nil || created {
		t.Fatalf("Create existing: %v, %v", created, err)
	}
	if _, _, err := Create(p); !errors.Is(err, ErrInUse) {
		t.Errorf("Create over an image in use: %v", err)
	}
	f.Close()
	if b, _ := os.ReadFile(p); string(b) != "keep" {
		t.Errorf("Create changed the file: %q", b)
	}
}

func TestParseFdinfoLocks(t *testing.T) {
	info := "pos:\t0\nflags:\t02100002\nmnt_id:\t27\nino:\t9978034\n" +
		"lock:\t1: OFDLCK ADVISORY  READ -1 fe:00:9978034 100 101\n" +
		"lock:\t2: OFDLCK ADVISORY  READ -1 fe:00:9978034 103 103\n" +
		"lock:\t3: OFDLCK ADVISORY  READ -1 fe:00:9978034 201 201\n" +
		"lock:\t4: FLOCK  ADVISORY  WRITE 77 fe:00:9978034 0 EOF\n"
	perm, unshared := parseFdinfoLocks([]byte(info))
	if perm != PermConsistentRead|PermWrite|PermResize || unshared != PermWrite {
		t.Errorf("perm %v, unshared %v", perm, unshared)
	}
	perm, unshared = parseFdinfoLocks([]byte("lock:\t1: POSIX  ADVISORY  WRITE 12 fe:00:1 0 EOF\n"))
	if perm != permAll || unshared != permAll {
		t.Errorf("whole-file lock: perm %v, unshared %v", perm, unshared)
	}
}

func TestDescribe(t *testing.T) {
	root := t.TempDir()
	for pid, cmdline := range map[int]string{
		1: "/usr/bin/qemu-system-x86_64\x00-machine\x00q35\x00",
		2: "/usr/local/bin/paddock\x00vmm\x00--home\x00/var/lib/paddock\x00--ready-fd\x003\x00web\x00",
		3: "paddock\x00run\x00-f\x00vm.yaml\x00",
		4: "",
	} {
		d := filepath.Join(root, strconv.Itoa(pid))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "cmdline"), []byte(cmdline), 0o644)
		os.WriteFile(filepath.Join(d, "comm"), []byte("kworker/0:1\n"), 0o644)
	}
	for pid, want := range map[int]string{
		1: "qemu-system-x86_64 (pid 1)", 2: `VM "web" (pid 2)`, 3: "paddock run (pid 3)", 4: "kworker/0:1 (pid 4)",
	} {
		h := Holder{PID: pid}
		h.VM, h.Command = describe(root, pid)
		if h.String() != want {
			t.Errorf("pid %d: %q, want %q", pid, h.String(), want)
		}
	}
}

func TestPermString(t *testing.T) {
	if s := (PermConsistentRead | PermResize).String(); s != "consistent read, resize" {
		t.Errorf("%q", s)
	}
}
