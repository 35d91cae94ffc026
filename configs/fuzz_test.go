package configs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse checks that no input makes Parse panic, that every problem it
// reports is an *Error naming the file, that a VM it returns with problems
// never validates, and that a config that decodes and
// passes the structural checks survives a round trip through yaml.Marshal.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("examples/*.yaml")
	more, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range append(seeds, more...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"name: a\ncpus: 2\nmemory: 1.5GiB\nkernel: k\nconsole: {mode: log, log: l}\nbackend: libvirt\nlibvirt: {uri: 'qemu:///system'}\n",
		"name: &a x\nkernel: *a\n<<: {cpus: 1}\n",
		"a: &a [*a]\n",
		"- 1\n- 2\n",
		"name: a\n---\nname: b\n",
		"name: \"\\0\"\nkernel: !!binary aGk=\n",
		"cmdline: >\n  a\n  b\n",
		"\tname: a\n",
		"{name: x, kernel: y, cpus: 0x10}",
		"memory: 99999999999999999999999EiB\n",
		"name: a\nkernel: k\nnics: [{network: default}, {tap: t, network: x}]\nports: ['8080:80', '0.0.0.0:53:53/udp', 1, '1.2.3.4:5:6:7']\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		vm, err := Parse(data, "fuzz.yaml")
		if err != nil {
			for _, p := range Problems(err) {
				if p.File != "fuzz.yaml" || p.Err == nil {
					t.Fatalf("problem without the file: %#v", p)
				}
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is no *Error: %v", err)
			}
			if vm != nil { // decoding problems: the VM must never validate
				vm.FillDefaults()
				if vm.ValidateStructure() == nil {
					t.Fatalf("a VM with decoding problems validates: %v", err)
				}
			}
			return
		}
		vm.FillDefaults()
		if err := vm.ValidateStructure(); err != nil {
			return
		}
		out, err := yaml.Marshal(vm)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := Parse(out, "fuzz.yaml")
		if err != nil {
			t.Fatalf("Parse of marshalled config:\n%s\n%v", out, err)
		}
		back.src, vm.src = nil, nil
		if !reflect.DeepEqual(back, vm) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", *back, *vm)
		}
	})
}

// FuzzParseByteSize checks that ParseByteSize never panics and that what it
// accepts prints (String) to text it reads back to the same size.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"0", "512MiB", "1.5GiB", "1G", "15.5E", "0.1KiB", "18446744073709551615", "4 kb", "lots"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err != nil {
			return
		}
		back, err := ParseByteSize(b.String())
		if err != nil || back != b {
			t.Fatalf("ParseByteSize(%q) = %d, String %q reads back as %d, %v", s, uint64(b), b.String(), uint64(back), err)
		}
	})
}
