package machine

import (
	"fmt"

	"github.com/paddock-vm/paddock/hypervisor/boot/smbios"
)

// writeSMBIOS builds the SMBIOS tables for cfg's machine and copies them
// to SMBIOSStart, where the guest's scan of 0xF0000-0xFFFFF finds their
// entry points: without firmware there is no EFI table to point to them.
func writeSMBIOS(mem *Memory, cfg Config) error {
	blob, err := smbios.Build(smbios.Config{UUID: cfg.UUID, CPUs: cfg.CPUs}, SMBIOSStart)
	if err != nil {
		return err
	}
	if uint64(len(blob)) > biosEnd-SMBIOSStart {
		return fmt.Errorf("%d bytes of tables do not fit the %d-byte SMBIOS area", len(blob), biosEnd-SMBIOSStart)
	}
	dst, err := mem.Slice(SMBIOSStart, uint64(len(blob)))
	if err != nil {
		return err
	}
	copy(dst, blob)
	return nil
}
