package exit

import (
	"encoding/json"
	"testing"
)

// TestReasonJSON pins the encoding state.json files written by earlier
// paddocks hold (store.Exit.Reason): a reason must read back from them
// as the same constant.
func TestReasonJSON(t *testing.T) {
	for _, tt := range []struct {
		json   string
		reason Reason
		failed bool
	}{
		{`"poweroff"`, PowerOff, false},
		{`"reboot"`, Reboot, false},
		{`"crash"`, Crash, true},
		{`"stop"`, Stop, false},
		{`"kill"`, Kill, false},
		{`"vmm-died"`, VMMDied, true},
	} {
		var r Reason
		if err := json.Unmarshal([]byte(tt.json), &r); err != nil || r != tt.reason {
			t.Errorf("%s reads as %q, %v; want %q", tt.json, r, err, tt.reason)
		}
		if b, err := json.Marshal(tt.reason); err != nil || string(b) != tt.json {
			t.Errorf("%q encodes as %s, %v; want %s", tt.reason, b, err, tt.json)
		}
		if tt.reason.Failed() != tt.failed {
			t.Errorf("%q.Failed() = %v", tt.reason, !tt.failed)
		}
	}
}
