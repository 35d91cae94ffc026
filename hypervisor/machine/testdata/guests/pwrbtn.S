# pwrbtn: waits for the ACPI power button. Enables PWRBTN_EN, routes the
# SCI (IRQ 9, level, active high) through the IOAPIC to vector 0x29, prints
# "armed" and halts; the SCI handler checks PWRBTN_STS, clears it, prints
# "button" and powers off. PM1A_EVT is the PM1a event block port.
	.include "common.inc"
	.set VEC, 0x29
	.text
	.globl _start
_start:
	SETUP
	mov $handler, %eax
	mov %ax, idt + VEC*8
	movw $0x08, idt + VEC*8 + 2
	movw $0x8e00, idt + VEC*8 + 4
	shr $16, %eax
	mov %ax, idt + VEC*8 + 6
	lidt idt_desc
	mov $0xff, %al
	outb %al, $0x21
	outb %al, $0xa1
	movl $0x1ff, LAPIC + 0xf0
	movl $(0x10 + 2*9), IOAPIC
	movl $(VEC | 1 << 15), IOAPIC + 0x10	# level triggered
	movl $(0x11 + 2*9), IOAPIC
	movl $0, IOAPIC + 0x10
	mov $(PM1A_EVT + 2), %dx		# PM1_EN: PWRBTN_EN
	mov $0x100, %ax
	outw %ax, %dx
	mov $armed, %esi
	call puts
	sti
1:	hlt
	jmp 1b

handler:
	mov $PM1A_EVT, %dx		# PM1_STS
	inw %dx, %ax
	test $0x100, %ax
	jz 1b
	mov $0x100, %ax			# write 1 to clear
	outw %ax, %dx
	mov $button, %esi
	call puts
	POWEROFF

	.data
armed:	.asciz "armed\n"
button:	.asciz "button\n"
	.balign 8
idt_desc:
	.word 256*8 - 1
	.long idt
	.bss
	.balign 8
idt:	.skip 256*8
