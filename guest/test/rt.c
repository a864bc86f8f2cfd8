/* The test guests' runtime: COM1 output, a small printf, the Azote ports, the PVH command line. */
#include "rt.h"

#define LSR 5
#define LSR_THRE 0x20
#define THRE_POLLS 1000000 /* a UART that never says "empty" must not hang the guest: send anyway */

void putc(char c)
{
	for (uint32_t i = 0; i < THRE_POLLS && !(inb(COM1 + LSR) & LSR_THRE); i++)
		cpu_relax();
	outb(COM1, (uint8_t)c);
}

void puts(const char *s)
{
	while (*s)
		putc(*s++);
}

/* 64-bit unsigned division by a small divisor without libgcc: two 64/32 -> 32 divisions with divl. */
static uint32_t divmod64(uint64_t *n, uint32_t d)
{
	uint32_t hi = (uint32_t)(*n >> 32), lo = (uint32_t)*n, qhi = hi / d, r = hi % d, qlo;
	__asm__("divl %4" : "=a"(qlo), "=d"(r) : "a"(lo), "d"(r), "rm"(d));
	*n = ((uint64_t)qhi << 32) | qlo;
	return r;
}

/* Pads `s` to `width`; with '0' padding, the first `prefix` characters (a sign, "0x") go before the zeros. */
static void put_padded(const char *s, int len, int width, char pad, int left, int prefix, int *count)
{
	if (!left && pad == '0') {
		for (int i = 0; i < prefix; i++, (*count)++)
			putc(s[i]);
		s += prefix;
		len -= prefix;
		width -= prefix;
	}
	if (!left)
		for (int i = len; i < width; i++, (*count)++)
			putc(pad);
	for (int i = 0; i < len; i++, (*count)++)
		putc(s[i]);
	if (left)
		for (int i = len; i < width; i++, (*count)++)
			putc(' ');
}

int vprintf(const char *fmt, va_list ap)
{
	int count = 0;
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			putc(*fmt);
			count++;
			continue;
		}
		char pad = ' ';
		int left = 0, alt = 0, width = 0, longs = 0;
		for (fmt++; *fmt == '0' || *fmt == '-' || *fmt == '#'; fmt++) {
			if (*fmt == '0')
				pad = '0';
			else if (*fmt == '-')
				left = 1;
			else
				alt = 1;
		}
		for (; *fmt >= '0' && *fmt <= '9'; fmt++)
			width = width * 10 + (*fmt - '0');
		for (; *fmt == 'l'; fmt++)
			longs++;
		char buf[24], *end = buf + sizeof buf, *p = end;
		uint64_t v = 0;
		int neg = 0;
		uint32_t base = 10;
		const char *digits = "0123456789abcdef";
		switch (*fmt) {
		case '\0':
			return count;
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			put_padded(s, (int)strlen(s), width, ' ', left, 0, &count);
			continue;
		}
		case 'c':
			buf[0] = (char)va_arg(ap, int);
			put_padded(buf, 1, width, ' ', left, 0, &count);
			continue;
		case 'd':
		case 'i': {
			int64_t sv = longs >= 2 ? va_arg(ap, int64_t) : (int64_t)va_arg(ap, int32_t);
			neg = sv < 0;
			v = neg ? (uint64_t)0 - (uint64_t)sv : (uint64_t)sv;
			break;
		}
		case 'p':
			base = 16;
			v = (uintptr_t)va_arg(ap, void *);
			width = 8;
			pad = '0';
			break;
		case 'X':
			digits = "0123456789ABCDEF";
			/* fall through */
		case 'x':
			base = 16;
			/* fall through */
		case 'u':
			v = longs >= 2 ? va_arg(ap, uint64_t) : (uint64_t)va_arg(ap, uint32_t);
			break;
		default: /* '%' and anything unknown: print it */
			putc(*fmt);
			count++;
			continue;
		}
		do
			*--p = digits[divmod64(&v, base)];
		while (v);
		int prefix = 0;
		if (neg) {
			*--p = '-';
			prefix = 1;
		}
		if (alt && base == 16) {
			*--p = 'x';
			*--p = '0';
			prefix = 2;
		}
		put_padded(p, (int)(end - p), width, pad, left, prefix, &count);
	}
	return count;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}

void azote_marker(uint8_t v)
{
	outb(AZOTE_MARKER_PORT, v);
}

void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt" ::: "memory");
}

void azote_exit(uint32_t status)
{
	outl(AZOTE_EXIT_PORT, status);
	halt_forever();
}

void *memcpy(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	uint8_t *d = dst;
	while (n--)
		*d++ = (uint8_t)c;
	return dst;
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

const char *cmdline(const struct hvm_start_info *si)
{
	if (!si || si->magic != HVM_START_MAGIC || !si->cmdline_paddr || si->cmdline_paddr >= 0xffffffffu)
		return "";
	return (const char *)(uintptr_t)si->cmdline_paddr;
}

int parse_uint(const char *p, uint32_t *value, const char **end)
{
	uint32_t v = 0, base = 10;
	const char *start;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	for (start = p;; p++) {
		uint32_t d;
		if (*p >= '0' && *p <= '9')
			d = (uint32_t)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (uint32_t)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (uint32_t)(*p - 'A' + 10);
		else
			break;
		v = v * base + d;
	}
	if (end)
		*end = p;
	if (p == start)
		return 0;
	*value = v;
	return 1;
}

/* The start of each whitespace-separated word, one after the other. */
static const char *next_word(const char *p)
{
	while (*p && *p != ' ' && *p != '\t' && *p != '\n')
		p++;
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	return p;
}

static int word_end(char c)
{
	return c == '\0' || c == ' ' || c == '\t' || c == '\n';
}

/* If `word` starts with `prefix`, the rest of the word; else NULL. */
static const char *after_prefix(const char *word, const char *prefix)
{
	while (*prefix && *word == *prefix) {
		word++;
		prefix++;
	}
	return *prefix ? NULL : word;
}

uint32_t cmdline_uint(const struct hvm_start_info *si, const char *key, uint32_t fallback)
{
	const char *p = cmdline(si);
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	for (; *p; p = next_word(p)) {
		const char *rest = after_prefix(p, key), *end;
		uint32_t v;
		if (rest && *rest == '=' && parse_uint(rest + 1, &v, &end) && word_end(*end))
			return v;
	}
	return fallback;
}

int cmdline_has(const struct hvm_start_info *si, const char *word)
{
	const char *p = cmdline(si);
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	for (; *p; p = next_word(p)) {
		const char *rest = after_prefix(p, word);
		if (rest && word_end(*rest))
			return 1;
	}
	return 0;
}
