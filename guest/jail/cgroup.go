package jail

import (
	"bufio"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CgroupRoot is where the cgroup v2 hierarchy is mounted.
const CgroupRoot = "/sys/fs/cgroup"

// cgroupParent is the cgroup under which every VMM's leaf is made: on
// cgroup v2 a child of the root (as Docker's and Podman's cgroupfs
// drivers make theirs); on v1, in each hierarchy, a child of the cgroup
// of the command that starts the VMM, so that the VMM stays within the
// limits of whatever runs paddock.
const cgroupParent = "paddock"

// Limits are a VMM's cgroup limits.
type Limits struct {
	// CPUs is the VM's vCPU count: cpu.max lets the VMM use that many
	// CPUs' worth of time per period.
	CPUs int
	// Memory is the guest's RAM in bytes: memory.max is Memory plus
	// MemoryOverhead.
	Memory uint64
}

// cpuPeriod is the cpu.max period, in µs (the kernel's default).
const cpuPeriod = 100000

// Cgroup describes the cgroup a VMM runs in.
type Cgroup struct {
	// Version is 1 or 2 (0: no cgroup).
	Version int `json:"version"`
	// Dirs are the leaf's directories: one on v2, one per controller
	// hierarchy (cpu, memory, pids) on v1.
	Dirs []string `json:"dirs"`
}

// ThreadFiles are the files of c's v1 leaves that a thread writes 0 to
// to move itself (and no other thread of its process) there: each
// hierarchy's tasks file. A v2 leaf has none: a jailed VMM is started in
// it (CLONE_INTO_CGROUP, Spec.Apply).
//
// Moving one thread, the caller, is what makes joining cheap: writing a
// whole process to cgroup.procs write-locks the kernel's
// cgroup_threadgroup_rwsem, which waits for an RCU grace period (15-20
// ms measured on the test hosts), while a thread that moves itself skips
// that lock. Spec.Start moves the thread that starts the VMM, which is
// then born in the leaf, and lets that thread end.
func (c Cgroup) ThreadFiles() []string {
	if c.Version != 1 {
		return nil
	}
	var p []string
	for _, d := range c.Dirs {
		p = append(p, filepath.Join(d, "tasks"))
	}
	return p
}

// Dir2 is c's leaf on cgroup v2, or "" on v1 or without a cgroup.
func (c Cgroup) Dir2() string {
	if c.Version != 2 || len(c.Dirs) != 1 {
		return ""
	}
	return c.Dirs[0]
}

// LeafName is the name of the cgroup leaf of the VM called name in
// directory vmDir: the name, for people, and a hash of the directory, for
// VMs of the same name in two state directories.
func LeafName(name, vmDir string) string {
	h := fnv.New32a()
	h.Write([]byte(vmDir))
	return fmt.Sprintf("%s-%08x", name, h.Sum32())
}

// CgroupVersion says which cgroup hierarchy this host offers VMMs: 2 when
// /sys/fs/cgroup is cgroup2 (unified), 1 when the cpu, memory and pids
// controllers are on cgroup v1 hierarchies (hybrid hosts), 0 when
// neither, with the reason.
func CgroupVersion() (int, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(CgroupRoot, &st); err != nil {
		return 0, fmt.Errorf("jail: %s: %w", CgroupRoot, err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return 2, nil
	}
	if _, err := v1Dirs(); err != nil {
		return 0, err
	}
	return 1, nil
}

// MakeCgroup makes (or resets) the leaf called leaf with lim's limits.
func MakeCgroup(leaf string, lim Limits) (Cgroup, error) {
	v, err := CgroupVersion()
	if err != nil {
		return Cgroup{}, err
	}
	quota := fmt.Sprint(lim.CPUs * cpuPeriod)
	mem := fmt.Sprint(lim.Memory + MemoryOverhead)
	pids := fmt.Sprint(PidsMax)
	if v == 2 {
		parent := filepath.Join(CgroupRoot, cgroupParent)
		if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return Cgroup{}, fmt.Errorf("jail: cgroup: %w", err)
		}
		for _, d := range []string{CgroupRoot, parent} {
			if err := enableControllers(d); err != nil {
				return Cgroup{}, err
			}
		}
		dir, err := makeLeaf(parent, leaf)
		if err != nil {
			return Cgroup{}, err
		}
		return Cgroup{Version: 2, Dirs: []string{dir}}, writeAll(dir, [][2]string{
			{"cpu.max", quota + " " + fmt.Sprint(cpuPeriod)}, {"memory.max", mem}, {"pids.max", pids},
		})
	}
	hier, err := v1Dirs()
	if err != nil {
		return Cgroup{}, err
	}
	c := Cgroup{Version: 1}
	settings := map[string][][2]string{
		"cpu":    {{"cpu.cfs_period_us", fmt.Sprint(cpuPeriod)}, {"cpu.cfs_quota_us", quota}},
		"memory": {{"memory.limit_in_bytes", mem}},
		"pids":   {{"pids.max", pids}},
	}
	for _, ctrl := range v1Controllers {
		parent := filepath.Join(hier[ctrl], cgroupParent)
		if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return Cgroup{}, fmt.Errorf("jail: cgroup: %w", err)
		}
		dir, err := makeLeaf(parent, leaf)
		if err != nil {
			return Cgroup{}, err
		}
		c.Dirs = append(c.Dirs, dir)
		if err := writeAll(dir, settings[ctrl]); err != nil {
			return Cgroup{}, err
		}
	}
	return c, nil
}

// makeLeaf makes parent/leaf afresh: a leaf a previous run of the VM left
// (its VMM is gone) is removed first, so no count of that run carries
// over.
func makeLeaf(parent, leaf string) (string, error) {
	dir := filepath.Join(parent, leaf)
	err := os.Remove(dir)
	switch {
	case errors.Is(err, unix.EBUSY):
		// The previous VMM has exited but the kernel has not let go of
		// the cgroup yet: use it again, with the limits written afresh.
		return dir, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("jail: cgroup: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("jail: cgroup: %w", err)
	}
	return dir, nil
}

// RemoveCgroup removes the VM's leaf, if it has one and it is empty.
func RemoveCgroup(leaf string) {
	if v, err := CgroupVersion(); err == nil && v == 2 {
		os.Remove(filepath.Join(CgroupRoot, cgroupParent, leaf))
		return
	}
	if hier, err := v1Dirs(); err == nil {
		for _, d := range hier {
			os.Remove(filepath.Join(d, cgroupParent, leaf))
		}
	}
}

// enableControllers enables cpu, memory and pids for dir's children.
func enableControllers(dir string) error {
	for _, c := range []string{"cpu", "memory", "pids"} {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
			return fmt.Errorf("jail: cgroup: enable %s in %s: %w", c, dir, err)
		}
	}
	return nil
}

// writeAll writes each (file, value) in dir.
func writeAll(dir string, kv [][2]string) error {
	for _, f := range kv {
		if err := os.WriteFile(filepath.Join(dir, f[0]), []byte(f[1]), 0); err != nil {
			return fmt.Errorf("jail: cgroup: set %s to %s: %w", filepath.Join(dir, f[0]), f[1], err)
		}
	}
	return nil
}

// v1Controllers are the cgroup v1 controllers a jail uses.
var v1Controllers = []string{"cpu", "memory", "pids"}

// v1Dirs finds, for each of v1Controllers, the directory of this
// process's cgroup in that controller's v1 hierarchy.
func v1Dirs() (map[string]string, error) {
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("jail: cgroup: %w", err)
	}
	defer mi.Close()
	mounts, err := parseV1Mounts(mi)
	if err != nil {
		return nil, fmt.Errorf("jail: cgroup: /proc/self/mountinfo: %w", err)
	}
	cg, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("jail: cgroup: %w", err)
	}
	defer cg.Close()
	return parseV1Dirs(cg, mounts)
}

// parseV1Dirs reads a /proc/PID/cgroup file and finds, for each of
// v1Controllers, the directory of the process's cgroup in the v1
// hierarchy mounts (parseV1Mounts) has for it. A cgroup outside the
// mount's root (a mount of a cgroup namespace's part of the hierarchy)
// is not reachable there: that controller has none.
func parseV1Dirs(r io.Reader, mounts map[string]v1Mount) (map[string]string, error) {
	dirs := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			m, ok := mounts[ctrl]
			if !ok {
				continue
			}
			rel, err := filepath.Rel(m.root, parts[2])
			if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				continue
			}
			dirs[ctrl] = filepath.Join(m.point, rel)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("jail: cgroup: /proc/self/cgroup: %w", err)
	}
	for _, c := range v1Controllers {
		if dirs[c] == "" {
			return nil, fmt.Errorf("jail: cgroup: %s is not cgroup v2 and has no cgroup v1 %s controller", CgroupRoot, c)
		}
	}
	return dirs, nil
}

// v1Mount is where a v1 hierarchy is mounted, and which of its cgroups
// is the mount's root.
type v1Mount struct{ point, root string }

// parseV1Mounts reads a /proc/PID/mountinfo file and maps each v1
// controller to its hierarchy's mount.
func parseV1Mounts(r io.Reader) (map[string]v1Mount, error) {
	m := map[string]v1Mount{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - type source super-options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f1, f2 := strings.Fields(pre), strings.Fields(post)
		if len(f1) < 5 || len(f2) < 3 || f2[0] != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(f2[2], ",") {
			m[opt] = v1Mount{point: unescape(f1[4]), root: unescape(f1[3])}
		}
	}
	return m, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
