# rekey: irq's guest with a reboot key. It takes COM1 receive interrupts
# through the IOAPIC and LAPIC, prints "ready", and halts with interrupts
# on; the handler echoes each byte it receives, reboots on 'r' (ud2 with
# no gate for it: a triple fault, which paddock treats as a reset) and
# powers off on 'q'. A test makes a running VM reboot on demand with it,
# and the VM keeps running afterwards, waiting for the next key.
	.include "common.inc"
	.set VEC, 0x24
	.text
	.globl _start
_start:
	SETUP
	# Interrupt gate for VEC -> handler (selector 0x08, present, DPL0, 32-bit).
	mov $handler, %eax
	mov %ax, idt + VEC*8
	movw $0x08, idt + VEC*8 + 2
	movw $0x8e00, idt + VEC*8 + 4
	shr $16, %eax
	mov %ax, idt + VEC*8 + 6
	lidt idt_desc
	# Mask both PICs: interrupts come through the IOAPIC.
	mov $0xff, %al
	outb %al, $0x21
	outb %al, $0xa1
	# LAPIC software enable (SVR bit 8, spurious vector 0xff).
	movl $0x1ff, LAPIC + 0xf0
	# IOAPIC pin 4: vector VEC, fixed, physical, edge, active high, unmasked, to APIC 0.
	movl $(0x10 + 2*4), IOAPIC
	movl $VEC, IOAPIC + 0x10
	movl $(0x11 + 2*4), IOAPIC
	movl $0, IOAPIC + 0x10
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
	cmp $'r', %al
	jne 4f
	ud2
4:	cmp $'q', %al
	jne 2b
	POWEROFF
3:	movl $0, LAPIC + 0xb0		# EOI
	pop %edx
	pop %eax
	add $12, %esp			# drop EIP, CS, EFLAGS
	jmp idle

	.data
ready:	.asciz "ready\n"
	.balign 8
idt_desc:
	.word 256*8 - 1
	.long idt
	.bss
	.balign 8
idt:	.skip 256*8
