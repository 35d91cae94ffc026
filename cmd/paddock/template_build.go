package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/configs"
	"github.com/paddock-vm/paddock/guest"
	"github.com/paddock-vm/paddock/guest/store"
	"github.com/paddock-vm/paddock/images/cache"
	"github.com/paddock-vm/paddock/images/debootstrap"
)

func newTemplateBuildCommand() *cobra.Command {
	var o templateBuildOptions
	cmd := &cobra.Command{
		Use:   "build RELEASE [--name NAME] [--disk-size SIZE] [--packages A,B] [--mirror URL]",
		Short: "Build a template from Debian packages",
		Long: `Build a template of RELEASE (debian-12: Debian 12, bookworm) from Debian
packages: a root file system made by debootstrap from the host's apt
mirror (the one its apt sources name for the release; --mirror gives
another) with systemd, openssh-server, cloud-init (NoCloud), DHCP on
every NIC (systemd-networkd) and growpart, Debian's cloud kernel and an
initramfs made by initramfs-tools with the virtio modules; its ext4 file
system becomes a compressed qcow2 disk of --disk-size (default 4GiB,
which VMs grow with root_size). The template is called RELEASE unless
--name says otherwise. --packages installs more packages.

It needs root (debootstrap and apt-get install packages into the new file
system) and takes minutes; the downloaded packages are kept in paddock's
cache ($PADDOCK_CACHE, by default ~/.cache/paddock), so the next build
downloads only what changed. On a terminal it shows its steps; piped, it
prints only its result (-v prints every line the tools print). The
tools' output goes to a log in the cache, which an error names. A build
that fails or is interrupted (Ctrl-C, SIGTERM) leaves nothing behind:
no template, no mount, no process.

Exit status: 0 built, 1 error, 2 usage, 4 a template of that name exists,
130 interrupted (SIGINT), 143 terminated (SIGTERM).`,
		Example: `  sudo paddock template build debian-12
  sudo paddock template build debian-12 --name web-base --disk-size 8GiB --packages nginx,curl`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("template build needs one release, such as debian-12, got %d arguments (usage: paddock template %s)", len(args), cmd.Use)
			}
			return nil
		},
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			var names []string
			for _, r := range debootstrap.Releases() {
				names = append(names, r.Name)
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return templateBuildAction(cmd, args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "name of the template (default: the release's)")
	f.StringVar(&o.diskSize, "disk-size", "4GiB", "size of the root disk, a whole number of MiB (1GiB to 64TiB)")
	f.StringSliceVar(&o.packages, "packages", nil, "more Debian packages to install (comma-separated, repeatable)")
	f.StringVar(&o.mirror, "mirror", "", "Debian mirror URL (default: the host's apt source for the release)")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "print every line the tools print")
	return cmd
}

type templateBuildOptions struct {
	name, diskSize, mirror string
	packages               []string
	verbose                bool
}

func templateBuildAction(cmd *cobra.Command, release string, o templateBuildOptions) error {
	r, err := debootstrap.LookupRelease(release)
	if err != nil {
		return usageError("%v", strings.TrimPrefix(err.Error(), "debootstrap: "))
	}
	name := o.name
	if name == "" {
		name = r.Name
	}
	if !store.ValidName(name) {
		return usageError("--name %q: a template name is a DNS label (1 to 63 lowercase letters, digits and '-', not starting or ending with '-')", name)
	}
	size, err := parseSize(o.diskSize)
	switch {
	case err != nil:
		return usageError("--disk-size %q: %v", o.diskSize, err)
	case size < debootstrap.MinDiskSize || size > debootstrap.MaxDiskSize || size%(1<<20) != 0:
		return usageError("--disk-size %s: the root disk must be a whole number of MiB from %s to %s", o.diskSize, configs.ByteSize(debootstrap.MinDiskSize), configs.ByteSize(debootstrap.MaxDiskSize))
	}
	c, err := cache.Default()
	if err != nil {
		return err
	}
	opts := debootstrap.Options{Release: r, DiskSize: size, Packages: o.packages, Mirror: o.mirror, Cache: c}
	if err := debootstrap.Check(opts); err != nil {
		if errors.Is(err, debootstrap.ErrNotRoot) {
			return fmt.Errorf("template build: %w", err)
		}
		return usageError("template build: %v", strings.TrimPrefix(err.Error(), "debootstrap: "))
	}
	m, err := openManager()
	if err != nil {
		return err
	}
	if _, err := m.Template(name); err == nil {
		return templateError(&guest.ExistsError{Name: name, Kind: guest.KindTemplate})
	}

	// The tools' output goes to a log in the cache.
	logPath := filepath.Join(c.Dir, "logs", "template-build-"+name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	caught := make(chan os.Signal, 1)
	go func() {
		select {
		case s := <-sigs:
			caught <- s
			cancel()
		case <-ctx.Done():
		}
	}()

	p := newBuildProgress(cmd.ErrOrStderr(), o.verbose)
	opts.Step = p.step
	opts.Output = func(line string) {
		fmt.Fprintln(logFile, line)
		p.line(line)
	}
	opts.Progress = p.progress
	start := time.Now()
	p.begin(fmt.Sprintf("%s: building %s (Debian %s)", name, r.Name, r.Suite))
	t, res, err := m.BuildTemplate(ctx, name, opts)
	p.end()
	if err != nil {
		select {
		case s := <-caught:
			code := exitInterrupt
			if s == syscall.SIGTERM {
				code = exitTerminated
			}
			return &exitError{code: code, err: fmt.Errorf("template build interrupted (%v); nothing was kept", s)}
		default:
		}
		var ee *guest.ExistsError
		if errors.As(err, &ee) {
			return templateError(err)
		}
		return fmt.Errorf("template build %s: %w (the tools' output is in %s)", name, err, logPath)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: built in %s: %s, kernel %s, %s (a %s disk)\n", t.Name, formatUptime(time.Since(start)),
		dash(t.Meta.OS.PrettyName), t.Meta.Kernel.Release, humanSize(t.Meta.Size()), configs.ByteSize(res.DiskSize))
	return nil
}
