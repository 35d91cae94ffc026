package machine

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"
)

// inPort answers every 32-bit read with 0xabc00000 plus the number of
// the read, and pauses the machine from inside the read it is told to:
// the vCPU then parks right after that IN exit.
type inPort struct {
	m       *Machine
	n       atomic.Uint32
	pauseAt uint32
}

func (d *inPort) ReadPort(port uint16, data []byte) {
	n := d.n.Add(1)
	binary.LittleEndian.PutUint32(data, 0xabc0_0000+n)
	if n == d.pauseAt {
		d.m.setState(statePaused)
	}
}

func (d *inPort) WritePort(port uint16, data []byte) {}

// TestPauseCompletesIO pauses a vCPU on the exit of an IN instruction:
// before it parks, the vCPU completes the instruction (one KVM_RUN under
// immediate_exit), so the value the device returned is in RAX and RIP is
// past the IN. Without that, the saved registers of a snapshot taken now
// would lack the read, and the restored guest would see another value.
func TestPauseCompletesIO(t *testing.T) {
	requireKVM(t)
	m, err := New(Config{KVM: testKVM(t), CPUs: 1, Memory: 64 << 20}, BootConfig{Kernel: guestKernel(t, "inloop", nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dev := &inPort{m: m, pauseAt: 5}
	if err := m.ports.register(0x510, 4, dev); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	waitParked(t, m, 1)
	regs, err := m.vcpus[0].k.Regs()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := uint32(regs.RAX), uint32(0xabc0_0000+dev.pauseAt); got != want {
		t.Fatalf("paused on the IN exit: EAX = %#x, want the value read, %#x", got, want)
	}
	mem, err := m.Memory().Slice(0x90000, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := binary.LittleEndian.Uint32(mem), uint32(0xabc0_0000+dev.pauseAt-1); got != want {
		t.Fatalf("the guest stored %#x, want %#x: it ran past the paused IN", got, want)
	}
	if n := dev.n.Load(); n != dev.pauseAt {
		t.Fatalf("%d reads, want %d: completing the IN must not read the port again", n, dev.pauseAt)
	}
	cancel()
	<-done
}
