/*
 * vtool: the measurements and transfers of paddock's virtio lab tests,
 * run in the L2 guest and in L1 (busybox has no equivalents with the
 * timing and retry behaviour the tests need). Built static with
 * `gcc -static -O2`. Every result is one line on standard output.
 *
 *   vtool seqread DEV MIB        O_DIRECT 1 MiB reads from offset 0: "MB/s"
 *   vtool seqwrite DEV MIB       O_DIRECT 1 MiB writes, then fdatasync: "MB/s"
 *   vtool randread DEV SECONDS   O_DIRECT 4 KiB reads at random 4 KiB-aligned
 *                                offsets for SECONDS: "IOPS"
 *   vtool get PORT FILE          accept one connection, store it in FILE
 *   vtool serve PORT FILE        accept one connection, send FILE, close
 *   vtool put HOST PORT FILE     connect (retrying), send FILE
 *   vtool fetch HOST PORT FILE   connect (retrying), store what arrives
 *   vtool sink PORT N            accept N connections, discard their data
 *   vtool source PORT MIB N      accept N connections, send MIB MiB each
 *   vtool send HOST PORT MIB     connect, send MIB MiB: "MB/s" (receiver's EOF)
 *   vtool recv HOST PORT         connect, read to EOF: "MB/s"
 *
 * Exit status 0 on success; errors go to standard error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MiB (1024 * 1024)
#define CHUNK (256 * 1024)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "vtool: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *aligned(size_t n)
{
	void *p;
	if (posix_memalign(&p, 4096, n) != 0)
		die("allocate");
	memset(p, 0x5a, n);
	return p;
}

static int seq(const char *dev, long mib, int write)
{
	int fd = open(dev, (write ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0)
		die(dev);
	char *buf = aligned(MiB);
	double t0 = now();
	for (long i = 0; i < mib; i++) {
		ssize_t n = write ? pwrite(fd, buf, MiB, (off_t)i * MiB) : pread(fd, buf, MiB, (off_t)i * MiB);
		if (n != MiB)
			die(write ? "write" : "read");
	}
	if (write && fdatasync(fd) != 0)
		die("fdatasync");
	double t = now() - t0;
	printf("%.1f\n", mib / t * MiB / 1e6);
	return 0;
}

static int randread(const char *dev, double secs)
{
	int fd = open(dev, O_RDONLY | O_DIRECT);
	if (fd < 0)
		die(dev);
	off_t size = lseek(fd, 0, SEEK_END);
	if (size < 4096)
		die("device size");
	uint64_t blocks = size / 4096, x = 88172645463325252ULL, ops = 0;
	char *buf = aligned(4096);
	double t0 = now(), t;
	do {
		for (int i = 0; i < 64; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			if (pread(fd, buf, 4096, (off_t)(x % blocks) * 4096) != 4096)
				die("read");
			ops++;
		}
		t = now() - t0;
	} while (t < secs);
	printf("%.0f\n", ops / t);
	return 0;
}

static int listen_on(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (s < 0)
		die("socket");
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (bind(s, (struct sockaddr *)&a, sizeof a) != 0)
		die("bind");
	if (listen(s, 8) != 0)
		die("listen");
	return s;
}

/* dial connects, retrying for up to a minute while the peer comes up. */
static int dial(const char *host, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "vtool: %s is not an IPv4 address\n", host);
		exit(1);
	}
	double t0 = now();
	for (;;) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0)
			die("socket");
		if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
			return s;
		close(s);
		if (now() - t0 > 60)
			die("connect");
		usleep(100 * 1000);
	}
}

/* copy moves everything from in to out; returns the byte count. */
static long long copy(int in, int out)
{
	char *buf = aligned(CHUNK);
	long long total = 0;
	for (;;) {
		ssize_t n = read(in, buf, CHUNK);
		if (n == 0)
			return total;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("read");
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, n - off);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				die("write");
			}
			off += w;
		}
		total += n;
	}
}

static long long drain(int in)
{
	char *buf = aligned(CHUNK);
	long long total = 0;
	for (;;) {
		ssize_t n = read(in, buf, CHUNK);
		if (n == 0)
			return total;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("read");
		}
		total += n;
	}
}

static void fill(int s, long mib)
{
	char *buf = aligned(CHUNK);
	for (long long left = (long long)mib * MiB; left > 0;) {
		ssize_t w = write(s, buf, left < CHUNK ? left : CHUNK);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("write");
		}
		left -= w;
	}
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "seqread"))
		return seq(argv[2], atol(argv[3]), 0);
	if (argc >= 4 && !strcmp(argv[1], "seqwrite"))
		return seq(argv[2], atol(argv[3]), 1);
	if (argc >= 4 && !strcmp(argv[1], "randread"))
		return randread(argv[2], atof(argv[3]));
	if (argc >= 4 && (!strcmp(argv[1], "get") || !strcmp(argv[1], "serve"))) {
		int l = listen_on(atoi(argv[2]));
		int c = accept(l, NULL, NULL);
		if (c < 0)
			die("accept");
		if (argv[1][0] == 'g') {
			int f = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (f < 0)
				die(argv[3]);
			copy(c, f);
			if (close(f) != 0)
				die("close");
		} else {
			int f = open(argv[3], O_RDONLY);
			if (f < 0)
				die(argv[3]);
			copy(f, c);
		}
		close(c);
		return 0;
	}
	if (argc >= 5 && (!strcmp(argv[1], "put") || !strcmp(argv[1], "fetch"))) {
		int s = dial(argv[2], atoi(argv[3]));
		if (argv[1][0] == 'p') {
			int f = open(argv[4], O_RDONLY);
			if (f < 0)
				die(argv[4]);
			copy(f, s);
			shutdown(s, SHUT_WR);
			drain(s); /* until the receiver has it all and closes */
		} else {
			int f = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (f < 0)
				die(argv[4]);
			copy(s, f);
			if (close(f) != 0)
				die("close");
		}
		return 0;
	}
	if (argc >= 4 && !strcmp(argv[1], "sink")) {
		int l = listen_on(atoi(argv[2]));
		for (int i = atoi(argv[3]); i > 0; i--) {
			int c = accept(l, NULL, NULL);
			if (c < 0)
				die("accept");
			drain(c);
			close(c);
		}
		return 0;
	}
	if (argc >= 5 && !strcmp(argv[1], "source")) {
		int l = listen_on(atoi(argv[2]));
		for (int i = atoi(argv[4]); i > 0; i--) {
			int c = accept(l, NULL, NULL);
			if (c < 0)
				die("accept");
			fill(c, atol(argv[3]));
			close(c);
		}
		return 0;
	}
	if (argc >= 5 && !strcmp(argv[1], "send")) {
		int s = dial(argv[2], atoi(argv[3]));
		long mib = atol(argv[4]);
		double t0 = now();
		fill(s, mib);
		shutdown(s, SHUT_WR);
		drain(s);
		printf("%.1f\n", mib * (double)MiB / (now() - t0) / 1e6);
		return 0;
	}
	if (argc >= 4 && !strcmp(argv[1], "recv")) {
		int s = dial(argv[2], atoi(argv[3]));
		double t0 = now();
		long long n = drain(s);
		printf("%.1f\n", n / (now() - t0) / 1e6);
		return 0;
	}
	fprintf(stderr, "usage: vtool seqread|seqwrite|randread|get|serve|put|fetch|sink|source|send|recv ARGS (see vtool.c)\n");
	return 2;
}
