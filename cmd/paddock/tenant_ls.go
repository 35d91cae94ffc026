package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/guest/tenant"
)

func newTenantLsCommand() *cobra.Command {
	var asJSON, quiet bool
	cmd := &cobra.Command{
		Use:     "ls [--json]",
		Aliases: []string{"list"},
		Short:   "List tenants, their limits and usage",
		Long: `List the tenants: NAME, VMS, CPUS, MEMORY and DISK, each what the tenant's
VMs have "of" its limit (2/10; "-" for no limit), and NETWORKS (how many
managed networks it has). The default tenant is always listed. --json
prints what paddock tenant inspect prints, for each.

Exit status: 0 ok, 1 error, 2 usage.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := openManager()
			if err != nil {
				return err
			}
			infos, err := m.Tenants()
			if err != nil {
				return err
			}
			return writeListing(cmd.OutOrStdout(), asJSON, quiet, infos, func(in *guest.TenantInfo) string { return in.Name }, tenantRows)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print names only")
	return cmd
}

// tenantRows is tenant ls's table.
func tenantRows(infos []*guest.TenantInfo) [][]string {
	rows := [][]string{{"NAME", "VMS", "CPUS", "MEMORY", "DISK", "NETWORKS"}}
	for _, in := range infos {
		u, l := in.Usage, in.Limits.Strings()
		used := []string{fmt.Sprint(u.VMs), fmt.Sprint(u.CPUs), u.Memory.String(), u.Disk.String()}
		row := []string{in.Name}
		for i := range used {
			if l[i] == tenant.Unlimited {
				row = append(row, used[i]+"/-")
			} else {
				row = append(row, used[i]+"/"+l[i])
			}
		}
		rows = append(rows, append(row, fmt.Sprint(len(in.Networks))))
	}
	return rows
}

// limitsText writes limits as flags: "--max-vms 10 --max-cpus unlimited ...".
func limitsText(l tenant.Limits) string {
	var b strings.Builder
	for i, v := range l.Strings() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "--%s %s", tenant.Flags[i], v)
	}
	return b.String()
}
