package qcow2

import (
	"testing"

	"github.com/paddock-vm/paddock/disk/qemutest"
)

// Shared helpers (see disk/qemutest).
var (
	tempDir       = qemutest.TempDir
	needTool      = qemutest.NeedTool
	run           = qemutest.Run
	qemuImg       = qemutest.QemuImg
	qemuIO        = qemutest.QemuIO
	qemuCheck     = qemutest.Check
	qemuRaw       = qemutest.Raw
	readAll       = qemutest.ReadAll
	sameBytes     = qemutest.SameBytes
	fillPattern   = qemutest.FillPattern
	writeRawImage = qemutest.WriteRawImage
)

// scaled returns n, or a quarter of it (at least 1) under the race
// detector or -short, to keep CI quick; crash and fuzz depth have their
// own knobs.
func scaled(n int) int {
	if raceEnabled || testing.Short() {
		return max(1, n/4)
	}
	return n
}
