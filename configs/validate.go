package configs

import (
	"cmp"
	"errors"
	"math"
	"slices"
)

// Validate checks every field of a VM whose defaults are filled and reports
// all problems, joined, in file order; each is an *Error. A VM that Load
// returned with decoding problems gets them again, with the problems of
// the values that did decode: one run shows everything wrong with a file.
// Beyond
// ValidateStructure it checks the files the VM names (kernel and initrd are
// readable, non-empty regular files, and the kernel one paddock boots;
// console.log's directory exists) and the
// limits host gives (zero fields of host are unknown and not checked).
func (vm *VM) Validate(host Host) error {
	c := &checker{vm: vm}
	c.structure()
	c.files()
	c.deviceFiles()
	if vm.Backend != BackendLibvirt {
		// A libvirt VM's host is another machine, maybe: its bridges,
		// taps and RAM are its own, and libvirt checks them.
		c.network()
		if host.CheckPorts {
			c.portsFree()
		}
		c.host(host)
	}
	c.template(host)
	c.tenantExists(host)
	return c.result()
}

// ValidateStructure checks the values alone, without touching the file
// system or the host: name form, cpus and memory ranges, kernel set,
// cmdline form, enum fields, the libvirt fields (URI form, host name,
// domain type, what a libvirt VM cannot have). It suits configs meant
// for another machine, and tests.
func (vm *VM) ValidateStructure() error {
	c := &checker{vm: vm}
	c.structure()
	return c.result()
}

// checker collects the problems of one VM, at most one per field.
type checker struct {
	vm   *VM
	errs []*Error
	bad  map[string]bool // fields already reported
}

// add records a problem with field unless one is already recorded, or
// decoding reported the field.
func (c *checker) add(field, format string, args ...any) {
	if c.skip(field) {
		return
	}
	if c.bad == nil {
		c.bad = map[string]bool{}
	}
	c.bad[field] = true
	c.errs = append(c.errs, c.vm.Errorf(field, format, args...).(*Error))
}

// skip reports whether field has a problem already: one the checker
// recorded, or one decoding reported about it or a field containing it.
func (c *checker) skip(field string) bool {
	return c.bad[field] || c.vm.src.hasFailed(field)
}

// result joins decoding's problems and the checker's, in file order.
func (c *checker) result() error {
	var decoded []*Error
	if c.vm.src != nil {
		decoded = c.vm.src.problems
	}
	return joinProblems(slices.Concat(decoded, c.errs))
}

// joinProblems sorts problems by position, so they read in file order
// (those without a line last), and joins them; nil if there are none.
func joinProblems(problems []*Error) error {
	line := func(e *Error) int {
		if e.Line == 0 {
			return math.MaxInt
		}
		return e.Line
	}
	slices.SortStableFunc(problems, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(line(a), line(b)), cmp.Compare(a.Column, b.Column))
	})
	errs := make([]error, len(problems))
	for i, e := range problems {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// structure checks every field's value on its own.
func (c *checker) structure() {
	vm := c.vm
	switch {
	case vm.Name == "":
		c.add("name", "must be set: a DNS label such as %q", "web-1")
	case len(vm.Name) > MaxNameLen:
		c.add("name", "must be a DNS label of at most %d characters, got %d", MaxNameLen, len(vm.Name))
	case !validName(vm.Name):
		c.add("name", "must be a DNS label (at most %d lowercase letters, digits and '-', starting and ending with a letter or digit), got %s", MaxNameLen, quote(vm.Name))
	}
	c.tenant()
	if vm.CPUs < 1 || vm.CPUs > MaxCPUs {
		c.add("cpus", "must be between 1 and %d, got %d", MaxCPUs, vm.CPUs)
	}
	switch {
	case vm.Memory < MinMemory:
		c.add("memory", "must be at least %s, got %s", MinMemory, vm.Memory)
	case vm.Memory > MaxMemory:
		c.add("memory", "must be at most %s, got %s", ByteSize(MaxMemory), vm.Memory)
	case vm.Memory%MemoryAlign != 0:
		c.add("memory", "must be a whole number of MiB, got %s", vm.Memory)
	}
	if vm.Kernel == "" && vm.From == "" {
		c.add("kernel", "must be set: the path of a Linux kernel (bzImage or ELF vmlinux), or from: a template")
	}
	c.from()
	c.cmdline()
	c.devices()
	c.managedNetworks()
	switch vm.Console.Mode {
	case ConsoleStdio, ConsoleLog:
	case ConsoleNone:
		if vm.Console.Log != "" {
			c.add("console.log", "is set but console.mode is none: use mode log or stdio to log the console")
		}
	default:
		c.add("console.mode", "must be one of %s, %s, %s; got %s", ConsoleStdio, ConsoleLog, ConsoleNone, quote(string(vm.Console.Mode)))
	}
	if s := vm.Console.LogSize; s < MinConsoleLogSize || s > MaxConsoleLogSize {
		c.add("console.log_size", "must be between %s and %s, got %s", ByteSize(MinConsoleLogSize), ByteSize(MaxConsoleLogSize), s)
	}
	if k := vm.Console.LogKeep; k < 1 || k > MaxConsoleLogKeep {
		c.add("console.log_keep", "must be between 1 and %d, got %d", MaxConsoleLogKeep, k)
	}
	switch vm.OnReboot {
	case RebootExit, RebootRestart:
	default:
		c.add("on_reboot", "must be one of %s, %s; got %s", RebootExit, RebootRestart, quote(string(vm.OnReboot)))
	}
	switch vm.Restart {
	case RestartNo, RestartOnFailure, RestartAlways:
	default:
		c.add("restart", "must be one of %s, %s, %s; got %s", RestartNo, RestartOnFailure, RestartAlways, quote(string(vm.Restart)))
	}
	c.labels()
	c.cloudInit()
	switch vm.Backend {
	case BackendNative, BackendLibvirt:
	default:
		c.add("backend", "must be %s or %s, got %s", BackendNative, BackendLibvirt, quote(string(vm.Backend)))
	}
	c.libvirt()
}

// labels checks label keys and values.
func (c *checker) labels() {
	labels := c.vm.Labels
	if len(labels) > MaxLabels {
		c.add("labels", "has %d labels; at most %d", len(labels), MaxLabels)
		return
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		field := "labels." + k
		if !validLabelKey(k) {
			c.add(field, "label name must be 1 to %d letters, digits, '.', '_', '-' or '/', starting and ending with a letter or digit; got %s", MaxLabelKeyLen, quote(k))
			continue
		}
		v := labels[k]
		if len(v) > MaxLabelValueLen {
			c.add(field, "value is %d bytes long; at most %d", len(v), MaxLabelValueLen)
			continue
		}
		for i, r := range v {
			if r < 0x20 || r == 0x7f {
				c.add(field, "value must not contain control character %#02x (byte %d)", r, i)
				break
			}
		}
	}
}

// validLabelKey reports whether k is a label name: 1 to MaxLabelKeyLen of
// A-Z, a-z, 0-9, '.', '_', '-' and '/', starting and ending with a letter
// or digit.
func validLabelKey(k string) bool {
	if len(k) == 0 || len(k) > MaxLabelKeyLen {
		return false
	}
	alnum := func(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' }
	if !alnum(k[0]) || !alnum(k[len(k)-1]) {
		return false
	}
	for i := 0; i < len(k); i++ {
		if b := k[i]; !alnum(b) && b != '.' && b != '_' && b != '-' && b != '/' {
			return false
		}
	}
	return true
}

// cmdline checks the kernel command line's length and characters.
func (c *checker) cmdline() {
	s := c.vm.Cmdline
	if len(s) > MaxCmdlineLen {
		c.add("cmdline", "is %d bytes long; the kernel takes at most %d", len(s), MaxCmdlineLen)
		return
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == 0:
			c.add("cmdline", "must not contain a NUL byte (byte %d)", i)
		case b == '\n' || b == '\r':
			c.add("cmdline", "must not contain a line break (byte %d); for a long command line use a folded block, `cmdline: >`", i)
		case b < 0x20 && b != '\t' || b == 0x7f:
			c.add("cmdline", "must not contain control character %#02x (byte %d)", b, i)
		default:
			continue
		}
		return
	}
}

// files checks the files the VM names; fields with a structural problem
// are skipped.
func (c *checker) files() {
	vm := c.vm
	if vm.Kernel != "" && !c.skip("kernel") {
		if err := checkKernel(vm.Kernel); err != nil {
			c.add("kernel", "%w", err)
		}
	}
	if vm.Initrd != "" && !c.skip("initrd") {
		if err := checkReadable(vm.Initrd); err != nil {
			c.add("initrd", "%w", err)
		}
	}
	if vm.Console.Log != "" && !c.skip("console.log") {
		if err := checkLogPath(vm.Console.Log); err != nil {
			c.add("console.log", "%w", err)
		}
	}
	c.cloudInitFiles()
}

// host checks the VM against the host's limits, where known.
func (c *checker) host(h Host) {
	vm := c.vm
	if h.MaxVCPUs > 0 && vm.CPUs > h.MaxVCPUs {
		c.add("cpus", "must be at most %d, the most vCPUs KVM supports on this host, got %d", h.MaxVCPUs, vm.CPUs)
	}
	if h.MemoryBytes > 0 && uint64(vm.Memory) > h.MemoryBytes {
		c.add("memory", "must be at most the host's RAM (%s), got %s", ByteSize(h.MemoryBytes).Approx(), vm.Memory)
	}
}

// validName reports whether s is a DNS label (RFC 1123): 1 to 63 of a-z,
// 0-9 and '-', not starting or ending with '-'.
func validName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-') {
			return false
		}
	}
	return true
}
