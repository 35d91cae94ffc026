package debootstrap_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/disk/qemutest"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/hypervisor/boot"
	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/images/cpio"
	"github.com/paddock-vm/paddock/images/debootstrap"
	"github.com/paddock-vm/paddock/images/debootstrap/debootstraptest"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// TestBuild builds the debian-12 template from the host's mirror (or
// takes the build of these sources from the cache) and checks, with
// other people's tools and without mounting anything, what a VM gets:
// a clean compressed qcow2 (qemu-img check), a clean ext4 file system
// (e2fsck) with systemd, sshd, cloud-init (NoCloud), growpart, the DHCP
// network, an fstab that grows the root file system, no identity of its
// own (machine ID, SSH host keys); a Linux kernel; an initramfs with the
// virtio modules.
func TestBuild(t *testing.T) {
	b := debootstraptest.Template(t)
	testenv.RequireTool(t, "qemu-img", "qemu-utils")
	res := b.Result
	if !strings.HasSuffix(res.KernelRelease, "-cloud-amd64") || !strings.HasPrefix(res.KernelPackage, "linux-image-"+res.KernelRelease+" ") {
		t.Errorf("kernel %q from package %q: want Debian's cloud kernel", res.KernelRelease, res.KernelPackage)
	}
	if res.OS.ID != "debian" || res.OS.VersionID != "12" || res.OS.Codename != "bookworm" {
		t.Errorf("OS %+v, want Debian 12 (bookworm)", res.OS)
	}
	if res.Cmdline != "root=UUID="+res.RootUUID+" ro console=ttyS0" || res.DiskSize != debootstrap.DefaultDiskSize || res.Installed < 100 {
		t.Errorf("cmdline %q, disk size %d, %d packages", res.Cmdline, res.DiskSize, res.Installed)
	}
	ents, err := os.ReadDir(b.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		// The stamps Verify remembers (a cache), once anything made a VM
		// from this build, shared by the tests.
		if e.Name() != store.TemplateStampsFile {
			names = append(names, e.Name())
		}
	}
	if strings.Join(names, " ") != "disks initrd.img lock spec.yaml template.json vmlinuz" {
		t.Errorf("the template's directory holds %v, want only its files", names)
	}
	s, err := store.Open(filepath.Dir(filepath.Dir(b.Dir)))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := s.Template(debootstraptest.Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmpl.Verify(nil); err != nil {
		t.Error(err)
	}
	if m := tmpl.Meta; m.Cmdline != res.Cmdline || m.Kernel.Release != res.KernelRelease || m.OS.PrettyName != "Debian GNU/Linux 12 (bookworm)" ||
		m.Origin.Kind != store.OriginBuild || m.Origin.Builder != "debian-12" || len(m.Disks) != 1 || m.Disks[0].VirtualSize != debootstrap.DefaultDiskSize {
		t.Errorf("template.json: %+v", m)
	}
	if spec, err := os.ReadFile(tmpl.Path(store.TemplateSpecFile)); err != nil || !strings.Contains(string(spec), "builder: debian-12\nsuite: bookworm\nmirror: "+res.Mirror) {
		t.Errorf("spec.yaml: %v\n%s", err, spec)
	}

	k, err := boot.Inspect(b.Path(debootstrap.KernelFile))
	if err != nil || !k.Linux || k.Protocol != boot.ProtocolBzImage64 {
		t.Errorf("kernel: %+v, %v; want a Linux bzImage", k, err)
	}
	checkInitramfs(t, b.Path(debootstrap.InitrdFile), res.KernelRelease)

	qcow := b.Path(debootstrap.DiskFile)
	if leaks := qemutest.Check(t, qcow); leaks != 0 {
		t.Errorf("qemu-img check: %d leaks", leaks)
	}
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
		Actual      int64  `json:"actual-size"`
		Specific    struct {
			Data struct {
				Compression string `json:"compression-type"`
			} `json:"data"`
		} `json:"format-specific"`
		Backing string `json:"backing-filename"`
	}
	if err := json.Unmarshal([]byte(qemutest.QemuImg(t, "info", "--output=json", qcow)), &info); err != nil {
		t.Fatal(err)
	}
	if info.Format != "qcow2" || info.VirtualSize != debootstrap.DefaultDiskSize || info.Specific.Data.Compression != "zstd" || info.Backing != "" {
		t.Errorf("qemu-img info: %+v; want a 4 GiB zstd-compressed qcow2 without a backing file", info)
	}
	t.Logf("template: root file system %d MiB, qcow2 %d MiB, kernel %s, initramfs %d KiB; build steps %+v",
		res.RootBytes>>20, info.Actual>>20, res.KernelRelease, fileSize(t, b.Path(debootstrap.InitrdFile))>>10, res.Steps)

	// The file system, read by e2fsprogs from a raw copy.
	raw := filepath.Join(t.TempDir(), "root.raw")
	if err := disk.Convert(context.Background(), qcow, raw, disk.ConvertOptions{DstFormat: disk.FormatRaw}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("e2fsck", "-fn", raw).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	fs := &ext4{t: t, image: raw}
	if uuid := fs.run("-R", "stats"); !strings.Contains(uuid, "Filesystem UUID:          "+res.RootUUID) {
		t.Errorf("the file system's UUID is not %s", res.RootUUID)
	}
	fstab := fs.cat("/etc/fstab")
	if !strings.Contains(fstab, "UUID="+res.RootUUID+" / ext4 errors=remount-ro,x-systemd.growfs 0 1") {
		t.Errorf("/etc/fstab:\n%s", fstab)
	}
	if id := fs.cat("/etc/machine-id"); id != "" {
		t.Errorf("/etc/machine-id is %q, want empty (made on first boot)", id)
	}
	if ls := fs.run("-R", "ls /etc/ssh"); strings.Contains(ls, "ssh_host_") {
		t.Errorf("the template has SSH host keys: %s", ls)
	}
	if cfg := fs.cat("/etc/cloud/cloud.cfg.d/90_paddock.cfg"); !strings.Contains(cfg, "datasource_list: [ NoCloud, None ]") {
		t.Errorf("cloud-init's datasources:\n%s", cfg)
	}
	if net := fs.cat("/etc/systemd/network/90-paddock-dhcp.network"); !strings.Contains(net, "DHCP=yes") {
		t.Errorf("no DHCP network:\n%s", net)
	}
	if mods := fs.cat("/etc/initramfs-tools/modules"); !strings.Contains(mods, "\nvirtio_blk\n") {
		t.Errorf("/etc/initramfs-tools/modules:\n%s", mods)
	}
	for _, f := range []string{
		"/usr/lib/systemd/systemd", "/usr/sbin/sshd", "/usr/bin/cloud-init", "/usr/bin/growpart",
		"/usr/lib/systemd/systemd-networkd", "/usr/lib/systemd/systemd-resolved",
		"/etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
		"/etc/systemd/system/ssh.service.wants/paddock-ssh-hostkeys.service",
		"/etc/systemd/system/multi-user.target.wants/paddock-identity.service",
		"/usr/lib/paddock/identity",
		"/boot/vmlinuz-" + res.KernelRelease,
	} {
		if out := fs.run("-R", "stat "+f); strings.Contains(out, "File not found") {
			t.Errorf("the root file system has no %s", f)
		}
	}
	if init := fs.run("-R", "stat /usr/sbin/init"); !strings.Contains(init, "Fast link dest: \"/lib/systemd/systemd\"") {
		t.Errorf("/usr/sbin/init is not systemd:\n%s", init)
	}
	for _, f := range []string{"/usr/sbin/policy-rc.d", "/etc/apt/apt.conf.d/99paddock-build"} {
		if out := fs.run("-R", "stat "+f); !strings.Contains(out, "File not found") {
			t.Errorf("the build's own %s is still in the template", f)
		}
	}
	if lists := fs.run("-R", "ls /var/lib/apt/lists"); strings.Contains(lists, "_Packages") {
		t.Errorf("package lists left in the template:\n%s", lists)
	}
}

func fileSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// ext4 reads a file system image with debugfs (e2fsprogs), read-only.
type ext4 struct {
	t     *testing.T
	image string
}

func (e *ext4) run(args ...string) string {
	e.t.Helper()
	out, err := exec.Command("debugfs", append(args, e.image)...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("debugfs %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// cat returns a file's contents.
func (e *ext4) cat(path string) string {
	e.t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, e.image).Output()
	if err != nil {
		e.t.Fatalf("debugfs cat %s: %v", path, err)
	}
	return string(out)
}

// checkInitramfs checks that the initramfs (zstd-compressed newc, as
// initramfs-tools makes it) holds the virtio modules the root disk needs
// and initramfs-tools' init.
func checkInitramfs(t *testing.T, path, release string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zstd.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	r := cpio.NewReader(zr)
	found := map[string]bool{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		found[h.Name] = true
	}
	for _, want := range []string{
		"init",
		"usr/lib/modules/" + release + "/kernel/drivers/virtio/virtio_pci.ko",
		"usr/lib/modules/" + release + "/kernel/drivers/block/virtio_blk.ko",
	} {
		if !found[want] {
			t.Errorf("the initramfs has no %s (%d files)", want, len(found))
		}
	}
}

// TestBuildInterrupted: a build stopped once its own mounts are made
// (the chroot's /proc, /sys, /dev and package cache) returns at once,
// and leaves no mount, no process and nothing the caller cannot remove;
// the package cache's lock is free again.
func TestBuildInterrupted(t *testing.T) {
	testenv.RequireRoot(t, "a template build installs packages as root")
	testenv.RequireTool(t, "debootstrap", "debootstrap")
	c, err := cache.Default()
	if err != nil {
		t.Fatal(err)
	}
	r, _ := debootstrap.LookupRelease("debian-12")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), debootstraptest.BuildTimeout)
	defer cancel()
	var stoppedAt time.Time
	_, err = debootstrap.Build(ctx, dir, debootstrap.Options{Release: r, Cache: c, Step: func(s string) {
		if s == "sources" {
			stoppedAt = time.Now()
			cancel()
		}
	}})
	if stoppedAt.IsZero() {
		t.Fatalf("the build ended before its sources step: %v", err)
	}
	if err == nil || !strings.Contains(err.Error(), "stopped in step sources") {
		t.Errorf("Build after cancel: %v", err)
	}
	t.Logf("Build returned %v after the cancel", time.Since(stoppedAt).Round(time.Millisecond))
	for _, p := range processesUnder(t, dir) {
		t.Errorf("process %s outlived the build", p)
	}
	if data, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(data), dir) {
		t.Errorf("mounts under %s outlived the build:\n%s", dir, data)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("remove what the build left: %v", err)
	}
	waited := false
	unlock, err := c.Lock(context.Background(), "debootstrap/bookworm-amd64", func() { waited = true })
	if err != nil || waited {
		t.Errorf("the package cache's lock after the build: waited %v, %v", waited, err)
	}
	if unlock != nil {
		unlock()
	}
}

// processesUnder lists the processes whose root or working directory is
// under dir.
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		for _, link := range []string{"root", "cwd"} {
			if p, err := os.Readlink(filepath.Join("/proc", e.Name(), link)); err == nil && strings.HasPrefix(p, dir) {
				cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				out = append(out, e.Name()+" "+strings.ReplaceAll(string(cmd), "\x00", " "))
			}
		}
	}
	return out
}

// BenchmarkBuild builds the debian-12 template with a new, empty package
// cache (cold: every package downloaded), then again with that cache,
// and reports each build's seconds and the template's sizes; then,
// as the peer of the build's last step, it writes the same file system
// as a zstd-compressed qcow2 with paddock's engine and with qemu-img
// convert -c, timed side by side.
//
//	go test ./images/debootstrap -run '^$' -bench Build -benchtime 1x -v
func BenchmarkBuild(b *testing.B) {
	testenv.RequireRoot(b, "a template build installs packages as root")
	testenv.RequireTool(b, "debootstrap", "debootstrap")
	qemuImg := testenv.RequireTool(b, "qemu-img", "qemu-utils")
	r, _ := debootstrap.LookupRelease("debian-12")
	c := cache.New(b.TempDir())
	for b.Loop() {
		var last string
		for _, run := range []string{"cold", "cached"} {
			dir := b.TempDir()
			start := time.Now()
			res, err := debootstrap.Build(context.Background(), dir, debootstrap.Options{Release: r, Cache: c})
			if err != nil {
				b.Fatal(err)
			}
			secs := time.Since(start).Seconds()
			b.ReportMetric(secs, run+"-s")
			b.Logf("%s build: %.1f s, steps %+v", run, secs, res.Steps)
			last = filepath.Join(dir, debootstrap.DiskFile)
			if run == "cached" {
				b.ReportMetric(float64(res.RootBytes)/(1<<20), "rootfs-MiB")
			}
		}
		fi, err := os.Stat(last)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(fi.Size())/(1<<20), "qcow2-MiB")
		raw := filepath.Join(b.TempDir(), "root.raw")
		if err := disk.Convert(context.Background(), last, raw, disk.ConvertOptions{DstFormat: disk.FormatRaw}); err != nil {
			b.Fatal(err)
		}
		out := filepath.Join(b.TempDir(), "out.qcow2")
		start := time.Now()
		if err := disk.Convert(context.Background(), raw, out, disk.ConvertOptions{SrcFormat: disk.FormatRaw, Compress: true, Qcow2: qcow2.CreateOptions{Compression: "zstd"}}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "paddock-convert-c-s")
		start = time.Now()
		if out, err := exec.Command(qemuImg, "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "compression_type=zstd", raw, out+".qemu").CombinedOutput(); err != nil {
			b.Fatalf("qemu-img convert: %v\n%s", err, out)
		}
		b.ReportMetric(time.Since(start).Seconds(), "qemu-img-convert-c-s")
		if fi, err := os.Stat(out + ".qemu"); err == nil {
			b.ReportMetric(float64(fi.Size())/(1<<20), "qemu-img-qcow2-MiB")
		}
	}
	b.ReportMetric(0, "ns/op")
}
