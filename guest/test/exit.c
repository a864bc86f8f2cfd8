/* The exit-status port: exits with the status named on the command line, "status=N" (or a bare number N;
 * decimal or 0x-hex), default 3. "width=1|2|4" picks the size of the port write (outb/outw/outl, default 4).
 * The value is written as it is: a status above 255 tests how the hypervisor clamps it. */
#include "rt.h"

int main(const struct hvm_start_info *si)
{
	uint32_t status = 3, width = cmdline_uint(si, "width", 4);
	const char *p = cmdline(si), *end;
	for (;;) { /* a bare number as a whole word */
		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (!*p)
			break;
		uint32_t v;
		if (parse_uint(p, &v, &end) && (*end == '\0' || *end == ' ' || *end == '\t' || *end == '\n')) {
			status = v;
			break;
		}
		while (*p && *p != ' ' && *p != '\t' && *p != '\n')
			p++;
	}
	status = cmdline_uint(si, "status", status);
	printf("exit: status %u (%u-byte write to %#x)\n", status, width, AZOTE_EXIT_PORT);
	if (width == 1)
		outb(AZOTE_EXIT_PORT, (uint8_t)status);
	else if (width == 2)
		outw(AZOTE_EXIT_PORT, (uint16_t)status);
	else
		outl(AZOTE_EXIT_PORT, status);
	halt_forever();
}
