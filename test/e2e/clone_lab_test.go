package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/test/lab"
)

// cloneLabCount is how many cold clones of the busybox template the
// identity scenario boots at once.
const cloneLabCount = 8

// cloneLabScript runs in each clone (the hello guest's script "clone"):
// the identity the guest sees (SMBIOS UUID, the host name its /init took
// from the seed, its NIC's MAC address) and the seed's own (instance-id,
// the MAC network-config names; /init found the seed: PADDOCK_SEED);
// then it writes its host name at 1 MiB
// of its disk (the clone's overlay on the template's base) and syncs.
const cloneLabScript = `
mark() { echo "@@LAB $*"; }
mark "id.uuid $(cat /sys/class/dmi/id/product_uuid)"
mark "id.hostname $(hostname)"
mark "id.mac $(cat /sys/class/net/eth0/address)"
mkdir -p /seed
mount -t iso9660 -o ro "$PADDOCK_SEED" /seed
mark "id.seed-mount $?"
mark "id.seed-id $(sed -n 's/^instance-id: *//p' /seed/meta-data)"
mark "id.seed-mac $(sed -n 's/.*macaddress: *"*\([0-9a-f:]*\).*/\1/p' /seed/network-config)"
umount /seed
printf 'clone %s' "$(hostname)" | dd of=/dev/vda bs=1M seek=1 conv=notrunc,fsync 2> /dev/null
mark "id.write $?"
`

// cloneLabSourceVM is the VM the busybox template is made of: the stock
// Debian kernel and the identity guest, a writable qcow2 disk, a NIC on
// L1's bridge and cloud_init (so its clones get seeds).
const cloneLabSourceVM = `name: bb
memory: 160MiB
kernel: ` + lab.GuestVmlinux + `
initrd: ` + identityInitrd + `
cmdline: console=ttyS0 quiet panic=-1 paddock.script=clone
console: log
disks: [{path: /tmp/bb.qcow2}]
nics: [{bridge: br0}]
cloud_init: true
`

// cloneLabStep makes the cold template bb-tpl of the VM bb (never
// booted), then cloneLabCount clones of it with paddock clone -n
// --start, follows each clone's console until its guest powers off, and
// prints, per clone c-N, the guest's markers renamed c-N.*, the UUID
// paddock recorded, qemu-img check of its overlay and what its guest
// wrote there; then the base's SHA-256 before and after and its own
// qemu-img check. The step runs after the identity step (br0 exists).
var cloneLabStep = `
export PADDOCK_HOME=` + store.RootHome + `
mark() { echo "@@LAB $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
n=` + fmt.Sprint(cloneLabCount) + `
paddock image create -q /tmp/bb.qcow2 64M; mark "clone.image $?"
paddock create -f /guest/bb.yaml > /dev/null; mark "clone.create $?"
paddock template create bb-tpl --from bb > /dev/null; mark "clone.template $?"
base=$PADDOCK_HOME/templates/bb-tpl/disks/root.qcow2
mark "clone.base-before $(sha256sum $base | cut -d' ' -f1)"
mark "clone.start-at $(up)"
paddock clone bb-tpl c -n $n --start > /tmp/clone.out; mark "clone.rc $?"
mark "clone.running-at $(up)"
cat /tmp/clone.out
` + stallDumpScript + `
# follow VM: the VM's console until it ends, in /tmp/VM.log. A clone
# boots, checks and powers off in seconds (two minutes on a loaded
# host); one still running after 300 s has stalled inside L1's KVM
# (the emulated AMD-V, docs/lab.md): its machine state is dumped to its
# VMM log and it is killed, and /tmp/VM.stalled says so.
follow() {
	timeout 300 sh -c "paddock logs -f $1 | tr -d '\r' > /tmp/$1.log"
	w=$?
	# 124: coreutils' timeout; 143 (SIGTERM): busybox's.
	if { [ $w = 124 ] || [ $w = 143 ]; } && paddock ls | grep -q "^$1 *running"; then
		echo "$1: still running after 300 s: stalled"
		stalldump $1
		paddock kill $1 > /dev/null
		touch /tmp/$1.stalled
	fi
}
i=1
while [ $i -le $n ]; do
	follow c-$i
	i=$((i + 1))
done
mark "clone.stopped-at $(up)"
# Why a clone's console ended early, if one did: its exit and VMM's log.
# Guests booting at once in L1 triple-fault now and then, their kernel
# takes a double fault and panics, or their vCPU stalls (the emulated
# AMD-V, docs/lab.md; the guest's panic=-1 makes a panic a reboot,
# which ends the VM): a clone whose boot ended so boots again, twice at
# most, and the test says so (c-N.emulator-faults, the last count).
emulator_fault() {
	rm /tmp/$1.stalled 2> /dev/null ||
		paddock inspect $1 | grep -q 'triple-faulted' ||
		grep -q 'Kernel panic - not syncing: Fatal exception' /tmp/$1.log
}
i=1
while [ $i -le $n ]; do
	if ! grep -q 'reboot: Power down' /tmp/c-$i.log; then
		echo "c-$i: its console ended before the guest powered off"
		paddock inspect c-$i | grep -A6 '"last_exit"'
		tail -n 20 $PADDOCK_HOME/vms/c-$i/vmm.log
		k=0
		while [ $k -lt 2 ] && ! grep -q 'reboot: Power down' /tmp/c-$i.log && emulator_fault c-$i; do
			k=$((k + 1))
			mark "c-$i.emulator-faults $k"
			grep -m1 -B2 -A8 'Kernel panic - not syncing: Fatal exception' /tmp/c-$i.log | sed "s/^/c-$i| /"
			paddock start c-$i > /dev/null
			follow c-$i
		done
	fi
	i=$((i + 1))
done
i=1
while [ $i -le $n ]; do
	sed -n "s/^.*@@LAB id\./@@LAB c-$i./p; s/^.*@@LAB l2\.init /@@LAB c-$i.init /p" /tmp/c-$i.log
	grep -v '@@LAB' /tmp/c-$i.log | tail -n 5 | sed "s/^/c-$i| /"
	mark "c-$i.paddock-uuid $(paddock inspect c-$i | sed -n 's/^  "uuid": "\([^"]*\)".*/\1/p')"
	ov=$PADDOCK_HOME/vms/c-$i/disks/root.qcow2
	qemu-img check -q $ov; mark "c-$i.check $?"
	# qemu-img dd's count includes the blocks it skips.
	qemu-img dd -f qcow2 -O raw bs=1M skip=1 count=2 if=$ov of=/tmp/c-$i.raw
	mark "c-$i.data $(head -c 64 /tmp/c-$i.raw | tr -d '\0')"
	i=$((i + 1))
done
mark "clone.base-after $(sha256sum $base | cut -d' ' -f1)"
qemu-img check -q $base; mark "clone.base-check $?"
paddock rm $(i=1; while [ $i -le $n ]; do echo c-$i; i=$((i + 1)); done) > /dev/null; mark "clone.rm $?"
paddock template rm bb-tpl; mark "clone.template-rm $?"
`

// cloneLabFiles adds what cloneLabStep needs to L1's files: the source
// VM's YAML and qemu-img.
func cloneLabFiles(t *testing.T, files map[string]lab.File) {
	t.Helper()
	files["/guest/bb.yaml"] = lab.File{Data: []byte(cloneLabSourceVM)}
	labHostTools(t, files, [2]string{"qemu-img", "qemu-utils"})
}

// checkCloneLab checks cloneLabStep's markers: the template and its
// clones were made and started; each clone's guest saw the UUID paddock
// recorded for it (SMBIOS, and the seed's instance-id), its own name as
// host name, and a MAC address of its own that is the one its seed
// names; no two clones share a UUID or MAC; each overlay passes
// qemu-img check and holds what its guest wrote; the base is the same,
// byte for byte, and passes qemu-img check too.
func checkCloneLab(t *testing.T, st *lab.StepResult) {
	t.Helper()
	for _, k := range []string{"clone.image", "clone.create", "clone.template", "clone.rc", "clone.base-check", "clone.rm", "clone.template-rm"} {
		expectMarker(t, st, k, "0")
	}
	base := markerValue(st, "clone.base-before")
	if len(base) != 64 {
		t.Errorf("the base's SHA-256 before the clones: %q", base)
	}
	expectMarker(t, st, "clone.base-after", base)
	uuids, macs := map[string]string{}, map[string]string{}
	for i := 1; i <= cloneLabCount; i++ {
		c := fmt.Sprintf("c-%d", i)
		if n := lastMarker(st, c+".emulator-faults"); n != "" {
			t.Logf("%s triple-faulted, its kernel panicked or its vCPU stalled in its boot %s time(s), and it was started again (the emulated AMD-V: docs/lab.md)", c, n)
		}
		uuid := markerValue(st, c+".paddock-uuid")
		if len(uuid) != 36 {
			t.Errorf("%s: paddock inspect shows UUID %q", c, uuid)
			continue
		}
		expectMarker(t, st, c+".uuid", uuid)
		expectMarker(t, st, c+".seed-id", uuid)
		expectMarker(t, st, c+".hostname", c)
		expectMarker(t, st, c+".seed-mount", "0")
		mac := markerValue(st, c+".mac")
		if len(mac) != 17 {
			t.Errorf("%s: its guest's eth0 has MAC %q", c, mac)
		}
		expectMarker(t, st, c+".seed-mac", mac)
		expectMarker(t, st, c+".write", "0")
		expectMarker(t, st, c+".check", "0")
		expectMarker(t, st, c+".data", "clone "+c)
		if other, ok := uuids[uuid]; ok {
			t.Errorf("%s and %s share the UUID %s", other, c, uuid)
		}
		if other, ok := macs[mac]; ok {
			t.Errorf("%s and %s share the MAC %s", other, c, mac)
		}
		uuids[uuid], macs[mac] = c, c
	}
	if d, err := l1Seconds(st, "clone.start-at", "clone.running-at"); err == nil {
		t.Logf("paddock clone -n %d --start: %.1f s of L1 time", cloneLabCount, d)
	}
	if d, err := l1Seconds(st, "clone.start-at", "clone.stopped-at"); err == nil {
		t.Logf("%d clones made, booted, checked and powered off: %.1f s of L1 time", cloneLabCount, d)
	}
}

// cloneLabTimeout bounds cloneLabStep: eight stock kernels booting at
// once on L1's two CPUs, on a loaded host.
const cloneLabTimeout = 12 * time.Minute
