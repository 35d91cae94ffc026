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
	GATE VEC, handler
	lidt idt_desc
	APIC_ONLY
	PIN 9, VEC | 1 << 15			# level triggered
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

	IDT
	.data
armed:	.asciz "armed\n"
button:	.asciz "button\n"
