package guest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/paddock-vm/paddock/guest/libvirt/libvirttest"
	"github.com/paddock-vm/paddock/guest/vmm"
)

// envTestVMM makes the test binary act as a VMM process (the hidden
// `paddock vmm` command), so Manager tests spawn real VMM processes.
const envTestVMM = "PADDOCK_GUEST_TEST_VMM"

func TestMain(m *testing.M) {
	if os.Getenv(envTestVMM) == "1" {
		os.Exit(testVMM(os.Args[1:]))
	}
	code := m.Run()
	libvirttest.Cleanup()
	os.Exit(code)
}

// testVMM parses what Start appends, "--home HOME --ready-fd 3
// [--restore SNAPSHOT | --warm] NAME", and serves the VM.
func testVMM(args []string) int {
	fs := flag.NewFlagSet("vmm", flag.ContinueOnError)
	home := fs.String("home", "", "")
	readyFD := fs.Int("ready-fd", 0, "")
	restore := fs.String("restore", "", "")
	warm := fs.Bool("warm", false, "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "test VMM: bad arguments", args)
		return 2
	}
	c := VMMConfig{Home: *home, Name: fs.Arg(0), Log: os.Stderr, Restore: *restore, Warm: *warm, Version: "test", FDTable: os.Getenv(vmm.FDTableEnv)}
	if *readyFD > 2 {
		c.Ready = os.NewFile(uintptr(*readyFD), "ready")
	}
	if err := ServeVMM(context.Background(), c); err != nil {
		return 1
	}
	return 0
}

// testManager returns a Manager of a new state directory whose VMMs are
// this test binary.
func testManager(t testing.TB) *Manager {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(envTestVMM, "1") // inherited by the VMMs only
	m, err := Open(Options{Home: t.TempDir() + "/home", VMMCommand: []string{exe}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Leave no VMM behind, whatever the test did.
		names, _ := m.Names()
		for _, n := range names {
			m.Remove(context.Background(), n, true)
		}
	})
	return m
}
