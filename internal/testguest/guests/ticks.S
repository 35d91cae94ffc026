# ticks: prints "tick NNNNNNNN" lines for ever, about ten a second (a busy
# wait of emulated CPL0 code), keeping the count in %ebx and in memory at
# COUNT: a managed VM whose console and memory both say how far it got, so
# that a restored snapshot shows where it continues from.
	.include "common.inc"
	.set COUNT, 0x90000
	.set DELAY, 0x10000
	.text
	.globl _start
_start:
	SETUP
	xor %ebx, %ebx
1:	inc %ebx
	mov %ebx, COUNT
	mov $prefix, %esi
	call puts
	mov %ebx, %eax
	call puthex
	mov $'\n', %al
	call putc
	mov $DELAY, %ecx
2:	dec %ecx
	jnz 2b
	jmp 1b
	.data
prefix:	.asciz "tick "
