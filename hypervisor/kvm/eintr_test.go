package kvm

import (
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestIoctlsRetryEINTR creates and sets up VMs while another goroutine
// floods the thread with signals, as Go's runtime sends them: ioctls other
// than KVM_RUN must retry EINTR themselves (KVM_CREATE_VM, for one, returns
// it when a signal arrives while it registers its MMU notifier).
func TestIoctlsRetryEINTR(t *testing.T) {
	sys := openSystem(t)
	tid := lockThread(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
			}
		}
	}()
	defer wg.Wait()
	defer close(stop)
	for i := 0; i < 40; i++ {
		vm, err := sys.CreateVM()
		if err != nil {
			t.Fatalf("VM %d: %v", i, err)
		}
		err = vm.CreateIRQChip()
		if err == nil {
			var c *VCPU
			c, err = vm.CreateVCPU(0)
			if err == nil {
				_, err = c.Regs()
				c.Close()
			}
		}
		vm.Close()
		if err != nil {
			t.Fatalf("VM %d: %v", i, err)
		}
	}
}
