package virtiotest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/paddock-vm/paddock/hypervisor/devices/devicestest"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
)

// Transport is how the driver reaches a virtio-pci function: its
// configuration space and BAR 0. *virtio.PCI implements it; the machine's
// tests adapt its buses to it.
type Transport interface {
	ConfigRead(offset int, data []byte)
	ConfigWrite(offset int, data []byte)
	ReadBAR(bar int, off uint64, data []byte)
	WriteBAR(bar int, off uint64, data []byte)
}

// DefaultTimeout bounds each wait for an interrupt.
const DefaultTimeout = 20 * time.Second

// MSIAddress is the message address the driver programs (the LAPIC).
const MSIAddress = 0xfee0_0000

// Driver is a virtio-pci driver for tests. It is used from one goroutine.
type Driver struct {
	T    Transport
	Mem  *Memory
	IRQ  *Interrupts       // MSI-X deliveries; nil when the function has none
	INTx *devicestest.Line // the INTx line; nil when not wired

	// Register locations found in the capabilities.
	common, isr, device, notify uint64
	notifyMult                  uint64
	msixCap                     int
	msixTable                   uint64
	msixVectors                 int
	pciCfgCap                   int

	// Features is the negotiated feature set after Init.
	Features uint64
	Queues   []*Queue
	// Timeout bounds waits (default DefaultTimeout).
	Timeout time.Duration
	msix    bool
}

// New finds the function's virtio capabilities.
func New(t Transport, mem *Memory, irq *Interrupts, intx *devicestest.Line) (*Driver, error) {
	d := &Driver{T: t, Mem: mem, IRQ: irq, INTx: intx, Timeout: DefaultTimeout}
	var found [6]bool
	ptr := int(d.cfg8(0x34))
	for hops := 0; ptr != 0; hops++ {
		if hops > 48 || ptr < 0x40 || ptr > 0xfc {
			return nil, fmt.Errorf("virtiotest: bad capability list at %#x", ptr)
		}
		switch id := d.cfg8(ptr); id {
		case 0x09:
			typ := d.cfg8(ptr + 3)
			bar := d.cfg8(ptr + 4)
			off := uint64(d.cfg32(ptr + 8))
			if bar != 0 {
				return nil, fmt.Errorf("virtiotest: capability type %d in BAR %d", typ, bar)
			}
			switch typ {
			case 1:
				d.common = off
			case 2:
				d.notify = off
				d.notifyMult = uint64(d.cfg32(ptr + 16))
			case 3:
				d.isr = off
			case 4:
				d.device = off
			case 5:
				d.pciCfgCap = ptr
			}
			if int(typ) < len(found) {
				found[typ] = true
			}
		case 0x11:
			d.msixCap = ptr
			ctrl := d.cfg16(ptr + 2)
			d.msixVectors = int(ctrl&0x7ff) + 1
			table := d.cfg32(ptr + 4)
			if table&7 != 0 {
				return nil, fmt.Errorf("virtiotest: MSI-X table in BAR %d", table&7)
			}
			d.msixTable = uint64(table &^ 7)
		}
		ptr = int(d.cfg8(ptr + 1))
	}
	for typ, name := range map[int]string{1: "common", 2: "notify", 3: "ISR", 4: "device", 5: "PCI configuration access"} {
		if !found[typ] {
			return nil, fmt.Errorf("virtiotest: no %s capability", name)
		}
	}
	return d, nil
}

func (d *Driver) cfg8(off int) uint8 {
	var b [1]byte
	d.T.ConfigRead(off, b[:])
	return b[0]
}

func (d *Driver) cfg16(off int) uint16 {
	var b [2]byte
	d.T.ConfigRead(off, b[:])
	return binary.LittleEndian.Uint16(b[:])
}

func (d *Driver) cfg32(off int) uint32 {
	var b [4]byte
	d.T.ConfigRead(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// Read8 .. Write64 access BAR 0.
func (d *Driver) read(off uint64, n int) uint64 {
	var b [8]byte
	d.T.ReadBAR(0, off, b[:n])
	return binary.LittleEndian.Uint64(b[:])
}

func (d *Driver) write(off uint64, n int, v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	d.T.WriteBAR(0, off, b[:n])
}

// Common configuration offsets.
const (
	devFeatSel = 0x00
	devFeat    = 0x04
	drvFeatSel = 0x08
	drvFeat    = 0x0c
	msixConfig = 0x10
	numQueues  = 0x12
	status     = 0x14
	generation = 0x15
	queueSel   = 0x16
	queueSize  = 0x18
	queueVec   = 0x1a
	queueEn    = 0x1c
	queueNotif = 0x1e
	queueDesc  = 0x20
	queueAvail = 0x28
	queueUsed  = 0x30
)

// Status reads the device status.
func (d *Driver) Status() uint8 { return uint8(d.read(d.common+status, 1)) }

// SetStatus writes the device status.
func (d *Driver) SetStatus(s uint8) { d.write(d.common+status, 1, uint64(s)) }

// Generation reads the configuration generation.
func (d *Driver) Generation() uint8 { return uint8(d.read(d.common+generation, 1)) }

// NumQueues reads num_queues.
func (d *Driver) NumQueues() int { return int(d.read(d.common+numQueues, 2)) }

// DeviceFeatures reads the 64 feature bits the device offers.
func (d *Driver) DeviceFeatures() uint64 {
	d.write(d.common+devFeatSel, 4, 0)
	lo := d.read(d.common+devFeat, 4)
	d.write(d.common+devFeatSel, 4, 1)
	hi := d.read(d.common+devFeat, 4)
	return hi<<32 | lo
}

// Common reads n bytes of the common configuration at off.
func (d *Driver) Common(off uint64, n int) uint64 { return d.read(d.common+off, n) }

// SetCommon writes n bytes of the common configuration at off.
func (d *Driver) SetCommon(off uint64, n int, v uint64) { d.write(d.common+off, n, v) }

// ReadConfig reads n bytes of the device-specific configuration.
func (d *Driver) ReadConfig(off uint64, n int) []byte {
	b := make([]byte, n)
	d.T.ReadBAR(0, d.device+off, b)
	return b
}

// ReadISR reads (and so clears) the ISR status.
func (d *Driver) ReadISR() uint8 { return uint8(d.read(d.isr, 1)) }

// Reset writes 0 to the status and waits for it to read back 0.
func (d *Driver) Reset() error {
	d.SetStatus(0)
	if s := d.Status(); s != 0 {
		return fmt.Errorf("virtiotest: status %#x after reset", s)
	}
	d.Queues = nil
	return nil
}

// Options configure Init.
type Options struct {
	// Features to accept; Init fails if the device does not set
	// FEATURES_OK for them.
	Features uint64
	// QueueSizes sets each queue's size; 0 or a missing entry uses the
	// device's maximum. Queues beyond Queues are left disabled.
	QueueSizes []uint16
	// Queues is how many queues to enable (0: all).
	Queues int
	// MSIX uses MSI-X (one vector per queue, the last for configuration
	// changes); otherwise the function interrupts through INTx.
	MSIX bool
}

// ErrFeaturesRejected is returned by Init when the device clears
// FEATURES_OK.
var ErrFeaturesRejected = errors.New("virtiotest: device rejected the features")

// Init runs the virtio initialisation sequence (virtio v1.2 3.1.1).
func (d *Driver) Init(o Options) error {
	if err := d.Reset(); err != nil {
		return err
	}
	d.SetStatus(virtio.StatusAcknowledge)
	d.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
	d.write(d.common+drvFeatSel, 4, 0)
	d.write(d.common+drvFeat, 4, o.Features&0xffffffff)
	d.write(d.common+drvFeatSel, 4, 1)
	d.write(d.common+drvFeat, 4, o.Features>>32)
	d.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK)
	if d.Status()&virtio.StatusFeaturesOK == 0 {
		d.SetStatus(d.Status() | virtio.StatusFailed)
		return ErrFeaturesRejected
	}
	d.Features = o.Features
	d.msix = o.MSIX
	if o.MSIX {
		if d.msixCap == 0 || d.IRQ == nil {
			return errors.New("virtiotest: MSI-X requested, but the function has none or no sink")
		}
		ctrl := d.cfg16(d.msixCap + 2)
		d.setCfg16(d.msixCap+2, ctrl|0x8000)
	}
	n := d.NumQueues()
	if o.Queues > 0 {
		n = min(n, o.Queues)
	}
	for i := 0; i < n; i++ {
		var size uint16
		if i < len(o.QueueSizes) {
			size = o.QueueSizes[i]
		}
		q, err := d.setupQueue(i, size)
		if err != nil {
			return err
		}
		d.Queues = append(d.Queues, q)
	}
	if o.MSIX {
		cfgVec := uint64(min(n, d.msixVectors-1))
		d.write(d.common+msixConfig, 2, cfgVec)
		if got := d.read(d.common+msixConfig, 2); got != cfgVec {
			return fmt.Errorf("virtiotest: config vector %d reads back as %#x", cfgVec, got)
		}
		d.unmaskVector(int(cfgVec))
	}
	d.SetStatus(d.Status() | virtio.StatusDriverOK)
	return nil
}

func (d *Driver) setCfg16(off int, v uint16) {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], v)
	d.T.ConfigWrite(off, b[:])
}

// ConfigVector is the MSI-X vector of configuration changes after Init.
func (d *Driver) ConfigVector() int { return int(d.read(d.common+msixConfig, 2)) }

// unmaskVector programs vector v's message (data = v) and unmasks it,
// the way Linux does: message first, mask bit last.
func (d *Driver) unmaskVector(v int) {
	e := d.msixTable + 16*uint64(v)
	d.write(e, 4, MSIAddress)
	d.write(e+4, 4, 0)
	d.write(e+8, 4, uint64(v)+0x30)
	d.write(e+12, 4, 0)
}

// MaskVector sets vector v's mask bit.
func (d *Driver) MaskVector(v int, masked bool) {
	var m uint64
	if masked {
		m = 1
	}
	d.write(d.msixTable+16*uint64(v)+12, 4, m)
}

// setupQueue allocates and programs queue i.
func (d *Driver) setupQueue(i int, size uint16) (*Queue, error) {
	d.write(d.common+queueSel, 2, uint64(i))
	max := uint16(d.read(d.common+queueSize, 2))
	if max == 0 {
		return nil, fmt.Errorf("virtiotest: queue %d does not exist", i)
	}
	if size == 0 {
		size = max
	}
	d.write(d.common+queueSize, 2, uint64(size))
	n := uint64(size)
	q := &Queue{d: d, Index: i, Size: size, chains: map[uint16][]uint16{}}
	q.Desc = d.Mem.Alloc(16*n, 16)
	q.Avail = d.Mem.Alloc(6+2*n, 2)
	q.Used = d.Mem.Alloc(6+8*n, 4)
	for j := size; j > 0; j-- {
		q.free = append(q.free, j-1)
	}
	d.write(d.common+queueDesc, 4, q.Desc)
	d.write(d.common+queueDesc+4, 4, q.Desc>>32)
	d.write(d.common+queueAvail, 8, q.Avail)
	d.write(d.common+queueUsed, 8, q.Used)
	q.notifyOff = d.read(d.common+queueNotif, 2)
	q.vector = virtio.NoVector
	if d.msix {
		v := uint64(i)
		if i >= d.msixVectors-1 {
			v = uint64(d.msixVectors - 2) // share the last queue vector
		}
		d.write(d.common+queueVec, 2, v)
		q.vector = uint16(d.read(d.common+queueVec, 2))
		if q.vector == virtio.NoVector {
			return nil, fmt.Errorf("virtiotest: queue %d: vector %d refused", i, v)
		}
		d.unmaskVector(int(q.vector))
	}
	d.write(d.common+queueEn, 2, 1)
	return q, nil
}

// Kick notifies queue i.
func (d *Driver) Kick(i int) {
	q := d.Queues[i]
	d.write(d.notify+q.notifyOff*d.notifyMult, 2, uint64(i))
}

// WaitInterrupt waits for an interrupt for queue i: its MSI-X vector,
// or (INTx) a raised line whose ISR has the queue bit, which it clears.
func (d *Driver) WaitInterrupt(i int) error {
	return d.waitIRQ(int(d.Queues[i].vector), 1)
}

// WaitConfigInterrupt waits for a configuration change interrupt.
func (d *Driver) WaitConfigInterrupt() error {
	v := -1
	if d.msix {
		v = d.ConfigVector()
	}
	return d.waitIRQ(v, 2)
}

func (d *Driver) waitIRQ(vector int, isrBit uint8) error {
	timeout := time.After(d.Timeout)
	if d.msix {
		select {
		case <-d.IRQ.C(vector):
			return nil
		case <-timeout:
			return fmt.Errorf("virtiotest: no interrupt on vector %d within %v", vector, d.Timeout)
		}
	}
	for {
		if d.INTx.High() {
			if d.ReadISR()&isrBit != 0 {
				return nil
			}
			continue
		}
		select {
		case <-d.INTx.C():
		case <-timeout:
			return fmt.Errorf("virtiotest: INTx not raised within %v", d.Timeout)
		}
	}
}
