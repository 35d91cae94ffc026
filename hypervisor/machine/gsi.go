package machine

import (
	"fmt"
	"sort"
	"sync"

	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// gsiRouter owns the VM's GSI routing table: KVM's default irqchip routes
// for GSIs 0-23 plus an MSI route per MSI-X vector. KVM_SET_GSI_ROUTING
// replaces the whole table, so every change rewrites all of it, and
// KVM waits for an SRCU grace period each time: a restore, which routes
// every vector its devices had routed, holds the writes (hold) and
// writes the table once (release).
type gsiRouter struct {
	vm *kvm.VM

	mu   sync.Mutex
	next uint32
	msi  map[uint32]kvm.RoutingEntry
	// held defers the table's writes until release; dirty says a route
	// changed meanwhile.
	held, dirty bool
}

// allocate reserves a GSI for an MSI route.
func (r *gsiRouter) allocate() (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next >= maxGSI {
		return 0, fmt.Errorf("out of GSIs (%d)", maxGSI)
	}
	r.next++
	return r.next - 1, nil
}

// setMSI routes gsi to an MSI message and rewrites the table.
func (r *gsiRouter) setMSI(gsi uint32, msg virtio.MSIMessage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.msi == nil {
		r.msi = map[uint32]kvm.RoutingEntry{}
	}
	old, had := r.msi[gsi]
	r.msi[gsi] = kvm.RoutingEntry{GSI: gsi, Type: kvm.RoutingMSI, AddressLo: uint32(msg.Address), AddressHi: uint32(msg.Address >> 32), Data: msg.Data}
	if r.held {
		r.dirty = true
		return nil
	}
	if err := r.commitLocked(); err != nil {
		if had {
			r.msi[gsi] = old
		} else {
			delete(r.msi, gsi)
		}
		return err
	}
	return nil
}

// hold defers the table's writes until release: setMSI only records
// the route meanwhile, and an error KVM has for a route comes from
// release. Precondition: no vector fires meanwhile (a restore, before
// the vCPUs and devices run).
func (r *gsiRouter) hold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held = true
}

// release ends hold and writes the table, once, if a route changed.
func (r *gsiRouter) release() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held = false
	if !r.dirty {
		return nil
	}
	r.dirty = false
	return r.commitLocked()
}

// commit writes the table.
func (r *gsiRouter) commit() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.commitLocked()
}

// commitLocked writes the table. Precondition: mu is held.
func (r *gsiRouter) commitLocked() error {
	return r.vm.SetGSIRouting(r.table())
}

// table is the routing table: the defaults, then MSI routes by GSI.
// Precondition: mu is held.
func (r *gsiRouter) table() []kvm.RoutingEntry {
	t := defaultRoutes()
	gsis := make([]uint32, 0, len(r.msi))
	for g := range r.msi {
		gsis = append(gsis, g)
	}
	sort.Slice(gsis, func(i, j int) bool { return gsis[i] < gsis[j] })
	for _, g := range gsis {
		t = append(t, r.msi[g])
	}
	return t
}

// defaultRoutes is KVM's own default table (arch/x86/kvm/irq_comm.c):
// GSIs 0-15 to the IOAPIC pin and the PIC pin of the same number, 16-23
// to the IOAPIC.
func defaultRoutes() []kvm.RoutingEntry {
	var t []kvm.RoutingEntry
	for gsi := uint32(0); gsi < 24; gsi++ {
		t = append(t, kvm.RoutingEntry{GSI: gsi, Type: kvm.RoutingIRQChip, Chip: kvm.IRQChipIOAPIC, Pin: gsi})
		if gsi < 16 {
			chip := uint32(kvm.IRQChipPICMaster)
			if gsi >= 8 {
				chip = kvm.IRQChipPICSlave
			}
			t = append(t, kvm.RoutingEntry{GSI: gsi, Type: kvm.RoutingIRQChip, Chip: chip, Pin: gsi % 8})
		}
	}
	return t
}
