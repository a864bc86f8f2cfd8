#include "rt.h"

#define COM1 0x3f8
#define LSR_THRE 0x20

void putc(char c)
{
	while (!(inb(COM1 + 5) & LSR_THRE))
		;
	outb(COM1, (uint8_t)c);
}

void puts(const char *s)
{
	while (*s)
		putc(*s++);
}

void put_dec(uint32_t v)
{
	char buf[11];
	int i = 0;
	do {
		buf[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		putc(buf[--i]);
}

void put_hex(uint32_t v)
{
	puts("0x");
	for (int shift = 28; shift >= 0; shift -= 4)
		putc("0123456789abcdef"[(v >> shift) & 0xf]);
}

void azote_marker(uint8_t v)
{
	outb(BOOT_MARKER_PORT, v);
}

void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

void azote_exit(uint32_t status)
{
	outl(EXIT_STATUS_PORT, status);
	halt_forever();
}

const char *cmdline(const struct hvm_start_info *si)
{
	if (!si || si->magic != 0x336ec578 || !si->cmdline_paddr)
		return "";
	return (const char *)(uintptr_t)si->cmdline_paddr;
}

static int word_at(const char *p, const char *w, const char **rest)
{
	while (*w && *p == *w) {
		p++;
		w++;
	}
	if (*w)
		return 0;
	*rest = p;
	return 1;
}

uint32_t cmdline_uint(const struct hvm_start_info *si, const char *key, uint32_t fallback)
{
	const char *p = cmdline(si), *rest;
	for (; *p; p++) {
		if ((p == cmdline(si) || p[-1] == ' ') && word_at(p, key, &rest) && *rest == '=') {
			uint32_t v = 0;
			for (rest++; *rest >= '0' && *rest <= '9'; rest++)
				v = v * 10 + (uint32_t)(*rest - '0');
			return v;
		}
	}
	return fallback;
}

int cmdline_has(const struct hvm_start_info *si, const char *word)
{
	const char *p = cmdline(si), *rest;
	for (; *p; p++)
		if ((p == cmdline(si) || p[-1] == ' ') && word_at(p, word, &rest) && (*rest == ' ' || *rest == '\0'))
			return 1;
	return 0;
}
