package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// stageFiles writes a kernel, an initrd and a disk into st and returns
// the metadata naming them.
func stageFiles(t *testing.T, st *TemplateStage) TemplateMeta {
	t.Helper()
	files := map[string]string{
		"vmlinuz":          "kernel bytes",
		"initrd.img":       "initrd bytes",
		"disks/root.qcow2": "disk bytes",
	}
	for name, data := range files {
		path := st.Path(name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return TemplateMeta{
		Origin:  TemplateOrigin{Kind: OriginBuild, Builder: "debian-12"},
		OS:      TemplateOS{ID: "debian", VersionID: "12"},
		Kernel:  TemplateKernel{TemplateFile: TemplateFile{File: "vmlinuz"}, Release: "6.1.0-1-cloud-amd64"},
		Initrd:  &TemplateFile{File: "initrd.img"},
		Cmdline: "root=UUID=x ro console=ttyS0",
		Disks:   []TemplateDisk{{TemplateFile: TemplateFile{File: "disks/root.qcow2"}, Format: "qcow2", VirtualSize: 4 << 30}},
	}
}

// makeTemplate commits a template called name into s.
func makeTemplate(t *testing.T, s *Store, name string) *Template {
	t.Helper()
	st, err := s.NewTemplate(name)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := st.Commit(stageFiles(t, st), []byte("builder: debian-12\n"))
	if err != nil {
		st.Abort()
		t.Fatal(err)
	}
	return tmpl
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestTemplateCommit(t *testing.T) {
	s := newStore(t)
	st, err := s.NewTemplate("debian-12")
	if err != nil {
		t.Fatal(err)
	}
	stage := st.Dir
	made, err := st.Commit(stageFiles(t, st), []byte("builder: debian-12\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stage); !os.IsNotExist(err) {
		t.Errorf("stage %s still there after Commit: %v", stage, err)
	}
	got, err := s.Template("debian-12")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Meta, made.Meta) {
		t.Errorf("Template read back\n%+v\nCommit returned\n%+v", got.Meta, made.Meta)
	}
	m := got.Meta
	if m.Version != templateVersionCold || m.Name != "debian-12" || len(m.ID) != 32 || m.Created.IsZero() {
		t.Errorf("version %d, name %q, id %q, created %v: want them filled in", m.Version, m.Name, m.ID, m.Created)
	}
	if m.Kernel.SHA256 != sum("kernel bytes") || m.Kernel.Size != int64(len("kernel bytes")) {
		t.Errorf("kernel recorded as %d bytes, %s", m.Kernel.Size, m.Kernel.SHA256)
	}
	if m.Disks[0].SHA256 != sum("disk bytes") || m.Initrd.SHA256 != sum("initrd bytes") {
		t.Errorf("checksums %s, %s", m.Disks[0].SHA256, m.Initrd.SHA256)
	}
	if m.Size() != int64(len("kernel bytes")+len("initrd bytes")+len("disk bytes")) {
		t.Errorf("Size %d", m.Size())
	}
	for _, f := range []string{"vmlinuz", "initrd.img", "disks/root.qcow2", TemplateMetaFile, TemplateSpecFile, TemplateLockFile} {
		fi, err := os.Stat(got.Path(f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o400 {
			t.Errorf("%s has mode %v, want 0400 (read-only)", f, fi.Mode().Perm())
		}
	}
	if spec, err := os.ReadFile(got.Path(TemplateSpecFile)); err != nil || string(spec) != "builder: debian-12\n" {
		t.Errorf("spec.yaml %q, %v", spec, err)
	}
	names, err := s.TemplateNames()
	if err != nil || !reflect.DeepEqual(names, []string{"debian-12"}) {
		t.Errorf("TemplateNames: %v, %v", names, err)
	}
	if _, err := got.Verify(nil); err != nil {
		t.Errorf("Verify of a fresh template: %v", err)
	}
}

// TestTemplateCommitRefusesStrays: a stage with files the metadata does
// not name (a builder's work files), or without one it names, is not
// committed; Abort then removes it.
func TestTemplateCommitRefusesStrays(t *testing.T) {
	s := newStore(t)
	for _, tc := range []struct {
		name  string
		spoil func(st *TemplateStage, m *TemplateMeta)
		want  string
	}{
		{"stray file", func(st *TemplateStage, m *TemplateMeta) {
			os.WriteFile(st.Path("rootfs.raw"), nil, 0o600)
		}, "not one of the template's files"},
		{"stray dir", func(st *TemplateStage, m *TemplateMeta) {
			os.Mkdir(st.Path("work"), 0o700)
		}, "not one of the template's files"},
		{"missing file", func(st *TemplateStage, m *TemplateMeta) {
			os.Remove(st.Path("initrd.img"))
		}, "missing"},
		{"link", func(st *TemplateStage, m *TemplateMeta) {
			os.Remove(st.Path("vmlinuz"))
			os.Symlink("/etc/passwd", st.Path("vmlinuz"))
		}, "not a regular file"},
		{"escaping name", func(st *TemplateStage, m *TemplateMeta) {
			m.Kernel.File = "../vmlinuz"
		}, "not a path inside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := s.NewTemplate("t")
			if err != nil {
				t.Fatal(err)
			}
			m := stageFiles(t, st)
			tc.spoil(st, &m)
			_, err = st.Commit(m, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Commit: %v, want an error saying %q", err, tc.want)
			}
			if err := st.Abort(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(st.Dir); !os.IsNotExist(err) {
				t.Errorf("stage still there after Abort: %v", err)
			}
			if _, err := s.Template("t"); !errors.Is(err, ErrTemplateNotFound) {
				t.Errorf("Template after a refused Commit: %v", err)
			}
		})
	}
}

func TestTemplateExists(t *testing.T) {
	s := newStore(t)
	a, err := s.NewTemplate("t")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.NewTemplate("t")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Commit(stageFiles(t, a), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(stageFiles(t, b), nil); !errors.Is(err, ErrTemplateExists) {
		t.Errorf("second Commit of one name: %v, want ErrTemplateExists", err)
	}
	b.Abort()
	if _, err := s.NewTemplate("t"); !errors.Is(err, ErrTemplateExists) {
		t.Errorf("NewTemplate of an existing name: %v, want ErrTemplateExists", err)
	}
	if _, err := s.NewTemplate("Not_A_Name"); !errors.Is(err, ErrBadName) {
		t.Errorf("NewTemplate of a bad name: %v", err)
	}
}

// TestTemplateSweep: a stage whose maker is gone (no lock on it) and a
// removed template's trash are removed by the next look at the
// templates; a stage whose maker lives is left alone.
func TestTemplateSweep(t *testing.T) {
	s := newStore(t)
	live, err := s.NewTemplate("live")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()
	dead := filepath.Join(s.TemplatesDir(), newPrefix+"dead-123")
	trash := filepath.Join(s.TemplatesDir(), trashPrefix+"old-123")
	for _, d := range []string{dead, trash} {
		if err := os.MkdirAll(filepath.Join(d, "disks"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.TemplateNames(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dead, trash} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s survived the sweep: %v", d, err)
		}
	}
	if _, err := os.Stat(live.Dir); err != nil {
		t.Errorf("the live stage was swept: %v", err)
	}
}

// TestTemplateVerify: a file changed after the template was made is
// found, whether or not its stamp is known, and named.
func TestTemplateVerify(t *testing.T) {
	s := newStore(t)
	tmpl := makeTemplate(t, s, "t")
	stamps, err := tmpl.Verify(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(stamps) != 3 {
		t.Fatalf("%d stamps, want 3", len(stamps))
	}
	again, err := tmpl.Verify(stamps)
	if err != nil || !reflect.DeepEqual(again, stamps) {
		t.Fatalf("Verify with known stamps: %v, %v; want the same stamps", again, err)
	}
	disk := tmpl.Path("disks/root.qcow2")
	os.Chmod(disk, 0o600)
	if err := os.WriteFile(disk, []byte("disk BYTES"), 0o600); err != nil { // same size
		t.Fatal(err)
	}
	for _, known := range [][]FileStamp{nil, stamps} {
		_, err := tmpl.Verify(known)
		var ce *TemplateChangedError
		if !errors.As(err, &ce) || ce.Path != disk || !strings.Contains(err.Error(), "SHA-256") {
			t.Errorf("Verify(%d known stamps) of a changed disk: %v", len(known), err)
		}
	}
	os.WriteFile(disk, []byte("short"), 0o600)
	if _, err := tmpl.Verify(stamps); err == nil || !strings.Contains(err.Error(), "size 5, want 10") {
		t.Errorf("Verify of a truncated disk: %v", err)
	}
}

// TestTemplateVerifyRemembers: Verify(nil) remembers the stamps it found
// good in the template, so the next command does not read an unchanged
// file again (here: a checksum made wrong in memory goes unseen while
// the remembered stamp holds, and is caught once the stamps file is
// gone, damaged or not the user's); a file written since is read again.
func TestTemplateVerifyRemembers(t *testing.T) {
	s := newStore(t)
	tmpl := makeTemplate(t, s, "t")
	if _, err := tmpl.Verify(nil); err != nil {
		t.Fatal(err)
	}
	stampsFile := tmpl.Path(TemplateStampsFile)
	if fi, err := os.Stat(stampsFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the stamps file after Verify: %v, %v", fi, err)
	}
	i := slices.IndexFunc(tmpl.Meta.Disks, func(d TemplateDisk) bool { return d.File == "disks/root.qcow2" })
	if i < 0 {
		t.Fatal("no disks/root.qcow2 in the template")
	}
	good := tmpl.Meta.Disks[i].SHA256
	tmpl.Meta.Disks[i].SHA256 = strings.Repeat("0", 64)
	if _, err := tmpl.Verify(nil); err != nil {
		t.Fatalf("Verify(nil) with the disk's stamp remembered read it again: %v", err)
	}
	for name, spoil := range map[string]func(){
		"removed":  func() { os.Remove(stampsFile) },
		"damaged":  func() { os.WriteFile(stampsFile, []byte("[{"), 0o600) },
		"writable": func() { os.Chmod(stampsFile, 0o666) },
	} {
		tmpl.Meta.Disks[i].SHA256 = good
		if _, err := tmpl.Verify(nil); err != nil {
			t.Fatal(err)
		}
		spoil()
		tmpl.Meta.Disks[i].SHA256 = strings.Repeat("0", 64)
		var ce *TemplateChangedError
		if _, err := tmpl.Verify(nil); !errors.As(err, &ce) {
			t.Errorf("stamps file %s: Verify(nil) = %v, want the wrong checksum found", name, err)
		}
	}
	tmpl.Meta.Disks[i].SHA256 = good
	if _, err := tmpl.Verify(nil); err != nil {
		t.Fatal(err)
	}
	disk := tmpl.Path("disks/root.qcow2")
	os.Chmod(disk, 0o600)
	if err := os.WriteFile(disk, []byte("disk BYTES"), 0o600); err != nil { // same size
		t.Fatal(err)
	}
	var ce *TemplateChangedError
	if _, err := tmpl.Verify(nil); !errors.As(err, &ce) || ce.Path != disk {
		t.Errorf("Verify(nil) of a disk written since its stamp was remembered: %v", err)
	}
}

func TestTemplateLock(t *testing.T) {
	s := newStore(t)
	tmpl := makeTemplate(t, s, "t")
	a, err := tmpl.Lock(false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tmpl.Lock(false)
	if err != nil {
		t.Fatalf("two shared locks: %v", err)
	}
	if _, err := tmpl.Lock(true); !errors.Is(err, ErrTemplateBusy) {
		t.Errorf("exclusive lock while shared ones are held: %v, want ErrTemplateBusy", err)
	}
	a.Unlock()
	b.Unlock()
	b.Unlock()
	x, err := tmpl.Lock(true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmpl.Lock(false); !errors.Is(err, ErrTemplateBusy) {
		t.Errorf("shared lock while an exclusive one is held: %v", err)
	}
	if err := s.RemoveTemplate(tmpl); err != nil {
		t.Fatal(err)
	}
	x.Unlock()
	if _, err := tmpl.Lock(false); !errors.Is(err, ErrTemplateNotFound) {
		t.Errorf("lock of a removed template: %v", err)
	}
	if _, err := s.Template("t"); !errors.Is(err, ErrTemplateNotFound) {
		t.Errorf("Template after RemoveTemplate: %v", err)
	}
	ents, _ := os.ReadDir(s.TemplatesDir())
	if len(ents) != 0 {
		t.Errorf("left in templates/ after the removal: %v", ents)
	}
}

// TestTemplateUsers: a VM whose from.json names the template uses it; a
// damaged from.json counts as a user.
func TestTemplateUsers(t *testing.T) {
	s := newStore(t)
	makeTemplate(t, s, "t")
	from := &FromRecord{Template: "t", ID: "id", Overlays: []Overlay{{Index: 0, Path: "/x", Base: "/y"}}}
	for _, name := range []string{"web", "db"} {
		if _, err := s.CreateVM(name, []byte("name: "+name+"\n"), Record{Phase: PhaseCreated}, CreateOptions{From: from}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create("plain", []byte("name: plain\n"), Record{Phase: PhaseCreated}); err != nil {
		t.Fatal(err)
	}
	other := &FromRecord{Template: "other", ID: "id"}
	if _, err := s.CreateVM("elsewhere", nil, Record{Phase: PhaseCreated}, CreateOptions{From: other}); err != nil {
		t.Fatal(err)
	}
	users, err := s.TemplateUsers("t")
	if err != nil || !reflect.DeepEqual(users, []string{"db", "web"}) {
		t.Errorf("TemplateUsers: %v, %v; want [db web]", users, err)
	}
	v, err := s.VM("web")
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.ReadFrom()
	if err != nil || got.Template != "t" || got.Version != 1 || !reflect.DeepEqual(got.Overlays, from.Overlays) {
		t.Errorf("ReadFrom: %+v, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(s.VMDir("plain"), FromFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if users, _ := s.TemplateUsers("t"); !reflect.DeepEqual(users, []string{"db", "plain", "web"}) {
		t.Errorf("TemplateUsers with a damaged from.json: %v", users)
	}
}

// TestCreateVMPrepare: what Prepare makes appears with the VM; a failing
// Prepare leaves nothing.
func TestCreateVMPrepare(t *testing.T) {
	s := newStore(t)
	prepare := func(dir, final string) error {
		if final != s.VMDir("web") {
			t.Errorf("final %s, want %s", final, s.VMDir("web"))
		}
		if err := os.Mkdir(filepath.Join(dir, DisksDir), 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, DisksDir, "root.qcow2"), []byte("overlay"), 0o600)
	}
	if _, err := s.CreateVM("web", nil, Record{Phase: PhaseCreated}, CreateOptions{Prepare: prepare}); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(s.VMDir("web"), DisksDir, "root.qcow2")); err != nil || string(data) != "overlay" {
		t.Errorf("overlay: %q, %v", data, err)
	}
	fail := func(dir, final string) error {
		os.WriteFile(filepath.Join(dir, "half"), nil, 0o600)
		return errors.New("no room")
	}
	if _, err := s.CreateVM("db", nil, Record{Phase: PhaseCreated}, CreateOptions{Prepare: fail}); err == nil || err.Error() != "no room" {
		t.Errorf("CreateVM with a failing Prepare: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(s.Home(), vmsDir))
	if len(ents) != 1 || ents[0].Name() != "web" {
		t.Errorf("vms/ holds %v, want only web", ents)
	}
}

func TestParseTemplateMeta(t *testing.T) {
	good := `{"version":1,"name":"t","id":"x","origin":{"kind":"build"},
	  "kernel":{"file":"vmlinuz","size":1,"sha256":"` + sum("") + `"},
	  "disks":[{"file":"disks/root.qcow2","size":1,"sha256":"` + sum("") + `","format":"qcow2","virtual_size":4096}]}`
	if _, err := ParseTemplateMeta([]byte(good), "template.json"); err != nil {
		t.Fatalf("a good template.json: %v", err)
	}
	for _, tc := range []struct{ old, new, want string }{
		{`"version":1`, `"version":3`, "version 3 written by a newer paddock"},
		{`"version":1`, `"version":1,"warm":{"state":{"file":"state","size":1,"sha256":"` + sum("") + `"},"memory":{"file":"memory","size":4096,"sha256":"` + sum("") + `"},"cpus":1,"memory_size":4096}`, "warm: version 1 has no memory snapshot"},
		{`"version":1`, `"version":2,"warm":{"state":{"file":"state","size":1,"sha256":"` + sum("") + `"},"memory":{"file":"memory","size":4096,"sha256":"` + sum("") + `"},"cpus":1,"memory_size":8192}`, "warm.memory_size 8192"},
		{`"version":1`, `"version":2,"warm":{"state":{"file":"vmlinuz","size":1,"sha256":"` + sum("") + `"},"memory":{"file":"memory","size":4096,"sha256":"` + sum("") + `"},"cpus":0,"memory_size":4096}`, "warm.state: vmlinuz is also kernel"},
		{`"name":"t"`, `"name":"../t"`, "not a template name"},
		{`"id":"x"`, `"id":""`, "no id"},
		{`"kind":"build"`, `"kind":"magic"`, `origin.kind "magic"`},
		{`"file":"vmlinuz"`, `"file":"/boot/vmlinuz"`, "not a path inside"},
		{`"file":"vmlinuz"`, `"file":"../../vmlinuz"`, "not a path inside"},
		{`"file":"vmlinuz"`, `"file":"disks/root.qcow2"`, "is also kernel"},
		{`"file":"vmlinuz"`, `"file":"template.json"`, "one of the template's own files"},
		{`"format":"qcow2"`, `"format":"vmdk"`, `format "vmdk"`},
		{`"virtual_size":4096`, `"virtual_size":0`, "virtual_size 0"},
		{`"sha256":"` + sum(""), `"sha256":"abc`, "not a hex SHA-256"},
		{`"disks":[`, `"x":[`, "no disks"},
		{`{"version"`, `{"version":"one","v"`, "cannot unmarshal"},
	} {
		data := strings.Replace(good, tc.old, tc.new, 1)
		if tc.old == `"disks":[` {
			data = strings.Replace(good, `"disks":`, `"x":`, 1)
		}
		_, err := ParseTemplateMeta([]byte(data), "template.json")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s: %v, want an error saying %q", tc.old, tc.new, err, tc.want)
		}
	}
}

// TestTemplateRenamedOrUnsafe: a template directory renamed by hand, or
// writable by others, is refused with a sentence saying why.
func TestTemplateRenamedOrUnsafe(t *testing.T) {
	s := newStore(t)
	tmpl := makeTemplate(t, s, "t")
	if err := os.Rename(tmpl.Dir, filepath.Join(s.TemplatesDir(), "u")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Template("u"); err == nil || !strings.Contains(err.Error(), "cannot be renamed") {
		t.Errorf("renamed template: %v", err)
	}
	tmpl = makeTemplate(t, s, "v")
	if err := os.Chmod(tmpl.Dir, 0o777); err != nil {
		t.Fatal(err)
	}
	var ue *UnsafeError
	if _, err := s.Template("v"); !errors.As(err, &ue) || ue.Path != tmpl.Dir {
		t.Errorf("world-writable template: %v", err)
	}
	os.Chmod(tmpl.Dir, 0o700)
	disk := tmpl.Path("disks/root.qcow2")
	os.Chmod(disk, 0o666)
	if _, err := s.Template("v"); !errors.As(err, &ue) || ue.Path != disk {
		t.Errorf("world-writable base disk: %v", err)
	}
}
