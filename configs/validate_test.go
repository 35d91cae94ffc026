package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-vm/paddock/internal/testguest"
)

// testTree makes a directory with the files configs in tests refer to:
// vmlinuz (a bzImage header), initrd.img (non-empty), text (not a kernel),
// empty (an empty file), dir/ (a directory) and fifo (a named pipe). It
// returns the directory.
func testTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	testguest.BzImage(t, dir, "vmlinuz")
	for name, data := range map[string]string{"initrd.img": "070701", "text": "MZ no kernel", "empty": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// check runs the whole pipeline (Load, FillDefaults, Validate) on a config
// written to dir/hello.yaml and returns its problems, one per line, with dir
// replaced by $DIR.
func check(t *testing.T, dir, yaml string, host Host) string {
	t.Helper()
	return problems(dir, writeConfig(t, dir, yaml), host)
}

// writeConfig writes yaml to dir/hello.yaml and returns its path.
func writeConfig(t *testing.T, dir, yaml string) string {
	t.Helper()
	path := filepath.Join(dir, "hello.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// problems is check on a config already written to path.
func problems(dir, path string, host Host) string {
	vm, err := Load(path)
	if vm != nil {
		vm.FillDefaults()
		err = vm.Validate(host)
	}
	if err == nil {
		return ""
	}
	return strings.ReplaceAll(err.Error(), dir, "$DIR")
}

func TestValidateErrors(t *testing.T) {
	const ok = "name: hello\nkernel: vmlinuz\n"
	const known = "known fields: name, labels, tenant, from, root_size, cpus, memory, kernel, initrd, cmdline, disks, nics, ports, rng, console, on_reboot, restart, backend, libvirt, cloud_init, user, ssh_keys, user_data"
	const f = "$DIR/hello.yaml"
	tests := []struct {
		name string
		yaml string
		host Host
		want string // every problem, one per line
	}{
		{"valid", ok, Host{}, ""},
		{"valid with host limits", ok + "cpus: 4\nmemory: 1GiB\n", Host{MemoryBytes: 1 << 30, MaxVCPUs: 4}, ""},
		{"missing name", "kernel: vmlinuz\n", Host{},
			f + `:1:1: name: must be set: a DNS label such as "web-1"`},
		{"bad name", "name: My_VM\nkernel: vmlinuz\n", Host{},
			f + `:1:7: name: must be a DNS label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit), got "My_VM"`},
		{"name ends with dash", "name: web-\nkernel: vmlinuz\n", Host{},
			f + `:1:7: name: must be a DNS label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit), got "web-"`},
		{"name too long", "name: " + strings.Repeat("a", 64) + "\nkernel: vmlinuz\n", Host{},
			f + `:1:7: name: must be a DNS label of at most 63 characters, got 64`},
		{"long value quoted short", ok + "backend: " + strings.Repeat("b", 100) + "\n", Host{},
			f + `:3:10: backend: must be native or libvirt, got "` + strings.Repeat("b", 60) + `"...`},
		{"long key quoted short", ok + strings.Repeat("k", 100) + ": 1\n", Host{},
			f + ":3:1: " + strings.Repeat("k", 60) + "...: unknown field; " + known},
		{"too many problems", ok + strings.Repeat("x: 1\n", 30), Host{},
			strings.Repeat(f+":3:1: x: unknown field; "+known+"\n", 1) +
				func() string {
					var b strings.Builder
					for line := 4; line <= 27; line++ {
						b.WriteString(f + ":" + strconv.Itoa(line) + ":1: x: duplicate key: already set on line 3\n")
					}
					return b.String()
				}() + f + ": 5 more problems not shown"},
		{"cpus 0", ok + "cpus: 0\n", Host{},
			f + ":3:7: cpus: must be between 1 and 255, got 0"},
		{"cpus 300", ok + "cpus: 300\n", Host{},
			f + ":3:7: cpus: must be between 1 and 255, got 300"},
		{"cpus negative", ok + "cpus: -1\n", Host{},
			f + ":3:7: cpus: must be between 1 and 255, got -1"},
		{"cpus above host", ok + "cpus: 8\n", Host{MaxVCPUs: 4},
			f + ":3:7: cpus: must be at most 4, the most vCPUs KVM supports on this host, got 8"},
		{"cpus not a number", ok + "cpus: two\n", Host{},
			f + `:3:7: cpus: must be an integer, got "two"`},
		{"cpus a float", ok + "cpus: 1.5\n", Host{},
			f + ":3:7: cpus: must be an integer, got the number 1.5"},
		{"cpus a quoted number", ok + "cpus: \"2\"\n", Host{},
			f + `:3:7: cpus: must be an integer, got "2"`},
		{"memory too small", ok + "memory: 16MiB\n", Host{},
			f + ":3:9: memory: must be at least 32MiB, got 16MiB"},
		{"memory zero", ok + "memory: 0\n", Host{},
			f + ":3:9: memory: must be at least 32MiB, got 0B"},
		{"memory too large", ok + "memory: 2TiB\n", Host{},
			f + ":3:9: memory: must be at most 1TiB, got 2TiB"},
		{"memory above host", ok + "memory: 2GiB\n", Host{MemoryBytes: 1<<30 + 300<<20},
			f + ":3:9: memory: must be at most the host's RAM (1.3GiB), got 2GiB"},
		{"default memory above host", ok, Host{MemoryBytes: 256 << 20},
			f + ":1:1: memory: must be at most the host's RAM (256MiB), got 512MiB"},
		{"memory not whole MiB", ok + "memory: 536870913\n", Host{},
			f + ":3:9: memory: must be a whole number of MiB, got 536870913B"},
		{"memory not a size", ok + "memory: lots\n", Host{},
			f + `:3:9: memory: "lots" is not a size: want a byte count or a number with a unit, such as 512MiB or 2GiB`},
		{"memory unknown unit", ok + "memory: 4 GiBs\n", Host{},
			f + `:3:9: memory: "4 GiBs": unknown unit "GiBs": want B, KiB, MiB, GiB, TiB, PiB or EiB (K, M, G... and KB, MB, GB... mean the same)`},
		{"memory a list", ok + "memory: [1]\n", Host{},
			f + ":3:9: memory: must be a size such as 512MiB, got a list"},
		{"kernel not set", "name: hello\n", Host{},
			f + ":1:1: kernel: must be set: the path of a Linux kernel (bzImage or ELF vmlinux), or from: a template"},
		{"kernel missing", "name: hello\nkernel: nope\n", Host{},
			f + ":2:9: kernel: $DIR/nope: no such file or directory"},
		{"kernel a directory", "name: hello\nkernel: dir\n", Host{},
			f + ":2:9: kernel: $DIR/dir: a directory, not a regular file"},
		{"kernel empty", "name: hello\nkernel: ./empty\n", Host{},
			f + ":2:9: kernel: $DIR/empty is empty"},
		{"kernel a character device", "name: hello\nkernel: /dev/null\n", Host{},
			f + ":2:9: kernel: /dev/null: a character device, not a regular file"},
		{"kernel a FIFO, refused without waiting for a writer", "name: hello\nkernel: fifo\n", Host{},
			f + ":2:9: kernel: $DIR/fifo: a named pipe, not a regular file"},
		{"kernel not a kernel", "name: hello\nkernel: text\n", Host{},
			f + ":2:9: kernel: $DIR/text: not a Linux kernel (no bzImage header and not an ELF file)"},
		{"kernel an ELF file without a PVH entry", "name: hello\nkernel: /proc/self/exe\n", Host{},
			f + ":2:9: kernel: /proc/self/exe: ELF file has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); boot the kernel's bzImage instead, or build it with CONFIG_PVH=y"},
		{"initrd missing", ok + "initrd: nope.img\n", Host{},
			f + ":3:9: initrd: $DIR/nope.img: no such file or directory"},
		{"initrd a directory", ok + "initrd: dir/\n", Host{},
			f + ":3:9: initrd: $DIR/dir: a directory, not a regular file"},
		{"initrd a FIFO", ok + "initrd: fifo\n", Host{},
			f + ":3:9: initrd: $DIR/fifo: a named pipe, not a regular file"},
		{"unknown top-level field", ok + "colour: red\n", Host{},
			f + ":3:1: colour: unknown field; " + known},
		{"unknown field near a known one", ok + "cpu: 2\n", Host{},
			f + `:3:1: cpu: unknown field (did you mean "cpus"?)`},
		{"unknown field in another case", ok + "onReboot: restart\n", Host{},
			f + `:3:1: onReboot: unknown field (did you mean "on_reboot"?)`},
		{"unknown nested field", ok + "console:\n  mode: log\n  colour: red\n", Host{},
			f + ":5:3: console.colour: unknown field; known fields: mode, log, log_size, log_keep"},
		{"unknown nested field in flow style", ok + "libvirt: {uri: 'qemu:///system', url: x}\n", Host{},
			f + `:3:34: libvirt.url: unknown field (did you mean "uri"?)`},
		{"duplicate key", ok + "name: again\n", Host{},
			f + ":3:1: name: duplicate key: already set on line 1"},
		{"duplicate nested key", ok + "console:\n  mode: log\n  mode: none\n", Host{},
			f + ":5:3: console.mode: duplicate key: already set on line 4"},
		{"non-string key", ok + "[a]: 1\n", Host{},
			f + ":3:1: keys must be field names, got a list"},
		{"merge key", ok + "console:\n  <<: {mode: log}\n", Host{},
			f + ":4:3: console.<<: merge keys are not supported: write the fields out"},
		{"unknown field not near any", ok + "base: 1\n", Host{},
			f + ":3:1: base: unknown field; " + known},
		{"multiple documents", ok + "---\nname: other\n", Host{},
			f + ":3:1: a second YAML document: a config file describes one VM"},
		{"empty trailing document", ok + "---\n", Host{}, ""},
		{"malformed YAML (scanner)", "name: hello\n  cpus: 2\n", Host{},
			f + ":2: invalid YAML: mapping values are not allowed in this context"},
		{"malformed YAML (parser)", "name: hello\n- x\n", Host{},
			f + ":2: invalid YAML: did not find expected key"},
		{"malformed YAML (flow)", "name: hello\ncpus: [1, 2\n", Host{},
			f + ":2: invalid YAML: did not find expected ',' or ']'"},
		{"malformed YAML on line 1", "name: a: b\n", Host{},
			f + ":1: invalid YAML: mapping values are not allowed in this context"},
		{"tab indentation", "name: hello\nconsole:\n\tmode: log\n", Host{},
			f + ":3:1: invalid YAML: found character that cannot start any token: YAML indentation must use spaces, not tabs"},
		{"tab after spaces", "name: hello\nconsole:\n  mode: log\n  \tlog: x\n", Host{},
			f + ":4:3: invalid YAML: found a tab character that violates indentation: YAML indentation must use spaces, not tabs"},
		{"tab after a blank line", "name: hello\nconsole:\n  mode: log\n\n  # c\n  \tlog: x\n", Host{},
			f + ":6:3: invalid YAML: found character that cannot start any token: YAML indentation must use spaces, not tabs"},
		{"tab after a scalar and blank lines", "name: hello\nconsole:\n  mode: log\n\n\n  \tlog: x\n", Host{},
			f + ":6:3: invalid YAML: found a tab character that violates indentation: YAML indentation must use spaces, not tabs"},
		{"unknown anchor", ok + "cpus: *n\n", Host{},
			f + ": invalid YAML: unknown anchor 'n' referenced"},
		{"control character", ok + "cmdline: \"a\x07\"\n", Host{},
			f + ":3:12: control character U+0007 is not allowed in YAML"},
		{"invalid UTF-8", "name: hello\nkernel: vm\xfflinuz\n", Host{},
			f + ":2:11: invalid UTF-8 byte 0xff: config files must be UTF-8"},
		{"not a mapping", "- name: hello\n", Host{},
			f + ":1:1: a VM config must be a mapping of fields (name: ..., kernel: ...), got a list"},
		{"a scalar", "hello\n", Host{},
			f + `:1:1: a VM config must be a mapping of fields (name: ..., kernel: ...), got "hello"`},
		{"name a mapping", "name: {first: a}\nkernel: vmlinuz\n", Host{},
			f + ":1:7: name: must be a string, got a mapping"},
		{"name binary", "name: !!binary aGVsbG8=\nkernel: vmlinuz\n", Host{},
			f + ":1:7: name: must be a string, got binary data"},
		{"custom tag", "name: !vm hello\nkernel: vmlinuz\n", Host{},
			f + ":1:7: name: unsupported YAML tag !vm"},
		{"bad console mode", ok + "console: tty\n", Host{},
			f + `:3:10: console.mode: must be one of stdio, log, none; got "tty"`},
		{"bad console mode in a mapping", ok + "console:\n  mode: file\n", Host{},
			f + `:4:9: console.mode: must be one of stdio, log, none; got "file"`},
		{"console a list", ok + "console: [log]\n", Host{},
			f + ":3:10: console: must be a mode (stdio, log or none) or a mapping with mode, log, log_size and log_keep, got a list"},
		{"console log without its directory", ok + "console: {mode: log, log: nodir/console.log}\n", Host{},
			f + ":3:27: console.log: directory $DIR/nodir: no such file or directory"},
		{"console log a directory", ok + "console: {mode: log, log: dir}\n", Host{},
			f + ":3:27: console.log: $DIR/dir is a directory, not a file"},
		{"console log with mode none", ok + "console:\n  mode: none\n  log: console.log\n", Host{},
			f + ":5:8: console.log: is set but console.mode is none: use mode log or stdio to log the console"},
		{"console log valid", ok + "console: {mode: log, log: console.log}\n", Host{}, ""},
		{"console log limits valid", ok + "console: {log_size: 64KiB, log_keep: 100}\n", Host{}, ""},
		{"console log_size too small", ok + "console: {log_size: 1KiB}\n", Host{},
			f + ":3:21: console.log_size: must be between 4KiB and 1TiB, got 1KiB"},
		{"console log_size too big", ok + "console:\n  log_size: 2TiB\n", Host{},
			f + ":4:13: console.log_size: must be between 4KiB and 1TiB, got 2TiB"},
		{"console log_keep 0", ok + "console: {log_keep: 0}\n", Host{},
			f + ":3:21: console.log_keep: must be between 1 and 100, got 0"},
		{"console log_size not a size", ok + "console: {log_size: big}\n", Host{},
			f + `:3:21: console.log_size: "big" is not a size: want a byte count or a number with a unit, such as 512MiB or 2GiB`},
		{"bad on_reboot", ok + "on_reboot: reboot\n", Host{},
			f + `:3:12: on_reboot: must be one of exit, restart; got "reboot"`},
		{"bad restart", ok + "restart: sometimes\n", Host{},
			f + `:3:10: restart: must be one of no, on-failure, always; got "sometimes"`},
		{"restart as a YAML boolean", ok + "restart: false\n", Host{},
			f + `:3:10: restart: must be one of no, on-failure, always; got "false"`},
		{"restart a list", ok + "restart: [always]\n", Host{},
			f + ":3:10: restart: must be no, on-failure or always, got a list"},
		{"restart values", ok + "restart: no\n---\n", Host{}, ""},
		{"restart on-failure", ok + "restart: on-failure\n", Host{}, ""},
		{"restart always", ok + "restart: always\n", Host{}, ""},
		{"labels valid", ok + "labels:\n  tier: web\n  app.example.com/owner: ops-team\n  replicas: 3\n  empty: \"\"\n", Host{}, ""},
		{"labels not a mapping", ok + "labels: [web]\n", Host{},
			f + ":3:9: labels: must be a mapping of names to values such as {tier: web}, got a list"},
		{"label name with a space", ok + "labels:\n  my tier: web\n", Host{},
			f + `:4:3: labels.my tier: label name must be 1 to 63 letters, digits, '.', '_', '-' or '/', starting and ending with a letter or digit; got "my tier"`},
		{"label name starting with a dash", ok + "labels: {-x: 1}\n", Host{},
			f + `:3:10: labels.-x: label name must be 1 to 63 letters, digits, '.', '_', '-' or '/', starting and ending with a letter or digit; got "-x"`},
		{"label name too long", ok + "labels: {" + strings.Repeat("k", 64) + ": 1}\n", Host{},
			f + `:3:10: labels.` + strings.Repeat("k", 64) + `: label name must be 1 to 63 letters, digits, '.', '_', '-' or '/', starting and ending with a letter or digit; got "` + strings.Repeat("k", 60) + `"...`},
		{"label name not text", ok + "labels:\n  [a]: 1\n", Host{},
			f + ":4:3: labels: label names must be plain text, got a list"},
		{"label without a value", ok + "labels:\n  tier:\n", Host{},
			f + `:4:8: labels.tier: has no value: write one, or "" for an empty one`},
		{"label value a mapping", ok + "labels:\n  tier: {a: b}\n", Host{},
			f + ":4:9: labels.tier: must be a text value, got a mapping"},
		{"label value too long", ok + "labels:\n  tier: " + strings.Repeat("v", 256) + "\n", Host{},
			f + ":4:3: labels.tier: value is 256 bytes long; at most 255"},
		{"label value with a control character", ok + "labels:\n  tier: \"a\\tb\"\n", Host{},
			f + ":4:3: labels.tier: value must not contain control character 0x09 (byte 1)"},
		{"duplicate label", ok + "labels:\n  tier: a\n  tier: b\n", Host{},
			f + ":5:3: labels.tier: duplicate label: already set on line 4"},
		{"too many labels", ok + "labels:\n" + func() string {
			var b strings.Builder
			for i := 0; i < 65; i++ {
				b.WriteString("  l" + strconv.Itoa(i) + ": x\n")
			}
			return b.String()
		}(), Host{},
			f + ":4:3: labels: has 65 labels; at most 64"},
		{"bad backend", ok + "backend: qemu\n", Host{},
			f + `:3:10: backend: must be native or libvirt, got "qemu"`},
		{"libvirt backend", ok + "backend: libvirt\n", Host{}, ""},
		{"libvirt backend on a known host", ok + "backend: libvirt\nlibvirt: {host: lab1, type: kvm}\n", Host{}, ""},
		{"libvirt backend on the host with the most free memory", ok + "backend: libvirt\nlibvirt: {host: auto, type: qemu}\n", Host{}, ""},
		{"libvirt host not a name", ok + "libvirt: {host: Lab_1}\n", Host{},
			f + `:3:17: libvirt.host: must be a host name (paddock host ls lists them) or auto, got "Lab_1"`},
		{"libvirt host and uri", ok + "libvirt: {host: lab1, uri: 'qemu:///system'}\n", Host{},
			f + `:3:17: libvirt.host: and libvirt.uri are both set: name a host paddock knows (paddock host ls) or give a URI, not both`},
		{"libvirt type unknown", ok + "libvirt: {type: hvf}\n", Host{},
			f + `:3:17: libvirt.type: must be one of auto, kvm (hardware virtualization), qemu (TCG emulation); got "hvf"`},
		{"libvirt VM with a restart policy", ok + "backend: libvirt\nrestart: on-failure\n", Host{},
			f + `:4:10: restart: is on-failure, but libvirt boots no domain again by itself: a libvirt VM has restart: no only (leave restart out)`},
		{"libvirt VM host checks are the host's", ok + "backend: libvirt\nmemory: 8GiB\nnics: [{bridge: no-such-br}]\n", Host{MemoryBytes: 1 << 30}, ""},
		{"libvirt not a mapping", ok + "libvirt: qemu:///system\n", Host{},
			f + `:3:10: libvirt: must be a mapping such as {uri: qemu:///system}, got "qemu:///system"`},
		{"libvirt uri not a URI", ok + "libvirt: {uri: localhost}\n", Host{},
			f + `:3:16: libvirt.uri: must be a libvirt URI, driver[+transport]://[user@][host][:port]/path, such as qemu:///system or qemu+ssh://user@host/system; got "localhost"`},
		{"libvirt uri with one slash", ok + "libvirt: {uri: 'qemu:/system'}\n", Host{},
			f + `:3:16: libvirt.uri: must be a libvirt URI, driver[+transport]://[user@][host][:port]/path, such as qemu:///system or qemu+ssh://user@host/system; got "qemu:/system"`},
		{"libvirt uri unknown driver", ok + "libvirt: {uri: 'qemy:///system'}\n", Host{},
			f + `:3:16: libvirt.uri: "qemy:///system": unknown libvirt driver "qemy" (did you mean "qemu"?)`},
		{"libvirt uri not a driver at all", ok + "libvirt: {uri: 'https://example.com/system'}\n", Host{},
			f + `:3:16: libvirt.uri: "https://example.com/system": unknown libvirt driver "https" (libvirt's drivers are bhyve, ch, esx, gsx, hyperv, libxl, lxc, openvz, parallels, qemu, test, vbox, vmwarefusion, vmwareplayer, vmwarews, vpx, vz, xen)`},
		{"libvirt uri bad transport", ok + "libvirt: {uri: 'qemu+ftp://h/system'}\n", Host{},
			f + `:3:16: libvirt.uri: "qemu+ftp://h/system": unknown transport "ftp": want unix, ssh, libssh, libssh2, tcp, tls, ext`},
		{"libvirt uri bad port", ok + "libvirt: {uri: 'qemu+tcp://host:http/system'}\n", Host{},
			f + `:3:16: libvirt.uri: "qemu+tcp://host:http/system" is not a URI: invalid port ":http" after host`},
		{"libvirt uri without path", ok + "libvirt: {uri: 'qemu+ssh://host'}\n", Host{},
			f + `:3:16: libvirt.uri: "qemu+ssh://host" has no path, such as /system or /session`},
		{"libvirt uri qemu:///system", ok + "libvirt: {uri: 'qemu:///system'}\n", Host{}, ""},
		{"libvirt uri qemu:///session", ok + "libvirt: {uri: 'qemu:///session'}\n", Host{}, ""},
		{"libvirt uri qemu+ssh://user@host/system", ok + "libvirt: {uri: 'qemu+ssh://user@host/system'}\n", Host{}, ""},
		{"libvirt uri qemu+tcp://host:16509/system", ok + "libvirt: {uri: 'qemu+tcp://host:16509/system'}\n", Host{}, ""},
		{"libvirt uri test:///default", ok + "libvirt: {uri: 'test:///default'}\n", Host{}, ""},
		{"libvirt uri test+unix:///default", ok + "libvirt: {uri: 'test+unix:///default'}\n", Host{}, ""},
		{"libvirt uri qemu+ssh://root@host:2222/system?keyfile=/k", ok + "libvirt: {uri: 'qemu+ssh://root@host:2222/system?keyfile=/k'}\n", Host{}, ""},
		{"cmdline with a newline", ok + "cmdline: \"console=ttyS0\\nquiet\"\n", Host{},
			f + ":3:10: cmdline: must not contain a line break (byte 13); for a long command line use a folded block, `cmdline: >`"},
		{"cmdline literal block with a newline", ok + "cmdline: |\n  console=ttyS0\n  quiet\n", Host{},
			f + ":3:10: cmdline: must not contain a line break (byte 13); for a long command line use a folded block, `cmdline: >`"},
		{"cmdline folded block", ok + "cmdline: >\n  console=ttyS0\n  quiet\n", Host{}, ""},
		{"cmdline with NUL", ok + "cmdline: \"a\\0b\"\n", Host{},
			f + ":3:10: cmdline: must not contain a NUL byte (byte 1)"},
		{"cmdline with escape", ok + "cmdline: \"a\\eb\"\n", Host{},
			f + ":3:10: cmdline: must not contain control character 0x1b (byte 1)"},
		{"cmdline too long", ok + "cmdline: " + strings.Repeat("x", 2048) + "\n", Host{},
			f + ":3:10: cmdline: is 2048 bytes long; the kernel takes at most 2047"},
		{"cmdline longest", ok + "cmdline: " + strings.Repeat("x", 2047) + "\n", Host{}, ""},
		{"null values mean default", ok + "cpus:\nmemory: ~\nconsole:\n", Host{}, ""},
		{"tenant not a name", ok + "tenant: Acme\n", Host{},
			f + `:3:9: tenant: "Acme" is not a tenant name: use 1 to 32 lowercase letters, digits and dashes (not first or last)`},
		{"tenant empty", ok + "tenant: ''\n", Host{},
			f + `:3:9: tenant: "" is not a tenant name: use 1 to 32 lowercase letters, digits and dashes (not first or last)`},
		{"tenant unknown, near one", ok + "tenant: acmee\n", Host{Tenants: tenantList{"default", "acme", "globex"}},
			f + `:3:9: tenant: no tenant named "acmee"; did you mean "acme"? (paddock tenant ls lists them)`},
		{"tenant unknown, near none", ok + "tenant: initech\n", Host{Tenants: tenantList{"default", "acme"}},
			f + `:3:9: tenant: no tenant named "initech" (paddock tenant ls lists them; paddock tenant create initech makes it)`},
		{"tenant known", ok + "tenant: acme\n", Host{Tenants: tenantList{"default", "acme"}}, ""},
		{"tenant default always", ok, Host{Tenants: tenantList{"default"}}, ""},
		{"tenant unchecked without a lookup", ok + "tenant: initech\n", Host{}, ""},
	}
	dir := testTree(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := check(t, dir, tt.yaml, tt.host); got != tt.want {
				t.Errorf("problems:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// TestValidateAllProblems checks that one pass reports every problem, from
// decoding and from validation, in file order.
func TestValidateAllProblems(t *testing.T) {
	dir := testTree(t)
	f := "$DIR/hello.yaml"

	// Decoding problems are all reported together.
	got := check(t, dir, "name: hello\ncpus: two\nmemory: lots\nkernal: vmlinuz\nconsole: {mode: log, size: 1}\nname: again\n", Host{})
	want := strings.Join([]string{
		f + `:2:7: cpus: must be an integer, got "two"`,
		f + `:3:9: memory: "lots" is not a size: want a byte count or a number with a unit, such as 512MiB or 2GiB`,
		f + `:4:1: kernal: unknown field (did you mean "kernel"?)`,
		f + `:5:22: console.size: unknown field (did you mean "log_size"?)`,
		f + `:6:1: name: duplicate key: already set on line 1`,
	}, "\n")
	if got != want {
		t.Errorf("decoding problems:\n%s\nwant:\n%s", got, want)
	}

	// With validation problems of the fields that did decode, in file
	// order; nothing more about a field decoding reported, nor about the
	// field a typo was meant to be.
	got = check(t, dir, "name: Bad\ncpus: two\nkernal: vmlinuz\nmemory: 8MiB\nconsole: tty\nrestart: [no]\n", Host{})
	want = strings.Join([]string{
		f + `:1:7: name: must be a DNS label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit), got "Bad"`,
		f + `:2:7: cpus: must be an integer, got "two"`,
		f + `:3:1: kernal: unknown field (did you mean "kernel"?)`,
		f + `:4:9: memory: must be at least 32MiB, got 8MiB`,
		f + `:5:10: console.mode: must be one of stdio, log, none; got "tty"`,
		f + `:6:10: restart: must be no, on-failure or always, got a list`,
	}, "\n")
	if got != want {
		t.Errorf("decoding and validation problems:\n%s\nwant:\n%s", got, want)
	}
	// A typo's suggestion that is set as well is still checked.
	got = check(t, dir, "name: a\nkernal: x\nkernel: nope\n", Host{})
	want = f + `:2:1: kernal: unknown field (did you mean "kernel"?)` + "\n" + f + `:3:9: kernel: $DIR/nope: no such file or directory`
	if got != want {
		t.Errorf("typo beside the field:\n%s\nwant:\n%s", got, want)
	}

	// So are validation problems, sorted by position.
	got = check(t, dir, "on_reboot: never\nbackend: xen\ncpus: 0\nmemory: 8MiB\ninitrd: missing.img\nconsole: tty\n", Host{MaxVCPUs: 4})
	want = strings.Join([]string{
		f + `:1:1: name: must be set: a DNS label such as "web-1"`,
		f + `:1:1: kernel: must be set: the path of a Linux kernel (bzImage or ELF vmlinux), or from: a template`,
		f + `:1:12: on_reboot: must be one of exit, restart; got "never"`,
		f + `:2:10: backend: must be native or libvirt, got "xen"`,
		f + `:3:7: cpus: must be between 1 and 255, got 0`,
		f + `:4:9: memory: must be at least 32MiB, got 8MiB`,
		f + `:5:9: initrd: $DIR/missing.img: no such file or directory`,
		f + `:6:10: console.mode: must be one of stdio, log, none; got "tty"`,
	}, "\n")
	if got != want {
		t.Errorf("validation problems:\n%s\nwant:\n%s", got, want)
	}
}

func TestValidateErrorValues(t *testing.T) {
	dir := testTree(t)
	vm, err := Parse([]byte("name: hello\nkernel: nope\ninitrd: dir\n"), filepath.Join(dir, "hello.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	err = vm.Validate(Host{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false, want true", err)
	}
	probs := Problems(err)
	if len(probs) != 2 {
		t.Fatalf("Problems: got %d, want 2: %v", len(probs), err)
	}
	want := []Error{
		{File: filepath.Join(dir, "hello.yaml"), Line: 2, Column: 9, Field: "kernel"},
		{File: filepath.Join(dir, "hello.yaml"), Line: 3, Column: 9, Field: "initrd"},
	}
	for i, p := range probs {
		if p.File != want[i].File || p.Line != want[i].Line || p.Column != want[i].Column || p.Field != want[i].Field {
			t.Errorf("problem %d = %+v, want %+v", i, *p, want[i])
		}
	}
}

// TestValidateGoVM checks a VM built in Go rather than loaded: defaults
// fill zero fields, and problems carry only field paths.
func TestValidateGoVM(t *testing.T) {
	dir := testTree(t)
	vm := &VM{Name: "go-built", Kernel: filepath.Join(dir, "vmlinuz")}
	vm.FillDefaults()
	if err := vm.Validate(Host{}); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	vm.CPUs = 1000
	vm.Console.Mode = "loud"
	err := vm.Validate(Host{})
	want := "cpus: must be between 1 and 255, got 1000\nconsole.mode: must be one of stdio, log, none; got \"loud\""
	if err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want:\n%s", err, want)
	}
}

func TestValidateStructureSkipsFilesAndHost(t *testing.T) {
	vm, err := Parse([]byte("name: far\nkernel: /nonexistent/vmlinuz\nmemory: 64GiB\nconsole: {mode: log, log: /nonexistent/dir/log}\n"), "far.yaml")
	if err != nil {
		t.Fatal(err)
	}
	vm.FillDefaults()
	if err := vm.ValidateStructure(); err != nil {
		t.Errorf("ValidateStructure: %v", err)
	}
	err = vm.Validate(Host{MemoryBytes: 1 << 30})
	want := []string{"kernel", "memory", "console.log"}
	probs := Problems(err)
	if len(probs) != len(want) {
		t.Fatalf("Validate: got %d problems, want %d: %v", len(probs), len(want), err)
	}
	for i, p := range probs {
		if p.Field != want[i] {
			t.Errorf("problem %d is about %q, want %q (%v)", i, p.Field, want[i], p)
		}
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"0", true},
		{"web-1", true},
		{"a--b", true},
		{strings.Repeat("x", 63), true},
		{strings.Repeat("x", 64), false},
		{"", false},
		{"-a", false},
		{"a-", false},
		{"A", false},
		{"a_b", false},
		{"a.b", false},
		{"é", false},
		{"a b", false},
	}
	for _, tt := range tests {
		if got := validName(tt.name); got != tt.ok {
			t.Errorf("validName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

// tenantList is a TenantLookup that knows the tenants it lists.
type tenantList []string

func (l tenantList) Tenant(name string) error {
	if slices.Contains(l, name) {
		return nil
	}
	return fmt.Errorf("tenant %s: %w", name, ErrNoTenant)
}

func (l tenantList) TenantNames() []string { return l }
