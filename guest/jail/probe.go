package jail

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/paddock-vm/paddock/guest/store"
)

// Layer is one isolation layer of a jailed VMM as this host offers it
// (paddock doctor): whether VMMs started now get it, and what it is or
// why not.
type Layer struct {
	Name   string `json:"name"`
	Active bool   `json:"active"`
	Detail string `json:"detail"`
}

// Probe reports the layers of the jail that VMMs started by this process
// get on this host (/proc and /sys as this process sees them): the jail
// itself (root, NoJailEnv), the namespaces, the cgroup limits, seccomp,
// no_new_privs; and user namespaces, which the jail does not use.
func Probe() []Layer {
	st := procStatus()
	var layers []Layer
	on := Enabled()
	switch uid := os.Geteuid(); {
	case uid != 0:
		layers = append(layers, Layer{"jail", false, fmt.Sprintf("paddock runs as uid %d, not root: VMMs run unjailed, as that user (a jail needs root to make namespaces, cgroups and a user per VM)", uid)})
	case !on:
		layers = append(layers, Layer{"jail", false, NoJailEnv + "=1: VMMs run unjailed, as root"})
	default:
		layers = append(layers, Layer{"jail", true, fmt.Sprintf("paddock runs as root: each VMM runs jailed, as a user of its own (ids from %d), with no capabilities", store.JailIDFirst)})
	}
	var missing []string
	for _, ns := range []string{"mnt", "pid", "ipc", "uts"} {
		if _, err := os.Lstat("/proc/self/ns/" + ns); err != nil {
			missing = append(missing, ns)
		}
	}
	if len(missing) == 0 {
		layers = append(layers, Layer{"namespaces", on, "mount (pivot_root into the VM's directory), PID, IPC and UTS namespaces"})
	} else {
		layers = append(layers, Layer{"namespaces", false, "this kernel has no " + strings.Join(missing, ", ") + " namespace: jailed VMMs cannot start"})
	}
	layers = append(layers, cgroupLayer(on))
	switch {
	case st["Seccomp"] == "":
		layers = append(layers, Layer{"seccomp", false, "this kernel has no seccomp (CONFIG_SECCOMP): jailed VMMs cannot start"})
	case !seccompTrap():
		layers = append(layers, Layer{"seccomp", false, "this kernel's seccomp has no trap action (/proc/sys/kernel/seccomp/actions_avail): jailed VMMs cannot start"})
	default:
		layers = append(layers, Layer{"seccomp", on, fmt.Sprintf("a filter of %d allowed system calls on every thread; any other ends the VMM", len(allowed))})
	}
	if st["NoNewPrivs"] == "" {
		layers = append(layers, Layer{"no_new_privs", false, "this kernel shows no NoNewPrivs in /proc/self/status (Linux 4.10 or later has it)"})
	} else {
		layers = append(layers, Layer{"no_new_privs", on, "set, with every capability dropped and RLIMIT_CORE 0"})
	}
	layers = append(layers, userNSLayer())
	return layers
}

// cgroupLayer reports the cgroup limits of jailed VMMs (on: jails are on).
func cgroupLayer(on bool) Layer {
	v, err := CgroupVersion()
	switch {
	case err != nil:
		return Layer{"cgroup", false, fmt.Sprintf("no cgroup for VMMs: they run without cpu, memory and pids limits (%v)", err)}
	case v == 1:
		return Layer{"cgroup", on, "cgroup v1 (hybrid host): cpu, memory and pids hierarchies: CFS quota from cpus, memory.limit_in_bytes from memory plus overhead, pids.max"}
	}
	b, err := os.ReadFile(CgroupRoot + "/cgroup.controllers")
	if err != nil {
		return Layer{"cgroup", false, fmt.Sprintf("cgroup v2, but its controllers are unknown: %v", err)}
	}
	have := strings.Fields(string(b))
	var missing []string
	for _, c := range v1Controllers {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return Layer{"cgroup", false, "cgroup v2 without the " + strings.Join(missing, ", ") + " controller: jailed VMMs cannot start"}
	}
	return Layer{"cgroup", on, "cgroup v2: cpu.max from cpus, memory.max from memory plus overhead, pids.max"}
}

// userNSLayer reports whether this host has user namespaces, which the
// jail does not use: it runs as root and gives each VMM a real user.
func userNSLayer() Layer {
	const why = " (the jail does not use them: it runs as root and gives each VMM a user of its own)"
	if _, err := os.Lstat("/proc/self/ns/user"); err != nil {
		return Layer{"user_namespaces", false, "this kernel has none" + why}
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return Layer{"user_namespaces", false, "off (user.max_user_namespaces is 0)" + why}
	}
	return Layer{"user_namespaces", true, "available" + why}
}

// seccompTrap reports whether the kernel offers seccomp's trap action,
// which Seccomp's filter uses.
func seccompTrap() bool {
	b, err := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	return err == nil && slices.Contains(strings.Fields(string(b)), "trap")
}

// procStatus reads the fields of /proc/self/status.
func procStatus() map[string]string {
	m := map[string]string{}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}
