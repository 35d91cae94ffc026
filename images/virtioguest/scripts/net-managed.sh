# net-managed: a guest on a paddock managed network (docs/networks.md).
# It configures eth0 by DHCP (the lease's address, router, DNS server and
# host name), serves "guest NAME" over HTTP on port 80, fetches from an
# HTTP server upstream of the host's NAT (198.51.100.2, whose CGI answers
# the client's address as it sees it), and from its peer VM (the kernel
# command line's paddock.peer=ADDRESS), then stays up until stopped.
# Markers go to the console, which L1 reads from the VM's console.log.
mark() { echo "@@LAB $*"; }
peer=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	paddock.peer=*) peer=${arg#paddock.peer=} ;;
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
# The peer may boot later: ask it for up to two minutes.
got=
i=0
while [ $i -lt 60 ]; do
	got=$(timeout 10 wget -q -O - "http://$peer/" 2> /dev/null) && break
	i=$((i + 1))
	sleep 2
done
mark "net.peer $got"
mark "net.ready"
while :; do sleep 3600; done
