package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/internal/testenv"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// envRunMain makes the test binary run paddock's main instead of the
// tests, for tests that need paddock in a process of its own (as
// another user, say).
const envRunMain = "PADDOCK_CMD_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// binaryForAll copies the test binary into a new directory every user
// may enter and returns its path: it runs paddock's main with envRunMain
// set, as any user.
func binaryForAll(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // t.TempDir makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "paddock")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// makeTemplate makes the template called name in the state directory
// $PADDOCK_HOME: a small PVH guest as its kernel and a 64 MiB qcow2 base
// disk.
func makeTemplate(t *testing.T, name string) {
	t.Helper()
	s, err := store.Open(os.Getenv(store.EnvHome))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.NewTemplate(name)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Abort()
	testguest.PVHStub(t, st.Dir, "vmlinuz")
	if err := os.Mkdir(st.Path("disks"), 0o700); err != nil {
		t.Fatal(err)
	}
	img, err := disk.Create(st.Path("disks/root.qcow2"), disk.CreateOptions{Size: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	_, err = st.Commit(store.TemplateMeta{
		Origin:  store.TemplateOrigin{Kind: store.OriginBuild, Builder: "test"},
		OS:      store.TemplateOS{PrettyName: "Tiny 1"},
		Kernel:  store.TemplateKernel{TemplateFile: store.TemplateFile{File: "vmlinuz"}, Release: "0.1"},
		Cmdline: "console=ttyS0",
		Disks:   []store.TemplateDisk{{TemplateFile: store.TemplateFile{File: "disks/root.qcow2"}, Format: "qcow2", VirtualSize: 64 << 20}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

// TestTemplateCommands: template ls, inspect and rm, a VM made from a
// template with create, and the exit statuses docs/cli.md gives them.
func TestTemplateCommands(t *testing.T) {
	t.Setenv(store.EnvHome, t.TempDir())
	if out, _, status := runPaddock(t, "", "template", "ls", "--json"); status != 0 || out != "[]\n" {
		t.Errorf("template ls --json with no templates: %d %q", status, out)
	}
	makeTemplate(t, "tiny")
	out, _, status := runPaddock(t, "", "template", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if status != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME  OS      KERNEL  SIZE") ||
		!strings.HasPrefix(lines[1], "tiny  Tiny 1  0.1     ") || !strings.HasSuffix(lines[1], "  0") {
		t.Errorf("template ls: %d\n%s", status, out)
	}
	if out, _, _ := runPaddock(t, "", "template", "ls", "-q"); out != "tiny\n" {
		t.Errorf("template ls -q: %q", out)
	}
	var row templateRow
	out, _, status = runPaddock(t, "", "template", "inspect", "--verify", "tiny")
	if err := json.Unmarshal([]byte(out), &row); err != nil || status != 0 {
		t.Fatalf("template inspect: %d %v\n%s", status, err, out)
	}
	if row.Name != "tiny" || row.Meta == nil || row.Meta.Disks[0].VirtualSize != 64<<20 || !row.Verified || len(row.VMs) != 0 {
		t.Errorf("template inspect: %+v", row)
	}
	for _, tc := range []struct {
		args   []string
		status int
		stderr string
	}{
		{[]string{"template", "inspect", "tinny"}, 3, "paddock: no template named 'tinny'; did you mean 'tiny'?\n"},
		{[]string{"template", "rm", "nosuch"}, 3, "paddock: no template named 'nosuch' (paddock template ls lists them; paddock template build debian-12 makes one)\n"},
		{[]string{"template", "rm"}, 2, ""},
		{[]string{"template", "inspect"}, 2, ""},
		{[]string{"template", "build"}, 2, ""},
		{[]string{"template", "build", "debian-11"}, 2, "paddock: paddock does not build \"debian-11\"; it builds debian-12\n"},
		{[]string{"template", "build", "debian-12", "--disk-size", "512M"}, 2, "paddock: --disk-size 512M: the root disk must be a whole number of MiB from 1GiB to 64TiB\n"},
		{[]string{"template", "build", "debian-12", "--disk-size", "lots"}, 2, ""},
		{[]string{"template", "build", "debian-12", "--name", "Web_1"}, 2, ""},
		{[]string{"template", "bogus"}, 2, "paddock: unknown command \"bogus\" for \"paddock template\"; see paddock template --help\n"},
	} {
		_, stderr, status := runPaddock(t, "", tc.args...)
		if status != tc.status || tc.stderr != "" && stderr != tc.stderr {
			t.Errorf("paddock %s: status %d, stderr %q; want %d %q", strings.Join(tc.args, " "), status, stderr, tc.status, tc.stderr)
		}
	}

	dir := t.TempDir()
	for name, yaml := range map[string]string{
		"web.yaml":  "name: web\nfrom: tiny\nroot_size: 128MiB\nconsole: log\n",
		"typo.yaml": "name: typo\nfrom: tinyy\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, stderr, status := runPaddock(t, "", "validate", "-f", filepath.Join(dir, "typo.yaml")); status != 1 ||
		stderr != filepath.Join(dir, "typo.yaml")+":2:7: from: no template named \"tinyy\"; did you mean \"tiny\"? (paddock template ls lists them)\n" {
		t.Errorf("validate of a typo: %d %q", status, stderr)
	}
	if _, stderr, status := runPaddock(t, "", "create", "-f", filepath.Join(dir, "web.yaml")); status != 0 {
		t.Fatalf("create from a template: %d %s", status, stderr)
	}
	_, stderr, status := runPaddock(t, "", "template", "rm", "tiny")
	if status != 4 || stderr != "paddock: cannot remove template 'tiny': VM web uses it (their disks are overlays on its disks); remove them first (paddock rm web)\n" {
		t.Errorf("template rm while a VM uses it: %d %q", status, stderr)
	}
	if out, _, _ := runPaddock(t, "", "template", "inspect", "tiny"); !strings.Contains(out, `"vms": [
    "web"
  ]`) {
		t.Errorf("template inspect does not name the VM:\n%s", out)
	}
	if _, stderr, status := runPaddock(t, "", "rm", "web"); status != 0 {
		t.Fatalf("rm: %d %s", status, stderr)
	}
	if out, stderr, status := runPaddock(t, "", "template", "rm", "tiny"); status != 0 || out != "tiny: removed\n" {
		t.Errorf("template rm: %d %q %q", status, out, stderr)
	}
	if out, _, _ := runPaddock(t, "", "template", "ls", "-q"); out != "" {
		t.Errorf("template ls after rm: %q", out)
	}
}

// TestTemplateBuildExists: a build of a name that exists stops before
// it starts (status 4), leaving the template alone.
func TestTemplateBuildExists(t *testing.T) {
	testenv.RequireRoot(t, "template build needs root")
	testenv.RequireTool(t, "debootstrap", "debootstrap")
	t.Setenv(store.EnvHome, t.TempDir())
	makeTemplate(t, "debian-12")
	_, stderr, status := runPaddock(t, "", "template", "build", "debian-12")
	if status != 4 || stderr != "paddock: a template named 'debian-12' exists already: remove it (paddock template rm debian-12) or pick another name (--name)\n" {
		t.Errorf("build over an existing template: %d %q", status, stderr)
	}
}

// TestTemplateBuildNotRoot runs paddock template build as another user:
// one sentence saying root is needed, status 1, and no state directory
// made.
func TestTemplateBuildNotRoot(t *testing.T) {
	testenv.RequireRoot(t, "running paddock as another user")
	const nobody = 65534
	bin := binaryForAll(t)
	dir := filepath.Dir(bin)
	home := filepath.Join(dir, "home")
	cmd := exec.Command(bin, "template", "build", "debian-12")
	cmd.Env = append(os.Environ(), envRunMain+"=1", store.EnvHome+"="+home, "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 ||
		string(out) != "paddock: template build: building a template needs root: debootstrap and apt-get install packages as root into the new file system and chroot into it; run it as root (sudo)\n" {
		t.Errorf("template build as nobody: %v\n%s", err, out)
	}
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Errorf("a refused build made the state directory: %v", err)
	}
}

// TestTemplateBuildInterrupted starts paddock template build -v in a
// process of its own and sends it SIGINT once debootstrap has begun:
// it exits 130 saying nothing was kept, and leaves no template, no stage
// and no process behind.
func TestTemplateBuildInterrupted(t *testing.T) {
	testenv.RequireRoot(t, "template build needs root")
	testenv.RequireTool(t, "debootstrap", "debootstrap")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	cmd := exec.Command(exe, "template", "build", "-v", "debian-12")
	cmd.Env = append(os.Environ(), envRunMain+"=1", store.EnvHome+"="+home)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var tail []string
	for sc.Scan() {
		tail = append(tail, sc.Text())
		// debootstrap's own first lines: it runs, in the build's namespaces.
		if strings.HasPrefix(sc.Text(), "I: Retrieving") || strings.HasPrefix(sc.Text(), "I: Checking Release") {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		tail = append(tail, sc.Text())
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupt || len(tail) == 0 ||
		tail[len(tail)-1] != "paddock: template build interrupted (interrupt); nothing was kept" {
		t.Fatalf("template build after SIGINT: %v; its last lines:\n%s", err, strings.Join(tail[max(0, len(tail)-5):], "\n"))
	}
	ents, err := os.ReadDir(filepath.Join(home, "templates"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("an interrupted build left %v in templates/", ents)
	}
	if data, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(data), home) {
		t.Errorf("mounts under %s outlived the build", home)
	}
}
