package snapshot

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// page returns n bytes, zero but for the given offsets, set to 0xaa.
func page(n int, set ...int) []byte {
	b := make([]byte, n)
	for _, i := range set {
		b[i] = 0xaa
	}
	return b
}

// TestBytesRoundTrip: every value comes back as it was, in the shorter
// of the two forms.
func TestBytesRoundTrip(t *testing.T) {
	full := bytes.Repeat([]byte{1, 2, 3}, 100)
	for _, tc := range []struct {
		name   string
		b      Bytes
		sparse bool // written in the sparse form
	}{
		{"nil", nil, false},
		{"empty", Bytes{}, false},
		{"all zero", page(4096), true},
		{"no zeros", full, false},
		{"over MaxBytesLen", page(MaxBytesLen+1, 5), false},
		{"header and capability", page(4096, 0, 1, 2, 3, 60, 61, 200), true},
		{"last byte", page(1024, 1023), true},
		{"a gap shorter than minZeroGap stays in the run", page(4096, 0, minZeroGap), true},
		{"a gap of minZeroGap splits the run", page(4096, 0, minZeroGap+1), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := json.Marshal(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if sparse := bytes.HasPrefix(j, []byte("{")); sparse != tc.sparse {
				t.Errorf("sparse = %v, want %v: %s", sparse, tc.sparse, j)
			}
			plain, _ := json.Marshal([]byte(tc.b))
			if len(j) > len(plain) {
				t.Errorf("%d bytes written, more than the plain form's %d", len(j), len(plain))
			}
			var got Bytes
			if err := json.Unmarshal(j, &got); err != nil {
				t.Fatalf("%s: %v", j, err)
			}
			if !bytes.Equal(got, tc.b) || (got == nil) != (tc.b == nil) {
				t.Errorf("%s read back as %v, want %v", j, got, tc.b)
			}
		})
	}
}

// TestBytesRuns: zeros between runs are left out, and a gap of fewer
// than minZeroGap zeros is not worth a run of its own.
func TestBytesRuns(t *testing.T) {
	b := Bytes(page(4096, 0, 10, 10+minZeroGap, 100, 4095))
	runs := b.sparse()
	want := []struct{ at, n int }{{0, 11 + minZeroGap}, {100, 1}, {4095, 1}}
	if len(runs) != len(want) {
		t.Fatalf("runs %+v, want %+v", runs, want)
	}
	for i, r := range runs {
		if r.At != want[i].at || len(r.Data) != want[i].n {
			t.Errorf("run %d: %d bytes at %d, want %d at %d", i, len(r.Data), r.At, want[i].n, want[i].at)
		}
	}
}

// TestBytesVersion2: a plain base64 string, as version 2 files hold
// every byte string, is read as encoding/json reads a []byte.
func TestBytesVersion2(t *testing.T) {
	want := page(4096, 7)
	j, _ := json.Marshal(want)
	var got Bytes
	if err := json.Unmarshal(j, &got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
	var st struct{ Data Bytes }
	if err := json.Unmarshal([]byte(`{"Data": null}`), &st); err != nil || st.Data != nil {
		t.Errorf("null: %v, %v", st.Data, err)
	}
}

// TestBytesRefused: a sparse value that claims too much, or whose runs
// are out of order, overlap, are empty or end past its length, is
// refused with an error that says so; nothing is allocated for a length
// over the cap.
func TestBytesRefused(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"Len": 70000}`, "a byte string of 70000 bytes, want 0 to 65536"},
		{`{"Len": -1}`, "a byte string of -1 bytes"},
		{`{"Len": 8, "Runs": [{"At": 4, "Data": "AQ=="}, {"At": 2, "Data": "AQ=="}]}`, "run 1 at 2: before the end of the run before it (5)"},
		{`{"Len": 8, "Runs": [{"At": 2, "Data": "AQID"}, {"At": 4, "Data": "AQ=="}]}`, "run 1 at 4: before the end of the run before it (5)"},
		{`{"Len": 8, "Runs": [{"At": -1, "Data": "AQ=="}]}`, "run 0 at -1: before the end"},
		{`{"Len": 8, "Runs": [{"At": 7, "Data": "AQI="}]}`, "run 0 (2 bytes at 7) ends past its length 8"},
		{`{"Len": 1, "Runs": [{"At": 0, "Data": "AQIDBAUG"}]}`, "run 0 (6 bytes at 0) ends past its length 1"},
		{`{"Len": 8, "Runs": [{"At": 3, "Data": ""}]}`, "run 0 at 3 is empty"},
		{`{"Len": 8, "Extra": 1}`, "unknown field"},
		{`{"Len": "8"}`, "a byte string"},
		{`"not base64!"`, "illegal base64"},
		{`12`, "a byte string"},
	} {
		var b Bytes
		err := json.Unmarshal([]byte(tc.in), &b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.in, err, tc.want)
		}
	}
}

// FuzzBytes: no input makes the reader panic or allocate over the cap,
// and whatever it reads is written and read back the same.
func FuzzBytes(f *testing.F) {
	for _, b := range []Bytes{nil, {}, page(4096, 0, 1, 60, 4095), page(1024)} {
		j, _ := json.Marshal(b)
		f.Add(j)
	}
	f.Add([]byte(`{"Len": 8, "Runs": [{"At": 2, "Data": "AQID"}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var b Bytes
		if json.Unmarshal(in, &b) != nil {
			return
		}
		if len(b) > MaxBytesLen && bytes.TrimSpace(in)[0] == '{' {
			t.Fatalf("%d bytes from a sparse value, over the cap", len(b))
		}
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var again Bytes
		if err := json.Unmarshal(j, &again); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%s read back as %v (%v), want %v", j, again, err, b)
		}
	})
}
