package main

import (
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/guest"
)

func TestWriteTable(t *testing.T) {
	rows := lsRows([]*guest.Info{
		{Name: "web", State: "running", CPUs: 2, Memory: 1 << 30, Backend: "native", Uptime: 3725, Addresses: []guest.Address{{IP: "10.77.0.2"}}},
		{Name: "a-rather-long-name-for-a-database-server-in-the-east", State: "stopped", CPUs: 16, Memory: 64 << 30, Backend: "native"},
		{Name: "broken", State: "crashed", Addresses: []guest.Address{{IP: "10.77.0.3"}, {IP: "10.78.0.9"}}},
	})
	tests := []struct {
		width int
		want  string
	}{
		{0, "" +
			"NAME                                                  STATE    CPUS  MEMORY  UPTIME  ADDRESS       BACKEND\n" +
			"web                                                   running  2     1GiB    1h02m   10.77.0.2     native\n" +
			"a-rather-long-name-for-a-database-server-in-the-east  stopped  16    64GiB   -       -             native\n" +
			"broken                                                crashed  -     -       -       10.77.0.3 +1  -\n"},
		{80, "" +
			"NAME                        STATE    CPUS  MEMORY  UPTIME  ADDRESS       BACKEND\n" +
			"web                         running  2     1GiB    1h02m   10.77.0.2     native\n" +
			"a-rather-long-name-for-a-…  stopped  16    64GiB   -       -             native\n" +
			"broken                      crashed  -     -       -       10.77.0.3 +1  -\n"},
		{20, "" + // narrower than the fixed columns: names keep 8
			"NAME      STATE    CPUS  MEMORY  UPTIME  ADDRESS       BACKEND\n" +
			"web       running  2     1GiB    1h02m   10.77.0.2     native\n" +
			"a-rathe…  stopped  16    64GiB   -       -             native\n" +
			"broken    crashed  -     -       -       10.77.0.3 +1  -\n"},
	}
	for _, tt := range tests {
		var b strings.Builder
		writeTable(&b, rows, tt.width)
		if b.String() != tt.want {
			t.Errorf("width %d:\n%s\nwant:\n%s", tt.width, b.String(), tt.want)
		}
		for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			if n := len([]rune(line)); tt.width >= 80 && n > tt.width {
				t.Errorf("width %d: line %q is %d wide", tt.width, line, n)
			}
		}
	}
}

func TestFormatUptime(t *testing.T) {
	tests := map[time.Duration]string{
		0:                                     "0s",
		45 * time.Second:                      "45s",
		12*time.Minute + 3*time.Second:        "12m03s",
		5*time.Hour + 7*time.Minute:           "5h07m",
		76*time.Hour + 59*time.Minute:         "3d04h",
		59*time.Second + 600*time.Millisecond: "1m00s",
	}
	for d, want := range tests {
		if got := formatUptime(d); got != want {
			t.Errorf("formatUptime(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestLabelFilter(t *testing.T) {
	labels := map[string]string{"tier": "web", "team": ""}
	tests := []struct {
		args []string
		want bool
	}{
		{nil, true},
		{[]string{"tier=web"}, true},
		{[]string{"tier=db"}, false},
		{[]string{"tier"}, true},
		{[]string{"team="}, true},
		{[]string{"tier=web", "team"}, true},
		{[]string{"tier=web", "owner"}, false},
	}
	for _, tt := range tests {
		f, err := parseLabelFilter(tt.args)
		if err != nil {
			t.Fatal(err)
		}
		if got := matchLabels(labels, f); got != tt.want {
			t.Errorf("match %q = %v, want %v", tt.args, got, tt.want)
		}
	}
	if _, err := parseLabelFilter([]string{"=web"}); err == nil {
		t.Error("an empty key was accepted")
	}
}
