package guest

import (
	"strings"

	"github.com/paddock-vm/paddock/guest/store"
)

// suggest returns the name in names closest to name, if one is close
// enough to be a likely typo: within two edits (one for short names), or
// one that contains name or is contained in it.
func suggest(name string, names []string) string {
	if len(name) > 2*store.MaxNameLen {
		return "" // not a typo of a name
	}
	best, bestDist := "", 0
	for _, n := range names {
		d := editDistance(name, n)
		limit := 2
		if len(name) <= 3 {
			limit = 1
		}
		near := d <= limit || len(name) >= 3 && (strings.Contains(n, name) || strings.Contains(name, n))
		if near && (best == "" || d < bestDist) {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b,
// in bytes: insertions, deletions, substitutions and transpositions of
// adjacent bytes ("wbe" is one edit from "web") each count one.
func editDistance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
