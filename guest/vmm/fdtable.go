package vmm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/guest/network"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
	"github.com/paddock-vm/paddock/hypervisor/machine"
	"github.com/paddock-vm/paddock/netdev"
)

// The descriptor table: how the paddock command that starts a VMM hands
// it the VM's handles (docs/architecture.md, "Handles"). The command
// opens them (OpenVMHandles), passes each open file as an inherited
// descriptor, and describes which descriptor is what in a JSON document
// (FDTable) in the VMM's environment variable FDTableEnv. The VMM reads
// the table once at start (HandlesFromFDs), checks every number and every
// descriptor, and then needs no right to open any of those files.
const (
	// FDTableEnv is the environment variable that carries the table.
	FDTableEnv = "PADDOCK_VMM_FDS"
	// FDTableVersion is the table format this paddock writes and reads.
	FDTableVersion = 1
	// FirstFD is the lowest descriptor a table may name: 0-2 are the
	// standard streams, 3 the readiness pipe. The descriptors a table
	// names must be inherited: without the close-on-exec flag, which
	// every descriptor the VMM opens itself has.
	FirstFD = 4
	// MaxFDs bounds the descriptors a table may name: FirstFD to
	// FirstFD+MaxFDs-1.
	MaxFDs = 1024
	// MaxFDTableLen bounds the table's JSON, in bytes.
	MaxFDTableLen = 256 << 10
)

// FDTable says which inherited descriptor holds which of a VM's handles.
// Every number is a descriptor of the VMM, from FirstFD, each used once.
type FDTable struct {
	// Version is FDTableVersion.
	Version int `json:"version"`
	// KVM is the KVM device; Kernel and Initrd (0: none) the spec's
	// kernel and initrd files.
	KVM    int `json:"kvm"`
	Kernel int `json:"kernel"`
	Initrd int `json:"initrd,omitempty"`
	// Disks are the VM's disks in the spec's order, then its seed
	// volume; NICs its NICs in the spec's order.
	Disks []FDDisk `json:"disks"`
	NICs  []FDNIC  `json:"nics"`
	// Networks are the connections to the VM's managed networks' netds
	// (network.Attachment), held for the VMM's life.
	Networks []int `json:"networks,omitempty"`
	// ConsoleLog are the files of the spec's console.log (Handles.
	// ConsoleLog): the log, then each rotated file; none when the VMM
	// opens it by path.
	ConsoleLog []int `json:"console_log,omitempty"`
	// Warm, for a warm clone's first start, is its warm template's
	// saved machine (Handles.Warm).
	Warm *FDWarm `json:"warm,omitempty"`
}

// FDWarm is a warm template's saved machine in a descriptor table.
type FDWarm struct {
	// Template names the template in messages.
	Template string `json:"template"`
	// State and Memory are its state and memory files, open read-only.
	State  int `json:"state"`
	Memory int `json:"memory"`
}

// FDDisk is one disk image in a descriptor table.
type FDDisk struct {
	// Files are the image's file, then each backing file of its chain,
	// each opened and locked for the disk's access (disk.Handover).
	Files []int `json:"files"`
	// Path is the image's path, which names it in messages and must be
	// the spec's.
	Path string `json:"path"`
	// Format is raw or qcow2: the format the image was opened in.
	Format string `json:"format"`
	// ReadOnly: the files were opened and locked read-only.
	ReadOnly bool `json:"read_only,omitempty"`
	// Guard: the image is raw by detection (machine.Disk.GuardFormat).
	Guard bool `json:"guard,omitempty"`
}

// FDNIC is one NIC in a descriptor table.
type FDNIC struct {
	// Tap is the tap device; Created says the starting command created
	// it (it disappears with its last descriptor).
	Tap     int  `json:"tap"`
	Created bool `json:"created,omitempty"`
	// MAC is the guest's address.
	MAC string `json:"mac"`
}

// Handover ends the handles' use in this process, for a VMM to go on
// with them: it returns the files to pass it, at descriptors FirstFD,
// FirstFD+1, ... in order (exec.Cmd.ExtraFiles after the readiness pipe),
// and the table that says what they are. The handles are empty
// afterwards; the caller closes the files once the VMM has them (a plain
// Close, which keeps every lock, tap and network connection alive in the
// VMM's descriptors), or to give up.
func (h *Handles) Handover() (FDTable, []*os.File, error) {
	t := FDTable{Version: FDTableVersion}
	var files []*os.File
	add := func(f *os.File) int {
		files = append(files, f)
		return FirstFD + len(files) - 1
	}
	fail := func(err error) (FDTable, []*os.File, error) {
		closeFiles(files)
		h.Close()
		return FDTable{}, nil, err
	}
	t.KVM = add(os.NewFile(uintptr(h.KVM.Fd()), kvm.DefaultPath))
	h.KVM = nil // its descriptor is in files now
	t.Kernel = add(h.Kernel)
	h.Kernel = nil
	if h.Initrd != nil {
		t.Initrd = add(h.Initrd)
		h.Initrd = nil
	}
	for len(h.Disks) > 0 {
		d := h.Disks[0]
		chain, err := disk.Handover(d.Image)
		if err != nil {
			return fail(fmt.Errorf("vmm: hand over %s: %w", d.Path, err))
		}
		h.Disks = h.Disks[1:]
		caps := d.Image.Capabilities()
		fd := FDDisk{Path: d.Path, Format: caps.Format, ReadOnly: caps.ReadOnly, Guard: d.Guard}
		for _, f := range chain {
			fd.Files = append(fd.Files, add(f))
		}
		t.Disks = append(t.Disks, fd)
	}
	for len(h.NICs) > 0 {
		n := h.NICs[0]
		h.NICs = h.NICs[1:]
		t.NICs = append(t.NICs, FDNIC{Tap: add(n.Tap.File()), Created: n.Tap.Created(), MAC: n.MAC.String()})
	}
	if h.Network != nil {
		conns, err := h.Network.Handover()
		if err != nil {
			return fail(err)
		}
		h.Network = nil
		for _, f := range conns {
			t.Networks = append(t.Networks, add(f))
		}
	}
	if w := h.Warm; w != nil {
		h.Warm = nil
		t.Warm = &FDWarm{Template: w.Template, State: add(w.State), Memory: add(w.Memory)}
	}
	for len(h.ConsoleLog) > 0 {
		t.ConsoleLog = append(t.ConsoleLog, add(h.ConsoleLog[0]))
		h.ConsoleLog = h.ConsoleLog[1:]
	}
	h.ConsoleLog = nil
	if len(files) > MaxFDs {
		return fail(fmt.Errorf("vmm: %d descriptors to hand over, at most %d", len(files), MaxFDs))
	}
	return t, files, nil
}

// Encode returns the table as FDTableEnv carries it.
func (t FDTable) Encode() string {
	b, _ := json.Marshal(t) // plain data: cannot fail
	return string(b)
}

// closeFiles closes files.
func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// FDTableError is a descriptor table a VMM cannot use.
type FDTableError struct{ Err error }

func (e *FDTableError) Error() string {
	return "vmm: the descriptor table in " + FDTableEnv + ": " + e.Err.Error()
}

func (e *FDTableError) Unwrap() error { return e.Err }

// HandlesFromFDs makes the handles the table s describes (FDTable, as
// FDTableEnv carries it) of this process's inherited descriptors, which
// it takes over. It checks the table's version, every number (from
// FirstFD, below FirstFD+MaxFDs, each used once) and every descriptor (it
// is open, and holds what the table says: the KVM device, regular files,
// disk images whose chains match their headers, taps); any problem is
// one *FDTableError. Once the numbers are checked, a failure closes every
// descriptor the table names (before, it touches none: the VMM exits, and
// its descriptors go with it). It opens nothing by path.
func HandlesFromFDs(s string) (*Handles, error) {
	return handlesFromFDs(s, FirstFD, FirstFD+MaxFDs)
}

// handlesFromFDs is HandlesFromFDs with descriptors in [lo, hi).
func handlesFromFDs(s string, lo, hi int) (_ *Handles, err error) {
	t, err := decodeFDTable(s)
	if err != nil {
		return nil, &FDTableError{err}
	}
	fds, err := t.check(lo, hi)
	if err != nil {
		return nil, &FDTableError{err}
	}
	// Every descriptor is the table's from here on: those not yet made
	// into a handle are closed on failure, the handles with Close.
	left := map[int]bool{}
	for _, fd := range fds {
		left[fd] = true
		unix.CloseOnExec(fd)
	}
	take := func(fd int) int { delete(left, fd); return fd }
	h := &Handles{}
	defer func() {
		if err != nil {
			h.Close()
			for fd := range left {
				unix.Close(fd)
			}
			err = &FDTableError{err}
		}
	}()
	if h.KVM, err = kvm.NewSystem(take(t.KVM), fmt.Sprintf("descriptor %d", t.KVM)); err != nil {
		return nil, fmt.Errorf("kvm: %w", err)
	}
	if h.Kernel, err = regularFile(take(t.Kernel), "kernel"); err != nil {
		return nil, err
	}
	if t.Initrd != 0 {
		if h.Initrd, err = regularFile(take(t.Initrd), "initrd"); err != nil {
			return nil, err
		}
	}
	for i, d := range t.Disks {
		var files []*os.File
		for _, fd := range d.Files {
			files = append(files, os.NewFile(uintptr(take(fd)), d.Path))
		}
		img, err := disk.OpenFiles(files, disk.Options{Format: d.Format, ReadOnly: d.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("disks[%d]: %w", i, err)
		}
		h.Disks = append(h.Disks, Disk{Image: img, Path: d.Path, Guard: d.Guard})
	}
	for i, n := range t.NICs {
		mac, err := netdev.ParseMAC(n.MAC)
		if err == nil && (mac.Multicast() || mac == (netdev.MAC{})) {
			err = fmt.Errorf("MAC %s is not a unicast address", mac)
		}
		if err != nil {
			return nil, fmt.Errorf("nics[%d]: %w", i, err)
		}
		tap, err := netdev.TapFromFD(take(n.Tap), n.Created)
		if err != nil {
			return nil, fmt.Errorf("nics[%d]: %w", i, err)
		}
		h.NICs = append(h.NICs, machine.NIC{Tap: tap, MAC: mac})
	}
	if len(t.Networks) > 0 {
		var files []*os.File
		for _, fd := range t.Networks {
			files = append(files, os.NewFile(uintptr(take(fd)), fmt.Sprintf("descriptor %d", fd)))
		}
		if h.Network, err = network.Adopt(files); err != nil {
			return nil, err
		}
	}
	for i, fd := range t.ConsoleLog {
		f, err := regularFile(take(fd), fmt.Sprintf("console_log[%d]", i))
		if err != nil {
			return nil, err
		}
		h.ConsoleLog = append(h.ConsoleLog, f)
	}
	if w := t.Warm; w != nil {
		h.Warm = &WarmFiles{Template: w.Template}
		if h.Warm.State, err = regularFile(take(w.State), "warm.state"); err != nil {
			return nil, err
		}
		if h.Warm.Memory, err = regularFile(take(w.Memory), "warm.memory"); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// decodeFDTable decodes a table strictly: bounded, no unknown fields,
// nothing after it, this paddock's version.
func decodeFDTable(s string) (FDTable, error) {
	var t FDTable
	if s == "" {
		return t, errors.New("it is empty")
	}
	if len(s) > MaxFDTableLen {
		return t, fmt.Errorf("it is %d bytes long, at most %d", len(s), MaxFDTableLen)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return t, fmt.Errorf("it is not a table: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return t, errors.New("it has more after the table")
	}
	if t.Version != FDTableVersion {
		return t, fmt.Errorf("format version %d; this paddock reads version %d (the paddock that started the VMM is another version)", t.Version, FDTableVersion)
	}
	return t, nil
}

// check checks every number of the table: in [lo, hi), each used once,
// each an open descriptor; the disks' formats and chains' lengths. It
// returns the numbers.
func (t FDTable) check(lo, hi int) ([]int, error) {
	var fds []int
	seen := map[int]string{}
	use := func(fd int, what string) error {
		if fd < lo || fd >= hi {
			return fmt.Errorf("%s: descriptor %d is outside %d-%d", what, fd, lo, hi-1)
		}
		if other, ok := seen[fd]; ok {
			return fmt.Errorf("%s: descriptor %d is %s already", what, fd, other)
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			return fmt.Errorf("%s: descriptor %d is not open (%w)", what, fd, err)
		}
		// An inherited descriptor has no close-on-exec flag; everything
		// this process opened has one (Go opens with O_CLOEXEC). A table
		// naming one of the process's own, such as the runtime's, must
		// not make the VMM take it over.
		if flags&unix.FD_CLOEXEC != 0 {
			return fmt.Errorf("%s: descriptor %d was not handed over (this process opened it)", what, fd)
		}
		seen[fd] = what
		fds = append(fds, fd)
		return nil
	}
	if err := use(t.KVM, "kvm"); err != nil {
		return nil, err
	}
	if err := use(t.Kernel, "kernel"); err != nil {
		return nil, err
	}
	if t.Initrd != 0 {
		if err := use(t.Initrd, "initrd"); err != nil {
			return nil, err
		}
	}
	for i, d := range t.Disks {
		what := fmt.Sprintf("disks[%d]", i)
		switch {
		case len(d.Files) == 0:
			return nil, fmt.Errorf("%s: no files", what)
		case d.Path == "":
			return nil, fmt.Errorf("%s: no path", what)
		case d.Format != disk.FormatRaw && d.Format != disk.FormatQcow2:
			return nil, fmt.Errorf("%s: format %q (raw or qcow2)", what, d.Format)
		}
		for j, fd := range d.Files {
			if err := use(fd, fmt.Sprintf("%s.files[%d]", what, j)); err != nil {
				return nil, err
			}
		}
	}
	for i, n := range t.NICs {
		if err := use(n.Tap, fmt.Sprintf("nics[%d].tap", i)); err != nil {
			return nil, err
		}
	}
	for i, fd := range t.Networks {
		if err := use(fd, fmt.Sprintf("networks[%d]", i)); err != nil {
			return nil, err
		}
	}
	if n := len(t.ConsoleLog); n == 1 {
		return nil, errors.New("console_log: the log without its rotated files")
	}
	for i, fd := range t.ConsoleLog {
		if err := use(fd, fmt.Sprintf("console_log[%d]", i)); err != nil {
			return nil, err
		}
	}
	if w := t.Warm; w != nil {
		if w.Template == "" {
			return nil, errors.New("warm: no template")
		}
		if err := use(w.State, "warm.state"); err != nil {
			return nil, err
		}
		if err := use(w.Memory, "warm.memory"); err != nil {
			return nil, err
		}
	}
	return fds, nil
}

// regularFile makes the file of fd, which must be a regular file (the
// kernel or initrd, named by what in errors).
func regularFile(fd int, what string) (*os.File, error) {
	f := os.NewFile(uintptr(fd), fmt.Sprintf("%s (descriptor %d)", what, fd))
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, fmt.Errorf("%s: descriptor %d is not a regular file", what, fd)
	}
	return f, nil
}
