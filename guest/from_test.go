package guest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// baseSize is the virtual size of the test templates' root disks.
const baseSize = 64 << 20

// testTemplate makes a template called name in m's store: the tiny guest
// kernel (a testguest program, so a VM from it runs on this host's KVM),
// an initrd and a qcow2 base disk with a pattern at its start; base, if
// set, names the base disk's own backing file. It returns the template
// and the base disk's first MiB.
func testTemplate(t testing.TB, m *Manager, name, kernel, base string) (*store.Template, []byte) {
	t.Helper()
	return templateOf(t, m, name, kernel, []byte("070701 initrd"), base, "root=UUID=x console=ttyS0")
}

// templateOf is testTemplate with the initrd's content and the command
// line given.
func templateOf(t testing.TB, m *Manager, name, kernel string, initrd []byte, base, cmdline string) (*store.Template, []byte) {
	t.Helper()
	st, err := m.NewTemplate(name)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Abort()
	data, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st.Path("vmlinuz"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st.Path("initrd.img"), initrd, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(st.Path("disks"), 0o700); err != nil {
		t.Fatal(err)
	}
	img, err := disk.Create(st.Path("disks/root.qcow2"), disk.CreateOptions{Size: baseSize, Qcow2: qcow2.CreateOptions{BackingFile: base, BackingFormat: formatIf(base)}})
	if err != nil {
		t.Fatal(err)
	}
	pattern := make([]byte, 1<<20)
	for i := range pattern {
		pattern[i] = byte(i*7 + len(name))
	}
	if _, err := img.WriteAt(pattern, 0); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	tmpl, err := m.CommitTemplate(st, store.TemplateMeta{
		Origin:  store.TemplateOrigin{Kind: store.OriginBuild, Builder: "test"},
		Kernel:  store.TemplateKernel{TemplateFile: store.TemplateFile{File: "vmlinuz"}},
		Initrd:  &store.TemplateFile{File: "initrd.img"},
		Cmdline: cmdline,
		Disks:   []store.TemplateDisk{{TemplateFile: store.TemplateFile{File: "disks/root.qcow2"}, Format: "qcow2", VirtualSize: baseSize}},
	}, []byte("builder: test\n"))
	if err != nil {
		t.Fatal(err)
	}
	return tmpl, pattern
}

func formatIf(base string) string {
	if base == "" {
		return ""
	}
	return "raw"
}

// fromVM returns a validated spec of a VM from the template called from,
// checked against m's templates.
func fromVM(t testing.TB, m *Manager, name, from, extra string) *configs.VM {
	t.Helper()
	return specFrom(t, m, fmt.Sprintf("name: %s\nfrom: %s\nmemory: 64MiB\nconsole: log\ncloud_init: false\n%s", name, from, extra))
}

// specFrom parses and validates the YAML y, checked against m's
// templates.
func specFrom(t testing.TB, m *Manager, y string) *configs.VM {
	t.Helper()
	vm, err := configs.Parse([]byte(y), "")
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	if err := vm.Validate(configs.Host{Templates: m.TemplateLookup()}); err != nil {
		t.Fatal(err)
	}
	return vm
}

func sha(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestCreateFromTemplate: a VM from a template gets a resolved spec (the
// template's kernel, initrd and command line plus its own arguments; its
// overlay first among its disks), a qcow2 overlay of root_size in its
// own directory on the template's base disk (qemu-img agrees), that
// reads as the base and takes the VM's writes while the base stays as it
// was; rm removes the overlay and never the template, and template rm
// refuses while the VM exists, naming it.
func TestCreateFromTemplate(t *testing.T) {
	testenv.RequireTool(t, "qemu-img", "qemu-utils")
	m := testManager(t)
	tmpl, pattern := testTemplate(t, m, "debian-12", testguest.Build(t, "counter"), "")
	base := tmpl.Path("disks/root.qcow2")
	baseSum := sha(t, base)
	data := filepath.Join(t.TempDir(), "data.raw")
	if err := disk.CreateRaw(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	info, err := m.Create(fromVM(t, m, "web", "debian-12", "root_size: 128MiB\ncmdline: quiet\ndisks: ["+data+"]\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if info.Template != "debian-12" {
		t.Errorf("Info.Template %q", info.Template)
	}
	spec, err := m.Spec("web")
	if err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(m.Home(), "vms", "web", "disks", "root.qcow2")
	if spec.From != "" || spec.Kernel != tmpl.Path("vmlinuz") || spec.Initrd != tmpl.Path("initrd.img") ||
		spec.Cmdline != "root=UUID=x console=ttyS0 quiet" || len(spec.Disks) != 2 ||
		spec.Disks[0].Path != overlay || spec.Disks[0].Format != "qcow2" || spec.Disks[1].Path != data {
		t.Errorf("resolved spec: from %q kernel %q initrd %q cmdline %q disks %+v", spec.From, spec.Kernel, spec.Initrd, spec.Cmdline, spec.Disks)
	}
	var qi struct {
		VirtualSize   int64  `json:"virtual-size"`
		BackingFile   string `json:"backing-filename"`
		BackingFormat string `json:"backing-filename-format"`
	}
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", overlay).Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &qi); err != nil {
		t.Fatal(err)
	}
	if qi.VirtualSize != 128<<20 || qi.BackingFile != base || qi.BackingFormat != "qcow2" {
		t.Errorf("qemu-img info of the overlay: %+v", qi)
	}
	if fi, err := os.Stat(overlay); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the overlay's mode: %v, %v; want 0600, as the rest of the VM's files", fi.Mode(), err)
	}
	if out, err := exec.Command("qemu-img", "check", "-U", overlay).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check: %v\n%s", err, out)
	}
	// The VM's disk reads as the base and takes writes, in the overlay.
	img, err := disk.Open(overlay, disk.Options{Format: "qcow2", Backing: disk.ConfinedTo(filepath.Dir(overlay), filepath.Dir(base))})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(pattern))
	if _, err := img.ReadAt(got, 0); err != nil || string(got) != string(pattern) {
		t.Errorf("the overlay does not read as the base: %v", err)
	}
	if _, err := img.WriteAt([]byte("the VM's own data"), 4096); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	if sha(t, base) != baseSum {
		t.Error("writing the VM's disk changed the template's base disk")
	}

	var iu *TemplateInUseError
	err = m.RemoveTemplate("debian-12")
	if !errors.As(err, &iu) || err.Error() != "cannot remove template 'debian-12': VM web uses it (their disks are overlays on its disks); remove them first (paddock rm web)" {
		t.Errorf("RemoveTemplate while a VM uses it: %v", err)
	}
	if err := m.Remove(context.Background(), "web", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(overlay); !os.IsNotExist(err) {
		t.Errorf("the overlay outlived its VM: %v", err)
	}
	if sha(t, base) != baseSum {
		t.Error("rm changed the template's base disk")
	}
	if err := m.RemoveTemplate("debian-12"); err != nil {
		t.Errorf("RemoveTemplate once no VM uses it: %v", err)
	}
	var nf *NotFoundError
	if _, err := m.Template("debian-12"); !errors.As(err, &nf) {
		t.Errorf("Template after RemoveTemplate: %v", err)
	}
}

// TestStartFromTemplate starts a VM made from a template on this host's
// KVM: the VMM opens the overlay and its base under the overlay's
// backing policy; the base is unchanged after the run. A template file
// changed after the VM was made keeps it from starting, with the file
// named.
func TestStartFromTemplate(t *testing.T) {
	m, base, baseSum := startedFromTemplate(t)
	ctx := context.Background()
	if _, err := m.Kill(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if sha(t, base) != baseSum {
		t.Error("running the VM changed the template's base disk")
	}
	spoil(t, base)
	var ce *store.TemplateChangedError
	if _, err := m.Start(ctx, "web"); !errors.As(err, &ce) || ce.Path != base {
		t.Errorf("Start on a changed template: %v", err)
	}
	if _, err := m.Create(fromVM(t, m, "db", "tiny", ""), ""); !errors.As(err, &ce) {
		t.Errorf("Create from a changed template: %v", err)
	}
	if _, err := m.Spec("db"); err == nil {
		t.Error("a refused Create left a VM")
	}
}

// TestStartFromReplacedTemplate: a VM whose template was removed behind
// paddock's back and made again under the same name does not start on
// the new one.
func TestStartFromReplacedTemplate(t *testing.T) {
	m := testManager(t)
	kernel := testguest.Build(t, "counter")
	tmpl, _ := testTemplate(t, m, "tiny", kernel, "")
	if _, err := m.Create(fromVM(t, m, "web", "tiny", ""), ""); err != nil {
		t.Fatal(err)
	}
	if err := m.store.RemoveTemplate(tmpl); err != nil {
		t.Fatal(err)
	}
	_, err := m.Start(context.Background(), "web")
	if err == nil || !strings.Contains(err.Error(), "VM web was made from template tiny, which is gone") {
		t.Errorf("Start without its template: %v", err)
	}
	testTemplate(t, m, "tiny", kernel, "")
	_, err = m.Start(context.Background(), "web")
	if err == nil || !strings.Contains(err.Error(), "VM web was made from another template called tiny") {
		t.Errorf("Start on a template made again: %v", err)
	}
}

// TestCreateFromHostileTemplate: a template whose base disk names a
// backing file outside the template (as an imported one could) is
// refused before anything is made.
func TestCreateFromHostileTemplate(t *testing.T) {
	m := testManager(t)
	secret := filepath.Join(t.TempDir(), "secret.raw")
	if err := os.WriteFile(secret, make([]byte, baseSize), 0o600); err != nil {
		t.Fatal(err)
	}
	testTemplate(t, m, "evil", testguest.Build(t, "counter"), secret)
	_, err := m.Create(fromVM(t, m, "web", "evil", ""), "")
	if !errors.Is(err, qcow2.ErrBackingRefused) || !strings.Contains(err.Error(), secret) {
		t.Errorf("Create from a template whose base has a backing file elsewhere: %v", err)
	}
	if names, _ := m.Names(); len(names) != 0 {
		t.Errorf("a refused Create left VMs %v", names)
	}
}

// TestFromUnknownTemplate: Create names the closest template.
func TestFromUnknownTemplate(t *testing.T) {
	m := testManager(t)
	testTemplate(t, m, "debian-12", testguest.Build(t, "counter"), "")
	vm := fromVM(t, m, "web", "debian-12", "")
	vm.From = "debain-12"
	var nf *NotFoundError
	_, err := m.Create(vm, "")
	if !errors.As(err, &nf) || err.Error() != "VM web: from: no template named 'debain-12'; did you mean 'debian-12'?" {
		t.Errorf("Create from a typo: %v", err)
	}
}

// TestVMMConfinesOverlay: the VMM opens a VM's overlays under the policy
// its from.json gives (disk.ConfinedTo the overlay's and the base's
// directories): with a from.json naming another base directory, the
// template's real base is refused, and the VM does not start.
func TestVMMConfinesOverlay(t *testing.T) {
	m := testManager(t)
	testTemplate(t, m, "tiny", testguest.Build(t, "counter"), "")
	if _, err := m.Create(fromVM(t, m, "web", "tiny", ""), ""); err != nil {
		t.Fatal(err)
	}
	v, err := m.store.VM("web")
	if err != nil {
		t.Fatal(err)
	}
	from, err := v.ReadFrom()
	if err != nil {
		t.Fatal(err)
	}
	from.Overlays[0].Base = filepath.Join(t.TempDir(), "elsewhere", "root.qcow2")
	if err := v.WriteFrom(*from); err != nil {
		t.Fatal(err)
	}
	_, err = m.Start(context.Background(), "web")
	if err == nil || !strings.Contains(err.Error(), "is outside the allowed directories") {
		t.Errorf("Start with the base outside the overlay's policy: %v", err)
	}
}

// TestRunFromTemplate: a foreground run does not take from: (a VM from
// a template needs an overlay in the state directory); it says what to
// do instead.
func TestRunFromTemplate(t *testing.T) {
	m := testManager(t)
	testTemplate(t, m, "tiny", testguest.Build(t, "counter"), "")
	_, err := Run(context.Background(), fromVM(t, m, "web", "tiny", ""), RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "make it with paddock up -f FILE") {
		t.Errorf("Run of a VM from a template: %v", err)
	}
}

// TestSnapshotFromTemplate: a VM made from a template is snapshotted
// (its overlay takes the disk's internal snapshot) and restored in a new
// VMM, whose overlays are confined as a booted one's; once the
// template's base disk changed, the restore is refused as a start is.
func TestSnapshotFromTemplate(t *testing.T) {
	m, base, baseSum := startedFromTemplate(t)
	ctx := context.Background()
	if _, err := m.CreateSnapshot(ctx, "web", "s1", true); err != nil {
		t.Fatal(err)
	}
	if _, err := m.RestoreSnapshot(ctx, "web", "s1", false); err != nil {
		t.Fatalf("restore of a VM from a template: %v", err)
	}
	if _, err := m.Kill(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if sha(t, base) != baseSum {
		t.Fatal("the snapshot and restore changed the template's base disk")
	}
	spoil(t, base)
	var ce *store.TemplateChangedError
	if _, err := m.RestoreSnapshot(ctx, "web", "s1", false); !errors.As(err, &ce) {
		t.Errorf("restore on a changed template: %v", err)
	}
}

// startedFromTemplate makes the template tiny (the counter guest) and
// the VM web from it, and starts it; it returns the manager, the
// template's base disk and the base's SHA-256.
func startedFromTemplate(t *testing.T) (*Manager, string, string) {
	t.Helper()
	m := testManager(t)
	tmpl, _ := testTemplate(t, m, "tiny", testguest.Build(t, "counter"), "")
	base := tmpl.Path("disks/root.qcow2")
	baseSum := sha(t, base)
	if _, err := m.Create(fromVM(t, m, "web", "tiny", ""), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	return m, base, baseSum
}

// spoil writes one byte of a template's base disk, as someone who
// changes it behind paddock's back.
func spoil(t *testing.T, base string) {
	t.Helper()
	if err := os.Chmod(base, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(base, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0xff}, 1<<20+17); err != nil {
		t.Fatal(err)
	}
}
