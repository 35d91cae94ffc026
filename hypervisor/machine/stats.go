package machine

import (
	"fmt"
	"io"
	"sort"

	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// exitStats counts one vCPU's exits to userspace, for performance work.
// Counting costs a few map updates per exit; timing each KVM_RUN would
// cost two clock reads, which are system calls where the host's clock
// source has no vDSO path (nested, under TCG), so it is not done.
// Only its own vCPU goroutine writes it; it is read after the vCPUs have
// stopped.
type exitStats struct {
	byReason map[kvm.ExitReason]uint64
	ports    map[uint16]uint64 // I/O exits by port
	mmio     map[uint64]uint64 // MMIO exits by 4 KiB page
}

func newExitStats() *exitStats {
	return &exitStats{byReason: map[kvm.ExitReason]uint64{}, ports: map[uint16]uint64{}, mmio: map[uint64]uint64{}}
}

// Stats is a summary of a machine's exits to userspace.
type Stats struct {
	Exits   uint64
	Reasons map[string]uint64
	Ports   map[uint16]uint64
	MMIO    map[uint64]uint64 // by 4 KiB page
}

// Stats returns the exit counts of every vCPU. It is meaningful once Run
// has returned.
func (m *Machine) Stats() Stats {
	s := Stats{Reasons: map[string]uint64{}, Ports: map[uint16]uint64{}, MMIO: map[uint64]uint64{}}
	for _, v := range m.vcpus {
		for r, n := range v.stats.byReason {
			s.Reasons[r.String()] += n
			s.Exits += n
		}
		for p, n := range v.stats.ports {
			s.Ports[p] += n
		}
		for a, n := range v.stats.mmio {
			s.MMIO[a] += n
		}
	}
	return s
}

// Print writes the summary: exits by reason, and the busiest ports and
// MMIO pages.
func (s Stats) Print(w io.Writer) {
	fmt.Fprintf(w, "exits to userspace: %d\n", s.Exits)
	type kv struct {
		k string
		n uint64
	}
	top := func(title string, items []kv) {
		sort.Slice(items, func(i, j int) bool { return items[i].n > items[j].n })
		if len(items) > 12 {
			items = items[:12]
		}
		for _, it := range items {
			fmt.Fprintf(w, "  %-8s %-22s %d\n", title, it.k, it.n)
		}
	}
	var r, p, a []kv
	for k, n := range s.Reasons {
		r = append(r, kv{k, n})
	}
	for k, n := range s.Ports {
		p = append(p, kv{fmt.Sprintf("%#x", k), n})
	}
	for k, n := range s.MMIO {
		a = append(a, kv{fmt.Sprintf("%#x", k), n})
	}
	top("reason", r)
	top("port", p)
	top("mmio", a)
}
