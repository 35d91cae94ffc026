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

// templateVM is a managed VM of TestTemplateLab, made from the template
// on the network default, with extra YAML, and cloud-init user data that
// reports on the console the root file system's size, the host name
// cloud-init set and the SSH host keys it made, and, once systemd has
// finished booting, the system's state, the default target's and sshd's,
// and systemd's own boot times.
func templateVM(name, extra string) string {
	return `name: ` + name + `
from: debian-12
console: log
nics: [{network: default}]
` + extra + `
user_data: |
  #cloud-config
  runcmd:
    - echo "@@LAB guest.root-size $(df -B1 --output=size / | tail -n 1 | tr -d ' ')" > /dev/ttyS0
    - echo "@@LAB guest.hostname $(hostname)" > /dev/ttyS0
    - echo "@@LAB guest.ssh-keys $(ls /etc/ssh/ssh_host_*_key | wc -l)" > /dev/ttyS0
    - [sh, -c, '(s=$(systemctl is-system-running --wait); f=$(systemctl list-units --state=failed --plain --no-legend | cut -d" " -f1 | tr "\n" " "); echo "@@LAB guest.units $(systemctl is-active multi-user.target ssh.service | tr "\n" " ")"; echo "@@LAB guest.startup $(systemd-analyze time | head -n 1)"; echo "@@LAB guest.state $s $f") > /dev/ttyS0 &']
`
}

// The guest programs of TestTemplateLab (the template has python3, for
// cloud-init): fetch prints the body of the URL $1; banner prints the
// first 8 bytes a TCP server at $1 port $2 sends; serve serves the
// directory $1 over HTTP on port 80 and writes $2 once it listens.
const (
	templateFetch  = "import sys, urllib.request\nprint(urllib.request.urlopen(sys.argv[1], timeout=60).read().decode().strip())\n"
	templateBanner = "import socket, sys\nprint(socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60).recv(8).decode())\n"
	templateServe  = `import functools, http.server, sys
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
s = http.server.ThreadingHTTPServer(("", 80), h)
open(sys.argv[2], "w").close()
s.serve_forever()
`
)

// stallDumpScript defines stalldump VM, for a VM that stalled: its
// machine state into its VMM log (SIGUSR1, waited for), then each of its
// VMM's threads as L1's kernel sees it: name, state, user and system
// time in ticks, wait channel, kernel stack. A vCPU thread asleep in
// kvm_vcpu_block is a halted guest that no interrupt wakes; one running,
// with its system time growing, loops inside L1's KVM.
const stallDumpScript = `
stalldump() {
	pid=$(paddock inspect $1 | grep -o '"pid": [0-9]*' | head -n 1 | grep -o '[0-9]*$')
	[ -n "$pid" ] || return
	if kill -USR1 $pid; then
		timeout 10 sh -c "until grep -q 'end of the machine' $PADDOCK_HOME/vms/$1/vmm.log; do sleep 0.2; done"
	fi
	tail -n 40 $PADDOCK_HOME/vms/$1/vmm.log
	for task in /proc/$pid/task/*; do
		echo "thread ${task##*/} $(cut -d' ' -f2,3,14,15 $task/stat) wchan $(cat $task/wchan)"
		cat $task/stack
	done
}
`

// templateCommon is sh for every step of TestTemplateLab: the state
// directory, markers, L1's uptime, the template's base disk, a VM's address from paddock ls.
const templateCommon = `
export PADDOCK_HOME=` + store.RootHome + `
mark() { echo "@@LAB $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
base=` + labTemplates + `/debian-12/disks/root.qcow2
addr() { paddock ls | awk -v vm=$1 '$1 == vm { print $6 }'; }
`

// templateUpStep makes the upstream namespace, then web and db from the
// template, starts one and follows its console until its guest reports
// its state, then the other (the guests' markers renamed web.* and db.*,
// the rest of the console prefixed with the VM's name). The base disk's
// SHA-256 is taken first.
const templateUpStep = templateCommon + upstreamScript + stallDumpScript + `
# stallwatch VM: a booting VM whose console is silent for 120 s has
# stalled (a boot here prints every few seconds, 9 s apart at most): its
# vCPU stays inside L1's KVM_RUN for good (the emulated AMD-V,
# docs/lab.md). Its machine state goes to its VMM log (SIGUSR1), then
# the VM is killed and /tmp/VM.stalled says so.
stallwatch() {
	log=$PADDOCK_HOME/vms/$1/console.log
	last=-1
	quiet=0
	while paddock ls | grep -q "^$1 *running"; do
		size=$(stat -c %s $log 2> /dev/null || echo 0)
		if [ "$size" = "$last" ]; then quiet=$((quiet + 5)); else quiet=0; last=$size; fi
		if [ $quiet -ge 120 ]; then
			touch /tmp/$1.stalled
			echo "$1: console silent for $quiet s: stalled"
			stalldump $1
			paddock kill $1 > /dev/null
			return
		fi
		sleep 5
	done
}
# follow VM: the VM's console up to its guest's last report, from a FIFO
# so that the reader can stop without waiting for another line; the
# step's watchdog bounds the wait, stallwatch a stalled boot's.
follow() {
	rm -f /tmp/$1.console /tmp/$1.stalled
	mkfifo /tmp/$1.console
	paddock logs -f $1 > /tmp/$1.console &
	logs=$!
	stallwatch $1 &
	watch=$!
	while IFS= read -r line; do
		case "$line" in
		*"@@LAB guest."*) echo "@@LAB $1.${line#*@@LAB guest.}" ;;
		*) echo "$1| $line" ;;
		esac
		case "$line" in *"@@LAB guest.state"*) break ;; esac
	done < /tmp/$1.console
	kill $logs $watch 2> /dev/null
	wait $watch
	# Why the console ended, if the VM did.
	if ! paddock ls | grep -q "^$1 *running"; then
		paddock inspect $1
		tail -n 30 $PADDOCK_HOME/vms/$1/vmm.log
		dmesg | tail -n 30
	fi
}
mark "host.base-before $(sha256sum $base | cut -d' ' -f1)"
paddock create -f /guest/web.yaml > /dev/null; mark "host.create-web $?"
paddock create -f /guest/db.yaml > /dev/null; mark "host.create-db $?"
mark "host.overlay $(paddock inspect web | grep -c '/vms/web/disks/root.qcow2')"
mark "host.start-at $(up)"
# One boot at a time: with both guests booting at once, one of them
# triple-faulted in 3 of 5 runs (docs/lab.md), with or without each VMM
# pinned to an L1 CPU of its own.
# A single guest has triple-faulted in its boot too, or stalled
# (docs/lab.md): a VM whose boot ends so is made again (a new overlay: a
# first boot from scratch, not cloud-init's half-done one) and started,
# twice at most, and the test says so (host.VM-again, the last count and
# why).
# emulated VM: whether the VM's boot ended as the emulated AMD-V ends
# them (a triple fault, or stallwatch's kill), which it prints.
emulated() {
	if [ -e /tmp/$1.stalled ]; then
		echo stalled
	elif paddock inspect $1 | grep -q 'triple-faulted'; then
		echo triple-fault
	else
		return 1
	fi
}
boot() {
	paddock start $1 > /dev/null; mark "host.start-$1 $?"
	follow $1
	n=0
	while [ $n -lt 2 ] && ! paddock ls | grep -q "^$1 *running" && why=$(emulated $1); do
		n=$((n + 1))
		mark "host.$1-again $n $why"
		paddock rm $1 > /dev/null && paddock create -f /guest/$1.yaml > /dev/null; mark "host.create-$1 $?"
		paddock start $1 > /dev/null; mark "host.start-$1 $?"
		follow $1
	done
}
boot web
mark "host.web-reported-at $(up)"
boot db
mark "host.bridge-ports $(ls /sys/class/net/pd-default/brif | wc -l)"
mark "host.db-reported-at $(up)"
`

// templateNetStep checks the guests over paddock ssh and cp: the user
// cloud-init made, with sudo and a machine ID, in each guest its own
// name; each guest's address is the one paddock ls shows; web reaches
// upstream through the NAT and each guest the other's sshd; a forward
// from L1's 127.0.0.1:8080 reaches a server web starts on its port 80.
const templateNetStep = templateCommon + `
mark "host.addresses $(addr web) $(addr db)"
out=$(paddock ssh web -- 'echo "$(hostname) $(id -un) $(wc -c < /etc/machine-id)"; sudo -n true && echo sudo-ok' 2> /tmp/ssh.err)
mark "host.ssh-rc $?"
mark "host.ssh $(echo $out)"
cat /tmp/ssh.err
mark "host.db-hostname $(paddock ssh db -- hostname)"
# Each VM's identity as paddock recorded it (its UUID, its NIC's MAC on
# default) and as its guest sees it (SMBIOS, eth0, cloud-init's
# instance-id, machine-id).
for vm in web db; do
	mark "host.$vm-id $(paddock inspect $vm | sed -n 's/^  "uuid": "\([^"]*\)".*/\1/p') $(paddock inspect $vm | grep -o '"mac": "[^"]*"' | sort -u | cut -d'"' -f4)"
	mark "host.$vm-guest-id $(paddock ssh $vm -- sudo -n cat /sys/class/dmi/id/product_uuid /sys/class/net/eth0/address /var/lib/cloud/data/instance-id | tr '\n' ' ')"
	mark "host.$vm-machine-id $(paddock ssh $vm -- cat /etc/machine-id)"
done
mark "host.guest-addresses $(echo $(paddock ssh web -- hostname -I) $(paddock ssh db -- hostname -I))"
paddock cp -r /guest/py web:py; mark "host.cp-web $?"
paddock cp -r /guest/py db:py; mark "host.cp-db $?"
mark "host.upstream $(paddock ssh web -- python3 py/fetch.py http://198.51.100.2/cgi-bin/addr)"
mark "host.web-to-db $(paddock ssh web -- python3 py/banner.py $(addr db) 22)"
mark "host.db-to-web $(paddock ssh db -- python3 py/banner.py $(addr web) 22)"
# The server listens before it writes /tmp/listening, and the next ssh
# waits for that file: then L1 fetches through the forward.
paddock ssh web -- 'mkdir www && echo "guest $(hostname)" > www/index.html && sudo -n systemd-run --unit=www python3 $PWD/py/serve.py $PWD/www /tmp/listening > /dev/null && timeout 60 sh -c "until [ -e /tmp/listening ]; do sleep 0.2; done"'
mark "host.serve-rc $?"
mark "host.forward $(timeout 60 wget -q -O - http://127.0.0.1:8080/)"
`

// templateWarmStep stops db with the ACPI power button (freeing its
// memory), makes a warm template, warm, of the running web and starts
// two warm clones of it, w-1 and w-2. Each VM's identity as its guest
// sees it, over paddock ssh (which waits for the clone's SSH server at
// the address of its lease: L1 reaches it there), is one marker: its
// hostname, machine ID, ed25519 host key fingerprint, NIC MAC, 16 bytes
// of /dev/urandom and IPv4 addresses; with each clone's address and
// MAC as paddock knows them, and its wall clock between two of L1's. A
// clone that does not answer has its console, VMM log and the network's
// state printed. Then both
// templates' files are verified against their checksums, and the clones
// and the warm template removed.
const templateWarmStep = templateCommon + `
mark "host.stop $(paddock stop --timeout 120 db 2>&1)"
# who VM: the guest's identity, on one line.
who() {
	paddock ssh --wait 5m $1 -- 'echo "$(hostname) $(cat /etc/machine-id) $(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d" " -f2) $(cat /sys/class/net/e*/address) $(od -An -N16 -tx1 /dev/urandom | tr -d " \n") $(hostname -I)"'
}
mark "host.warm-web $(who web)"
# What the identity unit's check of the seed every 2 s has cost web so
# far: its CPU time (ns) and how long it has run (us).
mark "host.warm-web-unit $(paddock ssh web -- 'systemctl show -P CPUUsageNSec paddock-identity; systemctl show -P ActiveEnterTimestampMonotonic paddock-identity; cut -d" " -f1 /proc/uptime' | tr '\n' ' ')"
mark "host.warm-at $(up)"
paddock template create warm --from web --memory; mark "host.warm-create $?"
mark "host.warm-made-at $(up)"
paddock clone warm w -n 2 --start > /dev/null; mark "host.warm-clone $?"
for vm in w-1 w-2; do
	out=$(who $vm); rc=$?
	mark "host.warm-$vm-rc $rc"
	mark "host.warm-$vm $out"
	mark "host.warm-$vm-at $(up)"
	mark "host.warm-$vm-lease $(addr $vm) $(paddock inspect $vm | grep -o '"mac": "[^"]*"' | sort -u | cut -d'"' -f4)"
	# The guest's wall clock between two readings of L1's (UTC seconds),
	# and what the identity unit said when it set the clock.
	mark "host.warm-$vm-clock $(date +%s) $(paddock ssh $vm -- date +%s) $(date +%s)"
	mark "host.warm-$vm-clockset $(grep -a -o 'wall clock set to the RTC, [-+0-9]* s' $PADDOCK_HOME/vms/$vm/console.log | head -n 1)"
	if [ $rc != 0 ]; then
		paddock ls
		paddock inspect $vm
		tail -n 80 $PADDOCK_HOME/vms/$vm/console.log
		tail -n 20 $PADDOCK_HOME/vms/$vm/vmm.log
		paddock network inspect default
		nft list table ip paddock-default
		free -m
	fi
done
paddock template inspect --verify warm > /dev/null; mark "host.warm-verify $?"
paddock template inspect --verify debian-12 > /dev/null; mark "host.template-verify $?"
paddock rm --force w-1 w-2; mark "host.warm-rm $?"
paddock template rm warm; mark "host.warm-template-rm $?"
mark "host.warm-done-at $(up)"
`

// templateRmStep removes web, running, with rm --force: no bridge port,
// forward, lease or overlay of it remains; removes db (stopped by
// templateWarmStep): the network goes with its last VM. The base disk
// is the same, and the template stays until template rm.
const templateRmStep = templateCommon + `
paddock rm --force web; mark "host.rm-web $?"
mark "host.after-web $(ls /sys/class/net/pd-default/brif 2> /dev/null | wc -l) $(nft list table ip paddock-default 2> /dev/null | grep -c 8080) $(paddock network inspect default | grep -c '"vm": "web"') $(ls -d $PADDOCK_HOME/vms/web 2> /dev/null | wc -l)"
qemu-img check -q $PADDOCK_HOME/vms/db/disks/root.qcow2; mark "host.db-overlay-check $?"
paddock rm db; mark "host.rm-db $?"
# netd takes the network down once the last VMM on it is gone: wait for
# its lock.
timeout 60 /usr/local/bin/flock $PADDOCK_HOME/networks/default/netd.lock true; mark "host.netd-gone $?"
[ -e /sys/class/net/pd-default ]; mark "host.bridge-gone $?"
nft list table ip paddock-default > /dev/null 2>&1; mark "host.table-gone $?"
mark "host.leases $(paddock network inspect default | grep -c '"vm":')"
mark "host.base-after $(sha256sum $base | cut -d' ' -f1)"
[ -e $base ]; mark "host.base-kept $?"
paddock template rm debian-12; mark "host.template-rm-rc $?"
`

// TestTemplateLab boots two VMs made from the debian-12 template (built
// on the host from Debian's packages, stock cloud kernel and initramfs)
// under paddock in the nested lab, on the managed network default, in
// one L1 boot: in each, systemd reaches multi-user.target and the
// system is running (no failed unit), cloud-init reads paddock's seed
// (the host name is the VM's), makes the SSH host keys and the user, and
// web's root file system has grown to root_size; each VM is a clone of
// the template with its own identity (checkTemplateIdentity: UUID in
// SMBIOS and cloud-init's instance-id, MAC, machine-id; db's overlay
// passes qemu-img check after its shutdown); paddock ssh reaches the
// user, with sudo, at the VM's DHCP address, and paddock cp copies to
// it; the VMs have distinct addresses and reach each other, web reaches
// an HTTP server in a namespace upstream of the NAT, and L1 reaches
// web's port 80 through a forward; paddock stop shuts db down through
// the ACPI power button; two warm clones of a warm template of the
// running web take identities of their own (checkWarmClones: hostname,
// machine ID, SSH host key, MAC, address, random bytes; each answers
// paddock ssh at its lease's address); rm --force of the running web
// leaves no bridge port, forward, lease or overlay of it, and the
// network goes with its last VM; the template's base disk is the same,
// byte for byte, after the run; rm removes the VMs and not the
// template, which template rm then removes.
func TestTemplateLab(t *testing.T) {
	l := lab.New(t)
	b := debootstraptest.Template(t)
	ctx := context.Background()
	sc := lab.Scenario{
		WithPaddock: true,
		// The warm step holds web, its warm template (a copy of its
		// disk and its memory: 959 MiB) and two clones in L1's tmpfs
		// and RAM, beside the template and the VMs' overlays. Not more:
		// all of L1's RAM stays below 4 GiB (lab.MaxL1MemoryMiB).
		MemoryMiB: 3500,
		// Its L1 runs for many minutes, and the emulator has reset it
		// with nothing on its console in 3 of 6 boots (docs/lab.md).
		Attempts: 3,
		Files: map[string]lab.File{
			"/guest/web.yaml":     {Data: []byte(templateVM("web", "root_size: 6GiB\nmemory: 512MiB\nports: [\"8080:80\"]"))},
			"/guest/db.yaml":      {Data: []byte(templateVM("db", "memory: 384MiB"))},
			"/guest/py/fetch.py":  {Data: []byte(templateFetch)},
			"/guest/py/banner.py": {Data: []byte(templateBanner)},
			"/guest/py/serve.py":  {Data: []byte(templateServe)},
		},
		Steps: []lab.Step{
			{Name: "template/up", Script: templateUpStep, Timeout: 15 * time.Minute},
			{Name: "template/net", Script: templateNetStep, Timeout: 6 * time.Minute},
			{Name: "template/warm", Script: templateWarmStep, Timeout: 15 * time.Minute},
			{Name: "template/rm", Script: templateRmStep, Timeout: 5 * time.Minute},
		},
	}
	templateFiles(t, b, sc.Files)
	// paddock ssh and cp run the system's ssh and scp, which want to
	// know who root is; scp runs ssh by its path.
	labHostTools(t, sc.Files, append(networkTools, [2]string{"ssh", "openssh-client"}, [2]string{"scp", "openssh-client"}, [2]string{"qemu-img", "qemu-utils"})...)
	sc.Files["/usr/bin/ssh"] = sc.Files["/usr/local/bin/ssh"]
	sc.Files["/etc/passwd"] = lab.File{Data: []byte("root:x:0:0:root:/root:/bin/sh\n")}
	sc.Files["/etc/group"] = lab.File{Data: []byte("root:x:0:\n")}
	res, err := l.Run(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(b.Dir, store.TemplateMetaFile))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := store.ParseTemplateMeta(data, store.TemplateMetaFile)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("transcript tail:\n%s", res.Tail(150))
		}
	}()

	st := managedStep(t, res, "template/up")
	expectMarker(t, st, "l1.upstream-httpd", "0")
	expectMarker(t, st, "host.base-before", meta.Disks[0].SHA256)
	expectMarker(t, st, "host.create-web", "0")
	expectMarker(t, st, "host.create-db", "0")
	expectMarker(t, st, "host.overlay", "1")
	expectMarker(t, st, "host.start-web", "0")
	expectMarker(t, st, "host.start-db", "0")
	expectMarker(t, st, "host.bridge-ports", "2")
	for _, vm := range []string{"web", "db"} {
		for _, m := range st.Markers {
			if m.Key == "host."+vm+"-again" {
				t.Logf("%s's boot went wrong (%s) and it was made and started again (the emulated AMD-V: docs/lab.md)", vm, m.Value)
			}
		}
		if dumps := stallDumps(res, vm); dumps != "" {
			t.Logf("%s stalled; what its VMM and L1's kernel said:\n%s", vm, dumps)
		}
		expectMarker(t, st, vm+".hostname", vm)
		if n, err := strconv.Atoi(markerValue(st, vm+".ssh-keys")); err != nil || n < 3 {
			t.Errorf("%s has %d SSH host keys (%v), want those cloud-init makes", vm, n, err)
		}
		if state := markerValue(st, vm+".state"); state != "running" {
			t.Errorf("systemctl is-system-running in %s: %q, want running (failed units after the state)", vm, state)
		}
		expectMarker(t, st, vm+".units", "active active")
		t.Logf("%s's systemd-analyze: %s", vm, markerValue(st, vm+".startup"))
	}
	size, err := strconv.ParseInt(markerValue(st, "web.root-size"), 10, 64)
	if err != nil || size < 5<<30 || size > 6<<30 {
		t.Errorf("web's root file system is %d bytes (%v), want it grown to fill its 6 GiB disk", size, err)
	}
	for _, span := range []struct{ what, from, to string }{
		{"start of web to its report (systemd running)", "host.start-at", "host.web-reported-at"},
		{"start of web to db's report (one after the other)", "host.start-at", "host.db-reported-at"},
	} {
		if d, err := l1Seconds(st, span.from, span.to); err == nil {
			t.Logf("%s: %.1f s of L1 time", span.what, d)
		}
	}

	st = managedStep(t, res, "template/net")
	addrs := strings.Fields(markerValue(st, "host.addresses"))
	if len(addrs) != 2 || addrs[0] == addrs[1] || !strings.HasPrefix(addrs[0], "10.77.0.") || !strings.HasPrefix(addrs[1], "10.77.0.") {
		t.Errorf("paddock ls: web and db at %q, want two distinct addresses on default (10.77.0.0/24)", addrs)
	} else {
		expectMarker(t, st, "host.guest-addresses", addrs[0]+" "+addrs[1])
	}
	expectMarker(t, st, "host.ssh-rc", "0")
	expectMarker(t, st, "host.ssh", "web paddock 33 sudo-ok")
	expectMarker(t, st, "host.db-hostname", "db")
	checkTemplateIdentity(t, st)
	expectMarker(t, st, "host.cp-web", "0")
	expectMarker(t, st, "host.cp-db", "0")
	// Upstream sees L1's uplink address: outbound NAT (busybox httpd
	// listens on IPv6 and IPv4 at once, so the address is mapped).
	expectMarker(t, st, "host.upstream", "from [::ffff:198.51.100.1]")
	expectMarker(t, st, "host.web-to-db", "SSH-2.0-")
	expectMarker(t, st, "host.db-to-web", "SSH-2.0-")
	expectMarker(t, st, "host.serve-rc", "0")
	expectMarker(t, st, "host.forward", "guest web")

	checkWarmClones(t, res)

	st = managedStep(t, res, "template/rm")
	expectMarker(t, st, "host.rm-web", "0")
	// No VM's tap on the bridge (db is stopped); no 8080 rule; no lease
	// of web; no directory (overlay) of web.
	expectMarker(t, st, "host.after-web", "0 0 0 0")
	expectMarker(t, st, "host.db-overlay-check", "0")
	expectMarker(t, st, "host.rm-db", "0")
	expectMarker(t, st, "host.netd-gone", "0")
	expectMarker(t, st, "host.bridge-gone", "1")
	expectMarker(t, st, "host.table-gone", "1")
	expectMarker(t, st, "host.leases", "0")
	expectMarker(t, st, "host.base-after", meta.Disks[0].SHA256)
	expectMarker(t, st, "host.base-kept", "0")
	expectMarker(t, st, "host.template-rm-rc", "0")
}

// stallDumps returns what the transcript holds of vm's stalls: from each
// of stallwatch's "vm: console silent" lines to the host.vm-again marker
// that follows it (the VMM's machine state and its threads as L1's
// kernel saw them), 80 lines at most each; "" if vm never stalled.
func stallDumps(res *lab.Result, vm string) string {
	var b strings.Builder
	n := -1
	for _, l := range res.Lines {
		switch {
		case strings.HasPrefix(l.Text, vm+": console silent for"):
			n = 0
		case n >= 0 && strings.Contains(l.Text, "@@LAB host."+vm+"-again"):
			n = -1
		}
		if n >= 0 && n < 80 {
			b.WriteString(l.Text + "\n")
			n++
		}
	}
	return b.String()
}

// checkTemplateIdentity checks that web and db, each made from the
// template with an overlay of its own, are clones with identities of
// their own: each guest sees the UUID paddock recorded for its VM
// (SMBIOS product_uuid, and cloud-init's instance-id) and the MAC address
// of its lease on default, and no two share a UUID, MAC or machine-id.
func checkTemplateIdentity(t *testing.T, st *lab.StepResult) {
	t.Helper()
	seen := map[string]string{}
	for _, vm := range []string{"web", "db"} {
		id := strings.Fields(markerValue(st, "host."+vm+"-id"))
		if len(id) != 2 || len(id[0]) != 36 || len(id[1]) != 17 {
			t.Errorf("%s: paddock inspect shows UUID and MAC %q", vm, id)
			continue
		}
		expectMarker(t, st, "host."+vm+"-guest-id", id[0]+" "+id[1]+" "+id[0])
		machineID := markerValue(st, "host."+vm+"-machine-id")
		if len(machineID) != 32 {
			t.Errorf("%s: machine-id %q", vm, machineID)
		}
		for _, v := range append(id, machineID) {
			if other, ok := seen[v]; ok {
				t.Errorf("%s and %s share %s", other, vm, v)
			}
			seen[v] = vm
		}
	}
}

// markerValue is a step's marker value, "" when it is missing.
func markerValue(st *lab.StepResult, key string) string {
	m, ok := st.Marker(key)
	if !ok {
		return ""
	}
	return strings.TrimSpace(m.Value)
}

// lastMarker is the value of the last marker key in the step ("" if
// none).
func lastMarker(st *lab.StepResult, key string) string {
	v := ""
	for _, m := range st.Markers {
		if m.Key == key {
			v = strings.TrimSpace(m.Value)
		}
	}
	return v
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
