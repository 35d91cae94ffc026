package jail

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// newHome makes a state directory with the VM directories names.
func newHome(t *testing.T, names ...string) string {
	home := t.TempDir()
	for _, n := range names {
		if err := os.MkdirAll(filepath.Join(home, "vms", n), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return home
}

// mustID is ID of the VM name in home.
func mustID(t *testing.T, home, name string) int {
	t.Helper()
	id, err := ID(home, filepath.Join(home, "vms", name))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestID: a VM's jail id is recorded (its directory's group) and the
// same at every start; each VM of a state directory has its own; a
// removed VM's id goes to the next VM that needs one; a directory not
// root's does not pass its group off as an id.
func TestID(t *testing.T) {
	testenv.RequireRoot(t, "jail ids are recorded as a directory's group (chown)")
	home := newHome(t, "a", "b", "c")
	first := store.JailIDFirst
	if id := mustID(t, home, "a"); id != first {
		t.Errorf("a's id: %d, want %d", id, first)
	}
	if id, ok := dirID(filepath.Join(home, "vms", "a")); !ok || id != first {
		t.Errorf("a's directory records %d, %v", id, ok)
	}
	if id := mustID(t, home, "a"); id != first {
		t.Errorf("a's id again: %d, want %d", id, first)
	}
	if id := mustID(t, home, "b"); id != first+1 {
		t.Errorf("b's id: %d, want %d", id, first+1)
	}
	if err := os.RemoveAll(filepath.Join(home, "vms", "a")); err != nil {
		t.Fatal(err)
	}
	if id := mustID(t, home, "c"); id != first {
		t.Errorf("c's id, after a was removed: %d, want a's %d", id, first)
	}
	// A directory someone else owns, with a jail id as its group, is not
	// a recorded id: it gets one of its own.
	d := filepath.Join(home, "vms", "d")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(d, 1000, first+1); err != nil {
		t.Fatal(err)
	}
	if id := mustID(t, home, "d"); id != first+2 {
		t.Errorf("d's id: %d, want %d (b has %d)", id, first+2, first+1)
	}
}

// TestIDConcurrent: VMs that start at once all get different ids.
func TestIDConcurrent(t *testing.T) {
	testenv.RequireRoot(t, "jail ids are recorded as a directory's group (chown)")
	const n = 16
	var names []string
	for i := range n {
		names = append(names, fmt.Sprint("vm", i))
	}
	home := newHome(t, names...)
	ids := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { ids[i], errs[i] = ID(home, filepath.Join(home, "vms", name)) })
	}
	wg.Wait()
	seen := map[int]string{}
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if other, ok := seen[id]; ok {
			t.Errorf("%s and %s both got id %d", names[i], other, id)
		}
		if !store.IsJailID(uint32(id)) || id >= store.JailIDFirst+n {
			t.Errorf("%s got id %d, not one of the %d lowest", names[i], id, n)
		}
		seen[id] = names[i]
	}
}
