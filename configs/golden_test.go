package configs

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run go test -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// testdataDir is the absolute testdata directory, which golden files show
// as $DIR.
func testdataDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestGoldenInvalid checks every problem of two configs full of mistakes:
// one with decoding problems (reported with the values' problems), one
// with bad values.
func TestGoldenInvalid(t *testing.T) {
	for _, name := range []string{"invalid-fields", "invalid-values"} {
		t.Run(name, func(t *testing.T) {
			vm, err := Load("testdata/" + name + ".yaml")
			if vm != nil {
				vm.FillDefaults()
				err = vm.Validate(Host{MemoryBytes: 1 << 30, MaxVCPUs: 16})
			}
			if err == nil {
				t.Fatal("no problems found")
			}
			golden(t, name+".golden", strings.ReplaceAll(err.Error(), testdataDir(t), "$DIR")+"\n")
		})
	}
}

// TestGoldenValid checks the resolved form of a valid config as JSON, the
// form `paddock validate --json` prints.
func TestGoldenValid(t *testing.T) {
	vm, err := Load("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	if err := vm.ValidateStructure(); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(vm, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "valid.golden", strings.ReplaceAll(string(out), testdataDir(t), "$DIR")+"\n")
}
