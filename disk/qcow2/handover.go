package qcow2

import (
	"errors"
	"fmt"
	"os"
)

// Handed is a qcow2 chain's backing files, opened and locked in another
// process and handed over (see Image.Handover), for OpenFile to use in
// chain order instead of opening any backing file by name. Options.Handed
// carries it through the chain.
type Handed struct {
	// Files are the backing files, the image's own first, then each one's
	// below it.
	Files []*os.File
	// used counts the files the chain has taken.
	used int
}

// next returns the next backing file for the image at imagePath, whose
// header names name.
func (h *Handed) next(imagePath, name string) (*os.File, error) {
	if h.used == len(h.Files) {
		return nil, fmt.Errorf("%s names the backing file %q, but no file was handed over for it", imagePath, name)
	}
	f := h.Files[h.used]
	h.used++
	return f, nil
}

// Finish checks, once OpenFile has returned, that the chain took every
// handed file, and closes those it did not take (all of them after a
// failed open took what it took: its error closed those). It returns an
// error when files are left over after a successful open; the caller
// then closes the image.
func (h *Handed) Finish(opened bool) error {
	left := h.Files[h.used:]
	for _, f := range left {
		f.Close()
	}
	if opened && len(left) > 0 {
		return fmt.Errorf("%d backing files were handed over, the chain has %d", len(h.Files), h.used)
	}
	return nil
}

// Handover ends the image's use in this process, for another process to
// go on with it: it returns the open files of the chain, the image's
// first, then each backing file down the chain, with their locks, and
// marks the image closed without flushing, trimming or unlocking
// anything. The caller passes the files on (OpenFile there, with
// Options.Handed) and closes its own descriptors with a plain Close:
// QEMU-compatible locks belong to the open file description, which the
// other process's descriptors keep, so they stay held. Only an image
// nothing was written to since it was opened may be handed over; one
// opened on a Storage of the caller's has no files to hand.
func (img *Image) Handover() ([]*os.File, error) {
	release := img.quiesce()
	defer release()
	if img.closed {
		return nil, ErrClosed
	}
	files, err := img.chainFiles()
	if err != nil {
		return nil, err
	}
	img.closed = true
	img.f, img.backing = nil, nil
	img.dec.close()
	img.comp.close()
	return files, nil
}

// chainFiles is the open files of the image and its backing chain.
func (img *Image) chainFiles() ([]*os.File, error) {
	of, ok := img.f.(*osFile)
	if !ok {
		return nil, errors.New("qcow2: hand over " + img.path + ": the image is not on a file")
	}
	files := []*os.File{of.f}
	switch b := img.backing.(type) {
	case nil:
	case *Image:
		more, err := b.chainFiles()
		if err != nil {
			return nil, err
		}
		files = append(files, more...)
	case *rawLayer:
		files = append(files, b.f)
	default:
		return nil, fmt.Errorf("qcow2: hand over %s: its backing file is not a file", img.path)
	}
	return files, nil
}
