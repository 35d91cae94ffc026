package guest

import "strings"

// suggest returns the name in names closest to name, if one is close
// enough to be a likely typo: within two edits (one for short names), or
// one that contains name or is contained in it.
func suggest(name string, names []string) string {
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

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
