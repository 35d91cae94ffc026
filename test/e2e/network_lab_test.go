package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/images/virtioguest"
	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/test/lab"
)

// netVMYAML is a managed VM on network running the guest script
// net-managed with the kernel command line's args (paddock.peer=...,
// paddock.foreign=..., paddock.spoof=1), forwarding ports.
func netVMYAML(name, network, args string, ports ...string) string {
	p := ""
	if len(ports) > 0 {
		p = fmt.Sprintf("ports: [\"%s\"]\n", strings.Join(ports, "\", \""))
	}
	return fmt.Sprintf(`name: %s
cpus: 1
memory: 256MiB
kernel: %s
initrd: %s
cmdline: console=ttyS0 quiet paddock.script=net-managed %s
nics:
  - network: %s
%sconsole: log
`, name, lab.GuestVmlinux, virtioInitrd, args, network, p)
}

// upstreamScript is sh for L1 (mark defined) that makes the network
// namespace upstream beyond L1's uplink: 198.51.100.2 on a veth whose
// L1 end is 198.51.100.1, with no route back to the guests, serving HTTP
// with busybox httpd and the CGI /cgi-bin/addr, which answers "from"
// and the client's address; l1.upstream-httpd is httpd's status. It
// sets IP, iproute2's ip by its path (busybox's sh runs its own applets
// first).
const upstreamScript = `IP=/usr/local/bin/ip
$IP netns add upstream
$IP link add uplink type veth peer name eth0 netns upstream
$IP addr add 198.51.100.1/24 dev uplink
$IP link set uplink up
$IP -n upstream link set lo up
$IP -n upstream addr add 198.51.100.2/24 dev eth0
$IP -n upstream link set eth0 up
mkdir -p /www-up/cgi-bin
printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho "from $REMOTE_ADDR"\n' > /www-up/cgi-bin/addr
chmod +x /www-up/cgi-bin/addr
$IP netns exec upstream httpd -p 80 -h /www-up
mark "l1.upstream-httpd $?"`

// networkLabStep runs in L1, the host of the managed networks: an
// upstream namespace beyond L1's uplink (198.51.100.2, with no route
// back to the guests) serves HTTP with a CGI that answers the client's
// address; two VMs on default, a (127.0.0.1:8080 -> 80) and b (every
// address, 8081 -> 80), and c of tenant acme on acme's default network,
// which has default's subnet (c gets 10.77.0.4: two VMs of acme, made and
// removed before it, held .2 and .3), boot, take their addresses by
// DHCP, reach upstream through the NAT (c through two: its namespace's
// and L1's); a and b reach each other; once all three are up (L1 serves
// /go upstream), a and c try to reach each other, and a acme's namespace
// (its uplink's end, 100.127.0.2) and c L1 (198.51.100.1), and c sends
// from another address and another MAC; L1 reaches a and b through their
// forwards (b's from upstream too), and c through its forward of every
// address (8082 -> 80) into acme's namespace, from L1 and upstream; then
// rm of each VM, and what stays.
// The guests' markers come from their console logs, prefixed a., b. and
// c.
const networkLabStep = `
mark() { echo "@@LAB $*"; }
export PADDOCK_HOME=/var/lib/paddock
` + upstreamScript + `

paddock create -f /guest/a.yaml > /dev/null; mark "l1.create-a $?"
paddock create -f /guest/b.yaml > /dev/null; mark "l1.create-b $?"
paddock tenant create acme > /dev/null; mark "l1.tenant-acme $?"
paddock create -f /guest/p1.yaml > /dev/null && paddock create -f /guest/p2.yaml > /dev/null; mark "l1.create-p $?"
paddock create -f /guest/c.yaml > /dev/null; mark "l1.create-c $?"
paddock rm p1 p2 > /dev/null; mark "l1.rm-p $?"
# acme's default network: its bridge and nftables tables' names.
paddock network inspect acme/default > /tmp/acme.json
ob=$(sed -n 's/.*"bridge": *"\([^"]*\)".*/\1/p' /tmp/acme.json)
ot=$(sed -n 's/.*"nft_table": *"\([^"]*\)".*/\1/p' /tmp/acme.json)
mark "l1.acme-names $ob $ot"
mark "l1.ls $(paddock ls | awk 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "ADDRESS") c = i } NR > 1 { printf "%s=%s ", $1, $c }')"
paddock start a > /dev/null; mark "l1.start-a $?"
paddock start b > /dev/null; mark "l1.start-b $?"
paddock start c > /dev/null; mark "l1.start-c $?"
# upstream VM waits until VM's guest has reached upstream (net.upstream on
# its console), or its VM ended, or 600 s passed. Guests booting at once
# in L1 triple-fault now and then (the emulated AMD-V, docs/lab.md): such
# a VM is started again, twice at most (l1.again-VM N), and its markers
# are read from its last boot. A VM that did not start has no console
# log: no wait.
upstream() {
	k=0
	while :; do
		timeout 600 sh -c "until grep -q net.upstream $PADDOCK_HOME/vms/$1/console.log; do [ -e $PADDOCK_HOME/vms/$1/console.log ] || exit 1; paddock inspect $1 | grep -Eq '\"state\": \"(starting|running)\"' || exit 2; sleep 1; done"
		rc=$?
		if [ $rc != 2 ] || [ $k -ge 2 ] || ! paddock inspect $1 | grep -q 'triple-faulted'; then
			return $rc
		fi
		k=$((k + 1))
		mark "l1.again-$1 $k"
		paddock start $1 > /dev/null
	done
}
# Once every guest has reached upstream, /go tells a and c that the
# others are up.
for vm in a b c; do
	upstream $vm
	mark "l1.up-$vm $?"
done
mark "l1.bridge-ports $(ls /sys/class/net/pd-default/brif | wc -l) $($IP netns exec paddock-acme ls /sys/class/net/$ob/brif | wc -l)"
# acme's bridge is in acme's namespace, not L1's; its uplink is L1's.
[ -e /sys/class/net/$ob ]; mark "l1.acme-bridge-in-l1 $?"
mark "l1.acme-uplink $($IP -o -4 addr show | awk '$2 ~ /^pt-/ { print $4 }')"
touch /www-up/go
# Each guest says net.ready on its console once it has done its part.
for vm in a b c; do
	timeout 600 sh -c "until grep -q net.ready $PADDOCK_HOME/vms/$vm/console.log; do [ -e $PADDOCK_HOME/vms/$vm/console.log ] || exit 1; sleep 1; done"
	mark "l1.ready-$vm $?"
done
mark "l1.forward-a $(timeout 30 wget -q -O - http://127.0.0.1:8080/)"
mark "l1.forward-b $($IP netns exec upstream timeout 30 wget -q -O - http://198.51.100.1:8081/)"
mark "l1.forward-c $(timeout 30 wget -q -O - http://127.0.0.1:8082/)"
mark "l1.forward-c-upstream $($IP netns exec upstream timeout 30 wget -q -O - http://198.51.100.1:8082/)"
mark "l1.forward-a-upstream $($IP netns exec upstream timeout 10 wget -q -O - http://198.51.100.1:8080/ 2>&1 | head -c 40)"
nft list table ip paddock-default > /tmp/table.txt
mark "l1.rules $(grep -c 'dnat to' /tmp/table.txt) $(grep -c masquerade /tmp/table.txt)"
cat /tmp/table.txt
nft list table bridge paddock-default > /tmp/guards.txt
mark "l1.guards $(grep -c 'ether saddr' /tmp/guards.txt)"
cat /tmp/guards.txt
# Each guest's markers from its last boot (its /init's l2.init on).
for vm in a b c; do
	awk '/@@LAB l2.init/ { n = 0 } { l[n++] = $0 } END { for (i = 0; i < n; i++) print l[i] }' $PADDOCK_HOME/vms/$vm/console.log |
		grep '@@LAB' | sed "s/@@LAB /@@LAB $vm./"
done

paddock rm --force a; mark "l1.rm-a $?"
mark "l1.after-a $(ls /sys/class/net/pd-default/brif | wc -l) $(nft list table ip paddock-default | grep -c 8080) $(paddock network inspect default | grep -c '\"vm\": \"a\"')"
paddock rm --force b; mark "l1.rm-b $?"
# netd takes the network down once b's VMM is gone: wait for its lock.
timeout 60 /usr/local/bin/flock $PADDOCK_HOME/networks/default/netd.lock true; mark "l1.netd-gone $?"
[ -e /sys/class/net/pd-default ]; mark "l1.bridge-gone $?"
nft list table ip paddock-default > /dev/null 2>&1; mark "l1.table-gone $?"
mark "l1.leases $(paddock network inspect default | grep -c '\"vm\":')"
paddock rm --force c; mark "l1.rm-c $?"
timeout 60 /usr/local/bin/flock $PADDOCK_HOME/networks/acme.default/netd.lock true; mark "l1.netd-acme-gone $?"
nft list table bridge $ot > /dev/null 2>&1; mark "l1.acme-table-gone $?"
[ -e /run/netns/paddock-acme ]; mark "l1.acme-ns-gone $?"
mark "l1.acme-uplink-gone $($IP -o link | grep -c ' pt-') $(nft list tables | grep -c paddock-uplink)"
`

// TestNetworkLab runs two L2 guests on paddock's managed network default
// and a third of another tenant on its own default network, which has
// the same subnet (10.77.0.0/24), in one L1 boot: DHCP gives each its
// pinned address and host name; each reaches an HTTP server in a
// namespace upstream of the NAT (seen from the host's address); the two
// on default reach each other; port forwards reach each guest from L1
// (127.0.0.1) and from upstream (0.0.0.0), and a loopback forward is not
// reachable from upstream; the VMs of different tenants cannot ping, ARP
// or TCP-connect each other, nor reach the other tenant's namespace or
// the host, and a guest that sends from another address or MAC gets
// nothing through (its own still work); after rm no bridge port,
// nftables rule or lease of the VM remains, and after the last the
// network is gone, and with acme's the tenant's namespace and uplink.
func TestNetworkLab(t *testing.T) {
	l := lab.New(t)
	ctx := context.Background()
	im, err := l.Image(ctx)
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := virtioguest.Initrd(ctx, virtioguest.Options{Kernel: im.Guest.Kernel, Busybox: im.Guest.Busybox})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]lab.File{
		virtioInitrd:     {Source: initrd},
		"/guest/a.yaml":  {Data: []byte(netVMYAML("a", "default", "paddock.peer=10.77.0.3 paddock.foreign=10.77.0.4,100.127.0.2", "8080:80"))},
		"/guest/b.yaml":  {Data: []byte(netVMYAML("b", "default", "paddock.peer=10.77.0.2", "0.0.0.0:8081:80"))},
		"/guest/c.yaml":  {Data: []byte("tenant: acme\n" + netVMYAML("c", "default", "paddock.foreign=10.77.0.2,198.51.100.1 paddock.spoof=1", "0.0.0.0:8082:80"))},
		"/guest/p1.yaml": {Data: []byte("tenant: acme\n" + netVMYAML("p1", "default", ""))},
		"/guest/p2.yaml": {Data: []byte("tenant: acme\n" + netVMYAML("p2", "default", ""))},
	}
	labHostTools(t, files, networkTools...)
	res, err := l.Run(ctx, lab.Scenario{
		WithPaddock: true,
		WithVmlinux: true,
		Files:       files,
		Steps:       []lab.Step{{Name: "network", Script: networkLabStep, Timeout: 3 * bootTimeout}},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := step(t, res, "network")
	want := func(key, v string) {
		t.Helper()
		if got := strings.TrimSpace(value(t, st, key)); got != v {
			t.Errorf("%s = %q, want %q", key, got, v)
		}
	}
	want("l1.upstream-httpd", "0")
	want("l1.create-a", "0")
	want("l1.create-b", "0")
	want("l1.tenant-acme", "0")
	want("l1.create-p", "0")
	want("l1.create-c", "0")
	want("l1.rm-p", "0")
	want("l1.ls", "a=10.77.0.2 b=10.77.0.3 c=10.77.0.4")
	want("l1.start-a", "0")
	want("l1.start-b", "0")
	want("l1.start-c", "0")
	for _, vm := range []string{"a", "b", "c"} {
		if n := lastMarker(st, "l1.again-"+vm); n != "" {
			t.Logf("%s triple-faulted in its boot and was started again (%s time(s); the emulated AMD-V: docs/lab.md)", vm, n)
		}
	}
	want("l1.bridge-ports", "2 1")
	want("l1.acme-bridge-in-l1", "1")
	want("l1.acme-uplink", "100.127.0.1/30")
	for _, vm := range []string{"a", "b", "c"} {
		want("l1.up-"+vm, "0")
		want("l1.ready-"+vm, "0")
	}
	// DHCP: address, prefix length, router, DNS server, host name.
	want("a.net.dhcp", "0 10.77.0.2 24 10.77.0.1 10.77.0.1 a")
	want("b.net.dhcp", "0 10.77.0.3 24 10.77.0.1 10.77.0.1 b")
	want("c.net.dhcp", "0 10.77.0.4 24 10.77.0.1 10.77.0.1 c")
	// Upstream sees the host's uplink address: outbound NAT, c's twice
	// (busybox httpd listens on IPv6 and IPv4 at once, so the address is
	// mapped).
	for _, vm := range []string{"a", "b", "c"} {
		want(vm+".net.upstream", "from [::ffff:198.51.100.1]")
	}
	want("a.net.peer", "guest b")
	want("b.net.peer", "guest a")
	if v := value(t, st, "l1.acme-names"); !strings.HasPrefix(v, "pd-") {
		t.Errorf("acme's default network's names: %q", v)
	}
	// a (default) and c (acme's default, the same subnet) cannot reach
	// each other, nor a acme's namespace nor c L1; each reaches its own
	// gateway.
	for _, vm := range []string{"a", "c"} {
		want(vm+".net.go", "0")
		for _, k := range []string{"foreign-ping", "foreign-arp", "foreign-tcp", "foreign-gateway"} {
			if v := strings.TrimSpace(value(t, st, vm+".net."+k)); v == "0" {
				t.Errorf("%s.net.%s = 0: %s reached the other network", vm, k, vm)
			}
		}
		want(vm+".net.gateway", "0")
	}
	// c from another address (ping and ARP) and from another MAC gets
	// nothing through; with its own it does.
	want("c.net.spoof-ip", "1")
	want("c.net.spoof-arp", "1")
	want("c.net.arp", "0")
	want("c.net.mac-changed", "0")
	want("c.net.spoof-mac", "1")
	if v := strings.TrimSpace(value(t, st, "c.net.spoof-mac-upstream")); v == "0" {
		t.Errorf("c reached upstream from another MAC")
	}
	want("c.net.mac-restored", "0")
	want("c.net.upstream-after", "from [::ffff:198.51.100.1]")
	want("l1.guards", "2") // a's and b's taps in default's bridge table
	want("l1.forward-a", "guest a")
	want("l1.forward-b", "guest b")
	want("l1.forward-c", "guest c") // into acme's namespace: through its uplink
	want("l1.forward-c-upstream", "guest c")
	if v := value(t, st, "l1.forward-a-upstream"); strings.Contains(v, "guest") {
		t.Errorf("a's loopback forward answered upstream: %q", v)
	}
	want("l1.rules", "3 3") // a's output DNAT, b's prerouting and output; outbound, loopback and hairpin masquerades
	want("l1.rm-a", "0")
	want("l1.after-a", "1 0 0") // b's tap alone on the bridge; no 8080 rule; no lease of a
	want("l1.rm-b", "0")
	want("l1.netd-gone", "0")
	want("l1.bridge-gone", "1")
	want("l1.table-gone", "1")
	want("l1.leases", "0")
	want("l1.rm-c", "0")
	want("l1.netd-acme-gone", "0")
	want("l1.acme-table-gone", "1")
	want("l1.acme-ns-gone", "1")
	want("l1.acme-uplink-gone", "0 0")
	if t.Failed() {
		t.Logf("transcript tail:\n%s", res.Tail(120))
	}
}

// networkTools are the host's tools a managed network's lab test needs in
// L1: ip for the upstream namespace, nft to list paddock's rules, flock
// to wait for netd's lock.
var networkTools = [][2]string{{"ip", "iproute2"}, {"nft", "nftables"}, {"flock", "util-linux"}}

// labHostTools adds the host's tools (name, Debian package) to L1's files
// as /usr/local/bin/NAME, ahead of busybox's applets of the same names on
// L1's PATH, with their shared libraries at their paths.
func labHostTools(t testing.TB, files map[string]lab.File, tools ...[2]string) {
	t.Helper()
	var bins []string
	for _, tool := range tools {
		bins = append(bins, testenv.RequireTool(t, tool[0], tool[1]))
	}
	host, err := virtioguest.HostFiles(context.Background(), bins...)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range host {
		path := f.Path
		if f.Source != "" && slices.Contains(bins, f.Path) {
			path = "/usr/local/bin/" + filepath.Base(f.Path)
		}
		files[path] = lab.File{Source: f.Source, Mode: f.Mode}
	}
}
