# mmio: exercises MMIO exits against a test device the host maps at
# 0xd0000000: writes a 32-bit and an 8-bit value, reads a 32-bit value and
# writes it back at +0x10 so the host can see what the guest read.
	.include "common.inc"
	.set DEV, 0xd0000000
	.text
	.globl _start
_start:
	SETUP
	movl $0xdeadbeef, DEV
	movb $0x5a, DEV + 4
	movl DEV + 8, %eax
	movl %eax, DEV + 0x10
	POWEROFF
