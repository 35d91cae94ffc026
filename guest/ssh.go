package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/paddock-vm/paddock/guest/access"
	"github.com/paddock-vm/paddock/guest/console"
	"github.com/paddock-vm/paddock/guest/store"
)

// KnownHostsFile is the VM's known_hosts, in its state directory: the
// guest's SSH host keys, learned from its console or on first use.
const KnownHostsFile = "known_hosts"

// SSHOptions tune SSHTarget.
type SSHOptions struct {
	// Address, if set, is the guest's SSH server (HOST or HOST:PORT)
	// instead of the address paddock knows.
	Address string
	// Wait bounds the wait for the guest's SSH server to answer; zero
	// does not wait.
	Wait time.Duration
}

// NoAddressError is a VM whose address paddock does not know.
type NoAddressError struct {
	Name string
	// Host, for a libvirt VM, is its host, which knows no address.
	Host string
}

func (e *NoAddressError) Error() string {
	if e.Host != "" {
		return fmt.Sprintf("VM '%s' has no address paddock knows: its %s has no DHCP lease for its NICs on a libvirt network (nics[].network; a NIC on a bridge or tap has none it knows); give the address with --address", e.Name, e.Host)
	}
	return fmt.Sprintf("VM '%s' has no address paddock knows: paddock learns a VM's address from the DHCP lease its managed network gives (nics[].network); for a VM on a tap or bridge of your own, give it with --address", e.Name)
}

// SSHTarget returns where and as whom paddock ssh and paddock cp reach the
// guest of the running VM name, once its SSH server answers (up to
// o.Wait). The VM must have cloud_init, which authorizes paddock's key.
// Its host keys are learned from its console when cloud-init printed
// them there (the Target is then Strict) and written to its known_hosts.
// A native VM's address is its lease on its first managed network; a
// libvirt VM's is the lease a libvirt network of its host gave it, and
// its console is the log on its host.
func (m *Manager) SSHTarget(ctx context.Context, name string, o SSHOptions) (*access.Target, error) {
	v, err := m.vm(name)
	if err != nil {
		return nil, err
	}
	if err := m.reachable(v); err != nil {
		return nil, err
	}
	vm, err := loadSpec(v)
	if err != nil {
		return nil, err
	}
	if !vm.CloudInit {
		return nil, fmt.Errorf("VM '%s' has no cloud_init: paddock's SSH key reaches a guest through cloud-init's seed (docs/yaml.md, cloud_init); use ssh with a key of your own", name)
	}
	given := o.Address
	var keys []ssh.PublicKey
	if isLibvirt(v) {
		r, err := m.libvirt.reach(v)
		if err != nil {
			return nil, err
		}
		if given == "" && r.addr == "" {
			return nil, &NoAddressError{Name: name, Host: r.host}
		}
		if given == "" {
			given = r.addr
		}
		keys = r.keys
	} else {
		if addrs := m.addresses(vm); given == "" && len(addrs) > 0 {
			given = addrs[0].IP // its lease on its first managed network
		}
		if keys, err = access.ConsoleHostKeys(console.LogFiles(v.Path(store.ConsoleFile))...); err != nil {
			return nil, err
		}
	}
	addr, err := sshAddress(name, given)
	if err != nil {
		return nil, err
	}
	key, err := access.ReadKey(access.KeyPath(m.Home()))
	if err != nil {
		return nil, fmt.Errorf("VM '%s': paddock's SSH key: %w", name, err)
	}
	t := &access.Target{Name: name, Addr: addr, User: vm.User, Key: key.Path, KnownHosts: v.Path(KnownHostsFile)}
	if o.Wait > 0 {
		if err := access.Wait(ctx, name, addr, o.Wait); err != nil {
			return nil, err
		}
	}
	if err := learnHostKeys(t, keys); err != nil {
		return nil, err
	}
	return t, nil
}

// reachable returns nil if the VM v runs, and otherwise a StateError
// saying what to do, or why its state is not known.
func (m *Manager) reachable(v *store.VM) error {
	var st store.State
	if isLibvirt(v) {
		var in Info
		if err := m.libvirt.State(v, &in); err != nil {
			return err
		}
		if in.State == store.StateUnknown {
			return fmt.Errorf("VM '%s': %s", v.Name, in.Problem)
		}
		st = in.State
	} else {
		rec, h, err := facts(v)
		if !usable(err) {
			return err
		}
		st = store.Derive(rec, h)
	}
	if st == store.StateRunning {
		return nil
	}
	hint := "start it first (paddock start " + v.Name + ")"
	if st == store.StatePaused {
		hint = "resume it first (paddock resume " + v.Name + ")"
	}
	return &StateError{Name: v.Name, Op: "reach", State: st, Hint: hint}
}

// sshAddress is the guest's SSH server: the address given (--address, or
// the VM's lease on its first managed network), with port 22 if it has
// none.
func sshAddress(name, given string) (string, error) {
	if given == "" {
		return "", &NoAddressError{Name: name}
	}
	if _, _, err := net.SplitHostPort(given); err == nil {
		return given, nil
	}
	if net.ParseIP(given) != nil || !strings.Contains(given, ":") {
		return net.JoinHostPort(given, access.DefaultPort), nil
	}
	return "", fmt.Errorf("--address %q: not HOST or HOST:PORT", given)
}

// learnHostKeys writes the host keys the guest printed on its console
// into the VM's known_hosts (under the target's alias) and makes the
// target strict; without such keys, known_hosts stays as ssh left it.
func learnHostKeys(t *access.Target, keys []ssh.PublicKey) error {
	if len(keys) == 0 {
		return nil
	}
	want := access.KnownHosts(t.HostAlias(), keys)
	if have, err := os.ReadFile(t.KnownHosts); err != nil || !bytes.Equal(have, want) {
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("VM '%s': %w", t.Name, err)
		}
		if err := store.WriteFileAtomic(t.KnownHosts, want, 0o600); err != nil {
			return err
		}
	}
	t.Strict = true
	return nil
}
