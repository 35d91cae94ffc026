package e2e

import (
	"context"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/images/debootstrap/debootstraptest"
	"github.com/paddock-vm/paddock/images/virtioguest"
	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/test/lab"
)

// labTemplates is the template store of L1's paddock (root's default
// $PADDOCK_HOME).
const labTemplates = store.RootHome + "/templates"

// templateFiles puts the template b, as the host built it, into L1's
// template store, read-only as paddock keeps it.
func templateFiles(t testing.TB, b *debootstraptest.Built, files map[string]lab.File) {
	t.Helper()
	err := filepath.WalkDir(b.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(b.Dir, p)
		files[path.Join(labTemplates, debootstraptest.Name, filepath.ToSlash(rel))] = lab.File{Source: p, Mode: 0o400}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// templateVM is the managed VM of TestTemplateLab: made from the
// template, its root disk grown to 6GiB, with cloud-init user data that
// reports on the console the root file system's size, the host name
// cloud-init set and the SSH host keys it made, and, once systemd has
// finished booting, the system's state, the default target's and sshd's,
// and systemd's own boot times.
const templateVM = `name: web
from: debian-12
root_size: 6GiB
memory: 512MiB
console: log
nics: [{network: default}]
user_data: |
  #cloud-config
  runcmd:
    - echo "@@LAB guest.root-size $(df -B1 --output=size / | tail -n 1 | tr -d ' ')" > /dev/ttyS0
    - echo "@@LAB guest.hostname $(hostname)" > /dev/ttyS0
    - echo "@@LAB guest.ssh-keys $(ls /etc/ssh/ssh_host_*_key | wc -l)" > /dev/ttyS0
    - [sh, -c, '(s=$(systemctl is-system-running --wait); f=$(systemctl list-units --state=failed --plain --no-legend | cut -d" " -f1 | tr "\n" " "); echo "@@LAB guest.units $(systemctl is-active multi-user.target ssh.service | tr "\n" " ")"; echo "@@LAB guest.startup $(systemd-analyze time | head -n 1)"; echo "@@LAB guest.state $s $f") > /dev/ttyS0 &']
`

// templateStep runs in L1: paddock makes the VM from the template and
// starts it; the console is followed until the guest reports its state;
// paddock stop shuts it down with the ACPI power button; the base disk's
// SHA-256 is taken before and after, and rm must leave it.
const templateStep = `
mark() { echo "@@LAB $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
base=` + labTemplates + `/debian-12/disks/root.qcow2
mark "host.base-before $(sha256sum $base | cut -d' ' -f1)"
paddock create -f /guest/web.yaml > /dev/null; mark "host.create-rc $?"
mark "host.overlay $(paddock inspect web | grep -c '/vms/web/disks/root.qcow2')"
mark "host.start-at $(up)"
paddock start web > /dev/null; mark "host.start-rc $?"
# The console, up to the guest's last report (the guest's markers pass
# through); the step's watchdog bounds the wait. From a FIFO, so that
# the reader can stop following without waiting for the guest's next
# line.
mkfifo /tmp/web.console
paddock logs -f web > /tmp/web.console &
logs=$!
while IFS= read -r line; do
	echo "$line"
	case "$line" in *"@@LAB guest.state"*) break ;; esac
done < /tmp/web.console
mark "host.reported-at $(up)"
kill $logs
# paddock's SSH key, the user cloud-init made, its sudo, the machine ID
# made at first boot, over the managed network.
out=$(paddock ssh web -- 'echo "$(hostname) $(id -un) $(wc -c < /etc/machine-id)"; sudo -n true && echo sudo-ok' 2> /tmp/ssh.err)
mark "host.ssh-rc $?"
mark "host.ssh $(echo $out)"
cat /tmp/ssh.err
mark "host.stop $(paddock stop --timeout 120 web 2>&1)"
mark "host.stopped-at $(up)"
mark "host.base-after $(sha256sum $base | cut -d' ' -f1)"
paddock rm web; mark "host.rm-rc $?"
[ -e $base ]; mark "host.base-kept $?"
paddock template rm debian-12; mark "host.template-rm-rc $?"
`

// TestTemplateLab boots a VM made from the debian-12 template (built on
// the host from Debian's packages, stock cloud kernel and initramfs)
// under paddock in the nested lab, on the managed network default, one
// L1 boot: systemd reaches multi-user.target and the system is running
// (no failed unit), cloud-init reads paddock's seed (the host name is
// the VM's), makes the SSH host keys and the user, and the root file
// system has grown to root_size; paddock ssh reaches the user, with sudo,
// at the VM's DHCP address; paddock stop shuts it down through the ACPI
// power button; the template's base
// disk is the same, byte for byte, after the run; rm removes the VM and
// not the template, which template rm then removes.
func TestTemplateLab(t *testing.T) {
	l := lab.New(t)
	b := debootstraptest.Template(t)
	ctx := context.Background()
	sc := lab.Scenario{
		WithPaddock: true,
		Files:       map[string]lab.File{"/guest/web.yaml": {Data: []byte(templateVM)}},
		Steps:       []lab.Step{{Name: "template", Script: templateStep, Timeout: 12 * time.Minute}},
	}
	templateFiles(t, b, sc.Files)
	// paddock ssh runs the system's ssh, which wants to know who root is.
	bin := testenv.RequireTool(t, "ssh", "openssh-client")
	host, err := virtioguest.HostFiles(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range host {
		sc.Files[f.Path] = lab.File{Source: f.Source, Mode: f.Mode}
	}
	sc.Files["/etc/passwd"] = lab.File{Data: []byte("root:x:0:0:root:/root:/bin/sh\n")}
	sc.Files["/etc/group"] = lab.File{Data: []byte("root:x:0:\n")}
	res, err := l.Run(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	st := managedStep(t, res, "template")
	data, err := os.ReadFile(filepath.Join(b.Dir, store.TemplateMetaFile))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := store.ParseTemplateMeta(data, store.TemplateMetaFile)
	if err != nil {
		t.Fatal(err)
	}
	expectMarker(t, st, "host.base-before", meta.Disks[0].SHA256)
	expectMarker(t, st, "host.create-rc", "0")
	expectMarker(t, st, "host.overlay", "1")
	expectMarker(t, st, "host.start-rc", "0")
	expectMarker(t, st, "guest.hostname", "web")
	if n, err := strconv.Atoi(value(t, st, "guest.ssh-keys")); err != nil || n < 3 {
		t.Errorf("the guest has %d SSH host keys (%v), want those cloud-init makes", n, err)
	}
	if state := value(t, st, "guest.state"); state != "running" {
		t.Errorf("systemctl is-system-running in the guest: %q, want running (failed units after the state)", state)
	}
	expectMarker(t, st, "guest.units", "active active")
	expectMarker(t, st, "host.ssh-rc", "0")
	expectMarker(t, st, "host.ssh", "web paddock 33 sudo-ok")
	t.Logf("the guest's systemd-analyze: %s", value(t, st, "guest.startup"))
	size, err := strconv.ParseInt(value(t, st, "guest.root-size"), 10, 64)
	if err != nil || size < 5<<30 || size > 6<<30 {
		t.Errorf("the guest's root file system is %d bytes (%v), want it grown to fill its 6 GiB disk", size, err)
	}
	if stop := value(t, st, "host.stop"); !strings.Contains(stop, "the guest shut down after the ACPI power button") {
		t.Errorf("paddock stop: %q, want the guest to shut down on the power button", stop)
	}
	expectMarker(t, st, "host.base-after", meta.Disks[0].SHA256)
	expectMarker(t, st, "host.rm-rc", "0")
	expectMarker(t, st, "host.base-kept", "0")
	expectMarker(t, st, "host.template-rm-rc", "0")
	for _, span := range []struct{ what, from, to string }{
		{"start to the guest's report (systemd running)", "host.start-at", "host.reported-at"},
		{"stop (ACPI power button to power-off)", "host.reported-at", "host.stopped-at"},
	} {
		if d, err := l1Seconds(st, span.from, span.to); err == nil {
			t.Logf("%s: %.1f s of L1 time", span.what, d)
		}
	}
}

// l1Seconds is the L1 uptime between two markers whose values start with
// L1's uptime.
func l1Seconds(st *lab.StepResult, from, to string) (float64, error) {
	var v [2]float64
	for i, k := range []string{from, to} {
		m, ok := st.Marker(k)
		if !ok {
			return 0, strconv.ErrSyntax
		}
		f, err := strconv.ParseFloat(strings.Fields(m.Value + " x")[0], 64)
		if err != nil {
			return 0, err
		}
		v[i] = f
	}
	return v[1] - v[0], nil
}
