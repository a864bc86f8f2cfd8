/*
 * Azote guest init (PID 1 of the initramfs).
 *
 * Mounts the kernel file systems, then runs the command the host asked for (NUL-separated arguments in
 * /azote/argv, environment in /azote/env) or, without a command, an interactive shell on the serial console.
 * When that program ends, its exit status goes to the hypervisor's exit-status port (0x510, guest/ABI.md) and the
 * machine restarts through the keyboard controller (reboot=k), which the hypervisor treats as a clean stop.
 * It never exits: PID 1 exiting would panic the kernel.
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
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define EXIT_STATUS_PORT 0x510
#define BOOT_MARKER_PORT 0x511
#define CONSOLE "/dev/ttyS0"
#define MAX_ARGS 4096

static int ports_ok;

static void say(const char *what, const char *detail)
{
	dprintf(2, "azote-init: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

static void port_out(unsigned short port, unsigned char value)
{
	if (ports_ok)
		outb(value, port);
}

static void mount_fs(const char *src, const char *dir, const char *type, unsigned long flags)
{
	mkdir(dir, 0755);
	if (mount(src, dir, type, flags, NULL) < 0 && errno != EBUSY)
		say(dir, strerror(errno));
}

/* Reads a file of NUL-separated strings into a NULL-terminated vector; returns the count, or -1. */
static int read_list(const char *path, char **out, int max)
{
	static char buf[1 << 20];
	static size_t used;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char *start = buf + used;
	ssize_t n, total = 0;
	while ((n = read(fd, start + total, sizeof(buf) - used - total - 1)) > 0)
		total += n;
	close(fd);
	start[total] = '\0';
	used += total + 1;
	int count = 0;
	for (ssize_t i = 0; i < total && count < max - 1;) {
		out[count++] = start + i;
		i += strlen(start + i) + 1;
	}
	out[count] = NULL;
	return count;
}

static void setup_console(int fd, int raw_output)
{
	struct termios t;
	if (tcgetattr(fd, &t) < 0)
		return;
	if (raw_output) {
		/* The host reads the command's output byte for byte: no "\n" -> "\r\n", no echo of input. */
		t.c_oflag &= ~OPOST;
		t.c_lflag &= ~(ECHO | ECHONL);
	} else {
		t.c_oflag |= OPOST | ONLCR;
		t.c_lflag |= ECHO | ICANON | ISIG | ECHOE | ECHOK;
	}
	tcsetattr(fd, TCSANOW, &t);
}

static void child_exec(char **argv, int raw_output)
{
	setsid();
	int fd = open(CONSOLE, O_RDWR);
	if (fd < 0)
		fd = open("/dev/console", O_RDWR);
	if (fd >= 0) {
		ioctl(fd, TIOCSCTTY, 1);
		setup_console(fd, raw_output);
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	execvp(argv[0], argv);
	int err = errno;
	say(argv[0], strerror(err));
	_exit(err == ENOENT ? 127 : 126);
}

static void finish(int status)
{
	sync();
	port_out(EXIT_STATUS_PORT, (unsigned char)status);
	if (!ports_ok)
		dprintf(1, "\n@@azote-exit %d\n", status);
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}

int main(void)
{
	static char *argv[MAX_ARGS], *envv[MAX_ARGS];
	static char *shell[] = { "/bin/sh", NULL };

	ports_ok = ioperm(EXIT_STATUS_PORT, 2, 1) == 0;
	port_out(BOOT_MARKER_PORT, 1);

	mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID);
	mount_fs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
	mount_fs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC);
	mount_fs("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV);
	mount_fs("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV);
	sethostname("azote", 5);
	setenv("PATH", "/bin:/sbin:/usr/bin:/usr/sbin", 1);
	setenv("HOME", "/root", 1);
	if (!getenv("TERM"))
		setenv("TERM", "linux", 1);
	int nenv = read_list("/azote/env", envv, MAX_ARGS);
	for (int i = 0; i < nenv; i++)
		putenv(envv[i]);

	int argc = read_list("/azote/argv", argv, MAX_ARGS);
	int command = argc > 0;
	if (!command) {
		int fd = open(CONSOLE, O_WRONLY);
		if (fd >= 0) {
			dprintf(fd, "Azote microVM: busybox shell; 'exit' or Ctrl-A x ends it.\n");
			close(fd);
		}
	}
	chdir(command ? "/" : "/root");

	pid_t pid = fork();
	if (pid < 0) {
		say("fork", strerror(errno));
		finish(126);
	}
	if (pid == 0)
		child_exec(command ? argv : shell, command);

	/* PID 1 adopts orphans: reap everything until the command itself ends. */
	for (;;) {
		int status;
		pid_t done = wait(&status);
		if (done < 0 && errno == EINTR)
			continue;
		if (done < 0) {
			say("wait", strerror(errno));
			finish(126);
		}
		if (done == pid)
			finish(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
}
