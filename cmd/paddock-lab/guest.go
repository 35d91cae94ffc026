package main

import (
	"fmt"

	"github.com/paddock-vm/paddock/images"
	"github.com/paddock-vm/paddock/images/debian"
	"github.com/spf13/cobra"
)

func newGuestCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "guest",
		Short: "Build the hello demo guest: vmlinuz, vmlinux and initrd.img from Debian packages",
		Long: `Fetches Debian's current linux-image-amd64 kernel and busybox-static (cached
in $PADDOCK_CACHE, else $XDG_CACHE_HOME/paddock or ~/.cache/paddock), extracts the
ELF vmlinux for PVH boot, builds the hello initramfs and writes
DIR/vmlinuz, DIR/vmlinux and DIR/initrd.img.`,
		Args: cobra.NoArgs,
		RunE: guestAction,
	}
	cmd.Flags().String("out", "build/guest", "output directory")
	cmd.Flags().String("kernel-meta", debian.DefaultKernelMeta, "Debian kernel meta-package to resolve (e.g. linux-image-cloud-amd64)")
	return cmd
}

func guestAction(cmd *cobra.Command, _ []string) error {
	out, _ := cmd.Flags().GetString("out")
	meta, _ := cmd.Flags().GetString("kernel-meta")
	logf := progress(cmd)
	g, err := images.PrepareGuest(cmd.Context(), images.GuestOptions{Kernel: debian.KernelOptions{Meta: meta}, Logf: logf})
	if err != nil {
		return err
	}
	inst, err := g.Install(out)
	if err != nil {
		return err
	}
	if logf != nil {
		logf("kernel %s (%s %s)", g.Kernel.Release, g.Kernel.Name, g.Kernel.Version)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s\n%s\n", inst.Vmlinuz, inst.Vmlinux, inst.Initrd)
	return nil
}
