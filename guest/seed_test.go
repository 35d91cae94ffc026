package guest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/access"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/guest/vmm"
	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// cloudVM returns a validated spec of a tiny guest with cloud_init, the
// given extra YAML, and a key file of its own (whose key it returns).
func cloudVM(t *testing.T, name, extra string) (*configs.VM, string) {
	t.Helper()
	testguest.RequireKVM(t)
	dir := t.TempDir()
	// A key of the user's own: another paddock home's.
	k, err := access.EnsureKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := strings.Replace(k.Public, " paddock", " me@test", 1)
	if err := os.WriteFile(filepath.Join(dir, "me.pub"), []byte(key+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf("name: %s\nmemory: 64MiB\nkernel: %s\nconsole: log\nuser: alice\nssh_keys: [me.pub]\n%s", name, testguest.Build(t, "counter"), extra)
	vm, err := configs.Parse([]byte(spec), filepath.Join(dir, name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	if err := vm.Validate(configs.Host{}); err != nil {
		t.Fatal(err)
	}
	return vm, key
}

// extract returns a file of an ISO image, read by isoinfo (Rock Ridge).
func extract(t *testing.T, iso, name string) string {
	t.Helper()
	isoinfo := testenv.RequireTool(t, "isoinfo", "genisoimage")
	out, err := exec.Command(isoinfo, "-R", "-x", "/"+name, "-i", iso).Output()
	if err != nil {
		t.Fatalf("isoinfo -x /%s: %v", name, err)
	}
	return string(out)
}

// openFiles returns the files process pid has open.
func openFiles(t *testing.T, pid int) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			files = append(files, target)
		}
	}
	return files
}

// TestManagerCloudInit creates and starts a VM with cloud_init: paddock's
// key pair appears, the resolved spec holds paddock's key and the file's,
// and the started VMM has the seed written from the spec and UUID open.
func TestManagerCloudInit(t *testing.T) {
	m := testManager(t)
	vm, key := cloudVM(t, "web", "user_data: |\n  #cloud-config\n  packages: [nginx]\n")
	info, err := m.Create(vm, "")
	if err != nil {
		t.Fatal(err)
	}
	k, err := access.ReadKey(access.KeyPath(m.Home()))
	if err != nil {
		t.Fatalf("paddock's key after create: %v", err)
	}
	in, err := m.Inspect("web")
	if err != nil {
		t.Fatal(err)
	}
	if got := in.Config.SSHKeys; len(got) != 2 || got[0] != k.Public || got[1] != key {
		t.Errorf("resolved ssh_keys %q; want paddock's key, then the file's", got)
	}
	if in.Config.User != "alice" || !in.Config.CloudInit {
		t.Errorf("resolved user %q, cloud_init %v", in.Config.User, in.Config.CloudInit)
	}
	seed := filepath.Join(in.Paths.Dir, store.SeedFile)
	if _, err := os.Stat(seed); err == nil {
		t.Errorf("seed.iso exists before the first start")
	}

	started, err := m.Start(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill(context.Background(), "web")
	if fi, err := os.Stat(seed); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seed.iso after start: %v, %v", fi, err)
	}
	meta := extract(t, seed, "meta-data")
	if want := "instance-id: " + info.UUID + "\nlocal-hostname: web\n"; meta != want {
		t.Errorf("meta-data %q, want %q", meta, want)
	}
	ud := extract(t, seed, "user-data")
	for _, want := range []string{"packages: [nginx]", "name: alice", k.Public, key, "Merge-Type: list(append)"} {
		if !strings.Contains(ud, want) {
			t.Errorf("user-data lacks %q:\n%s", want, ud)
		}
	}
	open := strings.Join(openFiles(t, started.PID), "\n")
	if !strings.Contains(open, seed) {
		t.Errorf("the VMM (pid %d) does not have %s open:\n%s", started.PID, seed, open)
	}
}

// TestSeedNICs checks the network-config of a VM's seed: each NIC's MAC,
// the spec's or the derived one the machine gets.
func TestSeedNICs(t *testing.T) {
	vm, _ := cloudVM(t, "net", "")
	vm.NICs = []configs.NIC{{Tap: "t0", MAC: "52:54:00:12:34:56"}, {Tap: "t1"}}
	img, err := seedImage(vm, RunUUID("net"))
	if err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(t.TempDir(), "seed.iso")
	if err := os.WriteFile(iso, img, 0o600); err != nil {
		t.Fatal(err)
	}
	nc := extract(t, iso, "network-config")
	macs, err := vmm.NICMACs(vm)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Ethernets map[string]struct {
			Match struct {
				MACAddress string `yaml:"macaddress"`
			} `yaml:"match"`
		} `yaml:"ethernets"`
	}
	if err := yaml.Unmarshal([]byte(nc), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Ethernets) != len(macs) {
		t.Errorf("network-config has %d NICs, want %d:\n%s", len(cfg.Ethernets), len(macs), nc)
	}
	for i, mac := range macs {
		if got := cfg.Ethernets[fmt.Sprintf("eth%d", i)].Match.MACAddress; got != mac.String() {
			t.Errorf("eth%d matches %q, want the machine's MAC %s:\n%s", i, got, mac, nc)
		}
	}
}

// TestNoCloudInitNoSeed checks a VM without cloud_init: no key pair, no
// seed.
func TestNoCloudInitNoSeed(t *testing.T) {
	m := testManager(t)
	if _, err := m.Create(testVM(t, "plain", "counter"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(context.Background(), "plain"); err != nil {
		t.Fatal(err)
	}
	defer m.Kill(context.Background(), "plain")
	in, _ := m.Inspect("plain")
	for _, p := range []string{filepath.Join(in.Paths.Dir, store.SeedFile), filepath.Join(m.Home(), access.KeyDir)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists for a VM without cloud_init", p)
		}
	}
}

// TestRunCloudInit checks a foreground run's seed: a temporary file the
// VM has while it runs, gone when the run ends.
func TestRunCloudInit(t *testing.T) {
	vm, _ := cloudVM(t, "fg", "")
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	pattern := filepath.Join(tmp, "paddock-seed-*.iso")
	var during []string
	var meta string
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Run(ctx, vm, RunOptions{OnBoot: func(int, string) {
		during, _ = filepath.Glob(pattern)
		if len(during) == 1 {
			meta = extract(t, during[0], "meta-data")
		}
		cancel()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(during) != 1 {
		t.Fatalf("seed files while the VM runs: %v; want one", during)
	}
	if want := "instance-id: " + RunUUID("fg").String() + "\nlocal-hostname: fg\n"; meta != want {
		t.Errorf("meta-data %q, want %q", meta, want)
	}
	if after, _ := filepath.Glob(pattern); len(after) != 0 {
		t.Errorf("seed files left after the run: %v", after)
	}
}
