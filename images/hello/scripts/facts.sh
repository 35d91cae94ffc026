# facts: report what the guest sees, as markers.
echo "@@LAB l2.cmdline $(cat /proc/cmdline)"
echo "@@LAB l2.nproc $(nproc)"
echo "@@LAB l2.memtotal-kib $(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
echo "@@LAB l2.release $(uname -r)"
