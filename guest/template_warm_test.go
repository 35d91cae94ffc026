package guest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/jail"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/hypervisor/snapshot"
	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// passLine is the warm guest's line after each pass over its filled
// memory.
var passLine = regexp.MustCompile(`pass ([0-9a-f]{8}) sum ([0-9a-f]{8}) id ([0-9a-f]{32})`)

// warmSum is the sum the warm guest's pass prints: the addresses of its
// filled pages (0x1000000 to 0x1d000000), modulo 2^32.
func warmSum() string {
	var s uint32
	for a := uint32(0x1000000); a < 0x1d000000; a += 4096 {
		s += a
	}
	return fmt.Sprintf("%08x", s)
}

// waitPass follows VM name's console until the warm guest's pass line
// number pass and returns its submatches.
func waitPass(t testing.TB, m *Manager, name string, pass int, timeout time.Duration) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rc, err := m.Logs(ctx, name, LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if mm := passLine.FindStringSubmatch(sc.Text()); mm != nil {
			if n, _ := strconv.ParseUint(mm[1], 16, 32); int(n) == pass {
				return mm
			}
		}
	}
	t.Fatalf("VM %s: the console ended before pass %d: %v; read %q", name, pass, sc.Err(), seen)
	return nil
}

// warmTemplate runs the warm guest as VM web (memory, a qcow2 overlay on
// the tiny template, the YAML extra), waits for its first pass and makes
// the warm template warm of it. It returns the manager, the template and
// web's first pass line.
func warmTemplate(t *testing.T, memory, extra string) (*Manager, *store.Template, []string) {
	t.Helper()
	return warmTemplateOf(t, testguest.Build(t, "warm"), memory, extra)
}

// warmTemplateOf is warmTemplate with the warm guest's kernel given (one
// built with another FILL_END, say).
func warmTemplateOf(t testing.TB, kernel, memory, extra string) (*Manager, *store.Template, []string) {
	t.Helper()
	testenv.RequireTool(t, "qemu-img", "qemu-utils")
	m := testManager(t)
	testTemplate(t, m, "tiny", kernel, "")
	vm, err := configs.Parse([]byte(fmt.Sprintf("name: web\nfrom: tiny\nmemory: %s\nconsole: log\ncloud_init: false\n%s", memory, extra)), "")
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	if err := vm.Validate(configs.Host{Templates: m.TemplateLookup()}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := m.Create(vm, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Kill(context.Background(), "web") })
	first := waitPass(t, m, "web", 1, 2*time.Minute)
	tmpl, err := m.CreateTemplateFromVM(ctx, "warm", "web", TemplateFromVMOptions{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	return m, tmpl, first
}

// TestWarmTemplate: --memory on a running VM makes a warm template (its
// memory file and state in template.json, checksummed, version 2) and
// leaves the VM running, with no snapshot or internal disk snapshot
// left behind; --memory on a stopped VM is refused.
func TestWarmTemplate(t *testing.T) {
	m, tmpl, first := warmTemplate(t, "512MiB", "")
	if first[2] != warmSum() {
		t.Fatalf("the template guest's sum %s, want %s", first[2], warmSum())
	}
	w := tmpl.Meta.Warm
	if w == nil || w.CPUs != 1 || w.MemorySize != 512<<20 || w.Memory.Size != 512<<20 || w.VMState != "running" || tmpl.Meta.Version != 2 {
		t.Fatalf("template.json: version %d, warm %+v", tmpl.Meta.Version, w)
	}
	if _, err := tmpl.Verify(nil); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(tmpl.Path(w.Memory.File)); err != nil || fi.Mode().Perm() != 0o400 {
		t.Errorf("memory file: %v, %v; want mode 0400", fi, err)
	}
	info, err := m.Inspect("web")
	if err != nil || info.State != store.StateRunning {
		t.Errorf("VM web after the template: %+v, %v; want it running", info, err)
	}
	snaps, err := m.Snapshots("web")
	if err != nil || len(snaps) != 0 {
		t.Errorf("VM web keeps snapshots: %v, %v", snaps, err)
	}
	out := qemuImg(t, "snapshot", "-U", "-l", filepath.Join(m.Home(), "vms", "web", "disks", "root.qcow2"))
	if strings.Contains(out, "paddock-template") {
		t.Errorf("VM web's disk keeps the template's internal snapshot:\n%s", out)
	}
	if _, err := m.Kill(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	_, err = m.CreateTemplateFromVM(context.Background(), "warm2", "web", TemplateFromVMOptions{Memory: true})
	var se *StateError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "--memory saves a running VM's memory") {
		t.Errorf("--memory on a stopped VM: %v", err)
	}
}

// qemuImg runs qemu-img with args and returns its output.
func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestWarmClone: three warm clones of a running guest each continue
// from the snapshot's instant (their first pass after the restore is
// pass 2, over the memory the template guest filled) with a generation
// ID of their own; as root, each clone's VMM runs jailed (the template's
// files were handed over: its root holds no template); the template's
// files keep their checksums; template rm is refused while they exist;
// a clone's second start boots.
func TestWarmClone(t *testing.T) {
	m, tmpl, first := warmTemplate(t, "512MiB", "")
	ctx := context.Background()
	names, err := m.Clone(ctx, "warm", "w", CloneOptions{Numbered: true, Count: 3, Start: true})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{first[3]: "the template"}
	for _, n := range names {
		t.Cleanup(func() { m.Kill(context.Background(), n) })
		mm := waitPass(t, m, n, 2, 2*time.Minute)
		if mm[2] != first[2] {
			t.Errorf("clone %s: sum %s, want the template guest's %s", n, mm[2], first[2])
		}
		if other, dup := ids[mm[3]]; dup {
			t.Errorf("clone %s has the generation ID of %s: %s", n, other, mm[3])
		}
		ids[mm[3]] = n
		if jail.Enabled() {
			checkJailed(t, m, n, tmpl.Dir)
		}
		v, _ := m.vm(n)
		if from, err := v.ReadFrom(); err != nil || from.Warm {
			t.Errorf("clone %s's from.json after its first start: %+v, %v; want warm cleared", n, from, err)
		}
	}
	if _, err := tmpl.Verify(nil); err != nil {
		t.Errorf("the clones changed the template: %v", err)
	}
	var inUse *TemplateInUseError
	if err := m.RemoveTemplate("warm"); !errors.As(err, &inUse) || len(inUse.VMs) != 3 {
		t.Errorf("template rm with clones: %v", err)
	}
	// Started again, a clone boots: its disk moved on from the snapshot.
	if _, err := m.Kill(ctx, names[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, names[0]); err != nil {
		t.Fatal(err)
	}
	waitLog(t, m, names[0], "filled\n")
	// Made without --start, a warm clone restores at its first start.
	if _, err := m.Clone(ctx, "warm", "late", CloneOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Kill(context.Background(), "late") })
	if mm := waitPass(t, m, "late", 2, 2*time.Minute); mm[3] == first[3] {
		t.Errorf("clone late kept the template's generation ID")
	}
}

// TestWarmCloneNICs: warm clones of a VM with a NIC on a bridge each
// have a MAC address of their own, derived from their names (not the
// template's): each clone's tap on the bridge is named after it, and its
// restored virtio-net device has it (what a snapshot of the clone
// saves, the device's own address, which its config space presents).
func TestWarmCloneNICs(t *testing.T) {
	br := hostLink(t, "bridge")
	m, tmpl, _ := warmTemplate(t, "512MiB", "nics: [{bridge: "+br+"}]\n")
	if len(tmpl.Meta.Warm.MACs) != 1 {
		t.Fatalf("template.json: NIC MACs %v, want one", tmpl.Meta.Warm.MACs)
	}
	tmplMAC := tmpl.Meta.Warm.MACs[0]
	ctx := context.Background()
	names, err := m.Clone(ctx, "warm", "n", CloneOptions{Numbered: true, Count: 2, Start: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{tmplMAC: "the template"}
	for _, n := range names {
		t.Cleanup(func() { m.Kill(context.Background(), n) })
		waitPass(t, m, n, 2, 2*time.Minute)
		v, err := m.vm(n)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := configs.Load(v.Path(store.SpecFile))
		if err != nil {
			t.Fatal(err)
		}
		macs, err := vmm.NICMACs(spec)
		if err != nil || len(macs) != 1 {
			t.Fatalf("clone %s: MACs %v, %v", n, macs, err)
		}
		mac := macs[0]
		if other, dup := seen[mac.String()]; dup {
			t.Errorf("clone %s has the MAC %s of %s", n, mac, other)
		}
		seen[mac.String()] = n
		tap := fmt.Sprintf("pd%02x%02x%02x%02x", mac[2], mac[3], mac[4], mac[5])
		if _, err := os.Stat(filepath.Join("/sys/class/net", br, "brif", tap)); err != nil {
			t.Errorf("clone %s: no tap %s on bridge %s: %v", n, tap, br, err)
		}
		if _, err := m.CreateSnapshot(ctx, n, "s", false); err != nil {
			t.Fatal(err)
		}
		f, err := snapshot.ReadFile(filepath.Join(v.SnapshotDir("s"), store.SnapshotStateFile))
		if err != nil {
			t.Fatal(err)
		}
		st, err := machine.DecodeState(f)
		if err != nil {
			t.Fatal(err)
		}
		var saved []string
		for _, fn := range st.Virtio {
			if fn.Net != nil {
				saved = append(saved, fn.Net.MAC.String())
			}
		}
		if len(saved) != 1 || saved[0] != mac.String() {
			t.Errorf("clone %s: its virtio-net device has MACs %v, want its own %s", n, saved, mac)
		}
	}
}

// checkJailed checks that VM name's VMM runs jailed: not as root, under
// seccomp, with a root of its own in which the template directory tmpl
// does not exist.
func checkJailed(t *testing.T, m *Manager, name, tmpl string) {
	t.Helper()
	info, err := m.Inspect(name)
	if err != nil || info.PID == 0 {
		t.Fatalf("VM %s: %+v, %v", name, info, err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", info.PID))
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			status[k] = strings.TrimSpace(v)
		}
	}
	if uid := strings.Fields(status["Uid"]); len(uid) == 0 || uid[0] == "0" || status["Seccomp"] != "2" {
		t.Errorf("VM %s's VMM: Uid %q, Seccomp %q; want it jailed", name, status["Uid"], status["Seccomp"])
	}
	if _, err := os.Lstat(fmt.Sprintf("/proc/%d/root%s", info.PID, tmpl)); !os.IsNotExist(err) {
		t.Errorf("VM %s's VMM sees its template's directory %s: %v", name, tmpl, err)
	}
}

// pss returns the Pss of the process pid, in bytes, from
// /proc/PID/smaps_rollup.
func pss(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "Pss:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no Pss in /proc/%d/smaps_rollup", pid)
	return 0
}

// TestWarmClonesShareMemory: 50 warm clones of a 512 MiB guest that
// filled 448 MiB of its RAM before the snapshot run at once, each having
// read all of that memory again after its restore; their VMMs' combined
// PSS stays far below what copies of the memory would take (50 x 448
// MiB, about 22 GiB): every clone maps the template's one memory file.
func TestWarmClonesShareMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("50 VMs: not in -short")
	}
	const clones = 50
	m, _, first := warmTemplate(t, "512MiB", "")
	// What this test may take if sharing fails is bounded by the host's
	// RAM: a copying implementation fails here before it tries.
	if avail := memAvailable(t); avail < 4<<30 {
		t.Fatalf("the host has %d MiB of memory available; this test needs 4 GiB", avail>>20)
	}
	ctx := context.Background()
	names, err := m.Clone(ctx, "warm", "c", CloneOptions{Numbered: true, Count: clones, Start: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		t.Cleanup(func() { m.Kill(context.Background(), n) })
	}
	for _, n := range names {
		if mm := waitPass(t, m, n, 2, 10*time.Minute); mm[2] != first[2] {
			t.Fatalf("clone %s: sum %s, want %s", n, mm[2], first[2])
		}
	}
	var total int64
	for _, n := range names {
		info, err := m.Inspect(n)
		if err != nil || info.PID == 0 {
			t.Fatalf("clone %s: %+v, %v", n, info, err)
		}
		total += pss(t, info.PID)
	}
	t.Logf("%d warm clones of a 512 MiB guest (448 MiB touched): combined PSS %d MiB (%d MiB per clone); copies would take %d MiB",
		clones, total>>20, total/clones>>20, clones*448)
	if limit := int64(2 << 30); total >= limit {
		t.Errorf("combined PSS %d MiB, want below %d MiB", total>>20, limit>>20)
	}
}

// memAvailable returns MemAvailable from /proc/meminfo, in bytes.
func memAvailable(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "MemAvailable:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no MemAvailable in /proc/meminfo")
	return 0
}

// copyWarm makes the template name, a copy of the warm template tmpl
// whose state file is edited by state (if set), checksummed anew as a
// template made so would be.
func copyWarm(t *testing.T, m *Manager, tmpl *store.Template, name string, state func(*machine.State)) {
	t.Helper()
	st, err := m.NewTemplate(name)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Abort()
	meta := tmpl.Meta
	meta.ID, meta.Created = "", time.Time{}
	w := *meta.Warm
	meta.Warm = &w
	for _, f := range meta.Files() {
		if err := os.MkdirAll(filepath.Dir(st.Path(f.File)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := copyFile(tmpl.Path(f.File), st.Path(f.File)); err != nil {
			t.Fatal(err)
		}
	}
	if state != nil {
		f, err := snapshot.ReadFile(st.Path(w.State.File))
		if err != nil {
			t.Fatal(err)
		}
		s, err := machine.DecodeState(f)
		if err != nil {
			t.Fatal(err)
		}
		state(s)
		out, err := s.File(f.Header)
		if err != nil {
			t.Fatal(err)
		}
		b, err := snapshot.Encode(out)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(st.Path(w.State.File), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	spec, err := os.ReadFile(tmpl.Path(store.TemplateSpecFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.CommitTemplate(st, meta, spec); err != nil {
		t.Fatal(err)
	}
}

// TestWarmCloneRefused: a warm template saved on another kind of CPU, one
// whose memory file is short, and one whose memory file changed after it
// was made are refused with one clear error each, and no clone is made:
// the state directory is as it was.
func TestWarmCloneRefused(t *testing.T) {
	m, tmpl, _ := warmTemplate(t, "512MiB", "")
	// web's console log grows while it runs; the template has its memory.
	if _, err := m.Kill(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	copyWarm(t, m, tmpl, "other-cpu", func(s *machine.State) {
		for i := range s.VCPUs {
			for j := range s.VCPUs[i].CPUID {
				if e := &s.VCPUs[i].CPUID[j]; e.Function == 0 {
					// "CyrixInstead" in EBX, EDX, ECX.
					e.EBX, e.EDX, e.ECX = 0x69727943, 0x736e4978, 0x64616574
				}
			}
		}
	})
	copyWarm(t, m, tmpl, "short", nil)
	short, err := m.Template("short")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(short.Path(short.Meta.Warm.Memory.File), 256<<20); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tree := stateTree(t, m.Home())
	for _, tc := range []struct{ tmpl, want string }{
		{"other-cpu", "template other-cpu was saved on another kind of CPU: its clones cannot run here (machine: restore: the snapshot was taken on a CyrixInstead CPU"},
		{"short", "template short: its memory file: " + short.Path(short.Meta.Warm.Memory.File) + " is 268435456 bytes, want 536870912 (the saved machine's RAM)"},
	} {
		_, err := m.Clone(ctx, tc.tmpl, "x", CloneOptions{Numbered: true, Count: 2, Start: true})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("clone of %s: %v; want an error saying %q", tc.tmpl, err, tc.want)
		}
		if now := stateTree(t, m.Home()); now != tree {
			t.Errorf("the refused clone of %s changed the state directory:\nbefore:\n%s\nafter:\n%s", tc.tmpl, tree, now)
		}
	}
	// A libvirt host cannot restore the memory snapshot: refused before
	// any host is asked.
	_, err = m.Clone(ctx, "warm", "x", CloneOptions{Numbered: true, Count: 2, LibvirtHost: "nowhere"})
	if want := "template warm is warm (template create --memory): its clones resume from its memory snapshot, which only paddock's VMM restores"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("clone --host of a warm template: %v; want an error saying %q", err, want)
	}
	// The template's memory file written after it was made.
	mem := tmpl.Path(tmpl.Meta.Warm.Memory.File)
	if err := os.Chmod(mem, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(mem, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, 0x2000000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chmod(mem, 0o400); err != nil {
		t.Fatal(err)
	}
	_, err = m.Clone(ctx, "warm", "x", CloneOptions{Start: true})
	var changed *store.TemplateChangedError
	if !errors.As(err, &changed) || changed.Path != mem {
		t.Errorf("clone of a template whose memory changed: %v", err)
	}
	if now := stateTree(t, m.Home()); now != tree {
		t.Errorf("the refused clone of a changed template changed the state directory:\nbefore:\n%s\nafter:\n%s", tree, now)
	}
	infos, err := m.List()
	if err != nil || len(infos) != 1 || infos[0].Name != "web" {
		t.Errorf("VMs after the refusals: %+v, %v; want web alone", infos, err)
	}
}
