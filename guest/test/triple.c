/* A triple fault on purpose: with an empty IDT (limit 0) the #UD of ud2 cannot be delivered (#GP), neither can
 * the #GP (#DF), nor the #DF: the CPU shuts down. The hypervisor must end the VM and say why. Never exits
 * normally; if it ever gets past the fault it prints "still alive" and exits with 99. "int3" on the command
 * line raises the fault with int3 instead (on this machine's nested KVM, int3 comes back to the VMM as
 * KVM_EXIT_INTERNAL_ERROR, so that variant tests the VMM's #BP injection first). */
#include "rt.h"

int main(const struct hvm_start_info *si)
{
	static const struct __attribute__((packed)) {
		uint16_t limit;
		uint32_t base;
	} empty_idt = { 0, 0 };
	int ud2 = !cmdline_has(si, "int3");
	printf("triple: empty IDT, then %s: faulting now\n", ud2 ? "ud2" : "int3");
	__asm__ volatile("lidt %0" : : "m"(empty_idt));
	if (ud2)
		__asm__ volatile("ud2");
	else
		__asm__ volatile("int3");
	puts("triple: still alive\n");
	return 99;
}
