# snapshot-guest: the guest of the lab's snapshot scenario
# (test/e2e/snapshot_lab_test.go). It counts ticks, about three a
# second, in a shell variable; each tick goes to a TCP connection to L1
# (10.0.2.1:5010, one connection for the whole run), is appended to
# /counter.txt on the ext4 disk vda (left in the page cache, not synced)
# and printed as a marker. It stops when L1 sends "stop" on the
# connection or on a new connection to its port 5011 (or after 600
# ticks), then unmounts the disk and checks it. After a rollback to an
# older snapshot the old connection is out of step with L1's end (L1 has
# acknowledged bytes the rolled-back guest has not sent again yet, and
# TCP drops a segment that acknowledges unsent data), and a "stop" sent
# on it once came too late (docs/lab.md); the listening socket takes a
# fresh connection at once.
# Snapshots taken and restored meanwhile must leave the connection, the
# file and the count going on as if nothing happened, but for the VM
# generation ID: whenever it, the count of the GED's interrupts or the
# kernel's "crng reseeded due to virtual machine fork" messages change,
# a snap.genid marker says so (with the tick), and snap.bound says at
# the start whether the vmgenid driver bound (the GED's driver shows in
# /proc/interrupts, as ACPI:Ged, once it has bound).
mark() { echo "@@LAB $*"; }
# genid reads the ID where paddock keeps it (VMGenIDAddr, 0xEF000: below
# 1 MiB and reserved, so /dev/mem may read it), as 32 hex digits.
genid() { dd if=/dev/mem bs=16 skip=$((0xEF000 / 16)) count=1 2>/dev/null | od -An -tx1 | tr -d ' \n'; }
geds() { awk '/ACPI:Ged/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print s + 0 }' /proc/interrupts; }
mark "snap.bound $(ls /sys/bus/acpi/drivers/vmgenid 2>/dev/null | grep -c '^VMGENCTR')"
mkdir -p /mnt
mount -t ext4 /dev/vda /mnt || { mark "snap.mount failed"; exit 1; }
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
mkfifo /tmp/out
nc 10.0.2.1 5010 < /tmp/out > /tmp/in &
exec 3> /tmp/out
nc -l -p 5011 > /tmp/ctl &
n=0
while [ $n -lt 600 ] && ! grep -q stop /tmp/in /tmp/ctl 2>/dev/null; do
	n=$((n + 1))
	echo "tick $n" >&3
	echo "$n" >> /mnt/counter.txt
	mark "snap.tick $n"
	g="$(genid) $(geds)"
	if [ "$g" != "$lastg" ]; then
		lastg=$g
		mark "snap.genid $n $g $(dmesg | grep -c 'virtual machine fork')"
	fi
	usleep 300000
done
mark "snap.stopped $n"
exec 3>&-
umount /mnt
mark "snap.umount $?"
e2fsck -fn /dev/vda > /tmp/fsck.log 2>&1
mark "snap.fsck $?"
tail -3 /tmp/fsck.log
