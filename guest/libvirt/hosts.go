package libvirt

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/store"
)

// Files of the libvirt backend in paddock's state directory.
const (
	// HostsFile names the libvirt hosts paddock knows (paddock host add).
	HostsFile = "hosts.json"
	// hostsLock serialises changes to HostsFile.
	hostsLock = "hosts.lock"
)

// The host paddock knows without being told.
const (
	// LocalHost is the name of this machine's system libvirtd.
	LocalHost = "local"
	// LocalURI is LocalHost's URI unless the hosts file says otherwise.
	LocalURI = configs.DefaultLibvirtURI
	// DefaultPool is the storage pool paddock keeps its volumes in on a
	// host that names none; paddock creates it when it is missing.
	DefaultPool = "paddock"
	// AutoHost in a spec's libvirt.host (or --host) places the VM on the
	// reachable host with the most free memory.
	AutoHost = "auto"
)

// HostsVersion is the version of hosts.json this code writes; a newer
// file is refused.
const HostsVersion = 1

// Host is a libvirt host: a libvirtd paddock connects to by URI, and the
// storage pool on it that holds paddock's volumes.
type Host struct {
	Name string `json:"name"`
	URI  string `json:"uri"`
	// Pool is the storage pool's name; empty means DefaultPool.
	Pool string `json:"pool,omitempty"`
}

// PoolName is the host's storage pool.
func (h Host) PoolName() string {
	if h.Pool == "" {
		return DefaultPool
	}
	return h.Pool
}

// Errors of the hosts file; test with errors.Is.
var (
	// ErrNoHost: no host of that name.
	ErrNoHost = errors.New("no such libvirt host")
	// ErrHostExists: a host of that name exists already.
	ErrHostExists = errors.New("a libvirt host of that name exists already")
)

// hostsFile is hosts.json.
type hostsFile struct {
	Version int    `json:"version"`
	Hosts   []Host `json:"hosts"`
}

// Hosts is the hosts file of one state directory. The zero value is not
// usable: call OpenHosts.
type Hosts struct {
	home string
}

// OpenHosts returns the hosts of the state directory home (which must
// exist: store.Open makes it).
func OpenHosts(home string) *Hosts { return &Hosts{home: home} }

func (h *Hosts) path() string { return filepath.Join(h.home, HostsFile) }

// List returns every host, sorted by name, with LocalHost first. LocalHost
// is always there: qemu:///system unless the file names it otherwise.
func (h *Hosts) List() ([]Host, error) {
	f, err := h.read()
	if err != nil {
		return nil, err
	}
	hosts := slices.Clone(f.Hosts)
	if !slices.ContainsFunc(hosts, func(x Host) bool { return x.Name == LocalHost }) {
		hosts = append(hosts, Host{Name: LocalHost, URI: LocalURI})
	}
	slices.SortFunc(hosts, func(a, b Host) int {
		switch {
		case a.Name == b.Name:
			return 0
		case a.Name == LocalHost:
			return -1
		case b.Name == LocalHost:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return hosts, nil
}

// Get returns the named host; ErrNoHost (wrapped, with the names there
// are) if there is none.
func (h *Hosts) Get(name string) (Host, error) {
	hosts, err := h.List()
	if err != nil {
		return Host{}, err
	}
	for _, x := range hosts {
		if x.Name == name {
			return x, nil
		}
	}
	names := make([]string, len(hosts))
	for i, x := range hosts {
		names[i] = x.Name
	}
	return Host{}, fmt.Errorf("libvirt host %q: %w (paddock host ls lists them: %s; paddock host add NAME URI adds one)", name, ErrNoHost, strings.Join(names, ", "))
}

// CheckHost checks a host's name, URI and pool name without connecting.
func CheckHost(x Host) error {
	if !store.ValidName(x.Name) || x.Name == AutoHost {
		return fmt.Errorf("libvirt host name %q: want a DNS label (lowercase letters, digits and '-', at most %d), not %q", x.Name, store.MaxNameLen, AutoHost)
	}
	if err := configs.CheckLibvirtURI(x.URI); err != nil {
		return fmt.Errorf("libvirt host %s: URI %w", x.Name, err)
	}
	if x.Pool != "" && !validPoolName(x.Pool) {
		return fmt.Errorf("libvirt host %s: storage pool name %q: want letters, digits, '.', '_' and '-'", x.Name, x.Pool)
	}
	return nil
}

// validPoolName reports whether s can name a storage pool paddock uses:
// libvirt allows more, but paddock keeps to names that need no quoting.
func validPoolName(s string) bool {
	if s == "" || len(s) > 255 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Add records a new host. Naming LocalHost replaces the implicit one;
// any other existing name is ErrHostExists.
func (h *Hosts) Add(x Host) error {
	if err := CheckHost(x); err != nil {
		return err
	}
	return h.change(func(f *hostsFile) error {
		if slices.ContainsFunc(f.Hosts, func(y Host) bool { return y.Name == x.Name }) {
			return fmt.Errorf("libvirt host %s: %w (paddock host rm %s first)", x.Name, ErrHostExists, x.Name)
		}
		f.Hosts = append(f.Hosts, x)
		return nil
	})
}

// Remove forgets a host. Removing LocalHost brings back the implicit one.
func (h *Hosts) Remove(name string) error {
	return h.change(func(f *hostsFile) error {
		i := slices.IndexFunc(f.Hosts, func(y Host) bool { return y.Name == name })
		if i < 0 {
			if name == LocalHost {
				return fmt.Errorf("libvirt host %s is paddock's default (%s) and cannot be removed; paddock host add %s URI replaces it", name, LocalURI, name)
			}
			return fmt.Errorf("libvirt host %q: %w", name, ErrNoHost)
		}
		f.Hosts = slices.Delete(f.Hosts, i, i+1)
		return nil
	})
}

// read reads hosts.json; a missing file has no hosts.
func (h *Hosts) read() (hostsFile, error) {
	p := h.path()
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return hostsFile{Version: HostsVersion}, nil
	}
	if err != nil {
		return hostsFile{}, fmt.Errorf("libvirt: read hosts: %w", err)
	}
	// hosts.json decides which daemons paddock talks to and trusts.
	if err := store.CheckTrusted(p); err != nil {
		return hostsFile{}, err
	}
	var f hostsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return hostsFile{}, fmt.Errorf("libvirt: %s: %w", p, err)
	}
	if f.Version > HostsVersion {
		return hostsFile{}, fmt.Errorf("libvirt: %s: version %d was written by a newer paddock (this one reads version %d)", p, f.Version, HostsVersion)
	}
	for _, x := range f.Hosts {
		if err := CheckHost(x); err != nil {
			return hostsFile{}, fmt.Errorf("libvirt: %s: %w", p, err)
		}
	}
	return f, nil
}

// change applies f to the hosts file under its lock and writes it back.
func (h *Hosts) change(fn func(*hostsFile) error) error {
	lf, err := os.OpenFile(filepath.Join(h.home, hostsLock), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("libvirt: lock hosts: %w", err)
	}
	defer lf.Close()
	if err := flockWait(lf); err != nil {
		return fmt.Errorf("libvirt: lock hosts: %w", err)
	}
	f, err := h.read()
	if err != nil {
		return err
	}
	if err := fn(&f); err != nil {
		return err
	}
	f.Version = HostsVersion
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("libvirt: encode hosts: %w", err)
	}
	return store.WriteFileAtomic(h.path(), append(data, '\n'), 0o600)
}

// flockWait takes an exclusive flock on f, waiting for it; the hosts
// file changes in a moment, so waiting is short.
func flockWait(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
