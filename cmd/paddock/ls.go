package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest"
)

func newLsCommand() *cobra.Command {
	var asJSON, quiet bool
	var labels []string
	var tenantName string
	cmd := &cobra.Command{
		Use:     "ls [--json] [--label KEY=VALUE]... [--tenant NAME]",
		Aliases: []string{"list"},
		Short:   "List VMs and their state",
		Long: `List the VMs in paddock's state directory: NAME, STATE, CPUS, MEMORY,
UPTIME (since the current boot), ADDRESS (the VM's address on its first
managed network, docs/networks.md) and BACKEND (native, or libvirt:HOST).
A state is one of created, starting, running, paused, stopping,
restarting, stopped, crashed, or unknown; it is derived from facts (is the
VMM alive, what did it record; for a libvirt VM, the domain's state on its
host), so a VMM that died shows as crashed and a libvirt VM whose host
cannot be reached as unknown (paddock inspect tells why). The table fits the
terminal: long names are shortened.

A TENANT column comes after NAME when a listed VM belongs to a tenant
other than the default (docs/cli.md, Tenants); without tenants the table
is as it always was.

--json prints a JSON array with one object per VM. --label filters by
label (repeat it: every one must match); --tenant lists only the VMs of
that tenant.

Exit status: 0 ok, 1 error, 2 usage.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return lsAction(cmd, asJSON, quiet, labels, tenantName)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print names only")
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "only VMs with this label (KEY=VALUE, or KEY for any value)")
	cmd.Flags().StringVar(&tenantName, "tenant", "", "only VMs of this tenant")
	return managed(cmd)
}

func lsAction(cmd *cobra.Command, asJSON, quiet bool, labels []string, tenantName string) error {
	filter, err := parseLabelFilter(labels)
	if err != nil {
		return err
	}
	m, err := openManager()
	if err != nil {
		return err
	}
	if tenantName != "" {
		// An unknown tenant is an error (with a suggestion), not an
		// empty list.
		if _, err := m.Tenant(tenantName); err != nil {
			return tenantError(err)
		}
	}
	all, err := m.List()
	if err != nil {
		return err
	}
	infos := make([]*guest.Info, 0, len(all))
	for _, in := range all {
		if matchLabels(in.Labels, filter) && (tenantName == "" || in.Tenant == tenantName) {
			infos = append(infos, in)
		}
	}
	hostWarnings(cmd, m, infos)
	if err := writeListing(cmd.OutOrStdout(), asJSON, quiet, infos, func(in *guest.Info) string { return in.Name }, lsRows); err != nil || asJSON || quiet {
		return err
	}
	for _, in := range infos {
		for _, w := range in.Warnings {
			fmt.Fprintf(cmd.ErrOrStderr(), "paddock: warning: VM %s: %s\n", in.Name, w)
		}
	}
	return nil
}

// labelFilter maps label keys to wanted values ("" with any: KEY alone).
type labelFilter map[string]*string

func parseLabelFilter(args []string) (labelFilter, error) {
	f := labelFilter{}
	for _, a := range args {
		k, v, hasValue := strings.Cut(a, "=")
		if k == "" {
			return nil, usageError("--label %q: want KEY=VALUE or KEY", a)
		}
		if hasValue {
			f[k] = &v
		} else {
			f[k] = nil
		}
	}
	return f, nil
}

func matchLabels(labels map[string]string, f labelFilter) bool {
	for k, want := range f {
		v, ok := labels[k]
		if !ok || want != nil && v != *want {
			return false
		}
	}
	return true
}

// lsRows is the table: a header, then one row per VM. A TENANT column
// follows NAME when a VM belongs to a tenant other than the default.
func lsRows(infos []*guest.Info) [][]string {
	tenants := slices.ContainsFunc(infos, func(in *guest.Info) bool { return in.Tenant != "" && in.Tenant != configs.DefaultTenant })
	rows := [][]string{{"NAME", "STATE", "CPUS", "MEMORY", "UPTIME", "ADDRESS", "BACKEND"}}
	if tenants {
		rows[0] = slices.Insert(rows[0], 1, "TENANT")
	}
	for _, in := range infos {
		cpus, mem, backend := "-", "-", in.Backend
		if in.CPUs > 0 {
			cpus = fmt.Sprint(in.CPUs)
		}
		if in.Memory > 0 {
			mem = configs.ByteSize(in.Memory).String()
		}
		if backend == "" {
			backend = "-"
		}
		if in.Host != "" {
			backend += ":" + in.Host
		}
		up := "-"
		if in.Uptime > 0 || in.State == "running" || in.State == "paused" {
			up = formatUptime(time.Duration(in.Uptime * float64(time.Second)))
		}
		row := []string{in.Name, string(in.State), cpus, mem, up, lsAddress(in.Addresses), backend}
		if tenants {
			ten := in.Tenant
			if ten == "" {
				ten = "-"
			}
			row = slices.Insert(row, 1, ten)
		}
		rows = append(rows, row)
	}
	return rows
}

// lsAddress is the ADDRESS column: the first managed NIC's address, and
// how many more there are ("10.77.0.2 +1"); "-" for none.
func lsAddress(addrs []guest.Address) string {
	switch len(addrs) {
	case 0:
		return "-"
	case 1:
		return addrs[0].IP
	}
	return fmt.Sprintf("%s +%d", addrs[0].IP, len(addrs)-1)
}

// formatUptime prints a duration in at most two units: 45s, 12m03s,
// 5h07m, 3d04h.
func formatUptime(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

// terminalWidth is the width of w if it is a terminal, else 0.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}

// tableGap separates table columns.
const tableGap = "  "

// writeTable prints rows as left-aligned columns. When width > 0 and the
// table is wider, the first column (names) is shortened, with "…", down
// to a minimum; the other columns are short and never cut.
func writeTable(w io.Writer, rows [][]string, width int) {
	if len(rows) == 0 {
		return
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	if width > 0 {
		total := len(tableGap) * (len(widths) - 1)
		for _, wd := range widths {
			total += wd
		}
		const minFirst = 8
		if over := total - width; over > 0 {
			widths[0] = max(minFirst, widths[0]-over)
		}
	}
	var b strings.Builder
	for _, r := range rows {
		b.Reset()
		for i, c := range r {
			if i == 0 {
				c = shorten(c, widths[0])
			}
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)))
				b.WriteString(tableGap)
			}
		}
		fmt.Fprintln(w, b.String())
	}
}

// shorten cuts s to n runes, ending in "…" if cut.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// writeListing prints what an ls command lists: items as a JSON array
// (--json), their names one a line (-q), or the table rows makes.
func writeListing[T any](out io.Writer, asJSON, quiet bool, items []T, name func(T) string, rows func([]T) [][]string) error {
	switch {
	case asJSON:
		if items == nil {
			items = []T{}
		}
		return writeJSON(out, items)
	case quiet:
		for _, it := range items {
			fmt.Fprintln(out, name(it))
		}
		return nil
	}
	writeTable(out, rows(items), terminalWidth(out))
	return nil
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}
