/*
 * Azote guest init: PID 1 of the initramfs that src/images/initramfs.ts builds, and /sbin/init of the root file
 * system images that src/images/rootfs.ts builds.
 *
 * 1. Tells the hypervisor it started (boot marker port, guest/ABI.md), mounts /dev /dev/pts /proc /sys /tmp /run.
 * 2. Reads the run request the host appended as a second cpio archive: /azote/argv (NUL-separated arguments)
 *    and /azote/env (NUL-separated KEY=VALUE). Booted from a disk image (no initramfs), the same two lists come
 *    base64-encoded on the kernel command line as azote.argv= and azote.env= (the kernel keeps parameters with
 *    a dot away from init's own arguments and environment). With arguments it runs that command on the serial
 *    console, output bytes unmodified (no "\n" -> "\r\n") and no echo; without any it runs an interactive /bin/sh.
 *    With azote.net= on the command line it first configures eth0 (setup_network): with the address given, or, with
 *    azote.net=dhcp, through busybox's udhcpc and its event script (/etc/udhcpc/default.script).
 * 3. Reports the program's exit status (or 128 + signal) on the exit-status port, then restarts the machine
 *    through the keyboard controller (the kernel runs with reboot=k), which the hypervisor treats as a clean stop.
 *    Without port access (a kernel without CONFIG_X86_IOPL_IOPERM) init says so; the host then sees a plain reset.
 * 4. Busybox's poweroff and halt (SIGUSR2, SIGUSR1 to PID 1) end every process, unmount the disks (or make them
 *    read-only) and stop the machine as in 3 with status 0; its reboot (SIGTERM) does the same but resets the
 *    machine without a status, which the host takes as a reboot.
 * 5. Once a second init reads the shutdown-request port; when the host has asked (it reads 1) the machine stops as
 *    in 4 with status 128 + SIGTERM, as a program ended by the host's SIGTERM would report.
 * 6. With azote.request=port on the command line, the run request comes through the run-request ports instead of
 *    step 2's files (guest/ABI.md, "Run request"): init mounts its file systems, says so with boot marker 2 and waits
 *    for the request. The host saves a snapshot of the machine right there once, and every later run continues a copy
 *    of it, so before anything else init makes this copy its own: the host's time, fresh entropy mixed into the
 *    kernel's pool and a forced reseed of its generator (clones must not share random numbers), eth0's MAC and
 *    address. Then it goes on as in 2 with the request's command and environment.
 *
 * PID 1 itself is the session leader that owns the console as controlling terminal; the program runs in its own
 * process group in the foreground. (If the program led the session, its exit would hang the tty up, and a hangup
 * throws away output still waiting in the UART's transmit buffer.) PID 1 never exits: that would panic the kernel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/route.h>
#include <net/if_arp.h>
#include <linux/random.h>
#include <time.h>
#include <netinet/in.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

/* guest/ABI.md. The QEMU build (make qemu) moves them: QEMU's fw_cfg sits on 0x510/0x511. */
#ifndef EXIT_STATUS_PORT
#define EXIT_STATUS_PORT 0x510
#endif
#ifndef BOOT_MARKER_PORT
#define BOOT_MARKER_PORT 0x511
#endif
#ifndef SHUTDOWN_REQUEST_PORT
#define SHUTDOWN_REQUEST_PORT 0x512
#endif
/* A 4-byte port (inl needs I/O permission for all four bytes) and a byte port after it. */
#ifndef RUN_REQUEST_LENGTH_PORT
#define RUN_REQUEST_LENGTH_PORT 0x514
#endif
#ifndef RUN_REQUEST_DATA_PORT
#define RUN_REQUEST_DATA_PORT 0x518
#endif
/* Boot marker values: init started; init waits for its run request (the host snapshots the machine there); init
 * took its run request and made the machine its own (a continued snapshot runs again). */
#define MARKER_STARTED 1
#define MARKER_WAITING_FOR_REQUEST 2
#define MARKER_RUNNING 3
/* What the shutdown-request port reads once the host asks (a port with nothing behind it reads all ones). */
#define SHUTDOWN_REQUESTED 1

/* Statuses of init's own failures, as a shell would give them. */
#define STATUS_CANNOT_RUN 126
#define STATUS_NOT_FOUND 127

static void say(const char *what, const char *detail)
{
	dprintf(2, "azote-init: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

static void say_errno(const char *what)
{
	say(what, strerror(errno));
}

/*
 * All I/O port access. The first use asks the kernel for the three ports (ioperm, CONFIG_X86_IOPL_IOPERM).
 * Refused, it reports once: the host then sees no marker, a reset without status, and no shutdown request.
 */
static int port_access(void)
{
	static int access; /* 0: not asked yet, 1: granted, -1: refused */
	if (access == 0) {
		access = ioperm(EXIT_STATUS_PORT, 1, 1) == 0 && ioperm(BOOT_MARKER_PORT, 1, 1) == 0 &&
				 ioperm(SHUTDOWN_REQUEST_PORT, 1, 1) == 0 && ioperm(RUN_REQUEST_LENGTH_PORT, 4, 1) == 0 &&
				 ioperm(RUN_REQUEST_DATA_PORT, 1, 1) == 0 ? 1 : -1;
		if (access < 0)
			say_errno("ioperm (the guest kernel needs CONFIG_X86_IOPL_IOPERM)");
	}
	return access > 0;
}

static void port_write(unsigned short port, unsigned char value)
{
	if (port_access())
		outb(value, port);
}

static int shutdown_requested(void)
{
	return port_access() && inb(SHUTDOWN_REQUEST_PORT) == SHUTDOWN_REQUESTED;
}

static void mount_fs(const char *type, const char *dir, unsigned long flags, const char *data)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		say_errno(dir);
	if (mount(type, dir, type, flags, data) < 0 && errno != EBUSY) {
		char what[64];
		snprintf(what, sizeof(what), "mount %s on %s", type, dir);
		say_errno(what);
	}
}

/* Without /dev/console in the initramfs the kernel starts init with fds 0-2 closed: give them one. */
static void ensure_stdio(void)
{
	if (fcntl(2, F_GETFD) >= 0)
		return;
	int fd = open("/dev/console", O_RDWR | O_NOCTTY);
	if (fd < 0)
		fd = open("/dev/null", O_RDWR);
	for (int i = 0; fd >= 0 && i <= 2; i++)
		if (i != fd && fcntl(i, F_GETFD) < 0)
			dup2(fd, i);
	if (fd > 2)
		close(fd);
}

/* Splits `size` bytes of NUL-terminated strings (a missing last NUL is tolerated) into a NULL-terminated vector. */
static int split_list(char *buf, size_t size, const char *what, char ***out)
{
	buf[size] = '\0';
	int count = 0;
	for (size_t i = 0; i < size; i += strlen(buf + i) + 1)
		count++;
	char **list = malloc(((size_t)count + 1) * sizeof(*list));
	if (!list) {
		say_errno(what);
		return 0;
	}
	count = 0;
	for (size_t i = 0; i < size; i += strlen(buf + i) + 1)
		list[count++] = buf + i;
	list[count] = NULL;
	*out = list;
	return count;
}

/* Reads a whole file into a NUL-terminated buffer; NULL (errno set) on failure. */
static char *read_file(const char *path, size_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap + 1);
	for (ssize_t n = 1; buf && n != 0;) {
		if (len == cap) {
			char *more = realloc(buf, 2 * cap + 1);
			if (!more) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = more;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			buf = NULL;
			break;
		}
		len += (size_t)n;
	}
	int saved = errno;
	close(fd);
	errno = saved;
	if (buf) {
		buf[len] = '\0';
		*size = len;
	}
	return buf;
}

/*
 * Reads a file of NUL-terminated strings into a NULL-terminated vector.
 * Returns the count; -1 if the file does not exist. Other errors are reported and count as "no entries".
 */
static int read_list(const char *path, char ***out)
{
	static char *empty[1];
	*out = empty;
	size_t size;
	char *buf = read_file(path, &size);
	if (!buf) {
		if (errno == ENOENT)
			return -1;
		say_errno(path);
		return 0;
	}
	return split_list(buf, size, path, out);
}

static int base64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* The value of kernel parameter `key` (e.g. "azote.argv="), up to the next space, from /proc/cmdline; NULL if absent. */
static char *cmdline_param(const char *key)
{
	size_t size;
	char *cmdline = read_file("/proc/cmdline", &size);
	if (!cmdline)
		return NULL;
	size_t klen = strlen(key);
	char *value = NULL;
	for (char *p = cmdline; *p; p++) {
		if ((p == cmdline || p[-1] == ' ') && strncmp(p, key, klen) == 0) {
			value = strndup(p + klen, strcspn(p + klen, " \n"));
			break;
		}
	}
	free(cmdline);
	return value;
}

/*
 * The list in kernel parameter `key`, base64 of NUL-terminated strings.
 * Returns the count; -1 if the parameter is absent.
 */
static int cmdline_list(const char *key, char ***out)
{
	static char *empty[1];
	*out = empty;
	char *value = cmdline_param(key);
	if (!value)
		return -1;
	size_t n = 0;
	unsigned acc = 0;
	int bits = 0;
	/* Decoded in place: the output never outgrows the input. */
	for (char *p = value; *p && *p != '='; p++) {
		int v = base64_value(*p);
		if (v < 0) {
			say(key, "is not base64");
			return 0;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			value[n++] = (char)((acc >> bits) & 0xff);
		}
	}
	return split_list(value, n, key, out);
}

static void interface_request(struct ifreq *r, const char *name)
{
	memset(r, 0, sizeof(*r));
	strncpy(r->ifr_name, name, IFNAMSIZ - 1);
}

static int set_address(int s, const char *name, unsigned long request, struct in_addr a)
{
	struct ifreq r;
	interface_request(&r, name);
	struct sockaddr_in *sin = (struct sockaddr_in *)&r.ifr_addr;
	sin->sin_family = AF_INET;
	sin->sin_addr = a;
	return ioctl(s, request, &r);
}

static int link_up(int s, const char *name)
{
	struct ifreq r;
	interface_request(&r, name);
	if (ioctl(s, SIOCGIFFLAGS, &r) < 0)
		return -1;
	r.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(s, SIOCSIFFLAGS, &r);
}

/* eth0's IPv4 address and default gateway as the kernel has them now, for the command's environment. */
static void export_network(int s)
{
	struct ifreq r;
	interface_request(&r, "eth0");
	char text[INET_ADDRSTRLEN];
	if (ioctl(s, SIOCGIFADDR, &r) == 0 &&
	    inet_ntop(AF_INET, &((struct sockaddr_in *)&r.ifr_addr)->sin_addr, text, sizeof(text)))
		setenv("AZOTE_GUEST_IP", text, 1);
	/* /proc/net/route: "Iface Destination Gateway ..." in hexadecimal, network byte order as stored. */
	FILE *routes = fopen("/proc/net/route", "r");
	char line[256], iface[32];
	unsigned int destination, gateway;
	while (routes && fgets(line, sizeof(line), routes)) {
		if (sscanf(line, "%31s %x %x", iface, &destination, &gateway) == 3 && destination == 0 && gateway != 0) {
			struct in_addr g = { .s_addr = gateway };
			if (inet_ntop(AF_INET, &g, text, sizeof(text)))
				setenv("AZOTE_HOST_IP", text, 1);
			break;
		}
	}
	if (routes)
		fclose(routes);
}

/*
 * azote.net=dhcp: busybox's udhcpc asks the network's DHCP server and configures eth0 through its event script. It
 * runs in the foreground until it has a lease, then goes on in the background to renew it; init waits for the first
 * part (or its failure: -n, after -t discoveries -T seconds apart). Its chatter stays off the console, which is the
 * command's.
 */
static void run_dhcp(int s)
{
	if (link_up(s, "eth0") < 0) {
		say_errno("bringing eth0 up");
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		say_errno("fork");
		return;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execl("/bin/busybox", "udhcpc", "-i", "eth0", "-n", "-t", "20", "-T", "1", (char *)NULL);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		say("azote.net=dhcp", "udhcpc got no lease for eth0");
	else
		export_network(s);
}

/*
 * Brings lo up and configures eth0 as azote.net= says: GUEST/PREFIX,HOST gives it that address and a default route
 * through the host's end of the link; dhcp asks the network (run_dhcp). The command gets AZOTE_GUEST_IP and
 * AZOTE_HOST_IP (eth0's address and its default gateway).
 */
static void setup_network(char *net)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		say_errno("socket");
		return;
	}
	if (link_up(s, "lo") < 0)
		say_errno("bringing lo up");
	char *slash = net ? strchr(net, '/') : NULL;
	char *comma = slash ? strchr(slash, ',') : NULL;
	if (net && strcmp(net, "dhcp") == 0) {
		run_dhcp(s);
	} else if (net && (!slash || !comma)) {
		say("azote.net=", "is not GUEST/PREFIX,HOST or dhcp");
	} else if (net) {
		*slash = *comma = '\0';
		int prefix = atoi(slash + 1);
		struct in_addr guest, host, mask;
		mask.s_addr = htonl(prefix <= 0 ? 0 : 0xffffffffu << (32 - (prefix > 32 ? 32 : prefix)));
		if (inet_pton(AF_INET, net, &guest) != 1 || inet_pton(AF_INET, comma + 1, &host) != 1) {
			say("azote.net=", "has an address that is not IPv4");
		} else if (set_address(s, "eth0", SIOCSIFADDR, guest) < 0 || set_address(s, "eth0", SIOCSIFNETMASK, mask) < 0 ||
			   link_up(s, "eth0") < 0) {
			say_errno("configuring eth0");
		} else {
			struct rtentry rt;
			memset(&rt, 0, sizeof(rt));
			((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
			((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
			struct sockaddr_in *gw = (struct sockaddr_in *)&rt.rt_gateway;
			gw->sin_family = AF_INET;
			gw->sin_addr = host;
			rt.rt_flags = RTF_UP | RTF_GATEWAY;
			rt.rt_dev = "eth0";
			if (ioctl(s, SIOCADDRT, &rt) < 0)
				say_errno("adding the default route");
			setenv("AZOTE_GUEST_IP", net, 1);
			setenv("AZOTE_HOST_IP", comma + 1, 1);
		}
	}
	close(s);
}

/*
 * The run request through the ports (guest/ABI.md, "Run request"): a 104-byte header (magic "AZRQ", version 1, flags,
 * the host's time, 64 bytes of entropy, a MAC), then three length-prefixed fields: the azote.net= value, argv and env
 * (NUL-separated, as in /azote/argv and /azote/env).
 */
#define RUN_REQUEST_MAGIC 0x51525a41u
#define RUN_REQUEST_VERSION 1
#define RUN_REQUEST_HEADER 104
#define RUN_REQUEST_MAX 65536
#define RUN_REQUEST_HAS_COMMAND 1u
#define RUN_REQUEST_ENTROPY 64

struct run_request {
	unsigned flags;
	struct timespec now;
	unsigned char entropy[RUN_REQUEST_ENTROPY];
	unsigned char mac[6];
	char *net; /* NULL: no network to set up */
	char *argv, *env;
	size_t argv_size, env_size;
};

static unsigned get_u32(const unsigned char *p)
{
	return (unsigned)p[0] | (unsigned)p[1] << 8 | (unsigned)p[2] << 16 | (unsigned)p[3] << 24;
}

/* The next length-prefixed field of buf[*at, size) as a NUL-terminated copy; NULL if it does not fit. */
static char *take_field(const unsigned char *buf, size_t size, size_t *at, size_t *length)
{
	if (size - *at < 4)
		return NULL;
	size_t n = get_u32(buf + *at);
	*at += 4;
	if (n > size - *at)
		return NULL;
	char *copy = malloc(n + 1);
	if (!copy)
		return NULL;
	memcpy(copy, buf + *at, n);
	copy[n] = '\0';
	*at += n;
	*length = n;
	return copy;
}

/* Waits for the run request (reading the length port every 10 ms) and parses it; 0 on success. */
static int receive_run_request(struct run_request *r)
{
	if (!port_access())
		return -1;
	port_write(BOOT_MARKER_PORT, MARKER_WAITING_FOR_REQUEST);
	unsigned length;
	while ((length = inl(RUN_REQUEST_LENGTH_PORT)) == 0) {
		struct timespec tick = { .tv_nsec = 10 * 1000 * 1000 };
		nanosleep(&tick, NULL);
	}
	if (length < RUN_REQUEST_HEADER || length > RUN_REQUEST_MAX) {
		say("run request", "has an impossible length");
		return -1;
	}
	unsigned char *buf = malloc(length);
	if (!buf) {
		say_errno("run request");
		return -1;
	}
	insb(RUN_REQUEST_DATA_PORT, buf, length);
	if (get_u32(buf) != RUN_REQUEST_MAGIC || get_u32(buf + 4) != RUN_REQUEST_VERSION) {
		say("run request", "is not version 1 of Azote's");
		free(buf);
		return -1;
	}
	r->flags = get_u32(buf + 8);
	r->now.tv_sec = (time_t)((unsigned long long)get_u32(buf + 16) | (unsigned long long)get_u32(buf + 20) << 32);
	r->now.tv_nsec = get_u32(buf + 24);
	memcpy(r->entropy, buf + 32, RUN_REQUEST_ENTROPY);
	memcpy(r->mac, buf + 96, 6);
	size_t at = RUN_REQUEST_HEADER, net_size;
	r->net = take_field(buf, length, &at, &net_size);
	r->argv = take_field(buf, length, &at, &r->argv_size);
	r->env = take_field(buf, length, &at, &r->env_size);
	free(buf);
	if (!r->net || !r->argv || !r->env) {
		say("run request", "is truncated");
		return -1;
	}
	if (net_size == 0) {
		free(r->net);
		r->net = NULL;
	}
	return 0;
}

/* Adds `size` bytes to the kernel's entropy pool, counted as full entropy (they come from a CSPRNG). */
static void add_entropy(int random, const unsigned char *bytes, int size)
{
	struct {
		int entropy_count;
		int buf_size;
		unsigned char buf[RUN_REQUEST_ENTROPY];
	} e = { .entropy_count = size * 8, .buf_size = size };
	memcpy(e.buf, bytes, (size_t)size);
	if (ioctl(random, RNDADDENTROPY, &e) < 0)
		say_errno("RNDADDENTROPY");
}

/*
 * Makes a machine continued from a snapshot its own: the host's time, then fresh entropy (the request's, and
 * virtio-rng's when there is one) and a reseed of the CRNG now: on this kernel a plain write to /dev/urandom would
 * leave the clones' generators in step for up to a minute. Then eth0 takes the request's MAC.
 */
static void make_own(const struct run_request *r)
{
	if (clock_settime(CLOCK_REALTIME, &r->now) < 0)
		say_errno("clock_settime");
	int random = open("/dev/urandom", O_RDWR | O_CLOEXEC);
	if (random < 0) {
		say_errno("/dev/urandom");
	} else {
		add_entropy(random, r->entropy, RUN_REQUEST_ENTROPY);
		int hwrng = open("/dev/hwrng", O_RDONLY | O_CLOEXEC);
		unsigned char more[RUN_REQUEST_ENTROPY];
		if (hwrng >= 0 && read(hwrng, more, sizeof(more)) == (ssize_t)sizeof(more))
			add_entropy(random, more, sizeof(more));
		if (hwrng >= 0)
			close(hwrng);
		if (ioctl(random, RNDRESEEDCRNG) < 0)
			say_errno("RNDRESEEDCRNG");
		close(random);
	}
	static const unsigned char keep[6];
	if (memcmp(r->mac, keep, sizeof(keep)) != 0) {
		int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		struct ifreq req;
		interface_request(&req, "eth0");
		req.ifr_hwaddr.sa_family = ARPHRD_ETHER;
		memcpy(req.ifr_hwaddr.sa_data, r->mac, 6);
		if (s < 0 || ioctl(s, SIOCSIFHWADDR, &req) < 0)
			say_errno("setting eth0's MAC");
		if (s >= 0)
			close(s);
	}
}

/* The console the program gets as its terminal: the first serial port, else whatever /dev/console is. */
static int open_console(void)
{
	/* O_NONBLOCK: a serial port without CLOCAL would wait for carrier. */
	int fd = open("/dev/ttyS0", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		say_errno("/dev/ttyS0");
		fd = open("/dev/console", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			say_errno("/dev/console");
			return -1;
		}
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if (ioctl(fd, TIOCSCTTY, 0) < 0)
		say_errno("cannot make the console our controlling terminal");
	return fd;
}

static void setup_tty(int fd, int command)
{
	struct termios t;
	if (tcgetattr(fd, &t) < 0) {
		say_errno("tcgetattr");
		return;
	}
	t.c_cflag |= CLOCAL | CREAD;
	t.c_lflag |= ICANON | ISIG | IEXTEN;
	if (command) {
		/* The host gets the program's output byte for byte, and its own terminal already echoes input. */
		t.c_oflag &= ~OPOST;
		t.c_lflag &= ~(ECHO | ECHOE | ECHOK | ECHONL | ECHOCTL | ECHOKE);
		t.c_cc[VSUSP] = _POSIX_VDISABLE; /* nobody here to resume a stopped command */
	} else {
		t.c_iflag |= ICRNL;
		t.c_oflag |= OPOST | ONLCR;
		t.c_lflag |= ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE;
	}
	if (tcsetattr(fd, TCSANOW, &t) < 0)
		say_errno("tcsetattr");
}

static const int job_signals[] = { SIGTTOU, SIGTTIN, SIGTSTP };

__attribute__((noreturn)) static void child(char **argv, int tty)
{
	pid_t self = getpid();
	setpgid(0, 0);
	if (tty >= 0) {
		if (tcsetpgrp(tty, self) < 0)
			say_errno("tcsetpgrp");
		for (int fd = 0; fd <= 2; fd++)
			dup2(tty, fd); /* the copies lose O_CLOEXEC; the original closes at exec */
	}
	for (size_t i = 0; i < sizeof(job_signals) / sizeof(job_signals[0]); i++)
		signal(job_signals[i], SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execvp(argv[0], argv);
	int err = errno;
	/* The image has no link per busybox applet (src/images/initramfs.ts): a bare name that is not a file may be
	 * one. Busybox picks the applet by argv[0] and says "applet not found" (status 127) when it is none. */
	if (err == ENOENT && !strchr(argv[0], '/')) {
		execv("/bin/busybox", argv);
		err = errno;
	}
	say(argv[0], strerror(err));
	_exit(err == ENOENT || err == ENOTDIR || err == ENAMETOOLONG ? STATUS_NOT_FOUND : STATUS_CANNOT_RUN);
}

/* The signal by which busybox's poweroff, halt or reboot asked PID 1 to stop the machine; 0 until then. */
static volatile sig_atomic_t stop_request;
/* Set by SIGALRM: time to read the shutdown-request port (or a bounded wait is over). */
static volatile sig_atomic_t alarm_rang;
/* The host asked the machine to shut down (the shutdown-request port). */
static int host_request;

static void request_stop(int sig)
{
	stop_request = sig;
}

static void ring(int sig)
{
	(void)sig;
	alarm_rang = 1;
}

/* SIGALRM every `seconds` (0: never). */
static void set_alarm(int seconds)
{
	struct itimerval t = { .it_interval = { .tv_sec = seconds }, .it_value = { .tv_sec = seconds } };
	if (setitimer(ITIMER_REAL, &t, NULL) < 0)
		say_errno("setitimer");
}

/* Runs argv in the foreground of the console and reaps every process until it ends; returns its status, or -1
 * when the machine is to stop first (stop_request, or host_request: the port is read once a second meanwhile). */
static int run(char **argv, int tty)
{
	pid_t pid = fork();
	if (pid < 0) {
		say_errno("fork");
		return STATUS_CANNOT_RUN;
	}
	if (pid == 0)
		child(argv, tty);
	/* Also from this side, so the terminal is the child's before either of us goes on (as shells do). */
	setpgid(pid, pid);
	if (tty >= 0)
		tcsetpgrp(tty, pid);
	/* PID 1 adopts orphans: reap everything until the program itself ends. */
	set_alarm(1);
	for (;;) {
		int status;
		pid_t done = wait(&status);
		if (done < 0 && errno == EINTR && alarm_rang) {
			alarm_rang = 0;
			host_request = shutdown_requested();
		}
		if (done < 0 && errno == EINTR && (stop_request || host_request)) {
			set_alarm(0);
			return -1;
		}
		if (done < 0 && errno == EINTR)
			continue;
		if (done < 0) {
			say_errno("wait");
			return STATUS_CANNOT_RUN;
		}
		if (done == pid) {
			set_alarm(0);
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
	}
}

__attribute__((noreturn)) static void finish(int status, int tty)
{
	sync();
	if (tty >= 0)
		tcdrain(tty); /* the program's last output reaches the host before the VM stops */
	port_write(EXIT_STATUS_PORT, (unsigned char)status);
	reboot(RB_AUTOBOOT);
	say_errno("reboot");
	for (;;)
		pause();
}

/* Unmounts every file system on a block device, newest first; one still busy (the root) is made read-only. */
static void unmount_disks(void)
{
	size_t size;
	char *mounts = read_file("/proc/mounts", &size);
	if (!mounts) {
		say_errno("/proc/mounts");
		return;
	}
	char *disks[64];
	int n = 0;
	for (char *line = strtok(mounts, "\n"); line && n < 64; line = strtok(NULL, "\n"))
		if (strncmp(line, "/dev/", 5) == 0)
			disks[n++] = line;
	while (n-- > 0) {
		/* "SOURCE DIR TYPE OPTIONS ..." (a space in DIR would be written \040: none of ours has one) */
		char *dir = strchr(disks[n], ' ');
		if (!dir)
			continue;
		dir++;
		dir[strcspn(dir, " ")] = '\0';
		if (umount(dir) < 0 && mount(NULL, dir, NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0)
			say_errno(dir);
	}
	free(mounts);
}

/*
 * Every other process gets SIGTERM, then a second later SIGKILL, and is reaped (so its files are closed; a process
 * stuck in the kernel gets at most 5 s); disks are synced and unmounted.
 */
static void end_processes(void)
{
	kill(-1, SIGTERM);
	sleep(1);
	kill(-1, SIGKILL);
	alarm_rang = 0;
	alarm(5);
	while (wait(NULL) > 0 || (errno == EINTR && !alarm_rang))
		;
	alarm(0);
	sync();
	unmount_disks();
}

int main(void)
{
	port_write(BOOT_MARKER_PORT, MARKER_STARTED);

	mount_fs("devtmpfs", "/dev", MS_NOSUID, "mode=0755");
	ensure_stdio();
	mount_fs("proc", "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_fs("sysfs", "/sys", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	/* Terminals for SSH sessions (and anything else that asks for a pty). */
	mount_fs("devpts", "/dev/pts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666");
	mount_fs("tmpfs", "/tmp", MS_NOSUID | MS_NODEV, "mode=1777");
	mount_fs("tmpfs", "/run", MS_NOSUID | MS_NODEV, "mode=0755");
	if (sethostname("azote", 5) < 0)
		say_errno("sethostname");

	char **env, **argv;
	int nenv, argc;
	char *request_mode = cmdline_param("azote.request=");
	if (request_mode && strcmp(request_mode, "port") == 0) {
		struct run_request r;
		if (receive_run_request(&r) < 0)
			finish(STATUS_CANNOT_RUN, -1);
		make_own(&r);
		port_write(BOOT_MARKER_PORT, MARKER_RUNNING);
		setup_network(r.net);
		nenv = split_list(r.env, r.env_size, "run request env", &env);
		argc = r.flags & RUN_REQUEST_HAS_COMMAND ? split_list(r.argv, r.argv_size, "run request argv", &argv) : -1;
	} else {
		setup_network(cmdline_param("azote.net="));
		nenv = read_list("/azote/env", &env);
		if (nenv < 0)
			nenv = cmdline_list("azote.env=", &env);
		argc = read_list("/azote/argv", &argv);
		if (argc < 0)
			argc = cmdline_list("azote.argv=", &argv);
	}

	setenv("PATH", "/bin:/sbin:/usr/bin:/usr/sbin", 1);
	setenv("HOME", "/root", 1);
	if (!getenv("TERM"))
		setenv("TERM", "linux", 1);
	for (int i = 0; i < nenv; i++)
		if (strchr(env[i], '=') && putenv(env[i]) != 0)
			say_errno("putenv");
	int command = argc >= 0;

	/* PID 1 leads the session that owns the console; job-control signals must not stop it. */
	for (size_t i = 0; i < sizeof(job_signals) / sizeof(job_signals[0]); i++)
		signal(job_signals[i], SIG_IGN);
	/* Without SA_RESTART, so that wait() returns when one comes. The child's exec resets them. */
	struct sigaction stop = { .sa_handler = request_stop };
	sigemptyset(&stop.sa_mask);
	sigaction(SIGUSR1, &stop, NULL);
	sigaction(SIGUSR2, &stop, NULL);
	sigaction(SIGTERM, &stop, NULL);
	struct sigaction tick = { .sa_handler = ring };
	sigemptyset(&tick.sa_mask);
	sigaction(SIGALRM, &tick, NULL);
	if (setsid() < 0)
		say_errno("setsid");
	int tty = open_console();
	if (tty >= 0)
		setup_tty(tty, command);

	if (command && argc == 0) {
		say("/azote/argv", "empty command");
		finish(STATUS_NOT_FOUND, tty);
	}
	if (!command) {
		static char *shell[] = { "/bin/sh", NULL };
		argv = shell;
		setenv("PS1", "\\h:\\w\\$ ", 0);
		if (chdir("/root") < 0)
			say_errno("/root");
		dprintf(tty >= 0 ? tty : 1, "Azote microVM: busybox shell ('exit' or Ctrl-A x leaves)\n");
	}
	int status = run(argv, tty);
	if (status >= 0)
		finish(status, tty);
	int rebooting = !host_request && stop_request == SIGTERM;
	dprintf(tty >= 0 ? tty : 1, "azote-init: %sthe system is %s\n", host_request ? "the host asked to shut down: " : "",
		rebooting ? "rebooting" : "powering off");
	end_processes();
	if (rebooting) {
		reboot(RB_AUTOBOOT);
		say_errno("reboot");
	}
	finish(host_request ? 128 + SIGTERM : 0, tty);
}
