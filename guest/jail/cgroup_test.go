package jail

import (
	"maps"
	"strings"
	"testing"
)

// hybridMountinfo is the cgroup part of /proc/self/mountinfo on the test
// hosts (docs/hosts.md): v1 hierarchies under a tmpfs on /sys/fs/cgroup,
// cpu and cpuacct apart, a named systemd hierarchy, v2 on unified.
const hybridMountinfo = `22 1 0:21 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

func TestParseV1Mounts(t *testing.T) {
	got, err := parseV1Mounts(strings.NewReader(hybridMountinfo +
		// cpu and cpuacct together, as many distributions mount them;
		// a mount point with a space (mountinfo writes \040), and a
		// mount of part of a hierarchy (a container's).
		"50 31 0:40 /docker/abc /cg/cpu\\040acct rw shared:5 - cgroup cgroup rw,cpu,cpuacct\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]v1Mount{
		"cpu":          {point: "/cg/cpu acct", root: "/docker/abc"},
		"cpuacct":      {point: "/cg/cpu acct", root: "/docker/abc"},
		"memory":       {point: "/sys/fs/cgroup/memory", root: "/"},
		"pids":         {point: "/sys/fs/cgroup/pids", root: "/"},
		"name=systemd": {point: "/sys/fs/cgroup/systemd", root: "/"},
	}
	for ctrl, w := range want {
		if got[ctrl] != w {
			t.Errorf("parseV1Mounts: %s: %+v, want %+v", ctrl, got[ctrl], w)
		}
	}
	if _, ok := got["cgroup2"]; ok {
		t.Errorf("parseV1Mounts took the cgroup2 mount: %v", got)
	}
}

func TestParseV1Dirs(t *testing.T) {
	mounts, err := parseV1Mounts(strings.NewReader(hybridMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	containerMounts := map[string]v1Mount{
		"cpu":    {point: "/sys/fs/cgroup/cpu", root: "/docker/abc"},
		"memory": {point: "/sys/fs/cgroup/memory", root: "/docker/abc"},
		"pids":   {point: "/sys/fs/cgroup/pids", root: "/docker/abc"},
	}
	for _, tt := range []struct {
		name   string
		mounts map[string]v1Mount
		cgroup string
		want   map[string]string
		err    string
	}{{
		name:   "this host's",
		mounts: mounts,
		cgroup: "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/a879\n2:cpuacct:/\n1:cpu:/\n0::/\n",
		want: map[string]string{
			"cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct", "memory": "/sys/fs/cgroup/memory/process_api/a879",
			"pids": "/sys/fs/cgroup/pids", "name=systemd": "/sys/fs/cgroup/systemd",
		},
	}, {
		name:   "a cgroup whose name starts with two dots",
		mounts: mounts,
		cgroup: "8:pids:/..a\n4:memory:/\n1:cpu:/\n",
		want:   map[string]string{"cpu": "/sys/fs/cgroup/cpu", "memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids/..a"},
	}, {
		name:   "in a container: the mount's root is the container's cgroup",
		mounts: containerMounts,
		cgroup: "3:pids:/docker/abc\n2:memory:/docker/abc/x\n1:cpu:/docker/abc\n",
		want:   map[string]string{"cpu": "/sys/fs/cgroup/cpu", "memory": "/sys/fs/cgroup/memory/x", "pids": "/sys/fs/cgroup/pids"},
	}, {
		name:   "a cgroup outside the mounted part of its hierarchy",
		mounts: containerMounts,
		cgroup: "3:pids:/docker/abc\n2:memory:/other\n1:cpu:/docker/abc\n",
		err:    "has no cgroup v1 memory controller",
	}, {
		name:   "pure cgroup v2",
		mounts: map[string]v1Mount{},
		cgroup: "0::/user.slice\n",
		err:    "has no cgroup v1 cpu controller",
	}, {
		name:   "malformed lines are skipped",
		mounts: mounts,
		cgroup: "garbage\n8:pids\n1:cpu:/\n",
		err:    "has no cgroup v1 memory controller",
	}} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseV1Dirs(strings.NewReader(tt.cgroup), tt.mounts)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseV1Dirs: %v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("parseV1Dirs:\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/a`:            "/a",
		`/a\040b`:       "/a b",
		`/tab\011x\134`: "/tab\tx\\",
		`/short\04`:     `/short\04`,
		`/bad\09x`:      `/bad\09x`,
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCgroupFiles: how a jailed VMM joins its leaf: on v1 each
// hierarchy's tasks file (its thread moves itself); on v2 none, the
// leaf's directory for CLONE_INTO_CGROUP instead.
func TestCgroupFiles(t *testing.T) {
	v1 := Cgroup{Version: 1, Dirs: []string{"/c/cpu/paddock/a", "/c/memory/paddock/a"}}
	if got := v1.ThreadFiles(); len(got) != 2 || got[0] != "/c/cpu/paddock/a/tasks" || got[1] != "/c/memory/paddock/a/tasks" || v1.Dir2() != "" {
		t.Errorf("v1: ThreadFiles %q, Dir2 %q", got, v1.Dir2())
	}
	v2 := Cgroup{Version: 2, Dirs: []string{"/sys/fs/cgroup/paddock/a"}}
	if got := v2.ThreadFiles(); got != nil || v2.Dir2() != "/sys/fs/cgroup/paddock/a" {
		t.Errorf("v2: ThreadFiles %q, Dir2 %q", got, v2.Dir2())
	}
	if none := (Cgroup{}); none.ThreadFiles() != nil || none.Dir2() != "" {
		t.Errorf("no cgroup: ThreadFiles %q, Dir2 %q", none.ThreadFiles(), none.Dir2())
	}
}

// TestLeafName: two VMs of one name in two state directories get two
// leaves; one VM always the same.
func TestLeafName(t *testing.T) {
	a, b := LeafName("web", "/var/lib/paddock/vms/web"), LeafName("web", "/home/u/paddock/vms/web")
	if a == b || !strings.HasPrefix(a, "web-") || a != LeafName("web", "/var/lib/paddock/vms/web") {
		t.Errorf("LeafName: %q and %q", a, b)
	}
}
