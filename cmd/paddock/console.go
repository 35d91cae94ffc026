package main

import (
	"fmt"
	"io"

	"golang.org/x/term"
)

// Console escapes, as in QEMU: Ctrl-A then a key.
const (
	escapeKey = 0x01 // Ctrl-A
)

const escapeHelp = "\r\nC-a x    quit (stops the VM)\r\nC-a h    this help\r\nC-a C-a  send C-a to the guest\r\n"

// escapeReader passes terminal input to the guest, intercepting Ctrl-A
// sequences: Ctrl-A X calls quit, Ctrl-A H prints help to w, Ctrl-A Ctrl-A
// sends one Ctrl-A. Any other key after Ctrl-A is sent as typed, both
// bytes.
type escapeReader struct {
	r       io.Reader
	w       io.Writer
	quit    func()
	pending bool   // saw Ctrl-A, waiting for the command key
	carry   []byte // output that did not fit the last Read
}

func (e *escapeReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(e.carry) > 0 {
		n := copy(p, e.carry)
		e.carry = e.carry[n:]
		return n, nil
	}
	// Each input byte expands to at most two output bytes (Ctrl-A then
	// an unknown key), so read at most half of p.
	buf := make([]byte, max(1, len(p)/2))
	for {
		n, err := e.r.Read(buf)
		out := make([]byte, 0, 2*n)
		for _, b := range buf[:n] {
			if e.pending {
				e.pending = false
				switch b {
				case 'x', 'X':
					e.quit()
					return copy(p, out), io.EOF
				case 'h', 'H', '?':
					fmt.Fprint(e.w, escapeHelp)
					continue
				case escapeKey:
					out = append(out, escapeKey)
					continue
				default:
					out = append(out, escapeKey, b)
					continue
				}
			}
			if b == escapeKey {
				e.pending = true
				continue
			}
			out = append(out, b)
		}
		if len(out) > len(p) {
			// Only when len(p) == 1 and a pair was produced: keep the
			// second byte for the next read.
			e.carry = out[len(p):]
			out = out[:len(p)]
		}
		if len(out) > 0 || err != nil {
			return copy(p, out), err
		}
	}
}

// rawTerminal puts the terminal on fd into raw mode when it is one, and
// returns a function that restores it.
func rawTerminal(fd int) (restore func(), isTTY bool, err error) {
	if !term.IsTerminal(fd) {
		return func() {}, false, nil
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, true, fmt.Errorf("set terminal to raw mode: %w", err)
	}
	return func() { _ = term.Restore(fd, old) }, true, nil
}
