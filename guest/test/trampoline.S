/* Application processors start here. The BSP copies ap_trampoline..ap_trampoline_end to 0x80000 and sends
 * STARTUP IPIs with vector 0x80 (guest/ABI.md), so an AP begins in real mode at CS:IP = 0x8000:0000. The
 * trampoline loads a GDT of its own, enters 32-bit protected mode and jumps to ap_entry32 in the image at
 * 1 MiB, which takes a ticket (lock xadd), gets a stack of its own and calls ap_main(ticket). */
#define TRAMPOLINE 0x80000
#define MAX_APS 64
#define AP_STACK_SHIFT 10	/* 1 KiB each: ap_main needs a few words */

	.section .rodata
	.code16
	.balign 16
	.globl ap_trampoline, ap_trampoline_end
ap_trampoline:
	cli
	cld
	mov %cs, %ax
	mov %ax, %ds
	lgdtl tramp_gdt_desc - ap_trampoline
	mov %cr0, %eax
	or $1, %eax		/* PE */
	mov %eax, %cr0
	ljmpl $0x08, $ap_entry32
	.balign 8
tramp_gdt:
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x08: flat 32-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: flat 32-bit data */
tramp_gdt_end:
	.balign 4
	.word 0
tramp_gdt_desc:
	.word tramp_gdt_end - tramp_gdt - 1
	.long TRAMPOLINE + tramp_gdt - ap_trampoline
ap_trampoline_end:

	.text
	.code32
ap_entry32:
	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %fs
	mov %eax, %gs
	mov %eax, %ss
	mov $1, %eax
	lock xadd %eax, ap_tickets
	cmp $MAX_APS, %eax
	jae 2f
	mov %eax, %ebx
	inc %eax
	shl $AP_STACK_SHIFT, %eax
	lea ap_stacks(%eax), %esp
	xor %ebp, %ebp
	push %ebx
	call ap_main
	jmp 3f
2:	/* More APs than stacks: only count the arrival. */
	mov $1, %eax
	lock xadd %eax, ap_arrived
3:	cli
	hlt
	jmp 3b

	.data
	.balign 4
	.globl ap_tickets
ap_tickets:
	.long 0

	.section .stack, "aw", @nobits
	.balign 16
	.globl ap_stacks
ap_stacks:
	.space MAX_APS << AP_STACK_SHIFT

	.section .note.GNU-stack, "", @progbits
