# first: writes '!' to COM1 as its very first instructions, then powers
# off. The start-latency benchmark times exec -> that byte.
	.include "common.inc"
	.text
	.globl _start
_start:
	mov $'!', %al
	mov $COM1, %dx
	outb %al, %dx
	POWEROFF
