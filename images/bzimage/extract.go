package bzimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/paddock-vm/paddock/images/cache"
)

// maxVmlinux bounds the decompressed kernel (a decompression bomb guard);
// distribution kernels are well under 100 MiB.
const maxVmlinux = 1 << 30

// decompressor describes the external tool that decompresses a format.
type decompressor struct {
	tool string
	args []string
	pkg  string // Debian package providing the tool
}

var decompressors = map[Compression]decompressor{
	XZ:    {"xz", []string{"-dc", "--single-stream"}, "xz-utils"},
	LZMA:  {"xz", []string{"--format=lzma", "-dc"}, "xz-utils"},
	Bzip2: {"bzip2", []string{"-dc"}, "bzip2"},
	LZO:   {"lzop", []string{"-dc"}, "lzop"},
	LZ4:   {"lz4", []string{"-dc"}, "lz4"},
	Zstd:  {"zstd", []string{"-dc"}, "zstd"},
}

// Extract decompresses the vmlinux payload of the bzImage at path into w
// and returns the payload's compression. Gzip is decompressed in Go; the
// other formats need their tool (xz, bzip2, lzop, lz4, zstd) on PATH, and
// a missing tool is an error naming it. The output length is checked
// against the size the kernel build recorded.
func Extract(ctx context.Context, path string, w io.Writer) (Compression, error) {
	f, err := os.Open(path)
	if err != nil {
		return Unknown, fmt.Errorf("vmlinux: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Unknown, fmt.Errorf("vmlinux: %w", err)
	}
	h, err := Parse(f, fi.Size())
	if err != nil {
		return Unknown, fmt.Errorf("vmlinux: kernel %s: %w", path, err)
	}
	stream, want, err := h.Payload(f)
	if err != nil {
		return Unknown, fmt.Errorf("vmlinux: kernel %s: %w", path, err)
	}
	var magic [8]byte
	n, _ := stream.ReadAt(magic[:], 0)
	comp := DetectCompression(magic[:n])
	if want > maxVmlinux {
		return comp, fmt.Errorf("vmlinux: kernel %s: recorded uncompressed size %d exceeds %d", path, want, maxVmlinux)
	}
	switch comp {
	case Unknown:
		return comp, fmt.Errorf("vmlinux: kernel %s: payload starts with % x, not a compression format the kernel uses", path, magic[:n])
	case Uncompressed:
		// No size word follows an ELF payload: copy all of it.
		if _, err := io.Copy(w, io.NewSectionReader(f, h.PayloadStart(), int64(h.PayloadLength))); err != nil {
			return comp, fmt.Errorf("vmlinux: kernel %s: %w", path, err)
		}
		return comp, nil
	}
	out := &countingWriter{w: w, limit: int64(want)}
	if comp == Gzip {
		err = gunzip(out, stream)
	} else {
		err = runTool(ctx, decompressors[comp], out, stream)
	}
	if out.overflow {
		err = errTooLong
	}
	if err != nil {
		return comp, fmt.Errorf("vmlinux: kernel %s: %v payload: %w", path, comp, err)
	}
	if out.n != int64(want) {
		return comp, fmt.Errorf("vmlinux: kernel %s: %v payload decompressed to %d bytes, the kernel build recorded %d", path, comp, out.n, want)
	}
	return comp, nil
}

func gunzip(w io.Writer, r io.Reader) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	zr.Multistream(false)
	_, err = io.Copy(w, zr)
	return err
}

// runTool pipes r through an external decompressor into w.
func runTool(ctx context.Context, d decompressor, w io.Writer, r io.Reader) error {
	p, err := exec.LookPath(d.tool)
	if err != nil {
		return fmt.Errorf("decompressing it needs the %q tool, which is not on PATH (install the Debian package %s)", d.tool, d.pkg)
	}
	cmd := exec.CommandContext(ctx, p, d.args...)
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, w, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", d.tool, strings.Join(d.args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

var errTooLong = errors.New("decompressed data is longer than the size the kernel build recorded")

// countingWriter counts bytes and refuses more than limit.
type countingWriter struct {
	w        io.Writer
	n        int64
	limit    int64
	overflow bool
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.n+int64(len(p)) > c.limit {
		c.overflow = true
		return 0, errTooLong
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ExtractFile writes the vmlinux of bzImage to out (atomically) and checks
// that it is an ELF file with a PVH entry point.
func ExtractFile(ctx context.Context, bzImage, out string) error {
	err := cache.WriteAtomic(out, 0o644, func(f *os.File) error {
		_, err := Extract(ctx, bzImage, f)
		return err
	})
	if err != nil {
		return err
	}
	f, err := os.Open(out)
	if err != nil {
		return fmt.Errorf("vmlinux: %w", err)
	}
	defer f.Close()
	if _, err := PVHEntry(f); err != nil {
		os.Remove(out)
		return fmt.Errorf("vmlinux: extracted from %s: %w", bzImage, err)
	}
	return nil
}

// Cached returns the path of the vmlinux extracted from bzImage, extracting
// it into c the first time. Entries are keyed by the bzImage's SHA-256.
func Cached(ctx context.Context, c *cache.Cache, bzImage string) (string, error) {
	sum, err := fileSHA256(bzImage)
	if err != nil {
		return "", fmt.Errorf("vmlinux: %w", err)
	}
	dir, err := c.Ensure(ctx, "vmlinux/"+sum[:32], func(tmp string) error {
		return ExtractFile(ctx, bzImage, filepath.Join(tmp, "vmlinux"))
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "vmlinux"), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
