/* A tiny freestanding runtime for the test guests (guest/ABI.md): 32-bit protected mode, paging off, no libc.
 * Only gcc's freestanding headers are used, so no 32-bit libc is needed to build. */
#ifndef AZOTE_TEST_RT_H
#define AZOTE_TEST_RT_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* The exit-status port of guest/ABI.md. QEMU has fw_cfg on 0x510/0x511, so the QEMU build of these guests
 * (`make qemu`) moves it with -DAZOTE_EXIT_PORT=0xf4 for `-device isa-debug-exit,iobase=0xf4,iosize=4`. */
#ifndef AZOTE_EXIT_PORT
#define AZOTE_EXIT_PORT 0x510
#endif
#define AZOTE_MARKER_PORT 0x511
#define COM1 0x3f8

#define HVM_START_MAGIC 0x336ec578u
#define E820_RAM 1

/* Xen's public arch-x86/hvm/start_info.h, version 1: 56 bytes. */
struct hvm_start_info {
	uint32_t magic;          /* 0x336ec578 */
	uint32_t version;        /* 1: the memory map fields are valid */
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;  /* NUL-terminated, or 0 */
	uint64_t rsdp_paddr;     /* ACPI RSDP, or 0 */
	uint64_t memmap_paddr;   /* version >= 1 */
	uint32_t memmap_entries; /* version >= 1 */
	uint32_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr, size;
	uint32_t type, reserved; /* type: e820 (1 = RAM, 2 = reserved, ...) */
};

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info is 56 bytes");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry is 24 bytes");

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* Guest-physical accesses (paging is off, so a pointer is a physical address). phys() hides the constant from
 * gcc, which otherwise warns about dereferencing low addresses such as the BDA's. */
static inline void *phys(uintptr_t a) { __asm__("" : "+r"(a)); return (void *)a; }
static inline uint8_t mmio_read8(uintptr_t a) { return *(volatile uint8_t *)phys(a); }
static inline uint16_t mmio_read16(uintptr_t a) { return *(volatile uint16_t *)phys(a); }
static inline uint32_t mmio_read32(uintptr_t a) { return *(volatile uint32_t *)phys(a); }
static inline void mmio_write8(uintptr_t a, uint8_t v) { *(volatile uint8_t *)phys(a) = v; }
static inline void mmio_write16(uintptr_t a, uint16_t v) { *(volatile uint16_t *)phys(a) = v; }
static inline void mmio_write32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)phys(a) = v; }

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline uint64_t rdtsc(void) { uint32_t lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((uint64_t)hi << 32) | lo; }

/* COM1 output, polling LSR.THRE (bit 5) before each byte; bytes are sent as they are (no "\r" added). */
void putc(char c);
void puts(const char *s);
/* %s %c %d %i %u %x %X %p %%, flags '0', '-' and '#' (0x before hex), a width, and the length modifiers l / ll (64-bit; decimal too). */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);

void azote_marker(uint8_t v);                        /* outb 0x511 */
void azote_exit(uint32_t status) __attribute__((noreturn)); /* outl 0x510, then cli; hlt forever */
void halt_forever(void) __attribute__((noreturn));   /* cli; hlt forever */

void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
size_t strlen(const char *s);

/* The command line from start_info ("" when there is none or start_info is not valid). */
const char *cmdline(const struct hvm_start_info *si);
/* The number after "key=" in a word of the command line (decimal, or hex with 0x), or `fallback`. */
uint32_t cmdline_uint(const struct hvm_start_info *si, const char *key, uint32_t fallback);
/* Whether `word` is a whole word of the command line. */
int cmdline_has(const struct hvm_start_info *si, const char *word);
/* Parses an unsigned number (decimal, or hex with 0x); *end is set past it. Returns 0 when there is none. */
int parse_uint(const char *p, uint32_t *value, const char **end);

#endif
