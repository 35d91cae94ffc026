# sha256: hash 64 MiB of zeros in the guest (a CPU-bound workload).
echo "@@LAB l2.sha256 $(dd if=/dev/zero bs=1M count=64 2>/dev/null | sha256sum | cut -d' ' -f1)"
