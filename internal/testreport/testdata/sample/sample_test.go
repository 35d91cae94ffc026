// Package sample is a test package for testreport's own tests: it is in
// testdata, so `go test ./...` never runs it; TestLiveRun and the
// recorded streams in ../ run it on purpose. Every kind of outcome the
// report must show is here.
package sample

import (
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

func TestUnit(t *testing.T) {}

func TestKVM(t *testing.T) {
	testenv.Declare(t, testenv.HostKVM)
}

func TestMissingTool(t *testing.T) {
	testenv.RequireTool(t, "paddock-no-such-tool", "paddock-no-such-package")
	t.Error("RequireTool returned for a missing tool")
}

func TestLab(t *testing.T) {
	testenv.Declare(t, testenv.Lab)
	for _, name := range []string{"pass", "fail"} {
		t.Run(name, func(t *testing.T) {
			testenv.Declare(t, testenv.Oracle) // the lab outranks it
			if name == "fail" {
				t.Errorf("the %s subtest fails", name)
			}
		})
	}
}

func TestOptional(t *testing.T) {
	if testenv.HasTool(t, "paddock-no-such-tool", "paddock-no-such-package") {
		t.Error("HasTool found a missing tool")
	}
}
