package store

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/paddock-vm/paddock/hypervisor/exit"
)

// TestRecordFromEarlierPaddock reads state.json files written by paddock
// before its exit reasons became exit.Reason (testdata/state-v1-*.json):
// each reads back with its reason and state, and writes back unchanged.
func TestRecordFromEarlierPaddock(t *testing.T) {
	for _, tt := range []struct {
		file   string
		reason exit.Reason
		state  State
	}{
		{"state-v1-vmm-died.json", exit.VMMDied, StateCrashed},
		{"state-v1-reboot.json", exit.Reboot, StateStopped},
	} {
		path := filepath.Join("testdata", tt.file)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := ParseRecord(data, path)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Exit == nil || rec.Exit.Reason != tt.reason || rec.Exit.Detail != "the detail" {
			t.Errorf("%s: exit %+v, want reason %q", tt.file, rec.Exit, tt.reason)
		}
		if st := Derive(rec, Holder{}); st != tt.state {
			t.Errorf("%s: state %s, want %s", tt.file, st, tt.state)
		}
		again, err := rec.marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, data) {
			t.Errorf("%s written back differs:\n%s\nwant\n%s", tt.file, again, data)
		}
	}
}
