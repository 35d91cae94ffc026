// Package hello builds the initramfs of paddock's demo guest "hello": a
// static busybox whose /init mounts proc, sys and devtmpfs, prints
//
//	@@LAB l2.init <uptime seconds at /init>
//	paddock hello guest: <uname -r>, <N> CPUs, <M> MiB
//
// and then either runs the built-in script named by the kernel command
// line option paddock.script=NAME (printing "@@LAB l2.script-end NAME RC")
// or starts an interactive shell on the console (job control works), and
// powers off when it is done. With the kernel modules PowerButtonModules
// in the image, the ACPI power button (paddock stop) powers it off too:
// /init starts busybox acpid, which runs /etc/acpi/PWRF/00000080. With
// virtio_pci, virtio_blk and isofs in the image, a VM with cloud_init
// takes its host name from paddock's seed volume (the meta-data's
// local-hostname, as cloud-init would), and /init exports the seed's
// device to the scripts as PADDOCK_SEED; otherwise its host name is
// "hello".
package hello

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/paddock-vm/paddock/images/initramfs"
)

//go:embed init.sh profile identity.sh scripts/*.sh acpi/power.sh
var files embed.FS

// PowerButtonModules are the kernel modules (Debian's kernels build them
// as modules) that turn the ACPI power button into the input event acpid
// listens for: the ACPI button driver and the event device interface.
// Put them in Options.Modules for a guest that paddock stop shuts down.
var PowerButtonModules = []string{"button", "evdev"}

// PowerButtonHandler is where the image's power button handler lives: the
// path busybox acpid runs for the power button (its built-in tables map
// KEY_POWER to PWRF/00000080 under /etc/acpi).
const PowerButtonHandler = "etc/acpi/PWRF/00000080"

// IdentityScript is where the image's identity step lives (identity.sh):
// /init runs it to follow VM generation changes when the VM has a
// cloud-init seed, and it serves as udhcpc's script. A guest script
// takes an address by DHCP with "IdentityScript dhcp eth0"; one that
// makes /run/paddock/identity.fifo reads the new instance-id from it
// once the guest took a warm clone's identity.
const IdentityScript = "etc/paddock/identity.sh"

// ScriptOption is the kernel command line option that selects a script.
const ScriptOption = "paddock.script"

// Cmdline returns a kernel command line that runs the named built-in
// script on the serial console, quietly (kernel messages at warning level
// and above only). An empty script gives the interactive shell.
func Cmdline(script string) string {
	c := "console=ttyS0 quiet"
	if script != "" {
		c += " " + ScriptOption + "=" + script
	}
	return c
}

// Options customise the image.
type Options struct {
	// Busybox is the host path of a static busybox (required).
	Busybox string
	// Modules are kernel modules /init loads, in order (e.g. virtio_blk
	// for disk tests); nil for none.
	Modules *initramfs.Modules
	// Scripts adds or replaces built-in scripts: name -> sh source. Names
	// are [a-z0-9_-]+.
	Scripts map[string]string
	// Files are added to the image as they are.
	Files []initramfs.File
}

var scriptName = regexp.MustCompile(`^[a-z0-9_-]+$`)

// Scripts returns the names of the built-in scripts, sorted.
func Scripts() []string {
	ents, _ := fs.ReadDir(files, "scripts")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".sh"))
	}
	sort.Strings(names)
	return names
}

// Spec returns the initramfs spec of the hello guest.
func Spec(opts Options) (initramfs.Spec, error) {
	if opts.Busybox == "" {
		return initramfs.Spec{}, fmt.Errorf("hello: no busybox given")
	}
	init, err := files.ReadFile("init.sh")
	if err != nil {
		return initramfs.Spec{}, fmt.Errorf("hello: %w", err)
	}
	profile, err := files.ReadFile("profile")
	if err != nil {
		return initramfs.Spec{}, fmt.Errorf("hello: %w", err)
	}
	power, err := files.ReadFile("acpi/power.sh")
	if err != nil {
		return initramfs.Spec{}, fmt.Errorf("hello: %w", err)
	}
	identity, err := files.ReadFile("identity.sh")
	if err != nil {
		return initramfs.Spec{}, fmt.Errorf("hello: %w", err)
	}
	scripts := map[string][]byte{}
	for _, name := range Scripts() {
		b, err := files.ReadFile(path.Join("scripts", name+".sh"))
		if err != nil {
			return initramfs.Spec{}, fmt.Errorf("hello: %w", err)
		}
		scripts[name] = b
	}
	for name, src := range opts.Scripts {
		if !scriptName.MatchString(name) {
			return initramfs.Spec{}, fmt.Errorf("hello: script name %q: want [a-z0-9_-]+", name)
		}
		scripts[name] = []byte(src)
	}
	names := make([]string, 0, len(scripts))
	for n := range scripts {
		names = append(names, n)
	}
	sort.Strings(names)
	spec := initramfs.Spec{
		Busybox: opts.Busybox,
		Modules: opts.Modules,
		Init:    string(init),
		Files: []initramfs.File{
			{Path: "etc/profile", Data: profile},
			{Path: "etc/hostname", Data: []byte("hello\n")},
			{Path: "etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\n")},
			{Path: "etc/group", Data: []byte("root:x:0:\n")},
			{Path: PowerButtonHandler, Mode: 0o755, Data: power},
			{Path: IdentityScript, Mode: 0o755, Data: identity},
		},
	}
	for _, n := range names {
		spec.Files = append(spec.Files, initramfs.File{Path: "etc/paddock/scripts/" + n + ".sh", Mode: 0o755, Data: scripts[n]})
	}
	spec.Files = append(spec.Files, opts.Files...)
	return spec, nil
}
