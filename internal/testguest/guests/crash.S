# crash: prints "crashing", then executes crc32 at CPL0, which this
# host's KVM cannot emulate (docs/hosts.md): the VM ends with a KVM internal
# error (emulation failure), which paddock reports as a crash. Should the
# instruction run (a host with hardware virtualization), ud2 follows:
# without an IDT that is a triple fault, so the guest still never goes on.
	.include "common.inc"
	.text
	.globl _start
_start:
	SETUP
	mov $msg, %esi
	call puts
	crc32 %eax, %ebx
	ud2
1:	hlt
	jmp 1b
	.data
msg:	.asciz "crashing\n"
