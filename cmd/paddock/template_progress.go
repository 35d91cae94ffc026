package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/paddock-vm/paddock/images/debootstrap"
)

// buildProgress shows a template build's steps. On a terminal each step
// is a line that ends with how long it took, and the running step's line
// shows the tools' latest output (or the disk's progress) in place;
// elsewhere it prints nothing, or with verbose the steps and every line
// the tools print.
type buildProgress struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	verbose  bool
	width    int
	names    []string
	cur      string // the running step
	at       time.Time
	drawn    time.Time // the last redraw
	activity string
}

func newBuildProgress(w io.Writer, verbose bool) *buildProgress {
	return &buildProgress{w: w, tty: isTerminal(w), verbose: verbose, width: terminalWidth(w), names: debootstrap.Steps()}
}

// redrawEvery bounds how often the running step's line is redrawn.
const redrawEvery = 100 * time.Millisecond

// label is "[i/n] title" for a step.
func (p *buildProgress) label(name string) string {
	for i, n := range p.names {
		if n == name {
			return fmt.Sprintf("[%d/%d] %s", i+1, len(p.names), debootstrap.StepTitle(name))
		}
	}
	return debootstrap.StepTitle(name)
}

// begin prints the build's first line.
func (p *buildProgress) begin(title string) {
	if p.tty || p.verbose {
		fmt.Fprintln(p.w, title)
	}
}

// step ends the running step and starts the next.
func (p *buildProgress) step(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finishLocked()
	p.cur, p.at, p.activity = name, time.Now(), ""
	switch {
	case p.tty && !p.verbose:
		p.drawLocked(true)
	case p.verbose:
		fmt.Fprintln(p.w, p.label(name))
	}
}

// line takes one line of the tools' output.
func (p *buildProgress) line(l string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.verbose:
		fmt.Fprintln(p.w, l)
	case p.tty:
		if l = strings.TrimSpace(l); l != "" {
			p.activity = l
			p.drawLocked(false)
		}
	}
}

// progress shows how much of the disk is written.
func (p *buildProgress) progress(done, total int64) {
	if total <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && !p.verbose {
		p.activity = fmt.Sprintf("%d%% (%s of %s)", 100*done/total, humanSize(done), humanSize(total))
		p.drawLocked(done == total)
	}
}

// end ends the last step.
func (p *buildProgress) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finishLocked()
}

// drawLocked redraws the running step's line, at most every redrawEvery
// unless force. Precondition: mu is held, p.tty.
func (p *buildProgress) drawLocked(force bool) {
	now := time.Now()
	if !force && now.Sub(p.drawn) < redrawEvery {
		return
	}
	p.drawn = now
	text := p.label(p.cur)
	if p.activity != "" {
		text += ": " + p.activity
	}
	fmt.Fprintf(p.w, "\r%s\x1b[K", fit(text, p.width))
}

// finishLocked prints the running step's last line, with its time.
// Precondition: mu is held.
func (p *buildProgress) finishLocked() {
	if p.cur == "" {
		return
	}
	if p.tty && !p.verbose {
		fmt.Fprintf(p.w, "\r%s  %s\x1b[K\n", p.label(p.cur), formatUptime(time.Since(p.at)))
	}
	p.cur = ""
}

// fit shortens s to width runes (0: no limit), ending it with "…".
func fit(s string, width int) string {
	if width <= 1 || utf8.RuneCountInString(s) < width {
		return s
	}
	r := []rune(s)
	return string(r[:width-2]) + "…"
}
