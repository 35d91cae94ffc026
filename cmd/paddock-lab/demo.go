package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/paddock-vm/paddock/test/lab"
	"github.com/spf13/cobra"
)

// demoYAML is where the demo's VM description goes in L1. The example
// refers to ../../build/guest/*, which from /guest resolves to
// /build/guest/*: the demo links those to the lab's guest files.
const demoYAML = "/guest/hello.yaml"

func newDemoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the hello VM with paddock inside the nested KVM lab, on this terminal",
		Long: `Boots the lab's L1 VM with its serial console on this terminal and runs
'paddock run -f /guest/hello.yaml' there (configs/examples/hello.yaml, booting the
stock Debian kernel and the hello initrd). Ctrl-C and Ctrl-A reach the guest and
the inner paddock, not QEMU. L1 powers off when paddock exits, and
paddock-lab exits with paddock's status.

When stdin is not a terminal it is passed through, so
  echo 'uname -a; poweroff -f' | paddock-lab demo
works in scripts.`,
		Args: cobra.NoArgs,
		RunE: demoAction,
	}
	addMachineFlags(cmd)
	cmd.Flags().String("yaml", "", "VM description to run (default: configs/examples/hello.yaml of this checkout)")
	return cmd
}

func demoAction(cmd *cobra.Command, _ []string) error {
	opts, err := labOptions(cmd)
	if err != nil {
		return err
	}
	yaml, _ := cmd.Flags().GetString("yaml")
	if yaml == "" {
		if yaml, err = checkoutFile("configs/examples/hello.yaml"); err != nil {
			return err
		}
	}
	if _, err := os.Stat(yaml); err != nil {
		return err
	}
	l := lab.NewLab(opts)
	defer l.Close()
	logf := progress(cmd)
	if logf != nil {
		logf("building the L1 image (paddock from this checkout, Debian kernel, hello initrd)")
	}
	sc := lab.Scenario{
		Quiet:       true,
		WithPaddock: true,
		Steps: []lab.Step{{
			Name:        "demo",
			Script:      "exec paddock run -f " + demoYAML + "\n",
			Interactive: true,
		}},
		Files: map[string]lab.File{
			demoYAML:                  {Source: yaml},
			"/build/guest/vmlinuz":    {Link: lab.GuestVmlinuz},
			"/build/guest/initrd.img": {Link: lab.GuestInitrd},
		},
	}
	if _, err := l.Image(cmd.Context()); err != nil {
		return err
	}
	if logf != nil {
		logf("booting L1 (QEMU TCG with AMD-V); paddock starts in a few seconds")
	}
	err = l.Attach(cmd.Context(), sc, lab.AttachOptions{
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Terminal:   isTerminal(os.Stdin),
		InputAfter: "@@LAB l2.init",
	})
	// paddock's own status (3 for a reboot, 1 for an error), which it has
	// explained on the console already.
	if se := (*lab.StepExitError)(nil); errors.As(err, &se) {
		return &exitError{code: se.Status}
	}
	return err
}

// checkoutFile returns the path of a file of this source checkout (found
// through the Go module the current directory belongs to).
func checkoutFile(rel string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run paddock-lab inside the paddock checkout, or pass --yaml (go env GOMOD: %v)", err)
	}
	return filepath.Join(filepath.Dir(gomod), rel), nil
}
