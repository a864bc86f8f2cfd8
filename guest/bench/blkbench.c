/*
 * blkbench: block device figures from inside a guest, the same program for every VMM the benchmark compares.
 * Usage: blkbench DEVICE MIB. With O_DIRECT (no guest page cache) on the first MIB MiB of DEVICE:
 *   sequential read and write in 1 MiB requests (the write ends with fdatasync, so a flush is counted),
 *   random 4 KiB reads and writes (a fixed xorshift sequence) for about RANDOM_SECONDS each.
 * And, as the yardstick of the guest kernel's own speed on this VMM, the cost of a trivial system call (getppid).
 * Prints one line: "blkbench seq-read-mibs=R seq-write-mibs=W rand-read-iops=RR rand-write-iops=RW syscall-us=S".
 * It overwrites that part of the disk: give it a scratch disk.
 */
#define _GNU_SOURCE
#define PROG "blkbench"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "bench.h"

#define SEQ_BLOCK (1 << 20)
#define RAND_BLOCK 4096
#define RANDOM_SECONDS 3.0

static void io(int write, int fd, void *buf, size_t len, off_t off)
{
	ssize_t n = write ? pwrite(fd, buf, len, off) : pread(fd, buf, len, off);
	if (n != (ssize_t)len)
		die(write ? "pwrite" : "pread");
}

static double sequential(int write, int fd, char *buf, size_t total)
{
	double start = now();
	for (size_t off = 0; off < total; off += SEQ_BLOCK)
		io(write, fd, buf, SEQ_BLOCK, (off_t)off);
	if (write && fdatasync(fd) < 0)
		die("fdatasync");
	return (double)total / (1 << 20) / (now() - start);
}

static double random_io(int write, int fd, char *buf, size_t total)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	size_t blocks = total / RAND_BLOCK;
	long ops = 0;
	double start = now(), elapsed;
	do {
		for (int i = 0; i < 16; i++, ops++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			off_t off = (off_t)(x % blocks) * RAND_BLOCK;
			io(write, fd, buf, RAND_BLOCK, off);
		}
		elapsed = now() - start;
	} while (elapsed < RANDOM_SECONDS);
	if (write && fdatasync(fd) < 0)
		die("fdatasync");
	return (double)ops / (now() - start);
}

/* Microseconds per getppid, a system call that does almost nothing (raw syscall: no libc caching). */
static double syscall_cost(void)
{
	long n = 0;
	double start = now(), elapsed;
	do {
		for (int i = 0; i < 64; i++, n++)
			syscall(SYS_getppid);
		elapsed = now() - start;
	} while (elapsed < 1.0);
	return elapsed * 1e6 / (double)n;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: blkbench DEVICE MIB\n");
		return 2;
	}
	size_t total = (size_t)strtoul(argv[2], NULL, 10) << 20;
	int fd = open(argv[1], O_RDWR | O_DIRECT);
	if (fd < 0)
		die(argv[1]);
	char *buf;
	if (posix_memalign((void **)&buf, 4096, SEQ_BLOCK) != 0)
		die("posix_memalign");
	for (size_t i = 0; i < SEQ_BLOCK; i++)
		buf[i] = (char)(i * 31 + 7);
	double seq_read = sequential(0, fd, buf, total);
	double seq_write = sequential(1, fd, buf, total);
	double rand_read = random_io(0, fd, buf, total);
	double rand_write = random_io(1, fd, buf, total);
	double syscall_us = syscall_cost();
	printf("blkbench seq-read-mibs=%.1f seq-write-mibs=%.1f rand-read-iops=%.0f rand-write-iops=%.0f syscall-us=%.2f\n",
	       seq_read, seq_write, rand_read, rand_write, syscall_us);
	return 0;
}
