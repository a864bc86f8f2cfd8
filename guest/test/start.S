/* Entry of the test guests through PVH (guest/ABI.md): the Xen ELF note that names the 32-bit entry point,
 * a GDT of our own, .bss cleared, a stack, then main(start_info); main's return value is the exit status. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define GDT_CODE 0x08
#define GDT_DATA 0x10

	/* Elf32_Nhdr: namesz, descsz, type; then "Xen\0" and the 32-bit entry address. */
	.section .note.pvh, "a", @note
	.balign 4
	.long 4
	.long 4
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.balign 4
	.long _start

	.section .text.start, "ax"
	.code32
	.globl _start
_start:
	/* 32-bit protected mode, paging off, EBX = hvm_start_info. Use no register but EBX until it is saved. */
	cli
	cld
	lgdt gdt_desc
	ljmp $GDT_CODE, $1f
1:	mov $GDT_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %fs
	mov %eax, %gs
	mov %eax, %ss
	mov %ebx, %esi
	/* Clear .bss (the stacks are in .stack, which is not cleared). */
	mov $__bss_start, %edi
	mov $__bss_end, %ecx
	sub %edi, %ecx
	xor %eax, %eax
	rep stosb
	mov $boot_stack_top, %esp
	xor %ebp, %ebp
	push %esi
	call main
	push %eax
	call azote_exit

	.globl gdt, gdt_desc
	.section .rodata
	.balign 8
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x08: flat 32-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: flat 32-bit data */
gdt_end:
	.balign 4
	.word 0
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt

	.section .stack, "aw", @nobits
	.balign 16
	.space 8192
boot_stack_top:

	.section .note.GNU-stack, "", @progbits
