package cloudinit

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// isoBlockSize is ISO 9660's logical block size.
const isoBlockSize = 2048

// Image returns the seed volume: an ISO 9660 image labelled "cidata"
// with Rock Ridge (the names and modes Linux shows) and Joliet names,
// holding the seed's files. The caller writes it where the VM finds it,
// mode 0600 (user data may hold secrets).
func (s *Seed) Image() ([]byte, error) {
	files, err := s.Files()
	if err != nil {
		return nil, err
	}
	return isoImage(Label, files)
}

// isoImage builds an ISO 9660 image with the given volume label and files
// (names in the root directory), in a temporary directory it removes.
func isoImage(label string, files map[string][]byte) ([]byte, error) {
	// go-diskfs builds the image from a directory tree: stage the files.
	work, err := os.MkdirTemp("", "paddock-seed-")
	if err != nil {
		return nil, fmt.Errorf("cloudinit: build the seed image: %w", err)
	}
	defer os.RemoveAll(work)
	stage := filepath.Join(work, "root")
	// The volume's root shows the stage's mode: readable by all, as a
	// mounted seed is in the guest.
	if err := os.Mkdir(stage, 0o755); err != nil {
		return nil, fmt.Errorf("cloudinit: build the seed image: %w", err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(stage, name), data, 0o444); err != nil {
			return nil, fmt.Errorf("cloudinit: build the seed image: %w", err)
		}
	}
	path := filepath.Join(work, "seed.iso")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cloudinit: build the seed image: %w", err)
	}
	defer f.Close()
	fs, err := iso9660.Create(file.New(f, false), 0, 0, isoBlockSize, stage)
	if err == nil {
		err = fs.Finalize(iso9660.FinalizeOptions{RockRidge: true, Joliet: true, VolumeIdentifier: label})
	}
	if err != nil {
		return nil, fmt.Errorf("cloudinit: build the seed image: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cloudinit: build the seed image: %w", err)
	}
	return padImage(data), nil
}

// pvdOffset is where the primary volume descriptor starts (block 16),
// and volumeSpaceSize the offset in it of the volume's size in blocks
// (little-endian half of a both-endian 32-bit field).
const (
	pvdOffset       = 16 * isoBlockSize
	volumeSpaceSize = 80
)

// padImage pads an image to the volume size its primary volume
// descriptor states, in whole blocks: go-diskfs ends the file where the
// last file's data ends, and a disk holds whole sectors only, so the
// guest could not read the end of that file.
func padImage(img []byte) []byte {
	size := (len(img) + isoBlockSize - 1) / isoBlockSize * isoBlockSize
	if len(img) >= pvdOffset+volumeSpaceSize+4 {
		size = max(size, int(binary.LittleEndian.Uint32(img[pvdOffset+volumeSpaceSize:]))*isoBlockSize)
	}
	return append(img, make([]byte, size-len(img))...)
}
