/* Several vCPUs. Reads the MP table (Intel MultiProcessor Specification 1.4) to learn the processors and the
 * local APIC address, starts every other processor with INIT and two STARTUP IPIs (vector 0x80: the trampoline
 * at 0x80000, guest/ABI.md), and waits for each to check in from 32-bit protected mode.
 *
 * Prints "mptable: N cpus", then "smp: M cpus up (apic ids: ...)". Exit status:
 *   M (the CPUs running, the BSP included) when every expected CPU came up,
 *   100 + M when the expected count was not reached in time,
 *   99 when the APs that came up report APIC ids the table does not list (or the same id twice).
 * When the MP table is missing or lists no processor (QEMU's microvm firmware), it counts the processors of
 * the ACPI MADT instead when there is one, and otherwise broadcasts the IPIs and counts whatever arrives
 * within about a second (status M). A malformed MP table gives status 98.
 * Command line: "cpus=N" overrides the expected count; "broadcast" sends the IPIs with the "all excluding
 * self" shorthand instead of one per APIC id. */
#include "rt.h"

#define MAX_CPUS 64
#define TRAMPOLINE 0x80000u
#define DEFAULT_LAPIC 0xfee00000u

#define LAPIC_ID 0x20
#define LAPIC_VERSION 0x30
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_INIT 0x500u
#define ICR_STARTUP 0x600u
#define ICR_PENDING (1u << 12)
#define ICR_ASSERT (1u << 14)
#define ICR_ALL_BUT_SELF (3u << 18)
#define SVR_ENABLE 0x100u

extern const uint8_t ap_trampoline[], ap_trampoline_end[];
extern volatile uint32_t ap_tickets;

volatile uint32_t ap_arrived;              /* incremented by each AP (lock xadd) once it has recorded its id */
static volatile uint32_t ap_apic_ids[MAX_CPUS]; /* by ticket */
static volatile uint32_t lapic_base = DEFAULT_LAPIC;

static uint32_t lapic_read(uint32_t reg) { return mmio_read32(lapic_base + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(lapic_base + reg, v); }

/* Runs on each AP, on its own stack (trampoline.S). */
void ap_main(uint32_t ticket);
void ap_main(uint32_t ticket)
{
	ap_apic_ids[ticket] = lapic_read(LAPIC_ID) >> 24;
	uint32_t one = 1;
	__asm__ volatile("lock xadd %0, %1" : "+r"(one), "+m"(ap_arrived) : : "memory");
}

/* ---- what the firmware tables say ---- */

struct cpus {
	uint32_t count;
	uint8_t ids[MAX_CPUS]; /* APIC ids of the enabled processors */
	int bsp_listed;        /* index of the processor flagged BP, or -1 */
};

static uint8_t sum8(const volatile uint8_t *p, uint32_t n)
{
	uint8_t s = 0;
	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

static int sig(const volatile uint8_t *p, const char *s)
{
	for (; *s; s++, p++)
		if (*p != (uint8_t)*s)
			return 0;
	return 1;
}

static uint16_t rd16(const volatile uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const volatile uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void add_cpu(struct cpus *c, uint8_t id, int bsp)
{
	if (c->count >= MAX_CPUS)
		return;
	if (bsp)
		c->bsp_listed = (int)c->count;
	c->ids[c->count++] = id;
}

/* MP spec 1.4 section 4: a floating pointer structure on a 16-byte boundary whose checksum is right. */
static const volatile uint8_t *find_mp_floating(uint32_t start, uint32_t end)
{
	for (uint32_t a = start; a + 16 <= end; a += 16) {
		const volatile uint8_t *p = (const volatile uint8_t *)phys(a);
		if (sig(p, "_MP_") && p[8] == 1 && (p[9] == 1 || p[9] == 4) && sum8(p, 16) == 0)
			return p;
	}
	return 0;
}

/* 1 when a valid MP table was found (and fills `c`), 0 when there is none, -1 when one is there but bad. */
static int read_mptable(struct cpus *c)
{
	/* Search order of the spec: the first KiB of the EBDA (segment at 0x40e of the BDA), else the last KiB of
	 * base memory (0x9fc00 for 639 KiB), then the BIOS ROM 0xf0000 - 0xfffff. */
	const volatile uint8_t *fp = 0;
	uint32_t ebda = (uint32_t)mmio_read16(0x40e) << 4;
	if (ebda >= 0x80000 && ebda < 0xa0000)
		fp = find_mp_floating(ebda, ebda + 1024);
	if (!fp)
		fp = find_mp_floating(0x9fc00, 0xa0000);
	if (!fp)
		fp = find_mp_floating(0xf0000, 0x100000);
	if (!fp)
		return 0;
	printf("mptable: floating pointer at %p, spec 1.%u", (const void *)fp, fp[9]);
	if (fp[11] != 0) {
		/* A default configuration (spec chapter 5): no table, two processors with APIC ids 0 and 1. */
		printf(", default configuration %u\n", fp[11]);
		add_cpu(c, 0, 1);
		add_cpu(c, 1, 0);
		return 1;
	}
	uint32_t addr = rd32(fp + 4);
	const volatile uint8_t *t = (const volatile uint8_t *)phys(addr);
	printf(", table at %#x\n", addr);
	if (!addr || addr > 0xfffff000u || !sig(t, "PCMP")) {
		puts("mptable: no PCMP signature\n");
		return -1;
	}
	uint16_t length = rd16(t + 4), count = rd16(t + 34), ext_length = rd16(t + 40);
	if (length < 44 || sum8(t, length) != 0) {
		printf("mptable: bad base table (length %u)\n", length);
		return -1;
	}
	if (ext_length && (uint8_t)(sum8(t + length, ext_length) + t[42]) != 0) {
		printf("mptable: bad extended table checksum (length %u)\n", ext_length);
		return -1;
	}
	if (rd32(t + 36))
		lapic_base = rd32(t + 36);
	char oem[9], product[13];
	for (int i = 0; i < 8; i++)
		oem[i] = (char)t[8 + i];
	for (int i = 0; i < 12; i++)
		product[i] = (char)t[16 + i];
	oem[8] = product[12] = 0;
	printf("mptable: spec 1.%u, OEM \"%s\", product \"%s\", %u entries, local APIC at %#x\n", t[6], oem, product,
	       count, lapic_base);
	const volatile uint8_t *e = t + 44, *end = t + length;
	for (uint16_t i = 0; i < count; i++) {
		uint32_t size = e < end && e[0] == 0 ? 20 : 8;
		if (e + size > end || e[0] > 4) {
			printf("mptable: entry %u (type %u) runs past the table or has an unknown type\n", i,
			       e < end ? e[0] : 0xffu);
			return -1;
		}
		if (e[0] == 0 && (e[3] & 1)) /* processor, enabled */
			add_cpu(c, e[1], e[3] & 2);
		e += size;
	}
	return 1;
}

static int acpi_table_ok(const volatile uint8_t *t)
{
	uint32_t length = rd32(t + 4);
	return length >= 36 && length < (1u << 20) && sum8(t, length) == 0;
}

static const volatile uint8_t *find_rsdp(uint32_t start, uint32_t end)
{
	for (uint32_t a = start; a + 20 <= end; a += 16) {
		const volatile uint8_t *p = (const volatile uint8_t *)phys(a);
		if (sig(p, "RSD PTR ") && sum8(p, 20) == 0)
			return p;
	}
	return 0;
}

/* The processors of the ACPI MADT (a fallback for machines without an MP table). 1 when found, else 0. */
static int read_madt(const struct hvm_start_info *si, struct cpus *c)
{
	const volatile uint8_t *rsdp = 0;
	if (si && si->magic == HVM_START_MAGIC && si->rsdp_paddr && si->rsdp_paddr < 0xffffffffu)
		rsdp = (const volatile uint8_t *)phys((uintptr_t)si->rsdp_paddr);
	else
		rsdp = find_rsdp(0xe0000, 0x100000);
	if (!rsdp || !sig(rsdp, "RSD PTR "))
		return 0;
	uint32_t rsdt = rd32(rsdp + 16), xsdt_lo = 0, xsdt_hi = 0;
	if (rsdp[15] >= 2) {
		xsdt_lo = rd32(rsdp + 24);
		xsdt_hi = rd32(rsdp + 28);
	}
	const volatile uint8_t *sdt;
	uint32_t entry_size;
	if (xsdt_lo && !xsdt_hi) {
		sdt = (const volatile uint8_t *)phys(xsdt_lo);
		entry_size = 8;
	} else {
		sdt = (const volatile uint8_t *)phys(rsdt);
		entry_size = 4;
	}
	if (!sdt || !acpi_table_ok(sdt))
		return 0;
	uint32_t n = (rd32(sdt + 4) - 36) / entry_size;
	for (uint32_t i = 0; i < n; i++) {
		const volatile uint8_t *pe = sdt + 36 + i * entry_size;
		if (entry_size == 8 && rd32(pe + 4))
			continue;
		const volatile uint8_t *t = (const volatile uint8_t *)phys(rd32(pe));
		if (!t || !sig(t, "APIC") || !acpi_table_ok(t))
			continue;
		if (rd32(t + 36))
			lapic_base = rd32(t + 36);
		const volatile uint8_t *e = t + 44, *end = t + rd32(t + 4);
		while (e + 2 <= end && e[1] >= 2 && e + e[1] <= end) {
			if (e[0] == 0 && e[1] >= 8 && (rd32(e + 4) & 1)) /* processor local APIC, enabled */
				add_cpu(c, e[3], 0);
			e += e[1];
		}
		printf("madt: at %p, %u cpus, local APIC at %#x\n", (const void *)t, c->count, lapic_base);
		return 1;
	}
	return 0;
}

/* ---- time without interrupts: the CMOS clock's seconds (guest/ABI.md), with a loop bound as a backstop ---- */

static uint8_t rtc_seconds(void)
{
	outb(0x70, 0x00);
	return inb(0x71);
}

/* Spins until `cond` holds or about `seconds` seconds have passed (changes of the RTC's seconds register),
 * with 2^36 TSC cycles (14 - 69 s at 1 - 5 GHz) and 2^30 iterations as backstops should the clock not tick.
 * Returns whether `cond` held. */
static int wait_until(int (*cond)(void *), void *arg, uint32_t seconds)
{
	uint8_t last = rtc_seconds();
	uint32_t ticks = 0;
	uint64_t start = rdtsc();
	for (uint32_t i = 0; i < (1u << 30) && rdtsc() - start < (1ull << 36); i++) {
		if (cond(arg))
			return 1;
		if ((i & 0xffff) == 0xffff) {
			uint8_t now = rtc_seconds();
			if (now != last) {
				last = now;
				if (++ticks > seconds)
					return cond(arg);
			}
		}
		cpu_relax();
	}
	return cond(arg);
}

static int arrived_at_least(void *want) { return ap_arrived >= *(uint32_t *)want; }
static int never(void *unused) { (void)unused; return 0; }

/* A delay in TSC cycles: guest code may be emulated instruction by instruction (a nested KVM here runs about a
 * million simple instructions a second), so a delay counted in loop iterations would be far too long there. */
static void delay_cycles(uint32_t cycles)
{
	uint64_t start = rdtsc();
	while (rdtsc() - start < cycles)
		cpu_relax();
}

static void send_ipi(uint32_t dest_id, uint32_t icr_lo)
{
	for (uint32_t i = 0; i < 1000000 && (lapic_read(LAPIC_ICR_LO) & ICR_PENDING); i++)
		cpu_relax();
	lapic_write(LAPIC_ICR_HI, dest_id << 24);
	lapic_write(LAPIC_ICR_LO, icr_lo);
	for (uint32_t i = 0; i < 1000000 && (lapic_read(LAPIC_ICR_LO) & ICR_PENDING); i++)
		cpu_relax();
}

/* INIT, a delay, STARTUP, a delay, STARTUP (MP spec B.4), to the `n` APIC ids of `ids` other than `self`, or
 * to all but self with the shorthand when `ids` is NULL; one delay per step for all the APs. The TSC's rate is
 * not known: 10M and 1M cycles are 2 - 10 ms and 0.2 - 1 ms at 1 - 5 GHz (a VM needs no delay at all). */
static void start_aps(const uint8_t *ids, uint32_t n, uint32_t self)
{
	static const uint32_t steps[3] = { ICR_ASSERT | ICR_INIT, ICR_ASSERT | ICR_STARTUP | (TRAMPOLINE >> 12),
					   ICR_ASSERT | ICR_STARTUP | (TRAMPOLINE >> 12) };
	static const uint32_t delays[3] = { 10000000, 1000000, 1000000 };
	for (int s = 0; s < 3; s++) {
		if (!ids)
			send_ipi(0, ICR_ALL_BUT_SELF | steps[s]);
		for (uint32_t i = 0; ids && i < n; i++)
			if (ids[i] != self)
				send_ipi(ids[i], steps[s]);
		delay_cycles(delays[s]);
	}
}

int main(const struct hvm_start_info *si)
{
	struct cpus c = { .count = 0, .bsp_listed = -1 };
	int mp = read_mptable(&c);
	if (mp < 0)
		return 98;
	if (mp)
		printf("mptable: %u cpus\n", c.count);
	else
		puts("mptable: none\n");
	/* QEMU's microvm firmware writes an MP table that lists no processor: then ask ACPI. */
	int table = c.count > 0 || read_madt(si, &c);
	table = table && c.count > 0;
	uint32_t expected = cmdline_uint(si, "cpus", table ? c.count : 0);
	int broadcast = !table || cmdline_has(si, "broadcast");

	uint32_t self = lapic_read(LAPIC_ID) >> 24;
	printf("smp: bsp apic id %u, local APIC version %#x, expecting %u cpus, %s IPIs\n", self,
	       lapic_read(LAPIC_VERSION) & 0xff, expected, broadcast ? "broadcast" : "per-id");
	if (c.bsp_listed >= 0 && c.ids[c.bsp_listed] != self)
		printf("smp: warning: the table's BSP has apic id %u\n", c.ids[c.bsp_listed]);

	if (expected != 1) {
		memcpy((void *)(uintptr_t)TRAMPOLINE, ap_trampoline, (size_t)(ap_trampoline_end - ap_trampoline));
		lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | SVR_ENABLE | 0xff);
		start_aps(broadcast ? NULL : c.ids, c.count, self);
		if (expected) {
			uint32_t want = expected - 1;
			wait_until(arrived_at_least, &want, 20); /* returns as soon as they are all in; slack for a loaded host */
		} else {
			wait_until(never, 0, 1); /* nothing says how many: take what comes within about a second */
		}
	}

	uint32_t aps = ap_arrived, up = aps + 1, ids_ok = 1;
	printf("smp: %u cpus up (apic ids: %u", up, self);
	for (uint32_t i = 0; i < aps && i < MAX_CPUS; i++) {
		uint32_t id = ap_apic_ids[i], listed = !table;
		for (uint32_t j = 0; j < c.count; j++)
			listed |= c.ids[j] == id;
		if (!listed || id == self)
			ids_ok = 0;
		for (uint32_t j = 0; j < i; j++)
			if (ap_apic_ids[j] == id)
				ids_ok = 0;
		printf(" %u", id);
	}
	puts(")\n");
	if (expected && up < expected) {
		printf("smp: timed out: %u of %u cpus\n", up, expected);
		return (int)(100 + up);
	}
	if (!ids_ok) {
		puts("smp: APIC ids do not match the table (or repeat)\n");
		return 99;
	}
	return (int)up;
}
