package guest

import (
	"errors"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/store"
)

// Info describes one managed VM: its state, derived from facts (is its
// VMM alive, what did the VMM record), and the spec it runs.
type Info struct {
	Name string `json:"name"`
	// UUID is the VM's stable UUID (identity.json), which its guest sees
	// as the SMBIOS system UUID; empty for a VM created before paddock
	// recorded one, until its next start.
	UUID   string            `json:"uuid,omitempty"`
	State  store.State       `json:"state"`
	Labels map[string]string `json:"labels,omitempty"`
	// Tenant is the tenant the VM belongs to (its spec's).
	Tenant string `json:"tenant,omitempty"`
	CPUs   int    `json:"cpus"`
	Memory uint64 `json:"memory"` // bytes
	// Backend is the hypervisor of the spec (native, libvirt).
	Backend string `json:"backend"`
	// Template is the template the VM was made from, if any.
	Template string `json:"template,omitempty"`
	// Host is the libvirt host a libvirt VM lives on (its name, or its
	// URI when the spec gave one).
	Host string `json:"host,omitempty"`

	CreatedAt time.Time `json:"created_at,omitzero"`
	Source    string    `json:"source,omitempty"`

	// Runtime facts of the VMM's run, while it runs.
	PID       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	BootedAt  time.Time `json:"booted_at,omitzero"`
	// Uptime is the time since the current boot, in seconds.
	Uptime   float64 `json:"uptime_seconds,omitempty"`
	Boots    int     `json:"boots,omitempty"`
	Restarts int     `json:"restarts,omitempty"`

	// Addresses are the VM's addresses on managed networks.
	Addresses []Address `json:"addresses,omitempty"`

	// LastExit is how the latest run ended.
	LastExit *store.Exit `json:"last_exit,omitempty"`
	// StartError is why the latest start failed, if it did.
	StartError string `json:"start_error,omitempty"`
	// Problem explains facts paddock could not read (a broken vm.yaml
	// or state.json); the rest of Info is then partial.
	Problem string `json:"problem,omitempty"`
	// Warnings are what the VM's spec meets on this host that keeps it
	// from working, found by the command that lists it: a Linux kernel on
	// a host whose KVM cannot boot one (docs/cli.md).
	Warnings []string `json:"warnings,omitempty"`

	// Config and Paths are filled by Inspect only.
	Config *configs.VM `json:"config,omitempty"`
	Paths  *Paths      `json:"paths,omitempty"`
}

// Paths are the files of a VM.
type Paths struct {
	Dir        string `json:"dir"`
	Config     string `json:"config"`
	State      string `json:"state"`
	Identity   string `json:"identity"`
	ConsoleLog string `json:"console_log"`
	VMMLog     string `json:"vmm_log"`
	Socket     string `json:"socket"`
}

// List describes every VM, sorted by name. A VM whose VMM died is
// cleaned up on the way (its end recorded as vmm-died).
func (m *Manager) List() ([]*Info, error) {
	names, err := m.store.Names()
	if err != nil {
		return nil, err
	}
	infos := make([]*Info, 0, len(names))
	for _, n := range names {
		v, err := m.store.VM(n)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err // one another user could have planted, say
		}
		info, err := m.info(v, false)
		if err != nil {
			return nil, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// Inspect describes one VM in full: Info with its resolved config and
// its files.
func (m *Manager) Inspect(name string) (*Info, error) {
	v, err := m.vm(name)
	if err != nil {
		return nil, err
	}
	return m.info(v, true)
}

// info gathers a VM's facts: its state from its backend, the rest from
// its spec.
func (m *Manager) info(v *store.VM, full bool) (*Info, error) {
	in := &Info{Name: v.Name}
	if err := m.backend(v).State(v, in); err != nil {
		in.Problem = err.Error()
		return in, nil
	}
	if id, ok, err := v.ReadIdentity(); err != nil {
		in.Problem = joinProblem(in.Problem, err.Error())
	} else if ok {
		in.UUID = id.UUID.String()
	}
	if from, err := v.ReadFrom(); err != nil {
		in.Problem = joinProblem(in.Problem, err.Error())
	} else if from != nil {
		in.Template = from.Template
	}
	vm, err := loadSpec(v)
	if err != nil {
		in.Problem = joinProblem(in.Problem, err.Error())
	} else {
		in.Labels, in.CPUs, in.Memory, in.Backend = vm.Labels, vm.CPUs, uint64(vm.Memory), string(vm.Backend)
		in.Tenant = vm.Tenant
		in.Addresses = m.addresses(vm)
		if full {
			in.Config = vm
		}
	}
	if full {
		in.Paths = &Paths{
			Dir:        v.Dir,
			Config:     v.Path(store.SpecFile),
			State:      v.Path(store.RecordFile),
			Identity:   v.Path(store.IdentityFile),
			ConsoleLog: v.Path(store.ConsoleFile),
			VMMLog:     v.Path(store.VMMLogFile),
			Socket:     v.Path(store.SocketFile),
		}
	}
	return in, nil
}

// joinProblem adds problem to the ones already noted.
func joinProblem(noted, problem string) string {
	if noted == "" {
		return problem
	}
	return noted + "; " + problem
}
