// SPDX-License-Identifier: MIT
/*
 * bench/vsock-bench: virtio-vsock throughput and connection setup through
 * the plugin (the real smvmm-virtio-vsock.so on the driver model, threaded
 * mode: a real I/O thread and ioeventfds), side by side with a plain AF_UNIX
 * socketpair moving the same data, in one run.  Built and run by bench/vsock.
 *
 *   vsock-bench [-s MiB] [-n CONNECTS] [-r REPEAT] [-t SCENARIO,...] [-B|-b]
 *
 * Scenarios (the guest side is bench/vsock-driver.h, doing per byte what a
 * Linux guest does: the sender copies application data into tx buffers, the
 * receiver copies rx payload out into an application buffer, as recv()
 * does; kicks and interrupts go through the transport, with EVENT_IDX):
 *   g2h-1 / h2g-1   one connection, guest->host / host->guest
 *   g2h-8 / h2g-8   eight connections at once (same total)
 *   setup-guest     guest connect (REQUEST/RESPONSE, host accept) + RST
 *   setup-host      host connect + "CONNECT <port>\n" + "OK" + close
 * Baselines: the same bytes through socketpair(AF_UNIX, SOCK_STREAM) between
 * two threads (1 and 8 pairs); connect/accept/close on an AF_UNIX listener.
 * Like for like: the same total bytes, 64 KiB application writes/reads, and
 * one sending and one receiving application thread on each side (the host
 * end of the vsock runs exactly the baseline's io_thread); the vsock side
 * additionally has the I/O thread, as the VMM does.
 *
 * -r N repeats each scenario N times (baseline and vsock interleaved, so
 * both see the same machine load) and prints medians; -t picks scenarios;
 * -B / -b run only vsock / only the baseline (profiling).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "devtest.h"
#include "vsock-driver.h"

#define CHUNK 65536
#define CID 3

static char dir[64], uds[96];
static size_t total = 256u << 20;
static int nconnect = 2000;
static int repeat = 1;
static bool no_baseline; /* -B: vsock only (for profiling) */
static bool no_vsock;    /* -b: baseline only (for profiling) */
static const char *only; /* -t: comma-separated scenario names */

static bool wanted(const char *name)
{
	size_t n = strlen(name);

	if (!only)
		return true;
	for (const char *p = only; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		if (l == n && !memcmp(p, name, n))
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) of the whole process so far. */
static double cpu_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/*
 * CPUs busy during the last timed copy (cpu seconds / wall seconds); the
 * copies print it as CPU microseconds per MiB moved ("cpu-vsock",
 * "cpu-base"), which depends less on other load of the machine than
 * throughput does.
 */
static double last_cpus;

static void die(const char *what)
{
	fprintf(stderr, "vsock-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* ---- host-side threads: move bytes on n fds ------------------------------ */

struct io {
	int fd[8];
	int n;
	size_t per_fd;
	bool write;
};

static void *io_thread(void *p)
{
	struct io *a = p;
	static __thread uint8_t buf[CHUNK];
	size_t done[8] = { 0 };
	int left = a->n;

	memset(buf, 0x5a, sizeof(buf));
	for (int i = 0; i < a->n; i++)
		fcntl(a->fd[i], F_SETFL, O_NONBLOCK);
	while (left) {
		struct pollfd pf[8];

		for (int i = 0; i < a->n; i++) {
			pf[i].fd = done[i] < a->per_fd ? a->fd[i] : -1;
			pf[i].events = a->write ? POLLOUT : POLLIN;
		}
		if (poll(pf, (nfds_t)a->n, 5000) <= 0)
			break;
		for (int i = 0; i < a->n; i++) {
			ssize_t r;
			size_t want;

			if (!pf[i].revents)
				continue;
			want = a->per_fd - done[i] < CHUNK ? a->per_fd - done[i]
							  : CHUNK;
			r = a->write ? write(a->fd[i], buf, want)
				     : read(a->fd[i], buf, want);
			if (r <= 0) {
				if (r < 0 && errno == EAGAIN)
					continue;
				fprintf(stderr, "vsock-bench: host fd ended "
					"early\n");
				return NULL;
			}
			done[i] += (size_t)r;
			if (done[i] == a->per_fd)
				left--;
		}
	}
	return NULL;
}

/* ---- baselines ------------------------------------------------------------- */

static double socketpair_copy(int nconn)
{
	struct io w = { .n = nconn, .per_fd = total / (size_t)nconn,
			.write = true };
	struct io r = { .n = nconn, .per_fd = total / (size_t)nconn };
	pthread_t tw, tr;
	double t0, c0;

	for (int i = 0; i < nconn; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			die("socketpair");
		w.fd[i] = sv[0];
		r.fd[i] = sv[1];
	}
	c0 = cpu_now();
	t0 = now();
	pthread_create(&tw, NULL, io_thread, &w);
	pthread_create(&tr, NULL, io_thread, &r);
	pthread_join(tw, NULL);
	pthread_join(tr, NULL);
	t0 = now() - t0;
	last_cpus = (cpu_now() - c0) / t0;
	for (int i = 0; i < nconn; i++) {
		close(w.fd[i]);
		close(r.fd[i]);
	}
	return (double)(w.per_fd * (size_t)nconn) / t0;
}

struct acc {
	int lfd;
	int n;
};

static void *accept_close(void *p)
{
	struct acc *a = p;

	for (int i = 0; i < a->n; i++) {
		int fd = accept(a->lfd, NULL, NULL);

		if (fd < 0)
			break;
		close(fd);
	}
	return NULL;
}

static int listen_at(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(fd, 1024))
		die("listen");
	return fd;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("connect");
	return fd;
}

static double unix_setup_rate(void)
{
	char path[128];
	struct acc a;
	pthread_t t;
	double t0;

	snprintf(path, sizeof(path), "%s/plain.sock", dir);
	a.lfd = listen_at(path);
	a.n = nconnect;
	pthread_create(&t, NULL, accept_close, &a);
	t0 = now();
	for (int i = 0; i < nconnect; i++) {
		int fd = connect_to(path);
		char c;

		/* wait for the accept side's close, like a full round */
		if (read(fd, &c, 1) < 0)
			die("read");
		close(fd);
	}
	t0 = now() - t0;
	pthread_join(t, NULL);
	close(a.lfd);
	return nconnect / t0;
}

/* ---- through the plugin ------------------------------------------------------ */

static struct devtest *dev_new(struct vdrv *d)
{
	char kv0[128], err[1024];
	const char *kv[] = { kv0, "guest_cid=3", NULL };
	struct devtest_opts o = { .ram_size = 64ULL << 20, .threaded = true };
	struct devtest *t;

	o.plugin_dir = getenv("SMVMM_BUILD_DIR");
	snprintf(kv0, sizeof(kv0), "uds_path=%s", uds);
	t = devtest_new("virtio-vsock", kv, &o, err, sizeof(err));
	if (!t) {
		fprintf(stderr, "vsock-bench: %s\n", err);
		exit(1);
	}
	if (vd_init(d, t, CID)) {
		fprintf(stderr, "vsock-bench: init: %s\n", devtest_error(t));
		exit(1);
	}
	d->threaded = true;
	d->nosum = true;
	return t;
}

static void check(struct vdrv *d, const char *what)
{
	if (d->violations) {
		fprintf(stderr, "vsock-bench: %s: protocol violation: %s\n",
			what, d->why);
		exit(1);
	}
}

static double vsock_copy(int nconn, bool g2h)
{
	static uint8_t app[CHUNK];
	struct vdrv *d = calloc(1, sizeof(*d));
	struct devtest *t = dev_new(d);
	struct vd_conn *c[8];
	char path[128];
	struct io h = { .n = nconn, .per_fd = total / (size_t)nconn,
			.write = !g2h };
	pthread_t th;
	int lfd;
	double t0, c0;
	size_t sent[8] = { 0 }, per = total / (size_t)nconn;

	snprintf(path, sizeof(path), "%s_%d", uds, 1000);
	lfd = listen_at(path);
	for (int i = 0; i < nconn; i++) {
		c[i] = vd_connect(d, 1000);
		if (!c[i] || !VD_WAIT(d, c[i]->state == VD_OPEN, 2000)) {
			fprintf(stderr, "vsock-bench: connect failed\n");
			exit(1);
		}
		h.fd[i] = accept(lfd, NULL, NULL);
	}
	memset(app, 0xa5, sizeof(app));
	/* h2g: the "application" reads every received byte out of the rx
	 * buffers into its own buffer, as recv() does in a guest kernel. */
	d->sink = g2h ? NULL : app;
	d->sink_len = sizeof(app);
	d->irq_timeouts = d->rx_packets = 0;
	c0 = cpu_now();
	t0 = now();
	pthread_create(&th, NULL, io_thread, &h);
	for (;;) {
		bool done = true, progress = false;

		for (int i = 0; i < nconn; i++) {
			if (g2h) {
				if (sent[i] < per) {
					size_t want = per - sent[i] < CHUNK
							      ? per - sent[i]
							      : CHUNK;
					uint32_t n = vd_send_data(
						d, c[i], app, (uint32_t)want);

					sent[i] += n;
					progress |= n > 0;
					done = false;
				}
			} else if (c[i]->rx_bytes < per) {
				done = false;
			}
		}
		if (done)
			break;
		/* Sleep on the interrupt only when blocked (no credit or
		 * nothing received), as a guest's sender/receiver does. */
		if (progress)
			vd_poll(d);
		else
			vd_pump(d, 0);
		check(d, g2h ? "guest->host" : "host->guest");
	}
	pthread_join(th, NULL); /* g2h: the host has read everything */
	t0 = now() - t0;
	last_cpus = (cpu_now() - c0) / t0;
	if (getenv("VSOCK_BENCH_DEBUG"))
		fprintf(stderr, "vsock_copy(%d, %s): %.3f s, %u irq timeouts, "
			"%u rx packets, %u credit requests, %u updates\n", nconn,
			g2h ? "g2h" : "h2g", t0, d->irq_timeouts, d->rx_packets,
			c[0]->credit_requests_rx, c[0]->credit_updates_rx);
	check(d, "copy");
	for (int i = 0; i < nconn; i++)
		close(h.fd[i]);
	close(lfd);
	unlink(path);
	devtest_free(t);
	free(d);
	return (double)(per * (size_t)nconn) / t0;
}

static double vsock_setup_guest(void)
{
	struct vdrv *d = calloc(1, sizeof(*d));
	struct devtest *t = dev_new(d);
	char path[128];
	struct acc a;
	pthread_t th;
	double t0;

	snprintf(path, sizeof(path), "%s_%d", uds, 2000);
	a.lfd = listen_at(path);
	a.n = nconnect;
	pthread_create(&th, NULL, accept_close, &a);
	t0 = now();
	for (int i = 0; i < nconnect; i++) {
		struct vd_conn *c = vd_connect(d, 2000);

		if (!c || !VD_WAIT(d, c->state != VD_CONNECTING, 2000) ||
		    c->state != VD_OPEN) {
			fprintf(stderr, "vsock-bench: connect %d failed\n", i);
			exit(1);
		}
		/* The host closed: SHUTDOWN arrives; the guest resets. */
		vd_send(d, c, VD_OP_RST, 0, NULL, 0);
		vd_release(c);
	}
	t0 = now() - t0;
	pthread_join(th, NULL);
	check(d, "setup-guest");
	close(a.lfd);
	devtest_free(t);
	free(d);
	return nconnect / t0;
}

struct hostconn {
	int n;
	int ok;
};

static void *host_connector(void *p)
{
	struct hostconn *h = p;

	for (int i = 0; i < h->n; i++) {
		int fd = connect_to(uds);
		char buf[32];
		ssize_t r;

		if (write(fd, "CONNECT 52\n", 11) != 11)
			die("write");
		r = read(fd, buf, sizeof(buf));
		if (r > 3 && !memcmp(buf, "OK ", 3))
			h->ok++;
		close(fd);
	}
	return NULL;
}

static double vsock_setup_host(void)
{
	struct vdrv *d = calloc(1, sizeof(*d));
	struct devtest *t = dev_new(d);
	struct hostconn h = { .n = nconnect };
	pthread_t th;
	double t0;

	d->listen[d->nlisten++] = 52;
	t0 = now();
	pthread_create(&th, NULL, host_connector, &h);
	/* The guest side: accept (automatic in vd_rx_packet), and reset the
	 * connections the host closed (SHUTDOWN from the device). */
	for (;;) {
		vd_pump(d, 0);
		for (int i = 0; i < VD_MAX_CONNS; i++) {
			struct vd_conn *c = &d->c[i];

			if (c->state == VD_OPEN && (c->peer_shut & 2)) {
				vd_send(d, c, VD_OP_RST, 0, NULL, 0);
				vd_release(c);
			} else if (c->state == VD_CLOSED) {
				vd_release(c);
			}
		}
		if (pthread_tryjoin_np(th, NULL) == 0)
			break;
	}
	t0 = now() - t0;
	check(d, "setup-host");
	devtest_free(t);
	free(d);
	if (h.ok != nconnect) {
		fprintf(stderr, "vsock-bench: %d of %d host connects got OK\n",
			h.ok, nconnect);
		exit(1);
	}
	return nconnect / t0;
}

int main(int argc, char **argv)
{
	double r;
	int opt;

	while ((opt = getopt(argc, argv, "s:n:r:t:Bb")) != -1) {
		switch (opt) {
		case 's':
			total = (size_t)strtoul(optarg, NULL, 10) << 20;
			break;
		case 'n':
			nconnect = atoi(optarg);
			break;
		case 'r':
			repeat = atoi(optarg);
			break;
		case 't':
			only = optarg;
			break;
		case 'B':
			no_baseline = true;
			break;
		case 'b':
			no_vsock = true;
			break;
		default:
			fprintf(stderr, "usage: vsock-bench [-s MiB] [-n CONNECTS] "
				"[-r REPEAT] [-t SCENARIO,...] [-B|-b]\n");
			return 2;
		}
	}
	if (total < (8u << 20) || nconnect < 1 || repeat < 1 || repeat > 99) {
		fprintf(stderr, "vsock-bench: -s >= 8, -n >= 1, -r 1..99\n");
		return 2;
	}
	snprintf(dir, sizeof(dir), "/tmp/smvmm-vsock-bench-XXXXXX");
	if (!mkdtemp(dir))
		die("mkdtemp");
	snprintf(uds, sizeof(uds), "%s/v.sock", dir);

	printf("virtio-vsock through smvmm-virtio-vsock.so (driver model, "
	       "threaded) vs AF_UNIX socketpair; %zu MiB per run, %s of %d\n\n",
	       total >> 20, repeat > 1 ? "median" : "one run", repeat);
	printf("%-14s %14s %14s %8s %9s %9s\n", "scenario", "vsock",
	       "baseline", "ratio", "cpu-vsock", "cpu-base");
	static const struct {
		const char *name;
		int nconn;
		bool g2h;
	} copies[] = {
		{ "g2h-1", 1, true }, { "h2g-1", 1, false },
		{ "g2h-8", 8, true }, { "h2g-8", 8, false },
	};
	for (size_t s = 0; s < sizeof(copies) / sizeof(copies[0]); s++) {
		double vs[repeat], bs[repeat], ratio[repeat];
		double vc[repeat], bc[repeat];

		if (!wanted(copies[s].name))
			continue;
		/* Interleaved, so both see the same machine load. */
		for (int i = 0; i < repeat; i++) {
			last_cpus = 0;
			bs[i] = no_baseline ? 1 : socketpair_copy(copies[s].nconn);
			bc[i] = last_cpus / bs[i] * 1048576 * 1e6;
			last_cpus = 0;
			vs[i] = no_vsock ? 1 : vsock_copy(copies[s].nconn,
							     copies[s].g2h);
			vc[i] = last_cpus / vs[i] * 1048576 * 1e6;
			ratio[i] = vs[i] / bs[i];
		}
		r = median(ratio, repeat);
		printf("%-14s %9.0f MiB/s %9.0f MiB/s %7.2fx %9.0f %9.0f\n",
		       copies[s].name, median(vs, repeat) / 1048576,
		       median(bs, repeat) / 1048576, r, median(vc, repeat),
		       median(bc, repeat));
		fflush(stdout);
	}
	for (int k = 0; k < 2; k++) {
		const char *name = k ? "setup-host" : "setup-guest";
		double vs[repeat], bs[repeat], ratio[repeat];

		if (!wanted(name))
			continue;
		for (int i = 0; i < repeat; i++) {
			bs[i] = unix_setup_rate();
			vs[i] = k ? vsock_setup_host() : vsock_setup_guest();
			ratio[i] = vs[i] / bs[i];
		}
		r = median(ratio, repeat);
		printf("%-14s %11.0f /s %11.0f /s %7.2fx\n", name,
		       median(vs, repeat), median(bs, repeat), r);
		fflush(stdout);
	}

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		return 1;
	return 0;
}
