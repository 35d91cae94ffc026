// Package devices holds the contracts between the machine and its emulated
// devices. Each device lives in its own subpackage (serial, i8042, rtc,
// acpipm, pci, virtio/...) and implements one or both of PortDevice and
// MMIODevice; the machine owns the bus that dispatches guest accesses to
// them. A device never imports the machine: it is given what it needs
// (interrupt lines, callbacks, guest memory) by its constructor.
package devices

// PortDevice is a device on the x86 I/O port bus. The machine calls it from
// vCPU threads, possibly from several at once: implementations synchronise
// themselves. len(data) is 1, 2 or 4. port is the absolute port number.
// A read must fill all of data; a device that does not decode an access
// leaves 0xff bytes, as open bus would.
type PortDevice interface {
	ReadPort(port uint16, data []byte)
	WritePort(port uint16, data []byte)
}

// MMIODevice is a device on the memory-mapped I/O bus. addr is the absolute
// guest-physical address; len(data) is 1, 2, 4 or 8. Same concurrency rules
// as PortDevice.
type MMIODevice interface {
	ReadMMIO(addr uint64, data []byte)
	WriteMMIO(addr uint64, data []byte)
}

// InterruptLine is one wire from a device to the interrupt controller.
// For an edge-triggered line the device calls Pulse; for a level-triggered
// line it calls SetLevel(true) while its condition holds and SetLevel(false)
// when it clears. Implementations are safe for concurrent use.
type InterruptLine interface {
	SetLevel(high bool) error
	Pulse() error
}
