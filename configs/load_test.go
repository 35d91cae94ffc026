package configs

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestFillDefaults(t *testing.T) {
	vm, err := Parse([]byte("name: tiny\nkernel: /boot/vmlinuz\n"), "/etc/paddock/tiny.yaml")
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	want := VM{
		Name:     "tiny",
		Tenant:   DefaultTenant,
		CPUs:     1,
		Memory:   512 * MiB,
		Kernel:   "/boot/vmlinuz",
		Cmdline:  "console=ttyS0",
		Console:  Console{Mode: ConsoleStdio, LogSize: DefaultConsoleLogSize, LogKeep: DefaultConsoleLogKeep},
		OnReboot: RebootExit,
		Restart:  RestartNo,
		Backend:  BackendNative,
		src:      vm.src,
	}
	if !reflect.DeepEqual(*vm, want) {
		t.Errorf("after FillDefaults:\n got %+v\nwant %+v", *vm, want)
	}
}

func TestFillDefaultsKeepsExplicitValues(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(*VM) bool
	}{
		{"cpus 0 stays for Validate", "cpus: 0", func(vm *VM) bool { return vm.CPUs == 0 }},
		{"memory 0 stays for Validate", "memory: 0", func(vm *VM) bool { return vm.Memory == 0 }},
		{"empty cmdline stays empty", `cmdline: ""`, func(vm *VM) bool { return vm.Cmdline == "" }},
		{"explicit cmdline", "cmdline: console=hvc0 quiet", func(vm *VM) bool { return vm.Cmdline == "console=hvc0 quiet" }},
		{"console shorthand", "console: log", func(vm *VM) bool {
			return vm.Console == Console{Mode: ConsoleLog, LogSize: DefaultConsoleLogSize, LogKeep: DefaultConsoleLogKeep}
		}},
		{"empty console mode stays for Validate", `console: ""`, func(vm *VM) bool { return vm.Console.Mode == "" }},
		{"console mapping without mode", "console: {log: /tmp/c.log}", func(vm *VM) bool {
			return vm.Console == Console{Mode: ConsoleStdio, Log: "/tmp/c.log", LogSize: DefaultConsoleLogSize, LogKeep: DefaultConsoleLogKeep}
		}},
		{"console log limits", "console: {log_size: 64KiB, log_keep: 3}", func(vm *VM) bool {
			return vm.Console.LogSize == 64*KiB && vm.Console.LogKeep == 3
		}},
		{"log_keep 0 stays for Validate", "console: {log_keep: 0}", func(vm *VM) bool { return vm.Console.LogKeep == 0 }},
		{"libvirt backend gets the local host", "backend: libvirt", func(vm *VM) bool {
			return vm.Libvirt.Host == LibvirtLocalHost && vm.Libvirt.URI == "" && vm.Libvirt.Type == LibvirtAuto
		}},
		{"native backend gets no host", "backend: native", func(vm *VM) bool { return vm.Libvirt == Libvirt{} }},
		{"explicit URI", "backend: libvirt\nlibvirt: {uri: 'test:///default'}", func(vm *VM) bool { return vm.Libvirt.URI == "test:///default" && vm.Libvirt.Host == "" }},
		{"explicit host and type", "backend: libvirt\nlibvirt: {host: lab1, type: qemu}", func(vm *VM) bool { return vm.Libvirt.Host == "lab1" && vm.Libvirt.Type == LibvirtQEMU }},
		{"restart", "on_reboot: restart", func(vm *VM) bool { return vm.OnReboot == RebootRestart }},
		{"restart policy", "restart: on-failure", func(vm *VM) bool { return vm.Restart == RestartOnFailure }},
		{"empty restart stays for Validate", `restart: ""`, func(vm *VM) bool { return vm.Restart == "" }},
		{"labels", "labels: {tier: web, n: 1}", func(vm *VM) bool { return len(vm.Labels) == 2 && vm.Labels["tier"] == "web" && vm.Labels["n"] == "1" }},
		{"null is unset", "cpus: ~\ncmdline:", func(vm *VM) bool { return vm.CPUs == 1 && vm.Cmdline == DefaultCmdline }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm, err := Parse([]byte("name: x\nkernel: /k\n"+tt.yaml+"\n"), "x.yaml")
			if err != nil {
				t.Fatal(err)
			}
			vm.FillDefaults()
			if !tt.check(vm) {
				t.Errorf("after FillDefaults: %+v", *vm)
			}
		})
	}
}

func TestPathResolution(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatalf("UserHomeDir: %v", err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, kernel, want string
	}{
		{"relative to the file", "/srv/vms/web.yaml", "vmlinuz", "/srv/vms/vmlinuz"},
		{"parent directories", "/srv/vms/web.yaml", "../../build/guest/vmlinuz", "/build/guest/vmlinuz"},
		{"dot segments cleaned", "/srv/vms/web.yaml", "./a/../b//vmlinuz", "/srv/vms/b/vmlinuz"},
		{"absolute kept", "/srv/vms/web.yaml", "/boot/vmlinuz", "/boot/vmlinuz"},
		{"home", "/srv/vms/web.yaml", "~/k/vmlinuz", filepath.Join(home, "k/vmlinuz")},
		{"home alone (quoted: a bare ~ is null)", "/srv/vms/web.yaml", "'~'", home},
		{"root's home", "/srv/vms/web.yaml", "~root/vmlinuz", "/root/vmlinuz"},
		{"tilde inside is literal", "/srv/vms/web.yaml", "a~/vmlinuz", "/srv/vms/a~/vmlinuz"},
		{"file in the current directory", "web.yaml", "vmlinuz", filepath.Join(cwd, "vmlinuz")},
		{"relative file", "sub/web.yaml", "vmlinuz", filepath.Join(cwd, "sub/vmlinuz")},
		{"no file name", "", "vmlinuz", filepath.Join(cwd, "vmlinuz")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := "name: x\nkernel: " + tt.kernel + "\ninitrd: " + tt.kernel + "\nconsole: {log: " + tt.kernel + "}\n"
			vm, err := Parse([]byte(data), tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if vm.Kernel != tt.want || vm.Initrd != tt.want || vm.Console.Log != tt.want {
				t.Errorf("kernel %q, initrd %q, console.log %q; want %q", vm.Kernel, vm.Initrd, vm.Console.Log, tt.want)
			}
		})
	}
	_, err = Parse([]byte("name: x\nkernel: ~no-such-user-here/vmlinuz\n"), "x.yaml")
	if err == nil || !strings.HasPrefix(err.Error(), `x.yaml:2:9: kernel: expand ~no-such-user-here in "~no-such-user-here/vmlinuz": `) {
		t.Errorf("unknown user: %v", err)
	}
}

func TestPosition(t *testing.T) {
	data := "# comment\nname: web\ncpus:   4\nkernel: /k\nconsole: log\nlibvirt:\n  uri: 'qemu:///system'\ncmdline: &c quiet\ninitrd:\n"
	vm, err := Parse([]byte(data), "web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	tests := []struct {
		field     string
		line, col int
	}{
		{"name", 2, 7},
		{"cpus", 3, 9},
		{"kernel", 4, 9},
		{"console", 5, 10},
		{"console.mode", 5, 10}, // the shorthand sets the mode
		{"libvirt", 7, 3},
		{"libvirt.uri", 7, 8},
		{"cmdline", 8, 10},
		{"memory", 0, 0},      // defaulted
		{"initrd", 0, 0},      // null: not set
		{"console.log", 0, 0}, // not set
		{"nonsense", 0, 0},
	}
	for _, tt := range tests {
		if line, col := vm.Position(tt.field); line != tt.line || col != tt.col {
			t.Errorf("Position(%q) = %d:%d, want %d:%d", tt.field, line, col, tt.line, tt.col)
		}
	}
	if line, col := (&VM{}).Position("name"); line != 0 || col != 0 {
		t.Errorf("Position on a Go-built VM = %d:%d, want 0:0", line, col)
	}
}

func TestErrorf(t *testing.T) {
	vm, err := Parse([]byte("\nname: web\nkernel: /boot/vmlinuz\nconsole:\n  mode: log\n"), "web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	inner := errors.New("no Linux boot header")
	tests := []struct {
		field string
		err   error
		want  string
	}{
		{"kernel", vm.Errorf("kernel", "%s is not a kernel: %w", vm.Kernel, inner),
			"web.yaml:3:9: kernel: /boot/vmlinuz is not a kernel: no Linux boot header"},
		{"console.log", vm.Errorf("console.log", "cannot create"), // unset: its parent's position
			"web.yaml:5:3: console.log: cannot create"},
		{"memory", vm.Errorf("memory", "too big for the memory layout"), // unset: the top-level mapping
			"web.yaml:2:1: memory: too big for the memory layout"},
		{"disks[1].path", vm.Errorf("disks[1].path", "no such disk"),
			"web.yaml:2:1: disks[1].path: no such disk"},
	}
	for _, tt := range tests {
		if tt.err.Error() != tt.want {
			t.Errorf("Errorf(%q) = %q, want %q", tt.field, tt.err, tt.want)
		}
	}
	if !errors.Is(tests[0].err, inner) {
		t.Errorf("Errorf does not wrap with %%w")
	}
	goVM := &VM{}
	if got, want := goVM.Errorf("cpus", "bad").Error(), "cpus: bad"; got != want {
		t.Errorf("Errorf on a Go-built VM = %q, want %q", got, want)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 4, Column: 7, Field: "cpus", Err: errors.New("bad")}, "a.yaml:4:7: cpus: bad"},
		{Error{File: "a.yaml", Line: 4, Err: errors.New("bad")}, "a.yaml:4: bad"},
		{Error{File: "a.yaml", Field: "cpus", Err: errors.New("bad")}, "a.yaml: cpus: bad"},
		{Error{Field: "cpus", Err: errors.New("bad")}, "cpus: bad"},
		{Error{Err: errors.New("bad")}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestProblems(t *testing.T) {
	a := &Error{Field: "a", Err: errors.New("x")}
	b := &Error{Field: "b", Err: errors.New("y")}
	plain := errors.New("plain")
	got := Problems(errors.Join(a, errors.Join(b, plain)))
	if len(got) != 3 || got[0] != a || got[1] != b || got[2].Err != plain {
		t.Errorf("Problems = %v", got)
	}
	if Problems(nil) != nil {
		t.Errorf("Problems(nil) != nil")
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	_, err := Load(missing)
	if err == nil || err.Error() != missing+": no such file or directory" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
	_, err = Load(dir)
	if err == nil || err.Error() != dir+": a directory, not a regular file" {
		t.Errorf("Load(dir) = %v", err)
	}
	// A FIFO is refused at once: opening it for reading would wait for a
	// writer, for ever.
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(fifo)
	if err == nil || err.Error() != fifo+": a named pipe, not a regular file" {
		t.Errorf("Load(fifo) = %v", err)
	}
	_, err = Load("/dev/zero")
	if err == nil || err.Error() != "/dev/zero: a character device, not a regular file" {
		t.Errorf("Load(/dev/zero) = %v", err)
	}
	big := bytes.Repeat([]byte("# padding\n"), MaxFileSize/10+1)
	_, err = Read(bytes.NewReader(big), "big.yaml")
	if err == nil || err.Error() != "big.yaml: larger than 1MiB: not a VM config" {
		t.Errorf("Read(big) = %v", err)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, data := range []string{"", "# only a comment\n", "---\n", "---\n...\n", "~\n"} {
		vm, err := Parse([]byte(data), "empty.yaml")
		if err != nil {
			t.Errorf("Parse(%q): %v", data, err)
			continue
		}
		vm.FillDefaults()
		want := "empty.yaml:1:1: name: must be set: a DNS label such as \"web-1\"\n" +
			"empty.yaml:1:1: kernel: must be set: the path of a Linux kernel (bzImage or ELF vmlinux), or from: a template"
		if err := vm.ValidateStructure(); err == nil || err.Error() != want {
			t.Errorf("Parse(%q) then Validate = %v, want:\n%s", data, err, want)
		}
	}
}

func TestAliases(t *testing.T) {
	data := "name: &n web\nkernel: /k\ncmdline: *n\nconsole: &c {mode: log}\n"
	vm, err := Parse([]byte(data), "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if vm.Cmdline != "web" || vm.Console.Mode != ConsoleLog {
		t.Errorf("aliases: cmdline %q, console %+v", vm.Cmdline, vm.Console)
	}
	if line, col := vm.Position("cmdline"); line != 3 || col != 10 {
		t.Errorf("alias position = %d:%d, want where it is used, 3:10", line, col)
	}
}

// TestMarshalRoundTrip checks that a loaded VM written back with the yaml
// package (as the guest store will, to vm.yaml) loads to the same VM.
func TestMarshalRoundTrip(t *testing.T) {
	data := "name: web\ncpus: 3\nmemory: 1.5GiB\nkernel: /k\ninitrd: /i\ncmdline: 'a: b # c'\nconsole: {mode: log, log: /var/log/web.log}\non_reboot: restart\nbackend: libvirt\nlibvirt: {uri: 'qemu+ssh://h/system'}\n"
	for _, in := range []string{data, "name: min\nkernel: /k\n"} {
		vm, err := Parse([]byte(in), "/x/web.yaml")
		if err != nil {
			t.Fatal(err)
		}
		vm.FillDefaults()
		out, err := yaml.Marshal(vm)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(out, "/elsewhere/web.yaml")
		if err != nil {
			t.Fatalf("Parse of marshalled VM:\n%s\n%v", out, err)
		}
		back.src, vm.src = nil, nil
		if !reflect.DeepEqual(back, vm) {
			t.Errorf("round trip:\n got %+v\nwant %+v\nYAML:\n%s", *back, *vm, out)
		}
	}
}

// BenchmarkLoadValidate measures the config's share of `paddock run`
// start-up: load, default and validate the hello example (whose kernel
// files are temp files here).
func BenchmarkLoadValidate(b *testing.B) {
	dir := b.TempDir()
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	data := "name: hello\ncpus: 2\nmemory: 512MiB\nkernel: vmlinuz\ninitrd: initrd.img\ncmdline: console=ttyS0\nconsole: stdio\non_reboot: exit\n"
	path := filepath.Join(dir, "hello.yaml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		vm, err := Load(path)
		if err != nil {
			b.Fatal(err)
		}
		vm.FillDefaults()
		if err := vm.Validate(Host{MemoryBytes: 1 << 34}); err != nil {
			b.Fatal(err)
		}
	}
}
