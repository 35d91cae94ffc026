package store

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
)

func TestCreateRecordsIdentity(t *testing.T) {
	s := newStore(t)
	seen := map[uuid.UUID]string{}
	for _, n := range []string{"a", "b", "c"} {
		v, err := s.Create(n, []byte("name: "+n+"\n"), Record{Phase: PhaseCreated})
		if err != nil {
			t.Fatal(err)
		}
		id, ok, err := v.ReadIdentity()
		if err != nil || !ok {
			t.Fatalf("%s: ReadIdentity = %v, %v, %v", n, id, ok, err)
		}
		if id.UUID.Version() != 4 || id.UUID.Variant() != uuid.RFC4122 {
			t.Errorf("%s: UUID %s is version %d variant %v; want a random (version 4) RFC 4122 UUID", n, id.UUID, id.UUID.Version(), id.UUID.Variant())
		}
		if other, dup := seen[id.UUID]; dup {
			t.Errorf("VMs %s and %s share UUID %s", other, n, id.UUID)
		}
		seen[id.UUID] = n
		fi, err := os.Stat(v.Path(IdentityFile))
		if err != nil || fi.Mode().Perm() != identityMode {
			t.Errorf("%s: identity.json: %v, %v; want mode %o", n, fi, err, identityMode)
		}
		// EnsureIdentity keeps what Create recorded.
		again, err := v.EnsureIdentity()
		if err != nil || again != id {
			t.Errorf("%s: EnsureIdentity = %v, %v; want %v", n, again, err, id)
		}
	}
}

// TestEnsureIdentityForOldVM checks a VM created before identities: the
// first EnsureIdentity records one, later calls (also concurrent ones, as
// from two processes) all return that one.
func TestEnsureIdentityForOldVM(t *testing.T) {
	s := newStore(t)
	v, err := s.Create("old", []byte("name: old\n"), Record{Phase: PhaseCreated})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(v.Path(IdentityFile)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := v.ReadIdentity(); ok || err != nil {
		t.Fatalf("ReadIdentity without identity.json = %v, %v; want none, no error", ok, err)
	}
	const n = 16
	ids := make([]Identity, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ids[i], errs[i] = v.EnsureIdentity() })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("EnsureIdentity %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("EnsureIdentity %d = %v, another call got %v", i, ids[i], ids[0])
		}
	}
	got, ok, err := v.ReadIdentity()
	if err != nil || !ok || got != ids[0] {
		t.Errorf("ReadIdentity after EnsureIdentity = %v, %v, %v; want %v", got, ok, err, ids[0])
	}
	ents, _ := os.ReadDir(v.Dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover %s in the VM's directory", e.Name())
		}
	}
}

// TestIdentityDamaged checks that a damaged or newer identity.json is
// refused with the file named, and never replaced: the guest knows the VM
// by its UUID.
func TestIdentityDamaged(t *testing.T) {
	s := newStore(t)
	v, err := s.Create("vm", []byte("name: vm\n"), Record{Phase: PhaseCreated})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ content, want string }{
		{"{", "unexpected end of JSON input"},
		{`{"version": 1, "uuid": "not-a-uuid"}`, `uuid "not-a-uuid"`},
		{`{"version": 1, "uuid": "00000000-0000-0000-0000-000000000000"}`, "nil UUID"},
		{`{"version": 9, "uuid": "6f1e6d43-9a61-4e07-9f43-4c1f6a0cfa3e"}`, "version 9 written by a newer paddock"},
	} {
		path := v.Path(IdentityFile)
		os.Remove(path)
		if err := os.WriteFile(path, []byte(tc.content), 0o400); err != nil {
			t.Fatal(err)
		}
		for _, op := range []func() error{
			func() error { _, _, err := v.ReadIdentity(); return err },
			func() error { _, err := v.EnsureIdentity(); return err },
		} {
			err := op()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "remove it to give the VM a new UUID") {
				t.Errorf("%q: %v; want an error naming %s with %q and the way out", tc.content, err, path, tc.want)
			}
		}
		if tc.want == "version 9 written by a newer paddock" {
			_, _, err := v.ReadIdentity()
			if !errors.Is(err, ErrRecordVersion) {
				t.Errorf("newer identity.json: %v; want ErrRecordVersion", err)
			}
		}
		if data, _ := os.ReadFile(path); string(data) != tc.content {
			t.Errorf("%q was rewritten to %q", tc.content, data)
		}
	}
}

func TestIdentityTrusted(t *testing.T) {
	s := newStore(t)
	v, err := s.Create("vm", []byte("name: vm\n"), Record{Phase: PhaseCreated})
	if err != nil {
		t.Fatal(err)
	}
	chmod(t, v.Path(IdentityFile), 0o646)
	_, err = s.VM("vm")
	wantUnsafe(t, err, v.Path(IdentityFile), "writable by other users (mode 0646)")
	chmod(t, v.Path(IdentityFile), 0o400)
	if _, err := s.VM("vm"); err != nil {
		t.Errorf("VM with identity.json 0400: %v", err)
	}
}
