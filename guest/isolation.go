package guest

import (
	"github.com/paddock-vm/paddock/guest/jail"
	"github.com/paddock-vm/paddock/netdev/hostnet"
)

// IsolationReport says which isolation layers VMMs started now get on
// this host, and why one is missing (paddock doctor): the jail's layers
// (jail.Probe), then what managed networks need, which keep VMs on their
// own bridges and subnets (hostnet.Probe).
func IsolationReport() []jail.Layer {
	layers := jail.Probe()
	tun, bridge, nft := hostnet.Probe()
	for _, c := range []struct {
		name, ok string
		err      error
	}{
		{"tun", "/dev/net/tun opens: VMs get tap devices", tun},
		{"bridge", "Linux bridges: each managed network is a bridge of its own", bridge},
		{"nftables", "nftables: NAT and port forwards of managed networks", nft},
	} {
		l := jail.Layer{Name: c.name, Active: c.err == nil, Detail: c.ok}
		if c.err != nil {
			l.Detail = c.err.Error() + ": no managed networks on this host"
		}
		layers = append(layers, l)
	}
	return layers
}
