package qcow2

// l2Ref is one distinct L2 table that L1 tables point to.
type l2Ref struct {
	off  int64 // host offset of the table
	l1i  int64 // index of the first L1 entry that points to it
	refs int64 // how many L1 entries point to it
}

// l2Tally gathers the distinct L2 tables of one or more L1 tables, in the
// order of their first L1 entry. A damaged or hostile L1 table may name
// one L2 table millions of times: code that walks every L2 table visits
// each distinct one once and scales what it does by refs, so its work is
// bounded by the file, not by the L1 entries times the L2 entries.
type l2Tally struct {
	refs  []l2Ref
	index map[int64]int
}

// add counts one L1 entry, at index l1i, pointing to the table at off.
func (t *l2Tally) add(off, l1i int64) {
	if t.index == nil {
		t.index = make(map[int64]int)
	}
	if i, ok := t.index[off]; ok {
		t.refs[i].refs++
		return
	}
	t.index[off] = len(t.refs)
	t.refs = append(t.refs, l2Ref{off: off, l1i: l1i, refs: 1})
}

// distinctL2 returns the distinct L2 tables l1 points to.
func distinctL2(l1 []uint64) []l2Ref {
	var t l2Tally
	for l1i, l1e := range l1 {
		if off := int64(l1e & l1OffsetMask); off != 0 {
			t.add(off, int64(l1i))
		}
	}
	return t.refs
}
