# virtio-limits: throughput of a rate-limited disk and NIC, as markers.
# vda is a scratch disk paddock limits (64 MiB and more, overwritten);
# eth0 is limited too, on a network where 10.0.2.1 (L1) runs a sink on
# 5005 and a source on 5006. vtool prints MB/s (10^6 bytes a second):
# O_DIRECT 1 MiB writes and reads, TCP timed until the receiver's EOF.
mark() { echo "@@LAB $*"; }
mark "limits.blk.write $(vtool seqwrite /dev/vda 64)"
mark "limits.blk.read $(vtool seqread /dev/vda 32)"
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ping -c 1 -W 10 10.0.2.1 > /dev/null
mark "limits.net.tx $(vtool send 10.0.2.1 5005 32)"
mark "limits.net.rx $(vtool recv 10.0.2.1 5006)"
