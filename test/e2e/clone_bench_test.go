package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/test/lab"
)

// cloneBenchInitrd is the guest of BenchmarkCloneBootLab: the hello
// guest with the virtio-blk drivers, running its boot script (power off
// at once).
const cloneBenchInitrd = "/guest/clone-bench.img"

// cloneBenchMiB is the guest's memory under both VMMs.
const cloneBenchMiB = 256

// cloneBenchVM is the VM the benchmark's template is made of, never
// booted itself: the stock kernel and the bench guest, one writable
// qcow2 disk, no NIC, no seed (QEMU boots the same).
var cloneBenchVM = `name: bb
memory: ` + strconv.Itoa(cloneBenchMiB) + `MiB
kernel: ` + lab.GuestVmlinux + `
initrd: ` + cloneBenchInitrd + `
cmdline: console=ttyS0 quiet paddock.script=boot
console: log
disks: [{path: /tmp/bb.qcow2}]
`

// EnvCloneBenchRounds sets how many rounds BenchmarkCloneBootLab runs in
// its L1 boot, each a cold clone under paddock and then the same boot
// under QEMU. Default 2.
const EnvCloneBenchRounds = "PADDOCK_CLONE_BENCH_ROUNDS"

// BenchmarkCloneBootLab compares a cold clone's start with QEMU's in one
// L1 run: paddock clone TEMPLATE NAME --start (a qcow2 overlay on the
// template's base, the VMM, the boot of the stock kernel with the hello
// guest) to the guest's /init marker, against qemu-img create -b (an
// overlay on the same base) and QEMU (microvm with PCIe, virtio-blk-pci
// on that overlay, the same kernel, initrd and command line) to the same
// marker. It reports each in L1 seconds, paddock's over QEMU's (the
// geometric mean of the rounds' ratios: the lab is emulated, so only the
// ratio compares), and how long the clone command itself took (until
// the VMM reported its guest running; the first round's includes
// verifying the template's checksums, which later commands remember).
//
//	go test ./test/e2e -run '^$' -bench CloneBootLab -benchtime 1x -v
func BenchmarkCloneBootLab(b *testing.B) {
	l := lab.New(b)
	ctx := context.Background()
	im, err := l.Image(ctx)
	if err != nil {
		b.Fatal(err)
	}
	initrd, err := helloInitrd(ctx, im, "clone-bench", []string{"virtio_pci", "virtio_blk"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	rounds := benchRounds(b, EnvCloneBenchRounds, 2)
	tdir := labTemplates + "/bb-tpl"
	qemu := lab.QEMU{Extra: []string{
		"-M", "pcie=on",
		"-drive", "file=/tmp/q.qcow2,format=qcow2,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0",
	}}.Command(lab.L2{Kernel: tdir + "/vmlinuz", Initrd: tdir + "/initrd.img", Cmdline: "console=ttyS0 quiet paddock.script=boot", MemoryMiB: cloneBenchMiB})
	// Round $r: the clone c$r under paddock, then QEMU on a new overlay;
	// markers rR.VMM.start and rR.VMM.init.
	script := `
export PADDOCK_HOME=` + store.RootHome + `
mark() { echo "@@LAB $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
# follow FIFO PREFIX: mark PREFIX.init when the guest's /init reports.
follow() {
	while IFS= read -r line; do
		case "$line" in *"@@LAB l2.init"*) mark "$2.init $(up)"; break ;; esac
	done < "$1"
}
` + benchQEMU + `
paddock image create -q /tmp/bb.qcow2 64M || exit 1
paddock create -f /guest/bb.yaml > /dev/null || exit 1
paddock template create bb-tpl --from bb > /dev/null || exit 1
r=1
while [ $r -le ` + strconv.Itoa(rounds) + ` ]; do
	rm -f /tmp/p.console /tmp/q.console /tmp/q.qcow2
	mkfifo /tmp/p.console /tmp/q.console
	mark "r$r.paddock.start $(up)"
	paddock clone bb-tpl c$r --start > /dev/null || exit 1
	mark "r$r.paddock.running $(up)"
	paddock logs -f c$r > /tmp/p.console &
	logs=$!
	follow /tmp/p.console r$r.paddock
	kill $logs
	paddock rm --force c$r > /dev/null
	mark "r$r.qemu.start $(up)"
	qemu-img create -q -f qcow2 -b ` + tdir + `/disks/root.qcow2 -F qcow2 /tmp/q.qcow2 || exit 1
	qemu_until /tmp/q.console r$r.qemu ` + qemu + `
	r=$((r + 1))
done
`
	sc := lab.Scenario{
		WithPaddock: true,
		WithQEMU:    true,
		WithVmlinux: true,
		Files: map[string]lab.File{
			cloneBenchInitrd: {Source: initrd},
			"/guest/bb.yaml": {Data: []byte(cloneBenchVM)},
		},
		Steps: []lab.Step{{Name: "clone-boot", Script: script, Timeout: time.Duration(rounds) * 5 * time.Minute}},
	}
	labHostTools(b, sc.Files, [2]string{"qemu-img", "qemu-utils"})
	for b.Loop() {
		res, err := l.Run(ctx, sc)
		if err != nil {
			b.Fatal(err)
		}
		st, ok := res.Step("clone-boot")
		if !ok || !st.Done || st.RC != 0 {
			b.Fatalf("the clone-boot step did not finish: %+v; transcript tail:\n%s", st, res.Tail(40))
		}
		secs := roundSeconds(b, st, rounds, "init", "cold clone to the guest's /init")
		// The clone command's part: overlay, VMM, its guest running.
		var cmd []float64
		for r := 1; r <= rounds; r++ {
			d, err := l1Seconds(st, fmt.Sprintf("r%d.paddock.start", r), fmt.Sprintf("r%d.paddock.running", r))
			if err != nil {
				b.Fatalf("round %d: no paddock.running marker", r)
			}
			cmd = append(cmd, d)
		}
		b.Logf("paddock clone --start returned after %s s (the rest is the guest's boot)", strings.Trim(fmt.Sprintf("%.2f", cmd), "[]"))
		// pairedRatio's latency form is QEMU's time over paddock's.
		speedup, wins := pairedRatio(secs[0], secs[1], false)
		b.ReportMetric(mean(cmd), "paddock-clone-cmd-s")
		b.ReportMetric(mean(secs[0]), "paddock-s")
		b.ReportMetric(mean(secs[1]), "qemu-s")
		b.ReportMetric(1/speedup, "ratio")
		b.Logf("cold clone to the guest's /init: paddock %.2f s, QEMU (qemu-img create -b + boot) %.2f s (means of %d rounds): ratio %.2f (paired), paddock faster in %d of %d rounds",
			mean(secs[0]), mean(secs[1]), rounds, 1/speedup, wins, rounds)
	}
	b.ReportMetric(0, "ns/op")
}
