/*
 * vsockperf: a vsock peer inside a guest, for the end-to-end tests and the vsock benchmark.
 *   vsockperf serve PORT N      listen on PORT; for each of N connections, echo what arrives until end of file
 *   vsockperf echo PORT TEXT    connect to the host (CID 2) on PORT, send TEXT, half-close, print what comes back
 *   vsockperf send PORT MIB     connect to the host on PORT, send MIB MiB, half-close, wait for the host to close;
 *                               prints "vsockperf guest-to-host-mibs=R"
 *   vsockperf recv PORT         listen on PORT, take one connection, read until end of file;
 *                               prints "vsockperf host-to-guest-mibs=R bytes=N"
 */
#define _GNU_SOURCE
#define PROG "vsockperf"
#include <linux/vm_sockets.h>
#include "bench.h"

static int listen_on(unsigned port)
{
	int s = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (s < 0)
		die("socket");
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	if (listen(s, 8) < 0)
		die("listen");
	return s;
}

static int connect_host(unsigned port)
{
	int s = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (s < 0)
		die("socket");
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = port };
	if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	return s;
}

int main(int argc, char **argv)
{
	static char buf[CHUNK];
	if (argc < 3) {
		fprintf(stderr, "usage: vsockperf serve PORT N | echo PORT TEXT | send PORT MIB | recv PORT\n");
		return 2;
	}
	unsigned port = (unsigned)strtoul(argv[2], NULL, 10);
	if (strcmp(argv[1], "serve") == 0 && argc == 4) {
		int s = listen_on(port);
		for (long n = strtol(argv[3], NULL, 10); n > 0; n--) {
			int c = accept(s, NULL, NULL);
			if (c < 0)
				die("accept");
			ssize_t r;
			while ((r = read(c, buf, sizeof(buf))) > 0)
				write_all(c, buf, (size_t)r);
			close(c);
		}
		return 0;
	}
	if (strcmp(argv[1], "echo") == 0 && argc == 4) {
		int c = connect_host(port);
		write_all(c, argv[3], strlen(argv[3]));
		shutdown(c, SHUT_WR);
		ssize_t r;
		while ((r = read(c, buf, sizeof(buf))) > 0)
			write_all(1, buf, (size_t)r);
		write_all(1, "\n", 1);
		return r < 0 ? 1 : 0;
	}
	if (strcmp(argv[1], "send") == 0 && argc == 4) {
		long mib = strtol(argv[3], NULL, 10);
		int c = connect_host(port);
		printf("vsockperf guest-to-host-mibs=%.1f\n", (double)mib / send_mib(c, mib));
		return 0;
	}
	if (strcmp(argv[1], "recv") == 0) {
		int s = listen_on(port);
		int c = accept(s, NULL, NULL);
		if (c < 0)
			die("accept");
		double start = now(), first;
		long long total = drain(c, &first);
		printf("vsockperf host-to-guest-mibs=%.1f bytes=%lld\n", (double)total / (1 << 20) / (now() - start), total);
		return 0;
	}
	fprintf(stderr, "vsockperf: unknown mode %s\n", argv[1]);
	return 2;
}
