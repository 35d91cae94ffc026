package vmm

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/netdev"
)

func TestResolveNICs(t *testing.T) {
	vm := &configs.VM{Name: "web-1", NICs: []configs.NIC{{Bridge: "br0"}, {Tap: "tap0", MAC: "02:00:00:00:00:07"}}}
	nics, err := ResolveNICs(vm, "machine-id:test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(nics) != 2 || nics[0].Bridge != "br0" || nics[1].Tap != "tap0" {
		t.Fatalf("nics %+v", nics)
	}
	if nics[0].MAC != netdev.NICMAC("machine-id:test", "web-1", 0) || nics[1].MAC.String() != "02:00:00:00:00:07" {
		t.Errorf("MACs %s %s", nics[0].MAC, nics[1].MAC)
	}
	vm.NICs[1].MAC = "bad"
	if _, err := ResolveNICs(vm, "machine-id:test", nil); err == nil || !strings.Contains(err.Error(), "nics[1].mac") {
		t.Errorf("bad MAC: %v", err)
	}
}

// TestMachineConfigFromSpec: the spec's hardware and the handles make the
// machine's configuration; handles that are not the spec's are refused.
func TestMachineConfigFromSpec(t *testing.T) {
	dir := t.TempDir()
	a, b, seed := rawDisk(t, dir, "a.img"), rawDisk(t, dir, "b.img"), rawDisk(t, dir, "seed.iso")
	vm := &configs.VM{
		Name:   "web-1",
		CPUs:   3,
		Memory: 96 * configs.MiB,
		Disks: []configs.Disk{
			{Path: a, ReadOnly: true, Serial: "s", Cache: configs.CacheUnsafe, Format: "raw"},
			{Path: b, Limits: &configs.Limits{Bandwidth: 10 << 20, IOPS: 2000}},
		},
		NICs:      []configs.NIC{{Bridge: "br0", Limits: &configs.Limits{Bandwidth: 6_250_000, Packets: 100, Burst: configs.Burst(2 * time.Second)}}},
		RNG:       true,
		CloudInit: true,
	}
	img := func(path string, ro bool) disk.Image {
		i, err := disk.Open(path, disk.Options{Format: disk.FormatRaw, ReadOnly: ro})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { i.Close() })
		return i
	}
	kernel, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer kernel.Close()
	sys := &kvm.System{}
	mac := netdev.GenerateMAC("spec/0")
	h := &Handles{KVM: sys, Kernel: kernel,
		Disks: []Disk{{Image: img(a, true), Path: a}, {Image: img(b, false), Path: b, Guard: true}, {Image: img(seed, true), Path: seed}},
		NICs:  []machine.NIC{{MAC: mac}}}
	vm.FillDefaults()
	cfg, err := machineConfig(vm, h)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.KVM != sys || cfg.CPUs != 3 || cfg.Memory != 96<<20 || !cfg.RNG {
		t.Errorf("KVM %p, CPUs %d, memory %d, rng %v", cfg.KVM, cfg.CPUs, cfg.Memory, cfg.RNG)
	}
	want := []machine.Disk{
		{Image: h.Disks[0].Image, Name: a, ReadOnly: true, Serial: "s", Cache: "unsafe"},
		{Image: h.Disks[1].Image, Name: b, GuardFormat: true, Cache: "writeback", Limits: ratelimit.Limits{
			// 100ms of each by default.
			Bytes: ratelimit.Rate{PerSecond: 10 << 20, Burst: 1 << 20},
			Ops:   ratelimit.Rate{PerSecond: 2000, Burst: 200},
		}},
		{Image: h.Disks[2].Image, Name: seed, ReadOnly: true, Serial: "cidata"},
	}
	if len(cfg.Disks) != len(want) {
		t.Fatalf("disks %+v", cfg.Disks)
	}
	for i := range want {
		if cfg.Disks[i] != want[i] {
			t.Errorf("disks[%d] = %+v, want %+v", i, cfg.Disks[i], want[i])
		}
	}
	wantNIC := ratelimit.Limits{
		Bytes: ratelimit.Rate{PerSecond: 6_250_000, Burst: 12_500_000},
		Ops:   ratelimit.Rate{PerSecond: 100, Burst: 200},
	}
	if len(cfg.NICs) != 1 || cfg.NICs[0].MAC != mac || cfg.NICs[0].Limits != wantNIC {
		t.Errorf("NICs %+v, want one with MAC %s and limits %+v", cfg.NICs, mac, wantNIC)
	}
	if bc := bootConfig(vm, h); bc.Kernel != kernel || bc.Initrd != nil {
		t.Errorf("boot config %+v", bc)
	}

	for _, tc := range []struct {
		name string
		edit func(*Handles)
		want string
	}{
		{"no seed", func(h *Handles) { h.Disks = h.Disks[:2] }, "VM web-1 has 3 disks (the seed volume included), the handles 2 images"},
		{"NIC missing", func(h *Handles) { h.NICs = nil }, "VM web-1 has 1 NICs, the handles 0 taps"},
		{"an initrd", func(h *Handles) { h.Initrd = kernel }, "the handles do not match the spec's initrd"},
		{"no kernel", func(h *Handles) { h.Kernel = nil }, "the handles lack the KVM device or the kernel"},
	} {
		bad := *h
		tc.edit(&bad)
		if _, err := machineConfig(vm, &bad); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
