# timers: runs the LAPIC timer (periodic, vector 0x30) and the PIT
# (channel 0, rate generator, through IOAPIC pins 0 and 2 to vector 0x20),
# both at about 100 Hz, and halts between interrupts. Each handler counts
# its ticks in memory and reports the count with an OUT: LAPIC ticks to
# PORT, PIT ticks to PORT + 4. A restored guest's timers must keep firing
# and its counts continue. The host's emulator lacks the 32-bit IRET
# (docs/hosts.md), so a handler drops its frame and goes back to the halt
# loop with interrupts enabled, like irq.S.
	.include "common.inc"
	.set LAPIC_VEC, 0x30
	.set PIT_VEC, 0x20
	.set PORT, 0x540

	.text
	.globl _start
_start:
	SETUP
	GATE LAPIC_VEC, lapic_tick
	GATE PIT_VEC, pit_tick
	lidt idt_desc
	APIC_ONLY
	movl $0xb, LAPIC + 0x3e0	# divide by 1
	movl $(LAPIC_VEC | 1 << 17), LAPIC + 0x320	# periodic
	movl $10000000, LAPIC + 0x380	# 10 ms of the 1 GHz APIC bus
	PIN 0, PIT_VEC
	PIN 2, PIT_VEC
	mov $0x34, %al			# channel 0, lobyte/hibyte, mode 2
	outb %al, $0x43
	mov $(11932 & 0xff), %al	# 1193182 Hz / 11932: 100 Hz
	outb %al, $0x40
	mov $(11932 >> 8), %al
	outb %al, $0x40
idle:
	sti
1:	hlt
	jmp 1b

lapic_tick:
	incl lapic_ticks
	mov lapic_ticks, %eax
	mov $PORT, %dx
	jmp eoi
pit_tick:
	incl pit_ticks
	mov pit_ticks, %eax
	mov $(PORT + 4), %dx
eoi:
	outl %eax, %dx
	movl $0, LAPIC + 0xb0
	add $12, %esp			# drop EIP, CS, EFLAGS
	jmp idle

	IDT
	.data
lapic_ticks:	.long 0
pit_ticks:	.long 0
