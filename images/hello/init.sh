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
