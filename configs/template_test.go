package configs

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// templates is a TemplateLookup over a fixed set, as the template store
// answers it.
type templates map[string]TemplateFacts

func (ts templates) Template(name string) (TemplateFacts, error) {
	if name == "broken" {
		return TemplateFacts{}, errors.New("template broken: template.json: version 9 written by a newer paddock")
	}
	f, ok := ts[name]
	if !ok {
		return TemplateFacts{}, fmt.Errorf("template %s: %w", name, ErrNoTemplate)
	}
	return f, nil
}

func (ts templates) TemplateNames() []string {
	var names []string
	for n := range ts {
		names = append(names, n)
	}
	return names
}

var testTemplates = templates{
	"debian-12": {RootSize: 4 << 30, Disks: 1, Cmdline: "root=UUID=x ro console=ttyS0"},
	"db-base":   {RootSize: 8 << 30, Disks: 2, Cmdline: "root=UUID=y ro console=ttyS0"},
}

func TestFromErrors(t *testing.T) {
	dir := testTree(t)
	host := Host{Templates: testTemplates}
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"plain", "name: web\nfrom: debian-12\n", ""},
		{"root_size", "name: web\nfrom: debian-12\nroot_size: 8GiB\ncmdline: quiet\n", ""},
		{"same size", "name: web\nfrom: db-base\nroot_size: 8GiB\n", ""},
		{"typo", "name: web\nfrom: debain-12\n",
			`$DIR/hello.yaml:2:7: from: no template named "debain-12"; did you mean "debian-12"? (paddock template ls lists them)`},
		{"unknown", "name: web\nfrom: ubuntu-24\n",
			`$DIR/hello.yaml:2:7: from: no template named "ubuntu-24" (paddock template ls lists them; paddock template build debian-12 makes one)`},
		{"unusable", "name: web\nfrom: broken\n",
			`$DIR/hello.yaml:2:7: from: template broken: template.json: version 9 written by a newer paddock`},
		{"not a name", "name: web\nfrom: Debian 12\n",
			`$DIR/hello.yaml:2:7: from: must name a template (a DNS label such as debian-12; paddock template ls lists them), got "Debian 12"`},
		{"kernel too", "name: web\nfrom: debian-12\nkernel: vmlinuz\ninitrd: initrd.img\n",
			"$DIR/hello.yaml:3:9: kernel: comes from the template (from: debian-12): leave it out, or leave out from: to boot your own\n" +
				"$DIR/hello.yaml:4:9: initrd: comes from the template (from: debian-12): leave it out, or leave out from: to boot your own"},
		{"root_size alone", "name: web\nkernel: vmlinuz\nroot_size: 8GiB\n",
			"$DIR/hello.yaml:3:12: root_size: is only for a VM made from a template: set from: too, or size the VM's own disks"},
		{"shrink", "name: web\nfrom: debian-12\nroot_size: 2GiB\n",
			"$DIR/hello.yaml:3:12: root_size: is 2GiB, smaller than the root disk of template debian-12 (4GiB): a VM's root disk can only be larger"},
		{"odd size", "name: web\nfrom: debian-12\nroot_size: 4194305KiB\n",
			"$DIR/hello.yaml:3:12: root_size: must be a whole number of MiB, got 4194305KiB"},
		{"zero", "name: web\nfrom: debian-12\nroot_size: 0\n",
			"$DIR/hello.yaml:3:12: root_size: must be a positive size such as 8GiB, got 0B"},
		{"huge", "name: web\nfrom: debian-12\nroot_size: 65TiB\n",
			"$DIR/hello.yaml:3:12: root_size: must be at most 64TiB, got 65TiB"},
		{"libvirt", "name: web\nfrom: debian-12\nbackend: libvirt\n", ""},
		{"libvirt shrink", "name: web\nfrom: debian-12\nbackend: libvirt\nroot_size: 2GiB\n",
			"$DIR/hello.yaml:4:12: root_size: is 2GiB, smaller than the root disk of template debian-12 (4GiB): a VM's root disk can only be larger"},
		{"no kernel, no from", "name: web\n",
			"$DIR/hello.yaml:1:1: kernel: must be set: the path of a Linux kernel (bzImage or ELF vmlinux), or from: a template"},
		{"long cmdline", "name: web\nfrom: debian-12\ncmdline: " + strings.Repeat("x", 2030) + "\n",
			"$DIR/hello.yaml:3:10: cmdline: added to template debian-12's command line it is 2059 bytes long; the kernel takes at most 2047"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := check(t, dir, tc.yaml, host); got != tc.want {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestFromWithoutStore: without a template store to ask (a file checked
// for another host), from: is checked only for its form.
func TestFromWithoutStore(t *testing.T) {
	dir := testTree(t)
	if got := check(t, dir, "name: web\nfrom: anything\nroot_size: 1GiB\n", Host{}); got != "" {
		t.Errorf("problems without a template store: %s", got)
	}
}

// TestFromDefaults: a VM from a template has no cmdline of its own by
// default; from and root_size survive a YAML round trip.
func TestFromDefaults(t *testing.T) {
	vm, err := Parse([]byte("name: web\nfrom: debian-12\nroot_size: 8GiB\n"), "web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	if vm.Cmdline != "" || vm.From != "debian-12" || vm.RootSize != 8*GiB {
		t.Errorf("cmdline %q, from %q, root_size %s", vm.Cmdline, vm.From, vm.RootSize)
	}
	data, err := yaml.Marshal(vm)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(data, "web.yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if back.From != vm.From || back.RootSize != vm.RootSize {
		t.Errorf("round trip:\n%s", data)
	}
}

// TestFromDeviceCount: the template's disks count against the PCI slots.
func TestFromDeviceCount(t *testing.T) {
	dir := testTree(t)
	deviceTree(t, dir)
	var b strings.Builder
	b.WriteString("name: web\nfrom: db-base\nnics:\n")
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&b, "  - {tap: tap%d}\n", i)
	}
	got := check(t, dir, b.String(), Host{Templates: testTemplates})
	if !strings.Contains(got, "disks: the template's 2 disks, 0 more disks and 30 NICs make 32 devices: at most 31 fit on the PCI bus") {
		t.Errorf("problems:\n%s", got)
	}
}
