package kvm

import (
	"encoding/binary"
	"testing"
	"unsafe"
)

// fakeRun returns a VCPU whose kvm_run page is a plain buffer holding
// data, as the exit decoders see the kernel's mapping.
func fakeRun(data []byte) *VCPU {
	const size = 3 * PageSize // kvm_run, the PIO page, the coalesced MMIO ring
	words := make([]uint64, size/8)
	mem := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), size)
	copy(mem, data)
	return &VCPU{run: mem, hdr: runHeaderOf(mem)}
}

// runBytes builds a kvm_run prefix: the exit reason and the exit union.
func runBytes(reason ExitReason, union []byte) []byte {
	b := make([]byte, runExitOffset+uintptr(len(union)))
	binary.LittleEndian.PutUint32(b[unsafe.Offsetof(runHeader{}.ExitReason):], uint32(reason))
	copy(b[runExitOffset:], union)
	return b
}

// FuzzExitDecoders feeds arbitrary kvm_run contents to every exit decoder:
// the fields are kernel-written but guest-influenced, and no value may make
// a decoder panic or hand out memory outside the mapping.
func FuzzExitDecoders(f *testing.F) {
	io := make([]byte, 16)
	io[0], io[1] = exitIOOut, 2                     // direction, size
	binary.LittleEndian.PutUint16(io[2:], 0x3F8)    // port
	binary.LittleEndian.PutUint32(io[4:], 3)        // count
	binary.LittleEndian.PutUint64(io[8:], PageSize) // data_offset
	f.Add(runBytes(ExitIO, io))
	hostile := append([]byte(nil), io...)
	hostile[1] = 0xFF
	binary.LittleEndian.PutUint32(hostile[4:], 0xFFFFFFFF)
	binary.LittleEndian.PutUint64(hostile[8:], ^uint64(0)-8)
	f.Add(runBytes(ExitIO, hostile))
	mmio := make([]byte, 24)
	binary.LittleEndian.PutUint64(mmio, 0xFEE00000)
	binary.LittleEndian.PutUint32(mmio[16:], 200) // len > 8
	f.Add(runBytes(ExitMMIO, mmio))
	ev := make([]byte, 8)
	binary.LittleEndian.PutUint32(ev, SystemEventReset)
	binary.LittleEndian.PutUint32(ev[4:], 1000) // ndata > 16
	f.Add(runBytes(ExitSystemEvent, ev))
	f.Add(runBytes(ExitInternalError, ev))

	f.Fuzz(func(t *testing.T, data []byte) {
		c := fakeRun(data)
		inRun := func(b []byte) bool {
			if len(b) == 0 {
				return true
			}
			start := uintptr(unsafe.Pointer(&b[0]))
			base := uintptr(unsafe.Pointer(&c.run[0]))
			return start >= base && start+uintptr(cap(b)) <= base+uintptr(len(c.run))
		}
		_ = c.ExitReason().String()
		io := c.IO()
		if io.Data != nil && (len(io.Data) != io.Size*io.Count || !inRun(io.Data)) {
			t.Fatalf("IO data of %d bytes for size %d count %d, or outside the page", len(io.Data), io.Size, io.Count)
		}
		m := c.MMIO()
		if len(m.Data) > 8 || !inRun(m.Data) {
			t.Fatalf("MMIO data of %d bytes", len(m.Data))
		}
		if ev := c.SystemEvent(); len(ev.Data) > 16 {
			t.Fatalf("system event with %d words", len(ev.Data))
		}
		if ie := c.InternalError(); len(ie.Data) > 16 {
			t.Fatalf("internal error with %d words", len(ie.Data))
		}
		c.FailEntry()
		c.Exception()
		c.HardwareExitReason()
		c.Debug()
		c.Hypercall()
		c.IOAPICEOIVector()
		c.MSR()
		c.IFFlag()
		c.ReadyForInterruptInjection()
		c.RunFlags()
	})
}

func TestExitDecoders(t *testing.T) {
	io := make([]byte, 16)
	io[0], io[1] = exitIOIn, 2
	binary.LittleEndian.PutUint16(io[2:], 0x60)
	binary.LittleEndian.PutUint32(io[4:], 3)
	binary.LittleEndian.PutUint64(io[8:], PageSize)
	c := fakeRun(runBytes(ExitIO, io))
	got := c.IO()
	if !got.In || got.Port != 0x60 || got.Size != 2 || got.Count != 3 || len(got.Data) != 6 || cap(got.Data) != 6 {
		t.Fatalf("IO exit decoded as %+v (cap %d)", got, cap(got.Data))
	}
	got.Data[5] = 0xAB
	if c.run[PageSize+5] != 0xAB {
		t.Fatal("IO data does not alias the kvm_run mapping at data_offset")
	}

	// A data_offset past the mapping yields no data rather than a panic.
	binary.LittleEndian.PutUint64(io[8:], 3*PageSize-4)
	if got := fakeRun(runBytes(ExitIO, io)).IO(); got.Data != nil {
		t.Fatalf("IO data %d bytes past the end of the mapping", len(got.Data))
	}

	mmio := make([]byte, 24)
	binary.LittleEndian.PutUint64(mmio, 0xD0000000)
	binary.LittleEndian.PutUint32(mmio[16:], 4)
	mmio[20] = 1
	c = fakeRun(runBytes(ExitMMIO, mmio))
	if m := c.MMIO(); !m.Write || m.Addr != 0xD0000000 || len(m.Data) != 4 || cap(m.Data) != 4 {
		t.Fatalf("MMIO exit decoded as %+v", m)
	}

	ev := make([]byte, 8+3*8)
	binary.LittleEndian.PutUint32(ev, SystemEventCrash)
	binary.LittleEndian.PutUint32(ev[4:], 2)
	binary.LittleEndian.PutUint64(ev[8:], 0x11)
	binary.LittleEndian.PutUint64(ev[16:], 0x22)
	binary.LittleEndian.PutUint64(ev[24:], 0x33)
	if se := fakeRun(runBytes(ExitSystemEvent, ev)).SystemEvent(); se.Type != SystemEventCrash || len(se.Data) != 2 || se.Data[1] != 0x22 {
		t.Fatalf("system event decoded as %+v", se)
	}
	if ie := fakeRun(runBytes(ExitInternalError, ev)).InternalError(); ie.Suberror != SystemEventCrash || len(ie.Data) != 2 {
		t.Fatalf("internal error decoded as %+v", ie)
	}

	msr := make([]byte, 24)
	binary.LittleEndian.PutUint32(msr[8:], MSRExitReasonUnknown)
	binary.LittleEndian.PutUint32(msr[12:], 0x4b564dff)
	binary.LittleEndian.PutUint64(msr[16:], 99)
	c = fakeRun(runBytes(ExitX86WRMSR, msr))
	if m := c.MSR(); m.Index != 0x4b564dff || m.Reason != MSRExitReasonUnknown || m.Data != 99 {
		t.Fatalf("MSR exit decoded as %+v", m)
	}
	c.CompleteMSR(7, true)
	if c.run[runExitOffset] != 1 || binary.LittleEndian.Uint64(c.run[runExitOffset+16:]) != 7 {
		t.Fatal("CompleteMSR did not write error and data")
	}
}
