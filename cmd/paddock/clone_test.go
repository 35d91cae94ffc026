package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// TestCloneCommands: template create --from a stopped VM, clone (one,
// then -n 2), from: of the VM-made template in a YAML file, template
// inspect naming every dependant, and the refusals with their exit
// statuses and sentences.
func TestCloneCommands(t *testing.T) {
	testenv.RequireTool(t, "qemu-img", "qemu-utils")
	t.Setenv(store.EnvHome, t.TempDir())
	makeTemplate(t, "tiny")
	dir := t.TempDir()
	files := map[string]string{
		"web.yaml":  "name: web\nfrom: tiny\nconsole: log\nmemory: 64MiB\n",
		"from.yaml": "name: yaml-clone\nfrom: web-tpl\nconsole: log\nmemory: 64MiB\ncmdline: quiet\n",
	}
	for name, yaml := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, stderr, status := runPaddock(t, "", "create", "-f", filepath.Join(dir, "web.yaml")); status != 0 {
		t.Fatalf("create: %d %s", status, stderr)
	}
	if out, stderr, status := runPaddock(t, "", "template", "create", "web-tpl", "--from", "web"); status != 0 || !strings.HasPrefix(out, "web-tpl: made from VM web (") {
		t.Fatalf("template create: %d %q %s", status, out, stderr)
	}
	if out, stderr, status := runPaddock(t, "", "clone", "web-tpl", "one"); status != 0 || out != "one: created\n" {
		t.Fatalf("clone: %d %q %s", status, out, stderr)
	}
	if out, stderr, status := runPaddock(t, "", "clone", "web-tpl", "many", "-n", "2"); status != 0 || out != "many-1: created\nmany-2: created\n" {
		t.Fatalf("clone -n 2: %d %q %s", status, out, stderr)
	}
	if _, stderr, status := runPaddock(t, "", "create", "-f", filepath.Join(dir, "from.yaml")); status != 0 {
		t.Fatalf("create with from: a VM-made template: %d %s", status, stderr)
	}
	if out, _, _ := runPaddock(t, "", "template", "inspect", "web-tpl"); !strings.Contains(out, `"vms": [
    "many-1",
    "many-2",
    "one",
    "yaml-clone"
  ]`) || !strings.Contains(out, `"kind": "vm"`) || !strings.Contains(out, `"vm": "web"`) {
		t.Errorf("template inspect of a VM-made template with clones:\n%s", out)
	}
	for _, tc := range []struct {
		args   []string
		status int
		stderr string
	}{
		{[]string{"clone", "web-tpl", "x", "-n", "0"}, 2, "paddock: -n 0: the number of clones must be 1 to 1000\n"},
		{[]string{"clone", "web-tpl", "one"}, 4, "paddock: a VM named 'one' exists already: remove it (paddock rm one) or pick another name (--name)\n"},
		{[]string{"clone", "web-tp", "x"}, 3, "paddock: no template named 'web-tp'; did you mean 'web-tpl'?\n"},
		{[]string{"clone", "web-tpl"}, 2, ""},
		{[]string{"template", "create", "web-tpl", "--from", "web"}, 4, ""},
		{[]string{"template", "create", "t2", "--from", "nosuch"}, 3, ""},
		{[]string{"template", "create", "t2"}, 2, ""},
		{[]string{"template", "create", "t2", "--from", "web", "--memory"}, 4, "paddock: cannot make a warm template of VM 'web': it is created; --memory saves a running VM's memory: start it first (paddock start web), or leave out --memory for a cold template of its disks\n"},
		{[]string{"template", "rm", "web-tpl"}, 4, "paddock: cannot remove template 'web-tpl': VMs many-1, many-2, one, yaml-clone use it (their disks are overlays on its disks); remove them first (paddock rm many-1 many-2 one yaml-clone)\n"},
	} {
		_, stderr, status := runPaddock(t, "", tc.args...)
		if status != tc.status || tc.stderr != "" && stderr != tc.stderr {
			t.Errorf("paddock %s: status %d, stderr %q; want %d %q", strings.Join(tc.args, " "), status, stderr, tc.status, tc.stderr)
		}
	}
	if out, _, _ := runPaddock(t, "", "ls", "-q"); out != "many-1\nmany-2\none\nweb\nyaml-clone\n" {
		t.Errorf("VMs after the refusals: %q", out)
	}
	// The template's base changed after it was made: status 1, the file
	// named, no clone made.
	base := filepath.Join(os.Getenv(store.EnvHome), "templates", "web-tpl", "disks", "root.qcow2")
	if err := os.Chmod(base, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(base, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt([]byte{0xff}, 1<<20+17)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := "paddock: template web-tpl: " + base + " changed after the template was made"
	if _, stderr, status := runPaddock(t, "", "clone", "web-tpl", "late", "-n", "2"); status != 1 || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("clone of a template whose base changed: status %d, stderr %q; want 1 and one line starting %q", status, stderr, want)
	}
	if out, _, _ := runPaddock(t, "", "ls", "-q"); out != "many-1\nmany-2\none\nweb\nyaml-clone\n" {
		t.Errorf("VMs after the refused clone of a changed template: %q", out)
	}
}
