package debootstrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/images/cache"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHostMirrors(t *testing.T) {
	for _, tc := range []struct {
		name           string
		files          map[string]string
		mirror, secure string
	}{
		{"deb822", map[string]string{
			"sources.list.d/debian.sources": `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
`,
		}, "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"},
		{"deb822 disabled and continued", map[string]string{
			"sources.list.d/a.sources": `Types: deb
URIs: http://old.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src deb
URIs: http://mirror.example/debian
Suites: bullseye
  bookworm
Components: contrib
 main
`,
		}, "http://mirror.example/debian", ""},
		{"one-line", map[string]string{
			"sources.list": `# a comment
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib # trailing
deb http://m.example/debian-security bookworm-security main
`,
			"sources.list.d/backports.list": "deb http://deb.debian.org/debian bookworm-backports main\n",
		}, "http://m.example/debian", "http://m.example/debian-security"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			m, s, err := HostMirrors(dir, "bookworm")
			if err != nil || m != tc.mirror || s != tc.secure {
				t.Errorf("HostMirrors: %q, %q, %v; want %q, %q", m, s, err, tc.mirror, tc.secure)
			}
		})
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"sources.list": "deb http://x.example/debian bullseye main\n"})
	if _, _, err := HostMirrors(dir, "bookworm"); err == nil || !strings.Contains(err.Error(), "--mirror") {
		t.Errorf("no bookworm source: %v, want an error pointing to --mirror", err)
	}
}

func TestAptConfLines(t *testing.T) {
	dump := `APT "";
Acquire::Check-Valid-Until "false";
Acquire::http::Proxy "http://proxy:3128/";
Acquire::GzipIndexes "true";
Acquire::Languages "none";
Dir::Etc "etc/apt/";
`
	want := "Acquire::Check-Valid-Until \"false\";\nAcquire::http::Proxy \"http://proxy:3128/\";\n"
	if got := aptConfLines([]byte(dump)); got != want {
		t.Errorf("aptConfLines:\n%s\nwant\n%s", got, want)
	}
}

func TestParseStatusAndPrune(t *testing.T) {
	status := `Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u10
Description: GNU C Library
 with a continuation line: Version: 9

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1

Package: base-files
Status: install ok installed
Architecture: amd64
Version: 1:12.4+deb12u15
`
	got := parseStatus([]byte(status))
	want := []dpkgPackage{{"libc6", "2.36-9+deb12u10", "amd64"}, {"base-files", "1:12.4+deb12u15", "amd64"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseStatus: %+v", got)
	}
	dir := t.TempDir()
	files := []string{
		"libc6_2.36-9+deb12u10_amd64.deb",        // installed: kept
		"libc6_2.36-9+deb12u9_amd64.deb",         // superseded: removed
		"base-files_1%3a12.4+deb12u15_amd64.deb", // installed, with an epoch: kept
		"base-files_1%3a12.4+deb12u14_amd64.deb", // removed
		"curl_7.88_amd64.deb",                    // another build's: kept
		"lock",
	}
	for _, f := range files {
		writeFiles(t, dir, map[string]string{f: ""})
	}
	pruneArchives(dir, got)
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	wantLeft := []string{"base-files_1%3a12.4+deb12u15_amd64.deb", "curl_7.88_amd64.deb", "libc6_2.36-9+deb12u10_amd64.deb", "lock"}
	if !reflect.DeepEqual(left, wantLeft) {
		t.Errorf("after pruning: %v, want %v", left, wantLeft)
	}
}

func TestParseOSRelease(t *testing.T) {
	got := parseOSRelease([]byte(`PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION_CODENAME=bookworm
ID=debian
# ID=ubuntu
`))
	want := OSRelease{ID: "debian", VersionID: "12", Codename: "bookworm", PrettyName: "Debian GNU/Linux 12 (bookworm)"}
	if got != want {
		t.Errorf("parseOSRelease: %+v", got)
	}
}

func TestOptionsCheck(t *testing.T) {
	r, err := LookupRelease("debian-12")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LookupRelease("debian-13"); err == nil || !strings.Contains(err.Error(), "debian-12") {
		t.Errorf("LookupRelease of an unknown release: %v, want the known ones named", err)
	}
	c := cache.New(t.TempDir())
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Release: r, Cache: c}, ""},
		{Options{Release: r, Cache: c, DiskSize: 8 << 30, Packages: []string{"vim", "g++"}, Mirror: "https://m.example/debian"}, ""},
		{Options{Release: r, Cache: c, DiskSize: 512 << 20}, "between 1024 MiB and 64 TiB"},
		{Options{Release: r, Cache: c, DiskSize: 4<<30 + 1}, "not a whole number of MiB"},
		{Options{Release: r, Cache: c, Packages: []string{"vim; rm -rf /"}}, "not a Debian package name"},
		{Options{Release: r, Cache: c, Packages: []string{"-x"}}, "not a Debian package name"},
		{Options{Release: r, Cache: c, Mirror: "ftp://m.example/debian"}, "not an http:// or https:// URL"},
		{Options{Release: r, Cache: c, Mirror: "http://m.example/deb ian"}, "not an http:// or https:// URL"},
		{Options{Release: r}, "no package cache"},
	} {
		err := tc.o.check()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestNewUUID(t *testing.T) {
	a, err := newUUID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newUUID()
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if !re.MatchString(a) || a == b {
		t.Errorf("newUUID: %s, %s", a, b)
	}
}

// TestWriteOverlay: the guest's configuration files come out with the
// modes the guest wants whatever the umask, and include what the
// identity and network features rely on.
func TestWriteOverlay(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "overlay")
	if err := writeOverlay(dir); err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o644)
		if fi.IsDir() {
			want = 0o755
		} else {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, rel)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	for _, f := range []string{
		"etc/cloud/cloud.cfg.d/90_paddock.cfg",
		"etc/systemd/network/90-paddock-dhcp.network",
		"etc/systemd/system/paddock-ssh-hostkeys.service",
		"etc/systemd/system/paddock-identity.service",
		"usr/lib/paddock/identity",
	} {
		if !slices.Contains(files, f) {
			t.Errorf("overlay has no %s (has %v)", f, files)
		}
	}
	// The identity unit runs its script with sh (the overlay's files are
	// not executable), which must parse, and enables it.
	unit, _ := os.ReadFile(filepath.Join(dir, "etc/systemd/system/paddock-identity.service"))
	if !strings.Contains(string(unit), "ExecStart=/bin/sh /usr/lib/paddock/identity watch") {
		t.Errorf("paddock-identity.service:\n%s", unit)
	}
	if out, err := exec.Command("sh", "-n", filepath.Join(dir, "usr/lib/paddock/identity")).CombinedOutput(); err != nil {
		t.Errorf("usr/lib/paddock/identity does not parse: %v\n%s", err, out)
	}
	cfg, _ := os.ReadFile(filepath.Join(dir, "etc/cloud/cloud.cfg.d/90_paddock.cfg"))
	if !strings.Contains(string(cfg), "datasource_list: [ NoCloud, None ]") {
		t.Errorf("cloud-init's datasources:\n%s", cfg)
	}
}
