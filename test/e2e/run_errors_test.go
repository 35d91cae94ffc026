package e2e

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testguest"
)

// TestRunBadInput runs `paddock run -f` on broken VM files: each must fail
// with status 1 and one clear message naming the file and the field (or the
// kernel file), start nothing, and leave nothing behind in the directory.
func TestRunBadInput(t *testing.T) {
	e := newManagedEnv(t)
	guest := testguest.Build(t, "serial")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notKernel := write("notes.txt", "not a kernel\n")
	big := filepath.Join(dir, "big.img")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil { // sparse, larger than the VM's RAM
		t.Fatal(err)
	}
	f.Close()

	tests := []struct {
		name, yaml string
		want       []string // all must appear in stderr
	}{
		{"missing kernel", "name: a\nkernel: /nonexistent/vmlinuz\n",
			[]string{"bad.yaml:2:9: kernel:", "/nonexistent/vmlinuz"}},
		{"not a kernel", "name: a\nkernel: " + notKernel + "\n",
			[]string{notKernel, "not a Linux kernel"}},
		{"initrd too big", "name: a\nmemory: 32MiB\nkernel: " + guest + "\ninitrd: " + big + "\n",
			[]string{big, "does not fit"}},
		{"memory too small", "name: a\nmemory: 1MiB\nkernel: " + guest + "\n",
			[]string{"bad.yaml:2:9: memory:"}},
		{"memory above the host", "name: a\nmemory: 64TiB\nkernel: " + guest + "\n",
			[]string{"bad.yaml:2:9: memory:"}},
		{"no cpus", "name: a\ncpus: 0\nkernel: " + guest + "\n",
			[]string{"bad.yaml:2:7: cpus:"}},
		{"too many cpus", "name: a\ncpus: 100000\nkernel: " + guest + "\n",
			[]string{"bad.yaml:2:7: cpus:"}},
		{"malformed", "name: a\ncpus: [1\nkernel: " + guest + "\n",
			[]string{"bad.yaml:"}},
		{"unknown field", "name: a\nkernal: " + guest + "\n",
			[]string{"bad.yaml:2:1:", "kernal"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := write("bad.yaml", tt.yaml)
			before := listDir(t, dir)
			stdout, stderr, status := e.paddock("run", "-f", y)
			if status != 1 {
				t.Fatalf("exit status %d, want 1; stderr:\n%s", status, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "panic") || stdout != "" {
				t.Errorf("unexpected output: stdout %q stderr %q", stdout, stderr)
			}
			if after := listDir(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("files before %v, after %v", before, after)
			}
		})
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}
