# vmgenid: the guest side of the VM generation ID, as Linux's vmgenid and
# evged drivers do it. Prints "id " and the 16-byte ID at VMGENID (four
# little-endian dwords, each as 8 hex digits), routes the GED's interrupt
# (GSI GED_GSI: level, active high) through the IOAPIC to vector 0x2a and
# halts. The handler, like the GED's _EVT, reads the event register at
# GED_PORT once (which clears it and lowers the line), prints "ged " and
# what it read, then the ID again, and goes back to halting. (On the
# test hosts' KVM a level-triggered interrupt can arrive a second time
# while the first is handled; that read finds no event, as Linux's _EVT
# would.)
# VMGENID, GED_PORT and GED_GSI come from the test build (--defsym).
	.include "common.inc"
	.set VEC, 0x2a
	.text
	.globl _start
_start:
	SETUP
	GATE VEC, handler
	lidt idt_desc
	APIC_ONLY
	PIN GED_GSI, VEC | 1 << 15		# level triggered, active high
	mov $id, %esi
	call puts
	call putid
idle:
	sti
1:	hlt
	jmp 1b

handler:
	xor %eax, %eax
	mov $GED_PORT, %dx
	inb %dx, %al
	mov $ged, %esi
	call puts
	call puthex
	mov $sep, %esi
	call puts
	call putid
	movl $0, LAPIC + 0xb0		# EOI
	add $12, %esp			# drop EIP, CS, EFLAGS (no 32-bit IRET here)
	jmp idle

# putid: print the ID's four dwords and a newline.
putid:
	mov $VMGENID, %ebx
	mov $4, %ecx
2:	mov (%ebx), %eax
	call puthex
	add $4, %ebx
	loop 2b
	mov $'\n', %al
	call putc
	ret

	IDT
	.data
id:	.asciz "id "
ged:	.asciz "ged "
sep:	.asciz " id "
