package devicestest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// UpdateGolden is the environment variable that makes Golden rewrite its
// files instead of comparing: PADDOCK_UPDATE_GOLDEN=1 go test ./...
const UpdateGolden = "PADDOCK_UPDATE_GOLDEN"

// Golden checks a device's saved state against its golden file,
// testdata/NAME.golden.json: the state is encoded as snapshots encode
// it (JSON) and must read exactly as the file, so a change to a State
// type (a field renamed, added or retyped) shows as a difference, which
// needs a new snapshot format version. With PADDOCK_UPDATE_GOLDEN=1 the
// file is written instead. Golden returns the file decoded into a new
// T, strictly (unknown fields are errors), for the test to restore: the
// golden state must load into a device as it is.
func Golden[T any](t testing.TB, name string, st T) T {
	t.Helper()
	got, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name+".golden.json")
	if os.Getenv(UpdateGolden) == "1" {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (write it with %s=1)", err, UpdateGolden)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the saved state differs from %s: the snapshot format changed, which needs a new format version (then rewrite the file with %s=1)\n got: %s\nwant: %s", path, UpdateGolden, got, want)
	}
	var back T
	dec := json.NewDecoder(bytes.NewReader(want))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return back
}
