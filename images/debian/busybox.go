package debian

import (
	"context"
	"debug/elf"
	"fmt"
	"path/filepath"
)

// HostBusybox is where Debian's busybox-static package installs busybox.
const HostBusybox = "/bin/busybox"

// Busybox returns the path of a statically linked busybox for initramfs
// images: the host's /bin/busybox when it is static (package
// busybox-static installed), else busybox-static fetched into the cache.
func (c *Client) Busybox(ctx context.Context) (string, error) {
	if err := CheckStatic(HostBusybox); err == nil {
		return HostBusybox, nil
	}
	pkg, version, err := c.Resolve(ctx, "busybox-static", "")
	if err != nil {
		if cached, cerr := c.Cached("busybox-static"); cerr == nil && len(cached) > 0 {
			p := filepath.Join(cached[len(cached)-1].Root, "bin", "busybox")
			if CheckStatic(p) == nil {
				c.logf("%v; using cached %s", err, p)
				return p, nil
			}
		}
		return "", fmt.Errorf("debian: no static busybox (install busybox-static): %w", err)
	}
	p, err := c.Fetch(ctx, pkg, version)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(p.Root, "bin", "busybox")
	if err := CheckStatic(bin); err != nil {
		return "", fmt.Errorf("debian: package %s %s: %w", pkg, version, err)
	}
	return bin, nil
}

// CheckStatic returns nil if path is a statically linked x86-64 ELF
// executable (no program interpreter, no shared-library dependencies), as
// an initramfs without libraries needs.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not a usable ELF executable: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s: ELF machine %v, want x86-64", path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: dynamically linked (has a program interpreter); a static binary is needed", path)
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return fmt.Errorf("%s: dynamically linked against %v; a static binary is needed", path, libs)
	}
	return nil
}
