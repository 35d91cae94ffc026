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

// netVMYAML is a managed VM on the network default running the guest
// script net-managed, which fetches from peer.
func netVMYAML(name, peer, port string) string {
	return fmt.Sprintf(`name: %s
cpus: 1
memory: 256MiB
kernel: %s
initrd: %s
cmdline: console=ttyS0 quiet paddock.script=net-managed paddock.peer=%s
nics:
  - network: default
ports: ["%s"]
console: log
`, name, lab.GuestVmlinux, virtioInitrd, peer, port)
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

// networkLabStep runs in L1, the host of the managed network: an
// upstream namespace beyond L1's uplink (198.51.100.2, with no route
// back to the guests) serves HTTP with a CGI that answers the client's
// address; two VMs on default, a (127.0.0.1:8080 -> 80) and b (every
// address, 8081 -> 80), boot, take their addresses by DHCP, reach
// upstream through the NAT and each other; L1 reaches each through its
// forward (b's from upstream too); then rm of each VM, and what stays.
// The guests' markers come from their console logs, prefixed a. and b.
const networkLabStep = `
mark() { echo "@@LAB $*"; }
export PADDOCK_HOME=/var/lib/paddock
` + upstreamScript + `

paddock create -f /guest/a.yaml > /dev/null; mark "l1.create-a $?"
paddock create -f /guest/b.yaml > /dev/null; mark "l1.create-b $?"
mark "l1.ls $(paddock ls | awk 'NR > 1 { printf "%s=%s ", $1, $6 }')"
paddock start a > /dev/null; mark "l1.start-a $?"
paddock start b > /dev/null; mark "l1.start-b $?"
mark "l1.bridge-ports $(ls /sys/class/net/pd-default/brif | wc -l)"
# Each guest says net.ready on its console once it has done its part.
for vm in a b; do
	timeout 600 sh -c "until grep -q net.ready $PADDOCK_HOME/vms/$vm/console.log; do sleep 1; done"
	mark "l1.ready-$vm $?"
done
mark "l1.forward-a $(timeout 30 wget -q -O - http://127.0.0.1:8080/)"
mark "l1.forward-b $($IP netns exec upstream timeout 30 wget -q -O - http://198.51.100.1:8081/)"
mark "l1.forward-a-upstream $($IP netns exec upstream timeout 10 wget -q -O - http://198.51.100.1:8080/ 2>&1 | head -c 40)"
nft list table ip paddock-default > /tmp/table.txt
mark "l1.rules $(grep -c 'dnat to' /tmp/table.txt) $(grep -c masquerade /tmp/table.txt)"
cat /tmp/table.txt
for vm in a b; do
	grep '@@LAB' $PADDOCK_HOME/vms/$vm/console.log | sed "s/@@LAB /@@LAB $vm./"
done

paddock rm --force a; mark "l1.rm-a $?"
mark "l1.after-a $(ls /sys/class/net/pd-default/brif | wc -l) $(nft list table ip paddock-default | grep -c 8080) $(paddock network inspect default | grep -c '\"vm\": \"a\"')"
paddock rm --force b; mark "l1.rm-b $?"
# netd takes the network down once b's VMM is gone: wait for its lock.
timeout 60 /usr/local/bin/flock $PADDOCK_HOME/networks/default/netd.lock true; mark "l1.netd-gone $?"
[ -e /sys/class/net/pd-default ]; mark "l1.bridge-gone $?"
nft list table ip paddock-default > /dev/null 2>&1; mark "l1.table-gone $?"
mark "l1.leases $(paddock network inspect default | grep -c '\"vm\":')"
`

// TestNetworkLab runs two L2 guests on paddock's managed network default
// in one L1 boot: DHCP gives each its pinned, distinct address and host
// name; each reaches an HTTP server in a namespace upstream of the NAT
// (seen from the host's address) and the other VM; port forwards reach
// each guest from L1 (127.0.0.1) and from upstream (0.0.0.0), and a
// loopback forward is not reachable from upstream; after rm no bridge
// port, nftables rule or lease of the VM remains, and after the last the
// network is gone.
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
		virtioInitrd:    {Source: initrd},
		"/guest/a.yaml": {Data: []byte(netVMYAML("a", "10.77.0.3", "8080:80"))},
		"/guest/b.yaml": {Data: []byte(netVMYAML("b", "10.77.0.2", "0.0.0.0:8081:80"))},
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
	want("l1.ls", "a=10.77.0.2 b=10.77.0.3")
	want("l1.start-a", "0")
	want("l1.start-b", "0")
	want("l1.bridge-ports", "2")
	want("l1.ready-a", "0")
	want("l1.ready-b", "0")
	// DHCP: address, prefix length, router, DNS server, host name.
	want("a.net.dhcp", "0 10.77.0.2 24 10.77.0.1 10.77.0.1 a")
	want("b.net.dhcp", "0 10.77.0.3 24 10.77.0.1 10.77.0.1 b")
	// Upstream sees the host's uplink address: outbound NAT (busybox
	// httpd listens on IPv6 and IPv4 at once, so the address is mapped).
	want("a.net.upstream", "from [::ffff:198.51.100.1]")
	want("b.net.upstream", "from [::ffff:198.51.100.1]")
	want("a.net.peer", "guest b")
	want("b.net.peer", "guest a")
	want("l1.forward-a", "guest a")
	want("l1.forward-b", "guest b")
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
