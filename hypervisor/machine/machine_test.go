package machine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/imagefile"
	"github.com/paddock-vm/paddock/hypervisor/exit"
	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/netdev"
)

func TestNewRejectsBadInput(t *testing.T) {
	requireKVM(t)
	dir := t.TempDir()
	notKernel := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notKernel, []byte("this is not a kernel\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	guest := guestKernel(t, "serial", nil)
	bigInitrd := filepath.Join(dir, "big.img")
	f, err := os.Create(bigInitrd)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(40 << 20); err != nil { // sparse: larger than the guest's RAM
		t.Fatal(err)
	}
	f.Close()
	sys := testKVM(t)
	closed := testKVM(t)
	closed.Close()

	tests := []struct {
		name string
		cfg  Config
		boot BootConfig
		want string
	}{
		{"no cpus", Config{KVM: sys, CPUs: 0, Memory: 64 << 20}, BootConfig{Kernel: guest}, "need at least 1"},
		{"too many cpus", Config{KVM: sys, CPUs: 100000, Memory: 64 << 20}, BootConfig{Kernel: guest}, "at most"},
		{"tiny memory", Config{KVM: sys, CPUs: 1, Memory: 1 << 20}, BootConfig{Kernel: guest}, "below the minimum"},
		{"no kernel", Config{KVM: sys, CPUs: 1, Memory: 64 << 20}, BootConfig{}, "machine: no open kernel file (BootConfig.Kernel)"},
		{"not a kernel", Config{KVM: sys, CPUs: 1, Memory: 64 << 20}, BootConfig{Kernel: openKernel(t, notKernel)}, "not a Linux kernel"},
		{"initrd too big", Config{KVM: sys, CPUs: 1, Memory: 32 << 20}, BootConfig{Kernel: guest, Initrd: openKernel(t, bigInitrd)}, "does not fit"},
		{"no kvm", Config{CPUs: 1, Memory: 64 << 20}, BootConfig{Kernel: guest}, "machine: no open KVM device (Config.KVM)"},
		{"closed kvm", Config{KVM: closed, CPUs: 1, Memory: 64 << 20}, BootConfig{Kernel: guest}, "machine: no open KVM device (Config.KVM)"},
		{"no disk image", Config{KVM: sys, CPUs: 1, Memory: 64 << 20, Disks: []Disk{{Name: "x"}}}, BootConfig{Kernel: guest}, "machine: disks[0]: no open image"},
		{"no tap", Config{KVM: sys, CPUs: 1, Memory: 64 << 20, NICs: []NIC{{MAC: netdev.MAC{2, 0, 0, 0, 0, 1}}}}, BootConfig{Kernel: guest}, "machine: nics[0]: no open tap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := testenv.OpenFDs(t)
			m, err := New(tt.cfg, tt.boot)
			if err == nil {
				m.Close()
				t.Fatalf("New succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %q, want it to contain %q", err, tt.want)
			}
			if after := testenv.OpenFDs(t); after != before {
				t.Errorf("%d file descriptors before New, %d after its failure", before, after)
			}
		})
	}
}

func TestRunTwice(t *testing.T) {
	requireKVM(t)
	m, err := New(Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20}, BootConfig{Kernel: guestKernel(t, "poweroff", nil)})
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

// TestCloseReleasesEverything builds, runs and closes machines one
// after another on the same handles, as a VMM does across guest reboots:
// each machine releases everything it made, and leaves the handles open
// (the same descriptors, the image still locked and usable) for the next.
func TestCloseReleasesEverything(t *testing.T) {
	requireKVM(t)
	sys := testKVM(t)
	kernel := guestKernel(t, "poweroff", nil)
	img := rawImage(t, 1<<20)
	d := openDisk(t, img, disk.Options{Format: disk.FormatRaw})
	before := testenv.OpenFDs(t)
	for i := 0; i < 3; i++ {
		m, err := New(Config{KVM: sys, CPUs: 2, Memory: 64 << 20, Disks: []Disk{d}}, BootConfig{Kernel: kernel})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if after := testenv.OpenFDs(t); after != before {
			t.Fatalf("machine %d: %d file descriptors before, %d after", i, before, after)
		}
	}
	if _, err := sys.APIVersion(); err != nil {
		t.Errorf("the KVM device after three machines: %v", err)
	}
	if _, err := kernel.Stat(); err != nil {
		t.Errorf("the kernel file after three machines: %v", err)
	}
	if _, err := d.Image.WriteAt([]byte("still mine"), 0); err != nil {
		t.Errorf("the disk image after three machines: %v", err)
	}
	if err := imagefile.Check(img, imagefile.Write); !errors.Is(err, imagefile.ErrInUse) {
		t.Errorf("the image's lock after three machines: %v, want it in use", err)
	}
}
