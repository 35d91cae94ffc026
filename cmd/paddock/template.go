package main

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/guest/store"
)

func newTemplateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "template COMMAND",
		Short: "Build, list, inspect and remove templates (guest OSes that VMs are made from)",
		Long: `A template is a guest operating system that VMs are made from: a kernel,
an initrd and read-only base disks, with their checksums. A VM whose YAML
says from: NAME boots the template's kernel and gets its own qcow2
overlay on the template's disks (docs/yaml.md, from). paddock template
build makes a template from Debian packages. Templates live in
$PADDOCK_HOME/templates. See docs/cli.md, "Templates".`,
		Args: noArgs,
	}
	cmd.AddCommand(newTemplateBuildCommand(), newTemplateCreateCommand(), newTemplateLsCommand(), newTemplateInspectCommand(), newTemplateRmCommand())
	return cmd
}

// templateError gives a template error its exit status: 3 no such
// template, 4 it exists or VMs use it, 5 another command uses it.
func templateError(err error) error {
	var (
		iu *guest.TemplateInUseError
		be *guest.TemplateBusyError
	)
	switch {
	case errors.As(err, &iu):
		return &exitError{code: codeWrongState, err: err}
	case errors.As(err, &be):
		return &exitError{code: codeBusy, err: err}
	}
	return managedError(err)
}

// completeTemplates completes template names.
func completeTemplates(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	m, err := openManager()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ts, _, _ := m.Templates()
	var names []string
	for _, t := range ts {
		names = append(names, t.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// templateRow is one template as ls and inspect show it.
type templateRow struct {
	Name string `json:"name"`
	// OS is the guest's pretty name; Kernel its kernel release.
	OS     string `json:"os"`
	Kernel string `json:"kernel"`
	// Size is the bytes of its files; DiskSize its root disk's size.
	Size     int64     `json:"size"`
	DiskSize int64     `json:"disk_size"`
	Created  time.Time `json:"created"`
	// VMs are the VMs made from it.
	VMs []string `json:"vms"`
	// Dir is the template's directory.
	Dir string `json:"dir"`
	// Meta is template.json (inspect only).
	Meta *store.TemplateMeta `json:"metadata,omitempty"`
	// Verified says the files' checksums were checked (inspect --verify).
	Verified bool `json:"verified,omitempty"`
}

func newTemplateRow(m *guest.Manager, t *store.Template) (templateRow, error) {
	users, err := m.TemplateUsers(t.Name)
	if err != nil {
		return templateRow{}, err
	}
	if users == nil {
		users = []string{}
	}
	return templateRow{
		Name: t.Name, OS: t.Meta.OS.PrettyName, Kernel: t.Meta.Kernel.Release,
		Size: t.Meta.Size(), DiskSize: t.Meta.Disks[0].VirtualSize,
		Created: t.Meta.Created, VMs: users, Dir: t.Dir,
	}, nil
}

func newTemplateLsCommand() *cobra.Command {
	var asJSON, quiet bool
	cmd := &cobra.Command{
		Use:     "ls [--json]",
		Aliases: []string{"list"},
		Short:   "List templates",
		Long: `List the templates: NAME, OS, KERNEL (release), SIZE (of its files),
CREATED and VMS (how many VMs are made from it). --json prints a JSON
array with one object per template (also its root disk's size, its VMs
and its directory). A template that cannot be read is named on standard
error, and the status is 1.

Exit status: 0 ok, 1 error, 2 usage.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := openManager()
			if err != nil {
				return err
			}
			ts, bad, err := m.Templates()
			if err != nil {
				return err
			}
			rows := []templateRow{}
			for _, t := range ts {
				r, err := newTemplateRow(m, t)
				if err != nil {
					return err
				}
				rows = append(rows, r)
			}
			out := cmd.OutOrStdout()
			switch {
			case asJSON:
				if err := writeJSON(out, rows); err != nil {
					return err
				}
			case quiet:
				for _, r := range rows {
					fmt.Fprintln(out, r.Name)
				}
			default:
				table := [][]string{{"NAME", "OS", "KERNEL", "SIZE", "CREATED", "VMS"}}
				for _, r := range rows {
					table = append(table, []string{r.Name, dash(r.OS), dash(r.Kernel), humanSize(r.Size),
						r.Created.Local().Format("2006-01-02 15:04"), fmt.Sprint(len(r.VMs))})
				}
				writeTable(out, table, terminalWidth(out))
			}
			for _, b := range bad {
				printError(cmd.ErrOrStderr(), fmt.Errorf("template %s: %w", b.Name, b.Err))
			}
			if len(bad) > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print names only")
	return cmd
}

// dash shows an empty value as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newTemplateInspectCommand() *cobra.Command {
	var verify bool
	cmd := &cobra.Command{
		Use:   "inspect NAME [--verify]",
		Short: "Show a template's metadata as JSON",
		Long: `Print what paddock template ls shows of a template, with its metadata
(template.json: the OS, the kernel, every file with its size and SHA-256,
the kernel command line, how it was made), as JSON. --verify reads every
file and checks it against its SHA-256 first (paddock create does that
before it makes a VM from the template).

Exit status: 0 ok, 1 error (a file changed, with --verify), 2 usage,
3 no such template.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeTemplates,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := openManager()
			if err != nil {
				return err
			}
			get := m.Template
			if verify {
				get = m.VerifyTemplate
			}
			t, err := get(args[0])
			if err != nil {
				return templateError(err)
			}
			r, err := newTemplateRow(m, t)
			if err != nil {
				return err
			}
			r.Meta, r.Verified = &t.Meta, verify
			return writeJSON(cmd.OutOrStdout(), r)
		},
	}
	cmd.Flags().BoolVar(&verify, "verify", false, "check every file against its SHA-256")
	return cmd
}

func newTemplateRmCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove templates",
		Long: `Remove each template and its files. A template that VMs are made from
is refused, naming them: their disks are overlays on its disks (paddock
rm them first).

Exit status: 0 removed, 1 error, 2 usage, 3 no such template, 4 VMs use
it, 5 another command is using it.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("template rm needs at least one template name (usage: paddock template %s)", cmd.Use)
			}
			return nil
		},
		ValidArgsFunction: completeTemplates,
		RunE: func(cmd *cobra.Command, names []string) error {
			m, err := openManager()
			if err != nil {
				return err
			}
			return forEachVM(cmd, names, func(name string) error {
				if err := m.RemoveTemplate(name); err != nil {
					return templateError(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: removed\n", name)
				return nil
			})
		},
	}
	return cmd
}

// lazyTemplates answers configs' questions about templates (from:) from
// the state directory, which it opens only when a VM names a template:
// validating a file that does not must not create the state directory.
type lazyTemplates struct {
	once   sync.Once
	lookup configs.TemplateLookup
	err    error
}

func (l *lazyTemplates) open() error {
	l.once.Do(func() {
		m, err := openManager()
		if err != nil {
			l.err = err
			return
		}
		l.lookup = m.TemplateLookup()
	})
	return l.err
}

func (l *lazyTemplates) Template(name string) (configs.TemplateFacts, error) {
	if err := l.open(); err != nil {
		return configs.TemplateFacts{}, err
	}
	return l.lookup.Template(name)
}

func (l *lazyTemplates) TemplateNames() []string {
	if l.open() != nil {
		return nil
	}
	return l.lookup.TemplateNames()
}
