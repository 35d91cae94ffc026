package network

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/netdev/hostnet"
)

// uplinkLock serialises making, using and removing tenants' namespaces
// and uplinks (hostnet.Uplink), and picking their addresses.
const uplinkLock = ".uplink.lock"

// NetdHostNSFD is, in the netd of a tenant other than the default, the
// descriptor of the host's network namespace (its second extra file):
// netd runs in the tenant's namespace and removes the uplink from the
// host's side.
const NetdHostNSFD = 4

// inNamespace reports whether the tenant's networks live in a namespace
// of their own: every tenant's but the default's.
func inNamespace(tenant string) bool { return tenant != DefaultTenant && tenant != "" }

// tenantUplink is the names of the tenant's namespace and uplink; Addr
// is zero.
func tenantUplink(tenant string) hostnet.Uplink {
	h := sha256.Sum256([]byte("paddock uplink\x00" + tenant))
	id := hex.EncodeToString(h[:4])
	return hostnet.Uplink{NS: "paddock-" + tenant, HostVeth: hostnet.UplinkPrefix + id, NSVeth: "pu-" + id, Table: "paddock-uplink-" + id}
}

// lockUplinks takes the uplink lock.
func (s *Store) lockUplinks() (func(), error) {
	return lockFile(filepath.Join(s.dir, uplinkLock))
}

// uplinkUp makes or repairs the tenant's namespace and uplink, keeping
// the address it has, and returns the namespace open. Precondition: the
// uplink lock is held.
func (s *Store) uplinkUp(tenant string) (int, error) {
	u := tenantUplink(tenant)
	if a, ok := hostnet.UplinkAddr(u.HostVeth); ok {
		u.Addr = a
	} else {
		a, err := hostnet.PickUplinkAddr()
		if err != nil {
			return -1, fmt.Errorf("tenant %s: %w", tenant, err)
		}
		u.Addr = a
	}
	if err := hostnet.UplinkUp(u); err != nil {
		return -1, fmt.Errorf("tenant %s: %w", tenant, err)
	}
	return hostnet.OpenNetns(u.NS)
}

// collectUplink removes the tenant's namespace and uplink if none of its
// networks is up (the namespace has no bridge). hostNS is the host's
// namespace, or -1 if the calling thread is in it.
func (s *Store) collectUplink(tenant string, hostNS int) error {
	unlock, err := s.lockUplinks()
	if err != nil {
		return err
	}
	defer unlock()
	return s.collectUplinkAt(tenant, hostNS)
}

// collectUplinkLocked is collectUplink from the host's namespace with
// the uplink lock held.
func (s *Store) collectUplinkLocked(tenant string) error { return s.collectUplinkAt(tenant, -1) }

// collectUplinkAt is collectUplink with the uplink lock held.
func (s *Store) collectUplinkAt(tenant string, hostNS int) error {
	u := tenantUplink(tenant)
	if hostnet.NetnsExists(u.NS) {
		ns, err := hostnet.OpenNetns(u.NS)
		if err != nil {
			return err
		}
		var used bool
		err = hostnet.InNetns(ns, func() (err error) {
			used, err = hostnet.HasBridges()
			return err
		})
		unix.Close(ns)
		if err != nil || used {
			return err
		}
	}
	if hostNS < 0 {
		return hostnet.UplinkDown(u)
	}
	return hostnet.InNetns(hostNS, func() error { return hostnet.UplinkDown(u) })
}

// SystemdResolvConf lists systemd-resolved's own upstream resolvers,
// where the host's /etc/resolv.conf names only its stub on loopback.
const SystemdResolvConf = "/run/systemd/resolve/resolv.conf"

// tenantUpstreams picks the resolvers ("IP:port") a tenant's DNS
// forwarder uses, from lists in order of preference (the host's
// resolv.conf, then systemd-resolved's upstreams): the first list with
// a resolver the namespace can reach, without those it cannot. A
// loopback resolver is the host's loopback, not the namespace's
// (systemd-resolved's 127.0.0.53), and the host's own addresses (local)
// refuse the namespace (the uplink's input chain).
func tenantUpstreams(local func(netip.Addr) bool, lists ...func() []string) func() []string {
	return func() []string {
		for _, list := range lists {
			var out []string
			for _, s := range list() {
				if ap, err := netip.ParseAddrPort(s); err == nil && !ap.Addr().IsLoopback() && !local(ap.Addr()) {
					out = append(out, s)
				}
			}
			if len(out) > 0 {
				return out
			}
		}
		return nil
	}
}
