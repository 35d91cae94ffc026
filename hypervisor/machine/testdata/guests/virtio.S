# virtio: makes a request available on a virtio queue, rings the queue's
# doorbell and waits for the device's interrupt. The host test has set up
# the device, its queue and the request beforehand, as a driver would,
# all but publishing the available ring's index: at MAILBOX it leaves the
# index's address (32 bits) and the value to store there (16 bits, at
# MAILBOX+4). It defines with --defsym:
#   MAILBOX that address
#   NOTIFY  the queue's notification address (in the function's BAR)
#   VEC     the vector the interrupt arrives on
#   INTX    0: the interrupt is an MSI-X message; 1: it comes through
#           IOAPIC pin PIN, level-triggered and active-low as Linux
#           programs PCI INTx, and the handler reads the ISR register at
#           ISR, which lowers the line.
# It prints "ready", rings, halts with interrupts on; the handler prints
# "irq" and the ISR value it read (0 for MSI-X) and powers off. The host's
# emulator lacks the 32-bit IRET (docs/hosts.md), so the handler does not return.
	.include "common.inc"
	.text
	.globl _start
_start:
	SETUP
	GATE VEC, handler
	lidt idt_desc
	APIC_ONLY
	.if INTX
	PIN PIN, VEC | 0xa000		# vector, fixed, physical, active low, level
	.endif
	mov $ready, %esi
	call puts
	mov MAILBOX, %ebx		# publish the request
	movw MAILBOX + 4, %ax
	movw %ax, (%ebx)
	movw $0, NOTIFY			# the doorbell: queue 0
	sti
1:	hlt
	jmp 1b

handler:
	xor %eax, %eax
	.if INTX
	movb ISR, %al			# reading the ISR lowers INTx
	.endif
	mov $irq, %esi
	call puts
	call puthex
	mov $'\n', %al
	call putc
	movl $0, LAPIC + 0xb0		# EOI
	POWEROFF

	IDT
	.data
ready:	.asciz "ready\n"
irq:	.asciz "irq "
