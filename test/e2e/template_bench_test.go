package e2e

import (
	"context"
	"fmt"
	"strconv"
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

// benchQEMU is sh for the lab benchmarks: qemu_until CONSOLE PREFIX
// COMMAND... runs the QEMU command with its console on the FIFO CONSOLE
// until the script's follow CONSOLE PREFIX returns (it saw what the
// benchmark waits for), then kills QEMU.
const benchQEMU = `
qemu_until() {
	console=$1 prefix=$2
	shift 2
	"$@" > $console 2>&1 &
	vm=$!
	follow $console $prefix
	kill $vm
	wait $vm
}
`

// EnvTemplateBenchRounds sets how many rounds BenchmarkTemplateBootLab
// runs in its L1 boot, each a first boot of a new VM under paddock and
// then of the same files under QEMU. Default 1.
const EnvTemplateBenchRounds = "PADDOCK_TEMPLATE_BENCH_ROUNDS"

// BenchmarkTemplateBootLab boots a VM made from the debian-12 template
// under paddock, then the same kernel, initrd, template disk (a fresh
// overlay) and cloud-init seed under QEMU (microvm with PCIe, virtio-blk
// PCI as paddock's) in the same L1 run, and reports the time from the
// VMM's start to sshd running (ssh.service active: sshd listens) and to
// systemd's boot being done, in L1 seconds, and paddock's over QEMU's
// (the ratio is what compares: the lab is emulated). With more rounds
// (EnvTemplateBenchRounds), each a new VM's first boot, the ratio is the
// geometric mean of the rounds' ratios, which cancels most of the
// host's swings in load.
func BenchmarkTemplateBootLab(b *testing.B) {
	l := lab.New(b)
	built := debootstraptest.Template(b)
	rounds := benchRounds(b, EnvTemplateBenchRounds, 1)
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
	// Round $r: a new VM web$r under paddock, then QEMU on a new overlay
	// with web$r's seed; markers rR.VMM.start/ssh-ready/running.
	script := `
mark() { echo "@@LAB $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
` + benchFollow + benchQEMU + `
r=1
while [ $r -le ` + strconv.Itoa(rounds) + ` ]; do
	paddock create --name web$r -f /guest/web.yaml > /dev/null || exit 1
	rm -f /tmp/paddock.console /tmp/qemu.console /tmp/qemu.qcow2
	mkfifo /tmp/paddock.console /tmp/qemu.console
	mark "r$r.paddock.start $(up)"
	paddock start web$r > /dev/null || exit 1
	paddock logs -f web$r > /tmp/paddock.console &
	logs=$!
	follow /tmp/paddock.console r$r.paddock
	kill $logs
	paddock kill web$r > /dev/null
	cp ` + store.RootHome + `/vms/web$r/seed.iso /tmp/seed.iso
	paddock rm web$r > /dev/null
	paddock image create -b ` + base + ` -F qcow2 /tmp/qemu.qcow2 > /dev/null || exit 1
	mark "r$r.qemu.start $(up)"
	qemu_until /tmp/qemu.console r$r.qemu ` + lab.ShellJoin(qemu) + `
	r=$((r + 1))
done
`
	sc := lab.Scenario{
		WithPaddock: true,
		WithQEMU:    true,
		Files:       map[string]lab.File{"/guest/web.yaml": {Data: []byte(benchTemplateVM)}},
		Steps:       []lab.Step{{Name: "boot", Script: script, Timeout: time.Duration(rounds) * 20 * time.Minute}},
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
			secs := roundSeconds(b, st, rounds, what, "start to "+what)
			// pairedRatio's latency form is QEMU's time over paddock's.
			speedup, wins := pairedRatio(secs[0], secs[1], false)
			b.ReportMetric(mean(secs[0]), "paddock-"+what+"-s")
			b.ReportMetric(mean(secs[1]), "qemu-"+what+"-s")
			b.ReportMetric(1/speedup, what+"-ratio")
			b.Logf("start to %s: paddock %.1f s, QEMU %.1f s (means of %d rounds): ratio %.2f (paired), paddock faster in %d of %d rounds", what, mean(secs[0]), mean(secs[1]), rounds, 1/speedup, wins, rounds)
		}
	}
	b.ReportMetric(0, "ns/op")
}

// roundSeconds returns each round's L1 seconds under paddock and then
// QEMU (secs[0], secs[1]) from the markers rR.VMM.start to rR.VMM.what
// of a benchmark's step, and logs each round as label.
func roundSeconds(b *testing.B, st *lab.StepResult, rounds int, what, label string) [2][]float64 {
	b.Helper()
	var secs [2][]float64
	for r := 1; r <= rounds; r++ {
		for i, vmm := range []string{"paddock", "qemu"} {
			pre := fmt.Sprintf("r%d.%s.", r, vmm)
			d, err := l1Seconds(st, pre+"start", pre+what)
			if err != nil {
				b.Fatalf("round %d: %s: no %s marker", r, vmm, what)
			}
			secs[i] = append(secs[i], d)
		}
		b.Logf("round %d, %s: paddock %.2f s, QEMU %.2f s: ratio %.2f", r, label, secs[0][r-1], secs[1][r-1], secs[0][r-1]/secs[1][r-1])
	}
	return secs
}

// mean is the arithmetic mean of xs (not empty).
func mean(xs []float64) float64 {
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}
