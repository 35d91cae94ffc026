package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/test/lab"
)

// identityInitrd is the hello guest with the seed's drivers and the
// identity script.
const identityInitrd = "/guest/identity.img"

// identityModules are what the guest needs to read its seed (virtio-blk
// and the ISO 9660 file system: the hello guest's /init takes its host
// name from the seed) and to show its NIC's MAC address (virtio-net).
var identityModules = []string{"virtio_pci", "virtio_blk", "isofs", "virtio_net"}

// identityScript runs in the guest: what the kernel read from the SMBIOS
// tables, and the seed volume as its own iso9660 driver mounts it.
const identityScript = `
mark() { echo "@@LAB $*"; }
mark "id.uuid $(cat /sys/class/dmi/id/product_uuid)"
mark "id.vendor $(cat /sys/class/dmi/id/sys_vendor)"
mark "id.product $(cat /sys/class/dmi/id/product_name)"
mark "id.entry $(head -c 5 /sys/firmware/dmi/tables/smbios_entry_point)"
mark "id.hostname $(hostname)"
# The primary volume descriptor (sector 16): "CD001", and the volume
# identifier at byte 40 of it, the label blkid and cloud-init read.
mark "id.label $(dd if=/dev/vda bs=1 skip=32769 count=5 2>/dev/null) $(dd if=/dev/vda bs=1 skip=32808 count=32 2>/dev/null | tr -d ' ')"
mkdir -p /seed
mount -t iso9660 -o ro /dev/vda /seed
mark "id.mount $?"
mark "id.files $(ls /seed | tr '\n' ' ')"
mark "id.meta $(tr '\n' ' ' < /seed/meta-data)"
mark "id.mac $(grep -c 'macaddress: "*52:54:00:12:34:56' /seed/network-config)"
mark "id.user $(grep -c 'name: alice' /seed/user-data) $(grep -c 'Merge-Type: list(append)' /seed/user-data)"
touch /seed/x 2>/dev/null
mark "id.readonly $?"
umount /seed
`

// identityVM is the managed VM of the scenario: cloud_init with a user
// and user data, one NIC with a fixed MAC on L1's bridge.
const identityVM = `name: ident
memory: 256MiB
kernel: ` + lab.GuestVmlinux + `
initrd: ` + identityInitrd + `
cmdline: console=ttyS0 quiet paddock.script=identity
console: log
nics: [{bridge: br0, mac: '52:54:00:12:34:56'}]
user: alice
user_data: |
  #cloud-config
  packages: [nginx]
`

// identityStep creates and starts the VM in L1, follows its console to
// its power-off (the guest's markers come through), then prints the UUID
// paddock recorded.
const identityStep = `
ip link add br0 type bridge && ip link set br0 up
paddock create -f /guest/ident.yaml > /dev/null
echo "@@LAB host.create-rc $?"
paddock start ident
echo "@@LAB host.start-rc $?"
paddock logs -f ident
echo "@@LAB host.uuid $(paddock inspect ident | sed -n 's/^ *"uuid": "\([^"]*\)".*/\1/p')"
`

// TestIdentityLab boots the stock Debian kernel as a managed VM with
// cloud_init in the nested lab, one L1 boot: the kernel's own SMBIOS
// parser finds paddock's tables by scanning for the entry point and shows
// the VM's UUID as product_uuid; its iso9660 driver mounts the seed
// volume (label cidata, read-only) with the meta-data, user-data and
// network-config paddock wrote for the VM, and the guest's /init takes
// its host name from there. In the same L1 boot, eight cold clones of a
// busybox template (paddock template create --from a VM, then paddock
// clone -n 8 --start) boot at once, each with its own identity
// (checkCloneLab).
func TestIdentityLab(t *testing.T) {
	l := lab.New(t)
	ctx := context.Background()
	im, err := l.Image(ctx)
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := helloInitrd(ctx, im, "identity-guest", identityModules, map[string]string{"identity": identityScript, "clone": cloneLabScript})
	if err != nil {
		t.Fatal(err)
	}
	sc := lab.Scenario{
		WithPaddock: true,
		WithVmlinux: true,
		Files: map[string]lab.File{
			identityInitrd:      {Source: initrd},
			"/guest/ident.yaml": {Data: []byte(identityVM)},
		},
		Steps: []lab.Step{
			{Name: "identity", Script: identityStep, Timeout: 5 * time.Minute},
			{Name: "clones", Script: cloneLabStep, Timeout: cloneLabTimeout},
		},
	}
	cloneLabFiles(t, sc.Files)
	res, err := l.Run(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	st := managedStep(t, res, "identity")
	expectMarker(t, st, "host.create-rc", "0")
	expectMarker(t, st, "host.start-rc", "0")
	uuid := strings.TrimSpace(value(t, st, "host.uuid"))
	if len(uuid) != 36 {
		t.Fatalf("paddock inspect shows UUID %q", uuid)
	}
	expectMarker(t, st, "id.uuid", uuid)
	expectMarker(t, st, "id.vendor", "paddock")
	expectMarker(t, st, "id.product", "paddock VM")
	expectMarker(t, st, "id.entry", "_SM3_")
	expectMarker(t, st, "id.hostname", "ident")
	expectMarker(t, st, "id.label", "CD001 cidata")
	expectMarker(t, st, "id.mount", "0")
	expectMarker(t, st, "id.files", "meta-data network-config user-data")
	expectMarker(t, st, "id.meta", "instance-id: "+uuid+" local-hostname: ident")
	expectMarker(t, st, "id.mac", "1")
	expectMarker(t, st, "id.user", "1 1")
	expectMarker(t, st, "id.readonly", "1")
	if d := st.End - st.Begin; d > 0 {
		t.Logf("the identity step (create, start, the guest's checks, power-off) took %.1fs of L1 wall time", d.Seconds())
	}
	checkCloneLab(t, managedStep(t, res, "clones"))
}
