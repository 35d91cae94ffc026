package console

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// LogFile appends console output to a file and keeps it bounded: when it
// reaches its maximum size it is renamed to PATH.1 (replacing the previous
// one) and a new PATH is started, so the two files hold at most twice the
// maximum. It is not safe for concurrent use (Hub guards it).
type LogFile struct {
	path string
	max  int64
	f    *os.File
	size int64
}

// OpenLog opens (creating, mode 0600) the log at path for appending;
// maxSize must be positive.
func OpenLog(path string, maxSize int64) (*LogFile, error) {
	if maxSize <= 0 {
		return nil, fmt.Errorf("console: log %s: maximum size %d must be positive", path, maxSize)
	}
	l := &LogFile{path: path, max: maxSize}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *LogFile) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
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

// Write appends p, rotating first if the file is full.
func (l *LogFile) Write(p []byte) (int, error) {
	if l.f == nil {
		return 0, fmt.Errorf("console: log %s is closed", l.path)
	}
	if l.size > 0 && l.size+int64(len(p)) > l.max {
		if err := l.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("console: log: %w", err)
	}
	return n, nil
}

// rotate moves the full log to PATH.1 and starts an empty one.
func (l *LogFile) rotate() error {
	l.f.Close()
	l.f = nil
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("console: rotate log: %w", err)
	}
	return l.open()
}

// Close closes the file.
func (l *LogFile) Close() error {
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// ReadLog returns the whole log at path: PATH.1 (if any) then PATH.
// Missing files read as empty.
func ReadLog(path string) ([]byte, error) {
	var out []byte
	for _, p := range []string{path + ".1", path} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("console: %w", err)
		}
		out = append(out, b...)
	}
	return out, nil
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
