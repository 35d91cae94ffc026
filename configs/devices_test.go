package configs

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/netdev/netnstest"
	"go.yaml.in/yaml/v3"

	"github.com/paddock-vm/paddock/disk/imagefile"
	"github.com/paddock-vm/paddock/disk/qcow2"
)

// deviceTree adds disk images to a test tree: root.qcow2 (a qcow2
// header), data.raw (raw) and zero.raw (empty).
func deviceTree(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"root.qcow2": "QFI\xfb\x00\x00\x00\x03" + strings.Repeat("\x00", 504),
		"data.raw":   strings.Repeat("\x00", 4096),
		"zero.raw":   "",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// netTree makes a network namespace with br0 (a bridge), tap0 (a tap),
// tun0 (a tun) and eth0 (one end of a veth pair: neither), the interfaces the
// tests' NICs name. Validate looks them up from a thread inside it.
func netTree(t *testing.T) *netnstest.NS {
	t.Helper()
	ns := netnstest.New(t)
	ns.Bridge(t, "br0")
	ns.IP(t, "tuntap", "add", "tap0", "mode", "tap")
	ns.IP(t, "tuntap", "add", "tun0", "mode", "tun")
	ns.Veth(t, "eth0", "eth1", "")
	return ns
}

func TestDeviceErrors(t *testing.T) {
	dir := testTree(t)
	deviceTree(t, dir)
	const ok = "name: hello\nkernel: vmlinuz\n"
	const f = "$DIR/hello.yaml"
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"valid", ok + "disks: [root.qcow2, {path: data.raw, format: raw, readonly: true, serial: d1, cache: unsafe}]\nrng: true\n", ""},
		{"disks not a list", ok + "disks: root.qcow2\n",
			f + ":3:8: disks: must be a list of disks such as [root.qcow2] or [{path: data.qcow2, readonly: true}], got \"root.qcow2\""},
		{"disk item a list", ok + "disks: [[a]]\n",
			f + ":3:9: disks[0]: must be an image path or a mapping with path, format, readonly, serial, cache, untrusted and limits, got a list"},
		{"disk item null", ok + "disks:\n  -\n",
			f + ":4:4: disks[0]: is empty: write the image's path or a mapping with path"},
		{"disk unknown field", ok + "disks: [{path: data.raw, ro: true}]\n",
			f + ":3:26: disks[0].ro: unknown field; known fields: path, format, readonly, serial, cache, untrusted, limits"},
		{"disk path missing", ok + "disks: [{readonly: true}]\n",
			f + ":3:9: disks[0].path: must be set: the path of a qcow2 or raw disk image"},
		{"disk file missing", ok + "disks: [nope.qcow2]\n",
			f + ":3:9: disks[0].path: $DIR/nope.qcow2: no such file or directory"},
		{"disk a directory", ok + "disks: [dir]\n",
			f + ":3:9: disks[0].path: $DIR/dir is a directory, not a disk image"},
		{"disk empty", ok + "disks: [zero.raw]\n",
			f + ":3:9: disks[0].path: $DIR/zero.raw is empty (0 bytes)"},
		{"disk a FIFO, refused without waiting for a writer", ok + "disks: [fifo]\n",
			f + ":3:9: disks[0].path: $DIR/fifo is not a regular file or a block device"},
		{"disk a character device", ok + "disks: [/dev/zero]\n",
			f + ":3:9: disks[0].path: /dev/zero is not a regular file or a block device"},
		{"same image twice", ok + "disks: [data.raw, {path: ./data.raw}]\n",
			f + ":3:26: disks[1].path: is the same image as disks[0]"},
		{"bad format", ok + "disks: [{path: data.raw, format: vmdk}]\n",
			f + `:3:34: disks[0].format: must be raw or qcow2 (or left out to detect it), got "vmdk"`},
		{"format qcow2 on raw", ok + "disks: [{path: data.raw, format: qcow2}]\n",
			f + ":3:34: disks[0].format: is qcow2, but $DIR/data.raw is not a qcow2 image"},
		{"readonly not a bool", ok + "disks: [{path: data.raw, readonly: yes}]\n",
			f + `:3:36: disks[0].readonly: must be true or false, got "yes"`},
		{"bad cache", ok + "disks: [{path: data.raw, cache: none}]\n",
			f + `:3:33: disks[0].cache: must be one of writeback, writethrough, unsafe; got "none"`},
		{"serial too long", ok + "disks: [{path: data.raw, serial: " + strings.Repeat("s", 21) + "}]\n",
			f + ":3:34: disks[0].serial: is 21 bytes long; at most 20"},
		{"serial not ASCII", ok + "disks: [{path: data.raw, serial: \"dísk\"}]\n",
			f + ":3:34: disks[0].serial: must be printable ASCII, got byte 0xc3 at 1"},
		{"rng not a bool", ok + "rng: 1\n",
			f + ":3:6: rng: must be true or false, got the number 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := check(t, dir, tc.yaml, Host{}); got != tc.want {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestNICErrors checks NICs against real interfaces: netdev's view of
// them (ethtool driver information) is the one the VM gets when it starts.
func TestNICErrors(t *testing.T) {
	dir := testTree(t)
	ns := netTree(t)
	const ok = "name: hello\nkernel: vmlinuz\n"
	const f = "$DIR/hello.yaml"
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"valid", ok + "nics: [{tap: tap0}, {bridge: br0, mac: '02:00:00:00:00:01'}]\n", ""},
		{"nics not a list", ok + "nics: {bridge: br0}\n",
			f + ":3:7: nics: must be a list of NICs such as [{network: default}], got a mapping"},
		{"nic a scalar", ok + "nics: [br0]\n",
			f + `:3:8: nics[0]: must be a mapping with tap, bridge or network (and mac), such as {network: default}, got "br0"`},
		{"nic empty", ok + "nics: [{mac: '02:00:00:00:00:01'}]\n",
			f + ":3:8: nics[0]: must set network (a paddock managed network, such as default), tap (an existing tap device) or bridge (a bridge paddock puts a new tap on)"},
		{"nic both", ok + "nics: [{tap: tap0, bridge: br0}]\n",
			f + ":3:28: nics[0].bridge: set one of tap, bridge and network, not several"},
		{"network and tap", ok + "nics: [{tap: tap0, network: default}]\n",
			f + ":3:29: nics[0].network: set one of tap, bridge and network, not several"},
		{"network name", ok + "nics: [{network: Default}]\n",
			f + `:3:18: nics[0].network: "Default" is not a network name: use 1 to 32 lowercase letters, digits and dashes (not first or last)`},
		{"tap name too long", ok + "nics: [{tap: abcdefghijklmnop}]\n",
			f + `:3:14: nics[0].tap: interface name "abcdefghijklmnop" is longer than 15 bytes`},
		{"bridge name with a slash", ok + "nics: [{bridge: a/b}]\n",
			f + `:3:17: nics[0].bridge: interface name "a/b" contains '/', ':' or white space`},
		{"tap missing", ok + "nics: [{tap: tap9}]\n",
			f + ":3:14: nics[0].tap: no network interface tap9: create the tap first (ip tuntap add tap9 mode tap), or use bridge"},
		{"tap is a tun", ok + "nics: [{tap: tun0}]\n",
			f + ":3:14: nics[0].tap: tun0 is a tun (layer 3) device: not a tap device"},
		{"tap is not tun", ok + "nics: [{tap: eth0}]\n",
			f + ":3:14: nics[0].tap: eth0 (driver veth): not a tap device"},
		{"tap twice", ok + "nics: [{tap: tap0}, {tap: tap0}]\n",
			f + ":3:27: nics[1].tap: is already used by nics[0]"},
		{"bridge missing", ok + "nics: [{bridge: br9}]\n",
			f + ":3:17: nics[0].bridge: no bridge br9: create it first (ip link add br9 type bridge)"},
		{"bridge of a managed network", ok + "nics: [{bridge: pd-default}]\n",
			f + ":3:17: nics[0].bridge: pd-default is the bridge of a managed network (a VM on it would have no anti-spoofing rules): use network: NAME"},
		{"bridge a tenant's uplink", ok + "nics: [{bridge: pt-0a1b2c3d}]\n",
			f + ":3:17: nics[0].bridge: pt-0a1b2c3d is a tenant's uplink (a VM on it would have no anti-spoofing rules): use network: NAME"},
		{"bridge in a tenant", ok + "tenant: acme\nnics: [{bridge: br0}]\n",
			f + ":4:17: nics[0].bridge: a VM of tenant acme may not use a tap or bridge of the host (it would be outside the tenant's network namespace): use network: NAME, a network of the tenant's"},
		{"tap in a tenant", ok + "tenant: acme\nnics: [{tap: tap0}]\n",
			f + ":4:14: nics[0].tap: a VM of tenant acme may not use a tap or bridge of the host (it would be outside the tenant's network namespace): use network: NAME, a network of the tenant's"},
		{"network in a tenant", ok + "tenant: acme\nnics: [{network: default}]\n", ""},
		{"bridge in a tenant, libvirt", ok + "tenant: acme\nbackend: libvirt\nnics: [{bridge: br0}]\n", ""},
		{"bridge is not one", ok + "nics: [{bridge: eth0}]\n",
			f + ":3:17: nics[0].bridge: eth0 (driver veth): not a bridge"},
		{"bad mac", ok + "nics: [{bridge: br0, mac: 'hello'}]\n",
			f + `:3:27: nics[0].mac: "hello" is not a MAC address such as 52:54:00:12:34:56`},
		{"multicast mac", ok + "nics: [{bridge: br0, mac: '01:00:5e:00:00:01'}]\n",
			f + ":3:27: nics[0].mac: MAC address 01:00:5e:00:00:01 is a multicast address (the first byte is odd)"},
		{"zero mac", ok + "nics: [{bridge: br0, mac: '00:00:00:00:00:00'}]\n",
			f + ":3:27: nics[0].mac: MAC address 00:00:00:00:00:00 is all zeros"},
		{"duplicate mac", ok + "nics: [{bridge: br0, mac: '02:00:00:00:00:01'}, {bridge: br0, mac: 02-00-00-00-00-01}]\n",
			f + ":3:68: nics[1].mac: is the same address as nics[0]"},
		{"limits", ok + "nics: [{tap: tap0, limits: {bandwidth: 100Mbit/s, packets: 10000, burst: 1s}}]\n", ""},
		{"limits zero packets", ok + "nics: [{tap: tap0, limits: {packets: 0}}]\n",
			f + ":3:38: nics[0].limits.packets: is 0: want a positive number of packets a second (leave it out for no limit)"},
		{"limits iops on a NIC", ok + "nics: [{tap: tap0, limits: {iops: 5}}]\n",
			f + ":3:29: nics[0].limits.iops: unknown field; known fields: bandwidth, packets, burst"},
		{"limits nonsense bandwidth", ok + "nics: [{tap: tap0, limits: {bandwidth: lots}}]\n",
			f + `:3:40: nics[0].limits.bandwidth: "lots" is not a rate such as 50MiB/s or 100Mbit/s (a unit and /s are required)`},
		{"too many devices", ok + "rng: true\nnics:\n" + strings.Repeat("  - {bridge: br0}\n", 31),
			f + ":5:3: nics: 0 disks, 31 NICs and 1 rng device: at most 31 devices fit on the PCI bus"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, dir, tc.yaml)
			var got string
			if err := ns.Do(func() error { got = problems(dir, path, Host{}); return nil }); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestDiskInUse holds the locks a running VM holds on its image (disk
// /imagefile's, QEMU's): a VM wanting it writable is refused; read-only
// users share it. The holder is named: here, this test process.
func TestDiskInUse(t *testing.T) {
	dir := testTree(t)
	deviceTree(t, dir)
	img := filepath.Join(dir, "data.raw")
	hold := func(a imagefile.Access) func() {
		f, err := imagefile.Open(img, a)
		if err != nil {
			t.Fatal(err)
		}
		return func() { f.Close() }
	}
	const rw = "name: hello\nkernel: vmlinuz\ndisks: [data.raw]\n"
	const ro = "name: hello\nkernel: vmlinuz\ndisks: [{path: data.raw, readonly: true}]\n"
	self := fmt.Sprintf("%s (pid %d)", filepath.Base(os.Args[0]), os.Getpid())
	inUse := "$DIR/hello.yaml:3:9: disks[0].path: $DIR/data.raw is in use: " + self + " writes it"
	release := hold(imagefile.Write)
	if got := check(t, dir, rw, Host{}); got != inUse {
		t.Errorf("writable disk locked by another VM: %q", got)
	}
	if got, want := check(t, dir, ro, Host{}), strings.Replace(inUse, ":3:9:", ":3:16:", 1); got != want {
		t.Errorf("read-only disk written by another VM: %q", got)
	}
	release()
	release = hold(imagefile.Read)
	defer release()
	if got := check(t, dir, ro, Host{}); got != "" {
		t.Errorf("read-only disk shared with another read-only user: %q", got)
	}
	if got, want := check(t, dir, rw, Host{}), strings.Replace(inUse, "writes it", "reads it", 1); got != want {
		t.Errorf("writable disk shared read-only by another VM: %q", got)
	}
}

func TestDeviceDecoding(t *testing.T) {
	dir := t.TempDir()
	vm, err := Parse([]byte(`name: d
kernel: /k
disks:
  - a.qcow2
  - {path: /srv/b.raw, format: raw, readonly: true, serial: sb, cache: unsafe}
  - path: c.img
    cache:
nics:
  - {tap: tap0}
  - {bridge: br0, mac: '02:00:00:00:00:02'}
rng: true
`), filepath.Join(dir, "d.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	wantDisks := []Disk{
		{Path: filepath.Join(dir, "a.qcow2"), Cache: CacheWriteback},
		{Path: "/srv/b.raw", Format: FormatRaw, ReadOnly: true, Serial: "sb", Cache: CacheUnsafe},
		{Path: filepath.Join(dir, "c.img"), Cache: CacheWriteback},
	}
	if !reflect.DeepEqual(vm.Disks, wantDisks) {
		t.Errorf("disks %+v\nwant %+v", vm.Disks, wantDisks)
	}
	wantNICs := []NIC{{Tap: "tap0"}, {Bridge: "br0", MAC: "02:00:00:00:00:02"}}
	if !reflect.DeepEqual(vm.NICs, wantNICs) || !vm.RNG {
		t.Errorf("nics %+v rng %v", vm.NICs, vm.RNG)
	}
	if l, c := vm.Position("disks[1].serial"); l != 5 || c != 61 {
		t.Errorf("disks[1].serial at %d:%d", l, c)
	}
	if l, c := vm.Position("disks[0].path"); l != 4 || c != 5 {
		t.Errorf("disks[0].path at %d:%d", l, c)
	}
	// An explicit empty cache stays for Validate to report.
	vm2, err := Parse([]byte("name: d\nkernel: /k\ndisks: [{path: /x, cache: ''}]\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	vm2.FillDefaults()
	if vm2.Disks[0].Cache != "" {
		t.Errorf("explicit empty cache filled with %q", vm2.Disks[0].Cache)
	}
	// The resolved config marshals to YAML that parses back the same.
	out, err := yaml.Marshal(vm)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out, filepath.Join(dir, "d.yaml"))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	back.FillDefaults()
	if !reflect.DeepEqual(back.Disks, vm.Disks) || !reflect.DeepEqual(back.NICs, vm.NICs) || back.RNG != vm.RNG {
		t.Errorf("round trip:\n%s\ngave %+v %+v %v", out, back.Disks, back.NICs, back.RNG)
	}
}

// TestUntrustedDisk: a disk marked untrusted may only have backing files
// in its own directory. validate opens the chain as the VMM will and names
// a backing file elsewhere; the same image without the mark is accepted
// (backing files are followed, as QEMU does), and a backing file beside
// the image is fine either way.
func TestUntrustedDisk(t *testing.T) {
	dir := testTree(t)
	elsewhere := t.TempDir()
	mk := func(path string, o disk.CreateOptions) {
		t.Helper()
		img, err := disk.Create(path, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := img.Close(); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(elsewhere, "secret.raw")
	mk(secret, disk.CreateOptions{Format: disk.FormatRaw, Size: 1 << 20})
	mk(filepath.Join(dir, "base.raw"), disk.CreateOptions{Format: disk.FormatRaw, Size: 1 << 20})
	mk(filepath.Join(dir, "hostile.qcow2"), disk.CreateOptions{Qcow2: qcow2.CreateOptions{BackingFile: secret, BackingFormat: "raw"}})
	mk(filepath.Join(dir, "fine.qcow2"), disk.CreateOptions{Qcow2: qcow2.CreateOptions{BackingFile: "base.raw", BackingFormat: "raw"}})

	got := check(t, dir, "name: hello\nkernel: vmlinuz\ndisks: [{path: hostile.qcow2, untrusted: true}]\n", Host{})
	if !strings.Contains(got, "hello.yaml:3:16: disks[0].path: ") || !strings.Contains(got, secret) ||
		!strings.Contains(got, "outside the allowed directories") || strings.Count(got, "\n") != 0 {
		t.Errorf("untrusted disk with a backing file elsewhere: %q", got)
	}
	if got := check(t, dir, "name: hello\nkernel: vmlinuz\ndisks: [hostile.qcow2]\n", Host{}); got != "" {
		t.Errorf("the same disk, trusted: %q", got)
	}
	if got := check(t, dir, "name: hello\nkernel: vmlinuz\ndisks: [{path: fine.qcow2, untrusted: true}]\n", Host{}); got != "" {
		t.Errorf("untrusted disk with its backing file beside it: %q", got)
	}
}
