package hostnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Probe says whether this host offers what managed networks need (paddock
// doctor): TUN/TAP (/dev/net/tun), Linux bridges, and nftables for their
// NAT and port forwards. Each result is nil, or why not.
func Probe() (tun, bridge, nft error) {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		tun = fmt.Errorf("hostnet: %w", err)
	} else {
		f.Close()
	}
	bridge = probeBridge()
	conn, err := nftables.New()
	if err == nil {
		_, err = conn.ListTables()
	}
	if err != nil {
		nft = fmt.Errorf("hostnet: nftables: %w", err)
	}
	return tun, bridge, nft
}

// probeBridge finds bridge support: loaded (/sys/module/bridge), built
// in, or a module the kernel can load when paddock makes a bridge.
func probeBridge() error {
	if _, err := os.Stat("/sys/module/bridge"); err == nil {
		return nil
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("hostnet: bridges: %w", err)
	}
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	for _, index := range []string{"modules.builtin", "modules.dep"} {
		b, err := os.ReadFile(filepath.Join(dir, index))
		if err == nil && strings.Contains(string(b), "net/bridge/bridge.ko") {
			return nil
		}
	}
	return errors.New("hostnet: bridges: the kernel has no bridge module (not loaded, not built in, not in " + dir + ")")
}
