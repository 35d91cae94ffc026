package dnsfwd

import (
	"io/fs"
	"syscall"
)

// inode is a file's inode number, 0 if unknown.
func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
