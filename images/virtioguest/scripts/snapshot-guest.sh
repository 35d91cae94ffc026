# snapshot-guest: the guest of the lab's snapshot scenario
# (test/e2e/snapshot_lab_test.go). It counts ticks, about three a
# second, in a shell variable; each tick goes to a TCP connection to L1
# (10.0.2.1:5010, one connection for the whole run), is appended to
# /counter.txt on the ext4 disk vda (left in the page cache, not synced)
# and printed as a marker. It stops when L1 sends "stop" on the
# connection (or after 600 ticks), then unmounts the disk and checks it.
# Snapshots taken and restored meanwhile must leave the connection, the
# file and the count going on as if nothing happened.
mark() { echo "@@LAB $*"; }
mkdir -p /mnt
mount -t ext4 /dev/vda /mnt || { mark "snap.mount failed"; exit 1; }
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
mkfifo /tmp/out
nc 10.0.2.1 5010 < /tmp/out > /tmp/in &
exec 3> /tmp/out
n=0
while [ $n -lt 600 ] && ! grep -q stop /tmp/in 2>/dev/null; do
	n=$((n + 1))
	echo "tick $n" >&3
	echo "$n" >> /mnt/counter.txt
	mark "snap.tick $n"
	usleep 300000
done
mark "snap.stopped $n"
exec 3>&-
umount /mnt
mark "snap.umount $?"
e2fsck -fn /dev/vda > /tmp/fsck.log 2>&1
mark "snap.fsck $?"
tail -3 /tmp/fsck.log
