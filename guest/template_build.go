package guest

import (
	"context"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/images/debootstrap"
)

// BuildTemplate builds the template called name from Debian packages
// (debootstrap.Build with o) in a stage of the store and commits it. A
// failed or interrupted build (ctx) leaves nothing: the stage is
// removed, and the build's mounts and processes end with it. An
// *ExistsError, before anything is built, if a template of that name
// exists. Precondition: debootstrap.Check(o) passed (root, tools).
func (m *Manager) BuildTemplate(ctx context.Context, name string, o debootstrap.Options) (*store.Template, *debootstrap.Result, error) {
	st, err := m.NewTemplate(name)
	if err != nil {
		return nil, nil, err
	}
	defer st.Abort()
	start := time.Now()
	res, err := debootstrap.Build(ctx, st.Dir, o)
	if err != nil {
		return nil, nil, err
	}
	spec, err := buildSpec(o.Release, res)
	if err != nil {
		return nil, nil, err
	}
	meta := store.TemplateMeta{
		Origin:  store.TemplateOrigin{Kind: store.OriginBuild, Builder: o.Release.Name, Seconds: time.Since(start).Round(time.Second).Seconds()},
		OS:      store.TemplateOS{ID: res.OS.ID, VersionID: res.OS.VersionID, Codename: res.OS.Codename, PrettyName: res.OS.PrettyName},
		Kernel:  store.TemplateKernel{TemplateFile: store.TemplateFile{File: res.Kernel}, Release: res.KernelRelease, Package: res.KernelPackage},
		Initrd:  &store.TemplateFile{File: res.Initrd},
		Cmdline: res.Cmdline,
		Disks:   []store.TemplateDisk{{TemplateFile: store.TemplateFile{File: res.Disk}, Format: configs.FormatQcow2, VirtualSize: res.DiskSize}},
	}
	t, err := m.CommitTemplate(st, meta, spec)
	if err != nil {
		return nil, nil, err
	}
	return t, res, nil
}

// buildSpec is spec.yaml of a built template: what it was built from.
func buildSpec(r debootstrap.Release, res *debootstrap.Result) ([]byte, error) {
	spec, err := yaml.Marshal(struct {
		Builder        string   `yaml:"builder"`
		Suite          string   `yaml:"suite"`
		Mirror         string   `yaml:"mirror"`
		SecurityMirror string   `yaml:"security_mirror,omitempty"`
		DiskSize       string   `yaml:"disk_size"`
		Kernel         string   `yaml:"kernel"`
		Packages       []string `yaml:"packages"`
		Installed      int      `yaml:"installed_packages"`
	}{r.Name, r.Suite, res.Mirror, res.SecurityMirror, configs.ByteSize(res.DiskSize).String(), r.Kernel, res.Packages, res.Installed})
	if err != nil {
		return nil, fmt.Errorf("guest: encode the build's spec: %w", err)
	}
	header := fmt.Sprintf("# paddock template build %s, %s\n", r.Name, time.Now().UTC().Format(time.RFC3339))
	return append([]byte(header), spec...), nil
}
