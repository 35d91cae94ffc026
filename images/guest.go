// Package images prepares guest images from Debian packages: the stock
// kernel (as a bzImage and as an ELF vmlinux for PVH boot) and the demo
// "hello" initramfs. Everything is built once into paddock's cache
// (images/cache) and then copied where it is wanted.
//
// Subpackages: cache (the on-disk cache), debian (apt), bzimage (vmlinux
// extraction), kmod (module ordering), cpio (newc archives), initramfs
// (image builder), hello (the demo guest).
package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/paddock-vm/paddock/images/bzimage"
	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/images/debian"
	"github.com/paddock-vm/paddock/images/hello"
	"github.com/paddock-vm/paddock/images/initramfs"
	"github.com/paddock-vm/paddock/images/kmod"
)

// File names Install writes (configs/examples/hello.yaml points at them
// in build/guest/).
const (
	VmlinuzName = "vmlinuz"
	VmlinuxName = "vmlinux"
	InitrdName  = "initrd.img"
)

// GuestOptions select what PrepareGuest builds.
type GuestOptions struct {
	// Cache holds downloads and builds; nil means cache.Default().
	Cache *cache.Cache
	// Kernel selects the Debian kernel package.
	Kernel debian.KernelOptions
	// Hello customises the hello initramfs; Busybox is filled in when empty.
	Hello hello.Options
	// Logf reports progress; nil means silent.
	Logf func(format string, args ...any)
}

// Guest is a prepared guest: a kernel in two formats and the hello
// initramfs, all in the cache (read-only).
type Guest struct {
	Kernel  *debian.Kernel
	Busybox string
	Vmlinuz string // the Debian bzImage
	Vmlinux string // its ELF vmlinux (PVH entry)
	Initrd  string // the hello initramfs (uncompressed newc)
}

// PrepareGuest fetches the kernel and busybox, extracts the vmlinux and
// builds the hello initramfs, reusing cached results.
func PrepareGuest(ctx context.Context, opts GuestOptions) (*Guest, error) {
	c := opts.Cache
	if c == nil {
		var err error
		if c, err = cache.Default(); err != nil {
			return nil, err
		}
	}
	client := &debian.Client{Cache: c, Logf: opts.Logf}
	k, err := client.FetchKernel(ctx, opts.Kernel)
	if err != nil {
		return nil, err
	}
	bb := opts.Hello.Busybox
	if bb == "" {
		if bb, err = client.Busybox(ctx); err != nil {
			return nil, err
		}
	}
	vmlinux, err := bzimage.Cached(ctx, c, k.BzImage)
	if err != nil {
		return nil, err
	}
	ho := opts.Hello
	ho.Busybox = bb
	if ho.Modules == nil {
		// The default demo guest reacts to the ACPI power button
		// (`paddock stop`), which needs the button and evdev modules.
		if ho.Modules, err = moduleSet(ctx, k, hello.PowerButtonModules); err != nil {
			return nil, err
		}
	}
	spec, err := hello.Spec(ho)
	if err != nil {
		return nil, err
	}
	initrd, err := CachedInitramfs(ctx, c, "hello", spec)
	if err != nil {
		return nil, err
	}
	return &Guest{Kernel: k, Busybox: bb, Vmlinuz: k.BzImage, Vmlinux: vmlinux, Initrd: initrd}, nil
}

// moduleSet resolves kernel modules (with their dependencies, in load
// order) from k's modules directory.
func moduleSet(ctx context.Context, k *debian.Kernel, names []string) (*initramfs.Modules, error) {
	ix, err := kmod.Open(k.ModulesDir)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	mods, err := ix.Resolve(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	var paths []string
	for _, m := range mods {
		paths = append(paths, m.Path)
	}
	return &initramfs.Modules{Dir: k.ModulesDir, Release: k.Release, Paths: paths}, nil
}

// CachedInitramfs builds spec into the cache (uncompressed), keyed by name
// and the spec's content digest ("initramfs/NAME-DIGEST"), marks it used
// and returns the image's path.
func CachedInitramfs(ctx context.Context, c *cache.Cache, name string, spec initramfs.Spec) (string, error) {
	digest, err := spec.Digest()
	if err != nil {
		return "", err
	}
	key := "initramfs/" + name + "-" + digest[:32]
	dir, err := c.Ensure(ctx, key, func(tmp string) error {
		return initramfs.WriteFile(ctx, filepath.Join(tmp, InitrdName), spec, false)
	})
	if err != nil {
		return "", err
	}
	c.Touch(key) // for cache.Prune
	return filepath.Join(dir, InitrdName), nil
}

// Install copies the guest's files into dir as vmlinuz, vmlinux and
// initrd.img (each replaced atomically) and returns their paths.
func (g *Guest) Install(dir string) (*Guest, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	out := *g
	for _, f := range []struct {
		src  string
		name string
		dst  *string
	}{
		{g.Vmlinuz, VmlinuzName, &out.Vmlinuz},
		{g.Vmlinux, VmlinuxName, &out.Vmlinux},
		{g.Initrd, InitrdName, &out.Initrd},
	} {
		dst := filepath.Join(dir, f.name)
		if err := copyFile(f.src, dst); err != nil {
			return nil, fmt.Errorf("images: install %s: %w", dst, err)
		}
		*f.dst = dst
	}
	return &out, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return cache.WriteAtomic(dst, 0o644, func(f *os.File) error {
		_, err := io.Copy(f, in)
		return err
	})
}
