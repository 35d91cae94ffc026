# virtio-bench: disk and network measurements, as markers. vda is a
# 256 MiB disk paddock or QEMU may overwrite; 10.0.2.1 (L1) runs a sink on
# 5003 and a source on 5004; vtool prints MB/s and IOPS.
mark() { echo "@@LAB $*"; }
mark "bench.clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
mark "bench.seqwrite $(vtool seqwrite /dev/vda 256)"
mark "bench.seqread $(vtool seqread /dev/vda 256)"
mark "bench.randread $(vtool randread /dev/vda 10)"
ping -c 1 -W 10 10.0.2.1 > /dev/null
ping -c 20 -i 0.2 10.0.2.1 > /tmp/ping.txt 2>&1
mark "bench.ping-ms $(sed -n 's|.*min/avg/max = [0-9.]*/\([0-9.]*\)/.*|\1|p' /tmp/ping.txt)"
mark "bench.tx $(vtool send 10.0.2.1 5003 256)"
mark "bench.rx $(vtool recv 10.0.2.1 5004)"
mark "bench.irqs $(grep -e virtio -e eth0 /proc/interrupts | awk '{ n += $2 } END { print n }')"
