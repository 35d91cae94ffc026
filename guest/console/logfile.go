package console

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits bound a console log: each file holds at most Size bytes, and
// Keep rotated files (PATH.1, the newest, to PATH.Keep) are kept besides
// PATH, so the log takes at most Size*(Keep+1) bytes of disk.
type Limits struct {
	Size int64
	Keep int
}

// maxRotated bounds how many rotated files ReadLog looks for.
const maxRotated = 1000

// LogFile appends console output to a file and keeps it bounded (Limits):
// a write that would take the file past Size first rotates it (PATH.N-1
// to PATH.N, ..., PATH to PATH.1, the oldest deleted) and starts a new
// PATH; a single write larger than Size is split across files. Errors
// leave it usable: a failed rotation or reopening is tried again on the
// next write. It is not safe for concurrent use (LogWriter owns it).
type LogFile struct {
	path   string
	lim    Limits
	perm   os.FileMode
	f      *os.File // nil after a failed reopening, or after Close
	size   int64
	closed bool
	// handed are the log's files opened by another process (AdoptLog):
	// PATH, then PATH.1 to PATH.Keep. Such a log is rotated by copying
	// (rotateHanded), since this process may not rename in their
	// directory. nil for a log opened by path.
	handed []*os.File
}

// OpenLog opens (creating, with mode perm) the log at path for
// appending. Rotated files beyond lim.Keep that an earlier, larger Keep
// left are deleted.
func OpenLog(path string, lim Limits, perm os.FileMode) (*LogFile, error) {
	if lim.Size <= 0 || lim.Keep < 1 {
		return nil, fmt.Errorf("console: log %s: size %d and files kept %d must be positive", path, lim.Size, lim.Keep)
	}
	l := &LogFile{path: path, lim: lim, perm: perm}
	if err := l.open(); err != nil {
		return nil, err
	}
	removeBeyond(path, lim.Keep)
	return l, nil
}

// OpenLogFiles opens, for another process to write the log at path
// (AdoptLog), its files: path for appending, then each of its lim.Keep
// rotated files (path.1 first) for reading and writing, creating those
// missing with mode perm. Rotated files beyond lim.Keep that an earlier,
// larger Keep left are deleted. A jailed VMM gets so a console log that
// lies outside its reach.
func OpenLogFiles(path string, lim Limits, perm os.FileMode) ([]*os.File, error) {
	if lim.Size <= 0 || lim.Keep < 1 {
		return nil, fmt.Errorf("console: log %s: size %d and files kept %d must be positive", path, lim.Size, lim.Keep)
	}
	var files []*os.File
	for i := 0; i <= lim.Keep; i++ {
		name, flags := path, os.O_RDWR|os.O_CREATE|os.O_APPEND
		if i > 0 {
			name, flags = rotated(path, i), os.O_RDWR|os.O_CREATE
		}
		f, err := os.OpenFile(name, flags, perm)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("console: log: %w", err)
		}
		files = append(files, f)
	}
	removeBeyond(path, lim.Keep)
	return files, nil
}

// AdoptLog makes the log at path of its files opened by another process
// (OpenLogFiles: path, then path.1 to path.Keep), which it takes over.
// It appends as OpenLog's log does; its rotation copies each file into
// the next one's place and empties path, since this process may not
// rename files in their directory, which makes a rotation cost
// lim.Keep times lim.Size of copying at most.
func AdoptLog(files []*os.File, path string, lim Limits) (*LogFile, error) {
	if lim.Size <= 0 || lim.Keep < 1 || len(files) != lim.Keep+1 {
		return nil, fmt.Errorf("console: log %s: %d files for size %d and %d files kept", path, len(files), lim.Size, lim.Keep)
	}
	fi, err := files[0].Stat()
	if err != nil {
		return nil, fmt.Errorf("console: log: %w", err)
	}
	return &LogFile{path: path, lim: lim, f: files[0], size: fi.Size(), handed: files}, nil
}

// removeBeyond deletes the rotated files of the log at path beyond the
// keep newest.
func removeBeyond(path string, keep int) {
	for i := keep + 1; i <= maxRotated; i++ {
		if os.Remove(rotated(path, i)) != nil {
			break
		}
	}
}

// rotated names the i-th rotated file of the log at path.
func rotated(path string, i int) string { return path + "." + strconv.Itoa(i) }

func (l *LogFile) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, l.perm)
	if err != nil {
		return fmt.Errorf("console: log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("console: log: %w", err)
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// Write appends p, rotating as needed. It returns how much of p reached
// the file.
func (l *LogFile) Write(p []byte) (int, error) {
	if l.closed {
		return 0, fmt.Errorf("console: log %s is closed", l.path)
	}
	if l.f == nil {
		if err := l.open(); err != nil {
			return 0, err
		}
	}
	done := 0
	for len(p) > 0 {
		if l.size > 0 && l.size+int64(len(p)) > l.lim.Size {
			if err := l.rotate(); err != nil {
				return done, err
			}
		}
		chunk := p[:min(int64(len(p)), max(l.lim.Size-l.size, 1))]
		n, err := l.f.Write(chunk)
		l.size += int64(n)
		done += n
		if err != nil {
			return done, fmt.Errorf("console: log: %w", err)
		}
		p = p[n:]
	}
	return done, nil
}

// rotate shifts the rotated files up by one, moves the full log to PATH.1
// and starts an empty PATH. If a rename fails, the log stays as it was.
func (l *LogFile) rotate() error {
	if l.handed != nil {
		return l.rotateHanded()
	}
	for i := l.lim.Keep - 1; i >= 1; i-- {
		if err := os.Rename(rotated(l.path, i), rotated(l.path, i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("console: rotate log: %w", err)
		}
	}
	if err := os.Rename(l.path, rotated(l.path, 1)); err != nil {
		return fmt.Errorf("console: rotate log: %w", err)
	}
	old := l.f
	l.f = nil
	old.Close()
	return l.open()
}

// rotateHanded rotates a log of handed files (AdoptLog): each rotated
// file's content moves into the next one (the oldest's is dropped), the
// full log's into PATH.1, and PATH is emptied. If a copy fails, the log
// goes on growing; the next write tries again.
func (l *LogFile) rotateHanded() error {
	for i := len(l.handed) - 1; i >= 1; i-- {
		if err := copyFile(l.handed[i], l.handed[i-1]); err != nil {
			return fmt.Errorf("console: rotate log %s: %w", rotated(l.path, i), err)
		}
	}
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("console: rotate log: %w", err)
	}
	l.size = 0
	return nil
}

// copyFile makes dst's content src's, with reads and writes at offsets
// (src is open for appending).
func copyFile(dst, src *os.File) error {
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	if err := dst.Truncate(0); err != nil {
		return err
	}
	_, err = io.Copy(io.NewOffsetWriter(dst, 0), io.NewSectionReader(src, 0, fi.Size()))
	return err
}

// Close closes the file.
func (l *LogFile) Close() error {
	l.closed = true
	if l.handed != nil {
		var errs []error
		for _, f := range l.handed {
			errs = append(errs, f.Close())
		}
		l.f, l.handed = nil, nil
		return errors.Join(errs...)
	}
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// LogFiles returns the files of the log at path: its rotated files,
// oldest first, then path itself (which may not exist).
func LogFiles(path string) []string {
	n := 0
	for n < maxRotated {
		if _, err := os.Lstat(rotated(path, n+1)); err != nil {
			break
		}
		n++
	}
	files := make([]string, 0, n+1)
	for i := n; i > 0; i-- {
		files = append(files, rotated(path, i))
	}
	return append(files, path)
}

// maxReadLog caps what ReadLog returns: the log's last bytes.
const maxReadLog = 64 << 20

// ReadLog returns the log at path: its rotated files, oldest first, then
// path itself; at most its last 64 MiB (maxReadLog). Each file is
// opened as OpenLogForReading opens it: a jailed VMM owns its log files
// and could make one a link to a file of the host, a FIFO, or sparse and
// huge.
func ReadLog(path string) ([]byte, error) {
	files := LogFiles(path)
	var parts [][]byte
	left := int64(maxReadLog)
	for i := len(files) - 1; i >= 0 && left > 0; i-- {
		b, err := ReadTail(files[i], left)
		if err != nil {
			return nil, err
		}
		parts = append(parts, b)
		left -= int64(len(b))
	}
	var out []byte
	for i := len(parts) - 1; i >= 0; i-- {
		out = append(out, parts[i]...)
	}
	return out, nil
}

// ReadTail returns up to the last limit bytes of the log file at path,
// opened as OpenLogForReading opens it; nothing for a missing file.
func ReadTail(path string, limit int64) ([]byte, error) {
	f, err := OpenLogForReading(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	off := max(fi.Size()-limit, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return nil, fmt.Errorf("console: read %s: %w", path, err)
	}
	return b, nil
}

// OpenLogForReading opens the console log file at path: following no
// symbolic link, and only a regular file (a FIFO would block the reader).
// A missing file is an fs.ErrNotExist error.
func OpenLogForReading(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("console: %s is a symbolic link; paddock does not follow it", path)
	}
	if err != nil {
		return nil, fmt.Errorf("console: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("console: %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	return f, nil
}

// TailLines returns the last n lines of data (n <= 0: every line), without
// their line ends; carriage returns are dropped, so a console line reads
// as it showed. A final line without a newline counts.
func TailLines(data []byte, n int) []string {
	data = TailBytes(bytes.TrimRight(data, "\r\n"), n)
	if len(data) == 0 {
		return nil
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		lines[i] = strings.ReplaceAll(l, "\r", "")
	}
	return lines
}

// TailFile returns the last n lines of the log at path (both files).
func TailFile(path string, n int) ([]string, error) {
	data, err := ReadLog(path)
	if err != nil {
		return nil, err
	}
	return TailLines(data, n), nil
}

// TailBytes returns the part of data that holds its last n lines (n <= 0:
// all of it), line ends kept, for streaming history.
func TailBytes(data []byte, n int) []byte {
	if n <= 0 {
		return data
	}
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	for i := 0; i < n; i++ {
		j := bytes.LastIndexByte(data[:end], '\n')
		if j < 0 {
			return data
		}
		end = j
	}
	return data[end+1:]
}

var _ io.WriteCloser = (*LogFile)(nil)
