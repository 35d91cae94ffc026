package guest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest/store"
)

// TemplateInUseError: VMs made from the template still exist.
type TemplateInUseError struct {
	Name string
	VMs  []string
}

func (e *TemplateInUseError) Error() string {
	what := "VM " + e.VMs[0] + " uses"
	if len(e.VMs) > 1 {
		what = "VMs " + strings.Join(e.VMs, ", ") + " use"
	}
	return fmt.Sprintf("cannot remove template '%s': %s it (their disks are overlays on its disks); remove them first (paddock rm %s)", e.Name, what, strings.Join(e.VMs, " "))
}

// TemplateBusyError: another command is making a VM from the template,
// or removing it.
type TemplateBusyError struct{ Name string }

func (e *TemplateBusyError) Error() string {
	return fmt.Sprintf("template '%s' is busy: another paddock command is making a VM from it or removing it; try again when it is done", e.Name)
}

// templateError turns the store's template errors into the ones users
// see.
func (m *Manager) templateError(name string, err error) error {
	switch {
	case errors.Is(err, store.ErrTemplateNotFound):
		names, _ := m.store.TemplateNames()
		return &NotFoundError{Name: name, Suggestion: suggest(name, names), Kind: KindTemplate}
	case errors.Is(err, store.ErrTemplateExists):
		return &ExistsError{Name: name, Kind: KindTemplate}
	case errors.Is(err, store.ErrTemplateBusy):
		return &TemplateBusyError{Name: name}
	}
	return err
}

// Template returns the template called name, its metadata checked (not
// its files' contents: Verify does that).
func (m *Manager) Template(name string) (*store.Template, error) {
	t, err := m.store.Template(name)
	if err != nil {
		return nil, m.templateError(name, err)
	}
	return t, nil
}

// TemplateProblem is a template Templates could not read.
type TemplateProblem struct {
	Name string
	Err  error
}

// Templates returns every template, sorted by name, and the templates it
// could not read (damaged, or made by a newer paddock) with why.
func (m *Manager) Templates() ([]*store.Template, []TemplateProblem, error) {
	names, err := m.store.TemplateNames()
	if err != nil {
		return nil, nil, err
	}
	var ts []*store.Template
	var bad []TemplateProblem
	for _, n := range names {
		t, err := m.store.Template(n)
		switch {
		case errors.Is(err, store.ErrTemplateNotFound):
			continue // removed meanwhile
		case err != nil:
			bad = append(bad, TemplateProblem{Name: n, Err: err})
		default:
			ts = append(ts, t)
		}
	}
	return ts, bad, nil
}

// NewTemplate starts making the template called name: a stage to fill
// and commit (store.TemplateStage). An *ExistsError if one of that name
// exists.
func (m *Manager) NewTemplate(name string) (*store.TemplateStage, error) {
	st, err := m.store.NewTemplate(name)
	if err != nil {
		return nil, m.templateError(name, err)
	}
	return st, nil
}

// CommitTemplate commits a stage NewTemplate returned (see
// store.TemplateStage.Commit), with the errors users see.
func (m *Manager) CommitTemplate(st *store.TemplateStage, meta store.TemplateMeta, spec []byte) (*store.Template, error) {
	t, err := st.Commit(meta, spec)
	if err != nil {
		return nil, m.templateError(st.Name(), err)
	}
	return t, nil
}

// TemplateUsers returns the VMs made from the template called name.
func (m *Manager) TemplateUsers(name string) ([]string, error) {
	return m.store.TemplateUsers(name)
}

// VerifyTemplate checks the contents of every file of the template
// against its metadata's SHA-256s (a *store.TemplateChangedError if one
// changed).
func (m *Manager) VerifyTemplate(name string) (*store.Template, error) {
	t, err := m.Template(name)
	if err != nil {
		return nil, err
	}
	if _, err := t.Verify(nil); err != nil {
		return nil, err
	}
	return t, nil
}

// RemoveTemplate deletes the template called name; a
// *TemplateInUseError, naming them, while VMs made from it exist.
func (m *Manager) RemoveTemplate(name string) error {
	t, err := m.Template(name)
	if err != nil {
		return err
	}
	l, err := t.Lock(true)
	if err != nil {
		return m.templateError(name, err)
	}
	defer l.Unlock()
	users, err := m.store.TemplateUsers(name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return &TemplateInUseError{Name: name, VMs: users}
	}
	if err := m.store.RemoveTemplate(t); err != nil {
		return m.templateError(name, err)
	}
	return nil
}

// TemplateLookup returns what configs' Validate asks about templates
// (configs.Host.Templates), answered from this manager's store.
func (m *Manager) TemplateLookup() configs.TemplateLookup { return templateLookup{m} }

type templateLookup struct{ m *Manager }

func (l templateLookup) Template(name string) (configs.TemplateFacts, error) {
	t, err := l.m.store.Template(name)
	if errors.Is(err, store.ErrTemplateNotFound) {
		return configs.TemplateFacts{}, fmt.Errorf("template %s: %w", name, configs.ErrNoTemplate)
	}
	if err != nil {
		return configs.TemplateFacts{}, err
	}
	return configs.TemplateFacts{RootSize: t.Meta.Disks[0].VirtualSize, Disks: len(t.Meta.Disks), Cmdline: t.Meta.Cmdline}, nil
}

func (l templateLookup) TemplateNames() []string {
	names, _ := l.m.store.TemplateNames()
	return names
}
