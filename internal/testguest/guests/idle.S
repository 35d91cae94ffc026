# idle: writes '!' to COM1, then halts with interrupts off for ever (the
# memory-overhead benchmark samples the VMM's RSS while it idles).
	.include "common.inc"
	.text
	.globl _start
_start:
	mov $'!', %al
	mov $COM1, %dx
	outb %al, %dx
	cli
1:	hlt
	jmp 1b
