package machine

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDependencies keeps the VMM core below the layers that use it: no
// package under hypervisor/ may link the YAML schema (configs) or the
// manager (guest/...). The machine takes plain device configs.
func TestDependencies(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(gobin, "list", "-deps", "github.com/paddock-vm/paddock/hypervisor/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const module = "github.com/paddock-vm/paddock/"
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"configs", "guest", "cmd"} {
			if pkg == module+banned || strings.HasPrefix(pkg, module+banned+"/") {
				t.Errorf("hypervisor/... depends on %s", pkg)
			}
		}
	}
}
