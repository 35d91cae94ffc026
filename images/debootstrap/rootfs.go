package debootstrap

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// overlayFS holds the files build.sh copies over the root file system:
// the DHCP network, cloud-init's datasources, the SSH host key unit,
// the identity step of warm clones (paddock-identity.service).
//
//go:embed rootfs
var overlayFS embed.FS

// writeOverlay writes the overlay files under dir, root-owned, files
// 0644 and directories 0755, as the guest wants them.
func writeOverlay(dir string) error {
	sub, err := fs.Sub(overlayFS, "rootfs")
	if err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	err = fs.WalkDir(sub, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		to := filepath.Join(dir, path)
		if d.IsDir() {
			if err := os.MkdirAll(to, 0o755); err != nil {
				return err
			}
			return os.Chmod(to, 0o755) // umask
		}
		data, err := fs.ReadFile(sub, path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(to, data, 0o644); err != nil {
			return err
		}
		return os.Chmod(to, 0o644)
	})
	if err != nil {
		return fmt.Errorf("debootstrap: write the guest's configuration files: %w", err)
	}
	return nil
}

// ext4Slack is what an ext4 file system needs beyond its files' bytes:
// inode tables, the journal, reserved blocks and room for the first
// boot's writes. The check it serves only turns mkfs's "no space" into a
// sentence saying which size to pick.
func ext4Slack(files int64) int64 { return files/5 + 256<<20 }

// makeExt4 makes the root file system image at raw: a sparse file of the
// disk's size holding an ext4 file system with root's files (mkfs.ext4
// -d copies them, with owners, modes, device nodes, links and extended
// attributes; no loop device, no mount). Inode tables and the journal
// are initialized now, not by each VM's kernel after boot (which would
// write them into every VM's overlay).
func makeExt4(ctx context.Context, raw, root string, res *Result) error {
	if need := res.RootBytes + ext4Slack(res.RootBytes); need > res.DiskSize {
		return fmt.Errorf("debootstrap: the root file system takes %d MiB, too much for a %d MiB disk: give a disk size of at least %d MiB", res.RootBytes>>20, res.DiskSize>>20, (need+(1<<20)-1)>>20)
	}
	f, err := os.OpenFile(raw, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	err = f.Truncate(res.DiskSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	mkfs, err := lookTool("mkfs.ext4")
	if err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-t", "ext4", "-L", "root", "-U", res.RootUUID,
		"-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", root, raw)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("debootstrap: mkfs.ext4 -d %s %s: %w: %s", root, raw, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// dpkgPackage is an installed package, from dpkg's status file.
type dpkgPackage struct {
	name, version, arch string
}

// parseStatus returns the installed packages in dpkg's status file
// (/var/lib/dpkg/status).
func parseStatus(data []byte) []dpkgPackage {
	var out []dpkgPackage
	for _, para := range bytes.Split(data, []byte("\n\n")) {
		f := controlFields(para)
		if f["Status"] == "install ok installed" && f["Package"] != "" {
			out = append(out, dpkgPackage{name: f["Package"], version: f["Version"], arch: f["Architecture"]})
		}
	}
	return out
}

// controlFields returns the single-line fields of a control paragraph.
func controlFields(para []byte) map[string]string {
	f := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(para))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			f[k] = strings.TrimSpace(v)
		}
	}
	return f
}

// debFile returns the name apt gives a package's file in its archives:
// name_version_arch.deb, an epoch's colon written %3a.
func (p dpkgPackage) debFile() string {
	return p.name + "_" + strings.ReplaceAll(p.version, ":", "%3a") + "_" + p.arch + ".deb"
}

// pruneArchives removes from the package cache the files of other
// versions of the packages installed now: superseded versions are never
// installed again, and without this the cache would grow with every
// point release. Files of packages not installed now (another build's
// extra packages) are kept. Errors are ignored: the cache is only a
// cache.
func pruneArchives(dir string, installed []dpkgPackage) {
	current := map[string]string{} // name_arch -> current file
	for _, p := range installed {
		current[p.name+"_"+p.arch] = p.debFile()
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".deb")
		parts := strings.Split(name, "_")
		if !ok || len(parts) != 3 {
			continue
		}
		if keep, ok := current[parts[0]+"_"+parts[2]]; ok && keep != e.Name() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// OSRelease is what the guest's /etc/os-release says about it.
type OSRelease struct {
	ID, VersionID, Codename, PrettyName string
}

// parseOSRelease reads os-release(5): KEY=value lines, values optionally
// quoted.
func parseOSRelease(data []byte) OSRelease {
	kv := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		} else {
			v = strings.Trim(v, `'`)
		}
		kv[k] = v
	}
	return OSRelease{ID: kv["ID"], VersionID: kv["VERSION_ID"], Codename: kv["VERSION_CODENAME"], PrettyName: kv["PRETTY_NAME"]}
}
