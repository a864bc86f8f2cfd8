/* Serial output, the boot marker, the command line and memory map from PVH, then exit status 0.
 * With "halt" on the command line it parks instead of exiting (the boot benchmark measures memory then). */
#include "rt.h"

int main(const struct hvm_start_info *si)
{
	azote_marker(1);
	puts("hello from azote test guest\n");
	puts("cmdline: ");
	puts(cmdline(si));
	puts("\n");
	uint32_t ram_kib = 0, entries = si->memmap_entries;
	const struct hvm_memmap_table_entry *map = (const void *)(uintptr_t)si->memmap_paddr;
	for (uint32_t i = 0; i < entries; i++)
		if (map[i].type == 1)
			ram_kib += (uint32_t)(map[i].size >> 10);
	puts("memmap: ");
	put_dec(entries);
	puts(" entries, ");
	put_dec(ram_kib >> 10);
	puts(" MiB RAM\n");
	if (cmdline_has(si, "halt"))
		halt_forever();
	return 0;
}
