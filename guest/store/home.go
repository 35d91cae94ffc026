// Package store is paddock's state directory: where managed VMs live
// between commands. Under the home directory ($PADDOCK_HOME, see
// DefaultHome) each VM has a directory vms/NAME holding
//
//	vm.yaml      the resolved VM spec (configs' schema)
//	state.json   the record the VMM keeps of its run (Record)
//	lock         the per-VM lock every mutating command takes (Lock)
//	vmm.lock     the lock the VMM holds for its whole life (RunLock)
//	ctl.sock     the VMM's control socket (guest/api)
//	console.log  the guest's console, rotated to console.log.1
//	vmm.log      the VMM's own messages (its stderr), previous in vmm.log.1
//	formats.json the formats paddock detected for its disks (DiskFormat)
//	libvirt.json where a libvirt VM lives: host, domain, volumes
//	from.json    for a VM made from a template: which one (FromRecord)
//	disks/       the disks paddock made for it: overlays on the
//	             template's base disks
//
// and each template a directory templates/NAME (see Template).
//
// Files are replaced atomically (temporary file, fsync, rename, fsync of
// the directory), VMs appear and disappear atomically (a directory
// renamed into or out of vms/), and what a VM's state is comes from facts
// (is the VMM's lock held, what did the VMM record) through Derive.
//
// The tree is private: directories are created with mode 0700 and files
// with 0600. A spec decides what the host opens and boots, so Open and
// VM refuse a tree that anyone but the current user and root could change
// (CheckTrusted, *UnsafeError).
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// EnvHome overrides the home directory.
const EnvHome = "PADDOCK_HOME"

// RootHome is the home directory of root when $PADDOCK_HOME is unset.
const RootHome = "/var/lib/paddock"

// DefaultHome returns paddock's state directory: $PADDOCK_HOME if set,
// /var/lib/paddock for root, else $XDG_DATA_HOME/paddock (by default
// ~/.local/share/paddock). The directory may not exist yet.
func DefaultHome() (string, error) {
	if h := os.Getenv(EnvHome); h != "" {
		abs, err := filepath.Abs(h)
		if err != nil {
			return "", fmt.Errorf("store: $%s: %w", EnvHome, err)
		}
		return abs, nil
	}
	if os.Geteuid() == 0 {
		return RootHome, nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "paddock"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("store: no home directory for paddock's state: set $PADDOCK_HOME")
	}
	return filepath.Join(home, ".local", "share", "paddock"), nil
}
