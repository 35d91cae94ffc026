# poweroff: the smallest guest — powers off at its first instructions.
# Used to measure the VMM's start latency.
	.include "common.inc"
	.text
	.globl _start
_start:
	POWEROFF
