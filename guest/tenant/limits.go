package tenant

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/paddock-vm/paddock/configs"
)

// Limits bound what a tenant's VMs may have, all together; a zero field
// is no limit. What each counts (docs/cli.md, "Tenants"): every VM of the
// tenant that exists, running or not, as a cloud's quotas count a
// customer's instances.
type Limits struct {
	// VMs bounds how many VMs the tenant has.
	VMs int `json:"max_vms,omitempty"`
	// CPUs bounds the sum of their vCPUs (cpus), Memory the sum of
	// their RAM (memory).
	CPUs   int              `json:"max_cpus,omitempty"`
	Memory configs.ByteSize `json:"max_memory,omitempty"`
	// Disk bounds the sum of the virtual sizes of their writable disks
	// (a disk several VMs name counts once).
	Disk configs.ByteSize `json:"max_disk,omitempty"`
}

// Usage is what a tenant's VMs have, or what a request adds to it, in
// the units of Limits.
type Usage struct {
	VMs    int              `json:"vms"`
	CPUs   int              `json:"cpus"`
	Memory configs.ByteSize `json:"memory"`
	Disk   configs.ByteSize `json:"disk"`
}

// Add returns u plus v. The sizes saturate at the largest ByteSize
// instead of wrapping, so that no sum of disks can come out small.
func (u Usage) Add(v Usage) Usage {
	return Usage{VMs: u.VMs + v.VMs, CPUs: u.CPUs + v.CPUs, Memory: AddSizes(u.Memory, v.Memory), Disk: AddSizes(u.Disk, v.Disk)}
}

// AddSizes is a+b, or the largest ByteSize if that overflows.
func AddSizes(a, b configs.ByteSize) configs.ByteSize {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// over reports whether used+req exceeds limit, without overflowing.
func over[T int | configs.ByteSize](used, req, limit T) bool {
	return req > limit || used > limit-req
}

// Check validates limits read from a record or given by a caller: no
// count may be negative.
func (l Limits) Check() error {
	if l.VMs < 0 || l.CPUs < 0 {
		return fmt.Errorf("limits must not be negative, got %+v", l)
	}
	return nil
}

// Unlimited is how a limit that is not set is written (flags, tables).
const Unlimited = "unlimited"

// Flags are the command-line flags of the limits, in Limits' order.
var Flags = []string{"max-vms", "max-cpus", "max-memory", "max-disk"}

// ParseLimit parses the value of limit flag (one of Flags) into l: a
// count (max-vms, max-cpus) or a size such as 32GiB (max-memory,
// max-disk), at least 1 (a VM) or 1 MiB; or "unlimited", which removes
// the limit. The error names the flag and says what it takes.
func ParseLimit(l *Limits, flag, value string) error {
	v := strings.TrimSpace(value)
	if v == Unlimited {
		switch flag {
		case "max-vms":
			l.VMs = 0
		case "max-cpus":
			l.CPUs = 0
		case "max-memory":
			l.Memory = 0
		case "max-disk":
			l.Disk = 0
		default:
			return fmt.Errorf("--%s is not a tenant limit (%s)", flag, strings.Join(Flags, ", "))
		}
		return nil
	}
	switch flag {
	case "max-vms", "max-cpus":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("--%s %q: want a whole number of at least 1, or %s (a limit of 0 would allow nothing; paddock tenant rm removes a tenant)", flag, value, Unlimited)
		}
		if flag == "max-vms" {
			l.VMs = n
		} else {
			l.CPUs = n
		}
	case "max-memory", "max-disk":
		b, err := configs.ParseByteSize(v)
		if err != nil {
			return fmt.Errorf("--%s: %w; or %s for no limit", flag, err, Unlimited)
		}
		if b < configs.MiB {
			return fmt.Errorf("--%s %q: want a size of at least 1MiB, or %s (a limit of 0 would allow nothing)", flag, value, Unlimited)
		}
		if flag == "max-memory" {
			l.Memory = b
		} else {
			l.Disk = b
		}
	default:
		return fmt.Errorf("--%s is not a tenant limit (%s)", flag, strings.Join(Flags, ", "))
	}
	return nil
}

// ErrQuota is what a QuotaError wraps, for errors.Is.
var ErrQuota = errors.New("quota exceeded")

// QuotaError: a request does not fit in one of a tenant's limits.
type QuotaError struct {
	Tenant string
	// Flag is the limit's flag (max-vms ...); Used, Request and Limit
	// are in its units, written out.
	Flag                 string
	Used, Request, Limit string
	what                 string // "VMs exist", "vCPUs"...
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("tenant %s: %s of %s %s, and this asks for %s more (--%s %s): remove some or raise the limit (paddock tenant set %s --%s ...)",
		e.Tenant, e.Used, e.Limit, e.what, e.Request, e.Flag, e.Limit, e.Tenant, e.Flag)
}

func (e *QuotaError) Unwrap() error { return ErrQuota }

// Fits reports, as a *QuotaError about the first limit that would be
// exceeded, whether the tenant's VMs, using used, can take req more.
func (t *Tenant) Fits(used, req Usage) error {
	l := t.Limits
	q := func(flag, what string, u, r, max string) error {
		return &QuotaError{Tenant: t.Name, Flag: flag, Used: u, Request: r, Limit: max, what: what}
	}
	switch {
	case l.VMs > 0 && req.VMs > 0 && over(used.VMs, req.VMs, l.VMs):
		return q("max-vms", "VMs exist", strconv.Itoa(used.VMs), strconv.Itoa(req.VMs), strconv.Itoa(l.VMs))
	case l.CPUs > 0 && req.CPUs > 0 && over(used.CPUs, req.CPUs, l.CPUs):
		return q("max-cpus", "vCPUs are its VMs'", strconv.Itoa(used.CPUs), strconv.Itoa(req.CPUs), strconv.Itoa(l.CPUs))
	case l.Memory > 0 && req.Memory > 0 && over(used.Memory, req.Memory, l.Memory):
		return q("max-memory", "of memory are its VMs'", used.Memory.String(), req.Memory.String(), l.Memory.String())
	case l.Disk > 0 && req.Disk > 0 && over(used.Disk, req.Disk, l.Disk):
		return q("max-disk", "of disk are its VMs'", used.Disk.String(), req.Disk.String(), l.Disk.String())
	}
	return nil
}

// limitString writes a limit for tables: its value, or Unlimited.
func limitString[T int | configs.ByteSize](v T) string {
	if v == 0 {
		return Unlimited
	}
	if b, ok := any(v).(configs.ByteSize); ok {
		return b.String()
	}
	return strconv.Itoa(int(v))
}

// Strings writes the limits in Flags' order, for tables.
func (l Limits) Strings() []string {
	return []string{limitString(l.VMs), limitString(l.CPUs), limitString(l.Memory), limitString(l.Disk)}
}
