// Package boot loads a Linux x86-64 kernel into guest memory for a direct
// boot, without firmware: a bzImage through the 64-bit boot protocol
// (Documentation/arch/x86/boot.rst) or an ELF vmlinux through its PVH entry
// point (Xen's hvm_start_info, Linux arch/x86/platform/pvh). It writes the
// kernel, the initrd, the command line and the boot structures (zero page or
// start_info, GDT, page tables) and returns the boot vCPU's register state as
// plain data; the machine turns it into KVM state. The package never touches
// KVM itself.
//
// Kernel files are untrusted: every size and address read from them is
// checked against the file and against guest RAM before use.
package boot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Memory is guest-physical memory as the loader sees it.
type Memory interface {
	// Slice returns the host view of guest-physical [gpa, gpa+n); error if any part is not guest RAM.
	Slice(gpa, n uint64) ([]byte, error)
}

// Config says what to boot and describes the guest's physical memory.
type Config struct {
	KernelPath string // bzImage or ELF vmlinux with a PVH note; format detected from content, never the name
	InitrdPath string // optional
	// Kernel and Initrd, if set, are the kernel and initrd already open
	// (OpenKernel, OpenInitrd): Load reads them and never opens a path,
	// and KernelPath and InitrdPath (or else the files' names) only name
	// them in messages. Load leaves them open: they can boot again.
	Kernel, Initrd *os.File
	Cmdline        string      // kernel command line, without the terminating NUL
	E820           []E820Entry // the guest's physical memory map, supplied by the machine (RAM + reserved ranges)
	RSDP           uint64      // guest-physical address of the ACPI RSDP (0 = none)
}

// Protocol is the boot protocol a kernel was loaded with.
type Protocol int

// The supported boot protocols.
const (
	// ProtocolBzImage64 is the 64-bit boot protocol of a bzImage: long mode,
	// identity-mapped paging, RSI = zero page.
	ProtocolBzImage64 Protocol = iota + 1
	// ProtocolPVH is the PVH entry of an ELF vmlinux: 32-bit flat protected
	// mode, paging off, RBX = hvm_start_info.
	ProtocolPVH
)

// String names the protocol for logs.
func (p Protocol) String() string {
	switch p {
	case ProtocolBzImage64:
		return "bzImage (64-bit boot protocol)"
	case ProtocolPVH:
		return "PVH"
	}
	return fmt.Sprintf("Protocol(%d)", int(p))
}

// Segment is a segment register's hidden state, laid out the way KVM's
// struct kvm_segment wants it. Limit is the effective byte limit
// (0xFFFFFFFF for a flat 4 GiB segment): the GDT descriptor holds Limit>>12
// when G is set. Type is the 4-bit descriptor type. DPL reports a non-zero
// privilege level; every boot segment is ring 0, so it is always false.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  bool
	DPL      bool
	DB       bool
	S        bool
	L        bool
	G        bool
}

// Entry is the boot vCPU's initial state plus facts about the load.
// General-purpose registers not listed are zero.
type Entry struct {
	Protocol Protocol
	// Boot vCPU register state:
	RIP, RSP, RSI, RBX, RFLAGS uint64
	CR0, CR3, CR4, EFER        uint64
	GDTBase                    uint64
	GDTLimit                   uint16
	IDTBase                    uint64
	IDTLimit                   uint16
	CS, DS, TR                 Segment // DS is loaded into DS, ES, FS, GS and SS
	// Facts for logs and tests:
	KernelStart, KernelEnd, InitrdAddr, InitrdSize, CmdlineAddr, ParamsAddr uint64
}

// String summarises the load for logs: protocol, entry point and where
// the kernel, initrd and command line went.
func (e *Entry) String() string {
	s := fmt.Sprintf("%v: entry %#x, kernel %#x-%#x, cmdline at %#x, params at %#x",
		e.Protocol, e.RIP, e.KernelStart, e.KernelEnd-1, e.CmdlineAddr, e.ParamsAddr)
	if e.InitrdSize > 0 {
		s += fmt.Sprintf(", initrd %#x-%#x (%s)", e.InitrdAddr, e.InitrdAddr+e.InitrdSize-1, mibString(e.InitrdSize))
	}
	return s
}

// Control-register and EFER bits the loader sets.
const (
	cr0PE   = 1 << 0  // protected mode
	cr0ET   = 1 << 4  // extension type; hardwired to 1 on every x86-64 CPU
	cr0PG   = 1 << 31 // paging
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10
	rflags1 = 1 << 1 // reserved, always 1
)

// Load writes the kernel cfg.Kernel, or else the one named by
// cfg.KernelPath (and the initrd, command line and boot structures) into
// mem and returns the boot vCPU's state.
// The format is detected from the file's content: a bzImage header ("HdrS"
// at 0x202) or an ELF file with a PVH entry note. Errors name the file and
// the problem; nothing in a kernel or initrd file can make Load panic or
// allocate more than the file's own size.
func Load(mem Memory, cfg Config) (*Entry, error) {
	if cfg.Kernel == nil {
		f, err := OpenKernel(cfg.KernelPath)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cfg.Kernel = f
	}
	if cfg.KernelPath == "" {
		cfg.KernelPath = cfg.Kernel.Name()
	}
	if cfg.Initrd != nil && cfg.InitrdPath == "" {
		cfg.InitrdPath = cfg.Initrd.Name()
	}
	size, err := regularSize(cfg.Kernel)
	if err != nil {
		return nil, &KernelError{Path: cfg.KernelPath, Err: err}
	}
	return loadKernel(mem, cfg, cfg.Kernel, size)
}

// KernelError is a problem with a kernel file. It prints as
// "kernel PATH: problem"; a caller that names the file its own way takes
// Err.
type KernelError struct {
	Path string
	Err  error
}

func (e *KernelError) Error() string { return "kernel " + e.Path + ": " + e.Err.Error() }

// Unwrap returns the problem, so errors.Is(err, fs.ErrNotExist) works.
func (e *KernelError) Unwrap() error { return e.Err }

// OpenKernel opens the kernel file at path for Load (Config.Kernel). It
// refuses anything but a regular file, and never blocks: a FIFO is opened
// non-blocking and refused. Errors are *KernelError.
func OpenKernel(path string) (*os.File, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, &KernelError{Path: path, Err: err}
	}
	return f, nil
}

// OpenInitrd opens the initrd file at path for Load (Config.Initrd), as
// OpenKernel opens a kernel. Errors name the file as an initrd.
func OpenInitrd(path string) (*os.File, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, fmt.Errorf("initrd %s: %w", path, err)
	}
	return f, nil
}

// openRegular opens the regular file at path read-only and non-blocking
// (a FIFO cannot hang it); errors leave the path out, for the caller to
// name the file.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, err
	}
	if _, err := regularSize(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// regularSize returns the size of f, which must be a regular file; errors
// leave the file's name out.
func regularSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat: %w", errors.Unwrap(err))
	}
	if !st.Mode().IsRegular() {
		return 0, errors.New("not a regular file")
	}
	return st.Size(), nil
}

// loadKernel is Load on an open kernel image of the given size.
func loadKernel(mem Memory, cfg Config, kernel io.ReaderAt, size int64) (*Entry, error) {
	l, err := newLoader(mem, cfg)
	if err != nil {
		return nil, err
	}
	var magic [0x206]byte
	n, err := kernel.ReadAt(magic[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, l.errorf("read: %w", err)
	}
	switch kernelFormat(magic[:n]) {
	case ProtocolBzImage64:
		return l.loadBzImage(kernel, size)
	case ProtocolPVH:
		return l.loadPVH(kernel, size)
	}
	return nil, l.errorf("%s", notAKernel)
}

// loader carries one Load call's inputs.
type loader struct {
	mem  Memory
	cfg  Config
	ram  spans // E820 RAM, sorted and merged
	path string
}

func newLoader(mem Memory, cfg Config) (*loader, error) {
	ram, err := checkE820(cfg.E820)
	if err != nil {
		return nil, err
	}
	if !ram.contains(span{LowStart, LowEnd}) {
		return nil, fmt.Errorf("boot: e820 map: the loader's low-memory area %#x-%#x is not RAM", LowStart, LowEnd-1)
	}
	if cfg.RSDP != 0 && cfg.RSDP < LowEnd && cfg.RSDP+36 > LowStart {
		return nil, fmt.Errorf("boot: RSDP at %#x lies inside the loader's low-memory area %#x-%#x", cfg.RSDP, LowStart, LowEnd-1)
	}
	return &loader{mem: mem, cfg: cfg, ram: ram, path: cfg.KernelPath}, nil
}

// errorf returns an error about the kernel file.
func (l *loader) errorf(format string, args ...any) error {
	return &KernelError{Path: l.path, Err: fmt.Errorf(format, args...)}
}

// slice returns guest memory [gpa, gpa+n), with the area named in the error.
func (l *loader) slice(gpa, n uint64, what string) ([]byte, error) {
	b, err := l.mem.Slice(gpa, n)
	if err != nil {
		return nil, fmt.Errorf("boot: %s at %#x (%d bytes): %w", what, gpa, n, err)
	}
	if uint64(len(b)) != n {
		return nil, fmt.Errorf("boot: %s at %#x: guest memory returned %d bytes, want %d", what, gpa, len(b), n)
	}
	return b, nil
}

// zeroed returns guest memory [gpa, gpa+n) cleared to zero.
func (l *loader) zeroed(gpa, n uint64, what string) ([]byte, error) {
	b, err := l.slice(gpa, n, what)
	if err != nil {
		return nil, err
	}
	clear(b)
	return b, nil
}

// writeCmdline checks the command line against max (bytes, NUL excluded)
// and writes it NUL-terminated at CmdlineAddr. limitName says where max
// comes from, for the error.
func (l *loader) writeCmdline(max uint64, limitName string) error {
	c := l.cfg.Cmdline
	for i := 0; i < len(c); i++ {
		if c[i] == 0 {
			return fmt.Errorf("boot: cmdline contains a NUL byte at offset %d", i)
		}
	}
	max = min(max, CmdlineMax-1)
	if uint64(len(c)) > max {
		return fmt.Errorf("boot: cmdline is %d bytes; kernel %s accepts at most %d (%s)", len(c), l.path, max, limitName)
	}
	b, err := l.slice(CmdlineAddr, uint64(len(c))+1, "command line")
	if err != nil {
		return err
	}
	copy(b, c)
	b[len(c)] = 0
	return nil
}

// readFull fills dst from r at off, naming the file part on failure.
func (l *loader) readFull(r io.ReaderAt, dst []byte, off int64, what string) error {
	n, err := r.ReadAt(dst, off)
	if n == len(dst) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return l.errorf("truncated: %s at file offset %#x needs %d bytes, only %d there", what, off, len(dst), n)
	}
	return l.errorf("read %s at file offset %#x: %w", what, off, err)
}
