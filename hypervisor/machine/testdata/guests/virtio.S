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
	mov $handler, %eax
	mov %ax, idt + VEC*8
	movw $0x08, idt + VEC*8 + 2
	movw $0x8e00, idt + VEC*8 + 4
	shr $16, %eax
	mov %ax, idt + VEC*8 + 6
	lidt idt_desc
	mov $0xff, %al			# mask both PICs
	outb %al, $0x21
	outb %al, $0xa1
	movl $0x1ff, LAPIC + 0xf0	# LAPIC on, spurious vector 0xff
	.if INTX
	movl $(0x10 + 2*PIN), IOAPIC	# vector, fixed, physical, active low, level
	movl $(VEC | 0xa000), IOAPIC + 0x10
	movl $(0x11 + 2*PIN), IOAPIC	# to APIC 0
	movl $0, IOAPIC + 0x10
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

	.data
ready:	.asciz "ready\n"
irq:	.asciz "irq "
	.balign 8
idt_desc:
	.word 256*8 - 1
	.long idt
	.bss
	.balign 8
idt:	.skip 256*8
