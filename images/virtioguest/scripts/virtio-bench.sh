# virtio-bench: disk and network measurements, as markers. vda is a
# 256 MiB disk paddock or QEMU may overwrite; 10.0.2.1 (L1) runs a sink on
# 5003 and a source on 5004; vtool prints MB/s and IOPS.
# paddock.bench=a,b,... on the command line runs only those tests (names
# as in the markers: seqwrite seqread randread ping-ms tx rx).
mark() { echo "@@LAB $*"; }
only=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	paddock.bench=*) only=",${arg#paddock.bench=}," ;;
	esac
done
want() { [ -z "$only" ] || case "$only" in *",$1,"*) true ;; *) false ;; esac; }
# The guest's virtio interrupts by queue kind (config, req, input,
# output), summed over CPUs, as "kind count" lines.
irqs() {
	awk '/virtio/ { n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i
		k = $NF; sub(/^virtio[0-9]+-/, "", k); sub(/\.[0-9]+$/, "", k); c[k] += n }
		END { for (k in c) print k, c[k] }' /proc/interrupts
}
# eth0's frame counters (a TSO frame counts once), as "kind count" lines.
frames() {
	for k in tx_packets rx_packets; do
		echo "$k $(cat /sys/class/net/eth0/statistics/$k)"
	done
}
# delta BEFORE: "kind=count" for each line of standard input minus the
# same kind's count in file BEFORE.
delta() {
	awk 'NR == FNR { b[$1] = $2; next } { printf "%s=%d ", $1, $2 - b[$1] }' "$1" -
}
# run NAME COMMAND...: the command's output as bench.NAME, the interrupts
# it took per queue kind as bench.irqs.NAME and the frames eth0 sent and
# received as bench.frames.NAME.
run() {
	name=$1; shift
	want "$name" || return 0
	irqs > /tmp/irqs.before
	frames > /tmp/frames.before
	out=$("$@")
	mark "bench.$name $out"
	mark "bench.irqs.$name $(irqs | delta /tmp/irqs.before)"
	mark "bench.frames.$name $(frames | delta /tmp/frames.before)"
}
pingms() {
	ping -c 20 -i 0.2 10.0.2.1 > /tmp/ping.txt 2>&1
	sed -n 's|.*min/avg/max = [0-9.]*/\([0-9.]*\)/.*|\1|p' /tmp/ping.txt
}
mark "bench.clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
run seqwrite vtool seqwrite /dev/vda 256
run seqread vtool seqread /dev/vda 256
run randread vtool randread /dev/vda 10
ping -c 1 -W 10 10.0.2.1 > /dev/null
run ping-ms pingms
run tx vtool send 10.0.2.1 5003 256
run rx vtool recv 10.0.2.1 5004
