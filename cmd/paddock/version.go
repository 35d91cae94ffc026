package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version, commit and modified are set at link time (the Makefile does):
// -ldflags "-X main.version=v0.1.0 -X main.commit=<full revision>
// -X main.modified=true". Without them the commit is read from Go's VCS
// stamp, which builds with -buildvcs=false (the default on some machines)
// leave out.
var (
	version  = "dev"
	commit   = ""
	modified = ""
)

func newVersionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print the paddock version",
		Long: `Print paddock's version, the commit it was built from, its Go version and
platform, as "paddock --version" does. --json prints one object with the
fields version, commit, modified, go, os and arch.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), buildVersion())
			}
			fmt.Fprintln(cmd.OutOrStdout(), buildVersion())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

// versionInfo is what `paddock version --json` prints.
type versionInfo struct {
	Version  string `json:"version"`  // the release, or "dev"
	Commit   string `json:"commit"`   // the full VCS revision, "" if unknown
	Modified bool   `json:"modified"` // built from a tree with uncommitted changes
	Go       string `json:"go"`       // the Go toolchain, such as "go1.26.8"
	OS       string `json:"os"`
	Arch     string `json:"arch"`
}

// buildVersion reads the version the binary was built with.
func buildVersion() versionInfo {
	v := versionInfo{Version: version, Commit: commit, Modified: modified == "true", Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok && commit == "" {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	return v
}

// String is the one line `paddock version` and `paddock --version` print:
// "paddock v0.1.0 (0123456789ab, modified) linux/amd64 go1.26.8".
func (v versionInfo) String() string {
	rev := ""
	if len(v.Commit) >= 12 {
		rev = v.Commit[:12]
		if v.Modified {
			rev += ", modified"
		}
		rev = " (" + rev + ")"
	}
	return fmt.Sprintf("paddock %s%s %s/%s %s", v.Version, rev, v.OS, v.Arch, v.Go)
}
