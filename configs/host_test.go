package configs

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testguest"
)

func TestParseMemTotal(t *testing.T) {
	tests := []struct {
		name, in string
		want     uint64
		err      string
	}{
		{"real", "MemTotal:       24589456 kB\nMemFree:        1000 kB\n", 24589456 * 1024, ""},
		{"not first", "MemFree: 1 kB\nMemTotal: 2048 kB\n", 2048 * 1024, ""},
		{"missing", "MemFree: 1 kB\n", 0, "no MemTotal line"},
		{"empty", "", 0, "no MemTotal line"},
		{"no unit", "MemTotal: 2048\n", 0, `unexpected MemTotal line "MemTotal: 2048"`},
		{"other unit", "MemTotal: 2048 MB\n", 0, `unexpected MemTotal line "MemTotal: 2048 MB"`},
		{"not a number", "MemTotal: lots kB\n", 0, `unexpected MemTotal value "lots"`},
		{"absurd", "MemTotal: 99999999999999999999 kB\n", 0, `unexpected MemTotal value "99999999999999999999"`},
	}
	for _, tt := range tests {
		got, err := parseMemTotal(strings.NewReader(tt.in))
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tt.want || gotErr != tt.err {
			t.Errorf("%s: parseMemTotal = %d, %q; want %d, %q", tt.name, got, gotErr, tt.want, tt.err)
		}
	}
}

func TestHostFacts(t *testing.T) {
	h, err := HostFacts()
	if err != nil {
		t.Fatalf("HostFacts: %v", err)
	}
	// Any machine that runs these tests has more RAM than the smallest VM
	// and less than an absurd amount.
	if h.MemoryBytes < uint64(MinMemory) || h.MemoryBytes > 1<<50 {
		t.Errorf("HostFacts().MemoryBytes = %d, not a plausible RAM size", h.MemoryBytes)
	}
	if h.MaxVCPUs != 0 {
		t.Errorf("HostFacts().MaxVCPUs = %d, want 0 (left to the machine package)", h.MaxVCPUs)
	}
}

// TestCheckBootable checks the refusal of a Linux kernel on a host whose
// KVM emulates guest kernel code, and that nothing else is refused.
func TestCheckBootable(t *testing.T) {
	dir := testTree(t)
	linux := writeConfig(t, dir, "name: hello\nkernel: vmlinuz\n")
	vm, err := Load(linux)
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	if err := vm.CheckBootable(Host{}); err != nil {
		t.Errorf("hardware (or unknown) host: %v", err)
	}
	err = vm.CheckBootable(Host{EmulatedKVM: true})
	want := linux + ":2:9: kernel: " + filepath.Join(dir, "vmlinuz") + " is a Linux kernel, which this host cannot boot: its KVM has no hardware virtualization (no VT-x/AMD-V; see paddock doctor) and emulates guest kernel code, so the guest would hang with an empty console"
	if err == nil || err.Error() != want {
		t.Errorf("Linux kernel on an emulating host:\n%v\nwant\n%s", err, want)
	}
	vm.Backend = BackendLibvirt
	if err := vm.CheckBootable(Host{EmulatedKVM: true}); err != nil {
		t.Errorf("a libvirt VM, which runs on its libvirt host: %v", err)
	}
	small := &VM{Name: "small", Kernel: testguest.Build(t, "counter")}
	small.FillDefaults()
	if err := small.CheckBootable(Host{EmulatedKVM: true}); err != nil {
		t.Errorf("small PVH guest on an emulating host: %v", err)
	}
}
