package disk

import (
	"errors"
	"fmt"
	"os"

	"github.com/paddock-vm/paddock/disk/qcow2"
)

// Handover ends img's use in this process, for another process to go on
// with it: it returns the open files of img's chain, the image's first,
// then each backing file down a qcow2 chain, with the locks Open took,
// and gives img up without flushing, trimming or unlocking anything (img
// must not be used or closed afterwards). The caller hands the files to
// the other process, which opens them with OpenFiles, and closes its own
// descriptors with a plain Close: QEMU-compatible locks belong to the
// open file description, which the other process's descriptors keep
// (disk/imagefile), so the image stays locked throughout. Only an image
// nothing was written to since Open may be handed over.
func Handover(img Image) ([]*os.File, error) {
	switch i := img.(type) {
	case *Raw:
		if i.f == nil {
			return nil, errors.New("disk: hand over a raw image twice")
		}
		f := i.f
		i.f = nil
		return []*os.File{f}, nil
	case *qcow2Image:
		return i.Handover()
	}
	return nil, fmt.Errorf("disk: %T cannot be handed over", img)
}

// OpenFiles opens an image from files another process opened with Open
// and handed over (Handover): files[0] is the image, in format o.Format
// (raw or qcow2; required, never detected), and the rest its backing
// chain in order. It opens nothing by name: a qcow2 header naming more
// or fewer backing files than were handed over is an error. o.ReadOnly
// must be the access the files were opened and locked for; o.Backing is
// not applied (the opener judged the chain). OpenFiles takes the files
// over: they are closed with the image, or at once if it fails.
func OpenFiles(files []*os.File, o Options) (Image, error) {
	if len(files) == 0 {
		return nil, errors.New("disk: open handed files: none")
	}
	name := files[0].Name()
	switch o.Format {
	case FormatRaw:
		if len(files) != 1 {
			closeAll(files)
			return nil, fmt.Errorf("disk: %s: a raw image has no backing files, %d were handed over", name, len(files)-1)
		}
		r, err := newRaw(files[0], o.ReadOnly)
		if err != nil {
			files[0].Close()
			return nil, err
		}
		return r, nil
	case FormatQcow2:
		h := &qcow2.Handed{Files: files[1:]}
		q, err := qcow2.OpenFile(files[0], qcow2.Options{ReadOnly: o.ReadOnly, L2CacheBytes: o.L2CacheBytes, Handed: h})
		if ferr := h.Finish(err == nil); ferr != nil {
			q.Close()
			return nil, fmt.Errorf("disk: %s: %w", name, ferr)
		}
		if err != nil {
			return nil, err
		}
		return &qcow2Image{q}, nil
	}
	closeAll(files)
	return nil, fmt.Errorf("disk: %s: %w %q (raw or qcow2)", name, ErrFormat, o.Format)
}

// closeAll closes files.
func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
