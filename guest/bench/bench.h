/*
 * What the guest benchmark programs share: a monotonic clock, dying with the failed call's errno, and the two
 * halves of a timed stream (send a number of MiB and wait for the peer to close; read until end of file).
 * Each program defines PROG (its name, for messages) before including this.
 */
#ifndef AZOTE_BENCH_H
#define AZOTE_BENCH_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static inline double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static inline void die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", PROG, what, strerror(errno));
	exit(1);
}

static inline void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("write");
		p += w;
		n -= (size_t)w;
	}
}

/* Sends `mib` MiB on a connected stream, half-closes it and waits for the peer to close; the seconds it took. */
static inline double send_mib(int s, long mib)
{
	static char buf[CHUNK];
	memset(buf, 0x5a, sizeof buf);
	double start = now();
	for (long long left = (long long)mib << 20; left > 0; left -= CHUNK)
		write_all(s, buf, left < CHUNK ? (size_t)left : CHUNK);
	shutdown(s, SHUT_WR);
	while (read(s, buf, sizeof buf) > 0)
		;
	return now() - start;
}

/* Reads a stream until end of file; the bytes read, and when the first one came (*first, 0 if none did). */
static inline long long drain(int c, double *first)
{
	static char buf[CHUNK];
	long long total = 0;
	*first = 0;
	for (;;) {
		ssize_t n = read(c, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read");
		if (n == 0)
			return total;
		if (total == 0)
			*first = now();
		total += n;
	}
}

#endif
