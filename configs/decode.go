package configs

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// vmFields, consoleFields and libvirtFields list the keys of each mapping,
// in the order docs/yaml.md documents them.
func vmFields() []string {
	return []string{"name", "labels", "tenant", "from", "root_size", "cpus", "memory", "kernel", "initrd", "cmdline", "disks", "nics", "ports", "rng", "console", "on_reboot", "restart", "backend", "libvirt", "cloud_init", "user", "ssh_keys", "user_data"}
}

func consoleFields() []string { return []string{"mode", "log", "log_size", "log_keep"} }

func libvirtFields() []string { return []string{"host", "uri", "type"} }

// decoder turns a YAML node tree into a VM, collecting every problem rather
// than stopping at the first.
type decoder struct {
	dir     string   // absolute directory relative paths are resolved against
	src     *source  // positions of the fields decoded so far
	errs    []*Error // at most maxProblems
	dropped int      // problems beyond maxProblems
}

// maxProblems bounds the problems decoding reports: past it, the file is
// likely not a VM config at all.
const maxProblems = 25

// errorf records a problem about field at n's position.
func (d *decoder) errorf(n *yaml.Node, field, format string, args ...any) {
	d.src.failed[field] = true
	if len(d.errs) >= maxProblems {
		d.dropped++
		return
	}
	d.errs = append(d.errs, &Error{
		File: d.src.file, Line: n.Line, Column: n.Column,
		Field: field, Err: fmt.Errorf(format, args...),
	})
}

// decodeVM fills vm from the top-level mapping n.
func (d *decoder) decodeVM(n *yaml.Node, vm *VM) {
	d.fields(n, "", vmFields(), func(key, field string, v *yaml.Node) {
		switch key {
		case "name":
			vm.Name, _ = d.scalar(field, v, "a string")
		case "cpus":
			vm.CPUs = d.integer(field, v)
		case "memory":
			vm.Memory = d.size(field, v)
		case "tenant":
			vm.Tenant, _ = d.scalar(field, v, "a tenant's name")
		case "from":
			vm.From, _ = d.scalar(field, v, "a template's name")
		case "root_size":
			vm.RootSize = d.size(field, v)
		case "kernel":
			vm.Kernel = d.path(field, v)
		case "initrd":
			vm.Initrd = d.path(field, v)
		case "cmdline":
			vm.Cmdline = d.cmdline(field, v)
		case "disks":
			vm.Disks = d.disks(field, v)
		case "nics":
			vm.NICs = d.nics(field, v)
		case "ports":
			vm.Ports = d.ports(field, v)
		case "rng":
			vm.RNG = d.boolean(field, v)
		case "console":
			d.console(field, v, &vm.Console)
		case "on_reboot":
			s, _ := d.scalar(field, v, "exit or restart")
			vm.OnReboot = RebootAction(s)
		case "restart":
			s, _ := d.scalar(field, v, "no, on-failure or always")
			vm.Restart = RestartPolicy(s)
		case "labels":
			vm.Labels = d.labels(field, v)
		case "backend":
			s, _ := d.scalar(field, v, "native or libvirt")
			vm.Backend = Backend(s)
		case "cloud_init":
			vm.CloudInit = d.boolean(field, v)
		case "user":
			vm.User, _ = d.scalar(field, v, "a user name")
		case "ssh_keys":
			vm.SSHKeys = d.sshKeys(field, v)
		case "user_data":
			vm.UserData, _ = d.scalar(field, v, "a cloud-config document")
		case "libvirt":
			if v.Kind != yaml.MappingNode {
				d.errorf(v, field, "must be a mapping such as {uri: %s}, got %s", DefaultLibvirtURI, describe(v))
				return
			}
			d.fields(v, field, libvirtFields(), func(key, field string, v *yaml.Node) {
				switch key {
				case "host":
					vm.Libvirt.Host, _ = d.scalar(field, v, "a host name (paddock host ls) or auto")
				case "uri":
					vm.Libvirt.URI, _ = d.scalar(field, v, "a libvirt URI")
				case "type":
					vm.Libvirt.Type, _ = d.scalar(field, v, "auto, kvm or qemu")
				}
			})
		}
	})
}

// labels decodes the labels mapping: keys and values are scalars, taken
// as text (`tier: 1` is the label tier="1"). Key and value rules are
// Validate's.
func (d *decoder) labels(field string, v *yaml.Node) map[string]string {
	if v.Kind != yaml.MappingNode {
		d.errorf(v, field, "must be a mapping of names to values such as {tier: web}, got %s", describe(v))
		return nil
	}
	labels := map[string]string{}
	first := map[string]int{} // key -> line it was first set on
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := deref(v.Content[i]), deref(v.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
			d.errorf(k, field, "label names must be plain text, got %s", describe(k))
			continue
		}
		key, ok := d.scalar(field, k, "a label name")
		if !ok {
			continue
		}
		kf := field + "." + key
		if line, dup := first[key]; dup {
			d.errorf(k, kf, "duplicate label: already set on line %d", line)
			continue
		}
		first[key] = k.Line
		d.src.fields[kf] = pos{k.Line, k.Column}
		if isNull(val) {
			d.errorf(val, kf, "has no value: write one, or \"\" for an empty one")
			continue
		}
		s, ok := d.scalar(kf, val, "a text value")
		if ok {
			labels[key] = s
		}
	}
	return labels
}

// console decodes `console: MODE` or `console: {mode: MODE, log: PATH}`.
func (d *decoder) console(field string, v *yaml.Node, c *Console) {
	switch v.Kind {
	case yaml.ScalarNode:
		s, ok := d.scalar(field, v, "stdio, log or none")
		if ok {
			d.src.fields[field+".mode"] = pos{v.Line, v.Column}
			c.Mode = ConsoleMode(s)
		}
	case yaml.MappingNode:
		d.fields(v, field, consoleFields(), func(key, field string, v *yaml.Node) {
			switch key {
			case "mode":
				s, _ := d.scalar(field, v, "stdio, log or none")
				c.Mode = ConsoleMode(s)
			case "log":
				c.Log = d.path(field, v)
			case "log_size":
				c.LogSize = d.size(field, v)
			case "log_keep":
				c.LogKeep = d.integer(field, v)
			}
		})
	default:
		d.errorf(v, field, "must be a mode (stdio, log or none) or a mapping with mode, log, log_size and log_keep, got %s", describe(v))
	}
}

// fields walks the mapping n at path prefix ("" for the top level): it
// reports keys that are unknown, duplicated or not names, skips null values
// (`key:` or `key: ~` mean "not set") and, for each other value, records its
// position and calls set with the key, its field path and the value (aliases
// resolved, positioned where the alias is used).
func (d *decoder) fields(n *yaml.Node, prefix string, known []string, set func(key, field string, v *yaml.Node)) {
	first := map[string]int{} // key -> line it was first set on
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, prefix, "keys must be field names, got %s", describe(k))
			continue
		}
		field := k.Value
		if len(field) > maxQuoted { // an absurd key; keep messages short
			field = strings.ToValidUTF8(field[:maxQuoted], "") + "..."
		}
		field = joinField(prefix, field)
		if k.ShortTag() == "!!merge" {
			d.errorf(k, field, "merge keys are not supported: write the fields out")
			continue
		}
		if line, dup := first[k.Value]; dup {
			d.errorf(k, field, "duplicate key: already set on line %d", line)
			continue
		}
		first[k.Value] = k.Line
		if !slices.Contains(known, k.Value) {
			hint, meant := suggest(k.Value, known)
			d.errorf(k, field, "unknown field%s", hint)
			if meant != "" && !hasKey(n, meant) {
				// "kernal" was meant to be the kernel: no "kernel
				// must be set" on top of the typo.
				d.src.failed[joinField(prefix, meant)] = true
			}
			continue
		}
		if isNull(v) {
			continue
		}
		d.src.fields[field] = pos{v.Line, v.Column}
		set(k.Value, field, v)
	}
}

// hasKey reports whether the mapping n has the key.
func hasKey(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := deref(n.Content[i]); k.Kind == yaml.ScalarNode && k.Value == key {
			return true
		}
	}
	return false
}

// joinField is the path of field key inside the mapping at prefix.
func joinField(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// deref resolves an alias to a copy of its target placed at the alias, so
// problems point where the value is used.
func deref(n *yaml.Node) *yaml.Node {
	if n.Kind != yaml.AliasNode {
		return n
	}
	t := resolveAlias(n)
	if t.Kind == yaml.AliasNode { // a chain too long to follow
		return n
	}
	c := *t
	c.Line, c.Column = n.Line, n.Column
	return &c
}

// suggest returns ` (did you mean "x"?)` and x for the known field
// closest to an unknown one, else the list of known fields and "".
func suggest(name string, known []string) (hint, meant string) {
	if best := closest(name, known); best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best), best
	}
	return "; known fields: " + strings.Join(known, ", "), ""
}

// closest returns the name in known nearest to name (case aside): within
// two edits (one for names of four letters or fewer), or containing it;
// "" if none is.
func closest(name string, known []string) string {
	lower := strings.ToLower(name)
	best, bestDist := "", -1
	for _, k := range known {
		dist := editDistance(lower, k)
		maxDist := 2
		if len(lower) <= 4 {
			maxDist = 1
		}
		near := dist <= maxDist || (len(lower) >= 3 && strings.Contains(k, lower))
		if near && (best == "" || dist < bestDist) {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b)) // not worth computing for suggestions
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// scalar returns the text of a scalar value; want describes the expected
// value for the message when v is a mapping, list, binary or custom-tagged.
func (d *decoder) scalar(field string, v *yaml.Node, want string) (string, bool) {
	if v.Kind != yaml.ScalarNode {
		d.errorf(v, field, "must be %s, got %s", want, describe(v))
		return "", false
	}
	switch tag := v.ShortTag(); tag {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
		return v.Value, true
	case "!!binary":
		d.errorf(v, field, "must be %s, got binary data", want)
	default:
		d.errorf(v, field, "unsupported YAML tag %s", tag)
	}
	return "", false
}

// integer decodes a whole number.
func (d *decoder) integer(field string, v *yaml.Node) int {
	var n int
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&n) != nil {
		d.errorf(v, field, "must be an integer, got %s", describe(v))
		return 0
	}
	return n
}

// size decodes a ByteSize.
func (d *decoder) size(field string, v *yaml.Node) ByteSize {
	s, ok := d.scalar(field, v, "a size such as 512MiB")
	if !ok {
		return 0
	}
	b, err := ParseByteSize(s)
	if err != nil {
		d.errorf(v, field, "%w", err)
		return 0
	}
	return b
}

// cmdline decodes the kernel command line. A block scalar (`cmdline: >`)
// is the natural way to write a long one; its final line break is dropped.
func (d *decoder) cmdline(field string, v *yaml.Node) string {
	s, _ := d.scalar(field, v, "a string")
	if v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		s = strings.TrimRight(s, "\n")
	}
	return s
}

// path decodes a file path, resolved to an absolute one.
func (d *decoder) path(field string, v *yaml.Node) string {
	s, ok := d.scalar(field, v, "a file path")
	if !ok || s == "" {
		return s
	}
	p, err := resolvePath(s, d.dir)
	if err != nil {
		d.errorf(v, field, "%w", err)
		return s
	}
	return p
}

// resolvePath expands a leading ~ or ~user and makes p absolute relative to
// dir.
func resolvePath(p, dir string) (string, error) {
	if rest, ok := strings.CutPrefix(p, "~"); ok {
		userName, tail, _ := strings.Cut(rest, "/")
		var home string
		if userName == "" {
			h, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("expand ~ in %q: %w", p, err)
			}
			home = h
		} else {
			u, err := user.Lookup(userName)
			if err != nil {
				return "", fmt.Errorf("expand ~%s in %q: %w", userName, p, err)
			}
			home = u.HomeDir
		}
		p = filepath.Join(home, tail)
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	return filepath.Clean(p), nil
}
