package configs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testguest"
)

// examples lists configs/examples/*.yaml; there must be some.
func examples(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %d files in examples/, want hello.yaml, minimal.yaml and more", len(files))
	}
	return files
}

// TestExamples checks that every example parses and passes the structural
// checks, without the guest files `make guest` builds.
func TestExamples(t *testing.T) {
	for _, path := range examples(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			vm, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			vm.FillDefaults()
			if err := vm.ValidateStructure(); err != nil {
				t.Fatal(err)
			}
			if want := strings.TrimSuffix(filepath.Base(path), ".yaml"); vm.Name != want {
				t.Errorf("name %q, want the file's name %q", vm.Name, want)
			}
		})
	}
}

// TestExamplesInTree copies each example into the same place in a
// temporary tree, creates the files its relative paths point to there, and
// checks it passes full validation: the paths resolve against the file.
func TestExamplesInTree(t *testing.T) {
	for _, path := range examples(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			root := t.TempDir()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			copyPath := filepath.Join(root, "configs", path)
			if err := os.MkdirAll(filepath.Dir(copyPath), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(copyPath, data, 0o644); err != nil {
				t.Fatal(err)
			}
			vm, err := Load(copyPath)
			if err != nil {
				t.Fatal(err)
			}
			vm.FillDefaults()
			for _, f := range []string{vm.Kernel, vm.Initrd} {
				if f == "" {
					continue
				}
				if !strings.HasPrefix(f, root+"/") {
					t.Fatalf("%s resolves outside the tree: %s", path, f)
				}
				if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
					t.Fatal(err)
				}
				if f == vm.Kernel {
					testguest.BzImage(t, filepath.Dir(f), filepath.Base(f))
				} else if err := os.WriteFile(f, []byte("guest file"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := vm.Validate(Host{MemoryBytes: 4 << 30, MaxVCPUs: 64}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHelloExample(t *testing.T) {
	vm, err := Load("examples/hello.yaml")
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	abs, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if vm.Name != "hello" || vm.CPUs != 2 || vm.Memory != 512*MiB ||
		vm.Kernel != filepath.Join(abs, "build/guest/vmlinuz") ||
		vm.Initrd != filepath.Join(abs, "build/guest/initrd.img") {
		t.Errorf("hello.yaml = %+v", *vm)
	}
}

// TestDocsExamples checks that every ```yaml block in docs/yaml.md is a
// config that parses and passes the structural checks, so the reference
// cannot drift from the schema.
func TestDocsExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/yaml.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) == 0 {
		t.Fatal("docs/yaml.md has no ```yaml blocks")
	}
	for i, b := range blocks {
		vm, err := Parse(b[1], "docs/yaml.md")
		if err != nil {
			t.Errorf("block %d:\n%s\n%v", i+1, b[1], err)
			continue
		}
		vm.FillDefaults()
		if err := vm.ValidateStructure(); err != nil {
			t.Errorf("block %d:\n%s\n%v", i+1, b[1], err)
		}
	}
}

// TestDocsFields checks that docs/yaml.md has a section for every field.
func TestDocsFields(t *testing.T) {
	doc, err := os.ReadFile("../docs/yaml.md")
	if err != nil {
		t.Fatal(err)
	}
	var fields []string
	fields = append(fields, vmFields()...)
	for _, f := range consoleFields() {
		fields = append(fields, "console."+f)
	}
	for _, f := range libvirtFields() {
		fields = append(fields, "libvirt."+f)
	}
	for _, f := range diskFields() {
		fields = append(fields, "disks[]."+f)
	}
	for _, f := range nicFields() {
		fields = append(fields, "nics[]."+f)
	}
	for _, f := range fields {
		if !strings.Contains(string(doc), "### `"+f+"`") {
			t.Errorf("docs/yaml.md has no section ### `%s`", f)
		}
	}
}
