// Package kmod finds Linux kernel modules in an unpacked kernel package
// and orders them for loading with busybox insmod, which (unlike modprobe)
// resolves no dependencies: a module must come after every module it
// depends on. Dependencies are read from each module's .modinfo section
// ("depends=kvm,ccp"), so no modules.dep (depmod) is needed.
package kmod

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// maxModinfo bounds the .modinfo section read from an untrusted module.
const maxModinfo = 1 << 20

// maxModule bounds a decompressed module (the largest in Debian's kernel
// are a few MiB).
const maxModule = 256 << 20

// Module is one kernel module.
type Module struct {
	// Name is the module name with '-' normalised to '_' ("kvm_amd").
	Name string
	// Path is relative to the modules directory
	// ("kernel/arch/x86/kvm/kvm-amd.ko"), possibly compressed (.ko.xz).
	Path string
	// Depends lists the names of the modules it needs loaded first.
	Depends []string
}

// Info is the part of a module's .modinfo that ordering needs.
type Info struct {
	Name     string
	Depends  []string
	Vermagic string
}

// Normalize returns the canonical form of a module name: the kernel treats
// '-' and '_' alike.
func Normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// moduleName returns the name of a module file ("kvm-amd.ko.xz" -> "kvm_amd").
func moduleName(file string) (string, bool) {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.gz", ".ko.zst"} {
		if n, ok := strings.CutSuffix(file, ext); ok && n != "" {
			return Normalize(n), true
		}
	}
	return "", false
}

// Index maps module names to files under a modules directory
// (lib/modules/RELEASE).
type Index struct {
	Dir   string
	paths map[string]string // name -> path relative to Dir
}

// Open indexes the modules under dir/kernel (and dir/updates, dir/extra
// when present). It reads file names only.
func Open(dir string) (*Index, error) {
	ix := &Index{Dir: dir, paths: map[string]string{}}
	found := false
	for _, sub := range []string{"kernel", "updates", "extra"} {
		root := filepath.Join(dir, sub)
		if _, err := os.Stat(root); err != nil {
			continue
		}
		found = true
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			name, ok := moduleName(d.Name())
			if !ok {
				return nil
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			if _, dup := ix.paths[name]; !dup {
				ix.paths[name] = filepath.ToSlash(rel)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("kmod: index %s: %w", root, err)
		}
	}
	if !found {
		return nil, fmt.Errorf("kmod: %s has no kernel/ directory: not a lib/modules/RELEASE directory", dir)
	}
	return ix, nil
}

// Path returns the relative path of the named module.
func (ix *Index) Path(name string) (string, bool) {
	p, ok := ix.paths[Normalize(name)]
	return p, ok
}

// Len returns the number of indexed modules.
func (ix *Index) Len() int { return len(ix.paths) }

// Module reads the named module's dependencies.
func (ix *Index) Module(ctx context.Context, name string) (Module, error) {
	rel, ok := ix.Path(name)
	if !ok {
		return Module{}, fmt.Errorf("kmod: module %s not found under %s", name, ix.Dir)
	}
	data, err := ReadFile(ctx, filepath.Join(ix.Dir, rel))
	if err != nil {
		return Module{}, err
	}
	info, err := ReadInfo(bytes.NewReader(data))
	if err != nil {
		return Module{}, fmt.Errorf("kmod: module %s: %w", rel, err)
	}
	return Module{Name: Normalize(name), Path: rel, Depends: info.Depends}, nil
}

// Resolve returns the named modules and everything they depend on, in an
// order insmod can load them: each module after its dependencies, and
// otherwise in the order given.
func (ix *Index) Resolve(ctx context.Context, names ...string) ([]Module, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var out []Module
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = Normalize(name)
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("kmod: dependency cycle: %s -> %s", strings.Join(chain, " -> "), name)
		}
		state[name] = visiting
		m, err := ix.Module(ctx, name)
		if err != nil {
			if len(chain) > 0 {
				return fmt.Errorf("%w (needed by %s)", err, chain[len(chain)-1])
			}
			return err
		}
		for _, d := range m.Depends {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = done
		out = append(out, m)
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CheckOrder returns an error if a module comes before one it depends on,
// or depends on a module missing from the list (unless builtin reports it
// as built into the kernel).
func CheckOrder(mods []Module, builtin func(name string) bool) error {
	pos := map[string]int{}
	for i, m := range mods {
		pos[Normalize(m.Name)] = i
	}
	var errs []error
	for i, m := range mods {
		for _, d := range m.Depends {
			j, ok := pos[Normalize(d)]
			switch {
			case !ok && (builtin == nil || !builtin(d)):
				errs = append(errs, fmt.Errorf("module %s depends on %s, which is not in the list", m.Name, d))
			case ok && j > i:
				errs = append(errs, fmt.Errorf("module %s depends on %s, which comes after it", m.Name, d))
			}
		}
	}
	return errors.Join(errs...)
}

// ReadInfo parses the .modinfo section of a module's ELF data. The data is
// untrusted: malformed input is an error, never a panic.
func ReadInfo(r io.ReaderAt) (info Info, err error) {
	defer func() {
		if p := recover(); p != nil {
			info, err = Info{}, fmt.Errorf("malformed ELF file: %v", p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return Info{}, fmt.Errorf("not an ELF module: %w", err)
	}
	s := f.Section(".modinfo")
	if s == nil {
		return Info{}, errors.New("no .modinfo section: not a kernel module")
	}
	if s.Size > maxModinfo || s.Type == elf.SHT_NOBITS {
		return Info{}, fmt.Errorf(".modinfo section of %d bytes is not plausible", s.Size)
	}
	data := make([]byte, s.Size)
	if _, err := s.ReadAt(data, 0); err != nil {
		return Info{}, fmt.Errorf("read .modinfo: %w", err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			info.Name = v
		case "vermagic":
			info.Vermagic = v
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					info.Depends = append(info.Depends, Normalize(d))
				}
			}
		}
	}
	return info, nil
}

// ReadFile returns a module's ELF data, decompressing .ko.gz in Go and
// .ko.xz / .ko.zst with the xz / zstd tools.
func ReadFile(ctx context.Context, path string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(path, ".ko"):
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("kmod: %w", err)
		}
		return b, nil
	case strings.HasSuffix(path, ".ko.gz"):
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("kmod: %w", err)
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("kmod: %s: %w", path, err)
		}
		b, err := io.ReadAll(io.LimitReader(zr, maxModule))
		if err != nil {
			return nil, fmt.Errorf("kmod: %s: %w", path, err)
		}
		return b, nil
	case strings.HasSuffix(path, ".ko.xz"):
		tool = "xz"
	case strings.HasSuffix(path, ".ko.zst"):
		tool = "zstd"
	default:
		return nil, fmt.Errorf("kmod: %s: not a module file name (.ko, .ko.gz, .ko.xz, .ko.zst)", path)
	}
	if _, err := exec.LookPath(tool); err != nil {
		return nil, fmt.Errorf("kmod: %s: decompressing it needs the %q tool, which is not on PATH", path, tool)
	}
	out, err := exec.CommandContext(ctx, tool, "-dc", path).Output()
	if err != nil {
		return nil, fmt.Errorf("kmod: %s -dc %s: %w", tool, path, err)
	}
	return out, nil
}

// LoadName returns the file name a module gets in an initramfs, where it
// is stored uncompressed: the relative path with any compression suffix
// removed.
func LoadName(rel string) string {
	for _, ext := range []string{".xz", ".gz", ".zst"} {
		if r, ok := strings.CutSuffix(rel, ".ko"+ext); ok {
			return r + ".ko"
		}
	}
	return rel
}
