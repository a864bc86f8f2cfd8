/* Reads the CMOS real-time clock and checks that it looks like one: not stuck updating, BCD or binary as
 * status B says, fields in range, status D valid. Exits 0 when sane, else the number of the failed check. */
#include "rt.h"

static uint8_t cmos(uint8_t reg)
{
	outb(0x70, reg);
	return inb(0x71);
}

static uint32_t value(uint8_t raw, int bcd)
{
	return bcd ? (uint32_t)((raw >> 4) * 10 + (raw & 0xf)) : raw;
}

static int bcd_ok(uint8_t raw)
{
	return (raw & 0xf) < 10 && (raw >> 4) < 10;
}

int main(const struct hvm_start_info *si)
{
	(void)si;
	int spins = 0;
	while ((cmos(0x0a) & 0x80) && spins < 1000000)
		spins++;
	if (spins == 1000000) {
		puts("cmos: update-in-progress never clears\n");
		return 1;
	}
	uint8_t b = cmos(0x0b), d = cmos(0x0d);
	int bcd = !(b & 0x04);
	uint8_t raw[6] = { cmos(0x00), cmos(0x02), cmos(0x04), cmos(0x07), cmos(0x08), cmos(0x09) };
	static const char *const names[6] = { "sec", "min", "hour", "day", "month", "year" };
	static const uint32_t lo[6] = { 0, 0, 0, 1, 1, 0 }, hi[6] = { 59, 59, 23, 31, 12, 99 };
	puts("cmos:");
	for (int i = 0; i < 6; i++) {
		puts(" ");
		puts(names[i]);
		puts("=");
		put_dec(value(raw[i], bcd));
	}
	puts(bcd ? " (bcd)\n" : " (binary)\n");
	if (!(d & 0x80)) {
		puts("cmos: status D says the clock is not valid\n");
		return 2;
	}
	if (!(b & 0x02)) {
		puts("cmos: not in 24-hour mode\n");
		return 3;
	}
	for (int i = 0; i < 6; i++) {
		uint32_t v = value(raw[i], bcd);
		if ((bcd && !bcd_ok(raw[i])) || v < lo[i] || v > hi[i]) {
			puts("cmos: field out of range: ");
			puts(names[i]);
			puts("\n");
			return 4 + i;
		}
	}
	puts("cmos: sane\n");
	return 0;
}
