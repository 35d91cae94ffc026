// Package debian fetches Debian binary packages with the host's apt and
// unpacks them into paddock's cache: the stock kernel (linux-image-amd64)
// that guests boot, and busybox-static for initramfs images.
//
// Packages are resolved with apt-cache (a meta-package such as
// linux-image-amd64 is followed to the versioned package it depends on),
// downloaded with `apt-get download` and unpacked with `dpkg-deb -x` into
// a cache entry named by package and version, so a version is fetched once
// and reused by every later caller, including concurrent test processes.
package debian

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/paddock-vm/paddock/images/cache"
)

// Client fetches packages into a cache.
type Client struct {
	// Cache receives unpacked packages under "debian/".
	Cache *cache.Cache
	// Logf reports progress (downloads, extraction); nil means silent.
	Logf func(format string, args ...any)

	mu       sync.Mutex
	resolved map[string][2]string // Resolve memo: name+follow -> pkg, version
}

// Package is an unpacked binary package.
type Package struct {
	Name    string // e.g. linux-image-6.1.0-56-amd64
	Version string // e.g. 6.1.192-2
	// Root is the directory the package's data.tar was unpacked into
	// (it holds boot/, lib/, usr/...). Treat it as read-only.
	Root string
}

func (c *Client) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// ErrNoApt is wrapped by errors caused by a missing apt/dpkg tool.
var ErrNoApt = errors.New("Debian's apt tools are not installed")

// tool returns the path of an apt/dpkg tool or an error saying what it
// is needed for.
func tool(name, purpose string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("debian: %s not found on PATH (needed to %s): %w", name, purpose, ErrNoApt)
	}
	return p, nil
}

// run runs a command and returns its stdout; on failure the error carries
// the tail of its stderr.
func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w%s", filepath.Base(name), strings.Join(args, " "), err, tail(stderr.String(), 6))
	}
	return stdout.Bytes(), nil
}

// tail returns the last n non-empty lines of s, indented, for error messages.
func tail(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return ""
	}
	return ":\n\t" + strings.Join(lines, "\n\t")
}

// Resolve follows name through apt's package lists: if follow is not
// empty and name is a meta-package whose first dependency starts with
// follow (e.g. "linux-image-amd64" and "linux-image-"), the dependency is
// resolved instead. It returns the concrete package and its candidate
// version. It needs apt-cache and package lists (apt-get update), not the
// network. Results are remembered for the Client's lifetime: apt-cache
// takes seconds per call when apt keeps no binary cache.
func (c *Client) Resolve(ctx context.Context, name, follow string) (pkg, version string, err error) {
	memo := name + "\x00" + follow
	c.mu.Lock()
	r, ok := c.resolved[memo]
	c.mu.Unlock()
	if ok {
		return r[0], r[1], nil
	}
	pkg, version, err = resolve(ctx, name, follow)
	if err != nil {
		return "", "", err
	}
	c.mu.Lock()
	if c.resolved == nil {
		c.resolved = map[string][2]string{}
	}
	c.resolved[memo] = [2]string{pkg, version}
	c.mu.Unlock()
	return pkg, version, nil
}

func resolve(ctx context.Context, name, follow string) (pkg, version string, err error) {
	aptCache, err := tool("apt-cache", "resolve package "+name)
	if err != nil {
		return "", "", err
	}
	out, err := run(ctx, "", aptCache, "show", "--no-all-versions", name)
	if err != nil {
		return "", "", fmt.Errorf("debian: look up %s (are the package lists present? run apt-get update): %w", name, err)
	}
	pkg, version = name, field(out, "Version")
	if follow != "" {
		dep, depVersion := firstDependency(field(out, "Depends"))
		if !strings.HasPrefix(dep, follow) {
			return "", "", fmt.Errorf("debian: %s does not depend on a %s* package (Depends: %s)", name, follow, field(out, "Depends"))
		}
		pkg, version = dep, depVersion
		if version == "" {
			out, err := run(ctx, "", aptCache, "show", "--no-all-versions", pkg)
			if err != nil {
				return "", "", fmt.Errorf("debian: look up %s (are the package lists present? run apt-get update): %w", pkg, err)
			}
			version = field(out, "Version")
		}
	}
	if version == "" {
		return "", "", fmt.Errorf("debian: apt-cache show %s: no Version field (no installable candidate; run apt-get update)", pkg)
	}
	return pkg, version, nil
}

// firstDependency parses a Depends field ("a (= 1.2), b | c") and returns
// the first package and the version it is pinned to with "=", if any.
func firstDependency(depends string) (pkg, version string) {
	first, _, _ := strings.Cut(depends, ",")
	first, _, _ = strings.Cut(first, "|")
	first = strings.TrimSpace(first)
	pkg, rel, _ := strings.Cut(first, "(")
	pkg = strings.TrimSpace(pkg)
	if strings.HasSuffix(rel, ")") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(strings.TrimSuffix(rel, ")")), "="); ok {
			version = strings.TrimSpace(v)
		}
	}
	pkg, _, _ = strings.Cut(pkg, ":") // drop an architecture qualifier
	return pkg, version
}

// field returns the value of the first "Name: value" line of a control
// paragraph.
func field(out []byte, name string) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Key returns the cache key of an unpacked package version.
func Key(pkg, version string) string {
	// As apt does for file names: an epoch's colon becomes %3a.
	return "debian/" + pkg + "_" + strings.ReplaceAll(version, ":", "%3a")
}

// Fetch returns pkg at version unpacked in the cache, downloading and
// unpacking it the first time.
func (c *Client) Fetch(ctx context.Context, pkg, version string) (*Package, error) {
	if !ValidName(pkg) || !validVersion(version) {
		return nil, fmt.Errorf("debian: invalid package %q version %q", pkg, version)
	}
	key := Key(pkg, version)
	dir, err := c.Cache.Ensure(ctx, key, func(tmp string) error {
		return c.download(ctx, pkg, version, tmp)
	})
	if err != nil {
		return nil, err
	}
	return &Package{Name: pkg, Version: version, Root: filepath.Join(dir, "root")}, nil
}

// download fetches one .deb into tmp and unpacks it to tmp/root.
func (c *Client) download(ctx context.Context, pkg, version, tmp string) error {
	aptGet, err := tool("apt-get", "download "+pkg)
	if err != nil {
		return err
	}
	dpkgDeb, err := tool("dpkg-deb", "unpack "+pkg)
	if err != nil {
		return err
	}
	dl := filepath.Join(tmp, "download")
	if err := os.Mkdir(dl, 0o755); err != nil {
		return fmt.Errorf("debian: %w", err)
	}
	args := []string{"download", "-q"}
	if os.Geteuid() == 0 {
		// apt drops privileges to _apt, which cannot write into a private
		// cache directory; downloading as root is what it falls back to
		// anyway, minus the warning.
		args = append(args, "-o", "APT::Sandbox::User=root")
	}
	c.logf("downloading %s %s", pkg, version)
	if _, err := run(ctx, dl, aptGet, append(args, pkg+"="+version)...); err != nil {
		return fmt.Errorf("debian: download %s %s (is the Debian mirror reachable?): %w", pkg, version, err)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("debian: apt-get download %s left %d .deb files in %s, want 1", pkg, len(debs), dl)
	}
	c.logf("unpacking %s", filepath.Base(debs[0]))
	if _, err := run(ctx, "", dpkgDeb, "-x", debs[0], filepath.Join(tmp, "root")); err != nil {
		return fmt.Errorf("debian: unpack %s: %w", debs[0], err)
	}
	return os.RemoveAll(dl)
}

// Cached returns the unpacked versions of pkg already in the cache,
// newest key last (by name; used only as an offline fallback).
func (c *Client) Cached(pkgPrefix string) ([]*Package, error) {
	keys, err := c.Cache.Entries("debian")
	if err != nil {
		return nil, err
	}
	sort.Strings(keys)
	var out []*Package
	for _, k := range keys {
		base := strings.TrimPrefix(k, "debian/")
		name, ver, ok := strings.Cut(base, "_")
		if !ok || !strings.HasPrefix(name, pkgPrefix) {
			continue
		}
		out = append(out, &Package{Name: name, Version: strings.ReplaceAll(ver, "%3a", ":"), Root: filepath.Join(c.Cache.Path(k), "root")})
	}
	return out, nil
}

// ValidName reports whether s is a Debian package name (policy 5.6.1).
func ValidName(s string) bool {
	if len(s) < 2 || !isLowerAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isLowerAlnum(s[i]) && !strings.ContainsRune("+-.", rune(s[i])) {
			return false
		}
	}
	return true
}

// validVersion reports whether s looks like a Debian version (policy 5.6.12).
func validVersion(s string) bool {
	if s == "" || !(s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLowerAlnum(c) && !(c >= 'A' && c <= 'Z') && !strings.ContainsRune(".+-~:", rune(c)) {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
