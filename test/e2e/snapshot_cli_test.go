package e2e

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/disk/qemutest"
)

// TestSnapshotCLI takes a snapshot of a running VM with the paddock
// binary, without naming it, and lists it (docs/cli.md, "Snapshots"):
// the default name is snap-YYYYMMDD-HHMMSS of the instant in UTC; `ls`
// shows it under its header with the VM's state, the disk and the memory
// written of the RAM; `ls --json` gives every documented field with the
// same facts; rm takes it away.
func TestSnapshotCLI(t *testing.T) {
	e := newManagedEnv(t)
	disk := filepath.Join(e.dir, "web.qcow2")
	qemutest.QemuImg(t, "create", "-q", "-f", "qcow2", disk, "1M")
	e.ok("up", "-f", e.guestVM("web", "counter", "disks:\n  - path: "+disk+"\n    format: qcow2\n"))
	e.waitConsoleLog("web", "counting\n")

	before := time.Now().UTC().Truncate(time.Second)
	out := e.ok("snapshot", "create", "web")
	after := time.Now().UTC()
	m := regexp.MustCompile(`^web: snapshot (snap-\d{8}-\d{6}) taken \(\S+ of memory written, guest held \S+\)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("snapshot create web printed %q", out)
	}
	name := m[1]
	at, err := time.Parse("snap-20060102-150405", name)
	if err != nil || at.Before(before) || at.After(after) {
		t.Fatalf("default snapshot name %s: %v; want the time between %v and %v (UTC)", name, err, before, after)
	}

	ls := e.ok("snapshot", "ls", "web")
	lines := strings.Split(strings.TrimSuffix(ls, "\n"), "\n")
	if len(lines) != 2 || !regexp.MustCompile(`^NAME +CREATED +VM-STATE +DISK +MEMORY$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^`+name+` +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +running +disks\[0\] +\S+ of 64MiB$`).MatchString(lines[1]) {
		t.Fatalf("snapshot ls web:\n%s", ls)
	}

	var list []map[string]any
	if err := json.Unmarshal([]byte(e.ok("snapshot", "ls", "--json", "web")), &list); err != nil || len(list) != 1 {
		t.Fatalf("snapshot ls --json: %v, %d snapshots", err, len(list))
	}
	s := list[0]
	for _, k := range []string{"name", "vm", "created", "vm_state", "disks", "memory", "memory_written", "memory_on_disk", "paddock"} {
		if _, ok := s[k]; !ok {
			t.Errorf("snapshot ls --json has no %q: %v", k, s)
		}
	}
	created, _ := time.Parse(time.RFC3339Nano, jsonStr(s["created"]))
	written, onDisk := jsonNum(s["memory_written"]), jsonNum(s["memory_on_disk"])
	if s["name"] != name || s["vm"] != "web" || s["vm_state"] != "running" || created.Before(before) || created.After(after) ||
		len(jsonList(s["disks"])) != 1 || jsonList(s["disks"])[0] != "disks[0]" || jsonNum(s["memory"]) != 64<<20 ||
		written <= 0 || written > 64<<20 || onDisk <= 0 || jsonStr(s["paddock"]) == "" {
		t.Errorf("snapshot ls --json: %v", s)
	}

	e.ok("snapshot", "rm", "web", name)
	if ls := e.ok("snapshot", "ls", "--json", "web"); strings.TrimSpace(ls) != "[]" {
		t.Errorf("snapshot ls --json after rm: %s", ls)
	}
	e.ok("rm", "-f", "web")
}

// jsonStr, jsonNum and jsonList read a decoded JSON value as a string,
// a number and an array: "", -1 and nil if it is not one.
func jsonStr(v any) string {
	s, _ := v.(string)
	return s
}

func jsonNum(v any) float64 {
	if f, ok := v.(float64); ok {
		return f
	}
	return -1
}

func jsonList(v any) []any {
	l, _ := v.([]any)
	return l
}
