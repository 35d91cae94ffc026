# virtio-intx: with pci=nomsi on the command line every virtio device
# interrupts through INTx: read the read-only disk, use the rng.
mark() { echo "@@LAB $*"; }
mark "intx.sha $(sha256sum < /dev/vda | cut -d' ' -f1)"
mkdir -p /ro
mount -t ext4 -o ro /dev/vda /ro
mark "intx.content $(cat /ro/ro.txt)"
umount /ro
mark "intx.rng $(dd if=/dev/hwrng bs=16 count=4 2>/dev/null | wc -c)"
mark "intx.irqs $(grep virtio /proc/interrupts | grep -c IO-APIC) $(grep virtio /proc/interrupts | grep -c PCI-MSI)"
grep virtio /proc/interrupts
