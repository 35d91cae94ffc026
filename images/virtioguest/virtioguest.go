// Package virtioguest builds the guest of paddock's virtio lab tests: the
// hello initramfs (images/hello) with the Debian kernel's virtio modules
// (virtio-pci, -blk, -net, -rng) and ext4, e2fsck, and vtool, a small
// static C program for transfers and disk and network measurements. Its
// built-in scripts virtio-check, virtio-intx, virtio-limits and
// virtio-bench run the lab's checks and benchmarks and print "@@LAB"
// markers.
package virtioguest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/paddock-vm/paddock/images"
	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/images/debian"
	"github.com/paddock-vm/paddock/images/hello"
	"github.com/paddock-vm/paddock/images/initramfs"
	"github.com/paddock-vm/paddock/images/kmod"
)

//go:embed vtool/vtool.c scripts/*.sh
var files embed.FS

// Modules are the modules the guest loads (with their dependencies, in
// an order insmod accepts): virtio-pci and its devices, then ext4 and the
// crc32c it asks the crypto API for (not a modinfo dependency).
var Modules = []string{"virtio_pci", "virtio_blk", "failover", "net_failover", "virtio_net", "virtio_rng", "crc32c_generic", "ext4"}

// VToolPath is where vtool is installed, in the guest and in L1.
const VToolPath = "/usr/bin/vtool"

// Options select what Initrd builds from.
type Options struct {
	// Cache holds the build; nil means cache.Default().
	Cache *cache.Cache
	// Kernel provides the modules; Busybox the static busybox.
	Kernel  *debian.Kernel
	Busybox string
}

// Scripts returns the guest's built-in scripts by name.
func Scripts() (map[string]string, error) {
	ents, err := files.ReadDir("scripts")
	if err != nil {
		return nil, fmt.Errorf("virtioguest: %w", err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := files.ReadFile(path.Join("scripts", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("virtioguest: %w", err)
		}
		out[strings.TrimSuffix(e.Name(), ".sh")] = string(b)
	}
	return out, nil
}

// Initrd builds the guest's initramfs (cached by content) and returns its
// path.
func Initrd(ctx context.Context, o Options) (string, error) {
	c, err := cacheOf(o.Cache)
	if err != nil {
		return "", err
	}
	if o.Kernel == nil || o.Busybox == "" {
		return "", fmt.Errorf("virtioguest: a kernel and a busybox are needed")
	}
	ix, err := kmod.Open(o.Kernel.ModulesDir)
	if err != nil {
		return "", err
	}
	mods, err := ix.Resolve(ctx, Modules...)
	if err != nil {
		return "", fmt.Errorf("virtioguest: %w", err)
	}
	var paths []string
	for _, m := range mods {
		paths = append(paths, m.Path)
	}
	vtool, err := BuildVTool(ctx, c)
	if err != nil {
		return "", err
	}
	e2fsck, err := exec.LookPath("e2fsck")
	if err != nil {
		return "", fmt.Errorf("virtioguest: e2fsck (package e2fsprogs) for the guest: %w", err)
	}
	extra, err := HostFiles(ctx, e2fsck)
	if err != nil {
		return "", err
	}
	extra = append(extra, initramfs.File{Path: VToolPath, Source: vtool, Mode: 0o755})
	scripts, err := Scripts()
	if err != nil {
		return "", err
	}
	spec, err := hello.Spec(hello.Options{
		Busybox: o.Busybox,
		Modules: &initramfs.Modules{Dir: o.Kernel.ModulesDir, Release: o.Kernel.Release, Paths: paths},
		Scripts: scripts,
		Files:   extra,
	})
	if err != nil {
		return "", err
	}
	return images.CachedInitramfs(ctx, c, "virtio-guest", spec)
}

func cacheOf(c *cache.Cache) (*cache.Cache, error) {
	if c != nil {
		return c, nil
	}
	return cache.Default()
}

// BuildVTool compiles vtool with the host's gcc, statically, into the
// cache (keyed by its source) and returns the binary's path.
func BuildVTool(ctx context.Context, c *cache.Cache) (string, error) {
	c, err := cacheOf(c)
	if err != nil {
		return "", err
	}
	src, err := files.ReadFile("vtool/vtool.c")
	if err != nil {
		return "", fmt.Errorf("virtioguest: %w", err)
	}
	sum := sha256.Sum256(src)
	dir, err := c.Ensure(ctx, "vtool/"+hex.EncodeToString(sum[:16]), func(tmp string) error {
		gcc, err := exec.LookPath("gcc")
		if err != nil {
			return fmt.Errorf("virtioguest: gcc to build vtool: %w", err)
		}
		csrc := filepath.Join(tmp, "vtool.c")
		if err := os.WriteFile(csrc, src, 0o644); err != nil {
			return err
		}
		out, err := exec.CommandContext(ctx, gcc, "-static", "-O2", "-Wall", "-o", filepath.Join(tmp, "vtool"), csrc).CombinedOutput()
		if err != nil {
			return fmt.Errorf("virtioguest: build vtool: %w\n%s", err, out)
		}
		return os.Remove(csrc)
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "vtool"), nil
}

// HostFiles returns initramfs files for host binaries and every shared
// library ldd lists for them, each at its host path, so the binaries run
// unchanged in a guest or in L1.
func HostFiles(ctx context.Context, binaries ...string) ([]initramfs.File, error) {
	seen := map[string]bool{}
	var out []initramfs.File
	for _, bin := range binaries {
		real, err := filepath.EvalSymlinks(bin)
		if err != nil {
			return nil, fmt.Errorf("virtioguest: %w", err)
		}
		if !seen[bin] {
			seen[bin] = true
			out = append(out, initramfs.File{Path: bin, Source: real, Mode: 0o755})
		}
		libs, err := sharedLibraries(ctx, real)
		if err != nil {
			return nil, err
		}
		for _, l := range libs {
			if !seen[l] {
				seen[l] = true
				out = append(out, initramfs.File{Path: l, Source: l, Mode: 0o755})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// sharedLibraries lists the absolute library paths `ldd bin` prints.
func sharedLibraries(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("virtioguest: ldd %s: %w", bin, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		}
	}
	return libs, sc.Err()
}
