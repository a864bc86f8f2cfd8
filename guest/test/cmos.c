/* The CMOS real-time clock through ports 0x70 (index) / 0x71 (data): the update-in-progress bit of status A
 * clears, status B has the clock running (SET clear), status D says the time is valid (VRT), and the date and
 * time are valid BCD (or binary when B.DM says so) and in range, in 24-hour or 12-hour form as B.24/12 says.
 * Prints the registers and the date, then "cmos: sane" and exits 0; otherwise the failed check's number:
 *   1 update-in-progress never clears, 2 status D invalid, 3 status B has SET, 4 - 9 a field out of range
 *   (seconds, minutes, hours, day, month, year), 10 the fields never read the same twice running. */
#include "rt.h"

#define REG_A 0x0a
#define REG_B 0x0b
#define REG_D 0x0d
#define A_UIP 0x80
#define B_SET 0x80
#define B_DM_BINARY 0x04
#define B_24H 0x02
#define D_VRT 0x80

static uint8_t cmos(uint8_t reg)
{
	outb(0x70, reg); /* bit 7 is the NMI mask; left clear */
	return inb(0x71);
}

/* UIP is on for at most about 2 ms a second. Give up after 2^28 TSC cycles (50 - 250 ms at 1 - 5 GHz) or a
 * million polls, whichever comes first: each poll is two port exits, which are slow when nested. */
static int wait_not_updating(void)
{
	uint64_t start = rdtsc();
	for (uint32_t i = 0; i < 1000000 && rdtsc() - start < (1ull << 28); i++) {
		if (!(cmos(REG_A) & A_UIP))
			return 1;
		cpu_relax();
	}
	return !(cmos(REG_A) & A_UIP);
}

static const uint8_t regs[6] = { 0x00, 0x02, 0x04, 0x07, 0x08, 0x09 };
static const char *const names[6] = { "seconds", "minutes", "hours", "day", "month", "year" };

static int read_fields(uint8_t raw[6])
{
	if (!wait_not_updating())
		return 0;
	for (int i = 0; i < 6; i++)
		raw[i] = cmos(regs[i]);
	return 1;
}

static int bcd_ok(uint8_t v)
{
	return (v & 0x0f) < 10 && (v >> 4) < 10;
}

static uint32_t decode(uint8_t v, int bcd)
{
	return bcd ? (uint32_t)(v >> 4) * 10 + (v & 0x0f) : v;
}

int main(const struct hvm_start_info *si)
{
	(void)si;
	uint8_t raw[6], again[6];
	int same = 0;
	/* Read until two reads running agree, so no update happened in between. */
	for (int tries = 0; tries < 10 && !same; tries++) {
		if (!read_fields(raw) || !read_fields(again)) {
			puts("cmos: update-in-progress (status A bit 7) never clears\n");
			return 1;
		}
		same = 1;
		for (int i = 0; i < 6; i++)
			same &= raw[i] == again[i];
	}
	uint8_t a = cmos(REG_A), b = cmos(REG_B), d = cmos(REG_D);
	int bcd = !(b & B_DM_BINARY), h24 = (b & B_24H) != 0;
	printf("cmos: A=%#04x B=%#04x D=%#04x (%s, %s)\n", a, b, d, bcd ? "bcd" : "binary", h24 ? "24-hour" : "12-hour");
	printf("cmos: raw seconds=%#04x minutes=%#04x hours=%#04x day=%#04x month=%#04x year=%#04x\n", raw[0], raw[1],
	       raw[2], raw[3], raw[4], raw[5]);
	if (!same) {
		puts("cmos: the date and time never read the same twice running\n");
		return 10;
	}
	if (!(d & D_VRT)) {
		puts("cmos: status D bit 7 (valid RAM and time) is clear\n");
		return 2;
	}
	if (b & B_SET) {
		puts("cmos: status B bit 7 (SET) is on: the clock is not running\n");
		return 3;
	}
	int pm = 0;
	if (!h24) {
		pm = (raw[2] & 0x80) != 0;
		raw[2] &= 0x7f;
	}
	static const uint32_t lo24[6] = { 0, 0, 0, 1, 1, 0 }, hi24[6] = { 59, 59, 23, 31, 12, 99 };
	uint32_t v[6];
	for (int i = 0; i < 6; i++) {
		v[i] = decode(raw[i], bcd);
		uint32_t lo = lo24[i], hi = hi24[i];
		if (i == 2 && !h24) {
			lo = 1;
			hi = 12;
		}
		if ((bcd && !bcd_ok(raw[i])) || v[i] < lo || v[i] > hi) {
			printf("cmos: %s out of range (raw %#04x)\n", names[i], raw[i]);
			return 4 + i;
		}
	}
	if (!h24) /* 12-hour: 12 AM is 00, 12 PM is 12 */
		v[2] = v[2] % 12 + (pm ? 12 : 0);
	printf("cmos: 20%02u-%02u-%02u %02u:%02u:%02u\n", v[5], v[4], v[3], v[2], v[1], v[0]);
	puts("cmos: sane\n");
	return 0;
}
