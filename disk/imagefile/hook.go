package imagefile

import "sync/atomic"

// reopenHook, when set, is called by Reopen with the path before it opens
// anything (see OnReopen).
var reopenHook atomic.Pointer[func(path string)]

// OnReopen makes every Reopen call fn with its path before it opens the
// file, until the test t ends. That is the moment between a caller's
// judgement of a file on its O_PATH descriptor and the open: a test swaps
// the name for another file there to show that what is opened and locked
// is still the file judged (a caller that judged, then opened by name,
// would open the other file). Only tests call it; tests that do must not
// run in parallel with each other.
func OnReopen(t interface{ Cleanup(func()) }, fn func(path string)) {
	prev := reopenHook.Swap(&fn)
	t.Cleanup(func() { reopenHook.Store(prev) })
}

// runReopenHook calls the hook OnReopen set, if any.
func runReopenHook(path string) {
	if fn := reopenHook.Load(); fn != nil {
		(*fn)(path)
	}
}
