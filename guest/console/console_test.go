package console

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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
	l, err := OpenLog(p, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"12345", "6789", "abcd", "efghijklmnop", "q"} {
		if _, err := l.Write([]byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cur, _ := os.ReadFile(p)
	old, _ := os.ReadFile(p + ".1")
	// 123456789 | abcd -> rotate | efghijklmnop (oversized, alone) | q
	if string(old) != "efghijklmnop" || string(cur) != "q" {
		t.Errorf("console.log.1 %q, console.log %q", old, cur)
	}
	all, err := ReadLog(p)
	if err != nil || string(all) != "efghijklmnopq" {
		t.Errorf("ReadLog = %q, %v", all, err)
	}
	// Reopening appends and counts what is there.
	l, err = OpenLog(p, 10)
	if err != nil {
		t.Fatal(err)
	}
	l.Write([]byte("rstuvwxyz!"))
	l.Close()
	if cur, _ := os.ReadFile(p); string(cur) != "rstuvwxyz!" {
		t.Errorf("after reopen: console.log %q", cur)
	}
	if _, err := l.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if _, err := OpenLog(p, 0); err == nil {
		t.Error("OpenLog with size 0 succeeded")
	}
	if lines, err := TailFile(filepath.Join(dir, "missing.log"), 5); err != nil || lines != nil {
		t.Errorf("TailFile of a missing log: %q, %v", lines, err)
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
