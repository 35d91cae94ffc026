// Package debootstrap builds the files of a paddock template from Debian
// packages: a root file system made with debootstrap from the host's apt
// mirror, with systemd, openssh-server, cloud-init (NoCloud) and
// networkd (DHCP on every Ethernet NIC), Debian's stock kernel and an
// initramfs made by initramfs-tools inside it with the virtio modules the
// root disk needs; the file system is made with mkfs.ext4 -d (no loop
// device, no mount) and written as a compressed qcow2 image by paddock's
// own disk engine.
//
// The steps that need mounts and a chroot (debootstrap, apt-get,
// update-initramfs) run in a private PID and mount namespace
// (runIsolated), so a failed or interrupted build leaves no mount and no
// process behind; the caller removes the directory it gave Build.
// Downloaded packages are kept in paddock's cache and shared by
// debootstrap and apt, so a second build downloads only what changed.
package debootstrap

import (
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/images/debian"
)

// Release is a guest operating system paddock builds templates of.
type Release struct {
	// Name is what `paddock template build` takes ("debian-12"), and the
	// template's default name.
	Name string
	// Suite is the Debian suite debootstrap installs ("bookworm").
	Suite string
	// Kernel is the kernel's meta-package.
	Kernel string
}

// releases are the releases Build knows.
var releases = []Release{
	// The cloud kernel: made for VMs, LZ4-compressed (quick to unpack at
	// boot) and with ext4 built in.
	{Name: "debian-12", Suite: "bookworm", Kernel: "linux-image-cloud-amd64"},
}

// Releases returns the releases Build knows.
func Releases() []Release { return slices.Clone(releases) }

// LookupRelease returns the release called name.
func LookupRelease(name string) (Release, error) {
	var names []string
	for _, r := range releases {
		if r.Name == name {
			return r, nil
		}
		names = append(names, r.Name)
	}
	return Release{}, fmt.Errorf("debootstrap: paddock does not build %q; it builds %s", name, strings.Join(names, ", "))
}

// BasePackages are installed in every template, besides the kernel and
// initramfs-tools: an init (systemd), udev, networking with DHCP and DNS
// (systemd-networkd, systemd-resolved), SSH, cloud-init and growpart for
// first-boot identity and disk growth, and a few basics.
var BasePackages = []string{
	"systemd-sysv", "systemd-resolved", "udev", "dbus", "libpam-systemd",
	"kmod", "e2fsprogs", "iproute2", "netbase", "ca-certificates",
	"openssh-server", "cloud-init", "cloud-guest-utils", "sudo",
	"procps", "less",
}

// InitramfsModules are the kernel modules the initramfs gets: what it
// takes to mount the root file system from a virtio-blk disk. Debian
// builds the virtio drivers as modules; ext4 is built into the cloud
// kernel and a module of the generic one.
var InitramfsModules = []string{"virtio_pci", "virtio_blk", "ext4"}

// Disk sizes.
const (
	// DefaultDiskSize is the root disk's size when none is given.
	DefaultDiskSize = 4 << 30
	// MinDiskSize is the smallest root disk Build makes (the file system
	// takes some 600 MiB).
	MinDiskSize = 1 << 30
	// MaxDiskSize bounds the root disk: far beyond a template's needs
	// (VMs grow theirs with root_size).
	MaxDiskSize = 64 << 40
)

// Files of a built template, relative to the directory Build fills.
const (
	KernelFile = "vmlinuz"
	InitrdFile = "initrd.img"
	DiskFile   = "disks/root.qcow2"
	workDir    = ".work"
)

// DefaultHostname is the host name of a VM that cloud-init does not name.
const DefaultHostname = "debian"

//go:embed build.sh
var buildScript string

// Options control Build.
type Options struct {
	Release Release
	// DiskSize is the root disk's virtual size, a whole number of MiB
	// (0: DefaultDiskSize).
	DiskSize int64
	// Packages are installed besides BasePackages.
	Packages []string
	// Mirror is the Debian mirror's URL, SecurityMirror the security
	// updates' (empty: the host's apt sources, HostMirrors; no security
	// mirror if the host has none).
	Mirror, SecurityMirror string
	// Cache keeps the downloaded packages (required).
	Cache *cache.Cache
	// Step is called as each step begins (see StepTitle).
	Step func(name string)
	// Output gets every line the tools print.
	Output func(line string)
	// Progress is called while the qcow2 disk is written.
	Progress func(done, total int64)
	// EtcApt is apt's configuration directory on the host (tests; empty:
	// /etc/apt).
	EtcApt string
}

// Result describes the files Build made.
type Result struct {
	// Kernel, Initrd and Disk are the files, relative to the directory.
	Kernel, Initrd, Disk string
	// KernelRelease is `uname -r`; KernelPackage the package and version.
	KernelRelease, KernelPackage string
	// OS is the guest's /etc/os-release.
	OS OSRelease
	// Cmdline boots the kernel with the root file system (by UUID) and
	// the serial console.
	Cmdline  string
	RootUUID string
	// DiskSize is the root disk's virtual size; RootBytes what the root
	// file system's files take.
	DiskSize, RootBytes int64
	// Mirror and SecurityMirror are where the packages came from.
	Mirror, SecurityMirror string
	// Packages are the packages asked for (kernel first); Installed how
	// many packages the root file system has.
	Packages  []string
	Installed int
	// Steps are the steps and how long each took.
	Steps []StepTime
}

// StepTime is how long a step of Build took.
type StepTime struct {
	Name    string
	Seconds float64
}

// stepTitles describe the steps, in order.
var stepTitles = []struct{ name, title string }{
	{"debootstrap", "installing the base system (debootstrap)"},
	{"sources", "updating the package lists"},
	{"initramfs-tools", "installing initramfs-tools"},
	{"packages", "installing the kernel, systemd, openssh-server and cloud-init"},
	{"configure", "configuring the guest"},
	{"ext4", "making the ext4 file system"},
	{"qcow2", "writing the compressed qcow2 disk"},
}

// Steps returns the names of Build's steps, in order.
func Steps() []string {
	var names []string
	for _, s := range stepTitles {
		names = append(names, s.name)
	}
	return names
}

// StepTitle describes a step for people.
func StepTitle(name string) string { return stepTitle(name) }

func stepTitle(name string) string {
	for _, s := range stepTitles {
		if s.name == name {
			return s.title
		}
	}
	return name
}

// ErrNotRoot is returned when Build does not run as root.
var ErrNotRoot = errors.New("building a template needs root: debootstrap and apt-get install packages as root into the new file system and chroot into it; run it as root (sudo)")

// tools are the host programs Build runs, with their Debian packages.
var tools = []struct{ name, pkg string }{
	{"debootstrap", "debootstrap"},
	{"mkfs.ext4", "e2fsprogs"},
	{"chroot", "coreutils"},
	{"mount", "mount"},
}

// Check reports what keeps Build from running here with o: not root, a
// missing tool, a bad option. It runs nothing.
func Check(o Options) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	for _, t := range tools {
		if _, err := lookTool(t.name); err != nil {
			return fmt.Errorf("debootstrap: %s is not installed (Debian package %s); install it with apt-get install %s", t.name, t.pkg, t.pkg)
		}
	}
	return o.check()
}

// lookTool finds a tool on PATH or in the sbin directories, which a
// non-login root shell may lack.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}

// check validates the options.
func (o *Options) check() error {
	if o.Release.Suite == "" {
		return errors.New("debootstrap: no release given")
	}
	if o.Cache == nil {
		return errors.New("debootstrap: no package cache given")
	}
	size := o.diskSize()
	switch {
	case size < MinDiskSize || size > MaxDiskSize:
		return fmt.Errorf("debootstrap: disk size %d bytes: it must be between %d MiB and %d TiB", size, MinDiskSize>>20, MaxDiskSize>>40)
	case size%(1<<20) != 0:
		return fmt.Errorf("debootstrap: disk size %d bytes is not a whole number of MiB", size)
	}
	for _, p := range o.Packages {
		if !debian.ValidName(p) {
			return fmt.Errorf("debootstrap: %q is not a Debian package name (lowercase letters, digits and + - .)", p)
		}
	}
	for _, m := range []string{o.Mirror, o.SecurityMirror} {
		if m != "" {
			if err := checkMirror(m); err != nil {
				return err
			}
		}
	}
	return nil
}

func (o *Options) diskSize() int64 {
	if o.DiskSize == 0 {
		return DefaultDiskSize
	}
	return o.DiskSize
}

// Build makes a template's files in dir, an empty directory: KernelFile,
// InitrdFile and DiskFile, and nothing else (its work files, in dir too,
// are gone when it returns). On failure, dir may hold parts of the
// files: remove it. It needs root (ErrNotRoot) and, for the packages, the
// mirror; it takes minutes (see docs/hosts.md).
func Build(ctx context.Context, dir string, o Options) (*Result, error) {
	if err := Check(o); err != nil {
		return nil, err
	}
	res := &Result{
		Kernel: KernelFile, Initrd: InitrdFile, Disk: DiskFile,
		DiskSize: o.diskSize(), Mirror: o.Mirror, SecurityMirror: o.SecurityMirror,
		Packages: append(append([]string{o.Release.Kernel}, BasePackages...), o.Packages...),
	}
	if res.Mirror == "" {
		etcApt := o.EtcApt
		if etcApt == "" {
			etcApt = "/etc/apt"
		}
		mirror, security, err := HostMirrors(etcApt, o.Release.Suite)
		if err != nil {
			return nil, err
		}
		res.Mirror = mirror
		if res.SecurityMirror == "" {
			res.SecurityMirror = security
		}
	}
	var err error
	if res.RootUUID, err = newUUID(); err != nil {
		return nil, err
	}
	work := filepath.Join(dir, workDir)
	if err := os.Mkdir(work, 0o700); err != nil {
		return nil, fmt.Errorf("debootstrap: %w", err)
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")

	timer := &stepTimer{report: o.Step}
	if err := installRoot(ctx, root, work, res, o, timer); err != nil {
		return nil, err
	}
	if err := res.collect(root, dir); err != nil {
		return nil, err
	}
	raw := filepath.Join(work, "root.ext4")
	timer.start("ext4")
	if err := makeExt4(ctx, raw, root, res); err != nil {
		return nil, err
	}
	// The tree is in the image now; the sooner it goes, the less disk the
	// build holds.
	if err := os.RemoveAll(root); err != nil {
		return nil, fmt.Errorf("debootstrap: remove the root file system's tree: %w", err)
	}
	timer.start("qcow2")
	if err := os.Mkdir(filepath.Join(dir, filepath.Dir(DiskFile)), 0o700); err != nil {
		return nil, fmt.Errorf("debootstrap: %w", err)
	}
	err = disk.Convert(ctx, raw, filepath.Join(dir, DiskFile), disk.ConvertOptions{
		SrcFormat: disk.FormatRaw, DstFormat: disk.FormatQcow2, Compress: true,
		Qcow2: qcow2.CreateOptions{Compression: "zstd"}, Progress: o.Progress,
	})
	if err != nil {
		return nil, err
	}
	res.Steps = timer.stop()
	res.Cmdline = "root=UUID=" + res.RootUUID + " ro console=ttyS0"
	return res, nil
}

// installRoot fills root with the guest's files: build.sh in a private
// namespace, holding the package cache's lock.
func installRoot(ctx context.Context, root, work string, res *Result, o Options, timer *stepTimer) error {
	overlay := filepath.Join(work, "overlay")
	if err := writeOverlay(overlay); err != nil {
		return err
	}
	key := "debootstrap/" + o.Release.Suite + "-amd64"
	unlock, err := o.Cache.Lock(ctx, key, func() {
		if o.Output != nil {
			o.Output("waiting for another template build to finish with the package cache " + o.Cache.Path(key))
		}
	})
	if err != nil {
		return err
	}
	defer unlock()
	archives := o.Cache.Path(key)
	if err := os.MkdirAll(filepath.Join(archives, "partial"), 0o755); err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	env := []string{
		"ROOT=" + root, "SUITE=" + o.Release.Suite,
		"MIRROR=" + res.Mirror, "SECURITY=" + res.SecurityMirror,
		"ARCHIVES=" + archives, "OVERLAY=" + overlay,
		"KERNEL=" + o.Release.Kernel, "PACKAGES=" + strings.Join(append(slices.Clone(BasePackages), o.Packages...), " "),
		"MODULES=" + strings.Join(InitramfsModules, " "),
		"ROOT_UUID=" + res.RootUUID, "TEMPLATE_HOSTNAME=" + DefaultHostname,
		"APT_CONF=" + hostAptConf(ctx),
	}
	for _, v := range []string{"http_proxy", "https_proxy", "no_proxy"} {
		if s, ok := os.LookupEnv(v); ok {
			env = append(env, v+"="+s)
		}
	}
	step := func(name string) {
		if name != "done" {
			timer.start(name)
		}
	}
	if err := runIsolated(ctx, buildScript, env, step, o.Output); err != nil {
		return err
	}
	status, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		return fmt.Errorf("debootstrap: the new root file system has no package database: %w", err)
	}
	installed := parseStatus(status)
	res.Installed = len(installed)
	pruneArchives(archives, installed)
	return nil
}

// collect copies the kernel and initrd out of root into dir and fills in
// what the root file system says about itself.
func (res *Result) collect(root, dir string) error {
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return fmt.Errorf("debootstrap: the root file system has %d kernels in /boot, want 1", len(kernels))
	}
	res.KernelRelease = strings.TrimPrefix(filepath.Base(kernels[0]), "vmlinuz-")
	initrd := filepath.Join(root, "boot", "initrd.img-"+res.KernelRelease)
	for _, c := range []struct{ from, to string }{{kernels[0], KernelFile}, {initrd, InitrdFile}} {
		if err := copyFile(c.from, filepath.Join(dir, c.to)); err != nil {
			return err
		}
	}
	status, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	for _, p := range parseStatus(status) {
		if p.name == "linux-image-"+res.KernelRelease {
			res.KernelPackage = p.name + " " + p.version
		}
	}
	osr, err := os.ReadFile(filepath.Join(root, "etc/os-release"))
	if err != nil {
		osr, err = os.ReadFile(filepath.Join(root, "usr/lib/os-release"))
	}
	if err != nil {
		return fmt.Errorf("debootstrap: the root file system has no os-release: %w", err)
	}
	res.OS = parseOSRelease(osr)
	res.RootBytes, err = treeBytes(root)
	return err
}

// copyFile copies a regular file, synced, mode 0600.
func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	f, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("debootstrap: write %s: %w", to, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("debootstrap: sync %s: %w", to, err)
	}
	return f.Close()
}

// treeBytes returns the bytes the tree's files take on disk.
func treeBytes(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("debootstrap: measure the root file system: %w", err)
	}
	return n, nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("debootstrap: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// stepTimer times the steps and reports each as it starts.
type stepTimer struct {
	report func(string)
	name   string
	at     time.Time
	steps  []StepTime
}

func (t *stepTimer) start(name string) {
	t.stop()
	t.name, t.at = name, time.Now()
	if t.report != nil {
		t.report(name)
	}
}

// stop ends the current step and returns the times so far.
func (t *stepTimer) stop() []StepTime {
	if t.name != "" {
		t.steps = append(t.steps, StepTime{Name: t.name, Seconds: time.Since(t.at).Seconds()})
		t.name = ""
	}
	return t.steps
}
