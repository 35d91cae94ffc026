package machine

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio"
	"github.com/paddock-vm/paddock/hypervisor/devices/virtio/blk"
)

// openDisk locks and opens disk i's image and builds its device.
func (v *virtioDevices) openDisk(i int, d Disk) (virtio.Device, error) {
	name := fmt.Sprintf("disks[%d]", i)
	lock, err := lockImage(d.Path, d.ReadOnly)
	if err != nil {
		return nil, fmt.Errorf("machine: %s: %w", name, err)
	}
	v.locks = append(v.locks, lock)
	format := d.Format
	guard := d.Detected && format == disk.FormatRaw
	if format == "" {
		if format, err = disk.Detect(d.Path); err != nil {
			return nil, fmt.Errorf("machine: %s: %w", name, err)
		}
		guard = format == disk.FormatRaw
	}
	img, err := disk.Open(d.Path, disk.Options{Format: format, ReadOnly: d.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("machine: %s: %w", name, err)
	}
	v.images = append(v.images, img)
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

// lockImage takes an advisory lock on the image file for the machine's
// life: exclusive for a writable disk, shared for a read-only one, so
// two VMs can share a read-only base but never write the same image.
func lockImage(path string, readOnly bool) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_EX
	if readOnly {
		how = unix.LOCK_SH
	}
	for {
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, fmt.Errorf("%s is in use by another VM", path)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
