package kmod

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/images/debian"
	"github.com/paddock-vm/paddock/images/internal/elftest"
	"github.com/paddock-vm/paddock/internal/testenv"
)

var makeModule = elftest.Module

// fakeTree writes modules (path -> depends) under a temporary modules dir.
func fakeTree(t *testing.T, mods map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for rel, deps := range mods {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		name, _ := moduleName(filepath.Base(rel))
		data := makeModule("license=GPL", "depends="+deps, "name="+name, "vermagic=6.1.0-test SMP")
		if strings.HasSuffix(rel, ".gz") {
			var z bytes.Buffer
			w := gzip.NewWriter(&z)
			w.Write(data)
			w.Close()
			data = z.Bytes()
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var kvmLike = map[string]string{
	"kernel/virt/lib/irqbypass.ko":     "",
	"kernel/drivers/crypto/ccp/ccp.ko": "",
	"kernel/arch/x86/kvm/kvm.ko":       "irqbypass",
	"kernel/arch/x86/kvm/kvm-amd.ko":   "kvm,ccp",
	"kernel/net/802/stp.ko":            "llc",
	"kernel/net/llc/llc.ko":            "",
	"kernel/net/bridge/bridge.ko.gz":   "llc,stp",
	"kernel/cyc/a.ko":                  "b",
	"kernel/cyc/b.ko":                  "c",
	"kernel/cyc/c.ko":                  "a",
	"kernel/broken/needs-ghost.ko":     "ghost",
}

func names(mods []Module) string {
	var n []string
	for _, m := range mods {
		n = append(n, m.Name)
	}
	return strings.Join(n, " ")
}

func TestResolve(t *testing.T) {
	ix, err := Open(fakeTree(t, kvmLike))
	if err != nil {
		t.Fatal(err)
	}
	if ix.Len() != len(kvmLike) {
		t.Errorf("indexed %d modules, want %d", ix.Len(), len(kvmLike))
	}
	tests := []struct {
		ask  []string
		want string
		err  string
	}{
		{[]string{"irqbypass", "ccp", "kvm", "kvm-amd"}, "irqbypass ccp kvm kvm_amd", ""},
		{[]string{"kvm_amd"}, "irqbypass kvm ccp kvm_amd", ""},
		{[]string{"bridge"}, "llc stp bridge", ""},
		{[]string{"llc", "kvm-amd", "llc"}, "llc irqbypass kvm ccp kvm_amd", ""},
		{[]string{"a"}, "", "dependency cycle: a -> b -> c -> a"},
		{[]string{"needs-ghost"}, "", "module ghost not found under"},
		{[]string{"nosuch"}, "", "module nosuch not found"},
	}
	for _, tt := range tests {
		mods, err := ix.Resolve(context.Background(), tt.ask...)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Resolve(%v): error %v, want %q", tt.ask, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Resolve(%v): %v", tt.ask, err)
			continue
		}
		if got := names(mods); got != tt.want {
			t.Errorf("Resolve(%v) = %s, want %s", tt.ask, got, tt.want)
		}
		if err := CheckOrder(mods, nil); err != nil {
			t.Errorf("CheckOrder(Resolve(%v)): %v", tt.ask, err)
		}
	}
	if p, ok := ix.Path("kvm_amd"); !ok || p != "kernel/arch/x86/kvm/kvm-amd.ko" {
		t.Errorf("Path(kvm_amd) = %q, %v", p, ok)
	}
}

func TestCheckOrder(t *testing.T) {
	mods := []Module{{Name: "kvm_amd", Depends: []string{"kvm", "ccp"}}, {Name: "kvm", Depends: []string{"irqbypass"}}, {Name: "ccp"}}
	err := CheckOrder(mods, func(n string) bool { return n == "irqbypass" })
	if err == nil {
		t.Fatal("wrong order accepted")
	}
	for _, want := range []string{"kvm_amd depends on kvm, which comes after it", "kvm_amd depends on ccp, which comes after it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "irqbypass") {
		t.Errorf("builtin irqbypass reported: %v", err)
	}
	err = CheckOrder(mods[1:], nil)
	if err == nil || !strings.Contains(err.Error(), "kvm depends on irqbypass, which is not in the list") {
		t.Errorf("missing dependency: %v", err)
	}
}

func TestReadInfo(t *testing.T) {
	info, err := ReadInfo(bytes.NewReader(makeModule("alias=x", "depends=vhost,tap,tun", "name=vhost_net", "vermagic=6.1.0 SMP")))
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Name: "vhost_net", Depends: []string{"vhost", "tap", "tun"}, Vermagic: "6.1.0 SMP"}
	if !reflect.DeepEqual(info, want) {
		t.Errorf("ReadInfo = %+v, want %+v", info, want)
	}
	bad := []struct {
		name string
		data []byte
		want string
	}{
		{"not ELF", []byte("hello"), "not an ELF module"},
		{"no modinfo", bytes.Replace(makeModule("name=x"), []byte(".modinfo"), []byte(".comment"), 1), "no .modinfo"},
	}
	for _, tt := range bad {
		if _, err := ReadInfo(bytes.NewReader(tt.data)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestLoadName(t *testing.T) {
	for in, want := range map[string]string{"kernel/a.ko": "kernel/a.ko", "kernel/a.ko.xz": "kernel/a.ko", "kernel/b.ko.zst": "kernel/b.ko", "x.ko.gz": "x.ko"} {
		if got := LoadName(in); got != want {
			t.Errorf("LoadName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpenRejectsOtherDirectories(t *testing.T) {
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no kernel/ directory") {
		t.Errorf("Open(empty dir): %v", err)
	}
}

// TestDebianL1Modules resolves the lab's L1 module list against the real
// Debian kernel: the dependency order must be the one docs/hosts.md gives.
func TestDebianL1Modules(t *testing.T) {
	testenv.Declare(t, testenv.Oracle) // Debian's kernel and its modules.dep
	c, err := cache.Default()
	if err != nil {
		t.Fatal(err)
	}
	k, err := (&debian.Client{Cache: c}).FetchKernel(context.Background(), debian.KernelOptions{})
	if err != nil {
		if errors.Is(err, debian.ErrNoApt) {
			testenv.Unavailable(t, "%v", err)
		}
		t.Fatal(err)
	}
	ix, err := Open(k.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := ix.Resolve(context.Background(), "kvm-amd", "bridge", "veth", "vhost_net")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(mods), "irqbypass kvm ccp kvm_amd llc stp bridge veth vhost_iotlb vhost tap tun vhost_net"; got != want {
		t.Errorf("order %s, want %s", got, want)
	}
	if err := CheckOrder(mods, nil); err != nil {
		t.Error(err)
	}
}

func FuzzReadInfo(f *testing.F) {
	f.Add(makeModule("depends=a,b", "name=x"))
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ReadInfo(bytes.NewReader(data))
	})
}
