# counter: counts forever in a memory word at 0x90000 (for pause/resume
# tests), after printing "counting".
	.include "common.inc"
	.set COUNTER, 0x90000
	.text
	.globl _start
_start:
	SETUP
	movl $0, COUNTER
	mov $msg, %esi
	call puts
1:	incl COUNTER
	jmp 1b
	.data
msg:	.asciz "counting\n"
