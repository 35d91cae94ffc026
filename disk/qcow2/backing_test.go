package qcow2

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/paddock-vm/paddock/disk/imagefile"
	"github.com/paddock-vm/paddock/disk/qemutest"
	"github.com/paddock-vm/paddock/internal/testenv"
)

// setBackingName rewrites the backing file name an image's header records,
// without opening it (what a hostile image can say).
func setBackingName(t *testing.T, path, name, format string) {
	t.Helper()
	img, err := Open(path, Options{NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.SetBacking(name, format); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBackingPolicy: under a policy, a chain made of files inside the
// allowed directories opens, and every hostile backing file name is
// refused with one sentence naming the image and the backing file; the
// default (no policy) still follows what QEMU follows.
func TestBackingPolicy(t *testing.T) {
	root := tempDir(t)
	dir := filepath.Join(root, "images")
	sub := filepath.Join(dir, "sub")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(path, backing string) {
		t.Helper()
		if err := Create(path, CreateOptions{Size: 1 << 20, ClusterSize: 4096, BackingFile: backing}); err != nil {
			t.Fatal(err)
		}
	}
	// naming makes an image whose header names backing file name.
	naming := func(path, name, format string) {
		t.Helper()
		os.Remove(path)
		mk(path, "")
		setBackingName(t, path, name, format)
	}
	mk(filepath.Join(dir, "base.qcow2"), "")
	mk(filepath.Join(dir, "mid.qcow2"), "base.qcow2")
	mk(filepath.Join(sub, "top.qcow2"), "../mid.qcow2")
	outside := filepath.Join(root, "outside.qcow2")
	mk(outside, "")
	if err := os.Symlink("../outside.qcow2", filepath.Join(dir, "link.qcow2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("base.qcow2", filepath.Join(dir, "good-link.qcow2")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	policy := &BackingPolicy{Dirs: []string{dir}}

	// Legitimate chains open: relative names, "../" that stays inside,
	// a symbolic link that stays inside.
	for _, p := range []string{filepath.Join(sub, "top.qcow2"), filepath.Join(dir, "mid.qcow2")} {
		img, err := Open(p, Options{ReadOnly: true, Backing: policy})
		if err != nil {
			t.Fatalf("legitimate chain from %s: %v", p, err)
		}
		img.Close()
	}
	good := filepath.Join(dir, "good.qcow2")
	naming(good, "good-link.qcow2", "qcow2")
	if img, err := Open(good, Options{ReadOnly: true, Backing: policy}); err != nil {
		t.Fatalf("backing file through a link inside the directory: %v", err)
	} else {
		img.Close()
	}

	cases := []struct {
		name, backing, format string
		want                  error
		says                  string
	}{
		{"absolute path", "/etc/passwd", "raw", ErrBackingRefused, "outside the allowed directories"},
		{"dot-dot escape", "../outside.qcow2", "qcow2", ErrBackingRefused, "outside the allowed directories"},
		{"character device", "/dev/zero", "raw", ErrBackingRefused, "outside the allowed directories"},
		{"symbolic link escape", "link.qcow2", "qcow2", ErrBackingRefused, "leads to " + outside},
		{"FIFO", "fifo", "raw", imagefile.ErrNotImage, "is a named pipe (FIFO)"},
		{"protocol", "nbd:localhost:10809", "raw", ErrUnsupported, "protocol"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			hostile := filepath.Join(dir, "hostile.qcow2")
			naming(hostile, c.backing, c.format)
			_, err := Open(hostile, Options{ReadOnly: true, Backing: policy})
			checkRefusal(t, err, c.want, hostile, c.backing, c.says)
		})
	}

	t.Run("block_device", func(t *testing.T) {
		blk := filepath.Join(dir, "blk")
		testenv.RequireRoot(t, "this test makes a block device node")
		if err := unix.Mknod(blk, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))); err != nil {
			testenv.Unavailable(t, "cannot make a block device node here: %v", err)
		}
		defer os.Remove(blk)
		hostile := filepath.Join(dir, "hostile-blk.qcow2")
		naming(hostile, "blk", "raw")
		_, err := Open(hostile, Options{ReadOnly: true, Backing: policy})
		checkRefusal(t, err, ErrBackingRefused, hostile, "blk", "is a block device")
	})

	t.Run("hostile_name_deeper_in_the_chain", func(t *testing.T) {
		lower := filepath.Join(dir, "lower.qcow2")
		upper := filepath.Join(dir, "upper.qcow2")
		naming(lower, "/etc/passwd", "raw")
		naming(upper, "lower.qcow2", "qcow2")
		_, err := Open(upper, Options{ReadOnly: true, Backing: policy})
		checkRefusal(t, err, ErrBackingRefused, lower, "/etc/passwd", "outside the allowed directories")
	})

	t.Run("chain_depth", func(t *testing.T) {
		deep := filepath.Join(root, "deep")
		if err := os.Mkdir(deep, 0o755); err != nil {
			t.Fatal(err)
		}
		prev := ""
		for i := 0; i <= 3; i++ {
			p := filepath.Join(deep, "l"+string(rune('0'+i))+".qcow2")
			mk(p, prev)
			prev = filepath.Base(p)
		}
		top := filepath.Join(deep, "l3.qcow2")
		ok := &BackingPolicy{Dirs: []string{deep}, MaxDepth: 3}
		if img, err := Open(top, Options{ReadOnly: true, Backing: ok}); err != nil {
			t.Fatalf("3 backing files under MaxDepth 3: %v", err)
		} else {
			img.Close()
		}
		_, err := Open(top, Options{ReadOnly: true, Backing: &BackingPolicy{Dirs: []string{deep}, MaxDepth: 2}})
		checkRefusal(t, err, ErrBackingRefused, filepath.Join(deep, "l1.qcow2"), "l0.qcow2", "longer than 2 backing files")
	})

	t.Run("create_and_rebase_obey_the_policy", func(t *testing.T) {
		p := filepath.Join(dir, "new.qcow2")
		err := Create(p, CreateOptions{Size: 1 << 20, BackingFile: "/etc/passwd", BackingFormat: "raw", Backing: policy})
		checkRefusal(t, err, ErrBackingRefused, p, "/etc/passwd", "outside the allowed directories")
		if _, serr := os.Stat(p); !errors.Is(serr, os.ErrNotExist) {
			t.Fatalf("a refused create left %s behind", p)
		}
		mk(p, "")
		img, err := Open(p, Options{Backing: policy})
		if err != nil {
			t.Fatal(err)
		}
		defer img.Close()
		checkRefusal(t, img.SetBacking("../outside.qcow2", "qcow2"), ErrBackingRefused, p, "../outside.qcow2", "outside the allowed directories")
		if name, _ := img.BackingFile(); name != "" {
			t.Fatalf("a refused rebase recorded %q", name)
		}
	})

	// Without a policy paddock follows what QEMU follows (and still never
	// opens a FIFO or a character device).
	hostile := filepath.Join(dir, "default.qcow2")
	naming(hostile, "/etc/passwd", "raw")
	if img, err := Open(hostile, Options{ReadOnly: true}); err != nil {
		t.Fatalf("default policy, absolute backing file: %v", err)
	} else {
		img.Close()
	}
	setBackingName(t, hostile, "/dev/zero", "raw")
	if _, err := Open(hostile, Options{ReadOnly: true}); !errors.Is(err, imagefile.ErrNotImage) || !strings.Contains(err.Error(), "character device") {
		t.Fatalf("default policy, /dev/zero: %v", err)
	}
}

// checkRefusal checks a refusal: the wanted error, one line, naming the
// image that names the backing file, the backing file and the reason.
func checkRefusal(t *testing.T, err, want error, image, backing, says string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
	msg := err.Error()
	t.Log(msg)
	if strings.Contains(msg, "\n") || !strings.Contains(msg, image+":") || !strings.Contains(msg, backing) || !strings.Contains(msg, says) {
		t.Fatalf("error %q should name the image %s, the backing file %s and say %q", msg, image, backing, says)
	}
}

// TestBlockDeviceBacking: a raw backing file that is a block device reads
// its whole contents (its size is the device's, which stat does not
// give); a policy refuses it unless it allows devices.
func TestBlockDeviceBacking(t *testing.T) {
	testenv.RequireTool(t, "losetup", "mount")
	testenv.RequireRoot(t, "this test attaches a loop device")
	dir := tempDir(t)
	raw := filepath.Join(dir, "disk.raw")
	want := writeRawImage(t, raw, 1<<20, 7)
	out, err := exec.Command("losetup", "--find", "--show", "--read-only", raw).CombinedOutput()
	if err != nil {
		testenv.Unavailable(t, "cannot attach a loop device here: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	top := filepath.Join(dir, "top.qcow2")
	if err := Create(top, CreateOptions{Size: 1 << 20, BackingFile: dev, BackingFormat: "raw"}); err != nil {
		t.Fatal(err)
	}
	img, err := Open(top, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "through a block device backing file", readAll(t, img, 1<<20), want)
	img.Close()
	_, err = Open(top, Options{ReadOnly: true, Backing: &BackingPolicy{Dirs: []string{dir}}})
	checkRefusal(t, err, ErrBackingRefused, top, dev, "outside the allowed directories")
	img, err = Open(top, Options{ReadOnly: true, Backing: &BackingPolicy{Dirs: []string{dir}, Devices: true}})
	if err != nil {
		t.Fatalf("a policy that allows devices: %v", err)
	}
	img.Close()
}

// TestBackingPolicyLocks: a backing file the policy judged (through a
// symbolic link inside the allowed directory, so the file judged is not
// the name stored) is opened with a reader's lock on that file: qemu-io
// cannot write it while the overlay is open, qemu-io -r can read it, a -U
// open leaves it writable, and closing the overlay releases it. Raw and
// qcow2 backing files alike.
func TestBackingPolicyLocks(t *testing.T) {
	needTool(t, "qemu-io")
	dir := tempDir(t)
	for _, format := range []string{"qcow2", "raw"} {
		t.Run(format, func(t *testing.T) {
			base := filepath.Join(dir, "base."+format)
			if format == "qcow2" {
				if err := Create(base, CreateOptions{Size: 1 << 20}); err != nil {
					t.Fatal(err)
				}
			} else {
				writeRawImage(t, base, 1<<20, 3)
			}
			link := filepath.Join(dir, "link-"+format)
			if err := os.Symlink(filepath.Base(base), link); err != nil {
				t.Fatal(err)
			}
			top := filepath.Join(dir, "top-"+format+".qcow2")
			if err := Create(top, CreateOptions{Size: 1 << 20}); err != nil {
				t.Fatal(err)
			}
			setBackingName(t, top, filepath.Base(link), format)
			policy := &BackingPolicy{Dirs: []string{dir}}
			qemuWrite := func() (string, error) {
				out, err := exec.Command("qemu-io", "-f", format, "-c", "write 0 4k", base).CombinedOutput()
				return string(out), err
			}

			img, err := Open(top, Options{Backing: policy})
			if err != nil {
				t.Fatal(err)
			}
			if out, err := qemuWrite(); err == nil || !strings.Contains(out, `Failed to get "write" lock`) {
				t.Errorf("qemu-io wrote the backing file of an open overlay: %v\n%s", err, out)
			}
			out, err := exec.Command("qemu-io", "-r", "-f", format, "-c", "read 0 4k", base).CombinedOutput()
			if err != nil {
				t.Errorf("qemu-io -r could not share the backing file: %v\n%s", err, out)
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}

			img, err = Open(top, Options{ReadOnly: true, ForceShare: true, Backing: policy})
			if err != nil {
				t.Fatal(err)
			}
			if out, err := qemuWrite(); err != nil {
				t.Errorf("qemu-io could not write the backing file of a -U overlay: %v\n%s", err, out)
			}
			img.Close()

			// Closed: nothing holds it.
			if out, err := qemuWrite(); err != nil {
				t.Errorf("the backing file stayed locked after close: %v\n%s", err, out)
			}

			// A backing file someone writes is refused, in one sentence
			// naming the overlay, the backing file and the writer.
			io := qemutest.HoldIO(t, "-f", format, base)
			_, err = Open(top, Options{ReadOnly: true, Backing: policy})
			want := fmt.Sprintf("qcow2: %s: backing file: %s is in use: qemu-io (pid %d) writes it", top, link, io.PID)
			if !errors.Is(err, imagefile.ErrInUse) || err.Error() != want {
				t.Errorf("backing file written by qemu-io: %v\nwant %s", err, want)
			}
		})
	}
}

// TestOpenBackingFile: OpenBackingFile returns the file it judged, opened
// and locked for the access asked, even when the name leads elsewhere by
// the time it opens it (the name is swapped for a link out of the allowed
// directory right after the judgement); its format is probed from that
// file; and hostile names are refused in one sentence naming the image
// and the backing file, as a chain open refuses them.
func TestOpenBackingFile(t *testing.T) {
	needTool(t, "qemu-io")
	root := tempDir(t)
	dir := filepath.Join(root, "images")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(root, "secret.raw")
	writeRawImage(t, secret, 1<<20, 1)
	top := filepath.Join(dir, "top.qcow2")
	policy := &BackingPolicy{Dirs: []string{dir}}
	for _, tc := range []struct {
		name               string
		access             imagefile.Access
		writable, readable bool // what qemu-io may do with the file judged
	}{
		{"reader", imagefile.Read, false, true},
		{"-U_reader", imagefile.ReadShared, true, true},
		{"writer", imagefile.Write, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := filepath.Join(dir, "base.qcow2")
			judged := filepath.Join(dir, "judged.qcow2")
			os.Remove(base)
			os.Remove(judged)
			if err := Create(base, CreateOptions{Size: 1 << 20}); err != nil {
				t.Fatal(err)
			}
			imagefile.OnReopen(t, qemutest.SwapOnce(t, base, judged, secret))
			f, format, err := OpenBackingFile(policy, top, "base.qcow2", "", tc.access)
			if err != nil {
				t.Fatal(err)
			}
			defer imagefile.Close(f)
			if format != "qcow2" || f.Name() != base {
				t.Errorf("format %q, name %q; want qcow2, %s", format, f.Name(), base)
			}
			qemutest.SameFile(t, f, judged)
			qemutest.WantLocks(t, "qcow2", judged, tc.writable, tc.readable)
			qemutest.WantLocks(t, "raw", secret, true, true)
		})
	}

	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		backing string
		want    error
		says    string
	}{
		{secret, ErrBackingRefused, "outside the allowed directories"},
		{"../secret.raw", ErrBackingRefused, "outside the allowed directories"},
		{"link", ErrBackingRefused, "leads to " + secret},
		{"fifo", imagefile.ErrNotImage, "is a named pipe (FIFO)"},
	} {
		_, _, err := OpenBackingFile(policy, top, c.backing, "raw", imagefile.Write)
		checkRefusal(t, err, c.want, top, c.backing, c.says)
	}
}
