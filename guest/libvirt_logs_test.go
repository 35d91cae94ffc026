package guest

import (
	"context"
	"io"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// followLines is how many numbered lines TestLibvirtLogsFollow's guest
// prints, one every 50 ms: its console log grows through some hundred
// downloads of paddock logs -f.
const followLines = 300

// TestLibvirtLogsFollow: logs -f of a libvirt VM whose guest writes its
// console for many seconds gives every line once, in order, and ends
// when the guest powers off. Each look for new output is a download of
// the growing log, and libvirtd may send a download's data, even its
// end, before the reply that opens it (a few percent of them): without
// replyFirst (guest/libvirt/order.go) go-libvirt lost that data and its
// connection then answered nothing, and logs -f hung (as once seen).
func TestLibvirtLogsFollow(t *testing.T) {
	ctx := context.Background()
	m, _ := libvirtManager(t)
	if _, err := m.CreateContext(ctx, libvirtVM(t, "follow"), ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Remove(context.Background(), "follow", true) })
	if _, err := m.Start(ctx, "follow"); err != nil {
		t.Fatal(err)
	}
	waitHello(t, m, "follow")
	rc, err := m.Logs(ctx, "follow", LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(rc) // ends when the guest powered off
		got <- b
	}()
	// The shell's exit powers the hello guest off.
	typeLine(t, m, "follow", "i=0; while [ $i -lt "+strconv.Itoa(followLines)+" ]; do echo follow-$i-line; i=$((i+1)); usleep 50000; done; exit", "follow-0-line")
	var out []byte
	select {
	case out = <-got:
	case <-time.After(guestTimeout):
		rc.Close()
		t.Fatalf("logs -f did not end within %v of the guest's last line: %q", guestTimeout, tailOf(string(<-got)))
	}
	lines := regexp.MustCompile(`follow-([0-9]+)-line`).FindAllSubmatch(out, -1)
	for i, l := range lines {
		if n, _ := strconv.Atoi(string(l[1])); n != i {
			t.Fatalf("line %d of the follow is follow-%s-line: lost or repeated output around %q", i, l[1], tailOf(string(out)))
		}
	}
	if len(lines) != followLines {
		t.Errorf("the follow gave %d of %d lines: %q", len(lines), followLines, tailOf(string(out)))
	}
}
