package main

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestEscapeReader(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     string // what the guest receives
		quit     bool
		help     bool
		oneByte  bool // read through a one-byte reader and buffer
		readSize int
	}{
		{name: "plain", in: "ls -l\r", want: "ls -l\r"},
		{name: "ctrl-c passes", in: "sleep 9\r\x03", want: "sleep 9\r\x03"},
		{name: "quit", in: "abc\x01xdef", want: "abc", quit: true},
		{name: "quit upper", in: "\x01X", want: "", quit: true},
		{name: "help", in: "a\x01hb", want: "ab", help: true},
		{name: "literal ctrl-a", in: "a\x01\x01b", want: "a\x01b"},
		{name: "unknown escape", in: "a\x01zb", want: "a\x01zb"},
		{name: "split escape", in: "ab\x01x", want: "ab", quit: true, oneByte: true},
		{name: "pair into one-byte reads", in: "\x01z\x01z", want: "\x01z\x01z", readSize: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var src io.Reader = strings.NewReader(tt.in)
			if tt.oneByte {
				src = iotest.OneByteReader(src)
			}
			var help bytes.Buffer
			quit := false
			e := &escapeReader{r: src, w: &help, quit: func() { quit = true }}
			size := tt.readSize
			if size == 0 {
				size = 64
			}
			var got []byte
			buf := make([]byte, size)
			var err error
			for err == nil {
				var n int
				n, err = e.Read(buf)
				got = append(got, buf[:n]...)
			}
			if !errors.Is(err, io.EOF) {
				t.Fatalf("Read error %v, want io.EOF", err)
			}
			if string(got) != tt.want {
				t.Errorf("guest got %q, want %q", got, tt.want)
			}
			if quit != tt.quit {
				t.Errorf("quit called = %v, want %v", quit, tt.quit)
			}
			if (help.Len() > 0) != tt.help {
				t.Errorf("help printed = %q, want printed %v", help.String(), tt.help)
			}
		})
	}
}
