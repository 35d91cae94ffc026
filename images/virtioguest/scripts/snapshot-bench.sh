# snapshot-bench: the guest of the lab's snapshot restore benchmark
# (test/e2e/snapshot_bench_test.go). It fills sbench.fill= MiB (kernel
# command line) of its tmpfs with data, as a guest that has used its
# memory (page cache, heaps) has, brings up eth0 as 10.0.2.15 and idles:
# L1 pings it, and the first echo reply after a restore is the restored
# guest answering on the network (its kernel answers; nothing in user
# space has to run first).
fill=$(sed -n 's/.*sbench\.fill=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "$fill" ]; then
	yes 0123456789abcdef | head -c $((fill * 1048576)) > /tmp/fill
fi
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
echo "@@LAB sbench.ready $(free -m | awk '/^Mem:/ { print $3 }')"
while :; do
	sleep 1000
done
