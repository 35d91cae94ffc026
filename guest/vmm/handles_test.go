package vmm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/disk/qemutest"
	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/internal/testguest"
	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/netnstest"
)

// openHandles opens vm's handles for the length of the test.
func openHandles(t *testing.T, vm *configs.VM, o OpenOptions) *Handles {
	t.Helper()
	h, err := OpenHandles(vm, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// diskVM is a valid spec of the counter guest with disks.
func diskVM(t *testing.T, disks ...configs.Disk) *configs.VM {
	t.Helper()
	testguest.RequireKVM(t)
	vm := &configs.VM{Name: "h", Kernel: testguest.Build(t, "counter"), Memory: 64 * configs.MiB, Disks: disks}
	vm.FillDefaults()
	if err := vm.ValidateStructure(); err != nil {
		t.Fatal(err)
	}
	return vm
}

// TestOpenHandlesFormats: a disk opens in the format the spec names, or
// its pinned one, or the one detected; the device guards the first
// sector of a raw disk whose format the user did not name.
func TestOpenHandlesFormats(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, "c.qcow2")
	if err := qcow2.Create(q, qcow2.CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	vm := diskVM(t,
		configs.Disk{Path: rawDisk(t, dir, "pinned.img")},
		configs.Disk{Path: rawDisk(t, dir, "named.img"), Format: disk.FormatRaw},
		configs.Disk{Path: q},
		configs.Disk{Path: rawDisk(t, dir, "detected.img")})
	h := openHandles(t, vm, OpenOptions{Formats: []string{disk.FormatRaw}})
	want := []struct {
		format string
		guard  bool
	}{{disk.FormatRaw, true}, {disk.FormatRaw, false}, {disk.FormatQcow2, false}, {disk.FormatRaw, true}}
	for i, w := range want {
		d := h.Disks[i]
		if got := d.Image.Capabilities().Format; got != w.format || d.Guard != w.guard || d.Path != vm.Disks[i].Path {
			t.Errorf("disks[%d]: %s, guard %v, path %s; want %s, guard %v", i, got, d.Guard, d.Path, w.format, w.guard)
		}
	}
}

// TestOpenHandlesLocks: the handles hold QEMU's image locks, so a second
// VM, qemu-io and qemu-img see a disk in use, naming this process, for
// as long as the handles are open; read-only disks are shared.
func TestOpenHandlesLocks(t *testing.T) {
	img := rawDisk(t, t.TempDir(), "disk.img")
	vm := diskVM(t, configs.Disk{Path: img, Format: disk.FormatRaw})
	h := openHandles(t, vm, OpenOptions{})
	ro := diskVM(t, configs.Disk{Path: img, Format: disk.FormatRaw, ReadOnly: true})
	_, err := OpenHandles(ro, OpenOptions{})
	self := fmt.Sprintf("%s (pid %d)", filepath.Base(os.Args[0]), os.Getpid())
	if want := "disks[0]: disk: " + img + " is in use: " + self + " writes it"; err == nil || err.Error() != want {
		t.Fatalf("second VM on a writable image: %v\nwant %s", err, want)
	}
	if testenv.HasTool(t, "qemu-io", "qemu-utils") {
		out, err := exec.Command("qemu-io", "-f", "raw", "-c", "write 0 4k", img).CombinedOutput()
		if err == nil || !strings.Contains(string(out), `Failed to get "write" lock`) {
			t.Errorf("qemu-io wrote a VM's disk: %v\n%s", err, out)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	// Read-only users share an image.
	openHandles(t, ro, OpenOptions{})
	openHandles(t, ro, OpenOptions{})
}

// TestOpenHandlesHeldByQEMU: a disk a QEMU VM writes keeps a VM from
// starting, and the error names the QEMU process.
func TestOpenHandlesHeldByQEMU(t *testing.T) {
	img := rawDisk(t, t.TempDir(), "disk.img")
	vm := diskVM(t, configs.Disk{Path: img, Format: disk.FormatRaw, ReadOnly: true})
	q := qemutest.HoldVM(t, "file="+img+",format=raw")
	_, err := OpenHandles(vm, OpenOptions{})
	want := fmt.Sprintf("disks[0]: disk: %s is in use: qemu-system-x86_64 (pid %d) writes it", img, q.PID)
	if err == nil || err.Error() != want {
		t.Fatalf("a disk QEMU writes: %v\nwant %s", err, want)
	}
}

// TestOpenHandlesUntrusted: an untrusted disk refuses a qcow2 overlay
// whose backing file lies outside its directory, naming it; the same
// overlay as a trusted disk opens, as in QEMU, unless a backing policy
// is given for it.
func TestOpenHandlesUntrusted(t *testing.T) {
	secret := rawDisk(t, t.TempDir(), "secret.img")
	overlay := filepath.Join(t.TempDir(), "hostile.qcow2")
	if err := qcow2.Create(overlay, qcow2.CreateOptions{Size: 1 << 20, BackingFile: secret, BackingFormat: disk.FormatRaw}); err != nil {
		t.Fatal(err)
	}
	_, err := OpenHandles(diskVM(t, configs.Disk{Path: overlay, Untrusted: true}), OpenOptions{})
	if err == nil || !strings.HasPrefix(err.Error(), "disks[0]: ") || !strings.Contains(err.Error(), secret) {
		t.Fatalf("untrusted overlay on a file elsewhere: %v", err)
	}
	openHandles(t, diskVM(t, configs.Disk{Path: overlay}), OpenOptions{}).Close()
	// A clone's overlay is confined by its policy (OverlayBacking),
	// whatever its spec says.
	_, err = OpenHandles(diskVM(t, configs.Disk{Path: overlay}), OpenOptions{Backing: []*disk.BackingPolicy{disk.ConfinedToImage(overlay)}})
	if err == nil || !strings.Contains(err.Error(), secret) {
		t.Fatalf("a clone's overlay on a file outside its directories: %v", err)
	}
}

// TestOpenHandlesErrors: each problem is one error naming the disk or
// NIC, and a failed open leaves no descriptor behind.
func TestOpenHandlesErrors(t *testing.T) {
	dir := t.TempDir()
	mac := netdev.GenerateMAC("errors/0")
	nic := func(n NIC) OpenOptions { return OpenOptions{NICs: []NIC{n}} }
	withNIC := diskVM(t, configs.Disk{Path: rawDisk(t, dir, "ok.img"), Format: disk.FormatRaw})
	withNIC.NICs = []configs.NIC{{Bridge: "br0"}}
	for _, tc := range []struct {
		name string
		vm   *configs.VM
		o    OpenOptions
		want string
	}{
		{"missing image", diskVM(t, configs.Disk{Path: "/nonexistent/disk.qcow2"}), OpenOptions{}, "disks[0]: disk: open /nonexistent/disk.qcow2: no such file or directory"},
		{"format mismatch", diskVM(t, configs.Disk{Path: rawDisk(t, dir, "raw.img"), Format: disk.FormatQcow2}), OpenOptions{}, "disks[0]: "},
		{"missing bridge", withNIC, nic(NIC{Bridge: "nosuchbr0", MAC: mac}), "nics[0]: bridge nosuchbr0: no such network interface"},
		{"missing tap", withNIC, nic(NIC{Tap: "nosuchtap0", MAC: mac}), "nics[0]: tap nosuchtap0: no such network interface"},
		{"a managed network's bridge", withNIC, nic(NIC{Bridge: "pd-default", MAC: mac}), "nics[0]: bridge pd-default is the bridge of a managed network: use network: NAME"},
		{"tap and bridge", withNIC, nic(NIC{Tap: "t", Bridge: "b", MAC: mac}), "nics[0]: set tap or bridge, not both"},
		{"no MAC", withNIC, nic(NIC{Bridge: "br0"}), "nics[0]: MAC 00:00:00:00:00:00 is not a unicast address"},
		{"NICs unresolved", withNIC, OpenOptions{}, "vmm: VM h has 1 NICs, 0 resolved"},
		{"missing kernel", &configs.VM{Name: "h", Kernel: filepath.Join(dir, "nope")}, OpenOptions{}, "kernel " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{"no KVM", withNIC, OpenOptions{KVMPath: filepath.Join(dir, "kvm"), NICs: []NIC{{Bridge: "br0", MAC: mac}}}, "vmm: kvm: open " + filepath.Join(dir, "kvm") + ": no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testenv.OpenFDs(t)
			h, err := OpenHandles(tc.vm, tc.o)
			if err == nil {
				h.Close()
				t.Fatal("OpenHandles succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
			if after := testenv.OpenFDs(t); after != before {
				t.Errorf("%d file descriptors leaked", after-before)
			}
		})
	}
}

// TestOpenHandlesTaps opens a VM's NICs inside a private network
// namespace: a NIC on a bridge gets a new tap, a port of the bridge,
// named after its MAC; a NIC on an existing tap holds it (another user is
// refused). Close removes the created tap and leaves the existing one.
func TestOpenHandlesTaps(t *testing.T) {
	ns := netnstest.New(t)
	ns.Bridge(t, "br0")
	ns.IP(t, "tuntap", "add", "tap5", "mode", "tap")
	vm := diskVM(t)
	vm.NICs = []configs.NIC{{Bridge: "br0"}, {Tap: "tap5"}}
	mac := netdev.GenerateMAC("bridge-test/0")
	var h *Handles
	err := ns.Do(func() error {
		var err error
		h, err = OpenHandles(vm, OpenOptions{NICs: []NIC{{Bridge: "br0", MAC: mac}, {Tap: "tap5", MAC: netdev.GenerateMAC("bridge-test/1")}}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("pd%02x%02x%02x%02x", mac[2], mac[3], mac[4], mac[5])
	if out := ns.IP(t, "link", "show", "master", "br0"); !strings.Contains(out, name) || h.NICs[0].Tap.Name() != name {
		t.Fatalf("bridge ports lack %s:\n%s", name, out)
	}
	if h.NICs[0].MAC != mac {
		t.Errorf("NIC 0's MAC %s, want %s", h.NICs[0].MAC, mac)
	}
	err = ns.Do(func() error {
		_, err := netdev.OpenTap("tap5")
		return err
	})
	if !errors.Is(err, netdev.ErrBusy) {
		t.Errorf("opening the VM's tap5: %v, want busy", err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if out := ns.IP(t, "link", "show"); strings.Contains(out, name) {
		t.Fatalf("the created tap %s outlived the handles:\n%s", name, out)
	}
	ns.IP(t, "link", "show", "tap5") // an existing tap stays
}

// TestHandlesVMAhead: the machine config built on handles that create
// their VM ahead takes that VM, once; handles closed with a VM never
// taken close it.
func TestHandlesVMAhead(t *testing.T) {
	vm := diskVM(t)
	h := openHandles(t, vm, OpenOptions{})
	h.CreateVMAhead()
	ahead := h.VM
	cfg, err := machineConfig(vm, h)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.VM == nil || cfg.VM.Fd() < 0 || h.VM != nil {
		t.Fatalf("machine config VM %v, handles' VM %v: want the VM created ahead handed over", cfg.VM, h.VM)
	}
	defer cfg.VM.Close()
	if again, err := machineConfig(vm, h); err != nil || again.VM != nil {
		t.Errorf("a second machine config got VM %v (%v); want none: the next machine creates its own", again.VM, err)
	}
	if _, err := ahead.Take(); err == nil {
		t.Error("the VM created ahead could be taken twice")
	}

	h2 := openHandles(t, vm, OpenOptions{})
	h2.CreateVMAhead()
	a2 := h2.VM
	if err := h2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a2.Take(); err == nil {
		t.Error("Close left the VM created ahead to be taken")
	}
}
