package console

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/internal/testenv"
)

func TestRing(t *testing.T) {
	tests := []struct {
		size   int
		writes []string
		want   string
	}{
		{8, nil, ""},
		{8, []string{"abc"}, "abc"},
		{8, []string{"abc", "defgh"}, "abcdefgh"},
		{8, []string{"abc", "defghi"}, "bcdefghi"},
		{8, []string{"abcdefghijkl"}, "efghijkl"},
		{8, []string{"abcdef", "ghijkl", "mn"}, "ghijklmn"},
		{4, []string{"a", "b", "c", "d", "e", "f"}, "cdef"},
		{1, []string{"xyz"}, "z"},
	}
	for _, tt := range tests {
		r := NewRing(tt.size)
		for _, w := range tt.writes {
			r.Write([]byte(w))
		}
		if got := string(r.Bytes()); got != tt.want || r.Len() != len(tt.want) {
			t.Errorf("ring(%d) after %q = %q (len %d), want %q", tt.size, tt.writes, got, r.Len(), tt.want)
		}
	}
}

// FuzzRing checks the ring against the obvious model: the last size bytes
// of everything written. The console is guest-controlled input.
func FuzzRing(f *testing.F) {
	f.Add(uint8(7), []byte("hello world, this is the guest"), uint8(3))
	f.Add(uint8(1), []byte("ab"), uint8(1))
	f.Fuzz(func(t *testing.T, size uint8, data []byte, chunk uint8) {
		n := int(size)%64 + 1
		c := int(chunk)%17 + 1
		r := NewRing(n)
		for i := 0; i < len(data); i += c {
			r.Write(data[i:min(i+c, len(data))])
		}
		want := data[max(0, len(data)-n):]
		if !bytes.Equal(r.Bytes(), want) {
			t.Fatalf("ring(%d) = %q, want %q", n, r.Bytes(), want)
		}
	})
}

func TestTailLines(t *testing.T) {
	tests := []struct {
		data string
		n    int
		want []string
	}{
		{"", 3, nil},
		{"\n\n", 3, nil},
		{"a\nb\nc\n", 2, []string{"b", "c"}},
		{"a\nb\nc", 2, []string{"b", "c"}},
		{"a\r\nb\r\nc\r\n", 5, []string{"a", "b", "c"}},
		{"a\nb\nc\n", 0, []string{"a", "b", "c"}},
		{"one line", 1, []string{"one line"}},
		{"x\n\ny\n", 2, []string{"", "y"}},
	}
	for _, tt := range tests {
		got := TailLines([]byte(tt.data), tt.n)
		if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
			t.Errorf("TailLines(%q, %d) = %q, want %q", tt.data, tt.n, got, tt.want)
		}
	}
}

func TestTailBytes(t *testing.T) {
	tests := []struct {
		data string
		n    int
		want string
	}{
		{"a\nb\nc\n", 0, "a\nb\nc\n"},
		{"a\nb\nc\n", 1, "c\n"},
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 1, "c"},
		{"a\nb\nc", 9, "a\nb\nc"},
		{"", 3, ""},
	}
	for _, tt := range tests {
		if got := string(TailBytes([]byte(tt.data), tt.n)); got != tt.want {
			t.Errorf("TailBytes(%q, %d) = %q, want %q", tt.data, tt.n, got, tt.want)
		}
	}
}

// FuzzTail checks that TailBytes returns a suffix holding at most n line
// ends past its first line, and TailLines at most n lines, never
// panicking on guest output.
func FuzzTail(f *testing.F) {
	f.Add([]byte("a\nb\r\nc"), 2)
	f.Add([]byte("\n\n\n"), 1)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		n %= 50
		b := TailBytes(data, n)
		if !bytes.HasSuffix(data, b) {
			t.Fatalf("TailBytes is not a suffix")
		}
		lines := TailLines(data, n)
		if n > 0 && len(lines) > n {
			t.Fatalf("TailLines(%d) returned %d lines", n, len(lines))
		}
	})
}

func TestLogFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "console.log")
	l, err := OpenLog(p, Limits{Size: 10, Keep: 2}, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"12345", "6789", "abcd", "efghijklmnopqrstuvw", "x"} {
		if n, err := l.Write([]byte(w)); err != nil || n != len(w) {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// 123456789 | abcd -> rotate | efghijklmn (a write larger than the
	// room left rotates first, one larger than a file is split) |
	// opqrstuvw, x; the first file fell off the end.
	for name, want := range map[string]string{"console.log.2": "abcd", "console.log.1": "efghijklmn", "console.log": "opqrstuvwx"} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if all, err := ReadLog(p); err != nil || string(all) != "abcdefghijklmnopqrstuvwx" {
		t.Errorf("ReadLog = %q, %v", all, err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v", fi.Mode(), err)
	}
	// Reopening appends and counts what is there; a smaller Keep drops
	// the files beyond it.
	l, err = OpenLog(p, Limits{Size: 10, Keep: 1}, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p + ".2"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("console.log.2 after reopening with Keep 1: %v", err)
	}
	l.Write([]byte("rstuvwxyz!"))
	l.Close()
	if all, err := ReadLog(p); err != nil || string(all) != "opqrstuvwxrstuvwxyz!" {
		t.Errorf("after reopen: %q, %v", all, err)
	}
	if _, err := l.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if _, err := OpenLog(p, Limits{Size: 0, Keep: 1}, 0o600); err == nil {
		t.Error("OpenLog with size 0 succeeded")
	}
	if lines, err := TailFile(filepath.Join(dir, "missing.log"), 5); err != nil || lines != nil {
		t.Errorf("TailFile of a missing log: %q, %v", lines, err)
	}
}

// TestLogFileBounded writes far more than a log's limits and checks the
// files on disk: within bounds, and holding the newest output, in order.
func TestLogFileBounded(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "console.log")
	lim := Limits{Size: 64 << 10, Keep: 3}
	l, err := OpenLog(p, lim, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	for i := 0; all.Len() < 20*int(lim.Size); i++ {
		line := fmt.Sprintf("[%8d] the guest says something rather long, line after line\r\n", i)
		if i%1000 == 999 {
			line = strings.Repeat(line, 500) // larger than a file
		}
		all.WriteString(line)
		if _, err := l.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != lim.Keep+1 {
		t.Errorf("%d files, want %d", len(ents), lim.Keep+1)
	}
	var total int64
	for _, e := range ents {
		fi, _ := e.Info()
		if fi.Size() > lim.Size {
			t.Errorf("%s holds %d bytes, more than %d", e.Name(), fi.Size(), lim.Size)
		}
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("%s has mode %v", e.Name(), fi.Mode())
		}
		total += fi.Size()
	}
	got, err := ReadLog(p)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(got)) != total || int64(len(got)) < lim.Size || !bytes.HasSuffix(all.Bytes(), got) {
		t.Errorf("the log holds %d bytes, not the newest output in order", len(got))
	}
}

// fifoLog returns a FIFO to use as a log file, with a reader that reads
// nothing until the returned function is called; that function then
// returns all the FIFO carried until its writer closed it.
func fifoLog(t *testing.T) (string, func() []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "console.log")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return p, func() []byte {
		if err := syscall.SetNonblock(int(r.Fd()), false); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// TestLogWriterNeverBlocks writes into a log whose file takes nothing (a
// FIFO nobody reads, a stuck disk): Write returns at once, the output
// that does not fit is dropped and counted, and once the file takes
// output again the log says how much was lost before what follows.
func TestLogWriterNeverBlocks(t *testing.T) {
	p, drain := fifoLog(t)
	w, err := OpenLogWriter(p, Limits{Size: 1 << 40, Keep: 1}, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("x"), 4096)
	const total = 3 * LogQueue
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; n < total; n += len(chunk) {
			if n, err := w.Write(chunk); n != len(chunk) || err != nil {
				t.Errorf("Write = %d, %v", n, err)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Write blocked on a file that takes nothing")
	}
	dropped := w.Dropped()
	if dropped < total-LogQueue-(1<<20) || dropped%uint64(len(chunk)) != 0 {
		t.Errorf("dropped %d of %d bytes; the queue holds %d", dropped, total, LogQueue)
	}
	out := make(chan []byte)
	go func() { out <- drain() }()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := <-out
	// The loss was at the end: the notice is too, after what was kept.
	notice := fmt.Sprintf("\r\n[paddock: %d bytes of console output were not written to this log: the disk did not keep up]\r\n", dropped)
	kept := bytes.TrimSuffix(got, []byte(notice))
	if len(kept) == len(got) || len(bytes.Trim(kept, "x")) != 0 || len(kept) != total-int(dropped) {
		t.Errorf("the log (%d bytes, ending %q) is not the %d bytes kept and then the notice %q", len(got), got[max(0, len(got)-120):], total-int(dropped), notice)
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestHub(t *testing.T) {
	var sink bytes.Buffer
	h := NewHub(8, &sink, failWriter{})
	h.Write([]byte("early "))
	sub := h.Subscribe(true, 0)
	live := h.Subscribe(false, 0)
	if h.Subscribers() != 2 {
		t.Fatalf("Subscribers = %d", h.Subscribers())
	}
	h.Write([]byte("late\n"))
	h.Close()
	got, err := io.ReadAll(sub)
	// The ring holds 8 bytes: "early " was 6, so the history is all of it.
	if err != nil || string(got) != "early late\n" {
		t.Errorf("subscriber with history read %q, %v", got, err)
	}
	if got, _ := io.ReadAll(live); string(got) != "late\n" {
		t.Errorf("live subscriber read %q", got)
	}
	if sink.String() != "early late\n" {
		t.Errorf("sink got %q", sink.String())
	}
	if err := h.Err(); err == nil || err.Error() != "disk full" {
		t.Errorf("Err = %v", err)
	}
	if string(h.History()) != "ly late\n" {
		t.Errorf("History = %q", h.History())
	}
	after := h.Subscribe(true, 1)
	if got, _ := io.ReadAll(after); string(got) != "ly late\n" {
		t.Errorf("subscriber after Close read %q", got)
	}
}

func TestSubscriberClose(t *testing.T) {
	h := NewHub(64)
	s := h.Subscribe(false, 0)
	done := make(chan error)
	go func() {
		_, err := s.Read(make([]byte, 10))
		done <- err
	}()
	s.Close()
	if err := <-done; err != io.EOF {
		t.Errorf("blocked Read after Close: %v, want EOF", err)
	}
	if h.Subscribers() != 0 {
		t.Errorf("Subscribers after Close = %d", h.Subscribers())
	}
}

// TestSlowSubscriber checks that a reader that does not keep up loses
// output, is told so, and never blocks the writer.
func TestSlowSubscriber(t *testing.T) {
	h := NewHub(16)
	s := h.Subscribe(false, 0)
	chunk := bytes.Repeat([]byte("x"), SubscriberBuffer/4)
	for i := 0; i < 6; i++ { // 1.5x the buffer, nobody reading
		h.Write(chunk)
	}
	h.Write([]byte("end"))
	h.Close()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	notice := "[paddock: 524291 bytes of console output dropped: this reader fell behind]"
	if !bytes.Contains(got, []byte(notice)) {
		t.Errorf("no drop notice %q in the output's start %q", notice, got[:min(len(got), 100)])
	}
	if n := bytes.Count(got, []byte("x")); n != 4*len(chunk) {
		t.Errorf("read %d x's, want the %d that fit", n, 4*len(chunk))
	}
}

func TestInput(t *testing.T) {
	in := NewInput()
	stop := make(chan struct{})
	r := in.Reader(stop)
	var wg sync.WaitGroup
	for _, s := range []string{"aaaa", "bbbb"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := in.Write([]byte(s)); err != nil {
				t.Error(err)
			}
		}()
	}
	got := make([]byte, 0, 8)
	buf := make([]byte, 3)
	for len(got) < 8 {
		n, err := r.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	wg.Wait()
	if s := string(got); s != "aaaabbbb" && s != "bbbbaaaa" {
		t.Errorf("merged input %q", s)
	}
	close(stop)
	if _, err := r.Read(buf); err != io.EOF {
		t.Errorf("Read after stop: %v, want EOF", err)
	}
	// A new reader (the next boot) gets later input.
	r2 := in.Reader(make(chan struct{}))
	in.Feed(strings.NewReader("fed"))
	n, err := io.ReadAtLeast(r2, buf, 3)
	if err != nil || string(buf[:n]) != "fed" {
		t.Errorf("fed input %q, %v", buf[:n], err)
	}
	blocked := make(chan error)
	go func() {
		_, err := in.Write([]byte("nobody reads"))
		blocked <- err
	}()
	in.Close()
	if err := <-blocked; !errors.Is(err, ErrClosed) {
		t.Errorf("blocked Write after Close: %v, want ErrClosed", err)
	}
	if _, err := r2.Read(buf); err != io.EOF {
		t.Errorf("Read after Close: %v, want EOF", err)
	}
}

func BenchmarkHubWrite(b *testing.B) {
	h := NewHub(DefaultHistory)
	s := h.Subscribe(false, 0)
	go io.Copy(io.Discard, s)
	line := []byte("[    1.234567] a typical line of kernel console output\r\n")
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		h.Write(line)
	}
	h.Close()
}

// smallFS mounts a tmpfs of size bytes on a new directory for the test
// and returns the directory and a function that resizes the file system.
// It needs root; without it the test is skipped (it fails under CI).
func smallFS(t *testing.T, size int) (string, func(size int)) {
	t.Helper()
	testenv.RequireRoot(t, "this test mounts a small tmpfs")
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir, func(size int) {
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, fmt.Sprintf("size=%d", size)); err != nil {
			t.Fatalf("resize the tmpfs: %v", err)
		}
	}
}

// TestLogWriterFullDisk fills the log's file system: writes keep
// succeeding (the output is dropped and counted), logf hears of it once,
// and when there is room again the log says how much was lost and why
// before the output that follows.
func TestLogWriterFullDisk(t *testing.T) {
	dir, resize := smallFS(t, 64<<10)
	p := filepath.Join(dir, "console.log")
	msgs := make(chan string, 16)
	logf := func(format string, args ...any) { msgs <- fmt.Sprintf(format, args...) }
	w, err := OpenLogWriter(p, Limits{Size: 1 << 20, Keep: 1}, 0o600, logf)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("x"), 4096)
	const total = 256 << 10
	for n := 0; n < total; n += len(chunk) {
		if n, err := w.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	select {
	case m := <-msgs:
		if want := "console log: write " + p + ": no space left on device; dropping console output until writing works again"; m != want {
			t.Errorf("logf got %q, want %q", m, want)
		}
	case <-time.After(time.Minute):
		t.Fatal("no report of the full file system")
	}
	resize(1 << 20)
	w.Write([]byte("after\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if m := <-msgs; m != "console log "+p+": writing again" {
		t.Errorf("logf got %q after the resize", m)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	notice := fmt.Sprintf("\r\n[paddock: %d bytes of console output were not written to this log: write %s: no space left on device]\r\n", w.Dropped(), p)
	before, after, found := bytes.Cut(got, []byte(notice))
	if !found || w.Dropped() == 0 || !bytes.HasSuffix(after, []byte("after\n")) {
		t.Fatalf("the log (%d bytes) is not output, the notice %q, output ending in \"after\": %q", len(got), notice, got[len(before):])
	}
	if n := bytes.Count(got, []byte("x")); n+int(w.Dropped()) != total {
		t.Errorf("%d x's kept and %d bytes dropped, of %d", n, w.Dropped(), total)
	}
}
