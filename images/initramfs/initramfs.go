// Package initramfs builds initramfs images (newc cpio archives) from a
// declarative Spec: a static busybox with its applet links, kernel modules
// in load order, arbitrary files and an /init script.
//
// The image always has /dev/console (c 5 1), so the kernel can open a
// console for /init before devtmpfs is mounted, and the usual empty mount
// points. Building the same Spec twice gives the same bytes.
package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"

	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/images/cpio"
	"github.com/paddock-vm/paddock/images/kmod"
)

// RequiredApplets are the busybox applets paddock's init scripts use; a
// busybox without one of them is refused.
var RequiredApplets = []string{
	"sh", "mount", "umount", "insmod", "poweroff", "reboot", "cat", "echo", "grep", "awk", "sed", "cut",
	"ip", "ping", "dd", "sha256sum", "sleep", "uname", "setsid", "cttyhack", "hwclock", "timeout",
	"mkdir", "ln", "ls", "nproc", "kill", "hostname", "stty", "tr", "head", "tail", "wc", "date",
}

// Spec describes an initramfs.
type Spec struct {
	// Busybox is the host path of a statically linked busybox, installed
	// as /bin/busybox; empty for none.
	Busybox string
	// Applets are the applet links to install; nil installs every applet
	// the binary lists (`busybox --list-full`), at its canonical path.
	Applets []string
	// Modules are kernel modules to include; nil for none.
	Modules *Modules
	// Files are added after everything else, in order.
	Files []File
	// Init is the /init script (mode 0755); empty if Files provide "init".
	Init string
	// Overlay marks an image meant to be concatenated after another one
	// (the kernel unpacks concatenated archives in turn, later files
	// replacing earlier ones): it gets no skeleton and needs no /init.
	Overlay bool
}

// Modules selects kernel modules from an unpacked kernel package.
type Modules struct {
	// Dir is the host's lib/modules/RELEASE directory.
	Dir string
	// Release names the directory in the image: lib/modules/RELEASE.
	Release string
	// Paths are module paths relative to Dir, in load order; each must
	// come after the modules it depends on. Compressed modules are stored
	// uncompressed (busybox insmod cannot decompress).
	Paths []string
}

// LoadList is the file, relative to lib/modules/RELEASE, that lists the
// image's modules (uncompressed relative paths) one per line in load order:
//
//	while read m; do insmod /lib/modules/$(uname -r)/$m; done < /lib/modules/$(uname -r)/paddock.load
const LoadList = "paddock.load"

// File is one file, directory or symlink in the image.
type File struct {
	// Path inside the image ("etc/hostname" or "/etc/hostname").
	Path string
	// Mode holds the permissions and, for directories, fs.ModeDir.
	// Zero means 0644 for files and 0755 for directories.
	Mode fs.FileMode
	// Data is the file's contents, or Source the host file to copy, or
	// Target the destination of a symlink (exactly one is used; a File
	// with none is an empty file, or a directory with fs.ModeDir).
	Data   []byte
	Source string
	Target string
}

// Write writes the image described by spec to w as an uncompressed newc
// archive.
func Write(ctx context.Context, w io.Writer, spec Spec) error {
	b := &builder{w: cpio.NewWriter(w), seen: map[string]bool{}}
	if !spec.Overlay {
		if err := b.skeleton(); err != nil {
			return err
		}
	}
	if spec.Busybox != "" {
		if err := b.busybox(ctx, spec.Busybox, spec.Applets); err != nil {
			return err
		}
	}
	if spec.Modules != nil {
		if err := b.modules(ctx, spec.Modules); err != nil {
			return err
		}
	}
	if spec.Init != "" {
		if err := b.add(File{Path: "init", Mode: 0o755, Data: []byte(spec.Init)}); err != nil {
			return err
		}
	}
	for _, f := range spec.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.add(f); err != nil {
			return err
		}
	}
	if !b.seen["init"] && !spec.Overlay {
		return fmt.Errorf("initramfs: no /init: set Spec.Init or add an init file")
	}
	if err := b.w.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

// WriteFile writes the image to path atomically, gzip-compressed if
// compress is set (the kernel unpacks either; uncompressed unpacks faster
// under emulation).
func WriteFile(ctx context.Context, path string, spec Spec, compress bool) error {
	return cache.WriteAtomic(path, 0o644, func(f *os.File) error {
		bw := bufio.NewWriterSize(f, 1<<20)
		var w io.Writer = bw
		var zw *gzip.Writer
		if compress {
			zw = gzip.NewWriter(bw)
			w = zw
		}
		if err := Write(ctx, w, spec); err != nil {
			return err
		}
		if zw != nil {
			if err := zw.Close(); err != nil {
				return err
			}
		}
		return bw.Flush()
	})
}

// builder tracks what has been written so that parent directories are
// created once and duplicates are refused.
type builder struct {
	w    *cpio.Writer
	seen map[string]bool // clean path -> written
}

// skeleton writes the directories and device nodes every image has.
func (b *builder) skeleton() error {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "lib", "proc", "sys", "run", "root", "mnt", "var"} {
		if err := b.add(File{Path: d, Mode: fs.ModeDir | 0o755}); err != nil {
			return err
		}
	}
	if err := b.add(File{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777}); err != nil {
		return err
	}
	if err := b.add(File{Path: "dev", Mode: fs.ModeDir | 0o755}); err != nil {
		return err
	}
	b.seen["dev/console"] = true
	if err := b.w.AddCharDev("dev/console", 0o600, 5, 1); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

// clean validates an image path and returns it relative and cleaned.
func clean(p string) (string, error) {
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" || strings.Contains(p, "\x00") || strings.Contains("/"+p+"/", "/../") {
		return "", fmt.Errorf("initramfs: invalid path %q", p)
	}
	return c, nil
}

// parents creates the missing parent directories of p.
func (b *builder) parents(p string) error {
	dir := path.Dir(p)
	if dir == "." || b.seen[dir] {
		return nil
	}
	if err := b.parents(dir); err != nil {
		return err
	}
	b.seen[dir] = true
	if err := b.w.AddDir(dir, 0o755); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

// add writes one File.
func (b *builder) add(f File) error {
	p, err := clean(f.Path)
	if err != nil {
		return err
	}
	if b.seen[p] {
		return fmt.Errorf("initramfs: %s is added twice", p)
	}
	if err := b.parents(p); err != nil {
		return err
	}
	b.seen[p] = true
	mode := f.Mode
	switch {
	case f.Target != "":
		err = b.w.AddSymlink(p, f.Target)
	case mode.IsDir():
		if mode.Perm() == 0 {
			mode |= 0o755
		}
		err = b.w.AddDir(p, mode)
	case f.Source != "":
		err = b.copyFile(p, f.Source, mode)
	default:
		if mode == 0 {
			mode = 0o644
		}
		err = b.w.AddFile(p, mode, f.Data)
	}
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", p, err)
	}
	return nil
}

// copyFile streams a host file into the image; mode 0 keeps the host
// file's permissions.
func (b *builder) copyFile(p, src string, mode fs.FileMode) error {
	fh, err := os.Open(src)
	if err != nil {
		return err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("source %s is not a regular file", src)
	}
	if mode == 0 {
		mode = fi.Mode().Perm()
	}
	return b.w.AddFileFrom(p, mode, fi.Size(), fh)
}

// busybox installs the binary and its applet links.
func (b *builder) busybox(ctx context.Context, bin string, applets []string) error {
	listed, err := ListApplets(ctx, bin)
	if err != nil {
		return err
	}
	have := map[string]string{}
	for _, full := range listed {
		have[path.Base(full)] = full
	}
	var missing []string
	for _, a := range RequiredApplets {
		if have[a] == "" {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("initramfs: busybox %s lacks applets %s", bin, strings.Join(missing, " "))
	}
	if err := b.add(File{Path: "bin/busybox", Mode: 0o755, Source: bin}); err != nil {
		return err
	}
	links := listed
	if applets != nil {
		links = nil
		for _, a := range applets {
			full, ok := have[a]
			if !ok {
				return fmt.Errorf("initramfs: busybox %s has no applet %q", bin, a)
			}
			links = append(links, full)
		}
	}
	for _, l := range links {
		if l == "bin/busybox" || b.seen[l] {
			continue
		}
		if err := b.add(File{Path: l, Target: "/bin/busybox"}); err != nil {
			return err
		}
	}
	return nil
}

// ListApplets returns the applets of a busybox binary with their canonical
// paths ("bin/sh", "sbin/insmod", "usr/bin/awk"), sorted.
func ListApplets(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, bin, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("initramfs: %s --list-full: %w", bin, err)
	}
	var list []string
	for _, l := range strings.Fields(string(out)) {
		if c, err := clean(l); err == nil {
			list = append(list, c)
		}
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("initramfs: %s --list-full listed no applets", bin)
	}
	sort.Strings(list)
	return list, nil
}

// modules adds the kernel modules (decompressed), checks their order and
// writes the load list.
func (b *builder) modules(ctx context.Context, m *Modules) error {
	if m.Release == "" || strings.Contains(m.Release, "/") {
		return fmt.Errorf("initramfs: invalid module release %q", m.Release)
	}
	var mods []kmod.Module
	var list strings.Builder
	for _, rel := range m.Paths {
		data, err := kmod.ReadFile(ctx, path.Join(m.Dir, rel))
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		info, err := kmod.ReadInfo(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("initramfs: module %s: %w", rel, err)
		}
		name := info.Name
		if name == "" {
			name = kmod.Normalize(strings.TrimSuffix(path.Base(kmod.LoadName(rel)), ".ko"))
		}
		mods = append(mods, kmod.Module{Name: name, Path: rel, Depends: info.Depends})
		load := kmod.LoadName(rel)
		if err := b.add(File{Path: path.Join("lib/modules", m.Release, load), Data: data}); err != nil {
			return err
		}
		fmt.Fprintln(&list, load)
	}
	if err := kmod.CheckOrder(mods, nil); err != nil {
		return fmt.Errorf("initramfs: module order: %w", err)
	}
	return b.add(File{Path: path.Join("lib/modules", m.Release, LoadList), Data: []byte(list.String())})
}

// Digest returns a hex SHA-256 over everything that determines the image
// spec builds (file contents, not timestamps), for use as a cache key.
func (spec Spec) Digest() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "initramfs v1\ninit %q\noverlay %v\n", spec.Init, spec.Overlay)
	if spec.Busybox != "" {
		sum, err := fileDigest(spec.Busybox)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "busybox %s %q\n", sum, spec.Applets)
	}
	if m := spec.Modules; m != nil {
		fmt.Fprintf(h, "modules %q\n", m.Release)
		for _, rel := range m.Paths {
			sum, err := fileDigest(path.Join(m.Dir, rel))
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "module %q %s\n", rel, sum)
		}
	}
	for _, f := range spec.Files {
		content := ""
		switch {
		case f.Source != "":
			sum, err := fileDigest(f.Source)
			if err != nil {
				return "", err
			}
			fi, err := os.Stat(f.Source)
			if err != nil {
				return "", fmt.Errorf("initramfs: %w", err)
			}
			content = sum + fmt.Sprintf(" %o", fi.Mode().Perm())
		case f.Target != "":
			content = "-> " + f.Target
		default:
			s := sha256.Sum256(f.Data)
			content = hex.EncodeToString(s[:])
		}
		fmt.Fprintf(h, "file %q %o %s\n", f.Path, uint32(f.Mode), content)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fileDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("initramfs: read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
