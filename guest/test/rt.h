/* A tiny freestanding runtime for the test guests: port I/O, COM1 output, the Azote ports, PVH start info. */
#ifndef AZOTE_TEST_RT_H
#define AZOTE_TEST_RT_H
#include <stdint.h>
#include <stddef.h>

#define EXIT_STATUS_PORT 0x510
#define BOOT_MARKER_PORT 0x511

struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t mmio_read32(uintptr_t a) { return *(volatile uint32_t *)a; }
static inline uint8_t mmio_read8(uintptr_t a) { return *(volatile uint8_t *)a; }
static inline void mmio_write32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }

void putc(char c);
void puts(const char *s);
void put_dec(uint32_t v);
void put_hex(uint32_t v);
void azote_marker(uint8_t v);
void azote_exit(uint32_t status) __attribute__((noreturn));
void halt_forever(void) __attribute__((noreturn));
const char *cmdline(const struct hvm_start_info *si);
/* The value of "key=N" on the command line, or `fallback`. */
uint32_t cmdline_uint(const struct hvm_start_info *si, const char *key, uint32_t fallback);
int cmdline_has(const struct hvm_start_info *si, const char *word);

#endif
