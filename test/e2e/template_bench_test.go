package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/images/debootstrap/debootstraptest"
	"github.com/paddock-vm/paddock/test/lab"
)

// benchTemplateVM is the VM of BenchmarkTemplateBootLab, as paddock
// makes it; QEMU boots the same files. Its user data reports on the
// console when sshd is up (a unit ordered after ssh.service, started by
// bootcmd before the boot transaction gets there) and when systemd has
// finished booting.
const benchTemplateVM = `name: web
from: debian-12
memory: 512MiB
console: log
user_data: |
  #cloud-config
  bootcmd:
    - [systemd-run, --no-block, --unit=ssh-ready-mark, -p, After=ssh.service, -p, Requires=ssh.service, sh, -c, 'echo "@@LAB guest.ssh-ready" > /dev/ttyS0']
  runcmd:
    - [sh, -c, '(systemctl is-system-running --wait > /dev/null; echo "@@LAB guest.running" > /dev/ttyS0) &']
`

// benchFollow follows a console (FIFO $1) until the guest says it is
// running, marking in L1 time when sshd came up and when systemd was
// done: VMM.ssh-ready and VMM.running.
const benchFollow = `
follow() {
	while IFS= read -r line; do
		case "$line" in
		*"@@LAB guest.ssh-ready"*) mark "$2.ssh-ready $(up)" ;;
		*"@@LAB guest.running"*) mark "$2.running $(up)"; break ;;
		esac
	done < "$1"
}
`

// BenchmarkTemplateBootLab boots a VM made from the debian-12 template
// under paddock, then the same kernel, initrd, template disk (a fresh
// overlay) and cloud-init seed under QEMU (microvm with PCIe, virtio-blk
// PCI as paddock's) in the same L1 run, and reports the time from the
// VMM's start to sshd running and to systemd's boot being done, in L1
// seconds, and paddock's over QEMU's (the ratio is what compares: the
// lab is emulated).
func BenchmarkTemplateBootLab(b *testing.B) {
	l := lab.New(b)
	built := debootstraptest.Template(b)
	base := labTemplates + "/debian-12/disks/root.qcow2"
	tdir := labTemplates + "/debian-12"
	qemu := []string{
		"qemu-system-x86_64", "-L", lab.QEMUDataDir, "-enable-kvm", "-cpu", "host",
		"-M", "microvm,x-option-roms=off,rtc=on,pcie=on", "-bios", "qboot.rom",
		"-smp", "1", "-m", "512", "-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "stdio", "-no-reboot",
		"-kernel", tdir + "/vmlinuz", "-initrd", tdir + "/initrd.img", "-append", built.Result.Cmdline,
		"-drive", "file=/tmp/qemu.qcow2,format=qcow2,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0",
		"-drive", "file=/tmp/seed.iso,format=raw,if=none,id=d1,readonly=on", "-device", "virtio-blk-pci,drive=d1,serial=cidata",
	}
	script := `
mark() { echo "@@LAB $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
` + benchFollow + `
paddock create -f /guest/web.yaml > /dev/null || exit 1
mkfifo /tmp/paddock.console /tmp/qemu.console
mark "paddock.start $(up)"
paddock start web > /dev/null || exit 1
paddock logs -f web > /tmp/paddock.console &
logs=$!
follow /tmp/paddock.console paddock
kill $logs
paddock kill web > /dev/null
cp ` + store.RootHome + `/vms/web/seed.iso /tmp/seed.iso
paddock image create -b ` + base + ` -F qcow2 /tmp/qemu.qcow2 > /dev/null || exit 1
mark "qemu.start $(up)"
` + lab.ShellJoin(qemu) + ` > /tmp/qemu.console 2>&1 &
vm=$!
follow /tmp/qemu.console qemu
kill $vm
`
	sc := lab.Scenario{
		WithPaddock: true,
		WithQEMU:    true,
		Files:       map[string]lab.File{"/guest/web.yaml": {Data: []byte(benchTemplateVM)}},
		Steps:       []lab.Step{{Name: "boot", Script: script, Timeout: 20 * time.Minute}},
	}
	templateFiles(b, built, sc.Files)
	for b.Loop() {
		res, err := l.Run(context.Background(), sc)
		if err != nil {
			b.Fatal(err)
		}
		st, ok := res.Step("boot")
		if !ok || !st.Done || st.RC != 0 {
			b.Fatalf("the boot step did not finish: %+v", st)
		}
		for _, what := range []string{"ssh-ready", "running"} {
			var secs [2]float64
			for i, vmm := range []string{"paddock", "qemu"} {
				d, err := l1Seconds(st, vmm+".start", vmm+"."+what)
				if err != nil {
					b.Fatalf("%s: no %s marker", vmm, what)
				}
				secs[i] = d
				b.ReportMetric(d, vmm+"-"+what+"-s")
			}
			b.ReportMetric(secs[0]/secs[1], what+"-ratio")
			b.Logf("start to %s: paddock %.1f s, QEMU %.1f s: ratio %.2f", what, secs[0], secs[1], secs[0]/secs[1])
		}
	}
	b.ReportMetric(0, "ns/op")
}
