# net-managed: a guest on a paddock managed network (docs/networks.md).
# It configures eth0 by DHCP (the lease's address, router, DNS server and
# host name), serves "guest NAME" over HTTP on port 80, fetches from an
# HTTP server upstream of the host's NAT (198.51.100.2, whose CGI answers
# the client's address as it sees it), and from its peer VM (the kernel
# command line's paddock.peer=ADDRESS, if set), then stays up until
# stopped. With paddock.foreign=ADDRESS,GATEWAY (a VM on another managed
# network and that network's gateway) it waits until L1 serves /go
# upstream (every VM is up), then tries to reach both (ping, ARP, TCP)
# and its own gateway. With paddock.spoof=1 it then sends from another
# address, ARP for it, and from another MAC, and fetches upstream again
# with its own. Markers go to the console, which L1 reads from the VM's
# console.log.
mark() { echo "@@LAB $*"; }
peer=
foreign=
spoof=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	paddock.peer=*) peer=${arg#paddock.peer=} ;;
	paddock.foreign=*) foreign=${arg#paddock.foreign=} ;;
	paddock.spoof=1) spoof=1 ;;
	esac
done
cat > /tmp/dhcp.sh <<'SCRIPT'
#!/bin/sh
case "$1" in
bound | renew)
	ip addr add "$ip/$mask" dev "$interface"
	ip route add default via "$router"
	echo "nameserver $dns" > /etc/resolv.conf
	echo "$ip $mask $router $dns $hostname" > /tmp/lease
	;;
esac
exit 0
SCRIPT
chmod +x /tmp/dhcp.sh
ip link set eth0 up
udhcpc -i eth0 -f -q -n -t 10 -T 3 -s /tmp/dhcp.sh > /tmp/udhcpc.log 2>&1
mark "net.dhcp $? $(cat /tmp/lease)"
name=$(cut -d' ' -f5 /tmp/lease)
mkdir -p /www
echo "guest $name" > /www/index.html
httpd -p 80 -h /www
mark "net.httpd $?"
# busybox wget's -T crashes in Debian's static build: timeout bounds it.
mark "net.upstream $(timeout 60 wget -q -O - http://198.51.100.2/cgi-bin/addr 2>&1)"
if [ -n "$peer" ]; then
	# The peer may boot later: ask it for up to two minutes.
	got=
	i=0
	while [ $i -lt 60 ]; do
		got=$(timeout 10 wget -q -O - "http://$peer/" 2> /dev/null) && break
		i=$((i + 1))
		sleep 2
	done
	mark "net.peer $got"
fi
own=$(cut -d' ' -f1 /tmp/lease)
gw=$(cut -d' ' -f3 /tmp/lease)
# reach ARGS...: ping's status (0: an answer came).
reach() { ping -c 2 -W 2 "$@" > /dev/null 2>&1; }
if [ -n "$foreign" ]; then
	i=0
	until timeout 10 wget -q -O /dev/null http://198.51.100.2/go 2> /dev/null; do
		i=$((i + 1))
		[ $i -ge 150 ] && break
		sleep 2
	done
	mark "net.go $([ $i -lt 150 ]; echo $?)"
	reach "${foreign%,*}"
	mark "net.foreign-ping $?"
	arping -c 2 -w 3 -I eth0 "${foreign%,*}" > /dev/null 2>&1
	mark "net.foreign-arp $?"
	timeout 10 wget -q -O /dev/null "http://${foreign%,*}/" 2> /dev/null
	mark "net.foreign-tcp $?"
	reach "${foreign#*,}"
	mark "net.foreign-gateway $?"
	reach "$gw"
	mark "net.gateway $?"
fi
if [ -n "$spoof" ]; then
	fake=${own%.*}.99
	ip addr add "$fake/32" dev eth0
	reach -I "$fake" "$gw"
	mark "net.spoof-ip $?"
	arping -c 2 -w 3 -I eth0 -s "$fake" "$gw" > /dev/null 2>&1
	mark "net.spoof-arp $?"
	arping -c 2 -w 3 -I eth0 -s "$own" "$gw" > /dev/null 2>&1
	mark "net.arp $?"
	ip addr del "$fake/32" dev eth0
	mac=$(cat /sys/class/net/eth0/address)
	# setmac MAC: live if the driver allows, else with the link down.
	setmac() {
		ip link set eth0 address "$1" 2> /dev/null && return
		ip link set eth0 down
		ip link set eth0 address "$1"
		ip link set eth0 up
		ip route replace default via "$gw"
	}
	setmac 52:54:00:de:ad:01
	mark "net.mac-changed $([ "$(cat /sys/class/net/eth0/address)" = 52:54:00:de:ad:01 ]; echo $?)"
	reach "$gw"
	mark "net.spoof-mac $?"
	timeout 10 wget -q -O /dev/null http://198.51.100.2/cgi-bin/addr 2> /dev/null
	mark "net.spoof-mac-upstream $?"
	setmac "$mac"
	reach "$gw"
	mark "net.mac-restored $?"
	mark "net.upstream-after $(timeout 60 wget -q -O - http://198.51.100.2/cgi-bin/addr 2>&1)"
fi
mark "net.ready"
while :; do sleep 3600; done
