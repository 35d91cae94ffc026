package boot

import (
	"errors"
	"io"
)

// MinMemory is the least guest RAM paddock boots a kernel into: below it no
// current x86-64 Linux kernel with an initramfs gets to init (the
// decompressed kernel, its early page tables and the unpacked initramfs
// alone take tens of MiB). It is the one definition of the limit: the
// machine refuses less, and configs validates a VM file against it.
const MinMemory = 32 << 20

// Kernel is what Inspect learns about a kernel file.
type Kernel struct {
	// Protocol is how Load boots it: the bzImage 64-bit boot protocol or
	// the PVH entry of an ELF file.
	Protocol Protocol
	// Version is a bzImage's boot protocol version (0x020f is 2.15); 0
	// for an ELF file.
	Version uint16
	// Linux reports that the file says it is a Linux kernel: every
	// bzImage does (the "HdrS" header is Linux's boot protocol), and an ELF
	// vmlinux has notes owned by "Linux". An ELF file without them (a
	// small guest program with a PVH note) is not known to be Linux.
	Linux bool
}

// Inspect checks the kernel file at path the way Load does before it
// writes guest memory (the format, a bzImage's setup header and size, an
// ELF file's headers and PVH note) and says what it is, without guest
// memory. Errors are *KernelError. It refuses anything but a regular
// file and never blocks on a FIFO.
func Inspect(path string) (Kernel, error) {
	f, err := OpenKernel(path)
	if err != nil {
		return Kernel{}, err
	}
	defer f.Close()
	size, err := regularSize(f)
	if err != nil {
		return Kernel{}, &KernelError{Path: path, Err: err}
	}
	return inspect(f, size, path)
}

// inspect is Inspect on an open kernel file.
func inspect(r io.ReaderAt, size int64, path string) (Kernel, error) {
	l := &loader{path: path}
	var magic [0x206]byte
	n, err := r.ReadAt(magic[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return Kernel{}, l.errorf("read: %w", err)
	}
	switch kernelFormat(magic[:n]) {
	case ProtocolBzImage64:
		h, err := l.readSetupHeader(r)
		if err != nil {
			return Kernel{}, err
		}
		if _, _, err := l.bzImageSizes(h, size); err != nil {
			return Kernel{}, err
		}
		return Kernel{Protocol: ProtocolBzImage64, Version: h.version, Linux: true}, nil
	case ProtocolPVH:
		_, notes, err := l.readPVH(r, size)
		if err != nil {
			return Kernel{}, err
		}
		return Kernel{Protocol: ProtocolPVH, Linux: notes.linux}, nil
	}
	return Kernel{}, l.errorf("%s", notAKernel)
}

// notAKernel is the problem with a file that is neither a bzImage nor ELF.
const notAKernel = "not a Linux kernel (no bzImage header and not an ELF file)"

// kernelFormat tells a kernel file's format from its first 0x206 bytes (or
// fewer, if the file is shorter): a bzImage has "HdrS" at 0x202, an ELF
// file starts with its magic. 0 is neither.
func kernelFormat(head []byte) Protocol {
	switch {
	case len(head) >= 0x206 && string(head[0x202:0x206]) == "HdrS":
		return ProtocolBzImage64
	case len(head) >= 4 && string(head[:4]) == "\x7fELF":
		return ProtocolPVH
	}
	return 0
}
