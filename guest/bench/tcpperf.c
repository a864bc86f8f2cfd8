/*
 * tcpperf: TCP stream throughput between two guests, for the network benchmark.
 *   tcpperf serve PORT          take one connection on PORT, read until end of file, close;
 *                               prints "tcpperf received-mibs=R bytes=N" (first byte to end of file)
 *   tcpperf send IP PORT MIB    connect to IP:PORT (retrying for up to 300 s while the peer boots), send MIB MiB,
 *                               half-close and wait for the peer to close; prints "tcpperf sent-mibs=R"
 */
#define _GNU_SOURCE
#define PROG "tcpperf"
#include <arpa/inet.h>
#include <netinet/in.h>
#include "bench.h"

static int serve(unsigned port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		die("socket");
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY) };
	if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 1) < 0)
		die("listen");
	int c = accept(s, NULL, NULL);
	if (c < 0)
		die("accept");
	double start;
	long long total = drain(c, &start);
	double secs = now() - start;
	close(c);
	printf("tcpperf received-mibs=%.1f bytes=%lld\n", total / 1048576.0 / (secs > 0 ? secs : 1e-9), total);
	return 0;
}

static int send_to(const char *ip, unsigned port, long mib)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
		fprintf(stderr, "tcpperf: %s is not an IPv4 address\n", ip);
		return 2;
	}
	int s = -1;
	for (double deadline = now() + 300; ; ) {
		s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0)
			die("socket");
		if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
			break;
		close(s);
		if (now() > deadline)
			die("connect");
		usleep(200000);
	}
	double secs = send_mib(s, mib);
	close(s);
	printf("tcpperf sent-mibs=%.1f\n", mib / (secs > 0 ? secs : 1e-9));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "serve") == 0)
		return serve((unsigned)atoi(argv[2]));
	if (argc == 5 && strcmp(argv[1], "send") == 0)
		return send_to(argv[2], (unsigned)atoi(argv[3]), atol(argv[4]));
	fprintf(stderr, "usage: tcpperf serve PORT | tcpperf send IP PORT MIB\n");
	return 2;
}
