package main

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/guest/access"
	"github.com/paddock-vm/paddock/guest/store"
)

// sshFlags are the flags paddock ssh and paddock cp share.
type sshFlags struct {
	address string
	wait    time.Duration
}

func (f *sshFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.address, "address", "", "the guest's SSH server, HOST or HOST:PORT, instead of the address paddock knows")
	cmd.Flags().DurationVar(&f.wait, "wait", access.DefaultWait, "how long to wait for the guest's SSH server to answer (0: do not wait)")
}

// target checks the flags and returns how to reach the guest of VM name,
// once its SSH server answers.
func (f *sshFlags) target(cmd *cobra.Command, name string) (*access.Target, error) {
	if f.wait < 0 {
		return nil, usageError("--wait %s: want a duration, 0 to not wait", f.wait)
	}
	m, err := openManager()
	if err != nil {
		return nil, err
	}
	t, err := m.SSHTarget(cmd.Context(), name, guest.SSHOptions{Address: f.address, Wait: f.wait})
	if err != nil {
		return nil, managedError(err)
	}
	return t, nil
}

func newSSHCommand() *cobra.Command {
	var f sshFlags
	cmd := &cobra.Command{
		Use:   "ssh NAME [-- CMD...]",
		Short: "Open a shell in a VM's guest, or run a command there, over SSH",
		Long: `Run the system's ssh to the guest of a running VM with cloud_init, as
its user, with paddock's key (which such a VM authorizes): a login shell,
or CMD (its words joined with spaces and run by the user's shell, as ssh
does). paddock first waits for the guest's SSH server to answer (--wait,
3 minutes by default: a first boot runs cloud-init before sshd starts)
at the address the VM's managed network gave it (for a libvirt VM, the
DHCP lease of the libvirt network its NIC is on), or --address. The guest's host keys are those cloud-init printed on its console, when
it did; otherwise ssh records the key the guest shows the first time and
refuses another one later. They are kept in the VM's known_hosts.

Exit status: the command's (or ssh's 255 when ssh fails); before ssh
runs, 1 error, 2 usage, 3 no such VM, 4 the VM is not running.`,
		Example: `  paddock ssh web
  paddock ssh web -- hostname
  paddock ssh web -- sudo journalctl -u nginx
  paddock ssh --address 192.168.1.20 router`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("ssh needs a VM name (usage: paddock %s)", cmd.Use)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			command := args[1:]
			// Flags stop at NAME, so a "--" after it is still there.
			if len(command) > 0 && command[0] == "--" {
				command = command[1:]
			}
			return sshAction(cmd, args[0], command, f)
		},
	}
	// Flags after NAME belong to the command run in the guest.
	cmd.Flags().SetInterspersed(false)
	f.add(cmd)
	return managed(cmd, store.StateRunning)
}

func sshAction(cmd *cobra.Command, name string, command []string, f sshFlags) error {
	t, err := f.target(cmd, name)
	if err != nil {
		return err
	}
	args, err := t.SSHArgs(command)
	if err != nil {
		return err
	}
	return runSystem(cmd, "ssh", args)
}

// runSystem runs the system's ssh or scp with paddock's standard input
// and output, and exits with its status. paddock ignores the interrupts
// a terminal sends the both of them meanwhile: they are the program's.
func runSystem(cmd *cobra.Command, program string, args []string) error {
	path, err := access.Program(program)
	if err != nil {
		return err
	}
	c := exec.Command(path, args...)
	c.Stdin, c.Stdout, c.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	signal.Ignore(os.Interrupt, syscall.SIGQUIT)
	defer signal.Reset(os.Interrupt, syscall.SIGQUIT)
	err = c.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		status := ee.ExitCode()
		if status < 0 { // killed by a signal
			status = 255
		}
		return &exitError{code: status}
	case err != nil:
		return err
	}
	return nil
}
