package vmm

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/imagefile"
	"github.com/paddock-vm/paddock/disk/qcow2"
	"github.com/paddock-vm/paddock/guest/console"
	"github.com/paddock-vm/paddock/internal/testguest"
)

// inherit plays exec for a table Handover made: each file gets a new
// descriptor of the same open file description, as a child process
// inherits it, and the table is renumbered to those descriptors; the
// files are closed, as the starting command closes its copies.
func inherit(t *testing.T, table FDTable, files []*os.File) FDTable {
	t.Helper()
	fds := make([]int, len(files))
	for i, f := range files {
		fd, err := unix.Dup(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
		f.Close()
	}
	re := func(n int) int {
		if n == 0 {
			return 0
		}
		return fds[n-FirstFD]
	}
	table.KVM, table.Kernel, table.Initrd = re(table.KVM), re(table.Kernel), re(table.Initrd)
	for i := range table.Disks {
		for j, n := range table.Disks[i].Files {
			table.Disks[i].Files[j] = re(n)
		}
	}
	for i := range table.NICs {
		table.NICs[i].Tap = re(table.NICs[i].Tap)
	}
	for i, n := range table.Networks {
		table.Networks[i] = re(n)
	}
	if w := table.Warm; w != nil {
		table.Warm = &FDWarm{Template: w.Template, State: re(w.State), Memory: re(w.Memory)}
	}
	for i, n := range table.ConsoleLog {
		table.ConsoleLog[i] = re(n)
	}
	return table
}

// chainVM is a VM of the counter guest with an initrd, a qcow2 overlay
// on a base, and a raw disk; the base's path is returned too.
func chainVM(t *testing.T) (*configs.VM, string) {
	t.Helper()
	testguest.RequireKVM(t)
	dir := t.TempDir()
	base, ov := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "ov.qcow2")
	if err := qcow2.Create(base, qcow2.CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := qcow2.Create(ov, qcow2.CreateOptions{BackingFile: "base.qcow2", BackingFormat: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd")
	if err := os.WriteFile(initrd, []byte("an initrd"), 0o644); err != nil {
		t.Fatal(err)
	}
	vm := &configs.VM{Name: "fd", Kernel: testguest.Build(t, "counter"), Initrd: initrd, Memory: 64 * configs.MiB,
		Disks: []configs.Disk{{Path: ov, Format: disk.FormatQcow2}, {Path: rawDisk(t, dir, "raw.img")}}}
	vm.FillDefaults()
	if err := vm.ValidateStructure(); err != nil {
		t.Fatal(err)
	}
	return vm, base
}

// TestHandoverThroughFDs hands a VM's handles over as a starting command
// does and takes them back as the VMM does: the table names every file
// once, the handles fit the spec and boot it, the images stay locked
// although the opener closed its descriptors, and Close releases them.
func TestHandoverThroughFDs(t *testing.T) {
	vm, base := chainVM(t)
	vm.Console.Log = filepath.Join(t.TempDir(), "console.log")
	h := openHandles(t, vm, OpenOptions{})
	var err error
	lim := console.Limits{Size: int64(vm.Console.LogSize), Keep: vm.Console.LogKeep}
	if h.ConsoleLog, err = console.OpenLogFiles(vm.Console.Log, lim, ConsoleLogPerm); err != nil {
		t.Fatal(err)
	}
	table, files, err := h.Handover()
	if err != nil {
		t.Fatal(err)
	}
	// kvm, kernel, initrd, overlay and base, raw, the console log and
	// its rotated file
	if len(files) != 8 || table.KVM != FirstFD || table.Kernel != FirstFD+1 || table.Initrd != FirstFD+2 ||
		len(table.Disks) != 2 || len(table.Disks[0].Files) != 2 || table.Disks[0].Format != "qcow2" || !table.Disks[1].Guard ||
		len(table.ConsoleLog) != 2 || table.ConsoleLog[0] != FirstFD+6 {
		t.Fatalf("table %s for %d files", table.Encode(), len(files))
	}
	if h.KVM != nil || h.Kernel != nil || len(h.Disks) != 0 || h.ConsoleLog != nil {
		t.Errorf("the handles kept something after Handover: %+v", h)
	}
	s := inherit(t, table, files).Encode()
	got, err := handlesFromFDs(s, 3, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if _, err := machineConfig(vm, got); err != nil {
		t.Fatal(err)
	}
	if err := got.fit(vm); err != nil || len(got.ConsoleLog) != 2 {
		t.Fatalf("the handles taken back: %d console log files, %v", len(got.ConsoleLog), err)
	}
	// The VMM writes the log through them.
	sinks, closeLogs, err := OpenConsoleLogs(vm, "", got.ConsoleLog, nil)
	if err != nil {
		t.Fatal(err)
	}
	got.ConsoleLog = nil
	sinks[0].Write([]byte("through the handed file\n"))
	closeLogs()
	if b, err := os.ReadFile(vm.Console.Log); err != nil || string(b) != "through the handed file\n" {
		t.Errorf("console.log: %q, %v", b, err)
	}
	for _, p := range []string{vm.Disks[0].Path, base, vm.Disks[1].Path} {
		if err := imagefile.Check(p, imagefile.Write); !errors.Is(err, imagefile.ErrInUse) {
			t.Errorf("%s after the handover: %v, want it locked", p, err)
		}
	}
	s2 := NewSession(vm, Options{Handles: got})
	if err := s2.Boot(); err != nil {
		t.Fatal(err)
	}
	s2.Kill()
	if err := got.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{vm.Disks[0].Path, base, vm.Disks[1].Path} {
		if err := imagefile.Check(p, imagefile.Write); err != nil {
			t.Errorf("%s after Close: %v", p, err)
		}
	}
}

// TestHandoverWarm: a warm clone's template files go over with the
// handles (the same open files, the table naming them), and the VMM
// takes them for its restore: a state file that is not one is refused,
// naming the template, and the handles keep no file of it.
func TestHandoverWarm(t *testing.T) {
	vm, _ := chainVM(t)
	h := openHandles(t, vm, OpenOptions{})
	dir := t.TempDir()
	var wf [2]*os.File
	for i, name := range []string{"state", "memory"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("not a "+name), 0o400); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		wf[i] = f
	}
	h.Warm = &WarmFiles{Template: "tpl", State: wf[0], Memory: wf[1]}
	table, files, err := h.Handover()
	if err != nil {
		t.Fatal(err)
	}
	if w := table.Warm; w == nil || w.Template != "tpl" || w.State != FirstFD+len(files)-2 || w.Memory != FirstFD+len(files)-1 || h.Warm != nil {
		t.Fatalf("table %s for %d files; handles' warm %+v", table.Encode(), len(files), h.Warm)
	}
	got, err := handlesFromFDs(inherit(t, table, files).Encode(), 3, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Warm == nil || got.Warm.Template != "tpl" {
		t.Fatalf("the VMM's handles: warm %+v", got.Warm)
	}
	b := make([]byte, 16)
	n, _ := got.Warm.Memory.ReadAt(b, 0)
	if string(b[:n]) != "not a memory" {
		t.Errorf("warm.memory reads %q", b[:n])
	}
	_, err = got.takeWarm()
	if err == nil || !strings.HasPrefix(err.Error(), "template tpl: snapshot: warm.state (descriptor ") {
		t.Errorf("takeWarm of a state file that is not one: %v", err)
	}
	if got.Warm != nil {
		t.Errorf("the handles keep the warm files after takeWarm")
	}
	if _, err := got.takeWarm(); err == nil || !strings.Contains(err.Error(), "were not handed over") {
		t.Errorf("a second takeWarm: %v", err)
	}
}

// TestHandlesFromFDsRefuses gives the VMM tables it cannot use: each is
// one *FDTableError saying what is wrong, and once the numbers are
// checked every descriptor the table names is closed.
func TestHandlesFromFDsRefuses(t *testing.T) {
	vm, _ := chainVM(t)
	open := func(p string) int {
		fd, err := unix.Open(p, unix.O_RDONLY, 0) // as inherited: no close-on-exec
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	// good hands over vm's handles and renumbers them as inherited; all
	// collects every descriptor a case makes, to close what the table it
	// ends with does not name.
	var all []int
	good := func() FDTable {
		h := openHandles(t, vm, OpenOptions{})
		table, files, err := h.Handover()
		if err != nil {
			t.Fatal(err)
		}
		tb := inherit(t, table, files)
		all = append(all, tableFDs(tb)...)
		return tb
	}
	open0 := open
	open = func(p string) int {
		fd := open0(p)
		all = append(all, fd)
		return fd
	}
	for _, tc := range []struct {
		name  string
		table func() FDTable
		want  string
		// raw is the table's text, when it is not an FDTable's.
		raw    string
		checks bool // the numbers pass: the descriptors are closed
	}{
		{name: "empty", raw: "", want: "it is empty"},
		{name: "garbled", raw: `{"version":1,"kvm":`, want: "it is not a table"},
		{name: "not JSON", raw: "kvm=4", want: "it is not a table"},
		{name: "unknown field", raw: `{"version":1,"vcpus":4}`, want: `unknown field "vcpus"`},
		{name: "more after it", raw: `{"version":1} {}`, want: "it has more after the table"},
		{name: "too long", raw: strings.Repeat(" ", MaxFDTableLen+1), want: "bytes long, at most"},
		{name: "other version", raw: `{"version":2}`, want: "format version 2; this paddock reads version 1"},
		{name: "standard stream", raw: `{"version":1,"kvm":2,"kernel":5}`, want: "kvm: descriptor 2 is outside"},
		{name: "negative", raw: `{"version":1,"kvm":-4,"kernel":5}`, want: "kvm: descriptor -4 is outside"},
		{name: "not open", raw: `{"version":1,"kvm":900000,"kernel":900001}`, want: "kvm: descriptor 900000 is not open"},
		{name: "not handed over", table: func() FDTable {
			tb := good()
			fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, fd)
			tb.Kernel = fd
			return tb
		}, want: "was not handed over (this process opened it)"},
		{name: "used twice", table: func() FDTable {
			tb := good()
			tb.Kernel = tb.KVM
			return tb
		}, want: "kernel: descriptor"},
		{name: "kvm is a file", table: func() FDTable {
			tb := good()
			tb.KVM = open(vm.Kernel)
			return tb
		}, want: "kvm: kvm: KVM_GET_API_VERSION (descriptor", checks: true},
		{name: "kernel is a directory", table: func() FDTable {
			tb := good()
			tb.Kernel = open(t.TempDir())
			return tb
		}, want: "is not a regular file", checks: true},
		{name: "console log without its rotated file", table: func() FDTable {
			tb := good()
			tb.ConsoleLog = []int{open(vm.Kernel)}
			return tb
		}, want: "console_log: the log without its rotated files"},
		{name: "console log is a directory", table: func() FDTable {
			tb := good()
			tb.ConsoleLog = []int{open(vm.Kernel), open(t.TempDir())}
			return tb
		}, want: "console_log[1]: descriptor", checks: true},
		{name: "unknown format", table: func() FDTable {
			tb := good()
			tb.Disks[1].Format = "vmdk"
			return tb
		}, want: `disks[1]: format "vmdk" (raw or qcow2)`},
		{name: "chain short", table: func() FDTable {
			tb := good()
			all = append(all, tb.Disks[0].Files[1])
			tb.Disks[0].Files = tb.Disks[0].Files[:1]
			return tb
		}, want: `names the backing file "base.qcow2", but no file was handed over for it`, checks: true},
		{name: "bad MAC", table: func() FDTable {
			tb := good()
			tb.NICs = []FDNIC{{Tap: open(os.DevNull), MAC: "01:00:00:00:00:01"}}
			return tb
		}, want: "nics[0]: MAC address 01:00:00:00:00:01 is a multicast address", checks: true},
		{name: "warm memory is a directory", table: func() FDTable {
			tb := good()
			tb.Warm = &FDWarm{Template: "tpl", State: open(vm.Kernel), Memory: open(t.TempDir())}
			return tb
		}, want: "warm.memory: descriptor", checks: true},
		{name: "warm without a template", table: func() FDTable {
			tb := good()
			tb.Warm = &FDWarm{State: open(vm.Kernel), Memory: open(vm.Kernel)}
			return tb
		}, want: "warm: no template"},
		{name: "tap is not one", table: func() FDTable {
			tb := good()
			tb.NICs = []FDNIC{{Tap: open(os.DevNull), MAC: "02:00:00:00:00:01"}}
			return tb
		}, want: "is not a tap device", checks: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all = nil
			s, named := tc.raw, []int(nil)
			if tc.table != nil {
				tb := tc.table()
				s, named = tb.Encode(), tableFDs(tb)
			}
			h, err := handlesFromFDs(s, 3, 1<<20)
			if err == nil {
				h.Close()
				t.Fatal("took the table")
			}
			var fe *FDTableError
			if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), "vmm: the descriptor table in "+FDTableEnv+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v\nwant an FDTableError saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("more than one line: %q", err)
			}
			for _, fd := range named {
				_, ferr := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
				if tc.checks && !errors.Is(ferr, unix.EBADF) {
					t.Errorf("descriptor %d of the refused table is still open", fd)
				}
			}
			// What the refusal left open is the test's to close: the
			// descriptors the table did not name, or all when its
			// numbers did not pass.
			for _, fd := range all {
				if !tc.checks || !slices.Contains(named, fd) {
					unix.Close(fd)
				}
			}
		})
	}
}

// tableFDs is every descriptor table names.
func tableFDs(table FDTable) []int {
	fds := []int{table.KVM, table.Kernel}
	if table.Initrd != 0 {
		fds = append(fds, table.Initrd)
	}
	for _, d := range table.Disks {
		fds = append(fds, d.Files...)
	}
	for _, n := range table.NICs {
		fds = append(fds, n.Tap)
	}
	if w := table.Warm; w != nil {
		fds = append(fds, w.State, w.Memory)
	}
	fds = append(fds, table.Networks...)
	return append(fds, table.ConsoleLog...)
}
