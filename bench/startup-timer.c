// SPDX-License-Identifier: MIT
/*
 * startup-timer: run a VMM, time its start-up, report its peak RSS.
 *
 *   startup-timer [-t SECONDS] [-o CONSOLE_FILE] [-m STRING [-g MIB]]
 *                 -- COMMAND [ARGS...]
 *
 * Runs COMMAND with stdin = /dev/null and stdout (the serial console of
 * both VMMs under test) on a pipe, and prints one line on stdout:
 *
 *   first_byte_us=N exit_us=N maxrss_kib=N status=S
 *
 *   first_byte_us  CLOCK_MONOTONIC from just before fork() to the first
 *                  byte read from the pipe (-1 if none), microseconds
 *   exit_us        ... to the moment wait4() returned
 *   maxrss_kib     ru_maxrss of the child from wait4(): its peak resident
 *                  set, KiB, guest memory it touched included
 *   status         exit:<code> or signal:<n>
 *
 * With -m STRING, three more fields come before status:
 *
 *   match_us       ... to the first occurrence of STRING in the console
 *                  output (-1 if it never appeared), microseconds
 *   rss_kib        the child's VmRSS (/proc/PID/smaps) at that moment, KiB
 *   guest_kib      at the same moment, the Rss of the child's guest-RAM
 *                  mapping: the largest mapping of at least -g MIB
 *                  (default 16), KiB.  rss_kib - guest_kib is the VMM's
 *                  own memory, guest pages it touched excluded.
 *
 * The sample is taken from the direct child only (the VMM must be exec'd,
 * not forked from a wrapper).
 *
 * All console output is copied to CONSOLE_FILE (default: discarded) so the
 * caller can check that the guest really ran.  After -t SECONDS (default 60)
 * the child gets SIGKILL.  stderr of the child is inherited.
 *
 * Exit status: 0 if the measurement was taken (whatever the child's status),
 * 2 on usage errors, 1 on system errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: startup-timer [-t SECONDS] [-o CONSOLE_FILE] [-m STRING [-g MIB]] -- COMMAND [ARGS...]\n");
}

/*
 * smaps_sample: sum the Rss of every mapping of PID (*total) and report the
 * Rss of the largest mapping of at least MIN_BYTES (*guest), both in KiB.
 * Returns 0, or -1 if /proc/PID/smaps could not be read (the child exited).
 */
static int smaps_sample(pid_t pid, unsigned long long min_bytes,
			long long *total, long long *guest)
{
	char path[64], line[512];
	unsigned long long lo, hi, size = 0, best = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	*total = 0;
	*guest = -1;
	while (fgets(line, sizeof(line), f)) {
		long long kib;

		if (sscanf(line, "%llx-%llx ", &lo, &hi) == 2 && hi > lo) {
			size = hi - lo;
			continue;
		}
		if (sscanf(line, "Rss: %lld kB", &kib) == 1) {
			*total += kib;
			if (size >= min_bytes && size > best) {
				best = size;
				*guest = kib;
			}
		}
	}
	fclose(f);
	return 0;
}

int main(int argc, char **argv)
{
	const char *out_path = NULL, *match = NULL;
	size_t match_len = 0, tail_len = 0;
	unsigned long long min_guest = 16ULL << 20;
	long long rss = -1, guest = -1;
	int64_t matched = -1;
	char tail[512];
	long timeout_s = 60;
	int opt, pfd[2], out = -1, status;
	int64_t t0, first = -1, deadline;
	struct rusage ru;
	pid_t pid;
	char buf[65536];
	char *end;

	while ((opt = getopt(argc, argv, "+t:o:m:g:h")) != -1) {
		switch (opt) {
		case 't':
			errno = 0;
			timeout_s = strtol(optarg, &end, 10);
			if (errno || *end || timeout_s < 1 || timeout_s > 86400) {
				fprintf(stderr, "startup-timer: bad -t '%s' (1..86400)\n",
					optarg);
				return 2;
			}
			break;
		case 'o':
			out_path = optarg;
			break;
		case 'm':
			match = optarg;
			match_len = strlen(match);
			if (!match_len || match_len >= sizeof(tail) / 2) {
				fprintf(stderr, "startup-timer: -m takes 1..%zu bytes\n",
					sizeof(tail) / 2 - 1);
				return 2;
			}
			break;
		case 'g':
			errno = 0;
			min_guest = strtoull(optarg, &end, 10);
			if (errno || *end || !min_guest || min_guest > (1ULL << 24)) {
				fprintf(stderr, "startup-timer: bad -g '%s' (MiB)\n", optarg);
				return 2;
			}
			min_guest <<= 20;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (optind >= argc) {
		usage();
		return 2;
	}

	if (out_path) {
		out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (out < 0) {
			fprintf(stderr, "startup-timer: %s: %s\n", out_path,
				strerror(errno));
			return 1;
		}
	}
	if (pipe2(pfd, O_CLOEXEC)) {
		perror("startup-timer: pipe2");
		return 1;
	}

	t0 = now_us();
	pid = fork();
	if (pid < 0) {
		perror("startup-timer: fork");
		return 1;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		if (null < 0 || dup2(null, STDIN_FILENO) < 0 ||
		    dup2(pfd[1], STDOUT_FILENO) < 0)
			_exit(127);
		execvp(argv[optind], argv + optind);
		fprintf(stderr, "startup-timer: exec %s: %s\n", argv[optind],
			strerror(errno));
		_exit(127);
	}
	close(pfd[1]);

	/* Read until EOF (the child and anything it forked closed stdout). */
	deadline = t0 + (int64_t)timeout_s * 1000000;
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		int64_t left = deadline - now_us();
		ssize_t n;
		int r;

		if (left <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		r = poll(&p, 1, (int)((left + 999) / 1000));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			perror("startup-timer: poll");
			kill(pid, SIGKILL);
			break;
		}
		if (r == 0)
			continue;
		n = read(pfd[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (first < 0)
			first = now_us() - t0;
		if (match && matched < 0) {
			/* Search the last bytes of the previous reads plus this one,
			 * so a STRING split across reads is found. */
			size_t off = 0;

			while (off < (size_t)n && matched < 0) {
				size_t take = (size_t)n - off;

				if (take > sizeof(tail) - tail_len)
					take = sizeof(tail) - tail_len;
				memcpy(tail + tail_len, buf + off, take);
				tail_len += take;
				off += take;
				if (memmem(tail, tail_len, match, match_len)) {
					matched = now_us() - t0;
					if (smaps_sample(pid, min_guest, &rss, &guest))
						rss = guest = -1;
					break;
				}
				if (tail_len > match_len - 1) {
					memmove(tail, tail + tail_len - (match_len - 1),
						match_len - 1);
					tail_len = match_len - 1;
				}
			}
		}
		if (out >= 0 && write_all(out, buf, (size_t)n) < 0) {
			perror("startup-timer: write");
			close(out);
			out = -1;
		}
	}

	while (wait4(pid, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			perror("startup-timer: wait4");
			return 1;
		}
	}
	printf("first_byte_us=%lld exit_us=%lld maxrss_kib=%ld ",
	       (long long)first, (long long)(now_us() - t0), ru.ru_maxrss);
	if (match)
		printf("match_us=%lld rss_kib=%lld guest_kib=%lld ",
		       (long long)matched, rss, guest);
	printf("status=");
	if (WIFEXITED(status))
		printf("exit:%d\n", WEXITSTATUS(status));
	else
		printf("signal:%d\n", WTERMSIG(status));
	if (out >= 0)
		close(out);
	return 0;
}
