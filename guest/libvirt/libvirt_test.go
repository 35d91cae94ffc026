package libvirt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/guest/libvirt"
	"github.com/paddock-vm/paddock/guest/libvirt/libvirttest"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestMain(m *testing.M) {
	code := m.Run()
	libvirttest.Cleanup()
	os.Exit(code)
}

// TestShareUploadsOnce puts a sparse file into a pool twice: the first
// time it is uploaded (holes and all), the second time the volume named
// by its SHA-256 is reused; its content on the host is the file's.
func TestShareUploadsOnce(t *testing.T) {
	d := libvirttest.Shared(t)
	c, err := libvirt.Connect(d.Host("local"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pool, err := c.Pool(true)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sparse.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 3<<20)
	copy(want, "head")
	copy(want[2<<20:], "middle of nowhere")
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("middle of nowhere"), 2<<20)
	f.Truncate(3 << 20)
	f.Close()

	v1, err := pool.Share(context.Background(), libvirt.Content{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v1.Name, "sha256-") || !strings.HasPrefix(v1.Path, pool.Dir+"/") {
		t.Errorf("volume %+v in pool %s", v1, pool.Dir)
	}
	v2, err := pool.Share(context.Background(), libvirt.Content{Path: path}, nil)
	if err != nil || v2 != v1 {
		t.Fatalf("second Share = %+v, %v; want %+v", v2, err, v1)
	}
	names, err := pool.Names("sha256-")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(n, ".part-") {
			t.Errorf("partial upload %s left behind", n)
		}
	}
	var got bytes.Buffer
	if err := pool.Download(v1.Name, &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("the volume does not hold the file's bytes (%d bytes)", got.Len())
	}
	if err := pool.Delete(v1.Name); err != nil {
		t.Fatal(err)
	}
}

// hostPath is where the local test daemon d keeps the file it calls
// path (its /var/lib/libvirt is a directory of the test's).
func hostPath(t *testing.T, d *libvirttest.Daemon, path string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(path, "/var/lib/libvirt/")
	if !ok {
		t.Fatalf("%s is not in the daemon's /var/lib/libvirt", path)
	}
	return filepath.Join(d.Dir, "lib", rest)
}

// TestShareVerifies: a content volume is checked before it is reused. A
// volume changed on the host (its content no longer the SHA-256 its name
// says) is never used: with no overlay on it, it is uploaded again; with
// a VM's overlay on it, Share refuses, naming the overlay. Once verified,
// a volume is reused on its stamp (the record names it); a paddock with
// no record downloads and hashes it.
func TestShareVerifies(t *testing.T) {
	ctx := context.Background()
	d := libvirttest.Shared(t)
	c, err := libvirt.Connect(d.Host("local"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pool, err := c.Pool(true)
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	ver := libvirt.OpenVerified(home)
	path := filepath.Join(t.TempDir(), "base.img")
	want := bytes.Repeat([]byte("base disk "), 100<<10)
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	src := libvirt.Content{Path: path}
	v, err := pool.Share(ctx, src, ver)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Delete(v.Name)
	rec, err := os.ReadFile(filepath.Join(home, libvirt.VerifiedFile))
	if err != nil || !strings.Contains(string(rec), v.Name) {
		t.Errorf("the record does not name %s: %v\n%s", v.Name, err, rec)
	}
	content := func() []byte {
		t.Helper()
		var got bytes.Buffer
		if err := pool.Download(v.Name, &got); err != nil {
			t.Fatal(err)
		}
		return got.Bytes()
	}
	spoil := func() {
		t.Helper()
		f, err := os.OpenFile(hostPath(t, d, v.Path), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte("SPOILED"), 4096); err != nil {
			t.Fatal(err)
		}
	}

	// Changed on the host, unused: uploaded again.
	spoil()
	again, err := pool.Share(ctx, src, ver)
	if err != nil || again != v {
		t.Fatalf("Share of a changed volume = %+v, %v", again, err)
	}
	if !bytes.Equal(content(), want) {
		t.Error("the changed volume was not uploaded again")
	}
	// No record: downloaded, hashed, and found good.
	if again, err := pool.Share(ctx, src, nil); err != nil || again != v {
		t.Fatalf("Share without a record = %+v, %v", again, err)
	}

	// Changed on the host under a VM's overlay: refused, kept.
	ov, err := pool.Overlay("test-overlay.disk0", v, "raw", 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Delete(ov.Name)
	if users, err := pool.OverlaysOn(v); err != nil || len(users) != 1 || users[0] != ov.Name {
		t.Errorf("OverlaysOn = %v, %v", users, err)
	}
	spoil()
	_, err = pool.Share(ctx, src, ver)
	var me *libvirt.ContentMismatchError
	if !errors.As(err, &me) || me.Volume != v.Name || len(me.Users) != 1 || me.Users[0] != ov.Name || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Share of a changed base under an overlay = %v", err)
	}
	if bytes.Equal(content(), want) {
		t.Error("the changed volume under an overlay was replaced")
	}
}

// TestConnectErrors: a host that cannot be reached is one sentence naming
// it and its URI.
func TestConnectErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		host libvirt.Host
		want string
	}{
		{libvirt.Host{Name: "gone", URI: "qemu:///system?socket=" + dir + "/no-sock"},
			"libvirt host gone (qemu:///system?socket=" + dir + "/no-sock): cannot connect: "},
		{libvirt.Host{Name: "refused", URI: "qemu+tcp://127.0.0.1:1/system"},
			"libvirt host refused (qemu+tcp://127.0.0.1:1/system): cannot connect: "},
		{libvirt.Host{Name: "xen", URI: "xen:///system"},
			"libvirt host xen (xen:///system): paddock drives QEMU hosts only (qemu:// URIs), not xen"},
		{libvirt.Host{URI: "qemu+ext:///system"},
			"libvirt host qemu+ext:///system: transport ext is not supported: use unix, tcp, tls or ssh"},
	} {
		_, err := libvirt.Connect(tt.host)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) || strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("Connect(%v) = %v; want %q...", tt.host, err, tt.want)
		}
	}
}

// TestFacts reads the shared daemon's facts: this machine's CPUs, a
// domain type it can run, and plain words for it.
func TestFacts(t *testing.T) {
	d := libvirttest.Shared(t)
	c, err := libvirt.Connect(d.Host("local"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := c.Facts()
	if err != nil {
		t.Fatal(err)
	}
	if f.CPUs < 1 || f.Memory == 0 || f.FreeMemory == 0 || f.FreeMemory > f.Memory || !strings.HasPrefix(f.Libvirt, "9.") {
		t.Errorf("facts %+v", f)
	}
	if !f.KVM && (f.NoKVM == "" || f.DomainType() != libvirt.TypeQEMU || !strings.HasPrefix(f.Describe(), "qemu (TCG: ")) {
		t.Errorf("a host without KVM: %+v, %q", f, f.Describe())
	}
	_, err = c.ResolveType(libvirt.TypeKVM)
	if !f.KVM && (err == nil || !strings.Contains(err.Error(), "cannot run domains of type kvm")) {
		t.Errorf("kvm on a host without it: %v", err)
	}
	if errors.Is(err, libvirt.ErrConnectionLost) {
		t.Errorf("%v", err)
	}
}

// TestConnectSSH reaches the remote daemon over SSH (a real sshd in its
// namespaces, tunnelling to its unix socket) with the URI's keyfile and
// known_hosts; a host key that is unknown or changed, a key the host
// refuses and a key that cannot be read are each one sentence saying
// what to do, and an unknown host key is never added to known_hosts.
func TestConnectSSH(t *testing.T) {
	d := libvirttest.SharedRemote(t)
	c, err := libvirt.Connect(libvirt.Host{Name: "lab1", URI: d.SSHURI})
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Facts()
	c.Close()
	if err != nil || !strings.HasPrefix(f.Libvirt, "9.") {
		t.Fatalf("facts over SSH: %+v, %v", f, err)
	}

	dir := t.TempDir()
	empty, other, missing := dir+"/empty", dir+"/other", dir+"/missing"
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	otherKey, err := libvirttest.WriteSSHKey(dir + "/other-host-key")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, []byte(knownhosts.Line([]string{d.Addr}, otherKey)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stranger := dir + "/stranger"
	if _, err := libvirttest.WriteSSHKey(stranger); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/garbage", []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := d.Addr + ":22"
	for _, tt := range []struct {
		name, uri, want string
	}{
		{"unknown host key", d.SSHURIWith(d.SSHKey, empty),
			"cannot connect: the SSH host key of " + addr + " is not in " + empty + ": check the host's key and add it there (e.g. ssh-keyscan -p 22 " + d.Addr + " >> " + empty + "), or name another file with ?known_hosts=PATH"},
		{"no known_hosts", d.SSHURIWith(d.SSHKey, missing),
			"cannot connect: the SSH host key of " + addr + " is not in " + missing + ": "},
		{"changed host key", d.SSHURIWith(d.SSHKey, other),
			"cannot connect: the SSH host key of " + addr + " is not the one " + other + " has for it (line 1): the host was reinstalled, or someone is in the middle; check which before changing " + other},
		{"refused key", d.SSHURIWith(stranger, d.KnownHosts),
			"cannot connect: root@" + addr + " refused " + stranger + ": put its public key in the host's authorized_keys, or name the key with ?keyfile=PATH"},
		{"no key", d.SSHURIWith(dir+"/nokey", d.KnownHosts),
			": reading the SSH key (keyfile=): open " + dir + "/nokey: no such file or directory"},
		{"not a key", d.SSHURIWith(dir+"/garbage", d.KnownHosts),
			": the SSH key " + dir + "/garbage: ssh: no key found"},
		{"bad known_hosts_verify", d.SSHURI + "&known_hosts_verify=yes",
			": known_hosts_verify=yes: want normal, auto or ignore"},
		{"password", d.SSHURI + "&sshauth=password",
			": sshauth=password: paddock authenticates with agent or privkey only (it never prompts)"},
	} {
		h := libvirt.Host{Name: "lab1", URI: tt.uri}
		c, err := libvirt.Connect(h)
		if err == nil {
			c.Close()
			t.Errorf("%s: connected", tt.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), h.String()) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v\nwant %q", tt.name, err, tt.want)
		}
	}
	if b, _ := os.ReadFile(empty); len(b) != 0 {
		t.Errorf("the unknown host key was added to known_hosts: %q", b)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("a known_hosts was made: %s", missing)
	}
}

// TestRefreshWhileOthersRead: a pool is refreshed while another client
// downloads a volume from it over and over (two paddocks following one
// host's consoles). libvirt refuses a refresh while a download is being
// started; Refresh waits such refusals out, so none of its calls fail.
func TestRefreshWhileOthersRead(t *testing.T) {
	d := libvirttest.Shared(t)
	reader, err := libvirt.Connect(d.Host("local"))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	refresher, err := libvirt.Connect(d.Host("local"))
	if err != nil {
		t.Fatal(err)
	}
	defer refresher.Close()
	rpool, err := reader.Pool(true)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "read-me")
	if err := os.WriteFile(path, bytes.Repeat([]byte("console line\n"), 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := rpool.Share(context.Background(), libvirt.Content{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rpool.Delete(v.Name)
	stop := make(chan struct{})
	downloads := make(chan int)
	go func() {
		n := 0
		defer func() { downloads <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := rpool.Download(v.Name, io.Discard); err != nil {
				t.Errorf("download: %v", err)
				return
			}
			n++
		}
	}()
	fpool, err := refresher.Pool(false)
	if err != nil {
		t.Fatal(err)
	}
	const refreshes = 300
	for i := 0; i < refreshes; i++ {
		if err := fpool.Refresh(); err != nil {
			t.Errorf("refresh %d of %d: %v", i+1, refreshes, err)
			break
		}
	}
	close(stop)
	t.Logf("%d refreshes while the other client downloaded %d times", refreshes, <-downloads)
}

// TestDeleteWhileOthersRead: a volume another client is downloading over
// and over (a console log someone follows) is deleted: libvirt refuses
// while a download of it is being started, and Delete waits such
// refusals out. Each of 20 volumes goes at the first Delete.
func TestDeleteWhileOthersRead(t *testing.T) {
	d := libvirttest.Shared(t)
	var pools [2]*libvirt.Pool
	for i := range pools {
		c, err := libvirt.Connect(d.Host("local"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if pools[i], err = c.Pool(true); err != nil {
			t.Fatal(err)
		}
	}
	reader, deleter := pools[0], pools[1]
	dir := t.TempDir()
	for i := range 20 {
		path := filepath.Join(dir, fmt.Sprintf("log-%d", i))
		if err := os.WriteFile(path, bytes.Repeat([]byte(fmt.Sprintf("line %d\n", i)), 2048), 0o644); err != nil {
			t.Fatal(err)
		}
		v, err := deleter.Share(context.Background(), libvirt.Content{Path: path}, nil)
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			for n := 0; ; n++ {
				if n == 1 {
					close(started)
				}
				var got bytes.Buffer
				if err := reader.Download(v.Name, &got); err != nil || got.Len() == 0 {
					done <- err // gone (an empty read), or failed
					return
				}
			}
		}()
		<-started
		if err := deleter.Delete(v.Name); err != nil {
			t.Fatalf("volume %d: %v", i, err)
		}
		if err := <-done; err != nil {
			t.Errorf("volume %d: the reader: %v", i, err)
		}
		if _, ok, err := deleter.Lookup(v.Name); ok || err != nil {
			t.Errorf("volume %d is still there after Delete (%v)", i, err)
		}
	}
}
