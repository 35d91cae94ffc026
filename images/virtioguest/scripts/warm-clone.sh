# warm-clone: the guest of the lab's warm clone scenario
# (test/e2e/warmclone_lab_test.go). Booted as the template's VM, it
# mounts its ext4 disk vda, takes its address by DHCP and waits on
# /run/paddock/identity.fifo, where the hello guest's identity step
# (/etc/paddock/identity.sh, started by /init) writes the new instance-id
# once a warm clone took its own identity: hostname, MAC and address.
# The template's memory is saved while it waits, so every warm clone
# continues here: it prints its identity, its VM generation ID, 16 bytes
# of /dev/urandom read now, its address, writes them to /clone.txt on
# its disk (and unmounts it), and serves its hostname over HTTP (port 80) for L1 to reach
# it at its own address.
mark() { echo "@@LAB $*"; }
# genid reads the VM generation ID where paddock keeps it (VMGenIDAddr,
# 0xEF000), as 32 hex digits.
genid() { dd if=/dev/mem bs=16 skip=$((0xEF000 / 16)) count=1 2> /dev/null | od -An -tx1 | tr -d ' \n'; }
addr() { ip -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1] }'; }
mkdir -p /mnt /run/paddock
mount -t ext4 /dev/vda /mnt || { mark "warm.mount failed"; exit 1; }
/etc/paddock/identity.sh dhcp eth0
mark "warm.template $(hostname) $(genid) $(addr)"
mkfifo /run/paddock/identity.fifo
mark "warm.waiting"
read -r id < /run/paddock/identity.fifo
rnd=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
line="$(hostname) $id $(genid) $rnd $(addr)"
mark "warm.clone $line"
# Unmounted, the file system is whole on the disk (not only in ext4's
# journal), as L1 reads it without replaying the journal.
echo "$line" > /mnt/clone.txt && umount /mnt
mark "warm.wrote $?"
mkdir -p /www
hostname > /www/index.html
httpd -p 80 -h /www
mark "warm.httpd $?"
while :; do sleep 3600; done
