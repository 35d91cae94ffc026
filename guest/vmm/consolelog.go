package vmm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/console"
)

// ConsoleLogPerm is the mode of a spec's console.log that paddock
// creates.
const ConsoleLogPerm = 0o640

// OpenConsoleLogs opens the files vm's console output goes to: managed,
// a managed VM's console.log in its state directory ("" for none), and
// the spec's console.log, if set: from its files handed (Handles.
// ConsoleLog, which it takes over) if there are any, else by path. Each
// is a console.LogWriter bounded by
// the spec's console.log_size and log_keep, which never holds the guest
// up. logf, if set, hears of write failures. It returns the writers and a
// function that flushes and closes them.
func OpenConsoleLogs(vm *configs.VM, managed string, handed []*os.File, logf func(format string, args ...any)) ([]io.Writer, func(), error) {
	lim := console.Limits{Size: int64(vm.Console.LogSize), Keep: vm.Console.LogKeep}
	var logs []*console.LogWriter
	closeAll := func() {
		for _, l := range logs {
			if err := l.Close(); err != nil && logf != nil {
				logf("%v", err)
			}
		}
	}
	var sinks []io.Writer
	for _, f := range []struct {
		path  string
		perm  os.FileMode
		field string // the spec's field, for errors
	}{{managed, 0o600, ""}, {vm.Console.Log, ConsoleLogPerm, "console.log: "}} {
		if f.path == "" {
			continue
		}
		var l *console.LogWriter
		var err error
		if f.path == vm.Console.Log && handed != nil {
			l, err = console.AdoptLogWriter(handed, f.path, lim, logf)
		} else {
			l, err = console.OpenLogWriter(f.path, lim, f.perm, logf)
		}
		if err != nil {
			closeAll()
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe // "open PATH: permission denied" says it all
			}
			return nil, nil, fmt.Errorf("%s%w", f.field, err)
		}
		logs = append(logs, l)
		sinks = append(sinks, l)
	}
	return sinks, closeAll, nil
}
