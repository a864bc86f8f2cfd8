/* Several vCPUs: counts the processors in the MP table (MP spec 1.4), starts the others with INIT and two
 * STARTUP IPIs (trampoline at 0x80000), and waits for each to check in. Exits with the number of CPUs running. */
#include "rt.h"

#define LAPIC 0xfee00000u
#define LAPIC_ID 0x20
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ALL_EXCLUDING_SELF (3u << 18)
#define TRAMPOLINE 0x80000u
#define MAX_CPUS 32

extern const uint8_t ap_trampoline[], ap_trampoline_end[];
extern volatile uint32_t ap_next_index;
extern uint32_t ap_gdt_desc_offset;
extern uint8_t gdt_desc[];

static volatile uint32_t checked_in;
static volatile uint32_t apic_ids[MAX_CPUS];

static uint32_t lapic_read(uint32_t reg) { return mmio_read32(LAPIC + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC + reg, v); }

void ap_main(uint32_t index)
{
	if (index < MAX_CPUS)
		apic_ids[index] = lapic_read(LAPIC_ID) >> 24;
	__atomic_add_fetch(&checked_in, 1, __ATOMIC_SEQ_CST);
}

static uint8_t sum(const uint8_t *p, uint32_t n)
{
	uint8_t s = 0;
	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

static const uint8_t *find_mp(uint32_t start, uint32_t end)
{
	for (uint32_t a = start; a + 16 <= end; a += 16) {
		const uint8_t *p = (const uint8_t *)(uintptr_t)a;
		if (p[0] == '_' && p[1] == 'M' && p[2] == 'P' && p[3] == '_' && sum(p, 16u * p[8]) == 0)
			return p;
	}
	return 0;
}

/* Processors listed (and enabled) in the MP table, or 0 when there is no valid table. */
static uint32_t mptable_cpus(void)
{
	const uint8_t *fp = find_mp(0x9fc00, 0xa0000);
	if (!fp)
		fp = find_mp(0xf0000, 0x100000);
	if (!fp)
		return 0;
	const uint8_t *t = (const uint8_t *)(uintptr_t)*(const uint32_t *)(fp + 4);
	if (!t || t[0] != 'P' || t[1] != 'C' || t[2] != 'M' || t[3] != 'P')
		return 0;
	uint16_t length = *(const uint16_t *)(t + 4), count = *(const uint16_t *)(t + 34);
	if (sum(t, length) != 0)
		return 0;
	const uint8_t *e = t + 44;
	uint32_t cpus = 0;
	for (uint16_t i = 0; i < count && e < t + length; i++) {
		if (e[0] == 0) {
			if (e[3] & 1)
				cpus++;
			e += 20;
		} else {
			e += 8;
		}
	}
	return cpus;
}

static void spin(uint32_t n)
{
	for (volatile uint32_t i = 0; i < n; i++)
		;
}

int main(const struct hvm_start_info *si)
{
	(void)si;
	uint32_t cpus = mptable_cpus();
	puts("mptable: ");
	put_dec(cpus);
	puts(" cpus\n");
	if (cpus == 0)
		return 100;

	uint8_t *tramp = (uint8_t *)(uintptr_t)TRAMPOLINE;
	for (const uint8_t *p = ap_trampoline; p < ap_trampoline_end; p++)
		*tramp++ = *p;
	*(uint32_t *)(uintptr_t)(TRAMPOLINE + ap_gdt_desc_offset + 2) = *(uint32_t *)(gdt_desc + 2);

	lapic_write(LAPIC_SVR, 0x1ff);
	if (cpus > 1) {
		lapic_write(LAPIC_ICR_HI, 0);
		lapic_write(LAPIC_ICR_LO, ALL_EXCLUDING_SELF | 0x4500); /* INIT, assert */
		spin(1000000);
		for (int i = 0; i < 2; i++) {
			lapic_write(LAPIC_ICR_LO, ALL_EXCLUDING_SELF | 0x4600 | (TRAMPOLINE >> 12)); /* STARTUP */
			spin(100000);
		}
	}
	for (uint32_t i = 0; i < 400000000u && checked_in < cpus - 1; i++)
		__asm__ volatile("pause");
	uint32_t up = checked_in + 1;
	puts("smp: ");
	put_dec(up);
	puts(" cpus up (apic ids:");
	for (uint32_t i = 0; i + 1 < up && i < MAX_CPUS; i++) {
		puts(" ");
		put_dec(apic_ids[i]);
	}
	puts(")\n");
	return up == cpus ? (int)up : (int)(100 + up);
}
