package vmm

import (
	"context"
	"net"
)

// dial connects to a unix socket (short paths only: test stores live in
// short temporary directories).
func dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}
