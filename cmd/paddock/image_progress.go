package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressBar draws a one-line progress bar, redrawn in place at most ten
// times a second, on a terminal; elsewhere (a pipe, a log file) it writes
// a plain line at every tenth of the work, with no escape codes.
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	label string
	start time.Time
	last  time.Time
	tenth int64 // plain lines: the last tenth reported
	done  bool
}

// newProgress returns a progress callback for w and a function to finish
// its output: a bar when w is a terminal, plain lines when force (-p) asks
// for progress elsewhere, nothing otherwise or when quiet.
func newProgress(w io.Writer, label string, force, quiet bool) (func(done, total int64), func()) {
	tty := isTerminal(w)
	if quiet || (!force && !tty) {
		return nil, func() {}
	}
	p := &progressBar{w: w, tty: tty, label: label, start: time.Now(), tenth: -1}
	return p.update, p.finish
}

func (p *progressBar) update(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	if !p.tty {
		p.line(done, total)
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = now
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	const width = 30
	fill := int(frac * width)
	bar := strings.Repeat("=", fill)
	if fill < width {
		bar += ">" + strings.Repeat(" ", width-fill-1)
	}
	rate := ""
	if el := now.Sub(p.start).Seconds(); el > 0.2 {
		rate = fmt.Sprintf(" %s/s", humanSize(int64(float64(done)/el)))
	}
	fmt.Fprintf(p.w, "\r%s [%s] %6.2f%% %s/%s%s\x1b[K", p.label, bar, frac*100, humanSize(done), humanSize(total), rate)
}

// line writes a plain progress line when the work reaches a new tenth.
// Precondition: mu is held.
func (p *progressBar) line(done, total int64) {
	tenth := int64(10)
	if total > 0 {
		tenth = 10 * done / total
	}
	if tenth == p.tenth {
		return
	}
	p.tenth = tenth
	fmt.Fprintf(p.w, "%s: %d%% (%s of %s)\n", p.label, 10*tenth, humanSize(done), humanSize(total))
}

func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		p.done = true
		if p.tty {
			fmt.Fprintln(p.w)
		}
	}
}
