package lab

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/paddock-vm/paddock/images"
	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/images/debian"
	"github.com/paddock-vm/paddock/images/initramfs"
	"github.com/paddock-vm/paddock/images/kmod"
)

//go:embed l1init.sh
var l1Init string

// L1Modules are the modules L1's /init loads, in this order: KVM with
// AMD-V (kvm-amd needs ccp), then networking (/dev/net/tun, bridges, veth)
// and vhost-net, then the nftables parts managed networks use (NAT
// chains, masquerade, DNAT, conntrack status, fib, and meta in the
// bridge family, which Debian's nf_tables leaves to nft_meta_bridge;
// libcrc32c, which conntrack needs, asks the crypto API for crc32c,
// which is no modinfo dependency, and L1 has no modprobe to load it on
// request).
var L1Modules = []string{
	"irqbypass", "ccp", "kvm", "kvm-amd",
	"tun", "llc", "stp", "bridge", "veth",
	"vhost_iotlb", "vhost", "tap", "vhost_net",
	"crc32c_generic", "nf_tables", "nft_chain_nat", "nft_masq", "nft_nat", "nft_ct", "nft_fib_ipv4", "nft_meta_bridge",
}

// Paths of the guest (L2) files in L1.
const (
	GuestVmlinuz = "/guest/vmlinuz"
	GuestVmlinux = "/guest/vmlinux"
	GuestInitrd  = "/guest/initrd.img"
	PaddockPath  = "/usr/local/bin/paddock"
	QEMUPath     = "/usr/bin/qemu-system-x86_64"
	QEMUDataDir  = "/usr/share/qemu"
)

// EnvPaddock names a prebuilt static paddock binary to use instead of
// building ./cmd/paddock.
const EnvPaddock = "PADDOCK_LAB_PADDOCK"

// QEMUFirmware are the firmware files QEMU needs in L1 (microvm and pc with
// direct kernel boot), found on the host's firmware path and copied into
// L1's QEMUDataDir.
var QEMUFirmware = []string{"qboot.rom", "pvh.bin", "linuxboot_dma.bin", "kvmvapic.bin"}

// HostQEMUFirmwarePath is where Debian's QEMU looks for firmware: its own
// data directory, then SeaBIOS's and iPXE's. QEMU 7.2 links the SeaBIOS
// files into /usr/share/qemu; later versions search /usr/share/seabios.
var HostQEMUFirmwarePath = []string{QEMUDataDir, "/usr/share/seabios", "/usr/lib/ipxe/qemu"}

// ImageOptions select the software of the L1 VM.
type ImageOptions struct {
	// Cache holds downloads and built segments; nil = cache.Default().
	Cache *cache.Cache
	// Kernel selects the Debian kernel (L1 and L2 run the same one).
	Kernel debian.KernelOptions
	// QEMU is the host QEMU binary copied into L1 (default
	// qemu-system-x86_64 on PATH) and HostQEMUFirmwarePath the
	// directories searched, in order, for its firmware (default
	// HostQEMUFirmwarePath).
	QEMU                 string
	HostQEMUFirmwarePath []string
	// Logf reports progress; nil = silent.
	Logf func(format string, args ...any)
}

// Image is the software of the L1 VM, as cpio segments that Run
// concatenates into one initramfs: a base (busybox, /init, modules), the
// guest (L2 kernel and hello initrd), and on demand QEMU, paddock and the
// guest's vmlinux. Segments are cached by content; an Image is safe for
// concurrent use.
type Image struct {
	// Guest holds the host paths of the L2 kernel and initrd.
	Guest *images.Guest
	// L1Vmlinux and L1BzImage are the L1 kernel in its two forms.
	L1Vmlinux, L1BzImage string

	opts  ImageOptions
	cache *cache.Cache
	base  string
	guest string

	mu   sync.Mutex
	lazy map[string]string // segment name -> cpio path
}

// BuildImage prepares the kernel, the guest and the base segments.
func BuildImage(ctx context.Context, opts ImageOptions) (*Image, error) {
	c := opts.Cache
	if c == nil {
		var err error
		if c, err = cache.Default(); err != nil {
			return nil, err
		}
	}
	g, err := images.PrepareGuest(ctx, images.GuestOptions{Cache: c, Kernel: opts.Kernel, Logf: opts.Logf})
	if err != nil {
		return nil, err
	}
	im := &Image{Guest: g, L1Vmlinux: g.Vmlinux, L1BzImage: g.Vmlinuz, opts: opts, cache: c, lazy: map[string]string{}}

	ix, err := kmod.Open(g.Kernel.ModulesDir)
	if err != nil {
		return nil, err
	}
	mods, err := ix.Resolve(ctx, L1Modules...)
	if err != nil {
		return nil, fmt.Errorf("lab: L1 modules: %w", err)
	}
	var paths []string
	for _, m := range mods {
		paths = append(paths, m.Path)
	}
	base := initramfs.Spec{
		Busybox: g.Busybox,
		Modules: &initramfs.Modules{Dir: g.Kernel.ModulesDir, Release: g.Kernel.Release, Paths: paths},
		Init:    l1Init,
		Files:   []initramfs.File{{Path: "guest", Mode: fs.ModeDir | 0o755}, {Path: "lab", Mode: fs.ModeDir | 0o755}},
	}
	if im.base, err = images.CachedInitramfs(ctx, c, "lab-base", base); err != nil {
		return nil, err
	}
	guest := initramfs.Spec{Overlay: true, Files: []initramfs.File{
		{Path: GuestVmlinuz, Source: g.Vmlinuz, Mode: 0o644},
		{Path: GuestInitrd, Source: g.Initrd, Mode: 0o644},
	}}
	if im.guest, err = images.CachedInitramfs(ctx, c, "lab-guest", guest); err != nil {
		return nil, err
	}
	return im, nil
}

func (im *Image) logf(format string, args ...any) {
	if im.opts.Logf != nil {
		im.opts.Logf(format, args...)
	}
}

// Close releases the image. Everything it built lives in the cache, so
// there is nothing to remove; it exists so callers need not know that.
func (im *Image) Close() error { return nil }

// segment returns the cpio of a lazily built segment, building it (into
// the cache) once per Image.
func (im *Image) segment(ctx context.Context, name string, spec func(context.Context) (initramfs.Spec, func(), error)) (string, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if p, ok := im.lazy[name]; ok {
		return p, nil
	}
	s, cleanup, err := spec(ctx)
	if err != nil {
		return "", err
	}
	if cleanup != nil {
		defer cleanup()
	}
	s.Overlay = true
	p, err := images.CachedInitramfs(ctx, im.cache, "lab-"+name, s)
	if err != nil {
		return "", err
	}
	im.lazy[name] = p
	return p, nil
}

// segments returns the cpio files a scenario's L1 boots from, in order
// (the per-run scenario segment is added by Run).
func (im *Image) segments(ctx context.Context, sc *Scenario) ([]string, error) {
	segs := []string{im.base, im.guest}
	if sc.WithVmlinux {
		p, err := im.segment(ctx, "vmlinux", func(context.Context) (initramfs.Spec, func(), error) {
			return initramfs.Spec{Files: []initramfs.File{{Path: GuestVmlinux, Source: im.Guest.Vmlinux, Mode: 0o644}}}, nil, nil
		})
		if err != nil {
			return nil, err
		}
		segs = append(segs, p)
	}
	if sc.WithQEMU {
		p, err := im.segment(ctx, "qemu", im.qemuSpec)
		if err != nil {
			return nil, err
		}
		segs = append(segs, p)
	}
	if sc.WithPaddock {
		p, err := im.segment(ctx, "paddock", im.paddockSpec)
		if err != nil {
			return nil, err
		}
		// Every edit of paddock makes a new entry: drop stale ones.
		if err := im.cache.Prune("initramfs", "lab-paddock-", 24*time.Hour); err != nil {
			im.logf("%v", err)
		}
		segs = append(segs, p)
	}
	return segs, nil
}

// qemuSpec copies the host's QEMU, the libraries ldd lists (at the paths
// it lists them, so the binary's interpreter and search path work
// unchanged) and the firmware.
func (im *Image) qemuSpec(ctx context.Context) (initramfs.Spec, func(), error) {
	bin := im.opts.QEMU
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	bin, err := exec.LookPath(bin)
	if err != nil {
		return initramfs.Spec{}, nil, fmt.Errorf("lab: QEMU for L1: %w", err)
	}
	im.logf("QEMU for L1: %s, its libraries and firmware", bin)
	real, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return initramfs.Spec{}, nil, fmt.Errorf("lab: %w", err)
	}
	files := []initramfs.File{{Path: QEMUPath, Source: real, Mode: 0o755}}
	libs, err := sharedLibraries(ctx, real)
	if err != nil {
		return initramfs.Spec{}, nil, err
	}
	for _, l := range libs {
		src, err := filepath.EvalSymlinks(l)
		if err != nil {
			return initramfs.Spec{}, nil, fmt.Errorf("lab: library %s: %w", l, err)
		}
		files = append(files, initramfs.File{Path: l, Source: src, Mode: 0o755})
	}
	dirs := im.opts.HostQEMUFirmwarePath
	if len(dirs) == 0 {
		dirs = HostQEMUFirmwarePath
	}
	fw, err := findFirmware(dirs, QEMUFirmware)
	if err != nil {
		return initramfs.Spec{}, nil, err
	}
	for _, name := range QEMUFirmware {
		files = append(files, initramfs.File{Path: filepath.Join(QEMUDataDir, name), Source: fw[name], Mode: 0o644})
	}
	return initramfs.Spec{Files: files}, nil, nil
}

// findFirmware resolves each named file to its real path in the first of
// dirs that has it; a file in none of them is an error naming it.
func findFirmware(dirs, names []string) (map[string]string, error) {
	found := map[string]string{}
	var missing []string
	for _, name := range names {
		for _, d := range dirs {
			if src, err := filepath.EvalSymlinks(filepath.Join(d, name)); err == nil {
				found[name] = src
				break
			}
		}
		if found[name] == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("lab: QEMU firmware %s not found in %s (install seabios and qemu-system-data)",
			strings.Join(missing, ", "), strings.Join(dirs, ":"))
	}
	return found, nil
}

// sharedLibraries returns the absolute paths `ldd bin` lists, the dynamic
// loader included.
func sharedLibraries(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("lab: ldd %s: %w", bin, err)
	}
	return parseLdd(string(out)), nil
}

// parseLdd extracts library paths from ldd output lines such as
// "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" and
// "/lib64/ld-linux-x86-64.so.2 (0x...)".
func parseLdd(out string) []string {
	seen := map[string]bool{}
	var libs []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		for i, w := range f {
			if strings.HasPrefix(w, "/") && (i == 0 || f[i-1] == "=>") && !seen[w] {
				seen[w] = true
				libs = append(libs, w)
			}
		}
	}
	sort.Strings(libs)
	return libs
}

// paddockSpec builds the static paddock binary (or takes
// $PADDOCK_LAB_PADDOCK); the cleanup removes the build directory once the
// segment is in the cache.
func (im *Image) paddockSpec(ctx context.Context) (initramfs.Spec, func(), error) {
	bin := os.Getenv(EnvPaddock)
	var cleanup func()
	if bin == "" {
		dir, err := os.MkdirTemp("", "paddock-lab-build-")
		if err != nil {
			return initramfs.Spec{}, nil, fmt.Errorf("lab: %w", err)
		}
		cleanup = func() { os.RemoveAll(dir) }
		bin = filepath.Join(dir, "paddock")
		im.logf("building a static paddock for L1")
		if err := BuildPaddock(ctx, bin); err != nil {
			cleanup()
			return initramfs.Spec{}, nil, err
		}
	}
	if err := debian.CheckStatic(bin); err != nil {
		if cleanup != nil {
			cleanup()
		}
		return initramfs.Spec{}, nil, fmt.Errorf("lab: paddock for L1: %w", err)
	}
	return initramfs.Spec{Files: []initramfs.File{{Path: PaddockPath, Source: bin, Mode: 0o755}}}, cleanup, nil
}

// BuildPaddock builds ./cmd/paddock of the module containing the current
// directory as a static binary at out.
func BuildPaddock(ctx context.Context, out string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	gomod, err := exec.CommandContext(ctx, goTool, "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return fmt.Errorf("lab: build paddock: not inside the paddock module (go env GOMOD: %v)", err)
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-o", out, "./cmd/paddock")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: go build ./cmd/paddock: %w\n%s", err, b)
	}
	return nil
}

// concat writes the segments, then last, to the new file dst (a
// per-run temporary: not synced).
func concat(dst string, segs []string, last io.WriterTo) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	for _, s := range segs {
		in, err := os.Open(s)
		if err != nil {
			f.Close()
			return fmt.Errorf("lab: %w", err)
		}
		_, err = io.Copy(bw, in)
		in.Close()
		if err != nil {
			f.Close()
			return fmt.Errorf("lab: copy %s: %w", s, err)
		}
	}
	if last != nil {
		if _, err := last.WriteTo(bw); err != nil {
			f.Close()
			return fmt.Errorf("lab: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("lab: %w", err)
	}
	return f.Close()
}
