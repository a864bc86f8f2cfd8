/* Touches ports and guest-physical addresses no device claims: reads must return all ones, writes must be
 * ignored, and the VM must go on. Exits 0 when every check held, else 1 + the index of the first that failed. */
#include "rt.h"

static uint32_t checks, first_failure;

static void check(const char *what, uint32_t got, uint32_t want)
{
	puts(what);
	puts(": ");
	put_hex(got);
	if (got != want) {
		puts(" (expected ");
		put_hex(want);
		puts(")");
		if (!first_failure)
			first_failure = checks + 1;
	}
	puts("\n");
	checks++;
}

static volatile uint32_t ram_probe;

int main(const struct hvm_start_info *si)
{
	(void)si;
	check("inb 0x1234", inb(0x1234), 0xff);
	check("inw 0x2f8", inw(0x2f8), 0xffff);
	check("inl 0xcf8", inl(0xcf8), 0xffffffff);
	check("inb 0xcfc", inb(0xcfc), 0xff);
	outb(0x1234, 0x55);
	outw(0x2f8, 0x1234);
	outl(0xcf8, 0x80000000);
	check("inl 0xcf8 after write", inl(0xcf8), 0xffffffff);
	check("mmio read32 0xd8000000", mmio_read32(0xd8000000), 0xffffffff);
	check("mmio read8 0xe0000000", mmio_read8(0xe0000000), 0xff);
	mmio_write32(0xd8000000, 0x12345678);
	check("mmio read32 after write", mmio_read32(0xd8000000), 0xffffffff);
	ram_probe = 0xa5a5a5a5;
	check("RAM still works", ram_probe, 0xa5a5a5a5);
	puts(first_failure ? "badio: FAILED\n" : "badio: all checks passed\n");
	return (int)(first_failure ? first_failure + 1 : 0);
}
