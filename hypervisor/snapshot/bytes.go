package snapshot

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Bytes is a byte string of a device's saved state (a configuration
// space, an XSAVE area, a local APIC's register page) as a section's JSON
// holds it. Such strings are mostly zeros, and a restore decodes every
// byte of a section's JSON, so Bytes leaves the zeros out:
//
//	{"Len": 4096, "Runs": [{"At": 0, "Data": "<base64>"}, ...]}
//
// is Len bytes, zero but for each run's Data at offset At; runs come in
// increasing order of At and do not overlap. A value with few zeros is
// written as a plain base64 string instead, as encoding/json writes a
// []byte, and that form (the only one of format version 2) is read as
// well. null is a nil Bytes.
type Bytes []byte

// MaxBytesLen caps the length a sparse Bytes may claim, which a reader
// allocates whatever the file's size: the longest byte string of a
// machine's state is an XSAVE area, under 12 KiB with every component
// the hardware has today.
const MaxBytesLen = 64 << 10

// minZeroGap is the shortest run of zeros MarshalJSON leaves out between
// two runs of data: a shorter one costs less written out than a new run.
const minZeroGap = 24

// sparseBytes is the sparse form of Bytes.
type sparseBytes struct {
	Len  int
	Runs []byteRun `json:",omitempty"`
}

// byteRun is one run of a sparse Bytes.
type byteRun struct {
	At   int
	Data []byte
}

// sparse returns b's runs of data: the stretches without minZeroGap
// zeros in a row, with the zeros at their ends trimmed.
func (b Bytes) sparse() []byteRun {
	var runs []byteRun
	i := 0
	for {
		for i < len(b) && b[i] == 0 {
			i++
		}
		if i == len(b) {
			return runs
		}
		start, end, zeros := i, i, 0
		for ; i < len(b) && zeros < minZeroGap; i++ {
			if b[i] == 0 {
				zeros++
			} else {
				zeros, end = 0, i+1
			}
		}
		runs = append(runs, byteRun{At: start, Data: b[start:end]})
		i = end
	}
}

// MarshalJSON writes b in its sparse form, or as a base64 string when
// that is no longer or b is over MaxBytesLen.
func (b Bytes) MarshalJSON() ([]byte, error) {
	if b == nil {
		return []byte("null"), nil
	}
	plain, err := json.Marshal([]byte(b))
	if err != nil || len(b) > MaxBytesLen {
		return plain, err // longer than a sparse value may be
	}
	sparse, err := json.Marshal(sparseBytes{Len: len(b), Runs: b.sparse()})
	if err != nil || len(sparse) >= len(plain) {
		return plain, err
	}
	return sparse, nil
}

// UnmarshalJSON reads either form. A sparse value must have a length
// from 0 to MaxBytesLen and runs in order, inside it, without overlap.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case bytes.Equal(data, []byte("null")):
		*b = nil
		return nil
	case len(data) > 0 && data[0] == '"':
		var plain []byte
		if err := json.Unmarshal(data, &plain); err != nil {
			return err
		}
		*b = plain
		return nil
	}
	var s sparseBytes
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("a byte string: %w", err)
	}
	if s.Len < 0 || s.Len > MaxBytesLen {
		return fmt.Errorf("a byte string of %d bytes, want 0 to %d", s.Len, MaxBytesLen)
	}
	out := make([]byte, s.Len)
	next := 0
	for i, r := range s.Runs {
		switch {
		case r.At < next:
			return fmt.Errorf("a byte string's run %d at %d: before the end of the run before it (%d)", i, r.At, next)
		case len(r.Data) == 0:
			return fmt.Errorf("a byte string's run %d at %d is empty", i, r.At)
		case r.At > s.Len-len(r.Data):
			return fmt.Errorf("a byte string's run %d (%d bytes at %d) ends past its length %d", i, len(r.Data), r.At, s.Len)
		}
		next = r.At + copy(out[r.At:], r.Data)
	}
	*b = out
	return nil
}
