//go:build sample_panic

package sample

import "testing"

func TestPanic(t *testing.T) {
	var m map[string]int
	m["boom"]++ // panics: the test binary dies
}

func TestAfterPanic(t *testing.T) {}
