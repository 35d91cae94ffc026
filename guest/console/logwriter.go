package console

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"
)

// Bounds of a LogWriter.
const (
	// LogQueue is how much console output a LogWriter holds in memory
	// while its file does not keep up; beyond it, output is dropped.
	LogQueue = 1 << 20
	// LogCloseTimeout bounds how long Close waits for the file to take
	// what is queued.
	LogCloseTimeout = 10 * time.Second
)

// LogWriter writes console output to a LogFile from its own goroutine,
// so a slow or full disk never holds up the guest: Write only queues the
// output (up to LogQueue bytes) and never fails. Output that does not fit
// the queue, or that the file refuses (a full file system), is dropped
// and counted; once writing works again, a notice saying how much was
// lost, and why, is written before the output that follows, and logf (if
// set) hears of the failure and of the recovery. Safe for concurrent use.
type LogWriter struct {
	log  *LogFile
	logf func(format string, args ...any)
	done chan struct{}

	mu     sync.Mutex
	wake   *sync.Cond // signalled when output is queued or Close begins
	queue  []byte     // output waiting for the goroutine
	spare  []byte     // the goroutine's previous buffer, reused
	lost   int64      // dropped since the last notice reached the file
	why    string     // why the first of those bytes was dropped
	lostAt int        // where in queue the loss happened: the notice's place
	total  uint64     // dropped in all
	closed bool
}

// OpenLogWriter opens the log at path (OpenLog) and starts its writer
// goroutine; Close stops it. logf, if set, hears when writing fails and
// when it works again.
func OpenLogWriter(path string, lim Limits, perm os.FileMode, logf func(format string, args ...any)) (*LogWriter, error) {
	l, err := OpenLog(path, lim, perm)
	if err != nil {
		return nil, err
	}
	return newLogWriter(l, logf), nil
}

// AdoptLogWriter is OpenLogWriter for a log whose files another process
// opened (AdoptLog).
func AdoptLogWriter(files []*os.File, path string, lim Limits, logf func(format string, args ...any)) (*LogWriter, error) {
	l, err := AdoptLog(files, path, lim)
	if err != nil {
		return nil, err
	}
	return newLogWriter(l, logf), nil
}

// newLogWriter starts the writer goroutine of l.
func newLogWriter(l *LogFile, logf func(format string, args ...any)) *LogWriter {
	w := &LogWriter{log: l, logf: logf, done: make(chan struct{})}
	w.wake = sync.NewCond(&w.mu)
	go w.loop()
	return w
}

// Write queues p for the file. It never blocks on the file and always
// reports success: what cannot be queued is dropped and counted.
func (w *LogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || len(w.queue)+len(p) > LogQueue {
		if w.lost == 0 {
			w.lostAt = len(w.queue)
		}
		w.dropLocked(int64(len(p)), "the disk did not keep up")
		return len(p), nil
	}
	w.queue = append(w.queue, p...)
	w.wake.Signal()
	return len(p), nil
}

// dropLocked counts n dropped bytes. Precondition: mu is held.
func (w *LogWriter) dropLocked(n int64, why string) {
	if n <= 0 {
		return
	}
	if w.lost == 0 {
		w.why = why
	}
	w.lost += n
	w.total += uint64(n)
}

// Dropped returns how many bytes of output never reached the file.
func (w *LogWriter) Dropped() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total
}

// loop writes queued output until Close, then what is left.
func (w *LogWriter) loop() {
	defer close(w.done)
	failing := false
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && !w.closed {
			w.wake.Wait()
		}
		if len(w.queue) == 0 {
			w.mu.Unlock()
			return
		}
		buf := w.queue
		w.queue, w.spare = w.spare[:0], nil
		lost, why, at := w.lost, w.why, w.lostAt
		w.lostAt = 0 // a later loss comes before the next queue's output
		w.mu.Unlock()

		// The output queued before the loss, the notice, the rest.
		n, err := w.log.Write(buf[:at])
		if err == nil {
			err = w.notice(lost, why)
		}
		if err == nil {
			var m int
			m, err = w.log.Write(buf[at:])
			n += m
		}
		w.mu.Lock()
		if err != nil {
			w.dropLocked(int64(len(buf)-n), reason(err))
			w.lostAt = 0 // it comes before everything queued since
		}
		w.spare = buf
		w.mu.Unlock()

		switch {
		case err != nil && !failing:
			failing = true
			w.report("console log: %s; dropping console output until writing works again", reason(err))
		case err == nil && failing:
			failing = false
			w.report("console log %s: writing again", w.log.path)
		}
	}
}

// notice writes, where the loss happened, how much output was dropped and
// why, and forgets it once written.
func (w *LogWriter) notice(lost int64, why string) error {
	if lost == 0 {
		return nil
	}
	msg := fmt.Sprintf("\r\n[paddock: %d bytes of console output were not written to this log: %s]\r\n", lost, why)
	if n, err := w.log.Write([]byte(msg)); err != nil {
		if n > 0 {
			// A torn notice: end it, so the output does not run on.
			_, _ = w.log.Write([]byte("]\r\n"))
		}
		return err
	}
	w.mu.Lock()
	w.lost -= lost
	w.mu.Unlock()
	return nil
}

// reason says why a write failed, in the words of the system call when
// there is one: "write /var/log/web.log: no space left on device".
func reason(err error) string {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		return pe.Error()
	case errors.As(err, &le):
		return le.Error()
	}
	return err.Error()
}

// report tells logf, if set.
func (w *LogWriter) report(format string, args ...any) {
	if w.logf != nil {
		w.logf(format, args...)
	}
}

// Close writes what is queued, stops the goroutine and closes the file.
// Output written after Close is dropped. A file that takes longer than
// LogCloseTimeout (a hung network file system) is abandoned to the
// goroutine, which then ends with the process: Close returns an error.
// Call it once.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	w.closed = true
	w.wake.Signal()
	w.mu.Unlock()
	t := time.NewTimer(LogCloseTimeout)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		return fmt.Errorf("console: log %s: still writing after %s; gave up", w.log.path, LogCloseTimeout)
	}
	w.mu.Lock()
	lost, why := w.lost, w.why
	w.mu.Unlock()
	_ = w.notice(lost, why) // output dropped at the end, if the file takes it
	return w.log.Close()
}
