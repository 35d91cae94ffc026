package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressBar draws a one-line progress bar, redrawn in place, at most
// ten times a second.
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	start time.Time
	last  time.Time
	done  bool
}

// newProgress returns a progress callback drawing on w when w is a
// terminal (or force is set), and a function to finish the line. quiet
// disables it.
func newProgress(w io.Writer, label string, force, quiet bool) (func(done, total int64), func()) {
	if quiet || (!force && !isTerminal(w)) {
		return nil, func() {}
	}
	p := &progressBar{w: w, label: label, start: time.Now()}
	return p.update, p.finish
}

func (p *progressBar) update(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.done || (now.Sub(p.last) < 100*time.Millisecond && done < total) {
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

func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		p.done = true
		fmt.Fprintln(p.w)
	}
}
