package configs

import (
	"errors"
	"fmt"
)

// MaxRootSize bounds root_size: 64 TiB, far beyond any guest's root disk
// and far from the qcow2 format's limits.
const MaxRootSize = 64 * TiB

// ErrNoTemplate is what a TemplateLookup's Template returns, wrapped,
// for a name no template has.
var ErrNoTemplate = errors.New("no such template")

// TemplateLookup answers Validate's questions about the templates a VM's
// from: can name (Host.Templates): the guest package implements it with
// paddock's template store.
type TemplateLookup interface {
	// Template returns what Validate needs to know about the template
	// called name: an error wrapping ErrNoTemplate if there is none, or
	// saying why it cannot be used.
	Template(name string) (TemplateFacts, error)
	// TemplateNames returns the names of the templates, for suggestions.
	TemplateNames() []string
}

// TemplateFacts describe a template to Validate.
type TemplateFacts struct {
	// RootSize is the size of its root disk, which root_size may only
	// grow; Disks how many disks a VM gets from it.
	RootSize int64
	Disks    int
	// Cmdline is the kernel command line the VM's cmdline is added to.
	Cmdline string
}

// from checks from and root_size on their own (structure).
func (c *checker) from() {
	vm := c.vm
	if vm.From == "" {
		if vm.RootSize != 0 || vm.written("root_size") {
			c.add("root_size", "is only for a VM made from a template: set from: too, or size the VM's own disks")
		}
		return
	}
	if !validName(vm.From) {
		c.add("from", "must name a template (a DNS label such as debian-12; paddock template ls lists them), got %s", quote(vm.From))
	}
	for _, f := range []struct {
		field, value string
	}{{"kernel", vm.Kernel}, {"initrd", vm.Initrd}} {
		if f.value != "" {
			c.add(f.field, "comes from the template (from: %s): leave it out, or leave out from: to boot your own", vm.From)
		}
	}
	if vm.written("root_size") || vm.RootSize != 0 {
		switch {
		case vm.RootSize <= 0:
			c.add("root_size", "must be a positive size such as 8GiB, got %s", vm.RootSize)
		case vm.RootSize > MaxRootSize:
			c.add("root_size", "must be at most %s, got %s", ByteSize(MaxRootSize), vm.RootSize)
		case vm.RootSize%MiB != 0:
			c.add("root_size", "must be a whole number of MiB, got %s", vm.RootSize)
		}
	}
}

// template checks from against the templates host knows: the template
// exists (or the closest name is suggested) and can be used, root_size
// does not shrink its root disk, and the disks and command line still
// fit with the template's.
func (c *checker) template(h Host) {
	vm := c.vm
	if vm.From == "" || h.Templates == nil || c.skip("from") {
		return
	}
	facts, err := h.Templates.Template(vm.From)
	switch {
	case errors.Is(err, ErrNoTemplate):
		if best := closest(vm.From, h.Templates.TemplateNames()); best != "" {
			c.add("from", "no template named %s; did you mean %s? (paddock template ls lists them)", quote(vm.From), quote(best))
		} else {
			c.add("from", "no template named %s (paddock template ls lists them; paddock template build debian-12 makes one)", quote(vm.From))
		}
		return
	case err != nil:
		c.add("from", "%w", err)
		return
	}
	if vm.RootSize != 0 && int64(vm.RootSize) < facts.RootSize && !c.skip("root_size") {
		c.add("root_size", "is %s, smaller than the root disk of template %s (%s): a VM's root disk can only be larger", vm.RootSize, vm.From, ByteSize(facts.RootSize))
	}
	n := facts.Disks + len(vm.Disks) + len(vm.NICs)
	nics := fmt.Sprintf(" and %d NICs", len(vm.NICs))
	if vm.RNG {
		n++
		nics = fmt.Sprintf(", %d NICs and the rng device", len(vm.NICs))
	}
	if n > MaxDevices && !c.skip("disks") {
		c.add("disks", "the template's %d disks, %d more disks%s make %d devices: at most %d fit on the PCI bus", facts.Disks, len(vm.Disks), nics, n, MaxDevices)
	}
	if l := len(facts.Cmdline) + 1 + len(vm.Cmdline); vm.Cmdline != "" && l > MaxCmdlineLen && !c.skip("cmdline") {
		c.add("cmdline", "added to template %s's command line it is %d bytes long; the kernel takes at most %d", vm.From, l, MaxCmdlineLen)
	}
}
