package machine

import (
	"errors"
	"fmt"

	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/kvm"
)

// msixVectors implements virtio.MSIX for one function: a GSI and an
// irqfd per vector.
type msixVectors struct {
	vm     *kvm.VM
	router *gsiRouter
	gsis   []uint32
	fds    []*virtio.EventFD
}

func newMSIXVectors(vm *kvm.VM, router *gsiRouter, n int) (*msixVectors, error) {
	x := &msixVectors{vm: vm, router: router}
	for i := 0; i < n; i++ {
		gsi, err := router.allocate()
		if err != nil {
			x.close()
			return nil, err
		}
		fd, err := virtio.NewEventFD()
		if err != nil {
			x.close()
			return nil, err
		}
		if err := vm.IRQFD(fd.Fd(), gsi); err != nil {
			fd.Close()
			x.close()
			return nil, fmt.Errorf("irqfd for MSI-X vector %d: %w", i, err)
		}
		x.gsis = append(x.gsis, gsi)
		x.fds = append(x.fds, fd)
	}
	return x, nil
}

// Route implements virtio.MSIX.
func (x *msixVectors) Route(v int, msg virtio.MSIMessage) error {
	if v < 0 || v >= len(x.gsis) {
		return fmt.Errorf("MSI-X vector %d of %d", v, len(x.gsis))
	}
	return x.router.setMSI(x.gsis[v], msg)
}

// Fire implements virtio.MSIX.
func (x *msixVectors) Fire(v int) error {
	if v < 0 || v >= len(x.fds) {
		return fmt.Errorf("MSI-X vector %d of %d", v, len(x.fds))
	}
	return x.fds[v].Signal()
}

// close removes the irqfds and closes their eventfds.
func (x *msixVectors) close() error {
	var errs []error
	for i, fd := range x.fds {
		errs = append(errs, x.vm.DeassignIRQFD(fd.Fd(), x.gsis[i]), fd.Close())
	}
	x.fds, x.gsis = nil, nil
	return errors.Join(errs...)
}
