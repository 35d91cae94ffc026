package store

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// TemplateVersion is the newest version of template.json this code
// writes and reads. A newer file is refused with a clear message
// (ErrRecordVersion) rather than misread: a template another paddock
// made with parts this one does not know must not boot without them.
// Version 2 added the memory snapshot of a warm template (Warm); a
// template without one is still written as version 1, which older
// paddocks read.
const TemplateVersion = 2

// templateVersionCold is the version of a template without Warm.
const templateVersionCold = 1

// maxTemplateMeta bounds template.json; real ones are about 1 KiB.
const maxTemplateMeta = 1 << 20

// Template origins (TemplateOrigin.Kind).
const (
	// OriginBuild: built from packages (paddock template build).
	OriginBuild = "build"
	// OriginVM: frozen from a VM's disks (the clone feature).
	OriginVM = "vm"
)

// TemplateMeta is template.json: what a template is and the checksums of
// its files. Every file is named relative to the template's directory.
type TemplateMeta struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	// ID is new for every template made, so a template removed and made
	// again under the same name is a different one: a VM records the ID
	// of its template (FromRecord) and refuses to start on another.
	ID      string         `json:"id"`
	Created time.Time      `json:"created"`
	Origin  TemplateOrigin `json:"origin"`
	OS      TemplateOS     `json:"os"`
	Kernel  TemplateKernel `json:"kernel"`
	// Initrd is the initial ramdisk the kernel boots with, if any.
	Initrd *TemplateFile `json:"initrd,omitempty"`
	// Cmdline is the kernel command line a VM from the template boots
	// with (the root file system, the console); a VM's own cmdline is
	// appended to it.
	Cmdline string `json:"cmdline"`
	// Disks are the base disks, read-only; a VM from the template gets a
	// qcow2 overlay on each, in this order. Disks[0] is the root disk.
	Disks []TemplateDisk `json:"disks"`
	// Warm, for a warm template (made with --memory from a running VM),
	// is the machine saved at the instant its disks were frozen: the
	// base disks hold the disks' contents of that instant. Version 2.
	Warm *TemplateWarm `json:"warm,omitempty"`
}

// TemplateWarm is a warm template's memory snapshot: the saved machine a
// warm clone is restored from instead of booted.
type TemplateWarm struct {
	// State is the machine's state file (hypervisor/snapshot format),
	// naming no internal disk snapshot: the base disks are that state.
	State TemplateFile `json:"state"`
	// Memory is guest RAM, sparse; every clone maps it MAP_PRIVATE, so
	// it is never written.
	Memory TemplateFile `json:"memory"`
	// CPUs and MemorySize are the saved machine's vCPUs and bytes of
	// RAM: a clone must have the same.
	CPUs       int    `json:"cpus"`
	MemorySize uint64 `json:"memory_size"`
	// MACs are the MAC addresses of the saved machine's NICs, in order:
	// the restored guest knows its NICs by them until it re-probes them
	// (a warm clone's NICs have addresses of their own).
	MACs []string `json:"macs,omitempty"`
	// VMState is what the VM was doing at the snapshot: running or
	// paused. A warm clone runs either way.
	VMState string `json:"vm_state"`
}

// TemplateOrigin says how a template was made.
type TemplateOrigin struct {
	// Kind is OriginBuild or OriginVM.
	Kind string `json:"kind"`
	// Builder names what built it (OriginBuild): "debian-12".
	Builder string `json:"builder,omitempty"`
	// VM is the VM it was frozen from (OriginVM).
	VM string `json:"vm,omitempty"`
	// Seconds is how long making it took.
	Seconds float64 `json:"seconds,omitempty"`
}

// TemplateOS describes the guest operating system, from its
// /etc/os-release.
type TemplateOS struct {
	ID         string `json:"id,omitempty"`          // "debian"
	VersionID  string `json:"version_id,omitempty"`  // "12"
	Codename   string `json:"codename,omitempty"`    // "bookworm"
	PrettyName string `json:"pretty_name,omitempty"` // "Debian GNU/Linux 12 (bookworm)"
}

// TemplateFile is one file of a template.
type TemplateFile struct {
	// File is the file's path relative to the template's directory.
	File string `json:"file"`
	// Size is its size in bytes, SHA256 the hex SHA-256 of its contents.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// TemplateKernel is the kernel a template's VMs boot.
type TemplateKernel struct {
	TemplateFile
	// Release is the kernel release (`uname -r` in the guest).
	Release string `json:"release,omitempty"`
	// Package is the Debian package it came from, with its version.
	Package string `json:"package,omitempty"`
}

// TemplateDisk is one base disk of a template.
type TemplateDisk struct {
	TemplateFile
	// Format is the image format: qcow2 or raw.
	Format string `json:"format"`
	// VirtualSize is the size of the disk the guest sees.
	VirtualSize int64 `json:"virtual_size"`
}

// Files returns every file the metadata names, kernel first.
func (m *TemplateMeta) Files() []TemplateFile {
	var files []TemplateFile
	for _, f := range m.filePtrs() {
		files = append(files, *f)
	}
	return files
}

// filePtrs returns the entries of every file the metadata names, kernel
// first, then the initrd, the disks and a warm template's state and
// memory, for filling in.
func (m *TemplateMeta) filePtrs() []*TemplateFile {
	files := []*TemplateFile{&m.Kernel.TemplateFile}
	if m.Initrd != nil {
		files = append(files, m.Initrd)
	}
	for i := range m.Disks {
		files = append(files, &m.Disks[i].TemplateFile)
	}
	if m.Warm != nil {
		files = append(files, &m.Warm.State, &m.Warm.Memory)
	}
	return files
}

// Size returns the bytes the template's files take, as recorded.
func (m *TemplateMeta) Size() int64 {
	var n int64
	for _, f := range m.Files() {
		n += f.Size
	}
	return n
}

// marshal encodes template.json.
func (m TemplateMeta) marshal() ([]byte, error) {
	m.Version = templateVersionCold
	if m.Warm != nil {
		m.Version = TemplateVersion
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("store: encode template %s: %w", m.Name, err)
	}
	return append(data, '\n'), nil
}

// ParseTemplateMeta decodes and checks template.json content; path names
// it in errors. A version this code does not know wraps ErrRecordVersion.
func ParseTemplateMeta(data []byte, path string) (TemplateMeta, error) {
	var m TemplateMeta
	if len(data) > maxTemplateMeta {
		return m, fmt.Errorf("store: %s: larger than %d bytes: not a template's metadata", path, maxTemplateMeta)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("store: %s: %w", path, err)
	}
	if m.Version > TemplateVersion {
		return m, fmt.Errorf("store: %s: version %d %w (this one reads version %d); use a paddock at least as new as the one that made the template", path, m.Version, ErrRecordVersion, TemplateVersion)
	}
	if err := m.check(); err != nil {
		return m, fmt.Errorf("store: %s: %w", path, err)
	}
	return m, nil
}

// check validates the metadata's fields: what a damaged or hand-edited
// file could get wrong before paddock acts on it.
func (m *TemplateMeta) check() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m.Version < 1 {
		bad("version %d: want 1 to %d", m.Version, TemplateVersion)
	}
	if !ValidName(m.Name) {
		bad("name %q is not a template name", m.Name)
	}
	if m.ID == "" {
		bad("no id")
	}
	switch m.Origin.Kind {
	case OriginBuild, OriginVM:
	default:
		bad("origin.kind %q: want %s or %s", m.Origin.Kind, OriginBuild, OriginVM)
	}
	if len(m.Disks) == 0 {
		bad("no disks")
	}
	seen := map[string]string{}
	checkFile := func(field string, f TemplateFile) {
		if err := checkTemplateFile(f); err != nil {
			bad("%s: %w", field, err)
			return
		}
		if other, dup := seen[f.File]; dup {
			bad("%s: %s is also %s", field, f.File, other)
		}
		seen[f.File] = field
	}
	checkFile("kernel", m.Kernel.TemplateFile)
	if m.Initrd != nil {
		checkFile("initrd", *m.Initrd)
	}
	for i, d := range m.Disks {
		field := fmt.Sprintf("disks[%d]", i)
		checkFile(field, d.TemplateFile)
		if d.Format != "qcow2" && d.Format != "raw" {
			bad("%s.format %q: want qcow2 or raw", field, d.Format)
		}
		if d.VirtualSize <= 0 {
			bad("%s.virtual_size %d: want a positive size", field, d.VirtualSize)
		}
	}
	if w := m.Warm; w != nil {
		if m.Version < 2 {
			bad("warm: version %d has no memory snapshot: want version 2", m.Version)
		}
		checkFile("warm.state", w.State)
		checkFile("warm.memory", w.Memory)
		if w.CPUs < 1 {
			bad("warm.cpus %d: want at least 1", w.CPUs)
		}
		if w.MemorySize == 0 || w.Memory.Size != 0 && uint64(w.Memory.Size) != w.MemorySize {
			bad("warm.memory_size %d: want the memory file's size, %d", w.MemorySize, w.Memory.Size)
		}
	}
	if strings.ContainsAny(m.Cmdline, "\x00\n") {
		bad("cmdline has a NUL or a line break")
	}
	return errors.Join(errs...)
}

// checkTemplateFile checks a file entry: a clean relative path that stays
// inside the template's directory (and is not template.json or the lock),
// a size and a SHA-256.
func checkTemplateFile(f TemplateFile) error {
	switch {
	case f.File == "":
		return errors.New("no file")
	case filepath.IsAbs(f.File) || filepath.Clean(f.File) != f.File || f.File == "." || f.File == ".." || strings.HasPrefix(f.File, "../"):
		return fmt.Errorf("file %q is not a path inside the template's directory", f.File)
	case f.File == TemplateMetaFile || f.File == TemplateLockFile || f.File == TemplateSpecFile:
		return fmt.Errorf("file %q is one of the template's own files", f.File)
	case f.Size < 0:
		return fmt.Errorf("negative size %d", f.Size)
	}
	if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != 32 {
		return fmt.Errorf("sha256 %q is not a hex SHA-256", f.SHA256)
	}
	return nil
}
