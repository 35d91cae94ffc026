package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-vm/paddock/test/lab"
)

// warmIdentity is what a guest of TestTemplateLab's warm step reports
// about itself (templateWarmStep's who).
type warmIdentity struct {
	hostname, machineID, hostKey, mac, random string
	addrs                                     []string
}

// parseWarmIdentity parses who's line: hostname, machine ID, host key
// fingerprint, MAC, random bytes, then the IPv4 addresses.
func parseWarmIdentity(line string) (warmIdentity, bool) {
	f := strings.Fields(line)
	if len(f) < 5 || len(f[1]) != 32 || !strings.HasPrefix(f[2], "SHA256:") || len(f[3]) != 17 || len(f[4]) != 32 {
		return warmIdentity{}, false
	}
	return warmIdentity{hostname: f[0], machineID: f[1], hostKey: f[2], mac: f[3], random: f[4], addrs: f[5:]}, true
}

// checkWarmClones checks TestTemplateLab's template/warm step: db shut
// down on the power button; the warm template of web was made and two
// warm clones of it started; each clone answered paddock ssh at the
// address of its lease with its own name as hostname, the MAC paddock
// gave it, that one address, and a machine ID, SSH host key, MAC,
// address and /dev/urandom bytes that neither the other clone nor web
// has, and a wall clock that is L1's (within the RTC's second and the
// readings' own), not its snapshot's; both templates' files kept their
// checksums; the clones and the warm template were removed.
func checkWarmClones(t *testing.T, res *lab.Result) {
	t.Helper()
	st := managedStep(t, res, "template/warm")
	if stop := markerValue(st, "host.stop"); !strings.Contains(stop, "the guest shut down after the ACPI power button") {
		t.Errorf("paddock stop: %q, want the guest to shut down on the power button", stop)
	}
	expectMarker(t, st, "host.warm-create", "0")
	expectMarker(t, st, "host.warm-clone", "0")
	web, ok := parseWarmIdentity(markerValue(st, "host.warm-web"))
	if !ok || web.hostname != "web" || len(web.addrs) != 1 {
		t.Errorf("web reports %q: want hostname, machine ID, host key, MAC, random bytes, address", markerValue(st, "host.warm-web"))
	}
	// The identity unit's CPU time so far, against the time it ran.
	if f := strings.Fields(markerValue(st, "host.warm-web-unit")); len(f) == 3 {
		cpu, err1 := strconv.ParseFloat(f[0], 64)
		since, err2 := strconv.ParseFloat(f[1], 64)
		up, err3 := strconv.ParseFloat(f[2], 64)
		if err1 == nil && err2 == nil && err3 == nil && up > since/1e6 {
			t.Logf("web's paddock-identity unit used %.2f s of CPU in its %.0f s (%.2f%%)", cpu/1e9, up-since/1e6, 100*cpu/1e9/(up-since/1e6))
		}
	} else {
		t.Logf("web's paddock-identity unit: %q", markerValue(st, "host.warm-web-unit"))
	}
	seen := map[string]string{}
	unique := func(vm string, id warmIdentity) {
		t.Helper()
		for _, v := range append([]string{id.machineID, id.hostKey, id.mac, id.random}, id.addrs...) {
			if other, dup := seen[v]; dup {
				t.Errorf("%s shares %s with %s", vm, v, other)
			}
			seen[v] = vm
		}
	}
	unique("web", web)
	for _, vm := range []string{"w-1", "w-2"} {
		expectMarker(t, st, "host.warm-"+vm+"-rc", "0")
		line := markerValue(st, "host.warm-"+vm)
		t.Logf("%s: %s", vm, line)
		id, ok := parseWarmIdentity(line)
		if !ok {
			t.Errorf("%s reports %q: want hostname, machine ID, host key, MAC, random bytes, addresses", vm, line)
			continue
		}
		if id.hostname != vm {
			t.Errorf("%s: hostname %q after the restore, want its own name", vm, id.hostname)
		}
		// paddock ls's address (its lease) and paddock inspect's MAC.
		lease := strings.Fields(markerValue(st, "host.warm-"+vm+"-lease"))
		if len(lease) != 2 || len(id.addrs) != 1 || id.addrs[0] != lease[0] || id.mac != lease[1] {
			t.Errorf("%s: the guest has address %q and MAC %s, paddock gave it %q", vm, id.addrs, id.mac, lease)
		}
		unique(vm, id)
		checkWarmClock(t, vm, markerValue(st, "host.warm-"+vm+"-clock"), markerValue(st, "host.warm-"+vm+"-clockset"))
	}
	expectMarker(t, st, "host.warm-verify", "0")
	expectMarker(t, st, "host.template-verify", "0")
	expectMarker(t, st, "host.warm-rm", "0")
	expectMarker(t, st, "host.warm-template-rm", "0")
	for _, span := range []struct{ what, from, to string }{
		{"template create --memory of web", "host.warm-at", "host.warm-made-at"},
		{"clone -n 2 --start to w-1 answering paddock ssh", "host.warm-made-at", "host.warm-w-1-at"},
		{"clone -n 2 --start to w-2 answering paddock ssh", "host.warm-made-at", "host.warm-w-2-at"},
	} {
		if d, err := l1Seconds(st, span.from, span.to); err == nil {
			t.Logf("%s: %.1f s of L1 time", span.what, d)
		}
	}
	t.Logf("the template/warm step took %s", (st.End - st.Begin).Round(time.Second))
}

// checkWarmClock checks a warm clone's wall clock as read over paddock
// ssh between two readings of L1's ("BEFORE GUEST AFTER", UTC seconds):
// the guest's must lie between them, give or take 2 s (the guest's clock
// is set to the middle of the RTC's second; date +%s truncates each
// reading). Restored, the guest's clock counted on from the snapshot's
// instant, well behind L1's; its identity unit set it to the RTC's, and
// set, how far, is logged.
func checkWarmClock(t *testing.T, vm, clock, set string) {
	t.Helper()
	f := strings.Fields(clock)
	var v [3]int64
	ok := len(f) == 3
	for i := 0; ok && i < 3; i++ {
		var err error
		v[i], err = strconv.ParseInt(f[i], 10, 64)
		ok = err == nil
	}
	if !ok {
		t.Errorf("%s: clock readings %q: want L1's, the guest's, L1's in seconds", vm, clock)
		return
	}
	if v[1] < v[0]-2 || v[1] > v[2]+2 {
		t.Errorf("%s: the guest's wall clock reads %d, L1's %d then %d: off by %d s", vm, v[1], v[0], v[2], v[1]-v[0])
	}
	t.Logf("%s: wall clock %+d s from L1's; the identity unit: %q", vm, v[1]-v[0], set)
}
