/* Application-processor start: a real-mode trampoline that the BSP copies to 0x80000 (SIPI vector 0x80).
 * It switches to 32-bit protected mode on the guest's GDT and calls ap_main(index) on a stack of its own. */
#define TRAMPOLINE 0x80000

	.section .rodata
	.code16
	.globl ap_trampoline, ap_trampoline_end
ap_trampoline:
	cli
	mov %cs, %ax
	mov %ax, %ds
	lgdtl ap_gdt_desc - ap_trampoline
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $0x08, $ap_protected
	.balign 8
ap_gdt_desc:
	.word 23
	.long 0		/* patched by the BSP: address of the guest's GDT */
ap_trampoline_end:

	.text
	.code32
ap_protected:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $1, %eax
	lock xadd %eax, ap_next_index
	mov %eax, %ebx
	inc %eax
	shl $12, %eax
	lea ap_stacks(%eax), %esp
	push %ebx
	call ap_main
1:	cli
	hlt
	jmp 1b

	.data
	.globl ap_next_index
ap_next_index:
	.long 0
	.globl ap_gdt_desc_offset
ap_gdt_desc_offset:
	.long ap_gdt_desc - ap_trampoline

	.bss
	.balign 4096
ap_stacks:
	.space 4096 * 32

	.section .note.GNU-stack, "", @progbits
