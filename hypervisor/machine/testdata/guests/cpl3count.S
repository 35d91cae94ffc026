# cpl3count: enters 64-bit long mode, drops to CPL3 and computes there,
# natively (the host's KVM only emulates CPL0 code, docs/hosts.md):
# %rsi counts iterations and %rdi = %rdi*31 + %rsi. Every 2^20
# iterations it reports both, low halves, with MMIO writes to REPORT and
# REPORT+4 (an I/O exit: the host's KVM keeps IOPL 0 at CPL3, so OUT
# would fault). A restored guest must continue the exact sequence: a
# saved register lost or changed shows at once.
	.include "common.inc"
	.set REPORT, 0xd0000000
	.set PML4, 0x80000
	.set PDPT, 0x81000
	.set PD, 0x82000		# four of them
	.text
	.globl _start
_start:
	SETUP
	# Identity map of the first 4 GiB in 2 MiB pages, user-accessible.
	movl $(PDPT | 7), PML4
	movl $(PD | 7), PDPT
	movl $(PD + 0x1000 | 7), PDPT + 8
	movl $(PD + 0x2000 | 7), PDPT + 16
	movl $(PD + 0x3000 | 7), PDPT + 24
	xor %ecx, %ecx
1:	mov %ecx, %eax
	shl $21, %eax
	or $0x87, %eax			# present, writable, user, 2 MiB
	mov %eax, PD(,%ecx,8)
	inc %ecx
	cmp $2048, %ecx
	jne 1b
	mov %cr4, %eax
	or $0x20, %eax			# PAE
	mov %eax, %cr4
	mov $PML4, %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx		# EFER.LME
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80000000, %eax		# paging: long mode
	mov %eax, %cr0
	lgdt gdt64_desc
	ljmp $0x08, $long

	.code64
long:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $ustack_top, %rax
	pushq $0x1b			# SS: user data, RPL 3
	push %rax			# RSP
	pushq $0x0002			# RFLAGS: interrupts off
	pushq $0x23			# CS: user code, RPL 3
	pushq $user			# RIP
	iretq

user:
	xor %esi, %esi
	mov $1, %edi
2:	inc %rsi
	imul $31, %rdi, %rdi
	add %rsi, %rdi
	test $0xfffff, %esi
	jnz 2b
	mov $REPORT, %r8d		# above 2 GiB: not a sign-extended disp32
	mov %esi, (%r8)
	mov %edi, 4(%r8)
	jmp 2b

	.data
	.balign 8
gdt64:
	.quad 0
	.quad 0x00af9a000000ffff	# 0x08: kernel code, 64-bit
	.quad 0x00cf92000000ffff	# 0x10: kernel data
	.quad 0x00cff2000000ffff	# 0x18: user data, DPL 3
	.quad 0x00affa000000ffff	# 0x20: user code, 64-bit, DPL 3
gdt64_end:
gdt64_desc:
	.word gdt64_end - gdt64 - 1
	.long gdt64
	.bss
	.balign 16
ustack:
	.skip 4096
ustack_top:
