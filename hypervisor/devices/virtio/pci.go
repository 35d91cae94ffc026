package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/paddock-vm/paddock/hypervisor/devices"
	"github.com/paddock-vm/paddock/hypervisor/devices/pci"
)

// PCI identity of modern (non-transitional) virtio devices (virtio v1.2
// section 4.1.2).
const (
	PCIVendor     = 0x1af4
	pciDeviceBase = 0x1040 // + device ID
	pciRevision   = 1
	pciSubsystem  = 0x1100
)

// The virtio-pci registers all live in BAR 0, a 32-bit memory BAR of
// BARSize bytes.
const (
	BAR     = 0
	BARSize = 0x4000

	commonOffset = 0x0000
	commonLen    = 0x40
	isrOffset    = 0x0800
	isrLen       = 4
	deviceOffset = 0x1000
	deviceLen    = 0x1000
	// NotifyOffset is where the queue notification registers start;
	// queue i's is at NotifyOffset + i*NotifyMultiplier.
	NotifyOffset     = 0x2000
	NotifyMultiplier = 4
	notifyLen        = 0x1000
	msixTableOffset  = 0x3000
	msixPBAOffset    = 0x3800

	// MaxQueues is the most queues a device may have: one notification
	// register each in the notify region.
	MaxQueues = notifyLen / NotifyMultiplier
	// MaxVectors is the most MSI-X vectors a function has.
	MaxVectors = 64
)

// Capability types (virtio_pci_cap.cfg_type).
const (
	capCommon = 1
	capNotify = 2
	capISR    = 3
	capDevice = 4
	capPCICfg = 5

	capIDVendor = 0x09
	capIDMSIX   = 0x11
)

// NoVector is the MSI-X vector number that means "no interrupt".
const NoVector = 0xffff

// ISR status bits.
const (
	isrQueue  = 1
	isrConfig = 2
)

// PCIConfig configures a virtio-pci function.
type PCIConfig struct {
	// Device is the device model. Required.
	Device Device
	// Memory is guest RAM. Required.
	Memory GuestMemory
	// MSIX delivers MSI-X interrupts; nil leaves out the MSI-X
	// capability, so the driver falls back to INTx.
	MSIX MSIX
	// Vectors is the number of MSI-X vectors (default: one per queue
	// plus one for configuration changes; at most MaxVectors).
	Vectors int
	// INTx is the function's INTA# line (level-triggered); nil for none.
	INTx devices.InterruptLine
	// OnBARChange is told when the guest moves or enables/disables the
	// BAR (see pci.NewConfigSpace).
	OnBARChange func(pci.BARChange)
	// Name identifies the device in messages ("virtio-blk disks[0]").
	Name string
	// Logf reports what the guest got wrong (malformed rings, bad
	// registers) and host errors delivering interrupts, through a
	// LogLimiter. Nil discards.
	Logf func(format string, args ...any)
}

// queueConfig is the driver-programmed state of one queue.
type queueConfig struct {
	QueueConfig
	vector uint16
}

// PCI is a modern virtio-pci function: the configuration space with the
// virtio capabilities and MSI-X, and BAR 0's registers. It implements
// pci.Function; the machine maps BAR 0 and forwards accesses to ReadBAR
// and WriteBAR. All methods are safe for concurrent use.
type PCI struct {
	*pci.ConfigSpace
	dev      Device
	mem      GuestMemory
	name     string
	log      *devices.LogLimiter
	logf     func(format string, args ...any) // log.Printf
	offered  uint64
	queues   []*Queue
	msixCap  int // offset of the MSI-X capability, 0 if none
	pciCfg   int // offset of the PCI configuration access capability
	nvec     int
	msixSink MSIX
	intx     devices.InterruptLine

	// mu guards the driver-visible state below and serialises device
	// activation and reset. Device goroutines never take it.
	mu          sync.Mutex
	status      uint8
	devFeatSel  uint32
	drvFeatSel  uint32
	drvFeatures uint64
	queueSel    uint16
	qcfg        []queueConfig
	active      bool
	// quiesced is set while an active device is stopped by Quiesce (or
	// restored and not yet resumed): its queues stay mapped at their
	// positions, no goroutine of the device runs.
	quiesced bool
	closed   bool

	// Set from device goroutines.
	needsReset atomic.Bool
	generation atomic.Uint32

	// irq guards interrupt state: it is taken by device goroutines.
	irq irqState
}

// NewPCI returns the virtio-pci function of cfg.Device.
func NewPCI(cfg PCIConfig) (*PCI, error) {
	if cfg.Device == nil || cfg.Memory == nil {
		return nil, errors.New("virtio: NewPCI needs a device and guest memory")
	}
	name := cfg.Name
	if name == "" {
		name = cfg.Device.Type().String()
	}
	sizes := cfg.Device.QueueSizes()
	if len(sizes) == 0 || len(sizes) > MaxQueues {
		return nil, fmt.Errorf("virtio: %s: %d queues; want 1 to %d", name, len(sizes), MaxQueues)
	}
	for i, s := range sizes {
		if s == 0 || s&(s-1) != 0 || s > MaxQueueSize {
			return nil, fmt.Errorf("virtio: %s: queue %d maximum size %d is not a power of two up to %d", name, i, s, MaxQueueSize)
		}
	}
	p := &PCI{
		dev: cfg.Device, mem: cfg.Memory, name: name,
		offered:  cfg.Device.Features() | TransportFeatures,
		msixSink: cfg.MSIX, intx: cfg.INTx,
	}
	p.log = NewLogLimiter(cfg.Logf, nil)
	p.logf = p.log.Printf
	if p.msixSink != nil {
		p.nvec = cfg.Vectors
		if p.nvec == 0 {
			p.nvec = min(len(sizes)+1, MaxVectors)
		}
		if p.nvec < 1 || p.nvec > MaxVectors {
			return nil, fmt.Errorf("virtio: %s: %d MSI-X vectors; want 1 to %d", name, p.nvec, MaxVectors)
		}
		p.irq.table = make([]msixEntry, p.nvec)
		for i := range p.irq.table {
			p.irq.table[i].masked = true
		}
		p.irq.pending = make([]uint64, (p.nvec+63)/64)
	}
	p.irq.qVectors = make([]uint16, len(sizes))
	p.qcfg = make([]queueConfig, len(sizes))
	for i, s := range sizes {
		q, err := newQueue(i, s, func() { p.interrupt(isrQueue, p.queueVector(i)) })
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("virtio: %s: %w", name, err)
		}
		p.queues = append(p.queues, q)
	}
	p.resetRegisters()

	var pin uint8
	if cfg.INTx != nil {
		pin = 1
	}
	onChange := cfg.OnBARChange
	cs, err := pci.NewConfigSpace(pci.Header{
		VendorID:          PCIVendor,
		DeviceID:          pciDeviceBase + uint16(cfg.Device.Type()),
		Revision:          pciRevision,
		Class:             classOf(cfg.Device.Type()),
		SubsystemVendorID: PCIVendor,
		Subsystem:         pciSubsystem,
		InterruptPin:      pin,
		BARs:              [6]pci.BAR{{Kind: pci.BARMem32, Size: BARSize}},
	}, onChange)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("virtio: %s: %w", name, err)
	}
	p.ConfigSpace = cs
	if err := p.addCapabilities(len(sizes)); err != nil {
		p.Close()
		return nil, fmt.Errorf("virtio: %s: %w", name, err)
	}
	return p, nil
}

// classOf returns the PCI class code a device type presents.
func classOf(id DeviceID) uint32 {
	switch id {
	case IDNet:
		return 0x020000 // network controller, Ethernet
	case IDBlock:
		return 0x018000 // mass storage controller, other
	case IDConsole:
		return 0x078000 // communication controller, other
	}
	return 0xff0000 // unassigned class
}

// virtioCap returns the body (after ID and next pointer) of a
// virtio_pci_cap of length capLen.
func virtioCap(capLen int, cfgType uint8, offset, length uint32) []byte {
	b := make([]byte, capLen-2)
	b[0] = byte(capLen)
	b[1] = cfgType
	b[2] = BAR
	binary.LittleEndian.PutUint32(b[6:], offset)
	binary.LittleEndian.PutUint32(b[10:], length)
	return b
}

// addCapabilities adds the virtio capabilities and MSI-X.
func (p *PCI) addCapabilities(nq int) error {
	caps := []struct {
		body, mask []byte
	}{
		{virtioCap(16, capCommon, commonOffset, commonLen), nil},
		{virtioCap(16, capISR, isrOffset, isrLen), nil},
		{virtioCap(16, capDevice, deviceOffset, deviceLen), nil},
	}
	notify := virtioCap(20, capNotify, NotifyOffset, uint32(max(NotifyMultiplier*nq, 2)))
	binary.LittleEndian.PutUint32(notify[14:], NotifyMultiplier)
	caps = append(caps, struct{ body, mask []byte }{notify, nil})
	// VIRTIO_PCI_CAP_PCI_CFG: bar, offset, length and the data window
	// are the driver's to write.
	cfgBody := virtioCap(20, capPCICfg, 0, 0)
	cfgMask := make([]byte, len(cfgBody))
	cfgMask[2] = 0xff
	for i := 6; i < 18; i++ {
		cfgMask[i] = 0xff
	}
	for _, c := range caps {
		if _, err := p.AddCapability(capIDVendor, c.body, c.mask); err != nil {
			return err
		}
	}
	off, err := p.AddCapability(capIDVendor, cfgBody, cfgMask)
	if err != nil {
		return err
	}
	p.pciCfg = off
	if p.msixSink != nil {
		body := make([]byte, 10)
		binary.LittleEndian.PutUint16(body[0:], uint16(p.nvec-1))
		binary.LittleEndian.PutUint32(body[2:], msixTableOffset|BAR)
		binary.LittleEndian.PutUint32(body[6:], msixPBAOffset|BAR)
		mask := make([]byte, 10)
		mask[1] = 0xc0 // enable and function mask
		if p.msixCap, err = p.AddCapability(capIDMSIX, body, mask); err != nil {
			return err
		}
	}
	return nil
}

// Queues returns the device's queues, for the machine to register each
// one's Kick as an ioeventfd at NotifyOffset + i*NotifyMultiplier.
func (p *PCI) Queues() []*Queue { return p.queues }

// Close resets the device (stopping its goroutines) and releases the
// queues' eventfds.
func (p *PCI) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for _, q := range p.queues {
		q.Stop()
	}
	if p.active && !p.quiesced {
		p.dev.Reset()
	}
	p.active, p.quiesced = false, false
	p.mu.Unlock()
	var errs []error
	for _, q := range p.queues {
		errs = append(errs, q.close())
	}
	return errors.Join(errs...)
}

// resetRegisters returns the driver-visible state to its power-on
// values. Precondition: mu is held (or p is not shared yet).
func (p *PCI) resetRegisters() {
	p.status = 0
	p.devFeatSel, p.drvFeatSel, p.drvFeatures, p.queueSel = 0, 0, 0, 0
	for i, q := range p.queues {
		p.qcfg[i] = queueConfig{QueueConfig: QueueConfig{Size: q.maxSize}, vector: NoVector}
	}
	p.needsReset.Store(false)
	p.irq.mu.Lock()
	p.irq.cfgVector = NoVector
	for i := range p.irq.qVectors {
		p.irq.qVectors[i] = NoVector
	}
	p.irq.isr = 0
	if p.ConfigSpace != nil {
		p.updateINTxLocked()
	}
	p.irq.mu.Unlock()
}

// ConfigRead implements pci.Function: the PCI configuration access
// capability's data window reads BAR 0.
func (p *PCI) ConfigRead(offset int, data []byte) {
	p.ConfigSpace.ConfigRead(offset, data)
	if win := p.pciCfg + 16; offset < win+4 && offset+len(data) > win {
		bar, off, n, _, ok := p.pciCfgWindow()
		if !ok {
			return
		}
		buf := make([]byte, n)
		p.ReadBAR(bar, off, buf)
		var w [4]byte
		copy(w[:], buf)
		for i := range data {
			if o := offset + i - win; o >= 0 && o < 4 {
				data[i] = w[o]
			}
		}
	}
}

// ConfigWrite implements pci.Function: it watches the MSI-X enable and
// function mask bits and the PCI configuration access window.
func (p *PCI) ConfigWrite(offset int, data []byte) {
	p.ConfigSpace.ConfigWrite(offset, data)
	if p.msixCap != 0 && offset < p.msixCap+4 && offset+len(data) > p.msixCap+2 {
		ctrl := binary.LittleEndian.Uint16(p.Bytes(p.msixCap+2, 2))
		p.setMSIXControl(ctrl&0x8000 != 0, ctrl&0x4000 != 0)
	}
	if win := p.pciCfg + 16; offset < win+4 && offset+len(data) > win {
		bar, off, n, data, ok := p.pciCfgWindow()
		if !ok {
			return
		}
		p.WriteBAR(bar, off, data[:n])
	}
	if offset < 6 && offset+len(data) > 4 {
		// The command register's INTx disable bit gates the line.
		p.irq.mu.Lock()
		p.updateINTxLocked()
		p.irq.mu.Unlock()
	}
}

// pciCfgWindow decodes the access the PCI configuration access capability
// describes: 1, 2 or 4 bytes of BAR 0, and the data window's bytes. It
// reads the capability once, so that another vCPU rewriting it cannot
// pair the length it checked with another offset or data.
func (p *PCI) pciCfgWindow() (bar int, off uint64, n int, data []byte, ok bool) {
	b := p.Bytes(p.pciCfg+4, 16)
	bar = int(b[0])
	off = uint64(binary.LittleEndian.Uint32(b[4:]))
	n = int(binary.LittleEndian.Uint32(b[8:]))
	if bar != BAR || (n != 1 && n != 2 && n != 4) || off%uint64(n) != 0 || off+uint64(n) > BARSize {
		return 0, 0, 0, nil, false
	}
	return bar, off, n, b[12:], true
}

// ReadBAR reads BAR bar at offset off. Unimplemented registers read as
// zero.
func (p *PCI) ReadBAR(bar int, off uint64, data []byte) {
	clear(data)
	if bar != BAR || off >= BARSize || uint64(len(data)) > BARSize-off {
		return
	}
	switch {
	case off < commonOffset+commonLen:
		p.readCommon(int(off-commonOffset), data)
	case off >= isrOffset && off < isrOffset+isrLen:
		if off == isrOffset {
			data[0] = p.readISR()
		}
	case off >= deviceOffset && off < deviceOffset+deviceLen:
		p.dev.ReadConfig(int(off-deviceOffset), data)
	case off >= msixTableOffset && off < msixPBAOffset:
		p.readMSIXTable(int(off-msixTableOffset), data)
	case off >= msixPBAOffset:
		p.readPBA(int(off-msixPBAOffset), data)
	}
}

// WriteBAR writes BAR bar at offset off.
func (p *PCI) WriteBAR(bar int, off uint64, data []byte) {
	if bar != BAR || off >= BARSize || uint64(len(data)) > BARSize-off {
		return
	}
	switch {
	case off < commonOffset+commonLen:
		p.writeCommon(int(off-commonOffset), data)
	case off >= deviceOffset && off < deviceOffset+deviceLen:
		p.dev.WriteConfig(int(off-deviceOffset), data)
	case off >= NotifyOffset && off < NotifyOffset+notifyLen:
		// Reached only when no ioeventfd caught the write (another
		// width, or none registered): ring the same doorbell.
		i := int(off-NotifyOffset) / NotifyMultiplier
		if i < len(p.queues) {
			if err := p.queues[i].kick.Signal(); err != nil {
				p.logf("%s: queue %d notification: %v", p.name, i, err)
			}
		}
	case off >= msixTableOffset && off < msixPBAOffset:
		p.writeMSIXTable(int(off-msixTableOffset), data)
	}
}
