package guest

import (
	"bytes"
	"errors"

	"golang.org/x/crypto/ssh"

	"github.com/paddock-vm/paddock/guest/access"
	lv "github.com/paddock-vm/paddock/guest/libvirt"
	"github.com/paddock-vm/paddock/guest/store"
)

// libvirtReach is what paddock ssh and cp learn of a running libvirt VM
// from its host.
type libvirtReach struct {
	// host names the VM's host, for messages.
	host string
	// addr is the first IPv4 address the host knows the guest has (a
	// DHCP lease of a libvirt network), or empty.
	addr string
	// keys are the SSH host keys cloud-init printed on the guest's
	// console, from the console log on the host.
	keys []ssh.PublicKey
}

// reach asks the VM v's host for the guest's address and reads the host
// keys from its console log.
func (b *libvirtBackend) reach(v *store.VM) (libvirtReach, error) {
	pl, c, d, err := b.domain(v)
	if err != nil {
		return libvirtReach{}, err
	}
	defer c.Close()
	r := libvirtReach{host: pl.Host.String()}
	addrs, err := d.Addresses()
	if err != nil {
		return r, err
	}
	if len(addrs) > 0 {
		r.addr = addrs[0].IP
	}
	pool, err := c.Pool(false)
	if errors.Is(err, lv.ErrNoPool) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	log, _, err := pool.ReadLog(pl)
	if err != nil {
		return r, err
	}
	r.keys, err = access.HostKeysIn(bytes.NewReader(log))
	return r, err
}
