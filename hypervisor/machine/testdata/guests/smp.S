# smp: the boot CPU starts every other CPU with INIT + SIPI (the in-kernel
# LAPIC does the work). Each AP, in real mode, reads its APIC ID with CPUID
# and sets its bit in a bitmap; the BSP waits for APS bits, prints the
# bitmap and powers off. The test defines APS (the expected bitmap).
	.include "common.inc"
	.set TRAMP, 0x80000		# 4 KiB aligned, below 1 MiB: SIPI vector 0x80
	.text
	.globl _start
_start:
	SETUP
	# Copy the real-mode trampoline to TRAMP.
	mov $ap_start, %esi
	mov $TRAMP, %edi
	mov $(ap_end - ap_start), %ecx
	rep movsb
	movl $0, TRAMP + (bitmap - ap_start)
	# Enable the LAPIC, then INIT and two SIPIs to all but self.
	movl $0x1ff, LAPIC + 0xf0
	movl $0, LAPIC + 0x310
	movl $0x000c4500, LAPIC + 0x300
	movl $(0x000c4600 | (TRAMP >> 12)), LAPIC + 0x300
	movl $(0x000c4600 | (TRAMP >> 12)), LAPIC + 0x300
1:	pause
	mov TRAMP + (bitmap - ap_start), %eax
	cmp $APS, %eax
	jne 1b
	mov $msg, %esi
	call puts
	call puthex
	mov $'\n', %al
	call putc
	POWEROFF

	.code16
ap_start:
	cli
	mov %cs, %ax
	mov %ax, %ds
	mov $1, %eax
	cpuid
	shr $24, %ebx			# APIC ID
	mov %bl, %cl
	mov $1, %eax
	shl %cl, %eax
	lock orl %eax, (bitmap - ap_start)
2:	hlt
	jmp 2b
	.balign 4
bitmap:	.long 0
ap_end:
	.code32

	.data
msg:	.asciz "aps "
