# reset: prints "rebooting", then executes ud2 with no IDT: the #UD cannot
# be delivered, so the vCPU triple-faults, which a PC (and paddock) treats
# as a reset: a guest-initiated reboot.
	.include "common.inc"
	.text
	.globl _start
_start:
	SETUP
	mov $msg, %esi
	call puts
	ud2
1:	hlt
	jmp 1b
	.data
msg:	.asciz "rebooting\n"
