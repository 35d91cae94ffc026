package e2e

import (
	"math"
	"testing"
)

// TestPairedRatio: the paired ratio is the geometric mean of the rounds'
// ratios, inverted for latency, with the rounds paddock won.
func TestPairedRatio(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ps, qs []float64
		higher bool
		want   float64
		wins   int
	}{
		{"throughput", []float64{200, 100}, []float64{100, 200}, true, 1, 1},
		{"steady gain", []float64{300, 150, 30}, []float64{200, 100, 20}, true, 1.5, 3},
		{"latency", []float64{2, 4}, []float64{4, 8}, false, 2, 2},
		{"tie is no win", []float64{5}, []float64{5}, true, 1, 0},
	} {
		got, wins := pairedRatio(tc.ps, tc.qs, tc.higher)
		if math.Abs(got-tc.want) > 1e-9 || wins != tc.wins {
			t.Errorf("%s: got %v with %d wins, want %v with %d", tc.name, got, wins, tc.want, tc.wins)
		}
	}
}
