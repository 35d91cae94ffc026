# warm: the guest of a warm template. It routes the GED's interrupt (the
# VM generation ID's notification; GSI GED_GSI, level, active high)
# through the IOAPIC to vector 0x2a, writes its own address into the
# first dword of every 4 KiB page from FILL_START to FILL_END (448 MiB:
# it needs 512 MiB of RAM; a test may build it with another FILL_END)
# and prints "filled". Then it runs a pass:
# it reads that dword of every filled page, adds them up and prints
# "pass N sum S id ID" (N counts the passes, ID is the 16-byte VM
# generation ID at VMGENID as four little-endian dwords), and halts. A
# copy restored from a snapshot gets the GED interrupt: the handler reads
# the event register at GED_PORT (which clears it), prints "ged E", and
# when E is not zero runs another pass, whose line shows that it
# continues the saved guest (N goes on, S is the filled memory's sum)
# with a new ID, having read every filled page.
# VMGENID, GED_PORT and GED_GSI come from the test build (--defsym).
	.include "common.inc"
	.set VEC, 0x2a
	.set FILL_START, 0x1000000
	.ifndef FILL_END			# a test may set it (testguest.BuildWith)
	.set FILL_END, 0x1d000000
	.endif
	.set PAGE, 4096
	.text
	.globl _start
_start:
	SETUP
	GATE VEC, handler
	lidt idt_desc
	APIC_ONLY
	PIN GED_GSI, VEC | 1 << 15		# level triggered, active high
	mov $FILL_START, %edi
1:	mov %edi, (%edi)
	add $PAGE, %edi
	cmp $FILL_END, %edi
	jb 1b
	mov $filled, %esi
	call puts
pass:
	incl passes
	xor %edx, %edx
	mov $FILL_START, %edi
1:	add (%edi), %edx
	add $PAGE, %edi
	cmp $FILL_END, %edi
	jb 1b
	mov $passmsg, %esi
	call puts
	mov passes, %eax
	call puthex
	mov $summsg, %esi
	call puts
	mov %edx, %eax
	call puthex
	mov $idmsg, %esi
	call puts
	mov $VMGENID, %ebx
	mov $4, %ecx
2:	mov (%ebx), %eax
	call puthex
	add $4, %ebx
	loop 2b
	mov $'\n', %al
	call putc
idle:
	sti
1:	hlt
	jmp 1b

handler:
	xor %eax, %eax
	mov $GED_PORT, %dx
	inb %dx, %al
	mov %eax, %ebx
	mov $ged, %esi
	call puts
	call puthex
	mov $'\n', %al
	call putc
	movl $0, LAPIC + 0xb0		# EOI
	add $12, %esp			# drop EIP, CS, EFLAGS (no 32-bit IRET here)
	test %ebx, %ebx
	jz idle
	jmp pass

	IDT
	.data
filled:	.asciz "filled\n"
passmsg: .asciz "pass "
summsg:	.asciz " sum "
idmsg:	.asciz " id "
ged:	.asciz "ged "
	.balign 4
passes:	.long 0
