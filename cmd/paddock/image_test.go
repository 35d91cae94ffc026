package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/disk/qemutest"
)

// The image commands, checked against qemu-img.

// qemuInfo returns qemu-img info --output=json as a map.
func qemuInfo(t *testing.T, path string) map[string]any {
	t.Helper()
	out := qemutest.QemuImg(t, "info", "--output=json", path)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}
	return m
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, status := runPaddock(t, "", args...)
	if status != 0 {
		t.Fatalf("paddock %s: status %d\n%s%s", strings.Join(args, " "), status, out, errOut)
	}
	return out
}

func TestImageCreateInfo(t *testing.T) {
	qemutest.NeedTool(t, "qemu-img")
	dir := qemutest.TempDir(t)
	base := filepath.Join(dir, "base.qcow2")
	mustRun(t, "image", "create", "-q", base, "64M")
	for _, tc := range []struct {
		name string
		args []string
		want map[string]any // qemu-img info fields
		spec map[string]any // format-specific data fields
	}{
		{"default", []string{"FILE", "1G"}, map[string]any{"virtual-size": 1073741824.0, "cluster-size": 65536.0},
			map[string]any{"compat": "1.1", "refcount-bits": 16.0, "extended-l2": false, "compression-type": "zlib"}},
		{"flags", []string{"--cluster-size", "2M", "--extended-l2", "--compression", "zstd", "FILE", "10G"},
			map[string]any{"virtual-size": 10737418240.0, "cluster-size": 2097152.0},
			map[string]any{"extended-l2": true, "compression-type": "zstd"}},
		{"options", []string{"-o", "cluster_size=4k,compat=0.10", "FILE", "1.5G"},
			map[string]any{"virtual-size": 1610612736.0, "cluster-size": 4096.0}, map[string]any{"compat": "0.10"}},
		{"refcount", []string{"-o", "refcount_bits=64,preallocation=metadata", "FILE", "8M"},
			map[string]any{"virtual-size": 8388608.0}, map[string]any{"refcount-bits": 64.0}},
		{"backing", []string{"-b", "base.qcow2", "-F", "qcow2", "FILE"},
			map[string]any{"virtual-size": 67108864.0, "backing-filename": "base.qcow2", "backing-filename-format": "qcow2"}, nil},
		{"raw", []string{"-f", "raw", "FILE", "3M"}, map[string]any{"virtual-size": 3145728.0, "format": "raw"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, tc.name+".img")
			args := []string{"image", "create"}
			for _, a := range tc.args {
				if a == "FILE" {
					a = file
				}
				args = append(args, a)
			}
			out := mustRun(t, args...)
			if !strings.Contains(out, "Formatting") {
				t.Errorf("no Formatting line: %q", out)
			}
			q := qemuInfo(t, file)
			for k, v := range tc.want {
				if q[k] != v {
					t.Errorf("qemu-img info %s = %v, want %v", k, q[k], v)
				}
			}
			if tc.spec != nil {
				data := q["format-specific"].(map[string]any)["data"].(map[string]any)
				for k, v := range tc.spec {
					if data[k] != v {
						t.Errorf("format-specific %s = %v, want %v", k, data[k], v)
					}
				}
				qemutest.Check(t, file)
			}
			// paddock's own JSON agrees with qemu-img's.
			var mine map[string]any
			if err := json.Unmarshal([]byte(mustRun(t, "image", "info", "--json", file)), &mine); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"virtual-size", "cluster-size", "backing-filename", "backing-filename-format", "format", "format-specific"} {
				if a, b := jsonString(mine[k]), jsonString(q[k]); a != b {
					t.Errorf("info --json %s: paddock %s, qemu-img %s", k, a, b)
				}
			}
		})
	}
	// Errors name the file and the problem.
	_, errOut, status := runPaddock(t, "", "image", "create", "--cluster-size", "3000", filepath.Join(dir, "bad.qcow2"), "1G")
	if status == 0 || !strings.Contains(errOut, "bad.qcow2") || !strings.Contains(errOut, "cluster size") {
		t.Errorf("bad cluster size: status %d, %q", status, errOut)
	}
	_, errOut, status = runPaddock(t, "", "image", "info", filepath.Join(dir, "missing.qcow2"))
	if status == 0 || !strings.Contains(errOut, "missing.qcow2") {
		t.Errorf("missing file: status %d, %q", status, errOut)
	}
	_, errOut, status = runPaddock(t, "", "image", "create", filepath.Join(dir, "s.qcow2"), "12Q")
	if status == 0 || !strings.Contains(errOut, "12Q") {
		t.Errorf("bad size: status %d, %q", status, errOut)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestImageCheckCommand: exit codes and repairs as qemu-img.
func TestImageCheckCommand(t *testing.T) {
	qemutest.NeedTool(t, "qemu-io")
	dir := qemutest.TempDir(t)
	q := filepath.Join(dir, "c.qcow2")
	mustRun(t, "image", "create", "-q", q, "16M")
	qemutest.QemuIO(t, q, "write -P 7 0 1M")
	out := mustRun(t, "image", "check", q)
	if !strings.Contains(out, "No errors were found") {
		t.Fatalf("clean image: %s", out)
	}
	// Leak two clusters by raising their refcounts in the file.
	leak(t, q, 2)
	out, _, status := runPaddock(t, "", "image", "check", q)
	if status != 3 || !strings.Contains(out, "2 leaked clusters") {
		t.Fatalf("leaks: status %d\n%s", status, out)
	}
	if err := exec.Command("qemu-img", "check", q).Run(); err == nil {
		t.Fatal("qemu-img check does not see the leaks")
	}
	out = mustRun(t, "image", "check", "-r", "leaks", q)
	if !strings.Contains(out, "2 leaked clusters") || !strings.Contains(out, "No errors") {
		t.Fatalf("repair: %s", out)
	}
	qemutest.Check(t, q)
	var js map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, "image", "check", "--json", q)), &js); err != nil {
		t.Fatal(err)
	}
	if js["check-errors"] != 0.0 || js["allocated-clusters"] != 16.0 {
		t.Fatalf("check --json: %v", js)
	}
}

// leak appends n clusters to the file and gives them refcount 1.
func leak(t *testing.T, path string, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	be := binary.BigEndian
	cs := int64(1) << be.Uint32(b[20:])
	rt := be.Uint64(b[48:])
	blk := int64(be.Uint64(b[rt:]))
	first := (int64(len(b)) + cs - 1) / cs
	b = append(b, make([]byte, first*cs+int64(n)*cs-int64(len(b)))...)
	for i := int64(0); i < int64(n); i++ {
		be.PutUint16(b[blk+2*(first+i):], 1)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestImageConvertSnapshotCommands: convert, snapshot, map, resize, and
// the chain commands end to end.
func TestImageWorkflow(t *testing.T) {
	qemutest.NeedTool(t, "qemu-io")
	dir := qemutest.TempDir(t)
	raw := filepath.Join(dir, "src.raw")
	want := qemutest.WriteRawImage(t, raw, 12<<20, 1)
	q := filepath.Join(dir, "disk.qcow2")
	mustRun(t, "image", "convert", "-q", "-c", "-O", "qcow2", "-o", "compression_type=zstd", raw, q)
	qemutest.QemuImg(t, "compare", "-f", "raw", "-F", "qcow2", raw, q)
	qemutest.Check(t, q)

	mustRun(t, "image", "snapshot", "-c", "first", q)
	qemutest.QemuIO(t, q, "write -P 9 0 64k")
	list := mustRun(t, "image", "snapshot", "-l", q)
	if !strings.Contains(list, "first") || !strings.Contains(qemutest.QemuImg(t, "snapshot", "-l", q), "first") {
		t.Fatalf("snapshot list:\n%s", list)
	}
	back := filepath.Join(dir, "first.raw")
	mustRun(t, "image", "convert", "-q", "-l", "first", "-O", "raw", q, back)
	got, _ := os.ReadFile(back)
	qemutest.SameBytes(t, "convert -l", got, want)
	mustRun(t, "image", "snapshot", "-a", "first", q)
	qemutest.QemuImg(t, "compare", "-f", "raw", "-F", "qcow2", raw, q)
	mustRun(t, "image", "snapshot", "-d", "first", q)
	if strings.Contains(qemutest.QemuImg(t, "snapshot", "-l", q), "first") {
		t.Fatal("snapshot not deleted")
	}
	qemutest.Check(t, q)

	// map agrees with qemu-img map on what is where.
	var mine, theirs []map[string]any
	json.Unmarshal([]byte(mustRun(t, "image", "map", "--json", q)), &mine)
	json.Unmarshal([]byte(qemutest.QemuImg(t, "map", "--output=json", q)), &theirs)
	if dataBytes(mine) != dataBytes(theirs) {
		t.Fatalf("map: paddock %v data bytes, qemu-img %v", dataBytes(mine), dataBytes(theirs))
	}

	// Overlay, commit, rebase, resize.
	ov := filepath.Join(dir, "ov.qcow2")
	mustRun(t, "image", "create", "-q", "-b", "disk.qcow2", "-F", "qcow2", ov)
	qemutest.QemuIO(t, ov, "write -P 3 1M 128k")
	view := qemutest.Raw(t, ov)
	mustRun(t, "image", "rebase", "-q", "-b", "", ov)
	qemutest.SameBytes(t, "after rebase to none", qemutest.Raw(t, ov), view)
	mustRun(t, "image", "rebase", "-q", "-u", "-b", "disk.qcow2", "-F", "qcow2", ov)
	mustRun(t, "image", "commit", "-q", ov)
	qemutest.SameBytes(t, "base after commit", qemutest.Raw(t, q), view)
	mustRun(t, "image", "resize", "-q", q, "+4M")
	if s := qemuInfo(t, q)["virtual-size"]; s != float64(16<<20) {
		t.Fatalf("size after +4M: %v", s)
	}
	if _, _, status := runPaddock(t, "", "image", "resize", q, "-1M"); status == 0 {
		t.Fatal("shrink without --shrink succeeded")
	}
	mustRun(t, "image", "resize", "-q", "--shrink", q, "-1M")
	if s := qemuInfo(t, q)["virtual-size"]; s != float64(15<<20) {
		t.Fatalf("size after -1M: %v", s)
	}
	qemutest.Check(t, q)
}

func dataBytes(m []map[string]any) float64 {
	var n float64
	for _, e := range m {
		if e["data"] == true {
			n += e["length"].(float64)
		}
	}
	return n
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1024", 1024, true}, {"1k", 1024, true}, {"10G", 10 << 30, true}, {"1.5T", 3 << 39, true},
		{"512MiB", 512 << 20, true}, {"2b", 2, true}, {"", 0, false}, {"-1G", 0, false}, {"1.5", 0, false},
		{"12Q", 0, false}, {"99999999E", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// liveImages makes, with qemu-img, d.qcow2 (with a snapshot "s"),
// other.qcow2, base.qcow2 and ov.qcow2 on it, in a fresh directory.
func liveImages(t *testing.T) (dir string) {
	t.Helper()
	dir = qemutest.TempDir(t)
	for _, args := range [][]string{
		{"create", "-q", "-f", "qcow2", "d.qcow2", "16M"},
		{"snapshot", "-c", "s", "d.qcow2"},
		{"create", "-q", "-f", "qcow2", "other.qcow2", "16M"},
		{"create", "-q", "-f", "qcow2", "base.qcow2", "16M"},
		{"create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "ov.qcow2"},
	} {
		cmd := exec.Command("qemu-img", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return dir
}

// TestImageCommandsRefuseLiveImages runs every writing subcommand against
// an image a QEMU VM writes (each is refused, naming the process, and the
// image is untouched), and every reading one without and with -U.
func TestImageCommandsRefuseLiveImages(t *testing.T) {
	dir := liveImages(t)
	d, other := filepath.Join(dir, "d.qcow2"), filepath.Join(dir, "other.qcow2")
	base, ov := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "ov.qcow2")
	// The VM writes d.qcow2 and base.qcow2 (as its own disk).
	vm := qemutest.HoldVM(t, "file="+d+",format=qcow2", "file="+base+",format=qcow2")
	holder := fmt.Sprintf("qemu-system-x86_64 (pid %d)", vm.PID)
	before := qemutest.QemuImg(t, "info", "-U", "--output=json", d)

	for _, tc := range []struct {
		name   string
		args   []string
		status int
		file   string // the image named as in use
	}{
		{"create over it", []string{"image", "create", "-q", d, "1M"}, 1, d},
		{"create raw over it", []string{"image", "create", "-q", "-f", "raw", d, "1M"}, 1, d},
		{"convert onto it", []string{"image", "convert", "-q", "-O", "qcow2", other, d}, 1, d},
		{"snapshot -c", []string{"image", "snapshot", "-c", "x", d}, 1, d},
		{"snapshot -a", []string{"image", "snapshot", "-a", "s", d}, 1, d},
		{"snapshot -d", []string{"image", "snapshot", "-d", "s", d}, 1, d},
		{"resize", []string{"image", "resize", d, "+1M"}, 1, d},
		{"resize shrink", []string{"image", "resize", d, "--shrink", "8M"}, 1, d},
		{"check -r all", []string{"image", "check", "-r", "all", d}, 1, d},
		{"check -r leaks", []string{"image", "check", "-r", "leaks", d}, 1, d},
		{"rebase", []string{"image", "rebase", "-q", "-b", "", d}, 1, d},
		{"rebase -u", []string{"image", "rebase", "-q", "-u", "-b", "other.qcow2", d}, 1, d},
		{"commit into it", []string{"image", "commit", "-q", ov}, 1, base},
	} {
		t.Run("write/"+tc.name, func(t *testing.T) {
			_, errOut, status := runPaddock(t, "", tc.args...)
			want := "paddock: image " + tc.file + " is in use: " + holder + " writes it\n"
			if status != tc.status || errOut != want {
				t.Errorf("status %d, stderr %q\nwant %d, %q", status, errOut, tc.status, want)
			}
		})
	}
	if after := qemutest.QemuImg(t, "info", "-U", "--output=json", d); after != before {
		t.Errorf("a refused command changed the image:\n%s\nwas\n%s", after, before)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("a refused command left a file")
	}
	// An overlay on the live image can be made, as with qemu-img (this is
	// how a running disk is snapshotted externally).
	mustRun(t, "image", "create", "-q", "-b", "d.qcow2", "-F", "qcow2", filepath.Join(dir, "snap.qcow2"))

	out := filepath.Join(dir, "out.raw")
	for _, tc := range []struct {
		name   string
		args   []string
		status int // refused without -U
	}{
		{"info", []string{"image", "info", d}, 1},
		{"info --backing-chain", []string{"image", "info", "--backing-chain", d}, 1},
		{"check", []string{"image", "check", d}, 1},
		{"map", []string{"image", "map", d}, 1},
		{"compare", []string{"image", "compare", d, other}, 2},
		{"convert", []string{"image", "convert", "-q", d, out}, 1},
		{"snapshot -l", []string{"image", "snapshot", "-l", d}, 1},
	} {
		t.Run("read/"+tc.name, func(t *testing.T) {
			_, errOut, status := runPaddock(t, "", tc.args...)
			want := "paddock: image " + d + " is in use: " + holder + " writes it; pass -U (--force-share) to read it anyway\n"
			if status != tc.status || errOut != want {
				t.Errorf("status %d, stderr %q\nwant %d, %q", status, errOut, tc.status, want)
			}
			args := append(append([]string(nil), tc.args[:2]...), "-U")
			stdout, errOut, status := runPaddock(t, "", append(args, tc.args[2:]...)...)
			if status != 0 && !(tc.name == "compare" && status == 1) {
				t.Errorf("with -U: status %d\n%s%s", status, stdout, errOut)
			}
		})
	}
}

// TestImageCommandsShareReadOnlyImages: an image QEMU only reads (a
// read-only disk, a backing file) is readable by every reading command
// without -U, and refused to writers naming the reader.
func TestImageCommandsShareReadOnlyImages(t *testing.T) {
	dir := liveImages(t)
	d, base, ov := filepath.Join(dir, "d.qcow2"), filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "ov.qcow2")
	vm := qemutest.HoldVM(t, "file="+d+",format=qcow2,readonly=on", "file="+ov+",format=qcow2")
	for _, args := range [][]string{
		{"image", "info", d}, {"image", "check", d}, {"image", "map", d}, {"image", "compare", d, d},
		{"image", "snapshot", "-l", d}, {"image", "convert", "-q", d, filepath.Join(dir, "copy.raw")},
		{"image", "info", base}, {"image", "map", base},
	} {
		if stdout, errOut, status := runPaddock(t, "", args...); status != 0 {
			t.Errorf("%s: status %d\n%s%s", strings.Join(args, " "), status, stdout, errOut)
		}
	}
	holder := fmt.Sprintf("qemu-system-x86_64 (pid %d)", vm.PID)
	for _, tc := range []struct {
		file string
		args []string
	}{
		{d, []string{"image", "snapshot", "-c", "x", d}},
		{base, []string{"image", "resize", base, "+1M"}},
	} {
		_, errOut, status := runPaddock(t, "", tc.args...)
		if want := "paddock: image " + tc.file + " is in use: " + holder + " reads it\n"; status != 1 || errOut != want {
			t.Errorf("%s: status %d, %q\nwant %q", strings.Join(tc.args, " "), status, errOut, want)
		}
	}
}

// TestImageQemuImgHabits: what users of qemu-img type works the same.
func TestImageQemuImgHabits(t *testing.T) {
	qemutest.NeedTool(t, "qemu-img")
	dir := qemutest.TempDir(t)
	q := filepath.Join(dir, "d.qcow2")
	mustRun(t, "image", "create", "-q", q, "4M")
	qemutest.QemuIO(t, q, "write -P 5 0 64k")

	// convert without -O writes raw, and replaces an existing target.
	out := filepath.Join(dir, "out.img")
	if err := os.WriteFile(out, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "image", "convert", q, out)
	if f := qemuInfo(t, out)["format"]; f != "raw" {
		t.Errorf("convert without -O wrote %v", f)
	}
	qemutest.QemuImg(t, "compare", q, out)
	// create replaces an existing file too.
	mustRun(t, "image", "create", "-q", out, "1M")
	if s := qemuInfo(t, out); s["format"] != "qcow2" || s["virtual-size"] != float64(1<<20) {
		t.Errorf("create over a file: %v", s)
	}

	// --output=json, as --json.
	for _, sub := range []string{"info", "check", "map"} {
		a := mustRun(t, "image", sub, "--output=json", q)
		b := mustRun(t, "image", sub, "--json", q)
		if a != b || !json.Valid([]byte(a)) {
			t.Errorf("%s --output=json: %q vs --json %q", sub, a, b)
		}
	}
	if _, errOut, status := runPaddock(t, "", "image", "info", "--output=xml", q); status != 1 || errOut != "paddock: --output must be human or json, not \"xml\"\n" {
		t.Errorf("--output=xml: %d %q", status, errOut)
	}

	// Flags after the image, and a negative size, for resize.
	mustRun(t, "image", "resize", q, "-q", "+4M")
	mustRun(t, "image", "resize", q, "--shrink", "6M")
	mustRun(t, "image", "resize", "-q", "--shrink", q, "-1M")
	mustRun(t, "image", "resize", "-q", "-f", "qcow2", q, "--", "+1M")
	if s := qemuInfo(t, q)["virtual-size"]; s != float64(6<<20) {
		t.Errorf("size after the resizes: %v", s)
	}
	_, errOut, status := runPaddock(t, "", "image", "resize", q, "1M")
	if want := "paddock: resize " + q + ": shrinking from 6 MiB to 1 MiB discards the data past the new end; pass --shrink to allow it\n"; status != 1 || errOut != want {
		t.Errorf("shrink without --shrink: %d %q", status, errOut)
	}

	// -p on a pipe: plain lines, no escape codes.
	_, errOut, status = runPaddock(t, "", "image", "convert", "-p", "-O", "qcow2", q, filepath.Join(dir, "p.qcow2"))
	if status != 0 || strings.ContainsAny(errOut, "\x1b\r") || !strings.HasSuffix(errOut, "converting: 100% (6 MiB of 6 MiB)\n") {
		t.Errorf("-p on a pipe: %d %q", status, errOut)
	}

	// Errors: one sentence, the path once, no unrelated sentinel.
	mustRun(t, "image", "snapshot", "-c", "before", q)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"image", "snapshot", "-c", "before", q}, "paddock: qcow2: " + q + ": create snapshot \"before\": a snapshot of that name already exists\n"},
		{[]string{"image", "info", dir}, "paddock: disk: " + dir + " is a directory, not a disk image (images are regular files or block devices)\n"},
		{[]string{"image", "info", fifo}, "paddock: disk: " + fifo + " is a named pipe (FIFO), not a disk image (images are regular files or block devices)\n"},
		{[]string{"image", "convert", fifo, filepath.Join(dir, "f.raw")}, "paddock: disk: " + fifo + " is a named pipe (FIFO), not a disk image (images are regular files or block devices)\n"},
		{[]string{"image", "info", "-f", "qcow2", "/dev/zero"}, "paddock: qcow2: /dev/zero is a character device, not a disk image (images are regular files or block devices)\n"},
		{[]string{"image", "info", "-f", "qcow2", filepath.Join(dir, "p.qcow2x")}, "paddock: qcow2: open " + dir + "/p.qcow2x: no such file or directory\n"},
		{[]string{"image", "info", "-f", "qcow2", out + "x"}, "paddock: qcow2: open " + out + "x: no such file or directory\n"},
		{[]string{"image", "check", "-U", "-r", "all", q}, "paddock: check " + q + ": -U (--force-share) reads only; it cannot go with -r, which writes the image\n"},
		{[]string{"image", "snapshot", "-U", "-d", "before", q}, "paddock: snapshot " + q + ": -U (--force-share) only goes with -l; -c, -a and -d write the image\n"},
		{[]string{"image", "convert", "-c", q, filepath.Join(dir, "c.img")}, "paddock: convert " + dir + "/c.img: -c (compression) needs a qcow2 destination: add -O qcow2\n"},
	} {
		_, errOut, status := runPaddock(t, "", tc.args...)
		if status == 0 || errOut != tc.want {
			t.Errorf("%s: status %d\n%q\nwant\n%q", strings.Join(tc.args, " "), status, errOut, tc.want)
		}
	}
	raw := filepath.Join(dir, "r.raw")
	mustRun(t, "image", "create", "-q", "-f", "raw", raw, "1M")
	if _, errOut, _ := runPaddock(t, "", "image", "info", "-f", "qcow2", raw); strings.Contains(errOut, `\x`) {
		t.Errorf("escaped bytes in %q", errOut)
	}
}

// TestImageCompare: exit statuses and messages as qemu-img compare.
func TestImageCompare(t *testing.T) {
	qemutest.NeedTool(t, "qemu-io")
	dir := qemutest.TempDir(t)
	a, b, c := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.raw"), filepath.Join(dir, "c.qcow2")
	mustRun(t, "image", "create", "-q", a, "4M")
	qemutest.QemuIO(t, a, "write -P 7 1M 64k")
	mustRun(t, "image", "convert", a, b)
	if out := mustRun(t, "image", "compare", a, b); out != "Images are identical.\n" {
		t.Errorf("same: %q", out)
	}
	mustRun(t, "image", "create", "-q", c, "8M")
	mustRun(t, "image", "convert", "-O", "qcow2", b, c)
	mustRun(t, "image", "resize", "-q", c, "8M")
	if out := mustRun(t, "image", "compare", a, c); out != "Images are identical.\n" {
		t.Errorf("larger but zero past the end: %q", out)
	}
	if out, _, status := runPaddock(t, "", "image", "compare", "-s", a, c); status != 1 || out != "Strict mode: Image size mismatch!\n" {
		t.Errorf("strict: %d %q", status, out)
	}
	qemutest.QemuIO(t, c, "write -P 1 0x100200 512")
	out, _, status := runPaddock(t, "", "image", "compare", a, c)
	want := qemutest.Run(t, "sh", "-c", "qemu-img compare "+a+" "+c+" || true")
	if status != 1 || out != want || out != "Content mismatch at offset 1049088!\n" {
		t.Errorf("different: %d %q, qemu-img says %q", status, out, want)
	}
	if _, _, status := runPaddock(t, "", "image", "compare", a, filepath.Join(dir, "missing")); status != 2 {
		t.Errorf("missing image: status %d", status)
	}
}
