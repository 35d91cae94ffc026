package netdev

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestHostID(t *testing.T) {
	dir := t.TempDir()
	etc, dbus := filepath.Join(dir, "machine-id"), filepath.Join(dir, "dbus-machine-id")
	files := []string{etc, dbus}
	host := func() (string, error) { return "box", nil }
	noHost := func() (string, error) { return "", errors.New("no name") }
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want string, hostname func() (string, error)) {
		t.Helper()
		got, err := hostID(files, hostname)
		if err != nil || got != want {
			t.Errorf("hostID = %q, %v; want %q", got, err, want)
		}
	}
	check("hostname:box", host) // neither file
	if _, err := hostID(files, noHost); err == nil {
		t.Error("no machine ID and no host name: no error")
	}
	write(dbus, "bbbb\n")
	check("machine-id:bbbb", host)
	write(etc, "uninitialized\n") // systemd's placeholder during first boot
	check("machine-id:bbbb", host)
	write(etc, "aaaa\n")
	check("machine-id:aaaa", noHost)
}

func TestNICMAC(t *testing.T) {
	a, b := NICMAC("machine-id:aaaa", "web", 0), NICMAC("machine-id:bbbb", "web", 0)
	if a == b {
		t.Errorf("VM web on two hosts has the same MAC %s", a)
	}
	if a != NICMAC("machine-id:aaaa", "web", 0) {
		t.Error("NICMAC is not stable")
	}
	seen := map[MAC]bool{a: true, b: true}
	for _, m := range []MAC{NICMAC("machine-id:aaaa", "web", 1), NICMAC("machine-id:aaaa", "web2", 0), NICMAC("machine-id:aaaa", "we", 0)} {
		if seen[m] {
			t.Errorf("MAC %s repeats", m)
		}
		seen[m] = true
		if !m.Local() || m.Multicast() {
			t.Errorf("%s is not a locally administered unicast address", m)
		}
	}
}
