package virtio

// GuestMemory is guest RAM as a device sees it. The machine's memory
// implements it.
type GuestMemory interface {
	// Slice returns the host view of guest-physical [gpa, gpa+n): a
	// slice that aliases guest memory and stays valid while the device
	// runs. It fails unless the whole range is RAM inside one region.
	Slice(gpa, n uint64) ([]byte, error)
}
