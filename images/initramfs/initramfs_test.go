package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/images/cpio"
	"github.com/paddock-vm/paddock/images/debian"
	"github.com/paddock-vm/paddock/images/internal/elftest"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// entry is what the tests look at in a built image.
type entry struct {
	hdr  cpio.Header
	data []byte
}

func readImage(t *testing.T, r io.Reader) (map[string]entry, []string) {
	t.Helper()
	entries, err := cpio.ReadAll(r, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]entry{}
	var order []string
	for _, e := range entries {
		if _, dup := got[e.Name]; dup {
			t.Errorf("%s appears twice", e.Name)
		}
		got[e.Name] = entry{e.Header, e.Data}
		order = append(order, e.Name)
	}
	return got, order
}

func hostBusybox(t *testing.T) string {
	t.Helper()
	testenv.Declare(t, testenv.Oracle)
	if err := debian.CheckStatic(debian.HostBusybox); err != nil {
		testenv.Unavailable(t, "static busybox is not installed (Debian package busybox-static): %v", err)
	}
	return debian.HostBusybox
}

// moduleTree writes fake modules a (no deps) and b (depends on a).
func moduleTree(t *testing.T) string {
	dir := t.TempDir()
	for rel, info := range map[string][]string{
		"kernel/x/a.ko":   {"depends=", "name=a"},
		"kernel/y/b-b.ko": {"depends=a", "name=b_b"},
	} {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, elftest.Module(info...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestWrite(t *testing.T) {
	bb := hostBusybox(t)
	src := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(src, []byte("from the host"), 0o750); err != nil {
		t.Fatal(err)
	}
	spec := Spec{
		Busybox: bb,
		Modules: &Modules{Dir: moduleTree(t), Release: "6.1.0-test", Paths: []string{"kernel/x/a.ko", "kernel/y/b-b.ko"}},
		Init:    "#!/bin/sh\necho hello\n",
		Files: []File{
			{Path: "/etc/motd", Data: []byte("hi\n")},
			{Path: "deep/er/dir/file", Source: src},
			{Path: "guest", Mode: fs.ModeDir | 0o700},
			{Path: "guest/link", Target: "../etc/motd"},
			{Path: "opt/run.sh", Mode: 0o755, Data: []byte("#!/bin/sh\n")},
		},
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, spec); err != nil {
		t.Fatal(err)
	}
	img, order := readImage(t, bytes.NewReader(buf.Bytes()))

	check := func(name string, mode fs.FileMode, data string) {
		t.Helper()
		e, ok := img[name]
		if !ok {
			t.Errorf("%s missing", name)
			return
		}
		if e.hdr.Mode != mode {
			t.Errorf("%s: mode %v, want %v", name, e.hdr.Mode, mode)
		}
		if mode.Type() == 0 && string(e.data) != data {
			t.Errorf("%s: %d bytes of data differ from the %d expected", name, len(e.data), len(data))
		}
	}
	check("init", 0o755, spec.Init)
	check("etc/motd", 0o644, "hi\n")
	check("deep/er/dir/file", 0o750, "from the host")
	check("deep/er", fs.ModeDir|0o755, "")
	check("guest", fs.ModeDir|0o700, "")
	check("opt/run.sh", 0o755, "#!/bin/sh\n")
	check("tmp", fs.ModeDir|fs.ModeSticky|0o777, "")
	check("proc", fs.ModeDir|0o755, "")
	bbData, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	check("bin/busybox", 0o755, string(bbData))
	check("lib/modules/6.1.0-test/paddock.load", 0o644, "kernel/x/a.ko\nkernel/y/b-b.ko\n")
	if c := img["dev/console"].hdr; c.Mode != fs.ModeDevice|fs.ModeCharDevice|0o600 || c.RdevMajor != 5 || c.RdevMinor != 1 {
		t.Errorf("dev/console: %+v, want a 5:1 character device", c)
	}
	if l := img["guest/link"].hdr; l.Linkname != "../etc/motd" {
		t.Errorf("guest/link -> %q", l.Linkname)
	}
	for _, applet := range RequiredApplets {
		found := false
		for _, dir := range []string{"bin/", "sbin/", "usr/bin/", "usr/sbin/"} {
			if e, ok := img[dir+applet]; ok && e.hdr.Linkname == "/bin/busybox" {
				found = true
			}
		}
		if !found {
			t.Errorf("applet %s has no link to /bin/busybox", applet)
		}
	}
	// Every entry's parent directory comes before it.
	pos := map[string]int{}
	for i, n := range order {
		pos[n] = i
	}
	for i, n := range order {
		if d := filepath.Dir(n); d != "." {
			if j, ok := pos[d]; !ok || j > i {
				t.Errorf("%s comes before its directory %s", n, d)
			}
		}
	}

	// Same spec, same bytes; the digest is stable and tracks content.
	var again bytes.Buffer
	if err := Write(context.Background(), &again, spec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two builds of the same spec differ")
	}
	d1, err := spec.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := spec.Digest()
	os.WriteFile(src, []byte("changed"), 0o750)
	d3, _ := spec.Digest()
	if d1 != d2 || d1 == d3 {
		t.Errorf("digests %s %s %s: want the first two equal and the third different", d1, d2, d3)
	}
}

func TestWriteFileGzipAndCpioOracle(t *testing.T) {
	spec := Spec{Init: "#!/bin/sh\n", Files: []File{{Path: "a/b", Data: []byte("x")}}}
	p := filepath.Join(t.TempDir(), "initrd.img")
	if err := WriteFile(context.Background(), p, spec, true); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s is not gzip: %v", p, err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := readImage(t, bytes.NewReader(plain))
	if string(img["a/b"].data) != "x" || img["init"].hdr.Mode != 0o755 {
		t.Errorf("image content: %+v", img)
	}
	testenv.RequireTool(t, "cpio", "cpio")
	cmd := exec.Command("cpio", "-it", "--quiet")
	cmd.Stdin = bytes.NewReader(plain)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -it: %v", err)
	}
	for _, want := range []string{"init", "dev/console", "a/b", "tmp"} {
		if !strings.Contains("\n"+string(out), "\n"+want+"\n") {
			t.Errorf("cpio -it does not list %s:\n%s", want, out)
		}
	}
}

func TestOverlay(t *testing.T) {
	var buf bytes.Buffer
	spec := Spec{Overlay: true, Files: []File{{Path: "usr/bin/tool", Mode: 0o755, Data: []byte("x")}}}
	if err := Write(context.Background(), &buf, spec); err != nil {
		t.Fatal(err)
	}
	img, order := readImage(t, &buf)
	if got := strings.Join(order, " "); got != "usr usr/bin usr/bin/tool" {
		t.Errorf("overlay entries %q, want only the file and its directories", got)
	}
	if img["usr/bin/tool"].hdr.Mode != 0o755 {
		t.Errorf("mode %v", img["usr/bin/tool"].hdr.Mode)
	}
	full, _ := Spec{Files: spec.Files}.Digest()
	over, _ := spec.Digest()
	if full == over {
		t.Error("Overlay does not change the digest")
	}
}

func TestWriteErrors(t *testing.T) {
	fakeBusybox := filepath.Join(t.TempDir(), "busybox")
	os.WriteFile(fakeBusybox, []byte("#!/bin/sh\necho bin/sh sbin/insmod\n"), 0o755)
	mods := moduleTree(t)
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"no init", Spec{Files: []File{{Path: "x"}}}, "no /init"},
		{"duplicate", Spec{Init: "x", Files: []File{{Path: "a"}, {Path: "/a"}}}, "a is added twice"},
		{"skeleton duplicate", Spec{Init: "x", Files: []File{{Path: "dev/console"}}}, "added twice"},
		{"dotdot", Spec{Init: "x", Files: []File{{Path: "a/../../etc"}}}, "invalid path"},
		{"missing source", Spec{Init: "x", Files: []File{{Path: "a", Source: "/nonexistent/file"}}}, "/nonexistent/file"},
		{"directory source", Spec{Init: "x", Files: []File{{Path: "a", Source: t.TempDir()}}}, "not a regular file"},
		{"busybox lacking applets", Spec{Init: "x", Busybox: fakeBusybox}, "lacks applets"},
		{"module order", Spec{Init: "x", Modules: &Modules{Dir: mods, Release: "r", Paths: []string{"kernel/y/b-b.ko", "kernel/x/a.ko"}}}, "b_b depends on a, which comes after it"},
		{"module dependency missing", Spec{Init: "x", Modules: &Modules{Dir: mods, Release: "r", Paths: []string{"kernel/y/b-b.ko"}}}, "not in the list"},
		{"module missing", Spec{Init: "x", Modules: &Modules{Dir: mods, Release: "r", Paths: []string{"kernel/z.ko"}}}, "z.ko"},
		{"bad release", Spec{Init: "x", Modules: &Modules{Dir: mods, Release: "../r"}}, "invalid module release"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(context.Background(), io.Discard, tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestListApplets(t *testing.T) {
	bb := hostBusybox(t)
	list, err := ListApplets(context.Background(), bb)
	if err != nil {
		t.Fatal(err)
	}
	joined := " " + strings.Join(list, " ") + " "
	for _, want := range []string{" bin/sh ", " sbin/insmod "} {
		if !strings.Contains(joined, want) {
			t.Errorf("applets lack %q", want)
		}
	}
}
