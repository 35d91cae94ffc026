package cloudinit

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/internal/testenv"
)

// The oracles of the seed volume are util-linux's blkid, which reads the
// label and type the way cloud-init's ds-identify finds a NoCloud seed,
// and isoinfo (genisoimage), an ISO 9660 reader of its own that lists and
// extracts the files by their Rock Ridge and Joliet names. The guest
// kernel's iso9660 driver reads it in the lab (test/e2e).

func TestImage(t *testing.T) {
	isoinfo := testenv.RequireTool(t, "isoinfo", "genisoimage")
	blkid := testenv.RequireTool(t, "blkid", "util-linux")
	testenv.Declare(t, testenv.Oracle)
	s := testSeed()
	s.UserData = "#cloud-config\npackages: [nginx]\n"
	files, err := s.Files()
	if err != nil {
		t.Fatal(err)
	}
	path := writeImage(t, s)
	out, err := exec.Command(blkid, "-p", "-o", "export", path).Output()
	if err != nil {
		t.Fatalf("blkid: %v", err)
	}
	for _, want := range []string{"LABEL=cidata\n", "TYPE=iso9660\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("blkid says:\n%s\nwant %q", out, want)
		}
	}
	out, err = exec.Command(isoinfo, "-d", "-i", path).CombinedOutput()
	if err != nil {
		t.Fatalf("isoinfo -d: %v\n%s", err, out)
	}
	for _, want := range []string{"Volume id: cidata", "Rock Ridge signatures", "Joliet"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("isoinfo -d lacks %q:\n%s", want, out)
		}
	}
	for _, ext := range []string{"-R", "-J"} {
		out, err := exec.Command(isoinfo, ext, "-f", "-i", path).CombinedOutput()
		if err != nil {
			t.Fatalf("isoinfo %s -f: %v\n%s", ext, err, out)
		}
		if got := strings.Fields(string(out)); strings.Join(got, " ") != "/meta-data /network-config /user-data" {
			t.Errorf("isoinfo %s lists %q", ext, got)
		}
		for name, want := range files {
			got, err := exec.Command(isoinfo, ext, "-x", "/"+name, "-i", path).Output()
			if err != nil || string(got) != string(want) {
				t.Errorf("isoinfo %s -x /%s = %q, %v; want %q", ext, name, got, err, want)
			}
		}
	}
	out, err = exec.Command(isoinfo, "-R", "-l", "-i", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-r--r--r--") || !strings.Contains(string(out), "drwxr-xr-x") {
		t.Errorf("isoinfo -R -l: modes not readable by all: %v\n%s", err, out)
	}

}

// writeImage writes s's image to a file and returns its path.
func writeImage(t *testing.T, s *Seed) string {
	t.Helper()
	img, err := s.Image()
	if err != nil {
		t.Fatal(err)
	}
	// The image holds the whole volume, in whole blocks.
	if blocks := binary.LittleEndian.Uint32(img[pvdOffset+volumeSpaceSize:]); len(img) != int(blocks)*isoBlockSize {
		t.Errorf("image of %d bytes; the volume is %d blocks of %d", len(img), blocks, isoBlockSize)
	}
	path := filepath.Join(t.TempDir(), "seed.iso")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestImageErrors(t *testing.T) {
	s := testSeed()
	s.User = ""
	if _, err := s.Image(); err == nil || !strings.Contains(err.Error(), "no user") {
		t.Errorf("bad seed: %v", err)
	}
}
