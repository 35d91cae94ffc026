package network

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/netdev"
	"github.com/paddock-vm/paddock/netdev/hostnet"
	"github.com/paddock-vm/paddock/netdev/netnstest"
)

// testStore is a store in a new state directory whose host has one route,
// to 10.77.0.0/23.
func testStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hostRoute := netip.MustParsePrefix("10.77.0.0/23")
	s.CheckSubnet = func(p netip.Prefix) error {
		if p.Overlaps(hostRoute) {
			return &hostnet.OverlapError{Subnet: p, Route: hostRoute, Dev: "eth0"}
		}
		return nil
	}
	return s
}

func mac(i int) netdev.MAC { return netdev.MAC{2, 0, 0, 0, 0, byte(i)} }

func TestCreate(t *testing.T) {
	s := testStore(t)
	def, err := s.Create("default", netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	// The host's route has 10.77.0.0/23: the first free /24 is 10.77.2.0.
	if def.Subnet.String() != "10.77.2.0/24" || def.Gateway.String() != "10.77.2.1" || def.Bridge != "pd-default" || def.Table != "paddock-default" || def.Tenant != "default" {
		t.Errorf("default: %+v", def)
	}
	if _, err := netdev.ParseMAC(def.BridgeMAC); err != nil {
		t.Errorf("bridge MAC: %v", err)
	}
	next, err := s.Create("a-rather-long-network-name", netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	if next.Subnet.String() != "10.77.3.0/24" || !strings.HasPrefix(next.Bridge, "pd-") || len(next.Bridge) > netdev.MaxNameLen || next.Bridge == def.Bridge {
		t.Errorf("second: %+v", next)
	}
	got, err := s.Get("default")
	if err != nil || *got != *def {
		t.Errorf("Get: %+v, %v", got, err)
	}
	if names, err := s.Names(); err != nil || strings.Join(names, ",") != "a-rather-long-network-name,default" {
		t.Errorf("Names: %v, %v", names, err)
	}
	for _, tc := range []struct{ name, subnet, want string }{
		{"default", "", "network default: network exists already"},
		{"Bad_Name", "", `"Bad_Name" is not a network name`},
		{"lab", "10.77.2.128/25", "subnet 10.77.2.128/25 overlaps network default's 10.77.2.0/24"},
		{"lab", "10.77.1.0/24", "subnet 10.77.1.0/24 overlaps the host's route to 10.77.0.0/23 on eth0"},
		{"lab", "10.99.0.1/24", "subnet 10.99.0.1/24 has host bits set: write 10.99.0.0/24"},
		{"lab", "10.99.0.0/31", "the prefix length must be 16 to 30"},
		{"lab", "10.0.0.0/8", "the prefix length must be 16 to 30"},
		{"lab", "fd00::/64", "is not IPv4"},
	} {
		var p netip.Prefix
		if tc.subnet != "" {
			p = netip.MustParsePrefix(tc.subnet)
		}
		if _, err := s.Create(tc.name, p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Create(%s, %s): %v, want %q", tc.name, tc.subnet, err, tc.want)
		}
	}
	if _, err := s.Get("lab"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused network exists: %v", err)
	}
	if ents, _ := os.ReadDir(s.dir); len(ents) != 3 { // .lock and the two networks
		t.Errorf("networks/ holds %d entries, want 3", len(ents))
	}
}

func TestLeases(t *testing.T) {
	s := testStore(t)
	if _, err := s.Create("lab", netip.MustParsePrefix("10.99.0.0/29")); err != nil {
		t.Fatal(err)
	}
	reserve := func(vm string, ephemeral bool, nics ...NICRequest) ([]Lease, error) {
		return s.Reserve("lab", vm, nics, ephemeral)
	}
	web, err := reserve("web", false, NICRequest{0, mac(1)}, NICRequest{1, mac(2)})
	if err != nil {
		t.Fatal(err)
	}
	if len(web) != 2 || web[0].IP.String() != "10.99.0.2" || web[1].IP.String() != "10.99.0.3" || web[0].MAC != mac(1).String() {
		t.Fatalf("web: %+v", web)
	}
	// Again: the same leases; a new MAC keeps the address.
	again, err := reserve("web", false, NICRequest{0, mac(9)}, NICRequest{1, mac(2)})
	if err != nil || again[0].IP != web[0].IP || again[0].MAC != mac(9).String() {
		t.Errorf("web again: %+v, %v", again, err)
	}
	if _, err := reserve("db", false, NICRequest{0, mac(9)}); err == nil || !strings.Contains(err.Error(), "MAC 02:00:00:00:00:09 is already VM web's (nics[0])") {
		t.Errorf("a MAC twice: %v", err)
	}
	db, err := reserve("db", true, NICRequest{0, mac(3)})
	if err != nil || db[0].IP.String() != "10.99.0.4" || !db[0].Ephemeral {
		t.Fatalf("db: %+v, %v", db, err)
	}
	for i := range 2 { // .5 and .6; .7 is the broadcast address
		if _, err := reserve("x"+string(rune('a'+i)), false, NICRequest{0, mac(10 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reserve("full", false, NICRequest{0, mac(20)}); err == nil || !strings.Contains(err.Error(), "no free address left in 10.99.0.0/29") {
		t.Errorf("a full subnet: %v", err)
	}
	// Releasing web frees its addresses for the next.
	if err := s.ReleaseVM("web"); err != nil {
		t.Fatal(err)
	}
	if l, err := reserve("full", false, NICRequest{0, mac(20)}); err != nil || l[0].IP.String() != "10.99.0.2" {
		t.Errorf("after web's release: %+v, %v", l, err)
	}
	// Only ephemeral leases go with ephemeralOnly.
	if err := s.Release("lab", "xa", true); err != nil {
		t.Fatal(err)
	}
	if err := s.Release("lab", "db", true); err != nil {
		t.Fatal(err)
	}
	leases, err := s.Leases("lab")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range leases {
		got = append(got, l.VM+"="+l.IP.String())
	}
	if strings.Join(got, " ") != "full=10.99.0.2 xa=10.99.0.5 xb=10.99.0.6" {
		t.Errorf("leases: %s", got)
	}
	if vl, err := s.VMLeases("xb"); err != nil || len(vl["lab"]) != 1 {
		t.Errorf("VMLeases: %v, %v", vl, err)
	}
	// A network with leases is not removed.
	if err := s.Remove("lab"); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "by VM full, xa, xb") {
		t.Errorf("Remove in use: %v", err)
	}
	for _, vm := range []string{"full", "xa", "xb"} {
		if err := s.ReleaseVM(vm); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove("lab"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "lab")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lab's directory: %v", err)
	}
}

func TestOpenRefusesUnsafe(t *testing.T) {
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, "networks"), 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(home, "networks"), 0o777)
	if _, err := Open(home); err == nil || !strings.Contains(err.Error(), "writable by other users") {
		t.Errorf("Open with networks/ 0777: %v", err)
	}
}

// TestTenantNetworks checks that tenants' networks of one name are
// separate networks: their own directories, bridges and tables, and
// leases, and the same subnet if they like (each tenant's networks are in
// a namespace of their own), while a tenant's own networks do not
// overlap; that references name them; and that a record whose name does
// not match its directory or tenant is refused.
func TestTenantNetworks(t *testing.T) {
	s := testStore(t)
	def, err := s.Use("default")
	if err != nil {
		t.Fatal(err)
	}
	acme, err := s.Use(Ref("acme", "default"))
	if err != nil {
		t.Fatal(err)
	}
	if acme.Name != "acme/default" || acme.Tenant != "acme" || acme.ShortName() != "default" {
		t.Errorf("acme's default: %+v", acme)
	}
	if acme.Bridge == def.Bridge || acme.Table == def.Table || acme.BridgeMAC == def.BridgeMAC {
		t.Errorf("acme's default shares names with the default tenant's: %+v, %+v", acme, def)
	}
	if acme.Subnet != def.Subnet {
		t.Errorf("acme's default got %s, the default tenant's %s: each tenant's first free subnet is the same", acme.Subnet, def.Subnet)
	}
	if lan, err := s.Create("acme/lan", def.Subnet); err == nil || !strings.Contains(err.Error(), "overlaps network acme/default's "+def.Subnet.String()) {
		t.Errorf("acme/lan on acme/default's subnet: %+v, %v", lan, err)
	}
	if lan, err := s.Create("acme/lan", netip.Prefix{}); err != nil || lan.Subnet.Overlaps(acme.Subnet) {
		t.Errorf("acme/lan: %+v, %v", lan, err)
	} else if err := s.Remove("acme/lan"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("acme/up", netip.MustParsePrefix("100.127.4.0/24")); err == nil || !strings.Contains(err.Error(), "subnet 100.127.4.0/24 overlaps 100.127.0.0/16, which paddock keeps for tenants' uplinks") {
		t.Errorf("a subnet in the uplinks' range: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "acme.default", NetworkFile)); err != nil {
		t.Errorf("acme's default's record: %v", err)
	}
	if _, err := s.Use(Ref("acme", "lan")); err == nil || !strings.Contains(err.Error(), "network acme/lan: no such network: create it first (paddock network create --tenant acme lan)") {
		t.Errorf("Use of acme's missing lan: %v", err)
	}
	if _, err := s.Reserve("acme/default", "web", []NICRequest{{0, mac(1)}}, false); err != nil {
		t.Fatal(err)
	}
	if l, err := s.Leases("default"); err != nil || len(l) != 0 {
		t.Errorf("the default tenant's default got acme's lease: %v, %v", l, err)
	}
	if vl, err := s.VMLeases("web"); err != nil || len(vl["acme/default"]) != 1 || len(vl) != 1 {
		t.Errorf("VMLeases: %v, %v", vl, err)
	}
	if names, err := s.Names(); err != nil || strings.Join(names, ",") != "acme/default,default" {
		t.Errorf("Names: %v, %v", names, err)
	}
	for _, ref := range []string{"acme/", "/default", "Acme/default", "acme/default/x", "acme.default"} {
		if _, err := s.Get(ref); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q): %v, want a bad name", ref, err)
		}
	}
	// A record moved into another tenant's directory is refused.
	if err := os.Rename(filepath.Join(s.dir, "acme.default"), filepath.Join(s.dir, "globex.default")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("globex/default"); err == nil || !strings.Contains(err.Error(), `name "acme/default" does not match its directory`) {
		t.Errorf("a moved record: %v", err)
	}
}

// TestRemoveTenantForwards: removing a network of a tenant whose
// namespace is gone (removed by hand, or a dead netd's after a reboot
// of the namespaces) removes the host's half of the network's port
// forwards all the same.
func TestRemoveTenantForwards(t *testing.T) {
	testenv.RequireTool(t, "nft", "nftables")
	ns := netnstest.New(t)
	s := testStore(t)
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	ref := Ref("t"+hex.EncodeToString(b[:]), DefaultName)
	n, err := s.Use(ref)
	if err != nil {
		t.Fatal(err)
	}
	u := tenantUplink(n.Tenant)
	u.Addr = netip.MustParsePrefix("100.127.0.1/30")
	f := hostnet.Forward{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, GuestIP: n.Gateway.Next(), GuestPort: 80}
	if err := ns.Do(func() error { return hostnet.SetUplinkForwards(u, n.Table, []hostnet.Forward{f}) }); err != nil {
		t.Fatal(err)
	}
	if out := ns.Exec(t, "nft", "list", "tables"); !strings.Contains(out, n.Table) {
		t.Fatalf("no table %s to remove:\n%s", n.Table, out)
	}
	if err := ns.Do(func() error { return s.Remove(ref) }); err != nil {
		t.Fatal(err)
	}
	if out := ns.Exec(t, "nft", "list", "tables"); strings.Contains(out, n.Table) {
		t.Errorf("table %s outlived network %s:\n%s", n.Table, ref, out)
	}
}
