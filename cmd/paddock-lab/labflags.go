package main

import (
	"fmt"
	"path"
	"strings"

	"github.com/paddock-vm/paddock/images/debian"
	"github.com/paddock-vm/paddock/test/lab"
	"github.com/spf13/cobra"
)

// addMachineFlags adds the flags that shape the L1 VM.
func addMachineFlags(cmd *cobra.Command) {
	cmd.Flags().Int("l1-cpus", lab.DefaultL1CPUs, "L1 vCPUs (TCG threads)")
	cmd.Flags().Int("l1-memory", 2048, "L1 memory in MiB")
	cmd.Flags().String("l1-machine", "pc", "L1 QEMU machine type (pc, q35, microvm)")
	cmd.Flags().Bool("l1-bzimage", false, "boot L1 from the bzImage instead of the ELF vmlinux (PVH)")
	cmd.Flags().String("kernel-meta", debian.DefaultKernelMeta, "Debian kernel meta-package for L1 and L2")
}

// labOptions reads the flags addMachineFlags added.
func labOptions(cmd *cobra.Command) (lab.Options, error) {
	var o lab.Options
	f := cmd.Flags()
	o.Machine.CPUs, _ = f.GetInt("l1-cpus")
	o.Machine.MemoryMiB, _ = f.GetInt("l1-memory")
	o.Machine.Type, _ = f.GetString("l1-machine")
	o.Machine.BootBzImage, _ = f.GetBool("l1-bzimage")
	o.Image.Kernel.Meta, _ = f.GetString("kernel-meta")
	o.Image.Logf = progress(cmd)
	if o.Machine.CPUs < 1 || o.Machine.MemoryMiB < 256 || o.Machine.MemoryMiB > lab.MaxL1MemoryMiB {
		return o, fmt.Errorf("--l1-cpus must be >= 1 and --l1-memory from 256 to %d (MiB; docs/lab.md)", lab.MaxL1MemoryMiB)
	}
	return o, nil
}

// parseFileFlags turns HOST:L1PATH flags into scenario files.
func parseFileFlags(specs []string) (map[string]lab.File, error) {
	files := map[string]lab.File{}
	for _, s := range specs {
		host, l1, ok := strings.Cut(s, ":")
		if !ok || host == "" || !path.IsAbs(l1) {
			return nil, fmt.Errorf("--file %q: want HOST:/ABSOLUTE/L1/PATH", s)
		}
		files[path.Clean(l1)] = lab.File{Source: host}
	}
	return files, nil
}
