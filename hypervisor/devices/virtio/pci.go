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

// MSIMessage is an MSI-X table entry's message.
type MSIMessage struct {
	Address uint64
	Data    uint32
}

// MSIX delivers one function's MSI-X messages. The machine implements it
// with a KVM GSI route and an irqfd per vector, so Fire costs one eventfd
// write and no exit. Both may be called from any goroutine.
type MSIX interface {
	// Route sets the message vector v delivers. The transport calls it
	// when the guest unmasks a vector or changes an unmasked vector's
	// message.
	Route(vector int, msg MSIMessage) error
	// Fire delivers vector v's routed message.
	Fire(vector int) error
}

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
	// registers) and host errors delivering interrupts. Nil discards.
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
	logf     func(format string, args ...any)
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
	closed      bool

	// Set from device goroutines.
	needsReset atomic.Bool
	generation atomic.Uint32

	// irq guards interrupt state: it is taken by device goroutines.
	irq irqState
}

// irqState is the function's interrupt state: MSI-X table and pending
// bits, the vectors the driver assigned, and the INTx ISR.
type irqState struct {
	mu        sync.Mutex
	enabled   bool // MSI-X enable bit
	funcMask  bool // MSI-X function mask bit
	table     []msixEntry
	pending   []uint64
	cfgVector uint16
	qVectors  []uint16
	isr       uint8
	intxHigh  bool
}

// msixEntry is one MSI-X table entry and what was last routed for it.
type msixEntry struct {
	msg    MSIMessage
	masked bool
	routed bool
	route  MSIMessage
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
		dev: cfg.Device, mem: cfg.Memory, name: name, logf: cfg.Logf,
		offered:  cfg.Device.Features() | TransportFeatures,
		msixSink: cfg.MSIX, intx: cfg.INTx,
	}
	if p.logf == nil {
		p.logf = func(string, ...any) {}
	}
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
	if p.active {
		p.dev.Reset()
		p.active = false
	}
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
		bar, off, n, ok := p.pciCfgWindow()
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
		bar, off, n, ok := p.pciCfgWindow()
		if !ok {
			return
		}
		p.WriteBAR(bar, off, p.Bytes(win, n))
	}
	if offset < 6 && offset+len(data) > 4 {
		// The command register's INTx disable bit gates the line.
		p.irq.mu.Lock()
		p.updateINTxLocked()
		p.irq.mu.Unlock()
	}
}

// pciCfgWindow decodes the access the PCI configuration access capability
// describes: 1, 2 or 4 bytes of BAR 0.
func (p *PCI) pciCfgWindow() (bar int, off uint64, n int, ok bool) {
	b := p.Bytes(p.pciCfg+4, 12)
	bar = int(b[0])
	off = uint64(binary.LittleEndian.Uint32(b[4:]))
	n = int(binary.LittleEndian.Uint32(b[8:]))
	if bar != BAR || (n != 1 && n != 2 && n != 4) || off%uint64(n) != 0 || off+uint64(n) > BARSize {
		return 0, 0, 0, false
	}
	return bar, off, n, true
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

// Common configuration fields (struct virtio_pci_common_cfg and the
// virtio 1.2 additions).
const (
	cfgDevFeatSel   = 0x00
	cfgDevFeat      = 0x04
	cfgDrvFeatSel   = 0x08
	cfgDrvFeat      = 0x0c
	cfgMSIXConfig   = 0x10
	cfgNumQueues    = 0x12
	cfgStatus       = 0x14
	cfgGeneration   = 0x15
	cfgQueueSel     = 0x16
	cfgQueueSize    = 0x18
	cfgQueueVector  = 0x1a
	cfgQueueEnable  = 0x1c
	cfgQueueNotify  = 0x1e
	cfgQueueDesc    = 0x20
	cfgQueueDriver  = 0x28
	cfgQueueDevice  = 0x30
	cfgQueueNotData = 0x38
	cfgQueueReset   = 0x3a
)

// commonFields lists each field's offset and width.
var commonFields = [...]struct{ off, size int }{
	{cfgDevFeatSel, 4}, {cfgDevFeat, 4}, {cfgDrvFeatSel, 4}, {cfgDrvFeat, 4},
	{cfgMSIXConfig, 2}, {cfgNumQueues, 2}, {cfgStatus, 1}, {cfgGeneration, 1},
	{cfgQueueSel, 2}, {cfgQueueSize, 2}, {cfgQueueVector, 2}, {cfgQueueEnable, 2},
	{cfgQueueNotify, 2}, {cfgQueueDesc, 8}, {cfgQueueDriver, 8}, {cfgQueueDevice, 8},
	{cfgQueueNotData, 2}, {cfgQueueReset, 2},
}

// readCommon reads the common configuration at off: each field the
// access covers contributes its bytes.
func (p *PCI) readCommon(off int, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eachField(off, data, false)
}

// writeCommon merges the written bytes into each field the access covers
// and applies the new values.
func (p *PCI) writeCommon(off int, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eachField(off, data, true)
}

// eachField copies between data (an access at off) and each field it
// covers: into the field, which is then applied, when write is set.
// Precondition: mu is held.
func (p *PCI) eachField(off int, data []byte, write bool) {
	for _, f := range commonFields {
		if f.off >= off+len(data) || f.off+f.size <= off {
			continue
		}
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], p.commonField(f.off))
		for i := 0; i < f.size; i++ {
			if j := f.off + i - off; j >= 0 && j < len(data) {
				if write {
					b[i] = data[j]
				} else {
					data[j] = b[i]
				}
			}
		}
		if write {
			p.setCommonField(f.off, binary.LittleEndian.Uint64(b[:]))
		}
	}
}

// selected returns the selected queue's configuration, or nil.
// Precondition: mu is held.
func (p *PCI) selected() *queueConfig {
	if int(p.queueSel) < len(p.qcfg) {
		return &p.qcfg[p.queueSel]
	}
	return nil
}

// commonField returns a common configuration field. Precondition: mu is
// held.
func (p *PCI) commonField(off int) uint64 {
	q := p.selected()
	switch off {
	case cfgDevFeatSel:
		return uint64(p.devFeatSel)
	case cfgDevFeat:
		if p.devFeatSel < 2 {
			return uint64(uint32(p.offered >> (32 * p.devFeatSel)))
		}
	case cfgDrvFeatSel:
		return uint64(p.drvFeatSel)
	case cfgDrvFeat:
		if p.drvFeatSel < 2 {
			return uint64(uint32(p.drvFeatures >> (32 * p.drvFeatSel)))
		}
	case cfgMSIXConfig:
		p.irq.mu.Lock()
		defer p.irq.mu.Unlock()
		return uint64(p.irq.cfgVector)
	case cfgNumQueues:
		return uint64(len(p.queues))
	case cfgStatus:
		s := p.status
		if p.needsReset.Load() {
			s |= StatusDeviceNeedsReset
		}
		return uint64(s)
	case cfgGeneration:
		return uint64(uint8(p.generation.Load()))
	case cfgQueueSel:
		return uint64(p.queueSel)
	case cfgQueueNotify, cfgQueueNotData:
		if q != nil {
			return uint64(p.queueSel)
		}
	}
	if q == nil {
		return 0
	}
	switch off {
	case cfgQueueSize:
		return uint64(q.Size)
	case cfgQueueVector:
		return uint64(q.vector)
	case cfgQueueEnable:
		if q.Ready {
			return 1
		}
	case cfgQueueDesc:
		return q.Desc
	case cfgQueueDriver:
		return q.Driver
	case cfgQueueDevice:
		return q.Device
	}
	return 0
}

// setCommonField applies a driver write. Precondition: mu is held.
func (p *PCI) setCommonField(off int, v uint64) {
	q := p.selected()
	live := p.status&StatusDriverOK != 0
	switch off {
	case cfgDevFeatSel:
		p.devFeatSel = uint32(v)
	case cfgDrvFeatSel:
		p.drvFeatSel = uint32(v)
	case cfgDrvFeat:
		if p.drvFeatSel < 2 && p.status&StatusFeaturesOK == 0 {
			shift := 32 * p.drvFeatSel
			p.drvFeatures = p.drvFeatures&^(0xffffffff<<shift) | uint64(uint32(v))<<shift
		}
	case cfgMSIXConfig:
		p.irq.mu.Lock()
		p.irq.cfgVector = p.validVector(uint16(v))
		p.irq.mu.Unlock()
	case cfgStatus:
		p.setStatus(uint8(v))
	case cfgQueueSel:
		p.queueSel = uint16(v)
	case cfgQueueSize:
		if q != nil && !q.Ready && !live {
			q.Size = uint16(v)
		}
	case cfgQueueVector:
		if q != nil {
			q.vector = p.validVector(uint16(v))
			p.irq.mu.Lock()
			p.irq.qVectors[p.queueSel] = q.vector
			p.irq.mu.Unlock()
		}
	case cfgQueueEnable:
		if q != nil && v&1 == 1 && !live {
			q.Ready = true
		}
	case cfgQueueDesc:
		if q != nil && !q.Ready && !live {
			q.Desc = v
		}
	case cfgQueueDriver:
		if q != nil && !q.Ready && !live {
			q.Driver = v
		}
	case cfgQueueDevice:
		if q != nil && !q.Ready && !live {
			q.Device = v
		}
	}
}

// validVector returns v if it names a vector of this function, else
// NoVector: reading back NoVector tells the driver the assignment failed.
func (p *PCI) validVector(v uint16) uint16 {
	if int(v) < p.nvec {
		return v
	}
	return NoVector
}

// setStatus applies a write to device_status. Precondition: mu is held.
func (p *PCI) setStatus(v uint8) {
	if v == 0 {
		p.reset()
		return
	}
	old := p.status
	v &^= StatusDeviceNeedsReset // the device's bit
	if v&old != old {
		// Only a reset clears bits.
		p.logf("%s: driver cleared status bits %#x without a reset; ignored", p.name, old&^v)
		v |= old
	}
	if v&StatusFeaturesOK != 0 && old&StatusFeaturesOK == 0 {
		if err := p.checkFeatures(); err != nil {
			p.logf("%s: %v", p.name, err)
			v &^= StatusFeaturesOK // the driver reads it back and gives up
		}
	}
	if v&StatusDriverOK != 0 && old&StatusDriverOK == 0 {
		if v&StatusFeaturesOK == 0 {
			p.logf("%s: DRIVER_OK without FEATURES_OK", p.name)
			v &^= StatusDriverOK
		} else {
			p.status = v
			if err := p.activate(nil); err != nil {
				p.fail(err)
			}
			return
		}
	}
	p.status = v
}

// checkFeatures validates the driver's feature selection.
func (p *PCI) checkFeatures() error {
	if extra := p.drvFeatures &^ p.offered; extra != 0 {
		return fmt.Errorf("driver accepted features %#x the device does not offer", extra)
	}
	if p.drvFeatures&FeatureVersion1 == 0 {
		return errors.New("driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported)")
	}
	return nil
}

// activate maps the enabled queues and starts the device; saved, if not
// nil, gives the queues' ring positions (restore). Precondition: mu is
// held.
func (p *PCI) activate(saved []QueueState) error {
	qs := make([]*Queue, len(p.queues))
	for i, q := range p.queues {
		if !p.qcfg[i].Ready {
			continue
		}
		if err := q.activate(p.mem, p.qcfg[i].QueueConfig, p.drvFeatures); err != nil {
			return err
		}
		if saved != nil {
			q.restore(saved[i].LastAvail, saved[i].UsedIdx)
		}
		qs[i] = q
	}
	err := p.dev.Activate(Env{
		Mem:           p.mem,
		Features:      p.drvFeatures,
		Queues:        qs,
		Fail:          p.fail,
		ConfigChanged: p.ConfigChanged,
	})
	if err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	p.active = true
	return nil
}

// reset is the virtio device reset. Precondition: mu is held.
func (p *PCI) reset() {
	for _, q := range p.queues {
		q.Stop()
	}
	if p.active {
		p.dev.Reset()
		p.active = false
	}
	for _, q := range p.queues {
		q.reset()
	}
	p.resetRegisters()
}

// fail puts the device into DEVICE_NEEDS_RESET and tells the driver. Safe
// from device goroutines.
func (p *PCI) fail(err error) {
	if p.needsReset.Swap(true) {
		return
	}
	p.logf("%s: %v; the device needs a reset", p.name, err)
	p.configInterrupt()
}

// ConfigChanged tells the driver the device configuration changed. Safe
// from any goroutine.
func (p *PCI) ConfigChanged() {
	p.generation.Add(1)
	p.configInterrupt()
}

// NeedsReset reports whether the device is in DEVICE_NEEDS_RESET.
func (p *PCI) NeedsReset() bool { return p.needsReset.Load() }

func (p *PCI) configInterrupt() {
	p.irq.mu.Lock()
	v := p.irq.cfgVector
	p.irq.mu.Unlock()
	p.interrupt(isrConfig, v)
}

// queueVector returns queue i's MSI-X vector.
func (p *PCI) queueVector(i int) uint16 {
	p.irq.mu.Lock()
	defer p.irq.mu.Unlock()
	return p.irq.qVectors[i]
}

// interrupt delivers an interrupt for vector (MSI-X) or the ISR bit
// (INTx).
func (p *PCI) interrupt(isr uint8, vector uint16) {
	s := &p.irq
	s.mu.Lock()
	if !s.enabled {
		s.isr |= isr
		p.updateINTxLocked()
		s.mu.Unlock()
		return
	}
	if int(vector) >= len(s.table) {
		s.mu.Unlock()
		return
	}
	if s.funcMask || s.table[vector].masked {
		s.pending[vector/64] |= 1 << (vector % 64)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if err := p.msixSink.Fire(int(vector)); err != nil {
		p.logf("%s: MSI-X vector %d: %v", p.name, vector, err)
	}
}

// readISR returns the ISR status and clears it, lowering INTx.
func (p *PCI) readISR() uint8 {
	s := &p.irq
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.isr
	s.isr = 0
	p.updateINTxLocked()
	return v
}

// updateINTxLocked drives INTx from the ISR. Precondition: irq.mu is held.
func (p *PCI) updateINTxLocked() {
	high := p.irq.isr != 0 && !p.irq.enabled && p.Command()&pci.CommandINTxDisable == 0
	p.ConfigSpace.SetInterruptStatus(p.irq.isr != 0 && !p.irq.enabled)
	if p.intx == nil || high == p.irq.intxHigh {
		return
	}
	if err := p.intx.SetLevel(high); err != nil {
		p.logf("%s: INTx: %v", p.name, err)
		return
	}
	p.irq.intxHigh = high
}

// setMSIXControl applies the MSI-X enable and function mask bits.
func (p *PCI) setMSIXControl(enabled, funcMask bool) {
	s := &p.irq
	s.mu.Lock()
	s.enabled, s.funcMask = enabled, funcMask
	p.updateINTxLocked()
	fire := p.unmaskedPendingLocked()
	s.mu.Unlock()
	p.fireAll(fire)
}

// unmaskedPendingLocked routes and collects the pending vectors that may
// be delivered now, clearing their pending bits. Precondition: irq.mu is
// held.
func (p *PCI) unmaskedPendingLocked() []int {
	s := &p.irq
	if !s.enabled || s.funcMask {
		return nil
	}
	var fire []int
	for v := range s.table {
		if s.pending[v/64]&(1<<(v%64)) == 0 || s.table[v].masked {
			continue
		}
		s.pending[v/64] &^= 1 << (v % 64)
		fire = append(fire, v)
	}
	return fire
}

func (p *PCI) fireAll(vectors []int) {
	for _, v := range vectors {
		if err := p.msixSink.Fire(v); err != nil {
			p.logf("%s: MSI-X vector %d: %v", p.name, v, err)
		}
	}
}

// readMSIXTable reads the MSI-X table at off.
func (p *PCI) readMSIXTable(off int, data []byte) {
	s := &p.irq
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range data {
		o := off + i
		v := o / 16
		if v >= len(s.table) {
			continue
		}
		var e [16]byte
		encodeEntry(e[:], s.table[v])
		data[i] = e[o%16]
	}
}

func encodeEntry(b []byte, e msixEntry) {
	binary.LittleEndian.PutUint64(b[0:], e.msg.Address)
	binary.LittleEndian.PutUint32(b[8:], e.msg.Data)
	if e.masked {
		b[12] = 1
	}
}

// writeMSIXTable writes MSI-X table entries: a changed message of an
// unmasked vector is routed at once; an unmasked vector with a pending
// interrupt fires.
func (p *PCI) writeMSIXTable(off int, data []byte) {
	s := &p.irq
	s.mu.Lock()
	touched := map[int]bool{}
	for i, b := range data {
		o := off + i
		v := o / 16
		if v >= len(s.table) {
			continue
		}
		var e [16]byte
		encodeEntry(e[:], s.table[v])
		e[o%16] = b
		s.table[v].msg = MSIMessage{Address: binary.LittleEndian.Uint64(e[0:]), Data: binary.LittleEndian.Uint32(e[8:])}
		s.table[v].masked = e[12]&1 != 0
		touched[v] = true
	}
	for v := range touched {
		e := &s.table[v]
		if e.masked || (e.routed && e.route == e.msg) {
			continue
		}
		if err := p.msixSink.Route(v, e.msg); err != nil {
			p.logf("%s: route MSI-X vector %d: %v", p.name, v, err)
			continue
		}
		e.routed, e.route = true, e.msg
	}
	fire := p.unmaskedPendingLocked()
	s.mu.Unlock()
	p.fireAll(fire)
}

// readPBA reads the pending bit array.
func (p *PCI) readPBA(off int, data []byte) {
	s := &p.irq
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range data {
		o := off + i
		if w := o / 8; w < len(s.pending) {
			data[i] = byte(s.pending[w] >> (8 * (o % 8)))
		}
	}
}
