package tenant

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/configs"
)

func TestParseLimit(t *testing.T) {
	for _, tc := range []struct {
		flag, value string
		want        Limits
		err         string
	}{
		{"max-vms", "10", Limits{VMs: 10}, ""},
		{"max-cpus", " 16 ", Limits{CPUs: 16}, ""},
		{"max-memory", "32GiB", Limits{Memory: 32 * configs.GiB}, ""},
		{"max-disk", "200G", Limits{Disk: 200 * configs.GiB}, ""},
		{"max-disk", "1MiB", Limits{Disk: configs.MiB}, ""},
		{"max-vms", "unlimited", Limits{}, ""},
		{"max-vms", "0", Limits{}, `--max-vms "0": want a whole number of at least 1, or unlimited`},
		{"max-cpus", "-1", Limits{}, `--max-cpus "-1": want a whole number of at least 1`},
		{"max-cpus", "1.5", Limits{}, `--max-cpus "1.5": want a whole number`},
		{"max-vms", "", Limits{}, `--max-vms "": want a whole number`},
		{"max-memory", "0", Limits{}, `--max-memory "0": want a size of at least 1MiB, or unlimited`},
		{"max-memory", "12 potatoes", Limits{}, `--max-memory: "12 potatoes": unknown unit "potatoes"`},
		{"max-disk", "lots", Limits{}, `--max-disk: `},
		{"max-disk", "1KiB", Limits{}, `want a size of at least 1MiB`},
		{"max-pets", "3", Limits{}, `--max-pets is not a tenant limit (max-vms, max-cpus, max-memory, max-disk)`},
	} {
		var l Limits
		err := ParseLimit(&l, tc.flag, tc.value)
		switch {
		case tc.err == "" && (err != nil || l != tc.want):
			t.Errorf("--%s %q: %+v, %v; want %+v", tc.flag, tc.value, l, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("--%s %q: %v; want an error with %q", tc.flag, tc.value, err, tc.err)
		}
	}
	// unlimited removes a limit that was set.
	l := Limits{VMs: 3, Disk: configs.GiB}
	if err := ParseLimit(&l, "max-disk", Unlimited); err != nil || l != (Limits{VMs: 3}) {
		t.Errorf("unlimited: %+v, %v", l, err)
	}
}

func TestFits(t *testing.T) {
	ten := &Tenant{Name: "acme", Limits: Limits{VMs: 2, CPUs: 4, Memory: configs.GiB, Disk: 10 * configs.GiB}}
	used := Usage{VMs: 1, CPUs: 2, Memory: 512 * configs.MiB, Disk: 5 * configs.GiB}
	for _, tc := range []struct {
		req  Usage
		flag string
	}{
		{Usage{VMs: 1, CPUs: 2, Memory: 512 * configs.MiB, Disk: 5 * configs.GiB}, ""}, // exactly at every limit
		{Usage{VMs: 2}, "max-vms"},
		{Usage{VMs: 1, CPUs: 3}, "max-cpus"},
		{Usage{VMs: 1, CPUs: 1, Memory: 513 * configs.MiB}, "max-memory"},
		{Usage{VMs: 1, Disk: 5*configs.GiB + 1}, "max-disk"},
		{Usage{}, ""},
	} {
		err := ten.Fits(used, tc.req)
		var qe *QuotaError
		switch {
		case tc.flag == "" && err != nil:
			t.Errorf("%+v: %v", tc.req, err)
		case tc.flag != "" && (!errors.As(err, &qe) || qe.Flag != tc.flag || !errors.Is(err, ErrQuota)):
			t.Errorf("%+v: %v; want --%s exceeded", tc.req, err, tc.flag)
		}
	}
	// Over a lowered limit already, a request of nothing more fits.
	over := &Tenant{Name: "acme", Limits: Limits{VMs: 1}}
	if err := over.Fits(Usage{VMs: 3}, Usage{}); err != nil {
		t.Errorf("nothing more over the limit: %v", err)
	}
	if (&Tenant{Name: "x"}).Fits(Usage{VMs: 1 << 20}, Usage{VMs: 1, CPUs: 255, Memory: configs.TiB}) != nil {
		t.Error("no limits refused a request")
	}
}

func TestStore(t *testing.T) {
	home := t.TempDir()
	s, err := Open(home)
	if err != nil {
		t.Fatal(err)
	}
	if names, err := s.Names(); err != nil || strings.Join(names, ",") != "default" {
		t.Errorf("Names of a new store: %v, %v", names, err)
	}
	def, err := s.Get(Default)
	if err != nil || def.Limits != (Limits{}) {
		t.Errorf("default: %+v, %v", def, err)
	}
	if _, err := s.Get("acme"); !errors.Is(err, ErrNotFound) || !errors.Is(err, configs.ErrNoTenant) {
		t.Errorf("Get of none: %v", err)
	}
	acme, err := s.Create("acme", Limits{VMs: 3})
	if err != nil || acme.Limits.VMs != 3 || acme.CreatedAt.IsZero() {
		t.Fatalf("Create: %+v, %v", acme, err)
	}
	fi, err := os.Stat(filepath.Join(home, "tenants", "acme", TenantFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("tenant.json: %v, %v", fi, err)
	}
	if _, err := s.Create("acme", Limits{}); !errors.Is(err, ErrExists) {
		t.Errorf("Create twice: %v", err)
	}
	if _, err := s.Create("Acme", Limits{}); err == nil || !strings.Contains(err.Error(), `"Acme" is not a tenant name`) {
		t.Errorf("Create of a bad name: %v", err)
	}
	if _, err := s.Create("neg", Limits{VMs: -1}); err == nil {
		t.Error("Create with a negative limit")
	}
	lk, err := s.Lock(Default)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetLimits(lk, Limits{CPUs: 8}); err != nil {
		t.Fatal(err)
	}
	lk.Unlock()
	if def, err := s.Get(Default); err != nil || def.Limits.CPUs != 8 {
		t.Errorf("default after SetLimits: %+v, %v", def, err)
	}
	if names, err := s.Names(); err != nil || strings.Join(names, ",") != "acme,default" {
		t.Errorf("Names: %v, %v", names, err)
	}
	inUse := errors.New("it has VMs")
	if err := s.Remove("acme", func() error { return inUse }); !errors.Is(err, inUse) {
		t.Errorf("Remove in use: %v", err)
	}
	if err := s.Remove("acme", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("acme"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
	if err := s.Remove(Default, func() error { return nil }); err == nil {
		t.Error("Remove of the default tenant")
	}
	// A record that does not match its directory, or of a newer paddock,
	// is refused.
	dir := filepath.Join(home, "tenants", "globex")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ json, want string }{
		{`{"version": 1, "name": "acme"}`, `name "acme" does not match its directory`},
		{`{"version": 9, "name": "globex"}`, `version 9 is newer than this paddock's (1)`},
		{`{"version": 1, "name": "globex", "limits": {"max_vms": -2}}`, `limits must not be negative`},
		{`{"version": 1,`, `unexpected end of JSON input`},
	} {
		if err := os.WriteFile(filepath.Join(dir, TenantFile), []byte(tc.json), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get("globex"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("record %s: %v; want %q", tc.json, err, tc.want)
		}
	}
}

func TestOpenRefusesUnsafe(t *testing.T) {
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, "tenants"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(home, "tenants"), 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(home); err == nil || !strings.Contains(err.Error(), "writable by other users") {
		t.Errorf("Open with tenants/ 0777: %v", err)
	}
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("acme", Limits{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.Dir("acme"), 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("acme"); err == nil || !strings.Contains(err.Error(), "writable by other users") {
		t.Errorf("Get of a tenant directory 0777: %v", err)
	}
	if err := os.Chmod(s.Dir("acme"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(s.Dir("acme"), TenantFile), 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("acme"); err == nil || !strings.Contains(err.Error(), "writable by other users") {
		t.Errorf("Get of a tenant.json 0666: %v", err)
	}
}
