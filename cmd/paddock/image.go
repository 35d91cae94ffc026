package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paddock-vm/paddock/disk"
	"github.com/paddock-vm/paddock/disk/qcow2"
)

func newImageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Create, inspect, check and convert disk images (qcow2, raw)",
		Long: `Work with disk images the way qemu-img does. Images paddock writes stay
fully usable by QEMU's tools, and the other way round. The format of an
existing image is detected from its contents (never its name) unless -f
gives it.

Images are locked the way QEMU locks them: a command that writes an image
(create over an existing file, convert's target, snapshot -c/-a/-d, resize,
commit, rebase, check -r) fails while a VM or a QEMU process uses it, and
one that reads it (info, check, compare, map, convert's source, snapshot
-l) fails while one writes it, unless -U (--force-share) says to read it
anyway. Running VMs hold their disks the same way, against QEMU's tools
too (docs/image.md, "Image locks").`,
	}
	cmd.AddCommand(
		newImageCreateCommand(),
		newImageInfoCommand(),
		newImageCheckCommand(),
		newImageCompareCommand(),
		newImageConvertCommand(),
		newImageSnapshotCommand(),
		newImageRebaseCommand(),
		newImageCommitCommand(),
		newImageResizeCommand(),
		newImageMapCommand(),
	)
	pf := cmd.PersistentFlags()
	pf.Bool("untrusted", false, "the image is not yours: follow backing files only inside its directory (and --backing-dir), never devices")
	pf.StringArray("backing-dir", nil, "also allow backing files in this directory (repeatable; implies --untrusted)")
	for _, c := range cmd.Commands() {
		c.RunE = explainingInUse(c.RunE)
	}
	return cmd
}

// backingPolicy is the backing policy --untrusted and --backing-dir ask
// for, for the image at path; nil (follow any backing file, as qemu-img)
// without them.
func backingPolicy(cmd *cobra.Command, path string) *disk.BackingPolicy {
	untrusted, _ := cmd.Flags().GetBool("untrusted")
	dirs, _ := cmd.Flags().GetStringArray("backing-dir")
	if !untrusted && len(dirs) == 0 {
		return nil
	}
	return disk.ConfinedToImage(path, dirs...)
}

// parseSize parses a size like qemu-img: a number of bytes, optionally
// with a binary suffix (k/K/KiB, M/MiB, G/GiB, T/TiB, P/PiB, E/EiB; b or B
// for bytes). Fractions are allowed with a suffix ("1.5G").
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	lower := strings.ToLower(t)
	for _, suf := range []struct {
		s string
		m int64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40}, {"pib", 1 << 50}, {"eib", 1 << 60},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40}, {"p", 1 << 50}, {"e", 1 << 60}, {"b", 1},
	} {
		if strings.HasSuffix(lower, suf.s) {
			mult = suf.m
			t = t[:len(t)-len(suf.s)]
			break
		}
	}
	if t == "" {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n < 0 || (mult > 1 && n > (1<<63-1)/mult) {
			return 0, fmt.Errorf("invalid size %q: out of range", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || mult == 1 || f*float64(mult) >= 1<<63 {
		return 0, fmt.Errorf("invalid size %q (use bytes or a suffix such as 10G, 512M, 1.5T)", s)
	}
	return int64(f * float64(mult)), nil
}

// parseCreateOptions applies qemu-img style "-o key=value,..." options to
// qcow2 creation options.
func parseCreateOptions(s string, o *qcow2.CreateOptions) error {
	if s == "" {
		return nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("-o %s: expected key=value", kv)
		}
		var err error
		switch k {
		case "cluster_size":
			o.ClusterSize, err = parseSize(v)
		case "compat":
			switch v {
			case "0.10", "v2":
				o.Version = 2
			case "1.1", "v3":
				o.Version = 3
			default:
				err = fmt.Errorf("compat must be 0.10 or 1.1")
			}
		case "refcount_bits":
			o.RefcountBits, err = strconv.Atoi(v)
		case "extended_l2":
			o.ExtendedL2, err = parseOnOff(v)
		case "compression_type":
			o.Compression = v
		case "preallocation":
			o.Preallocation = v
		case "backing_file":
			o.BackingFile = v
		case "backing_fmt":
			o.BackingFormat = v
		case "size":
			o.Size, err = parseSize(v)
		case "lazy_refcounts":
			var on bool
			if on, err = parseOnOff(v); err == nil && on {
				err = fmt.Errorf("paddock never uses lazy refcounts (its metadata writes are ordered instead)")
			}
		default:
			return fmt.Errorf("-o %s: unknown option %q (cluster_size, compat, refcount_bits, extended_l2, compression_type, preallocation, backing_file, backing_fmt, size)", kv, k)
		}
		if err != nil {
			return fmt.Errorf("-o %s: %w", kv, err)
		}
	}
	return nil
}

func parseOnOff(v string) (bool, error) {
	switch v {
	case "on", "true", "yes":
		return true, nil
	case "off", "false", "no":
		return false, nil
	}
	return false, fmt.Errorf("expected on or off, not %q", v)
}

// openQcow2ReadOnly opens an image read-only without its backing chain,
// so broken chains and corrupt images can still be inspected; share is
// -U.
func openQcow2ReadOnly(path string, share bool) (*qcow2.Image, error) {
	return qcow2.Open(path, qcow2.Options{ReadOnly: true, ForceShare: share, NoBacking: true})
}

// addOutputFlags gives a command qemu-img's --output=human|json and
// paddock's --json.
func addOutputFlags(cmd *cobra.Command) {
	cmd.Flags().Bool("json", false, "print JSON (same as --output=json)")
	cmd.Flags().String("output", "human", "output format: human or json")
}

// jsonOutput reports whether --json or --output=json was given.
func jsonOutput(cmd *cobra.Command) (bool, error) {
	asJSON, _ := cmd.Flags().GetBool("json")
	switch out, _ := cmd.Flags().GetString("output"); out {
	case "json":
		return true, nil
	case "human":
		return asJSON, nil
	default:
		return false, fmt.Errorf("--output must be human or json, not %q", out)
	}
}

// imageFormat returns -f's value or the detected format of path.
func imageFormat(cmd *cobra.Command, path string) (string, error) {
	f, _ := cmd.Flags().GetString("format")
	if f != "" {
		if f != disk.FormatRaw && f != disk.FormatQcow2 {
			return "", fmt.Errorf("%s: unknown format %q (raw or qcow2)", path, f)
		}
		return f, nil
	}
	return disk.Detect(path)
}

// humanSize prints a byte count like qemu-img ("1 GiB", "192 KiB").
func humanSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n)
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	s := strconv.FormatFloat(v, 'f', 3, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + " " + units[i]
}
