package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTenantCommands drives paddock tenant and the tenant: field through
// the command line: limits and their bad values, a quota refusal, an
// unknown tenant, ls --tenant and its column, and rm of a tenant with
// VMs. Each refusal is one sentence on standard error with its exit
// status, and leaves nothing behind.
func TestTenantCommands(t *testing.T) {
	dir := managedHome(t) // the VM idle, of the default tenant
	write := func(name, yaml string) string {
		f := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	steps := []struct {
		args   []string
		status int
		stdout string // a substring of it
		stderr string // the whole of it
	}{
		{[]string{"tenant", "create", "bad", "--max-memory", "12 potatoes"}, codeUsage, "",
			`paddock: --max-memory: "12 potatoes": unknown unit "potatoes": want B, KiB, MiB, GiB, TiB, PiB or EiB (K, M, G... and KB, MB, GB... mean the same); or unlimited for no limit` + "\n"},
		{[]string{"tenant", "create", "bad", "--max-vms", "0"}, codeUsage, "",
			`paddock: --max-vms "0": want a whole number of at least 1, or unlimited (a limit of 0 would allow nothing; paddock tenant rm removes a tenant)` + "\n"},
		{[]string{"tenant", "create", "bad", "--max-cpus", "-3"}, codeUsage, "",
			`paddock: --max-cpus "-3": want a whole number of at least 1, or unlimited (a limit of 0 would allow nothing; paddock tenant rm removes a tenant)` + "\n"},
		{[]string{"tenant", "create", "bad", "--max-disk", "0GiB"}, codeUsage, "",
			`paddock: --max-disk "0GiB": want a size of at least 1MiB, or unlimited (a limit of 0 would allow nothing)` + "\n"},
		{[]string{"tenant", "create", "acme", "--max-vms", "1", "--max-memory", "1GiB"}, 0, "acme: created", ""},
		{[]string{"tenant", "create", "acme"}, codeWrongState, "", "paddock: tenant acme: exists already\n"},
		{[]string{"create", "-f", write("a", "name: a\ntenant: acme\nmemory: 64MiB\nkernel: vmlinuz\nconsole: log\n")}, 0, "a: created", ""},
		{[]string{"create", "-f", write("b", "name: b\ntenant: acme\nmemory: 64MiB\nkernel: vmlinuz\nconsole: log\n")}, codeWrongState, "",
			"paddock: VM b: tenant acme: 1 of 1 VMs exist, and this asks for 1 more (--max-vms 1): remove some or raise the limit (paddock tenant set acme --max-vms ...)\n"},
		{[]string{"create", "-f", write("c", "name: c\ntenant: acmee\nmemory: 64MiB\nkernel: vmlinuz\nconsole: log\n")}, 1, "",
			filepath.Join(dir, "c.yaml") + `:2:9: tenant: no tenant named "acmee"; did you mean "acme"? (paddock tenant ls lists them)` + "\n"},
		{[]string{"tenant", "set", "acme", "--max-vms", "2"}, 0, "acme: limits --max-vms 2 --max-cpus unlimited --max-memory 1GiB --max-disk unlimited", ""},
		{[]string{"create", "-f", filepath.Join(dir, "b.yaml")}, 0, "b: created", ""},
		{[]string{"ls"}, 0, "NAME  TENANT   STATE", ""},
		{[]string{"ls", "-q", "--tenant", "acme"}, 0, "a\nb\n", ""},
		{[]string{"ls", "--tenant", "acm"}, codeNoVM, "", "paddock: no tenant named 'acm'; did you mean 'acme'?\n"},
		{[]string{"tenant", "ls"}, 0, "acme     2/2  2/-   128MiB/1GiB  0B/-  0", ""},
		{[]string{"tenant", "inspect", "acme"}, 0, `"vms": [
    "a",
    "b"
  ]`, ""},
		{[]string{"tenant", "rm", "acme"}, codeWrongState, "", "paddock: tenant acme is in use: it has VMs a, b (paddock rm); remove them first\n"},
		{[]string{"rm", "a", "b"}, 0, "", ""},
		{[]string{"tenant", "rm", "acme"}, 0, "acme: removed", ""},
		{[]string{"tenant", "inspect", "acme"}, codeNoVM, "", "paddock: no tenant named 'acme' (paddock tenant ls lists them; paddock tenant create acme makes it)\n"},
	}
	for _, s := range steps {
		stdout, stderr, status := runPaddock(t, "", s.args...)
		if status != s.status || !strings.Contains(stdout, s.stdout) || stderr != s.stderr {
			t.Errorf("paddock %s: status %d, stdout %q, stderr %q\nwant status %d, stdout with %q, stderr %q", strings.Join(s.args, " "), status, stdout, stderr, s.status, s.stdout, s.stderr)
		}
	}
	if stdout, _, _ := runPaddock(t, "", "tenant", "ls", "-q"); stdout != "default\n" {
		t.Errorf("tenant ls after rm: %q", stdout)
	}
}

// TestLsWithoutTenants checks that ls's table has no TENANT column while
// every VM is the default tenant's: it is as it was before tenants.
func TestLsWithoutTenants(t *testing.T) {
	managedHome(t)
	stdout, _, status := runPaddock(t, "", "ls")
	if status != 0 || !strings.HasPrefix(stdout, "NAME  STATE    CPUS  MEMORY  UPTIME  ADDRESS  BACKEND\n") {
		t.Errorf("ls: status %d\n%s", status, stdout)
	}
}
