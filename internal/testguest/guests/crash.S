# crash: prints "crashing", then jumps to 0xf0000000, where the machine
# has neither RAM nor a device. Fetching an instruction from there is
# something KVM cannot do on any host (emulated CPL0 or hardware
# virtualization alike: the fetch is an MMIO access it cannot emulate),
# so the VM ends with a KVM internal error (emulation failure), which
# paddock reports as a crash. The guest never goes on.
	.include "common.inc"
	.set NOWHERE, 0xf0000000	# between the PCIe ECAM and the IOAPIC
	.text
	.globl _start
_start:
	SETUP
	mov $msg, %esi
	call puts
	mov $NOWHERE, %eax
	jmp *%eax
	.data
msg:	.asciz "crashing\n"
