package machine

import (
	"fmt"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
)

// openImage opens disk i's image, which takes its locks (disk/imagefile:
// QEMU's, so QEMU's tools and other VMs see the disk in use), and adds
// it to v.images. It reports whether the disk's raw format was detected,
// so its device must guard sector 0.
func (v *virtioDevices) openImage(i int, d Disk) (guard bool, err error) {
	name := fmt.Sprintf("disks[%d]", i)
	format := d.Format
	guard = d.Detected && format == disk.FormatRaw
	if format == "" {
		if format, err = disk.Detect(d.Path); err != nil {
			return false, fmt.Errorf("machine: %s: %w", name, err)
		}
		guard = format == disk.FormatRaw
	}
	img, err := disk.Open(d.Path, disk.Options{Format: format, ReadOnly: d.ReadOnly, Backing: d.Backing})
	if err != nil {
		return false, fmt.Errorf("machine: %s: %w", name, err)
	}
	v.images = append(v.images, img)
	return guard, nil
}

// diskDevice builds disk i's virtio-blk device on its open image.
func (v *virtioDevices) diskDevice(i int, d Disk, img disk.Image, guard bool) (virtio.Device, error) {
	name := fmt.Sprintf("disks[%d]", i)
	queues := d.Queues
	if queues == 0 {
		queues = min(v.m.cfg.CPUs, blk.MaxQueues)
	}
	dev, err := blk.New(blk.Config{
		Image: img, ReadOnly: d.ReadOnly, Serial: d.Serial, Cache: d.Cache,
		Queues: queues, GuardFormat: guard, Name: name, Logf: v.logf,
	})
	if err != nil {
		return nil, fmt.Errorf("machine: %s: %w", name, err)
	}
	return dev, nil
}
