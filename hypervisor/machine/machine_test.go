package machine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestNewRejectsBadInput(t *testing.T) {
	requireKVM(t)
	dir := t.TempDir()
	notKernel := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notKernel, []byte("this is not a kernel\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	guest := buildGuest(t, "serial", nil)
	bigInitrd := filepath.Join(dir, "big.img")
	f, err := os.Create(bigInitrd)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(40 << 20); err != nil { // sparse: larger than the guest's RAM
		t.Fatal(err)
	}
	f.Close()

	tests := []struct {
		name string
		cfg  Config
		boot BootConfig
		want string
	}{
		{"no cpus", Config{CPUs: 0, Memory: 64 << 20}, BootConfig{Kernel: guest}, "need at least 1"},
		{"too many cpus", Config{CPUs: 100000, Memory: 64 << 20}, BootConfig{Kernel: guest}, "at most"},
		{"tiny memory", Config{CPUs: 1, Memory: 1 << 20}, BootConfig{Kernel: guest}, "below the minimum"},
		{"missing kernel", Config{CPUs: 1, Memory: 64 << 20}, BootConfig{Kernel: filepath.Join(dir, "nope")}, "no such file"},
		{"not a kernel", Config{CPUs: 1, Memory: 64 << 20}, BootConfig{Kernel: notKernel}, "not a Linux kernel"},
		{"initrd too big", Config{CPUs: 1, Memory: 32 << 20}, BootConfig{Kernel: guest, Initrd: bigInitrd}, "does not fit"},
		{"no kvm", Config{CPUs: 1, Memory: 64 << 20, KVMPath: filepath.Join(dir, "kvm")}, BootConfig{Kernel: guest}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := openFDs(t)
			m, err := New(tt.cfg, tt.boot)
			if err == nil {
				m.Close()
				t.Fatalf("New succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %q, want it to contain %q", err, tt.want)
			}
			if after := openFDs(t); after != before {
				t.Errorf("%d file descriptors before New, %d after its failure", before, after)
			}
		})
	}
}

func TestRunTwice(t *testing.T) {
	requireKVM(t)
	m, err := New(Config{CPUs: 1, Memory: 64 << 20}, BootConfig{Kernel: buildGuest(t, "poweroff", nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e, err := m.Run(context.Background())
	if err != nil || e.Reason != exit.PowerOff {
		t.Fatalf("Run = %v, %v", e.Reason, err)
	}
	if _, err := m.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	requireKVM(t)
	kernel := buildGuest(t, "poweroff", nil)
	before := openFDs(t)
	for i := 0; i < 3; i++ {
		m, err := New(Config{CPUs: 2, Memory: 64 << 20}, BootConfig{Kernel: kernel})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d file descriptors before, %d after three machines", before, after)
	}
}
