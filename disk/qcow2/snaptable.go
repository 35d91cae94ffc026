package qcow2

import (
	"bytes"
	"encoding/binary"
	"time"
)

// snapshotEntry is one entry of the snapshot table, as stored.
type snapshotEntry struct {
	l1Offset    uint64
	l1Size      uint32
	id          string
	name        string
	dateSec     uint32
	dateNsec    uint32
	vmClockNsec uint64
	vmStateSize uint64
	diskSize    uint64 // 0 when the entry predates the field
	hasDiskSize bool
	icount      uint64
	// extraTail is the extra data beyond the 24 bytes paddock knows,
	// preserved verbatim when the table is rewritten.
	extraTail []byte
}

// parseSnapshotTable decodes n snapshot table entries from buf. Every
// length field is bounds-checked against buf.
func parseSnapshotTable(buf []byte, n int) ([]snapshotEntry, int, error) {
	var out []snapshotEntry
	off := 0
	be := binary.BigEndian
	for i := 0; i < n; i++ {
		if len(buf)-off < 40 {
			return nil, 0, formatErr("snapshot table entry %d at byte %d is truncated", i, off)
		}
		p := buf[off:]
		var s snapshotEntry
		s.l1Offset = be.Uint64(p[0:])
		s.l1Size = be.Uint32(p[8:])
		idLen := int(be.Uint16(p[12:]))
		nameLen := int(be.Uint16(p[14:]))
		s.dateSec = be.Uint32(p[16:])
		s.dateNsec = be.Uint32(p[20:])
		s.vmClockNsec = be.Uint64(p[24:])
		s.vmStateSize = uint64(be.Uint32(p[32:]))
		extraLen := int(be.Uint32(p[36:]))
		if extraLen > maxSnapshotExtra {
			return nil, 0, formatErr("snapshot %d has %d bytes of extra data (limit %d)", i, extraLen, maxSnapshotExtra)
		}
		total := 40 + extraLen + idLen + nameLen
		if total > len(p) {
			return nil, 0, formatErr("snapshot table entry %d (%d bytes) runs past the table", i, total)
		}
		extra := p[40 : 40+extraLen]
		if len(extra) >= 8 {
			s.vmStateSize = be.Uint64(extra[0:])
		}
		if len(extra) >= 16 {
			s.diskSize = be.Uint64(extra[8:])
			s.hasDiskSize = true
		}
		s.icount = ^uint64(0)
		if len(extra) >= 24 {
			s.icount = be.Uint64(extra[16:])
		}
		if len(extra) > snapshotExtraLen {
			s.extraTail = bytes.Clone(extra[snapshotExtraLen:])
		}
		s.id = string(p[40+extraLen : 40+extraLen+idLen])
		s.name = string(p[40+extraLen+idLen : total])
		out = append(out, s)
		off += (total + 7) &^ 7
		if off > len(buf) {
			off = len(buf)
		}
	}
	return out, off, nil
}

// marshalSnapshotTable encodes entries. Every entry gets the 24 bytes of
// extra data QEMU writes; diskSize fills in entries that lacked one.
func marshalSnapshotTable(entries []snapshotEntry, diskSize uint64) []byte {
	var b []byte
	be := binary.BigEndian
	for _, s := range entries {
		extraLen := snapshotExtraLen + len(s.extraTail)
		ent := make([]byte, 40+extraLen+len(s.id)+len(s.name))
		be.PutUint64(ent[0:], s.l1Offset)
		be.PutUint32(ent[8:], s.l1Size)
		be.PutUint16(ent[12:], uint16(len(s.id)))
		be.PutUint16(ent[14:], uint16(len(s.name)))
		be.PutUint32(ent[16:], s.dateSec)
		be.PutUint32(ent[20:], s.dateNsec)
		be.PutUint64(ent[24:], s.vmClockNsec)
		if s.vmStateSize <= 0xffffffff {
			be.PutUint32(ent[32:], uint32(s.vmStateSize))
		}
		be.PutUint32(ent[36:], uint32(extraLen))
		be.PutUint64(ent[40:], s.vmStateSize)
		ds := s.diskSize
		if !s.hasDiskSize {
			ds = diskSize
		}
		be.PutUint64(ent[48:], ds)
		be.PutUint64(ent[56:], s.icount)
		copy(ent[64:], s.extraTail)
		copy(ent[40+extraLen:], s.id)
		copy(ent[40+extraLen+len(s.id):], s.name)
		b = append(b, ent...)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

// date returns the snapshot's creation time.
func (s *snapshotEntry) date() time.Time {
	return time.Unix(int64(s.dateSec), int64(s.dateNsec))
}
