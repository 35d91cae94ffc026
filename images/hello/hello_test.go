package hello

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/paddock-vm/paddock/images/cpio"
	"github.com/paddock-vm/paddock/images/debian"
	"github.com/paddock-vm/paddock/images/initramfs"
	"github.com/paddock-vm/paddock/internal/testenv"
)

func TestCmdline(t *testing.T) {
	tests := map[string]string{
		"":      "console=ttyS0 quiet",
		"facts": "console=ttyS0 quiet paddock.script=facts",
	}
	for script, want := range tests {
		if got := Cmdline(script); got != want {
			t.Errorf("Cmdline(%q) = %q, want %q", script, got, want)
		}
	}
}

// TestImage builds the image and checks its scripts: every shell file
// parses (busybox sh -n), the built-ins and extras are where /init looks.
func TestImage(t *testing.T) {
	testenv.Declare(t, testenv.Oracle) // busybox sh parses the scripts
	if err := debian.CheckStatic(debian.HostBusybox); err != nil {
		testenv.Unavailable(t, "static busybox is not installed (Debian package busybox-static): %v", err)
	}
	spec, err := Spec(Options{Busybox: debian.HostBusybox, Scripts: map[string]string{"extra": "echo extra\n", "facts": "echo replaced\n"}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := initramfs.Write(context.Background(), &buf, spec); err != nil {
		t.Fatal(err)
	}
	entries, err := cpio.ReadAll(&buf, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		got[e.Name] = string(e.Data)
	}
	for _, name := range []string{"boot", "sha256", "extra"} {
		if _, ok := got["etc/paddock/scripts/"+name+".sh"]; !ok {
			t.Errorf("script %s missing", name)
		}
	}
	if got["etc/paddock/scripts/facts.sh"] != "echo replaced\n" {
		t.Errorf("Options.Scripts did not replace the built-in facts script")
	}
	for name, body := range got {
		if name != "init" && name != "etc/profile" && name != PowerButtonHandler && !strings.HasSuffix(name, ".sh") {
			continue
		}
		cmd := exec.Command(debian.HostBusybox, "sh", "-n")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s does not parse: %v\n%s", name, err, out)
		}
	}
	if h := got[PowerButtonHandler]; !strings.Contains(h, "poweroff -f") {
		t.Errorf("power button handler %s: %q", PowerButtonHandler, h)
	}
	init := got["init"]
	for _, want := range []string{"acpid", "@@LAB l2.init", "paddock hello guest: $release, $(nproc) CPUs, $mem MiB", "setsid cttyhack sh", "poweroff -f", "mount -t devtmpfs"} {
		if !strings.Contains(init, want) {
			t.Errorf("/init lacks %q", want)
		}
	}
}

func TestSpecErrors(t *testing.T) {
	if _, err := Spec(Options{}); err == nil {
		t.Error("no busybox accepted")
	}
	if _, err := Spec(Options{Busybox: "/bin/busybox", Scripts: map[string]string{"../x": ""}}); err == nil || !strings.Contains(err.Error(), `"../x"`) {
		t.Errorf("bad script name: %v", err)
	}
}

func TestScripts(t *testing.T) {
	if got := strings.Join(Scripts(), " "); got != "boot facts sha256" {
		t.Errorf("Scripts() = %s", got)
	}
}
