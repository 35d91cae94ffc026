package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/images/virtioguest"
	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/test/lab"
)

// Paths in L1 of the virtio scenarios' files.
const (
	virtioInitrd = "/guest/virtio-initrd.img"
	virtioRoot   = "/guest/root.qcow2"
	virtioRO     = "/guest/ro.qcow2"
)

// virtioYAML is the VM of the functional check: two vCPUs (so virtio-blk
// gets two queues), a writable qcow2 disk, a read-only one, a NIC on br0
// (paddock creates its tap) and the rng.
const virtioYAML = `name: virtio
cpus: 2
memory: 512MiB
kernel: ` + lab.GuestVmlinux + `
initrd: ` + virtioInitrd + `
cmdline: console=ttyS0 quiet paddock.script=virtio-check
disks:
  - path: ` + virtioRoot + `
    serial: paddock-root
  - path: ` + virtioRO + `
    readonly: true
nics:
  - bridge: br0
    mac: 52:54:00:12:34:56
rng: true
console: stdio
`

// virtioIntxYAML boots with pci=nomsi: every device falls back to INTx.
const virtioIntxYAML = `name: intx
cpus: 1
memory: 256MiB
kernel: ` + lab.GuestVmlinux + `
initrd: ` + virtioInitrd + `
cmdline: console=ttyS0 quiet pci=nomsi paddock.script=virtio-intx
disks:
  - {path: ` + virtioRO + `, readonly: true, format: qcow2}
rng: true
console: stdio
`

// virtioLimitsYAML is the VM of the rate limiter check: a scratch raw
// disk limited to 10 MiB/s and a NIC on br0 limited to 50 Mbit/s (each
// way).
const virtioLimitsYAML = `name: limits
cpus: 1
memory: 256MiB
kernel: ` + lab.GuestVmlinux + `
initrd: ` + virtioInitrd + `
cmdline: console=ttyS0 quiet paddock.script=virtio-limits
disks:
  - path: /tmp/limits.raw
    format: raw
    limits: {bandwidth: 10MiB/s}
nics:
  - bridge: br0
    mac: 52:54:00:12:34:57
    limits: {bandwidth: 50Mbit/s}
console: stdio
`

// virtioLimitsStep runs the limited VM in L1 (after virtio/check, which
// made br0): L1 sinks the guest's stream on 5005 and sends it 32 MiB on
// 5006.
const virtioLimitsStep = `
mark() { echo "@@LAB $*"; }
ip link show br0 > /dev/null 2>&1 || { ip link add br0 type bridge && ip addr add 10.0.2.1/24 dev br0 && ip link set br0 up; }
qemu-img create -q -f raw /tmp/limits.raw 80M
vtool sink 5005 1 & p1=$!
vtool source 5006 32 1 & p2=$!
paddock run -f /guest/limits.yaml
mark "vmm.rc $?"
kill $p1 $p2 2>/dev/null
wait
`

// virtioCheckStep runs the functional check in L1: br0 at 10.0.2.1 with
// vtool taking the guest's upload and its checksum on 5001 and 5003 and
// serving a download and its checksum on 5002 and 5004; afterwards the
// disk image is checked with qemu-img and read with debugfs, and the
// read-only image compared with its copy from before. Checksums are
// compared where the data lands: markers stay short, as L1's heartbeat
// can cut into a long console line.
const virtioCheckStep = `
mark() { echo "@@LAB $*"; }
ip link add br0 type bridge && ip addr add 10.0.2.1/24 dev br0 && ip link set br0 up
ro_before=$(sha256sum < ` + virtioRO + ` | cut -d' ' -f1)
dd if=/dev/urandom of=/tmp/down bs=1M count=8 2>/dev/null
sha256sum < /tmp/down | cut -d' ' -f1 > /tmp/down.sha
# The guest's upload ends while it still needs the network (the download
# follows), so paddock's tap is on br0 when the upload is in.
( vtool get 5001 /tmp/up; ls /sys/class/net/br0/brif | wc -l > /tmp/ports-during ) & p1=$!
vtool get 5003 /tmp/up.sha & p2=$!
vtool serve 5002 /tmp/down & p3=$!
vtool serve 5004 /tmp/down.sha & p4=$!
paddock run -f /guest/virtio.yaml
mark "vmm.rc $?"
kill $p1 $p2 $p3 $p4 2>/dev/null
wait
[ "$(sha256sum < /tmp/up | cut -d' ' -f1)" = "$(cat /tmp/up.sha)" ]
mark "l1.up-match $?"
mark "l1.bridge-ports $(cat /tmp/ports-during) $(ls /sys/class/net/br0/brif | wc -l)"
qemu-img check ` + virtioRoot + ` > /tmp/check.txt 2>&1
mark "img.check $?"
cat /tmp/check.txt
qemu-img convert -O raw ` + virtioRoot + ` /tmp/root.raw
mark "img.hello $(debugfs -R 'cat /hello.txt' /tmp/root.raw 2>/dev/null)"
[ "$(debugfs -R 'cat /blob' /tmp/root.raw 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$(debugfs -R 'cat /blob.sha' /tmp/root.raw 2>/dev/null)" ]
mark "img.blob-match $?"
mark "img.seed-gone $(debugfs -R 'stat /seed.txt' /tmp/root.raw 2>&1 | grep -c 'File not found')"
[ "$(sha256sum < ` + virtioRO + ` | cut -d' ' -f1)" = "$ro_before" ]
mark "img.ro-unchanged $?"
`

// virtioHostTools are the L1 tools the scenario runs besides busybox.
func virtioHostTools(ctx context.Context, t testing.TB) map[string]lab.File {
	t.Helper()
	var bins []string
	for _, tool := range [][2]string{{"qemu-img", "qemu-utils"}, {"debugfs", "e2fsprogs"}} {
		bins = append(bins, testenv.RequireTool(t, tool[0], tool[1]))
	}
	files, err := virtioguest.HostFiles(ctx, bins...)
	if err != nil {
		t.Fatal(err)
	}
	vtool, err := virtioguest.BuildVTool(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]lab.File{virtioguest.VToolPath: {Source: vtool, Mode: 0o755}}
	for _, f := range files {
		out[f.Path] = lab.File{Source: f.Source, Mode: f.Mode}
	}
	return out
}

// ext4Image makes an ext4 file system of sizeMiB holding files, as a
// qcow2 image (qcow2) or raw; it returns the image and the sha256 of its
// raw contents.
func ext4Image(t testing.TB, dir, name string, sizeMiB int, files map[string]string, qcow2 bool) (string, string) {
	t.Helper()
	testenv.RequireTool(t, "mkfs.ext4", "e2fsprogs")
	testenv.RequireTool(t, "qemu-img", "qemu-utils")
	content := filepath.Join(dir, name+".d")
	if err := os.MkdirAll(content, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, data := range files {
		if err := os.WriteFile(filepath.Join(content, n), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw := filepath.Join(dir, name+".raw")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", content, raw, strconv.Itoa(sizeMiB)+"M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if !qcow2 {
		return raw, hex.EncodeToString(sum[:])
	}
	img := filepath.Join(dir, name+".qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-O", "qcow2", raw, img).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	return img, hex.EncodeToString(sum[:])
}

// TestVirtioLab boots the stock Debian kernel under paddock in the nested
// lab with virtio disks, a NIC and the rng, in one L1 boot, and checks
// them with the guest's own drivers: (1) an ext4 file system on a qcow2
// disk (two queues) is mounted, written, synced and fsck'd in the guest,
// and afterwards qemu-img check is clean and debugfs reads the files back
// from the image in L1; (2) a read-only disk refuses writes and stays
// unchanged; (3) the NIC pings L1 and moves 8 MiB each way with matching
// checksums, on a tap paddock created on a bridge and removed at exit;
// (4) the rng is the guest's hwrng; (5) with pci=nomsi the devices work
// through INTx; (6) a disk limited to 10 MiB/s writes and reads (O_DIRECT,
// 1 MiB requests) at 9 to 11 MiB/s, and a NIC limited to 50 Mbit/s sends
// and receives a TCP stream within 10% of it.
func TestVirtioLab(t *testing.T) {
	l := lab.New(t)
	ctx := context.Background()
	im, err := l.Image(ctx)
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := virtioguest.Initrd(ctx, virtioguest.Options{Kernel: im.Guest.Kernel, Busybox: im.Guest.Busybox})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root, _ := ext4Image(t, dir, "root", 64, map[string]string{"seed.txt": "planted by the host\n"}, true)
	ro, roSum := ext4Image(t, dir, "ro", 16, map[string]string{"ro.txt": "read-only content\n"}, true)
	files := virtioHostTools(ctx, t)
	files[virtioInitrd] = lab.File{Source: initrd}
	files[virtioRoot] = lab.File{Source: root}
	files[virtioRO] = lab.File{Source: ro}
	files["/guest/virtio.yaml"] = lab.File{Data: []byte(virtioYAML)}
	files["/guest/intx.yaml"] = lab.File{Data: []byte(virtioIntxYAML)}
	files["/guest/limits.yaml"] = lab.File{Data: []byte(virtioLimitsYAML)}
	sc := lab.Scenario{
		WithPaddock: true,
		WithVmlinux: true,
		Files:       files,
		// Its steps' guest faults (RetryFaults) share the attempts with
		// an L1 that froze or reset (docs/lab.md).
		Attempts: 3,
		Steps: []lab.Step{
			{Name: "virtio/check", Script: virtioCheckStep, Timeout: 2 * bootTimeout, RetryFaults: true},
			{Name: "virtio/intx", Script: "paddock run -f /guest/intx.yaml\necho \"@@LAB vmm.rc $?\"\n", Timeout: bootTimeout, RetryFaults: true},
			{Name: "virtio/limits", Script: virtioLimitsStep, Timeout: bootTimeout, RetryFaults: true},
		},
	}
	res, err := l.Run(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}

	st := step(t, res, "virtio/check")
	// want checks a marker of st; t is the (sub)test that owns the check,
	// so a missing marker stops only that subtest.
	want := func(t *testing.T, key, v string) {
		t.Helper()
		if got := strings.TrimSpace(value(t, st, key)); got != v {
			t.Errorf("%s = %q, want %q", key, got, v)
		}
	}
	want(t, "vmm.rc", "0")
	t.Run("blk", func(t *testing.T) {
		want(t, "blk.vda", "131072 ro=0 queues=2")
		want(t, "blk.vda.serial", "paddock-root")
		want(t, "blk.seed", "planted by the host")
		want(t, "blk.umount", "0")
		want(t, "blk.fsck", "0")
		want(t, "img.check", "0")
		want(t, "img.hello", "written by paddock virtio-blk")
		want(t, "img.blob-match", "0") // the 4 MiB the guest wrote, read back by debugfs
		want(t, "img.seed-gone", "1")
		if !strings.Contains(res.Transcript(), "No errors were found on the image.") {
			t.Error("qemu-img check did not report a clean image")
		}
	})
	t.Run("readonly", func(t *testing.T) {
		want(t, "blk.vdb", "32768 ro=1 queues=2")
		want(t, "ro.mount", "0 1")
		want(t, "ro.content", "read-only content")
		want(t, "ro.write", "1 Read-only file system")
		if v := value(t, st, "ro.dd"); strings.HasPrefix(v, "0") {
			t.Errorf("a raw write to the read-only disk succeeded: %q", v)
		}
		want(t, "img.ro-unchanged", "0")
	})
	t.Run("net", func(t *testing.T) {
		want(t, "net.mac", "52:54:00:12:34:56")
		want(t, "net.ping", "0 3 packets received")
		want(t, "net.put", "0")
		want(t, "l1.up-match", "0") // 8 MiB up, checksum compared in L1
		want(t, "net.fetch", "0")
		want(t, "net.down-match", "0")    // 8 MiB down, checksum compared in the guest
		want(t, "l1.bridge-ports", "1 0") // paddock's tap was on br0, and is gone
	})
	t.Run("rng", func(t *testing.T) {
		want(t, "rng.current", "virtio_rng.0")
		want(t, "rng.bytes", "64 1") // 32 bytes in hex, not all zero
	})
	t.Run("intx", func(t *testing.T) {
		it := step(t, res, "virtio/intx")
		check := func(key, v string) {
			t.Helper()
			if got := strings.TrimSpace(value(t, it, key)); got != v {
				t.Errorf("%s = %q, want %q", key, got, v)
			}
		}
		check("vmm.rc", "0")
		check("intx.irqs", "2 0") // disk and rng on IO-APIC lines, no MSI
		check("intx.content", "read-only content")
		check("intx.sha", roSum)
		check("intx.rng", "64")
	})
	t.Run("limits", func(t *testing.T) {
		ls := step(t, res, "virtio/limits")
		t.Logf("the virtio/limits step took %v in L1", (ls.End - ls.Begin).Round(time.Second))
		if got := strings.TrimSpace(value(t, ls, "vmm.rc")); got != "0" {
			t.Errorf("vmm.rc = %q, want 0", got)
		}
		// rate reads a marker in MB/s (vtool's unit) and converts it.
		rate := func(key string, unit float64) float64 {
			t.Helper()
			v, err := strconv.ParseFloat(strings.TrimSpace(value(t, ls, key)), 64)
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			return v * 1e6 / unit
		}
		for _, key := range []string{"limits.blk.write", "limits.blk.read"} {
			if r := rate(key, 1<<20); r < 9 || r > 11 {
				t.Errorf("%s: %.2f MiB/s on a disk limited to 10 MiB/s, want 9 to 11", key, r)
			} else {
				t.Logf("%s: %.2f MiB/s (limit 10)", key, r)
			}
		}
		for _, key := range []string{"limits.net.tx", "limits.net.rx"} {
			if r := rate(key, 1e6/8); r < 45 || r > 55 {
				t.Errorf("%s: %.1f Mbit/s on a NIC limited to 50 Mbit/s, want 45 to 55", key, r)
			} else {
				t.Logf("%s: %.1f Mbit/s (limit 50)", key, r)
			}
		}
	})
}
