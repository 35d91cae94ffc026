# virtio-check: the lab's functional checks of the virtio devices, as
# markers. Disks: vda an ext4 image written here, vdb an ext4 image that
# is read-only. NIC eth0 on a network where 10.0.2.1 (L1) takes a file
# and its checksum on ports 5001 and 5003 and serves a file and its
# checksum on 5002 and 5004. An rng device. Checksums travel with the
# data and are compared where the data lands, so that markers stay short
# (L1's heartbeat can cut into a long console line).
mark() { echo "@@LAB $*"; }
for d in vda vdb; do
	mark "blk.$d $(cat /sys/block/$d/size) ro=$(cat /sys/block/$d/ro) queues=$(ls /sys/block/$d/mq | wc -l)"
done
mark "blk.vda.serial $(cat /sys/block/vda/serial)"
mkdir -p /mnt /ro
if mount -t ext4 /dev/vda /mnt; then
	mark "blk.seed $(cat /mnt/seed.txt)"
	echo "written by paddock virtio-blk" > /mnt/hello.txt
	dd if=/dev/urandom of=/mnt/blob bs=1M count=4 2>/dev/null
	sha256sum < /mnt/blob | cut -d' ' -f1 > /mnt/blob.sha
	rm /mnt/seed.txt
	sync
	umount /mnt
	mark "blk.umount $?"
else
	mark "blk.mount failed"
fi
e2fsck -fn /dev/vda > /tmp/fsck.log 2>&1
mark "blk.fsck $?"
tail -3 /tmp/fsck.log

# The read-only disk: busybox mount falls back to a read-only mount.
mount -t ext4 /dev/vdb /ro 2>/tmp/ro.err
mark "ro.mount $? $(grep -c ' /ro ext4 ro' /proc/mounts)"
mark "ro.content $(cat /ro/ro.txt)"
(echo new > /ro/new.txt) 2>/tmp/ro.write
mark "ro.write $? $(grep -o 'Read-only file system' /tmp/ro.write)"
umount /ro
# A raw write that gets to the device is refused by it.
dd if=/dev/zero of=/dev/vdb bs=4096 count=1 conv=fsync 2>/tmp/ro.dd
mark "ro.dd $? $(grep -o -e 'I/O error' -e 'Read-only file system' -e 'Operation not permitted' /tmp/ro.dd | head -1)"

# The NIC.
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
mark "net.mac $(cat /sys/class/net/eth0/address)"
ping -c 3 -W 10 10.0.2.1 > /tmp/ping.txt 2>&1
mark "net.ping $? $(grep -o '[0-9]* packets received' /tmp/ping.txt)"
dd if=/dev/urandom of=/tmp/up bs=1M count=8 2>/dev/null
sha256sum < /tmp/up | cut -d' ' -f1 > /tmp/up.sha
vtool put 10.0.2.1 5001 /tmp/up && vtool put 10.0.2.1 5003 /tmp/up.sha
mark "net.put $?"
vtool fetch 10.0.2.1 5002 /tmp/down && vtool fetch 10.0.2.1 5004 /tmp/down.sha
mark "net.fetch $?"
[ "$(sha256sum < /tmp/down | cut -d' ' -f1)" = "$(cat /tmp/down.sha)" ]
mark "net.down-match $?"

# The rng.
mark "rng.current $(cat /sys/class/misc/hw_random/rng_current)"
dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n' > /tmp/rng
mark "rng.bytes $(wc -c < /tmp/rng) $(grep -c '[1-9a-f]' /tmp/rng)"
