package libvirt

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
)

// Dom is a paddock VM's domain on its host.
type Dom struct {
	c *Conn
	d golibvirt.Domain
}

// ErrNoDomain: the VM's domain is not on its host (undefined behind
// paddock's back, or never defined).
var ErrNoDomain = errors.New("no domain")

// ForeignError: a domain of the VM's name exists on the host, and it is
// not this VM's: paddock did not define it, or another paddock did.
// paddock never changes such a domain.
type ForeignError struct {
	Where string // the host, as messages name it
	Name  string
	// Owner describes the other paddock, when one defined it.
	Owner *Metadata
}

func (e *ForeignError) Error() string {
	who := "paddock did not define it"
	if e.Owner != nil {
		who = fmt.Sprintf("another paddock defined it (state directory %s on %s)", e.Owner.Home, e.Owner.Machine)
	}
	return fmt.Sprintf("a domain named '%s' exists on %s and %s: paddock leaves it alone; give the VM another name", e.Name, e.Where, who)
}

// Domain returns the domain called name whose UUID is id: ErrNoDomain
// (wrapped) when there is no domain of that name, a *ForeignError when
// the domain of that name is not this VM's.
func (c *Conn) Domain(name, id string) (*Dom, error) {
	d, err := c.l.DomainLookupByName(name)
	if code(err) == golibvirt.ErrNoDomain {
		return nil, fmt.Errorf("%s: domain %s: %w", c.where(), name, ErrNoDomain)
	}
	if err != nil {
		return nil, c.fail("look up domain "+name, err)
	}
	md, err := c.metadata(d)
	if err != nil {
		return nil, err
	}
	if md == nil || uuid.UUID(d.UUID).String() != id {
		return nil, &ForeignError{Where: c.where(), Name: name, Owner: md}
	}
	return &Dom{c: c, d: d}, nil
}

// metadata returns paddock's element of d's metadata, or nil if it has
// none.
func (c *Conn) metadata(d golibvirt.Domain) (*Metadata, error) {
	s, err := c.l.DomainGetMetadata(d, int32(golibvirt.DomainMetadataElement), golibvirt.OptString{MetadataNS}, 0)
	if code(err) == golibvirt.ErrNoDomainMetadata {
		return nil, nil
	}
	if err != nil {
		return nil, c.fail("read the metadata of domain "+d.Name, err)
	}
	// libvirt returns the element without its namespace.
	dec := xml.NewDecoder(strings.NewReader(s))
	dec.DefaultSpace = MetadataNS
	var md Metadata
	if err := dec.Decode(&md); err != nil {
		return nil, fmt.Errorf("%s: domain %s: paddock's metadata: %w", c.where(), d.Name, err)
	}
	return &md, nil
}

// CheckName makes sure a VM called name can be defined on the host: no
// domain has that name yet, or it is this VM's own (id).
func (c *Conn) CheckName(name, id string) error {
	_, err := c.Domain(name, id)
	if errors.Is(err, ErrNoDomain) {
		return nil
	}
	return err
}

// Define defines the domain desc (DomainXML) of the VM called name with
// UUID id; libvirt validates it against its schema first. A domain of
// that name that is not this VM's is refused (*ForeignError).
func (c *Conn) Define(name, id, desc string) (*Dom, error) {
	if err := c.CheckName(name, id); err != nil {
		return nil, err
	}
	d, err := c.l.DomainDefineXMLFlags(desc, golibvirt.DomainDefineValidate)
	if err != nil {
		return nil, c.fail("define domain "+name, err)
	}
	return &Dom{c: c, d: d}, nil
}

// Name is the domain's name.
func (d *Dom) Name() string { return d.d.Name }

// State is a domain's state and why it is in it, as libvirt reports
// them (virDomainState and its reason).
type State struct {
	State  golibvirt.DomainState
	Reason int32
}

// Active reports whether QEMU runs the domain (running, paused, ...).
func (s State) Active() bool {
	return s.State != golibvirt.DomainShutoff && s.State != golibvirt.DomainNostate
}

// State asks libvirt for the domain's state.
func (d *Dom) State() (State, error) {
	st, reason, err := d.c.l.DomainGetState(d.d, 0)
	if err != nil {
		return State{}, d.c.fail("get the state of domain "+d.d.Name, err)
	}
	return State{State: golibvirt.DomainState(st), Reason: reason}, nil
}

// Start boots the domain.
func (d *Dom) Start() error {
	if err := d.c.l.DomainCreate(d.d); err != nil {
		return d.c.fail("start domain "+d.d.Name, err)
	}
	return nil
}

// Suspend pauses the domain's vCPUs; Resume lets them run again.
func (d *Dom) Suspend() error {
	if err := d.c.l.DomainSuspend(d.d); err != nil {
		return d.c.fail("pause domain "+d.d.Name, err)
	}
	return nil
}

// Resume lets a paused domain run again.
func (d *Dom) Resume() error {
	if err := d.c.l.DomainResume(d.d); err != nil {
		return d.c.fail("resume domain "+d.d.Name, err)
	}
	return nil
}

// Destroy stops the domain at once (QEMU is killed).
func (d *Dom) Destroy() error {
	err := d.c.l.DomainDestroyFlags(d.d, 0)
	if err != nil && code(err) != golibvirt.ErrOperationInvalid { // not running (any more)
		return d.c.fail("destroy domain "+d.d.Name, err)
	}
	return nil
}

// Shutdown presses the domain's ACPI power button and waits up to
// timeout for the guest to power off. It reports whether the guest did;
// on false the domain still runs.
func (d *Dom) Shutdown(ctx context.Context, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Listen before pressing the button, so no stop goes unheard.
	events, err := d.c.l.LifecycleEvents(ctx)
	if err != nil {
		return false, d.c.fail("watch domain "+d.d.Name, err)
	}
	defer func() {
		cancel()
		for range events { // the stream ends once it sees the cancel
		}
	}()
	err = d.c.l.DomainShutdownFlags(d.d, golibvirt.DomainShutdownAcpiPowerBtn)
	if err != nil && code(err) != golibvirt.ErrOperationInvalid {
		return false, d.c.fail("press the power button of domain "+d.d.Name, err)
	}
	return d.waitStopped(ctx, events, timeout)
}

// waitStopped waits up to timeout for the domain to stop, watching
// events (which the caller subscribed to before acting).
func (d *Dom) waitStopped(ctx context.Context, events <-chan golibvirt.DomainEventLifecycleMsg, timeout time.Duration) (bool, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		st, err := d.State()
		if err != nil {
			return false, err
		}
		if !st.Active() {
			return true, nil
		}
		select {
		case ev, ok := <-events:
			if !ok {
				if _, err := d.State(); err != nil {
					return false, err
				}
				return false, d.c.fail("watch domain "+d.d.Name, ErrConnectionLost)
			}
			if ev.Dom.UUID != d.d.UUID {
				continue
			}
		case <-timer.C:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// Undefine removes the domain's definition, with its snapshots'
// metadata. Precondition: the domain is not running.
func (d *Dom) Undefine() error {
	flags := golibvirt.DomainUndefineManagedSave | golibvirt.DomainUndefineSnapshotsMetadata | golibvirt.DomainUndefineCheckpointsMetadata
	err := d.c.l.DomainUndefineFlags(d.d, flags)
	if err != nil && code(err) != golibvirt.ErrNoDomain {
		return d.c.fail("undefine domain "+d.d.Name, err)
	}
	return nil
}

// XML is the domain's current definition.
func (d *Dom) XML() (string, error) {
	s, err := d.c.l.DomainGetXMLDesc(d.d, 0)
	if err != nil {
		return "", d.c.fail("read the definition of domain "+d.d.Name, err)
	}
	return s, nil
}

// DomainNames lists the names of every domain on the host, sorted.
func (c *Conn) DomainNames() ([]string, error) {
	doms, _, err := c.l.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, c.fail("list domains", err)
	}
	names := make([]string, len(doms))
	for i, d := range doms {
		names[i] = d.Name
	}
	slices.Sort(names)
	return names, nil
}
