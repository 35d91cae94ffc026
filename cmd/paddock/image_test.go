package main

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
