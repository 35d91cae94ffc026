// Package virtio implements the device side of virtio 1.x (OASIS virtio
// v1.2): split virtqueues with indirect descriptors and EVENT_IDX,
// feature negotiation and the device status state machine, and the
// modern virtio-pci transport (common, notify, ISR, device and PCI
// configuration access capabilities, MSI-X with an INTx fallback). The
// devices themselves live in the subpackages blk, net and rng and
// implement Device.
//
// Guest memory is reached only through GuestMemory, so every address a
// guest supplies is bounds-checked; a malformed descriptor chain fails
// with an error (and the device enters DEVICE_NEEDS_RESET), never a
// panic, a hang or an access outside guest RAM.
//
// Threads: a Device does its I/O on goroutines of its own (one per queue,
// woken through the queue's eventfd, which the machine registers as a KVM
// ioeventfd), never on the vCPU thread that wrote the notification.
// Those goroutines belong to the device: Reset stops them and waits.
//
// The ring code assumes a little-endian host with x86-64's memory model
// (stores are not reordered with older stores, loads not with older
// loads; a LOCKed instruction is a full barrier), which is what paddock
// runs on.
package virtio

import "fmt"

// DeviceID is a virtio device type (virtio v1.2 section 5).
type DeviceID uint16

// Device types implemented by paddock.
const (
	IDNet     DeviceID = 1
	IDBlock   DeviceID = 2
	IDConsole DeviceID = 3
	IDRNG     DeviceID = 4
)

func (id DeviceID) String() string {
	switch id {
	case IDNet:
		return "virtio-net"
	case IDBlock:
		return "virtio-blk"
	case IDConsole:
		return "virtio-console"
	case IDRNG:
		return "virtio-rng"
	}
	return fmt.Sprintf("virtio device %d", uint16(id))
}

// Device status bits (virtio v1.2 section 2.1).
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 64
	StatusFailed           = 128
)

// Transport and ring feature bits (virtio v1.2 section 6).
const (
	FeatureIndirectDesc uint64 = 1 << 28 // VIRTIO_F_INDIRECT_DESC
	FeatureEventIdx     uint64 = 1 << 29 // VIRTIO_F_EVENT_IDX
	FeatureVersion1     uint64 = 1 << 32 // VIRTIO_F_VERSION_1
	FeatureAccessPlat   uint64 = 1 << 33 // VIRTIO_F_ACCESS_PLATFORM
	FeatureRingPacked   uint64 = 1 << 34 // VIRTIO_F_RING_PACKED
)

// TransportFeatures are the feature bits the transport and the ring code
// implement and offer on behalf of every device.
const TransportFeatures = FeatureIndirectDesc | FeatureEventIdx | FeatureVersion1

// Device is one virtio device model, independent of the transport.
//
// The transport calls Features, QueueSizes, ReadConfig and WriteConfig
// from vCPU threads, possibly concurrently: implementations lock
// themselves. Activate and Reset are serialised by the transport.
type Device interface {
	// Type is the device's virtio ID.
	Type() DeviceID
	// Features returns the device-specific feature bits it offers; the
	// transport adds TransportFeatures.
	Features() uint64
	// QueueSizes returns the maximum size of each of the device's queues
	// (each a power of two, at most MaxQueueSize); its length is the
	// number of queues.
	QueueSizes() []uint16
	// ReadConfig fills data from the device-specific configuration
	// space at offset; bytes beyond it read as zero.
	ReadConfig(offset int, data []byte)
	// WriteConfig writes the device-specific configuration space; most
	// devices ignore writes.
	WriteConfig(offset int, data []byte)
	// Activate starts the device once the driver has set DRIVER_OK.
	// The queues the driver did not enable are nil in env.Queues. An
	// error means the device cannot run; the transport then sets
	// DEVICE_NEEDS_RESET.
	Activate(env Env) error
	// Reset stops the device: it returns once every goroutine it started
	// has stopped and every request it took from a queue is completed
	// (or abandoned, when the guest's memory made it impossible). The
	// device can then be activated again.
	Reset()
}

// Env is what an activated device works with.
type Env struct {
	// Mem is guest RAM.
	Mem GuestMemory
	// Features is the negotiated feature set.
	Features uint64
	// Queues are the device's queues, indexed like QueueSizes; nil for a
	// queue the driver left disabled.
	Queues []*Queue
	// Fail reports that the device hit an error it cannot continue from
	// (typically a malformed descriptor chain): the transport sets
	// DEVICE_NEEDS_RESET, stops every queue (Next returns false) and
	// tells the driver. The device should stop using the queue
	// concerned at once; the chains it took but did not use stay with it
	// until the driver resets the device.
	Fail func(err error)
	// ConfigChanged tells the driver the device configuration changed
	// (a configuration change interrupt); the transport also bumps the
	// configuration generation.
	ConfigChanged func()
}

// HasFeature reports whether the negotiated features include f.
func (e *Env) HasFeature(f uint64) bool { return e.Features&f == f }
