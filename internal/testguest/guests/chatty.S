# chatty: prints LINES lines of 64 bytes ("chatty NNNNNNNN ...") through
# COM1, polling THRE as Linux does, then "done" and powers off: a guest
# whose console output outgrows a console log's limits or file system.
	.include "common.inc"
	.set LINES, 256
	.text
	.globl _start
_start:
	SETUP
	xor %ecx, %ecx
1:	mov $prefix, %esi
	call puts
	mov %ecx, %eax
	call puthex
	mov $filler, %esi
	call puts
	inc %ecx
	cmp $LINES, %ecx
	jb 1b
	mov $done, %esi
	call puts
	POWEROFF
	.data
prefix:	.asciz "chatty "
filler:	.asciz " 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK\n"
done:	.asciz "done\n"
