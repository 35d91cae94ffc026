#!/bin/sh
# identity: the hello guest's identity step for warm clones
# (docs/cli.md, "Warm clones and networks"). /init starts "identity.sh
# watch" in the background when the VM has a cloud-init seed. A warm
# clone's guest continues from its template's memory: it knows the
# template's hostname, MAC and address. paddock gives each restore a new
# VM generation ID; the kernel's vmgenid driver reseeds the RNG and logs
# "crng reseeded due to virtual machine fork" (kernels from 6.10 also
# send a NEW_VMGENID uevent; Debian 12's 6.1 does not). On that message
# this script reads the seed again: a new instance-id there means a new
# VM (a clone; a VM restored from its own snapshot keeps its id), so it
# sets the seed's hostname, re-probes every virtio-net NIC (its driver
# then reads the clone's MAC) and takes the clone's address by DHCP.
# Then it writes the instance-id into /run/paddock/identity.fifo if a
# script waits there.
#
#   identity.sh watch       follow the kernel log (from /init)
#   identity.sh seed KEY    print KEY (instance-id, local-hostname) from
#                           the seed's meta-data, read from the device
#   identity.sh dhcp IF     take IF's address by DHCP (udhcpc)

# seeddev prints the seed volume's device: the virtio disk whose serial
# is cidata (paddock's seed).
seeddev() {
	for b in /sys/block/vd*; do
		if [ "$(cat "$b/serial" 2> /dev/null)" = cidata ]; then
			echo "/dev/${b##*/}"
			return 0
		fi
	done
	return 1
}

# seed prints the value of the meta-data key $1 ("instance-id: ID"),
# read from the seed volume itself: its buffers are flushed first, since
# a restored guest's page cache holds its template's seed. The volume is
# ISO 9660, whose files lie whole in its blocks: grep finds the line
# without mounting it.
seed() {
	dev=$(seeddev) || return 1
	blockdev --flushbufs "$dev" || return 1
	v=$(grep -a -m1 -o "$1: [^[:space:]]*" "$dev" | head -1)
	[ -n "$v" ] || return 1
	echo "${v#*: }"
}

# dhcp configures interface $1 by DHCP: address, default route, DNS.
dhcp() {
	ip link set "$1" up
	udhcpc -i "$1" -f -q -n -t 10 -T 3 -s "$0" > /dev/null 2>&1
}

# lease is udhcpc's script: $1 is the event, the lease in the environment.
lease() {
	case "$1" in
	deconfig)
		ip addr flush dev "$interface"
		;;
	bound | renew)
		ip addr flush dev "$interface"
		ip addr add "$ip/$mask" dev "$interface"
		[ -n "$router" ] && ip route replace default via "$router" dev "$interface"
		[ -n "$dns" ] && echo "nameserver $dns" > /etc/resolv.conf
		;;
	esac
	return 0
}

# newgen handles a new generation: nothing unless the seed names
# another instance.
newgen() {
	id=$(seed instance-id) || return 0
	[ "$id" = "$(cat /run/paddock/instance-id 2> /dev/null)" ] && return 0
	echo "$id" > /run/paddock/instance-id
	name=$(seed local-hostname) && hostname "$name"
	drv=/sys/bus/virtio/drivers/virtio_net
	for d in "$drv"/virtio*; do
		[ -e "$d" ] || continue
		v=${d##*/}
		echo "$v" > "$drv/unbind"
		echo "$v" > "$drv/bind"
	done
	addrs=
	for n in /sys/class/net/*; do
		i=${n##*/}
		[ "$(cat "$n/type")" = 1 ] && [ -e "$n/device" ] || continue
		dhcp "$i"
		addrs="$addrs $i $(ip -4 -o addr show dev "$i" | awk '{ print $4 }')"
	done
	echo "hello: a new VM: $(hostname), instance $id;$addrs" > /dev/console
	if [ -p /run/paddock/identity.fifo ]; then
		echo "$id" > /run/paddock/identity.fifo &
	fi
}

# watch records the seed's instance-id and follows the kernel log.
# Reading /dev/kmsg starts with the records already there, and starts
# again if cat ends (a reader the log overran gets EPIPE): an old fork
# message finds the same instance-id and does nothing.
watch() {
	mkdir -p /run/paddock
	seed instance-id > /run/paddock/instance-id || return 0
	while :; do cat /dev/kmsg; done | while read -r rec; do
		case "$rec" in
		*"virtual machine fork"*) newgen ;;
		esac
	done
}

case "$1" in
watch) watch ;;
seed) seed "$2" ;;
dhcp) dhcp "$2" ;;
deconfig | bound | renew | leasefail | nak) lease "$1" ;;
*)
	echo "usage: $0 watch | seed KEY | dhcp IFACE" >&2
	exit 2
	;;
esac
