package guest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
	lv "github.com/paddock-vm/paddock/guest/libvirt"
	"github.com/paddock-vm/paddock/guest/libvirt/libvirttest"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
	"github.com/paddock-vm/paddock/internal/testenv"
	"libvirt.org/go/libvirtxml"
)

// nothingLeft checks that a failed create left nothing: no VM in the
// store, no domain called name, none of its volumes in the pool.
func nothingLeft(t *testing.T, m *Manager, d *libvirttest.Daemon, name string) {
	t.Helper()
	if names, _ := m.Names(); len(names) != 0 {
		t.Errorf("VMs left in the store: %v", names)
	}
	for _, n := range domainNames(t, d) {
		if n == name {
			t.Errorf("domain %s was defined", n)
		}
	}
	if left := poolNames(t, d, "vm-"); len(left) > 0 {
		t.Errorf("volumes left in the pool: %v", left)
	}
}

// TestLibvirtCreateErrors: what keeps a libvirt VM from being created is
// one clear sentence, and leaves nothing behind: not in the store, not
// on the host.
func TestLibvirtCreateErrors(t *testing.T) {
	ctx := context.Background()
	m, d := libvirtManager(t)

	t.Run("unreachable URI", func(t *testing.T) {
		vm := libvirtVM(t, "web", "libvirt: {uri: 'qemu+tcp://127.0.0.1:1/system'}")
		_, err := m.CreateContext(ctx, vm, "")
		if err == nil || !strings.HasPrefix(err.Error(), "libvirt host qemu+tcp://127.0.0.1:1/system: cannot connect: ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("Create = %v", err)
		}
		nothingLeft(t, m, d, "web")
	})

	t.Run("unknown host", func(t *testing.T) {
		vm := libvirtVM(t, "web", "libvirt: {host: lab9}")
		_, err := m.CreateContext(ctx, vm, "")
		if !errors.Is(err, lv.ErrNoHost) || !strings.Contains(err.Error(), `libvirt host "lab9"`) {
			t.Errorf("Create = %v", err)
		}
		nothingLeft(t, m, d, "web")
	})

	t.Run("kvm on a host without it", func(t *testing.T) {
		c, err := lv.Connect(d.Host("local"))
		if err != nil {
			t.Fatal(err)
		}
		f, err := c.Facts()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		vm := libvirtVM(t, "web", "libvirt: {type: kvm}")
		_, err = m.CreateContext(ctx, vm, "")
		if f.KVM {
			// This host has hardware virtualization: kvm is granted.
			if err != nil {
				t.Fatalf("Create on a KVM host = %v", err)
			}
			if err := m.Remove(ctx, "web", false); err != nil {
				t.Fatal(err)
			}
		} else if err == nil || !strings.Contains(err.Error(), "cannot run domains of type kvm: "+f.NoKVM+"; set libvirt.type to qemu") {
			t.Errorf("Create = %v", err)
		}
		nothingLeft(t, m, d, "web")
	})

	t.Run("name defined outside paddock", func(t *testing.T) {
		virsh := testenv.RequireTool(t, "virsh", "libvirt-clients")
		def := filepath.Join(t.TempDir(), "taken.xml")
		os.WriteFile(def, []byte("<domain type='qemu'><name>taken</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os><features><acpi/></features></domain>"), 0o644)
		if out, err := exec.Command(virsh, "-c", d.URI, "define", def).CombinedOutput(); err != nil {
			t.Fatalf("virsh define: %v: %s", err, out)
		}
		defer exec.Command(virsh, "-c", d.URI, "undefine", "taken").Run()
		before, _ := exec.Command(virsh, "-c", d.URI, "dumpxml", "taken").Output()
		_, err := m.CreateContext(ctx, libvirtVM(t, "taken"), "")
		var fe *lv.ForeignError
		if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), "a domain named 'taken' exists on libvirt host local (") ||
			!strings.HasSuffix(err.Error(), "and paddock did not define it: paddock leaves it alone; give the VM another name") {
			t.Errorf("Create = %v", err)
		}
		after, _ := exec.Command(virsh, "-c", d.URI, "dumpxml", "taken").Output()
		if string(before) != string(after) || len(after) == 0 {
			t.Errorf("the foreign domain changed:\n%s\n---\n%s", before, after)
		}
		if names, _ := m.Names(); len(names) != 0 {
			t.Errorf("VMs left in the store: %v", names)
		}
		if left := poolNames(t, d, "vm-"); len(left) > 0 {
			t.Errorf("volumes left in the pool: %v", left)
		}
	})

	t.Run("disk with a backing file", func(t *testing.T) {
		vm := libvirtVM(t, "web")
		overlay := filepath.Join(t.TempDir(), "overlay.qcow2")
		im, err := disk.Create(overlay, disk.CreateOptions{Qcow2: qcow2.CreateOptions{BackingFile: vm.Disks[0].Path, BackingFormat: "qcow2"}})
		if err != nil {
			t.Fatal(err)
		}
		im.Close()
		vm.Disks[0].Path = overlay
		_, err = m.CreateContext(ctx, vm, "")
		if err == nil || !strings.HasPrefix(err.Error(), "disks[0]: "+overlay+" has a backing file (") {
			t.Errorf("Create = %v", err)
		}
		nothingLeft(t, m, d, "web")
	})

	t.Run("define refused", func(t *testing.T) {
		// paddock lets a disk serial have any printable ASCII; libvirt's
		// schema does not take '/'. The define fails after the disk was
		// uploaded: the upload goes too.
		vm := libvirtVM(t, "web")
		vm.Disks[0].Serial = "a/b"
		_, err := m.CreateContext(ctx, vm, "")
		if err == nil || !strings.Contains(err.Error(), ": define domain web: ") {
			t.Errorf("Create = %v", err)
		}
		nothingLeft(t, m, d, "web")
	})
}

// TestLsListsBothBackends: one state directory, a native VM and a libvirt
// VM; ls shows both, each with its backend and state.
func TestLsListsBothBackends(t *testing.T) {
	ctx := context.Background()
	m, _ := libvirtManager(t)
	if _, err := m.Create(testVM(t, "a-native", "pwrbtn"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateContext(ctx, libvirtVM(t, "b-libvirt"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, "a-native"); err != nil {
		t.Fatal(err)
	}
	infos, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 ||
		infos[0].Name != "a-native" || infos[0].Backend != "native" || infos[0].State != store.StateRunning || infos[0].Host != "" ||
		infos[1].Name != "b-libvirt" || infos[1].Backend != "libvirt" || infos[1].State != store.StateCreated || infos[1].Host != "local" {
		for _, in := range infos {
			t.Errorf("%+v", in)
		}
	}
	for _, n := range []string{"a-native", "b-libvirt"} {
		if err := m.Remove(ctx, n, true); err != nil {
			t.Error(err)
		}
	}
}

// TestLibvirtVMHostGone: a VM whose host cannot be reached shows as
// unknown, saying why; rm refuses to forget it unless --force.
func TestLibvirtVMHostGone(t *testing.T) {
	ctx := context.Background()
	m, d := libvirtManager(t)
	if err := m.Hosts().Add(lv.Host{Name: "lab1", URI: d.URI}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateContext(ctx, libvirtVM(t, "web", "libvirt: {host: lab1}"), ""); err != nil {
		t.Fatal(err)
	}
	// The VM remembers its host; point it somewhere dead, as a host that
	// went away.
	v, err := m.store.VM("web")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := lv.ReadPlacement(v.Dir)
	if err != nil {
		t.Fatal(err)
	}
	real := pl.Host
	pl.Host.URI = "qemu+tcp://127.0.0.1:1/system"
	if err := lv.WritePlacement(v.Dir, pl); err != nil {
		t.Fatal(err)
	}
	info, err := m.Inspect("web")
	if err != nil || info.State != store.StateUnknown || info.Host != "lab1" || !strings.Contains(info.Problem, "libvirt host lab1 (qemu+tcp://127.0.0.1:1/system): cannot connect: ") {
		t.Errorf("Inspect = %+v, %v", info, err)
	}
	if _, err := m.Start(ctx, "web"); err == nil || !strings.HasPrefix(err.Error(), "VM web: libvirt host lab1 (qemu+tcp://127.0.0.1:1/system): cannot connect: ") {
		t.Errorf("Start = %v", err)
	}
	if err := m.Remove(ctx, "web", false); err == nil || !strings.Contains(err.Error(), "paddock rm --force web forgets the VM and leaves them there") {
		t.Errorf("Remove = %v", err)
	}
	// The host is back: rm cleans it.
	pl.Host = real
	if err := lv.WritePlacement(v.Dir, pl); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "web", false); err != nil {
		t.Fatal(err)
	}
	nothingLeft(t, m, d, "web")
}

// TestChooseHost: auto placement takes the host with the most free
// memory among those that can take the VM, the first of equals, and says
// why none could.
func TestChooseHost(t *testing.T) {
	gone := errors.New("libvirt host lab3 (qemu+tcp://lab3/system): cannot connect: refused")
	probes := []hostProbe{
		{host: lv.Host{Name: "local"}, free: 1 << 30},
		{host: lv.Host{Name: "lab1"}, free: 8 << 30},
		{host: lv.Host{Name: "lab2"}, free: 8 << 30},
		{host: lv.Host{Name: "lab3"}, free: 64 << 30, err: gone},
	}
	if i, err := chooseHost(probes); err != nil || i != 1 {
		t.Errorf("chooseHost = %d, %v; want lab1", i, err)
	}
	if _, err := chooseHost(probes[3:]); err == nil || err.Error() != gone.Error() {
		t.Errorf("chooseHost of unreachable hosts = %v", err)
	}
}

// TestLibvirtIdentitySeedNetwork: a libvirt VM's domain has the VM's UUID
// (identity.json), its NICs' MACs are the ones its cloud-init seed names,
// the seed is one of its volumes, attached read-only after its disks, and
// a NIC on a network is on the host's libvirt network of that name.
func TestLibvirtIdentitySeedNetwork(t *testing.T) {
	ctx := context.Background()
	m, d := libvirtManager(t)
	vm := libvirtVM(t, "web", "cloud_init: true", "nics: [{network: default}]")
	info, err := m.CreateContext(ctx, vm, "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := lv.Connect(d.Host("check"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dom, err := c.Domain("web", info.UUID)
	if err != nil {
		t.Fatalf("the domain does not have the VM's UUID %s: %v", info.UUID, err)
	}
	desc, err := dom.XML()
	if err != nil {
		t.Fatal(err)
	}
	var x libvirtxml.Domain
	if err := x.Unmarshal(desc); err != nil {
		t.Fatal(err)
	}
	macs, err := vmm.NICMACs(vm)
	if err != nil {
		t.Fatal(err)
	}
	if n := x.Devices.Interfaces; len(n) != 1 || n[0].Source.Network == nil || n[0].Source.Network.Network != "default" || n[0].MAC.Address != macs[0].String() {
		t.Errorf("NICs %+v", n)
	}
	disks := x.Devices.Disks
	if len(disks) != 2 || disks[1].ReadOnly == nil || disks[1].Source.Volume == nil || disks[1].Source.Volume.Volume != "vm-"+info.UUID+".seed.iso" || disks[1].Target.Dev != "vdb" {
		t.Fatalf("disks %+v", disks)
	}
	pool, err := c.Pool(false)
	if err != nil {
		t.Fatal(err)
	}
	var seed bytes.Buffer
	if err := pool.Download(disks[1].Source.Volume.Volume, &seed); err != nil {
		t.Fatal(err)
	}
	// An ISO 9660 volume (label cidata) whose meta-data names the VM's UUID.
	if !bytes.Contains(seed.Bytes(), []byte("CD001")) || !bytes.Contains(seed.Bytes(), []byte(info.UUID)) || !bytes.Contains(seed.Bytes(), []byte(macs[0].String())) {
		t.Errorf("the seed volume (%d bytes) is not the VM's", seed.Len())
	}
	if err := m.Remove(ctx, "web", false); err != nil {
		t.Fatal(err)
	}
	nothingLeft(t, m, d, "web")
}
