package guest

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	lv "github.com/paddock-vm/paddock/guest/libvirt"
	"github.com/paddock-vm/paddock/guest/libvirt/libvirttest"
	"github.com/paddock-vm/paddock/guest/vmm"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// The libvirt network TestLibvirtSSHTarget defines on its remote host,
// with libvirt's DHCP server (dnsmasq) on it.
const (
	leaseNet     = "pdlease"
	leaseNetXML  = "<network><name>pdlease</name><bridge name='pdlease0'/><ip address='192.168.251.1' netmask='255.255.255.0'><dhcp><range start='192.168.251.10' end='192.168.251.20'/></dhcp></ip></network>"
	leasePrefix  = "192.168.251."
	leaseNetFile = "pdlease.xml"
)

// TestLibvirtSSHTarget: paddock ssh and cp reach a libvirt VM at the
// address its host knows. On a remote host, a VM whose NIC is on a
// libvirt network with DHCP: before it runs, ssh says to start it; once
// it runs and has no lease yet, ssh says that its host knows no address
// (naming the host) and that --address gives one; once the guest took a
// lease, the target is that address, which the host's lease table has
// for the NIC's MAC, and the host keys the guest printed on its console
// (the console log on the host) are in the VM's known_hosts.
func TestLibvirtSSHTarget(t *testing.T) {
	ctx := context.Background()
	virsh := testenv.RequireTool(t, "virsh", "libvirt-clients")
	testenv.RequireTool(t, "dnsmasq", "dnsmasq-base")
	remote := libvirttest.SharedRemote(t)
	m := testManager(t)
	if err := m.Hosts().Add(remote.Host("lab")); err != nil {
		t.Fatal(err)
	}
	def := t.TempDir() + "/" + leaseNetFile
	if err := os.WriteFile(def, []byte(leaseNetXML), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(virsh, "-c", remote.URI, "net-create", def).CombinedOutput(); err != nil {
		t.Fatalf("virsh net-create: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command(virsh, "-c", remote.URI, "net-destroy", leaseNet).Run() })

	vm := libvirtVMOf(t, libvirttest.DiskGuest(t), "web", "nics: [{network: "+leaseNet+"}]", "cloud_init: true", "libvirt: {host: lab}")
	in, err := m.CreateContext(ctx, vm, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Remove(context.Background(), "web", true) })
	var se *StateError
	if _, err := m.SSHTarget(ctx, "web", SSHOptions{}); !errors.As(err, &se) ||
		err.Error() != "cannot reach VM 'web': it is created; start it first (paddock start web)" {
		t.Errorf("ssh to a created VM: %v", err)
	}
	if _, err := m.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	waitHello(t, m, "web")
	var ne *NoAddressError
	want := "VM 'web' has no address paddock knows: its libvirt host lab (" + remote.URI + ") has no DHCP lease"
	if _, err := m.SSHTarget(ctx, "web", SSHOptions{}); !errors.As(err, &ne) || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("ssh before the guest has an address: %v; want %s...", err, want)
	}

	// The guest takes a lease and prints a host key block, as
	// cloud-init's keys-to-console does (the typed line spells the
	// markers otherwise, so that only the output has them).
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostKey)))
	typeLine(t, m, "web", "ip link set eth0 up && udhcpc -i eth0 -n -q -s /bin/true >/dev/null 2>&1; echo leased-$?-$((2*3))", "leased-0-6")
	typeLine(t, m, "web", "K='SSH HOST KEY KEYS'; echo \"-----BEGIN $K-----\"; echo '"+line+" root@web'; echo \"-----END $K-----\"; echo keys-$((3*3))", "keys-9")

	target, err := m.SSHTarget(ctx, "web", SSHOptions{})
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(target.Addr)
	if err != nil || port != "22" || !strings.HasPrefix(host, leasePrefix) {
		t.Fatalf("ssh target %q; want an address of %s0/24, port 22", target.Addr, leasePrefix)
	}
	spec, err := m.Spec("web")
	if err != nil {
		t.Fatal(err)
	}
	macs, err := vmm.NICMACs(spec)
	if err != nil {
		t.Fatal(err)
	}
	c, err := lv.Connect(remote.Host("check"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := c.Domain("web", in.UUID)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := d.Addresses()
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IP != host || addrs[0].MAC != macs[0].String() {
		t.Errorf("the host's addresses of web: %+v; want the lease of %s for MAC %s", addrs, host, macs[0])
	}
	known, err := os.ReadFile(target.KnownHosts)
	if err != nil || !target.Strict || !strings.Contains(string(known), line) {
		t.Errorf("known_hosts %q (%v), strict %v; want the console's key %s", known, err, target.Strict, line)
	}
	// --address wins over the lease.
	if target, err := m.SSHTarget(ctx, "web", SSHOptions{Address: "10.9.8.7:2222"}); err != nil || target.Addr != "10.9.8.7:2222" {
		t.Errorf("ssh --address: %+v, %v", target, err)
	}
}
