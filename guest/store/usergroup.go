package store

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// System account databases read by privateGroup.
const (
	passwdFile = "/etc/passwd"
	groupFile  = "/etc/group"
)

// privateGroup reports whether gid is uid's user private group, the
// Debian and Ubuntu convention (with umask 002) in which each user has a
// group of their own: the group is uid's primary group, has uid's name,
// and no other user belongs to it, as a listed member or by primary
// group. Write permission for such a group gives no one else anything,
// so CheckTrusted allows it, as Debian's ssh does. Accounts are read from
// the files at passwd and group; if they cannot be read, the answer is
// no.
func privateGroup(uid, gid uint32, passwd, group string) bool {
	name := ""
	primary := false
	others := false
	err := eachEntry(passwd, func(f []string) {
		if len(f) < 4 {
			return
		}
		u, err1 := strconv.ParseUint(f[2], 10, 32)
		g, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return
		}
		switch {
		case uint32(u) == uid:
			name, primary = f[0], uint32(g) == gid
		case uint32(g) == gid:
			others = true
		}
	})
	if err != nil || name == "" || !primary || others {
		return false
	}
	found := false
	err = eachEntry(group, func(f []string) {
		if len(f) < 4 {
			return
		}
		g, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil || uint32(g) != gid {
			return
		}
		if found || f[0] != name {
			others = true // a second entry for the gid, or another name
		}
		found = true
		for _, m := range strings.Split(f[3], ",") {
			if m != "" && m != name {
				others = true
			}
		}
	})
	return err == nil && found && !others
}

// eachEntry calls fn with the colon-separated fields of each line of the
// account file at path, comments and NIS "+" lines skipped.
func eachEntry(path string, fn func([]string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	return sc.Err()
}
