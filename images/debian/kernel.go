package debian

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultKernelMeta is the meta-package that names Debian's current
// generic amd64 kernel.
const DefaultKernelMeta = "linux-image-amd64"

// KernelOptions selects a kernel package.
type KernelOptions struct {
	// Meta is the meta-package to resolve (default DefaultKernelMeta);
	// "linux-image-cloud-amd64" selects the cloud flavour.
	Meta string
	// Package and Version pin a concrete package (e.g.
	// "linux-image-6.1.0-56-amd64", "6.1.192-2") instead of resolving Meta.
	// Version may be empty to take apt's candidate.
	Package string
	Version string
}

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	Package
	// Release is the kernel release, `uname -r` in the guest
	// (e.g. "6.1.0-56-amd64").
	Release string
	// BzImage is the path of the compressed kernel (boot/vmlinuz-RELEASE).
	BzImage string
	// ModulesDir is lib/modules/RELEASE; module paths are relative to it
	// ("kernel/arch/x86/kvm/kvm.ko").
	ModulesDir string
}

// FetchKernel resolves, downloads (once per version) and unpacks a Debian
// kernel package. When apt cannot resolve the package (no apt, no package
// lists), a kernel already in the cache is used instead, with a log line.
func (c *Client) FetchKernel(ctx context.Context, opts KernelOptions) (*Kernel, error) {
	meta := opts.Meta
	if meta == "" {
		meta = DefaultKernelMeta
	}
	pkg, version := opts.Package, opts.Version
	if pkg == "" || version == "" {
		name, follow := meta, "linux-image-"
		if pkg != "" {
			name, follow = pkg, ""
		}
		var err error
		pkg, version, err = c.Resolve(ctx, name, follow)
		if err != nil {
			if k := c.cachedKernel(meta, opts.Package); k != nil {
				c.logf("%v; using cached %s %s", err, k.Name, k.Version)
				return k, nil
			}
			return nil, err
		}
	}
	p, err := c.Fetch(ctx, pkg, version)
	if err != nil {
		return nil, err
	}
	return kernelFrom(p)
}

// cachedKernel returns the newest cached kernel package matching the
// request, or nil.
func (c *Client) cachedKernel(meta, pkg string) *Kernel {
	prefix, suffix := "linux-image-", strings.TrimPrefix(meta, "linux-image")
	if pkg != "" {
		prefix, suffix = pkg, ""
	}
	pkgs, err := c.Cached(prefix)
	if err != nil {
		return nil
	}
	for i := len(pkgs) - 1; i >= 0; i-- {
		if !strings.HasSuffix(pkgs[i].Name, suffix) {
			continue
		}
		if k, err := kernelFrom(pkgs[i]); err == nil {
			return k
		}
	}
	return nil
}

// kernelFrom locates the kernel image and modules in an unpacked package.
func kernelFrom(p *Package) (*Kernel, error) {
	images, _ := filepath.Glob(filepath.Join(p.Root, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return nil, fmt.Errorf("debian: package %s %s has %d boot/vmlinuz-* files, want 1 (is it a linux-image package?)", p.Name, p.Version, len(images))
	}
	release := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	mods := filepath.Join(p.Root, "lib", "modules", release)
	if fi, err := os.Stat(mods); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return nil, fmt.Errorf("debian: package %s %s: modules of release %s: %w", p.Name, p.Version, release, err)
	}
	return &Kernel{Package: *p, Release: release, BzImage: images[0], ModulesDir: mods}, nil
}
