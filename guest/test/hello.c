/* Serial output, the boot marker, and the PVH start_info (command line, memory map); exits with status 0.
 * With "halt" on the command line it parks (cli; hlt) instead of exiting, so the host has to stop it. */
#include "rt.h"

#define MAX_CMDLINE_SHOWN 4096

int main(const struct hvm_start_info *si)
{
	azote_marker(1);
	puts("hello from azote test guest\n");
	if (!si || si->magic != HVM_START_MAGIC) {
		printf("start_info: bad magic %#x at %p\n", si ? si->magic : 0, (const void *)si);
		return 2;
	}
	printf("start_info: at %p, version %u, flags %#x, %u modules, rsdp %#llx\n", (const void *)si, si->version,
	       si->flags, si->nr_modules, si->rsdp_paddr);

	puts("cmdline: ");
	const char *c = cmdline(si);
	for (uint32_t i = 0; c[i] && i < MAX_CMDLINE_SHOWN; i++)
		putc(c[i]);
	putc('\n');

	if (si->version < 1 || !si->memmap_paddr || si->memmap_paddr >= 0xffffffffu) {
		puts("memmap: none (start_info version 0)\n");
		return 3;
	}
	const struct hvm_memmap_table_entry *map = (const void *)(uintptr_t)si->memmap_paddr;
	uint64_t ram = 0;
	for (uint32_t i = 0; i < si->memmap_entries; i++) {
		if (map[i].size)
			printf("  %016llx-%016llx type %u\n", map[i].addr, map[i].addr + map[i].size - 1, map[i].type);
		else
			printf("  %016llx empty            type %u\n", map[i].addr, map[i].type);
		if (map[i].type == E820_RAM)
			ram += map[i].size;
	}
	/* Total RAM, rounded down to whole MiB. */
	printf("memmap: %u entries, %llu MiB RAM\n", si->memmap_entries, ram >> 20);

	if (cmdline_has(si, "halt")) {
		puts("halting\n");
		halt_forever();
	}
	return 0;
}
