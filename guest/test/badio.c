/* Ports and guest-physical addresses that no device claims (guest/ABI.md): reads must return all ones, writes
 * must be dropped, and the VM must go on. Prints one line per check and a summary with the number of unclaimed
 * accesses it made, so the host can compare them with its own counters. Exits 0 when every check held, else
 * 1 + the (0-based) index of the first check that failed. */
#include "rt.h"

/* Above RAM and outside every window of guest/ABI.md: RAM above 3 GiB moves to 4 GiB, 0xd0000000 - 0xdfffffff
 * is kept for virtio-mmio, and 0xfec00000 / 0xfee00000 are the APICs. */
#define HOLE_LOW 0xc8000000u
#define HOLE_HIGH 0xe0000000u

static uint32_t checks, first_failure = 0xffffffffu;
static uint32_t port_reads, port_writes, mmio_reads, mmio_writes;

/* One check: "badio: <index> <op> <address> = <got>", and what was expected when it differs. */
static void check(const char *op, uint32_t addr, uint32_t got, uint32_t want)
{
	printf("badio: %2u %-7s %#010x = %#010x", checks, op, addr, got);
	if (got != want) {
		printf("  FAILED, expected %#010x", want);
		if (first_failure == 0xffffffffu)
			first_failure = checks;
	}
	putc('\n');
	checks++;
}

static uint32_t pin(uint16_t port, int size)
{
	port_reads++;
	return size == 1 ? inb(port) : size == 2 ? inw(port) : inl(port);
}

static void pout(uint16_t port, int size, uint32_t v)
{
	port_writes++;
	if (size == 1)
		outb(port, (uint8_t)v);
	else if (size == 2)
		outw(port, (uint16_t)v);
	else
		outl(port, v);
}

static uint32_t mread(uintptr_t a, int size)
{
	mmio_reads++;
	return size == 1 ? mmio_read8(a) : size == 2 ? mmio_read16(a) : mmio_read32(a);
}

static void mwrite(uintptr_t a, int size, uint32_t v)
{
	mmio_writes++;
	if (size == 1)
		mmio_write8(a, (uint8_t)v);
	else if (size == 2)
		mmio_write16(a, (uint16_t)v);
	else
		mmio_write32(a, v);
}

static uint32_t ones(int size)
{
	return size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
}

static void read_port(uint16_t port, int size)
{
	check(size == 1 ? "inb" : size == 2 ? "inw" : "inl", port, pin(port, size), ones(size));
}

static void read_mmio(uintptr_t a, int size)
{
	check(size == 1 ? "read8" : size == 2 ? "read16" : "read32", a, mread(a, size), ones(size));
}

static volatile uint32_t ram_words[64];

int main(const struct hvm_start_info *si)
{
	(void)si;
	/* Ports: nothing at 0x1234; COM2 (0x2f8 - 0x2ff) and PCI configuration (0xcf8 - 0xcff) are not emulated. */
	read_port(0x1234, 1);
	read_port(0x1234, 2);
	read_port(0x1234, 4);
	read_port(0x2f8, 1);
	read_port(0x2fd, 1); /* COM2 line status */
	read_port(0x2f8, 2);
	read_port(0xcf8, 4);
	read_port(0xcfc, 4);
	read_port(0xcfe, 2);
	read_port(0xcff, 1);
	pout(0x1234, 1, 0x55);
	pout(0x2f8, 2, 0x1234);
	pout(0xcf8, 4, 0x80000000u); /* PCI config address: bus 0, device 0, function 0, register 0 */
	pout(0xcfc, 4, 0xdeadbeefu);
	read_port(0xcf8, 4); /* no latch: still all ones after the write */
	read_port(0xcfc, 4);
	read_port(0x1234, 1);

	/* Memory: reads of unbacked guest-physical addresses give all ones, writes are dropped. */
	read_mmio(HOLE_LOW, 4);
	read_mmio(HOLE_HIGH, 1);
	read_mmio(HOLE_HIGH + 2, 2);
	read_mmio(HOLE_HIGH + 0xffc, 4);
	mwrite(HOLE_LOW, 4, 0x12345678u);
	mwrite(HOLE_HIGH, 1, 0x5a);
	read_mmio(HOLE_LOW, 4);
	read_mmio(HOLE_HIGH, 1);

	/* RAM still holds what is written to it (the .bss at 1 MiB, and the next MiB). */
	uint32_t bad = 0;
	for (uint32_t i = 0; i < 64; i++)
		ram_words[i] = 0xa5a5a5a5u ^ (i * 0x01010101u);
	for (uint32_t i = 0; i < 64; i++)
		bad += ram_words[i] != (0xa5a5a5a5u ^ (i * 0x01010101u));
	check("ram", (uint32_t)(uintptr_t)ram_words, bad, 0); /* the number of words that differ */
	mmio_write32(0x200000, 0xc0ffee00u);
	check("ram", 0x200000, mmio_read32(0x200000), 0xc0ffee00u);

	printf("badio: %u checks; unclaimed accesses: %u port reads, %u port writes, %u mmio reads, %u mmio writes\n",
	       checks, port_reads, port_writes, mmio_reads, mmio_writes);
	if (first_failure != 0xffffffffu) {
		printf("badio: FAILED at check %u\n", first_failure);
		return (int)(1 + first_failure);
	}
	puts("badio: all checks passed\n");
	return 0;
}
