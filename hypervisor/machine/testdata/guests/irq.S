# irq: takes COM1 receive interrupts through the IOAPIC and LAPIC. Routes
# IRQ 4 to vector 0x24, enables the UART's RX interrupt, prints "ready",
# and halts with interrupts on. The handler echoes each byte it receives
# and powers off on 'q'. The host's emulator lacks the 32-bit IRET
# (docs/hosts.md), so the handler does not return: it drops its interrupt frame
# and goes back to the halt loop with interrupts enabled.
	.include "common.inc"
	.set VEC, 0x24
	.text
	.globl _start
_start:
	SETUP
	GATE VEC, handler
	lidt idt_desc
	APIC_ONLY
	# IOAPIC pin 4: vector VEC, fixed, physical, edge, active high, unmasked.
	PIN 4, VEC
	# UART: FIFOs on, RX data interrupt on, OUT2 (the PC's IRQ gate) on.
	mov $1, %al
	mov $(COM1 + 2), %dx
	outb %al, %dx
	mov $1, %al
	mov $(COM1 + 1), %dx
	outb %al, %dx
	mov $0x08, %al
	mov $(COM1 + 4), %dx
	outb %al, %dx
	mov $ready, %esi
	call puts
idle:
	sti
1:	hlt
	jmp 1b

handler:
	push %eax
	push %edx
2:	mov $(COM1 + 5), %dx		# drain every byte the UART holds
	inb %dx, %al
	test $1, %al
	jz 3f
	mov $COM1, %dx
	inb %dx, %al
	call putc
	cmp $'q', %al
	jne 2b
	POWEROFF
3:	movl $0, LAPIC + 0xb0		# EOI
	pop %edx
	pop %eax
	add $12, %esp			# drop EIP, CS, EFLAGS
	jmp idle

	IDT
	.data
ready:	.asciz "ready\n"
