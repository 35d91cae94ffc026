# serial: prints a line through the 8250 UART (polling THRE), then powers off.
	.include "common.inc"
	.text
	.globl _start
_start:
	SETUP
	mov $msg, %esi
	call puts
	POWEROFF
	.data
msg:	.asciz "hello from the serial guest\n"
