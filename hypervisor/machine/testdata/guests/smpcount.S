# smpcount: every vCPU counts in %esi and reports the count every 4096
# iterations with an OUT to port PORT + 4*APIC ID: the boot CPU in 32-bit
# protected mode, the others (started with INIT + SIPI) in real mode. A
# restored guest must continue every vCPU's sequence where it was.
	.include "common.inc"
	.set TRAMP, 0x80000		# 4 KiB aligned, below 1 MiB: SIPI vector 0x80
	.set PORT, 0x530
	.text
	.globl _start
_start:
	SETUP
	mov $ap_start, %esi
	mov $TRAMP, %edi
	mov $(ap_end - ap_start), %ecx
	rep movsb
	movl $0x1ff, LAPIC + 0xf0
	movl $0, LAPIC + 0x310
	movl $0x000c4500, LAPIC + 0x300
	movl $(0x000c4600 | (TRAMP >> 12)), LAPIC + 0x300
	movl $(0x000c4600 | (TRAMP >> 12)), LAPIC + 0x300
	mov $PORT, %dx
	xor %esi, %esi
1:	inc %esi
	test $0xfff, %esi
	jnz 1b
	mov %esi, %eax
	outl %eax, %dx
	jmp 1b

	.code16
ap_start:
	cli
	mov $1, %eax
	cpuid
	shr $24, %ebx			# APIC ID
	mov %bx, %dx
	shl $2, %dx
	add $PORT, %dx
	xor %esi, %esi
2:	inc %esi
	test $0xfff, %esi
	jnz 2b
	mov %esi, %eax
	outl %eax, %dx
	jmp 2b
ap_end:
	.code32
