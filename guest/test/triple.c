/* Loads an empty IDT and raises an exception: no handler, so the CPU shuts down (triple fault).
 * The hypervisor must end the VM and say why; this guest never exits normally. */
#include "rt.h"

int main(const struct hvm_start_info *si)
{
	(void)si;
	static const struct __attribute__((packed)) { uint16_t limit; uint32_t base; } empty = { 0, 0 };
	puts("triple: faulting now\n");
	__asm__ volatile("lidt %0; int3" : : "m"(empty));
	puts("triple: still alive?\n");
	return 99;
}
