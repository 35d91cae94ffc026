# inloop: reads a 32-bit value from port 0x510 forever and stores each at
# 0x90000, for the test that pauses a vCPU on its IN exit.
	.include "common.inc"
	.set PORT, 0x510
	.set RESULT, 0x90000
	.text
	.globl _start
_start:
	SETUP
1:	mov $PORT, %dx
	inl %dx, %eax
	mov %eax, RESULT
	jmp 1b
