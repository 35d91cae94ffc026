package kvm

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultPath is where the KVM device normally lives.
const DefaultPath = "/dev/kvm"

// System is an open KVM device (/dev/kvm). Its methods are safe for
// concurrent use; Close must not run concurrently with them.
type System struct {
	fd        int
	path      string
	mmapSize  int // KVM_GET_VCPU_MMAP_SIZE, queried once by Open
	closeOnce sync.Once
}

// Open opens the KVM device at path (normally DefaultPath) with
// O_RDWR|O_CLOEXEC and checks that it speaks KVM API version 12.
func Open(path string) (*System, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{Op: "open " + path, Err: err}
	}
	return NewSystem(fd, path)
}

// NewSystem makes a System of fd, a KVM device another process opened
// and handed over, which name names in errors; it checks that it speaks
// KVM API version 12 (a descriptor of anything else fails the check).
// NewSystem takes fd over: it is closed with the System, or at once if
// NewSystem fails.
func NewSystem(fd int, name string) (*System, error) {
	s := &System{fd: fd, path: name}
	v, err := s.APIVersion()
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if v != APIVersion {
		unix.Close(fd)
		return nil, &Error{Op: "KVM_GET_API_VERSION", Detail: name,
			Err: fmt.Errorf("%w %d, want %d", ErrAPIVersion, v, APIVersion)}
	}
	size, err := ioctl(fd, kvmGetVCPUMmapSize, 0)
	if err != nil {
		unix.Close(fd)
		return nil, wrapDetail("KVM_GET_VCPU_MMAP_SIZE", name, err)
	}
	s.mmapSize = size
	return s, nil
}

// Close closes the device. VMs created from it stay usable. Closing twice
// is a no-op.
func (s *System) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = wrapDetail("close", s.path, unix.Close(s.fd))
		s.fd = -1
	})
	return err
}

// Fd returns the device's file descriptor, or -1 after Close.
func (s *System) Fd() int { return s.fd }

// APIVersion returns the kernel's KVM API version (KVM_GET_API_VERSION).
func (s *System) APIVersion() (int, error) {
	v, err := ioctl(s.fd, kvmGetAPIVersion, 0)
	return v, wrapDetail("KVM_GET_API_VERSION", s.path, err)
}

// CheckExtension reports whether KVM supports a capability: 0 if not, a
// positive, capability-specific value (often 1, or a count or size) if so
// (KVM_CHECK_EXTENSION). Prefer VM.CheckExtension: some answers depend on
// the VM.
func (s *System) CheckExtension(c Cap) (int, error) {
	v, err := ioctl(s.fd, kvmCheckExtension, uintptr(c))
	return v, wrapDetail("KVM_CHECK_EXTENSION", c.String(), err)
}

// VCPUMmapSize returns the size of the area mapped from each vCPU fd
// (KVM_GET_VCPU_MMAP_SIZE, queried once by Open).
func (s *System) VCPUMmapSize() (int, error) {
	if s.fd < 0 {
		return 0, &Error{Op: "KVM_GET_VCPU_MMAP_SIZE", Detail: s.path, Err: unix.EBADF}
	}
	return s.mmapSize, nil
}

// SupportedCPUID returns the CPUID leaves KVM can present to a guest
// (KVM_GET_SUPPORTED_CPUID): the starting point of a guest's CPUID.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	e, err := getCPUID(s.fd, kvmGetSupportedCPUID, initialCPUID)
	return e, wrapDetail("KVM_GET_SUPPORTED_CPUID", s.path, err)
}

// EmulatedCPUID returns the CPUID features KVM emulates in software
// (KVM_GET_EMULATED_CPUID): usable, but slow.
func (s *System) EmulatedCPUID() ([]CPUIDEntry, error) {
	e, err := getCPUID(s.fd, kvmGetEmulatedCPUID, initialCPUID)
	return e, wrapDetail("KVM_GET_EMULATED_CPUID", s.path, err)
}

// MSRIndexList returns the MSRs a VMM should save and restore with
// VCPU.MSRs and VCPU.SetMSRs (KVM_GET_MSR_INDEX_LIST).
func (s *System) MSRIndexList() ([]uint32, error) {
	l, err := getMSRIndexList(s.fd, kvmGetMSRIndexList, initialMSRIndices)
	return l, wrapDetail("KVM_GET_MSR_INDEX_LIST", s.path, err)
}

// FeatureMSRIndexList returns the feature MSRs (such as
// IA32_ARCH_CAPABILITIES) that FeatureMSRs can read
// (KVM_GET_MSR_FEATURE_INDEX_LIST; needs CapGetMSRFeatures).
func (s *System) FeatureMSRIndexList() ([]uint32, error) {
	l, err := getMSRIndexList(s.fd, kvmGetMSRFeatureIndexList, initialMSRIndices)
	return l, wrapDetail("KVM_GET_MSR_FEATURE_INDEX_LIST", s.path, err)
}

// FeatureMSRs reads feature MSRs: the values KVM supports for them (KVM_GET_MSRS
// on the device). It stops early like VCPU.MSRs.
func (s *System) FeatureMSRs(indices []uint32) ([]MSREntry, error) {
	return getMSRs(s.fd, s.path, indices)
}

// CreateVM creates a virtual machine (KVM_CREATE_VM, default machine type).
func (s *System) CreateVM() (*VM, error) {
	fd, err := ioctl(s.fd, kvmCreateVM, 0)
	if err != nil {
		return nil, wrapDetail("KVM_CREATE_VM", s.path, err)
	}
	return &VM{fd: fd, mmapSize: s.mmapSize, slots: make(map[uint32]uint64)}, nil
}
