package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/disk/imagefile"
)

// addForceShare gives a reading image command qemu-img's -U/--force-share.
func addForceShare(cmd *cobra.Command) {
	cmd.Flags().BoolP("force-share", "U", false, "read the image even while a VM or another process writes it (what it shows may be inconsistent)")
}

// forceShare reports whether -U was given.
func forceShare(cmd *cobra.Command) bool {
	u, _ := cmd.Flags().GetBool("force-share")
	return u
}

// explainingInUse wraps a command's action so that an image another
// process uses is reported as one sentence that names the holder and says
// what to do (see explainInUse).
func explainingInUse(run func(*cobra.Command, []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return explainInUse(run(cmd, args))
	}
}

// explainInUse rewrites an error that holds an *imagefile.InUseError as
//
//	image d.qcow2 is in use: VM "web" (pid 4321) writes it; stop the VM first (paddock stop web), or pass -U (--force-share) to read it anyway
//
// dropping the packages' prefixes: the sentence names the file itself. -U
// is offered when the refused open was a read (every reading command has
// it); stopping the VM when a paddock VM holds the image. Other errors,
// and exit statuses, pass through.
func explainInUse(err error) error {
	var ee *exitError
	if errors.As(err, &ee) && ee.err != nil {
		return &exitError{code: ee.code, err: explainInUse(ee.err)}
	}
	var ie *imagefile.InUseError
	if !errors.As(err, &ie) {
		return err
	}
	var hints []string
	switch vms := ie.VMs(); len(vms) {
	case 0:
	case 1:
		hints = append(hints, fmt.Sprintf("stop the VM first (paddock stop %s)", vms[0]))
	default:
		hints = append(hints, fmt.Sprintf("stop the VMs first (paddock stop %s)", strings.Join(vms, " ")))
	}
	if !ie.Access.Writable() {
		hints = append(hints, "pass -U (--force-share) to read it anyway")
	}
	msg := "image " + ie.Error()
	if len(hints) > 0 {
		msg += "; " + strings.Join(hints, ", or ")
	}
	return &inUseMessage{msg: msg, err: ie}
}

// inUseMessage is the user's sentence for an *imagefile.InUseError, which
// it still unwraps to.
type inUseMessage struct {
	msg string
	err error
}

func (e *inUseMessage) Error() string { return e.msg }
func (e *inUseMessage) Unwrap() error { return e.err }
