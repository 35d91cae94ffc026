package boot

import (
	"bytes"
	"testing"
)

// fuzzLoad runs the loader on data as a kernel file and checks the
// invariants of any Entry it returns. A panic or an out-of-bounds access is
// the failure the fuzzer looks for; errors are expected.
func fuzzLoad(t *testing.T, mem *fakeMem, e820 []E820Entry, data []byte) {
	cfg := Config{KernelPath: "fuzz-kernel", Cmdline: "console=ttyS0", E820: e820}
	e, err := loadKernel(mem, cfg, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return
	}
	ram, _ := checkE820(e820)
	if !ram.contains(span{e.KernelStart, e.KernelEnd}) || e.KernelStart < lowMemoryEnd {
		t.Fatalf("kernel %#x-%#x is not in RAM above 1 MiB", e.KernelStart, e.KernelEnd)
	}
	switch e.Protocol {
	case ProtocolBzImage64:
		if e.RIP != KernelLoadAddr+entry64Offset || e.RSI != ParamsAddr {
			t.Fatalf("bzImage entry %#x, RSI %#x", e.RIP, e.RSI)
		}
	case ProtocolPVH:
		if e.RIP < e.KernelStart || e.RIP >= e.KernelEnd || e.RIP >= fourGiB || e.RBX != ParamsAddr {
			t.Fatalf("PVH entry %#x outside the kernel %#x-%#x", e.RIP, e.KernelStart, e.KernelEnd)
		}
	default:
		t.Fatalf("protocol %v", e.Protocol)
	}
}

func FuzzLoadBzImage(f *testing.F) {
	for _, mod := range []func(*bzSpec){
		nil,
		func(s *bzSpec) { s.setupSects = 30 },
		func(s *bzSpec) { s.version = 0x020c; s.jumpLen = 0x66 },
		func(s *bzSpec) { s.initSize = 0 },
		func(s *bzSpec) { s.kernelAlign = 0 },
	} {
		s := bzDefaults()
		s.kernel = s.kernel[:0x400]
		if mod != nil {
			mod(&s)
		}
		f.Add(s.build())
	}
	e820 := pcMap(40)
	mem := newFakeMem(f, e820)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLoad(t, mem, e820, data) })
}

func FuzzLoadELF(f *testing.F) {
	small := func(s elfSpec) elfSpec {
		s.segs = []elfSeg{{paddr: 0x1000000, data: pattern(0x100, 1), memsz: 0x400}}
		return s
	}
	for _, s := range []elfSpec{
		small(defaultELF()),
		func() elfSpec { s := small(defaultELF()); s.noteSection = true; return s }(),
		func() elfSpec { s := small(defaultELF()); s.noteAlign = 8; return s }(),
		func() elfSpec { s := small(defaultELF()); s.notes = s.notes[:1]; return s }(),
	} {
		f.Add(s.build())
	}
	e820 := pcMap(40)
	mem := newFakeMem(f, e820)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLoad(t, mem, e820, data) })
}
