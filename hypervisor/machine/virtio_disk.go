package machine

import (
	"fmt"

	"github.com/paddock-vm/paddock/hypervisor/devices/ratelimit"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
)

// checkImage checks that disk i has an image the device can use as
// configured.
func checkImage(i int, d Disk) error {
	switch {
	case d.Image == nil:
		return fmt.Errorf("machine: disks[%d]: no open image", i)
	case !d.ReadOnly && d.Image.Capabilities().ReadOnly:
		return fmt.Errorf("machine: disks[%d] (%s): the disk is writable, but its image was opened read-only", i, d.Name)
	}
	return nil
}

// diskDevice builds disk i's virtio-blk device on its open image.
func (v *virtioDevices) diskDevice(i int, d Disk) (virtio.Device, error) {
	name := fmt.Sprintf("disks[%d]", i)
	queues := d.Queues
	if queues == 0 {
		queues = min(v.m.cfg.CPUs, blk.MaxQueues)
	}
	limiter := ratelimit.New(d.Limits)
	dev, err := blk.New(blk.Config{
		Image: d.Image, ReadOnly: d.ReadOnly, Serial: d.Serial, Cache: d.Cache,
		Queues: queues, GuardFormat: d.GuardFormat, Limiter: limiter,
		Name: name, Logf: v.logf,
	})
	if err != nil {
		return nil, fmt.Errorf("machine: %s: %w", name, err)
	}
	return dev, nil
}
