package network

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/paddock-vm/paddock/netdev/dnsfwd"
)

// TestTenantUpstreams: a tenant's DNS forwarder uses the host's
// resolvers that its namespace reaches (not loopback, not the host's own
// addresses), and systemd-resolved's upstreams when the host's
// resolv.conf names none of those (only resolved's stub).
func TestTenantUpstreams(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"stub":     "nameserver 127.0.0.53\noptions edns0 trust-ad\n",
		"resolved": "nameserver 198.51.100.1\nnameserver 192.0.2.53\n",
		"mixed":    "nameserver 127.0.0.1\nnameserver 198.51.100.1\nnameserver 203.0.113.53\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	local := func(a netip.Addr) bool { return a == netip.MustParseAddr("198.51.100.1") }
	gateway := netip.MustParseAddr("10.77.0.1")
	for _, tc := range []struct {
		files []string
		want  []string
	}{
		{[]string{"stub", "resolved"}, []string{"192.0.2.53:53"}},
		{[]string{"mixed", "resolved"}, []string{"203.0.113.53:53"}},
		{[]string{"stub", "missing"}, nil},
	} {
		var lists []func() []string
		for _, f := range tc.files {
			lists = append(lists, dnsfwd.NewResolvers(filepath.Join(dir, f), gateway).Servers)
		}
		if got := tenantUpstreams(local, lists...)(); !slices.Equal(got, tc.want) {
			t.Errorf("%v: %v, want %v", tc.files, got, tc.want)
		}
	}
}
