package imagefile

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// procRoot is where holders looks for processes.
const procRoot = "/proc"

// Holder is a process that holds locks on an image.
type Holder struct {
	PID int
	// VM is the VM's name when the process is a paddock VMM (its command
	// line is `paddock vmm [flags] NAME`, as paddock start runs it).
	VM string
	// Command names the program: the base name of its argv[0], with the
	// subcommand for paddock's own processes ("paddock run").
	Command string
	// Perm and Unshared are the permissions its locks take and forbid.
	Perm, Unshared Perm
}

// String names the holder for a message: `VM "web" (pid 4321)` or
// `qemu-system-x86_64 (pid 1234)`.
func (h Holder) String() string {
	if h.VM != "" {
		return fmt.Sprintf("VM %q (pid %d)", h.VM, h.PID)
	}
	return fmt.Sprintf("%s (pid %d)", h.Command, h.PID)
}

// holders finds the processes whose lock bytes on the file dev/ino
// conflict with an access that takes perm and forbids unshared. OFD locks
// do not say who holds them (F_OFD_GETLK reports pid -1), but
// /proc/PID/fdinfo/FD lists the locks of each open file description, so
// this walks every descriptor on the system that refers to the file. It
// only runs once a conflict was found, never on the open path.
func holders(root string, dev, ino uint64, perm, unshared Perm) []Holder {
	procs, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var out []Holder
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid <= 0 {
			continue
		}
		h, ok := processLocks(root, pid, dev, ino)
		if !ok || (h.Perm&unshared == 0 && h.Unshared&perm == 0) {
			continue
		}
		h.VM, h.Command = describe(root, pid)
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Holder) int { return a.PID - b.PID })
	return out
}

// processLocks collects the lock bytes process pid holds on dev/ino over
// all its descriptors; ok is false when it holds none (or is gone, or
// /proc does not show its descriptors to this user).
func processLocks(root string, pid int, dev, ino uint64) (h Holder, ok bool) {
	dir := filepath.Join(root, strconv.Itoa(pid))
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return Holder{}, false
	}
	h.PID = pid
	for _, fd := range fds {
		var st unix.Stat_t
		if unix.Stat(filepath.Join(dir, "fd", fd.Name()), &st) != nil || st.Dev != dev || st.Ino != ino {
			continue
		}
		info, err := os.ReadFile(filepath.Join(dir, "fdinfo", fd.Name()))
		if err != nil {
			continue
		}
		perm, unshared := parseFdinfoLocks(info)
		h.Perm |= perm
		h.Unshared |= unshared
	}
	return h, h.Perm|h.Unshared != 0
}

// parseFdinfoLocks reads the "lock:" lines of a /proc/PID/fdinfo/FD file,
// which have the /proc/locks format:
//
//	lock:	1: OFDLCK ADVISORY  READ -1 fe:00:9978034 100 101
//
// and returns the QEMU permission bytes the byte-range (OFD or POSIX)
// locks cover. flock(2) locks are ignored: they never conflict with
// byte-range locks.
func parseFdinfoLocks(info []byte) (perm, unshared Perm) {
	sc := bufio.NewScanner(bytes.NewReader(info))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "lock:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 4 || (!slices.Contains(f, "OFDLCK") && !slices.Contains(f, "POSIX")) {
			continue
		}
		start, err := strconv.ParseInt(f[len(f)-2], 10, 64)
		if err != nil {
			continue
		}
		end := int64(1<<63 - 1)
		if s := f[len(f)-1]; s != "EOF" {
			if end, err = strconv.ParseInt(s, 10, 64); err != nil {
				continue
			}
		}
		for i := 0; i < permCount; i++ {
			if b := int64(permBase + i); start <= b && b <= end {
				perm |= 1 << i
			}
			if b := int64(sharedBase + i); start <= b && b <= end {
				unshared |= 1 << i
			}
		}
	}
	return perm, unshared
}

// describe names process pid from its command line: the VM name of a
// paddock VMM, and the program.
func describe(root string, pid int) (vm, command string) {
	dir := filepath.Join(root, strconv.Itoa(pid))
	b, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
	argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if len(argv) == 0 || argv[0] == "" {
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		return "", strings.TrimSpace(string(comm))
	}
	command = filepath.Base(argv[0])
	if command == "paddock" && len(argv) > 1 && !strings.HasPrefix(argv[1], "-") {
		command += " " + argv[1]
	}
	if len(argv) >= 3 && argv[1] == "vmm" && !strings.HasPrefix(argv[len(argv)-1], "-") {
		vm = argv[len(argv)-1]
	}
	return vm, command
}
