package vmm

import (
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/netdev"
)

func TestMachineConfigFromSpec(t *testing.T) {
	vm := &configs.VM{
		Name:   "web-1",
		CPUs:   3,
		Memory: 96 * configs.MiB,
		Disks:  []configs.Disk{{Path: "/a.qcow2", ReadOnly: true, Serial: "s", Cache: configs.CacheUnsafe, Format: "qcow2"}, {Path: "/in/b.qcow2", Untrusted: true}},
		NICs:   []configs.NIC{{Bridge: "br0"}, {Tap: "tap0", MAC: "02:00:00:00:00:07"}},
		RNG:    true,
	}
	nics, err := ResolveNICs(vm, "machine-id:test", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := machineConfig(vm, nics)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CPUs != 3 || cfg.Memory != 96<<20 || !cfg.RNG {
		t.Errorf("CPUs %d, memory %d, rng %v", cfg.CPUs, cfg.Memory, cfg.RNG)
	}
	if len(cfg.Disks) != 2 || cfg.Disks[0] != (machine.Disk{Path: "/a.qcow2", Format: "qcow2", ReadOnly: true, Serial: "s", Cache: "unsafe"}) {
		t.Errorf("disks %+v", cfg.Disks)
	}
	// An untrusted disk's backing chain stays in its directory.
	if b := cfg.Disks[1].Backing; b == nil || len(b.Dirs) != 1 || b.Dirs[0] != "/in" || b.Devices {
		t.Errorf("untrusted disk's backing policy %+v", b)
	}
	nics = cfg.NICs
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
	if _, err := machineConfig(vm, nics[:1]); err == nil {
		t.Error("machineConfig took one resolved NIC for two")
	}
}
