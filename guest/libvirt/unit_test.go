package libvirt

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/netdev"
)

func mustMAC(t *testing.T, s string) netdev.MAC {
	t.Helper()
	m, err := netdev.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDiskName(t *testing.T) {
	for _, bad := range []string{"", "vd", "sda", "vdA", "vd1"} {
		if i := DiskIndex(bad); i != -1 {
			t.Errorf("DiskIndex(%q) = %d", bad, i)
		}
	}
	for i, want := range map[int]string{0: "vda", 1: "vdb", 25: "vdz", 26: "vdaa", 27: "vdab", 51: "vdaz", 52: "vdba", 701: "vdzz", 702: "vdaaa"} {
		if got := diskName(i); got != want {
			t.Errorf("diskName(%d) = %s, want %s", i, got, want)
		}
		if got := DiskIndex(want); got != i {
			t.Errorf("DiskIndex(%s) = %d, want %d", want, got, i)
		}
	}
}

// TestDomainXML translates a spec into a domain and reads it back with
// libvirtxml: every field of the spec is where libvirt looks for it.
func TestDomainXML(t *testing.T) {
	vm := &configs.VM{
		Name: "web", CPUs: 2, Memory: 256 * configs.MiB,
		Kernel: "/k", Initrd: "/i", Cmdline: "console=ttyS0 quiet",
		Labels: map[string]string{"tier": "web", "app": "shop"},
		Disks: []configs.Disk{
			{Path: "/a.qcow2", Cache: configs.CacheWriteback, Serial: "root"},
			{Path: "/b.img", ReadOnly: true, Cache: configs.CacheUnsafe},
		},
		NICs:      []configs.NIC{{Bridge: "br0"}, {Tap: "tap7", MAC: "52:54:00:12:34:56"}, {Network: "default"}},
		CloudInit: true,
		RNG:       true,
		OnReboot:  configs.RebootRestart,
	}
	pl := &Placement{UUID: "0f8fad5b-d9cb-469f-a165-70867728950e", DomainType: TypeQEMU, ConsoleLog: "/pool/vm-x.console.log"}
	files := Files{
		Kernel: "/pool/sha256-k", Initrd: "/pool/sha256-i",
		Disks:   []Volume{{Name: "vm-x.disk0"}, {Name: "sha256-b"}},
		Formats: []string{"qcow2", "raw"},
		Seed:    "vm-x.seed.iso",
		MACs:    []netdev.MAC{netdev.GenerateMAC("a"), mustMAC(t, "52:54:00:12:34:56"), netdev.GenerateMAC("c")},
	}
	s, err := DomainXML(vm, pl, "paddock", files, Metadata{Home: "/var/lib/paddock", Machine: "box"})
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(s); err != nil {
		t.Fatal(err)
	}
	if d.Type != "qemu" || d.Name != "web" || d.UUID != pl.UUID || d.VCPU.Value != 2 || d.Memory.Value != 256*1024 || d.Memory.Unit != "KiB" {
		t.Errorf("domain %s %s %s, %d vCPUs, %d %s", d.Type, d.Name, d.UUID, d.VCPU.Value, d.Memory.Value, d.Memory.Unit)
	}
	if d.OS.Kernel != files.Kernel || d.OS.Initrd != files.Initrd || d.OS.Cmdline != vm.Cmdline || d.OS.Type.Type != "hvm" {
		t.Errorf("os %+v", d.OS)
	}
	if d.Features == nil || d.Features.ACPI == nil {
		t.Errorf("no ACPI: libvirt 9.0 with QEMU 10 cannot start the domain, and paddock stop has no button")
	}
	if d.OnReboot != "restart" || d.OnPoweroff != "destroy" || d.CPU != nil {
		t.Errorf("on_reboot %s, on_poweroff %s, cpu %+v", d.OnReboot, d.OnPoweroff, d.CPU)
	}
	if len(d.Devices.Disks) != 3 {
		t.Fatalf("%d disks", len(d.Devices.Disks))
	}
	if seed := d.Devices.Disks[2]; seed.Source.Volume.Volume != "vm-x.seed.iso" || seed.Driver.Type != "raw" || seed.ReadOnly == nil || seed.Target.Dev != "vdc" {
		t.Errorf("seed disk: %+v %+v", seed.Source.Volume, seed)
	}
	d0, d1 := d.Devices.Disks[0], d.Devices.Disks[1]
	if d0.Source.Volume == nil || d0.Source.Volume.Pool != "paddock" || d0.Source.Volume.Volume != "vm-x.disk0" ||
		d0.Driver.Type != "qcow2" || d0.Driver.Cache != "writeback" || d0.Target.Dev != "vda" || d0.Target.Bus != "virtio" ||
		d0.Serial != "root" || d0.ReadOnly != nil {
		t.Errorf("disk 0: %+v %+v %+v %+v", d0.Source.Volume, d0.Driver, d0.Target, d0)
	}
	if d1.Source.Volume.Volume != "sha256-b" || d1.Driver.Type != "raw" || d1.Driver.Cache != "unsafe" || d1.Target.Dev != "vdb" || d1.ReadOnly == nil {
		t.Errorf("disk 1: %+v %+v", d1.Driver, d1)
	}
	if len(d.Devices.Interfaces) != 3 {
		t.Fatalf("%d NICs", len(d.Devices.Interfaces))
	}
	n0, n1, n2 := d.Devices.Interfaces[0], d.Devices.Interfaces[1], d.Devices.Interfaces[2]
	if n2.Source.Network == nil || n2.Source.Network.Network != "default" || n2.MAC.Address != files.MACs[2].String() {
		t.Errorf("NIC 2: %+v", n2.Source)
	}
	if n0.Source.Bridge == nil || n0.Source.Bridge.Bridge != "br0" || n0.Model.Type != "virtio" || n0.MAC.Address != files.MACs[0].String() {
		t.Errorf("NIC 0: %+v", n0)
	}
	if n1.Source.Ethernet == nil || n1.Target.Dev != "tap7" || n1.Target.Managed != "no" || n1.MAC.Address != "52:54:00:12:34:56" {
		t.Errorf("NIC 1: %+v %+v", n1.Source, n1.Target)
	}
	if len(d.Devices.RNGs) != 1 || d.Devices.RNGs[0].Model != "virtio" || d.Devices.RNGs[0].Backend.Random.Device != "/dev/urandom" {
		t.Errorf("rng %+v", d.Devices.RNGs)
	}
	if len(d.Devices.Serials) != 1 || d.Devices.Serials[0].Source.Pty == nil || d.Devices.Serials[0].Log.File != pl.ConsoleLog {
		t.Errorf("serial %+v", d.Devices.Serials)
	}
	if !strings.Contains(d.Metadata.XML, `<vm xmlns="`+MetadataNS+`" name="web"><home>/var/lib/paddock</home><machine>box</machine><labels><label key="app" value="shop"></label><label key="tier" value="web"></label></labels></vm>`) {
		t.Errorf("metadata %s", d.Metadata.XML)
	}

	pl.DomainType = TypeKVM
	s, _ = DomainXML(vm, pl, "paddock", files, Metadata{})
	d = libvirtxml.Domain{}
	d.Unmarshal(s)
	if d.Type != "kvm" || d.CPU == nil || d.CPU.Mode != "host-passthrough" {
		t.Errorf("a kvm domain: %s, cpu %+v", d.Type, d.CPU)
	}
	if _, err := DomainXML(vm, pl, "paddock", Files{MACs: files.MACs}, Metadata{}); err == nil {
		t.Error("a domain without its disks' volumes was made")
	}
	if _, err := DomainXML(vm, pl, "paddock", Files{Disks: files.Disks, Formats: files.Formats}, Metadata{}); err == nil {
		t.Error("a domain without its NICs' MACs was made")
	}
}

// TestKVMUsable reads capabilities: KVM is usable only with a kvm domain
// for x86_64 and hardware virtualization in the host's CPU.
func TestKVMUsable(t *testing.T) {
	caps := func(features, domains string) string {
		return `<capabilities><host><cpu><arch>x86_64</arch>` + features + `</cpu></host>
<guest><os_type>hvm</os_type><arch name='x86_64'><emulator>/usr/bin/qemu-system-x86_64</emulator>` + domains + `</arch></guest></capabilities>`
	}
	for _, tt := range []struct {
		name, caps string
		ok         bool
		why        string
	}{
		{"kvm and vmx", caps(`<feature name='vmx'/>`, `<domain type='qemu'/><domain type='kvm'/>`), true, ""},
		{"kvm and svm", caps(`<feature name='svm'/>`, `<domain type='qemu'/><domain type='kvm'/>`), true, ""},
		{"kvm without hardware virtualization", caps(`<feature name='avx'/>`, `<domain type='qemu'/><domain type='kvm'/>`), false, "its KVM has no hardware virtualization (the CPU shows no vmx or svm)"},
		{"no kvm", caps(`<feature name='vmx'/>`, `<domain type='qemu'/>`), false, "no KVM (/dev/kvm missing or unusable)"},
	} {
		ok, why, err := kvmUsable(tt.caps)
		if err != nil || ok != tt.ok || why != tt.why {
			t.Errorf("%s: %v, %q, %v", tt.name, ok, why, err)
		}
	}
	if _, _, err := kvmUsable(`<capabilities><host/></capabilities>`); err == nil || !strings.Contains(err.Error(), "qemu-system-x86") {
		t.Errorf("no x86 guests: %v", err)
	}
}

// TestHosts adds, lists and removes hosts: "local" is always there, a
// name is taken once, bad names and URIs are refused, the file survives.
func TestHosts(t *testing.T) {
	home := t.TempDir()
	h := OpenHosts(home)
	list, err := h.List()
	if err != nil || len(list) != 1 || list[0] != (Host{Name: LocalHost, URI: LocalURI}) {
		t.Fatalf("fresh List = %v, %v", list, err)
	}
	if err := h.Add(Host{Name: "lab2", URI: "qemu+tcp://10.0.0.2/system"}); err != nil {
		t.Fatal(err)
	}
	if err := h.Add(Host{Name: "lab1", URI: "qemu+ssh://root@lab1/system", Pool: "fast"}); err != nil {
		t.Fatal(err)
	}
	if err := h.Add(Host{Name: "lab1", URI: "qemu:///system"}); !errors.Is(err, ErrHostExists) {
		t.Errorf("Add of a name taken: %v", err)
	}
	for _, bad := range []Host{
		{Name: "Lab_1", URI: "qemu:///system"},
		{Name: "auto", URI: "qemu:///system"},
		{Name: "x", URI: "qemy:///system"},
		{Name: "x", URI: "qemu:///system", Pool: "../etc"},
	} {
		if err := h.Add(bad); err == nil {
			t.Errorf("Add(%+v) passed", bad)
		}
	}
	list, _ = h.List()
	var names []string
	for _, x := range list {
		names = append(names, x.Name)
	}
	if strings.Join(names, " ") != "local lab1 lab2" {
		t.Errorf("List = %v", list)
	}
	if x, err := OpenHosts(home).Get("lab1"); err != nil || x.PoolName() != "fast" {
		t.Errorf("Get(lab1) = %+v, %v", x, err)
	}
	if _, err := h.Get("lab9"); !errors.Is(err, ErrNoHost) || !strings.Contains(err.Error(), "local, lab1, lab2") {
		t.Errorf("Get(lab9) = %v", err)
	}
	if err := h.Add(Host{Name: LocalHost, URI: "qemu+tcp://127.0.0.1/system"}); err != nil {
		t.Fatal(err)
	}
	if x, _ := h.Get(LocalHost); x.URI != "qemu+tcp://127.0.0.1/system" || x.PoolName() != DefaultPool {
		t.Errorf("local after Add: %+v", x)
	}
	if err := h.Remove("lab2"); err != nil {
		t.Fatal(err)
	}
	if err := h.Remove("lab2"); !errors.Is(err, ErrNoHost) {
		t.Errorf("second Remove: %v", err)
	}
	if err := h.Remove(LocalHost); err != nil {
		t.Fatal(err)
	}
	if err := h.Remove(LocalHost); err == nil || !strings.Contains(err.Error(), "cannot be removed") {
		t.Errorf("Remove of the default local: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(home, HostsFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("hosts file: %v, %v", fi, err)
	}
	os.WriteFile(filepath.Join(home, HostsFile), []byte(`{"version": 9, "hosts": []}`), 0o600)
	if _, err := h.List(); err == nil || !strings.Contains(err.Error(), "newer paddock") {
		t.Errorf("a newer hosts file: %v", err)
	}
}

func TestLogAge(t *testing.T) {
	pl := &Placement{UUID: "u"}
	for name, want := range map[string]int{
		"vm-u.console.log": 0, "vm-u.console.log.1": 1, "vm-u.console.log.12": 12,
		"vm-u.console.log.x": -1, "vm-u.console.logx": -1, "vm-u.disk0": -1, "vm-u.console.log.0": -1,
	} {
		if got := logAge(name, pl); got != want {
			t.Errorf("logAge(%s) = %d, want %d", name, got, want)
		}
	}
}

// TestDataExtents finds the data of a sparse file, and only that.
func TestDataExtents(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteAt([]byte("a"), 0)
	f.WriteAt([]byte("b"), 8<<20)
	f.Truncate(16 << 20)
	ext, err := dataExtents(f)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, e := range ext {
		total += e.len
		if e.off > 0 && e.off < 8<<20-64<<10 && e.off+e.len > 64<<10 {
			t.Errorf("extent %+v covers the hole", e)
		}
	}
	if len(ext) == 0 || ext[0].off != 0 || total >= 16<<20 {
		t.Errorf("extents %+v", ext)
	}
}

// TestOutputQueue: console output waits in the queue (up to its bound)
// while the reader is away, Write never blocks, and what was kept comes
// out in order before the end.
func TestOutputQueue(t *testing.T) {
	r, w := io.Pipe()
	q := newOutputQueue(w, 10)
	for _, s := range []string{"abc", "defg", "hijkl", "mno"} {
		if n, err := q.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	q.Close()
	got, err := io.ReadAll(r)
	// The first Write may be taken at once, before the bound fills.
	if err != nil || !strings.HasPrefix(string(got), "abcdefg") || len(got) > 10+3 || !strings.HasPrefix("abcdefghijklmno", string(got)) {
		t.Errorf("read %q, %v", got, err)
	}
	r2, w2 := io.Pipe()
	r2.Close()
	q = newOutputQueue(w2, 10)
	q.Write([]byte("nobody reads this"))
	q.Write([]byte("nor this"))
	q.Close()
}

// TestOverlayVolumeXML: a VM's disk on a template's base disk is a qcow2
// volume of the size asked, whose backing store is the base volume in
// its format.
func TestOverlayVolumeXML(t *testing.T) {
	var x libvirtxml.StorageVolume
	if err := x.Unmarshal(overlayVolumeXML("vm-u.disk0", "/pool/sha256-ab", "qcow2", 6<<30)); err != nil {
		t.Fatal(err)
	}
	if x.Name != "vm-u.disk0" || x.Capacity == nil || x.Capacity.Value != 6<<30 || x.Capacity.Unit != "bytes" {
		t.Errorf("name, capacity: %+v %+v", x.Name, x.Capacity)
	}
	if x.Target == nil || x.Target.Format == nil || x.Target.Format.Type != "qcow2" || x.Target.Permissions == nil || x.Target.Permissions.Mode != "0600" {
		t.Errorf("target %+v", x.Target)
	}
	if b := x.BackingStore; b == nil || b.Path != "/pool/sha256-ab" || b.Format == nil || b.Format.Type != "qcow2" {
		t.Errorf("backing store %+v", x.BackingStore)
	}
}
