#!/bin/sh
# /init of paddock's "hello" demo guest (images/hello): mount the kernel
# file systems, report, then run the built-in script the kernel command
# line names (paddock.script=NAME) and power off, or give the console an
# interactive shell and power off when it exits.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
up=$(cut -d' ' -f1 /proc/uptime)
echo "@@LAB l2.init $up"
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
hostname hello

release=$(uname -r)
load=/lib/modules/$release/paddock.load
if [ -f "$load" ]; then
	while read -r m; do
		insmod "/lib/modules/$release/$m" || echo "@@LAB l2.insmod-failed $m"
	done < "$load"
fi

# A VM with cloud_init has a seed volume (ISO 9660, label cidata): like
# cloud-init, take the host name from its meta-data (local-hostname).
# The disk whose primary volume descriptor (sector 16: "CD001", the
# volume identifier at byte 40) says so is the seed; its device is
# exported as PADDOCK_SEED to the scripts. The image needs virtio_pci,
# virtio_blk and isofs for it; without them, or without a seed, the
# guest stays "hello".
for dev in /dev/vd*; do
	[ -b "$dev" ] || continue
	[ "$(dd if="$dev" bs=1 skip=32769 count=5 2>/dev/null)" = CD001 ] || continue
	[ "$(dd if="$dev" bs=1 skip=32808 count=32 2>/dev/null | tr -d ' ')" = cidata ] || continue
	export PADDOCK_SEED=$dev
	mkdir -p /run/seed
	if mount -t iso9660 -o ro "$dev" /run/seed 2>/dev/null; then
		name=$(sed -n 's/^local-hostname: *//p' /run/seed/meta-data)
		[ -n "$name" ] && hostname "$name"
		umount /run/seed
	fi
	break
done

# A warm clone takes its own identity (hostname, MACs, DHCP address) when
# its VM generation changes (identity.sh; only with a cloud-init seed).
/etc/paddock/identity.sh watch &

# The ACPI power button (paddock stop) powers the guest off through busybox
# acpid, which runs /etc/acpi/PWRF/00000080, when the kernel's button and
# evdev drivers made input devices (load them with PowerButtonModules).
# (acpid dies if it cannot open its log: /var/log does not exist here.)
if ls /dev/input/event* > /dev/null 2>&1; then
	acpid -l /dev/null -p /run/acpid.pid
fi

mem=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 }' /proc/meminfo)
echo "paddock hello guest: $release, $(nproc) CPUs, $mem MiB"

script=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	paddock.script=*) script=${arg#paddock.script=} ;;
	esac
done

if [ -n "$script" ]; then
	f=/etc/paddock/scripts/$script.sh
	if [ -f "$f" ]; then
		sh "$f"
		rc=$?
	else
		echo "hello: no built-in script \"$script\" (have: $(cd /etc/paddock/scripts && ls | sed 's/\.sh$//' | tr '\n' ' '))"
		rc=127
	fi
	echo "@@LAB l2.script-end $script $rc"
else
	echo "Type 'poweroff' or leave the shell (exit, Ctrl-D) to stop the VM."
	setsid cttyhack sh -l
fi
sync
poweroff -f
