package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/images/virtioguest"
	"github.com/paddock-vm/paddock/test/lab"
)

// snapshotRoot is the VM's qcow2 root disk in L1.
const snapshotRoot = "/guest/snap-root.qcow2"

// snapshotYAML is the managed VM of the snapshot scenario: the stock
// kernel, the virtio guest running snapshot-guest (ticks to a TCP
// connection, a file on the qcow2 disk and the console), a NIC on br0.
const snapshotYAML = `name: web
cpus: 1
memory: 256MiB
kernel: ` + lab.GuestVmlinux + `
initrd: ` + virtioInitrd + `
cmdline: console=ttyS0 quiet paddock.script=snapshot-guest
disks:
  - path: ` + snapshotRoot + `
    format: qcow2
nics:
  - bridge: br0
    mac: 52:54:00:12:34:57
console: log
`

// snapshotStep runs the whole scenario in L1. waittick N waits on the
// current VMM's console stream for a tick of at least N and prints it
// (0: the first tick it shows); lasttick prints the last tick in
// console.log. The VMM of the first run is killed with SIGKILL after the
// snapshot, as a crash would kill it.
const snapshotStep = `
mark() { echo "@@LAB $*"; }
# br0 gets an address of its own: a bridge without one takes its ports'
# lowest MAC, and its only port, the VM's tap, is made anew by each VMM,
# so the restored guest's ARP entry for L1 would name a MAC that is gone.
ip link add br0 type bridge && ip link set br0 address 02:00:00:00:00:01
ip addr add 10.0.2.1/24 dev br0 && ip link set br0 up
mkfifo /tmp/ctl
exec 4<>/tmp/ctl
nc -l -p 5010 < /tmp/ctl > /tmp/tcp.log &
srv=$!
waittick() {
	f=$(mktemp -u /tmp/log.XXXXXX)
	mkfifo $f
	paddock logs -f web > $f &
	lp=$!
	awk -v want="$1" '$1 == "@@LAB" && $2 == "snap.tick" && $3 + 0 >= want + 0 { print $3; exit }' < $f
	kill $lp 2>/dev/null
}
lasttick() { paddock logs web | awk '$1 == "@@LAB" && $2 == "snap.tick" { t = $3 } END { print t }'; }
# lastgenid prints the guest's last snap.genid marker: tick, generation
# ID, GED interrupts, reseeds.
lastgenid() { paddock logs web | awk '$1 == "@@LAB" && $2 == "snap.genid" { v = $3 " " $4 " " $5 " " $6 } END { print v }'; }
state() { paddock ls --json | sed -n 's/^ *"state": "\([a-z]*\)".*/\1/p'; }
# complete prints the complete lines of a file that is being written.
complete() { head -n "$(wc -l < "$1")" "$1"; }

paddock up -f /guest/web.yaml
mark "snap.up $?"
mark "snap.before $(waittick 5)"
mark "snap.bound $(paddock logs web | awk '$1 == "@@LAB" && $2 == "snap.bound" { print $3; exit }')"
mark "snap.genid0 $(lastgenid)"
paddock snapshot create web s1
mark "snap.s1 $?"
pid=$(paddock inspect web | sed -n 's/^ *"pid": \([0-9]*\).*/\1/p' | head -1)
kill -9 "$pid"
mark "snap.killed $?"
# The kernel takes a moment to tear a killed VMM down. A VMM killed while
# the guest writes may leak clusters of the image (a crash leaks, it does
# not corrupt): the final check allows what the kill left.
for i in $(seq 1000); do [ -d /proc/$pid ] || break; usleep 10000; done
mark "snap.last-before-kill $(lasttick)"
qemu-img check ` + snapshotRoot + ` > /dev/null 2>&1
mark "snap.check-after-kill $?"
mark "snap.after-kill $(state)"
paddock snapshot ls web
paddock snapshot restore web s1
mark "snap.restore1 $?"
first=$(waittick 0)
mark "snap.restore1-first $first"
mark "snap.run-on $(waittick $((first + 5)))"
mark "snap.genid1 $(lastgenid)"
# The connection carried on: L1's server still has the one connection it
# accepted, and has every tick once, in order, past the restore.
mark "snap.nc-alive $(kill -0 $srv && echo 1)"
mark "snap.tcp $(complete /tmp/tcp.log | awk '$1 != "tick" || $2 != NR { bad++ } END { print NR, bad + 0 }')"
paddock snapshot create web s2
mark "snap.s2 $?"
later=$(waittick $((first + 12)))
mark "snap.later $later"
paddock snapshot restore web s1 2>&1
mark "snap.restore-running $?"
paddock snapshot restore --force web s1
mark "snap.restore2 $?"
first2=$(waittick 0)
mark "snap.restore2-first $first2"
mark "snap.run-on2 $(waittick $((later + 3)))"
mark "snap.genid2 $(lastgenid)"
paddock snapshot ls web
# The stop, on the connection and on a new one: after the rollback the
# old connection is out of step (images/virtioguest's snapshot-guest).
echo stop >&4
echo stop | nc 10.0.2.15 5011 &
paddock logs -f web > /tmp/final.log
for k in snap.stopped snap.umount snap.fsck; do
	mark "$k $(awk -v k=$k '$1 == "@@LAB" && $2 == k { print $3 }' /tmp/final.log | tail -1)"
done
if ! grep -q 'snap.stopped' /tmp/final.log; then
	# How the VM ended without its guest's end: the VMM's account.
	echo "== the guest's end is not in the console stream"
	paddock inspect web | grep -A6 '"last_exit"'
	tail -n 40 /var/lib/paddock/vms/web/vmm.log
	echo "== the console log's last lines"
	tail -n 20 /var/lib/paddock/vms/web/console.log
	echo "== the console stream's last lines"
	tail -n 5 /tmp/final.log
	echo "== the last ticks L1's server has, and L1's TCP sockets"
	tail -n 3 /tmp/tcp.log
	cat /proc/net/tcp
fi
mark "snap.end-state $(state)"
# After the rollback L1 holds ticks of the abandoned run the guest never
# resent, so the connection's end is not awaited.
kill $srv 2>/dev/null
exec 4>&-
qemu-img check ` + snapshotRoot + `
mark "snap.img-check $?"
mark "snap.disk-snaps $(qemu-img snapshot -l ` + snapshotRoot + ` | grep -c ' s[12] ')"
qemu-img convert -O raw ` + snapshotRoot + ` /tmp/root.raw
debugfs -R 'cat /counter.txt' /tmp/root.raw 2>/dev/null > /tmp/counter.txt
mark "snap.file $(awk '$1 != NR { bad++ } END { print NR, bad + 0 }' /tmp/counter.txt)"
paddock snapshot rm web s1 s2
mark "snap.rm $?"
mark "snap.disk-snaps-after $(qemu-img snapshot -l ` + snapshotRoot + ` | grep -c ' s[12] ')"
`

// TestSnapshotLab snapshots a stock Debian guest in the nested lab while
// it counts, appends each count to a file on its qcow2 root and sends it
// over a TCP connection to L1; kills its VMM with SIGKILL and restores
// the snapshot in a new VMM: the count goes on from the snapshot, and
// the connection carries on (L1 receives every count once, in order, on
// the one connection it accepted, past the restore). Restoring that
// older snapshot again later, over the running VM, rolls disk and memory
// back together: the count goes back, and after a clean shutdown the
// file holds every count exactly once, fsck in the guest and qemu-img
// check in L1 are clean. Each restore gives the guest a new VM
// generation ID, which its kernel's vmgenid driver learns of through
// the GED's interrupt and reseeds the RNG. One L1 boot.
func TestSnapshotLab(t *testing.T) {
	l := lab.New(t)
	ctx := context.Background()
	files := virtioGuestFiles(ctx, t, l)
	root, _ := ext4Image(t, t.TempDir(), "root", 64, map[string]string{"seed.txt": "snapshot test\n"}, true)
	files[snapshotRoot] = lab.File{Source: root}
	files["/guest/web.yaml"] = lab.File{Data: []byte(snapshotYAML)}
	start := time.Now()
	res, err := l.Run(ctx, lab.Scenario{
		WithPaddock: true,
		WithVmlinux: true,
		Files:       files,
		Steps:       []lab.Step{{Name: "snapshot", Script: snapshotStep, Timeout: 15 * time.Minute}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the snapshot scenario took %s", time.Since(start).Round(time.Second))
	st := step(t, res, "snapshot")
	want := func(key, v string) {
		t.Helper()
		if got := strings.TrimSpace(value(t, st, key)); got != v {
			t.Errorf("%s = %q, want %q", key, got, v)
		}
	}
	num := func(key string) int {
		t.Helper()
		n, err := strconv.Atoi(strings.TrimSpace(value(t, st, key)))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return n
	}
	for _, k := range []string{"snap.up", "snap.s1", "snap.killed", "snap.restore1", "snap.s2", "snap.restore2"} {
		want(k, "0")
	}
	want("snap.after-kill", "crashed")
	want("snap.restore-running", "4") // refused without --force
	before, lastKill := num("snap.before"), num("snap.last-before-kill")
	// The restored guest goes on from the count of the snapshot, taken
	// between tick "before" and the kill.
	for _, k := range []string{"snap.restore1-first", "snap.restore2-first"} {
		if f := num(k); f < before || f > lastKill+1 {
			t.Errorf("%s = %d: the restored guest should go on from the snapshot's count, between %d and %d", k, f, before, lastKill+1)
		}
	}
	if later, f2 := num("snap.later"), num("snap.restore2-first"); f2 >= later {
		t.Errorf("after restoring s1 over the VM at tick %d the count went on from %d: not rolled back", later, f2)
	}
	t.Run("shutdown", func(t *testing.T) {
		want("snap.umount", "0")
		want("snap.fsck", "0")
		want("snap.end-state", "stopped")
		// qemu-img check: 0 clean, 3 leaked clusters only. Leaks may
		// come from the SIGKILL, never from a snapshot or a restore.
		if c, k := value(t, st, "snap.img-check"), value(t, st, "snap.check-after-kill"); c != "0" && (c != "3" || k != "3") {
			t.Errorf("qemu-img check exited %s at the end, %s right after the kill: want 0, or leaks (3) only where the kill left them", c, k)
		}
		want("snap.disk-snaps", "2")
	})
	t.Run("connection", func(t *testing.T) {
		want("snap.nc-alive", "1")
		f := strings.Fields(value(t, st, "snap.tcp"))
		if n, err := strconv.Atoi(f[0]); err != nil || n < num("snap.run-on")-1 || len(f) != 2 || f[1] != "0" {
			t.Errorf("snap.tcp = %q: want every tick once and in order, up to at least %d, on the connection L1 accepted before the snapshot", f, num("snap.run-on")-1)
		}
	})
	t.Run("generation ID", func(t *testing.T) {
		// Linux's vmgenid driver bound VGEN; the booted guest saw an
		// ID and no event. Each restore gave it a new ID, raised the
		// GED's interrupt (counted in /proc/interrupts, where evged's
		// ACPI:Ged line appears once it has bound), and the kernel
		// reseeded its RNG once ("crng reseeded due to virtual machine
		// fork"): both restores are of s1, taken before any event.
		want("snap.bound", "1")
		gen := func(key string) (id string, geds, forks int) {
			t.Helper()
			f := strings.Fields(value(t, st, key))
			if len(f) != 4 || len(f[1]) != 32 {
				t.Fatalf("%s = %q: want tick, a 32-digit ID, GED interrupts and reseeds", key, f)
			}
			geds, err1 := strconv.Atoi(f[2])
			forks, err2 := strconv.Atoi(f[3])
			if err1 != nil || err2 != nil {
				t.Fatalf("%s = %q", key, f)
			}
			return f[1], geds, forks
		}
		id0, geds0, forks0 := gen("snap.genid0")
		if id0 == strings.Repeat("0", 32) || geds0 != 0 || forks0 != 0 {
			t.Errorf("the booted guest: ID %s, %d GED interrupts, %d reseeds; want an ID and no event", id0, geds0, forks0)
		}
		seen := map[string]string{id0: "the boot"}
		for _, key := range []string{"snap.genid1", "snap.genid2"} {
			id, geds, forks := gen(key)
			if prev, ok := seen[id]; ok {
				t.Errorf("%s: the guest reads ID %s, the same as after %s", key, id, prev)
			}
			seen[id] = key
			if geds < 1 || forks != 1 {
				t.Errorf("%s: %d GED interrupts and %d reseeds after the restore, want at least 1 and exactly 1", key, geds, forks)
			}
		}
	})
	// Every count once, in order, in the file on disk, across both
	// restores: its contents at each restore were those of the snapshot.
	want("snap.file", strconv.Itoa(num("snap.stopped"))+" 0")
	want("snap.rm", "0")
	want("snap.disk-snaps-after", "0")
}

// virtioGuestFiles returns the L1 files of a scenario that runs the
// virtio guest: its initramfs (with its scripts) and the L1 tools
// (qemu-img, debugfs, vtool).
func virtioGuestFiles(ctx context.Context, tb testing.TB, l *lab.Lab) map[string]lab.File {
	tb.Helper()
	im, err := l.Image(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	initrd, err := virtioguest.Initrd(ctx, virtioguest.Options{Kernel: im.Guest.Kernel, Busybox: im.Guest.Busybox})
	if err != nil {
		tb.Fatal(err)
	}
	files := virtioHostTools(ctx, tb)
	files[virtioInitrd] = lab.File{Source: initrd}
	return files
}
