// SPDX-License-Identifier: MIT
/*
 * blk-bench: virtio-blk through the driver model vs plain pread/pwrite.
 *
 *   blk-bench [-f FILE] [-s MiB] [-t SECONDS] [-q QD] [-j IOTHREADS]
 *             [-c writeback|none|unsafe] [-w WORKLOADS] [-p PLUGIN_DIR]
 *
 * On one image file (created, fully allocated, default 256 MiB) it runs
 * four workloads twice, first on the host, then through the plugin:
 *
 *   randread 4k   random 4 KiB-aligned reads        (IOPS)
 *   randwrite 4k  random 4 KiB-aligned writes       (IOPS)
 *   seqread 1m    sequential 1 MiB reads, wrapping  (MB/s)
 *   seqwrite 1m   sequential 1 MiB writes, wrapping (MB/s)
 *
 * host:   one thread, pread/pwrite in a loop (fio's psync engine; the
 *         file opened O_DIRECT with -c none);
 * plugin: the real smvmm-virtio-blk.so loaded through the driver model
 *         (libsmvmm-devtest, threaded mode: I/O thread + ioeventfd kicks,
 *         interrupts), a driver keeping QD requests (default 32) in flight
 *         on one queue, re-filling the ring with every batch of completions
 *         and kicking once per batch (the way Linux's blk-mq driver does).
 *
 * -w runs only the workloads whose names contain one of the comma-separated
 * words (-w randread, -w rand,seqwrite); default all.
 *
 * Every completion's status byte is checked; a non-OK status aborts.  It
 * prints one line per workload with both results and plugin/host.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "devtest.h"

#define SECTOR 512u

static const char *path;
static uint64_t file_size = 256ULL << 20;
static double seconds = 3.0;
static unsigned int qd = 32;
static const char *iothreads = "4";
static const char *cache = "writeback";
static const char *plugin_dir;
static const char *only; /* -w */

/* Is workload `name` selected by -w (comma-separated substrings)? */
static bool selected(const char *name)
{
	const char *p = only;

	if (!p || !*p)
		return true;
	while (*p) {
		size_t n = strcspn(p, ",");
		char word[64];

		if (n && n < sizeof(word)) {
			memcpy(word, p, n);
			word[n] = '\0';
			if (strstr(name, word))
				return true;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return false;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rnd_state = 88172645463325252ULL;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

struct workload {
	const char *name;
	bool write;
	bool random;
	uint32_t bs;
};

static const struct workload loads[] = {
	{ "randread 4k", false, true, 4096 },
	{ "randwrite 4k", true, true, 4096 },
	{ "seqread 1m", false, false, 1 << 20 },
	{ "seqwrite 1m", true, false, 1 << 20 },
};

/* Offsets: random bs-aligned, or sequential wrapping. */
static uint64_t next_off(const struct workload *w, uint64_t *seq)
{
	uint64_t off;

	if (w->random)
		return (rnd() % (file_size / w->bs)) * w->bs;
	off = *seq;
	*seq = (*seq + w->bs) % file_size;
	return off;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "blk-bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void make_file(void)
{
	size_t chunk = 1 << 20;
	uint8_t *buf = malloc(chunk);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || !buf)
		die("%s: %s", path, strerror(errno));
	for (size_t i = 0; i < chunk; i++)
		buf[i] = (uint8_t)rnd();
	for (uint64_t off = 0; off < file_size; off += chunk)
		if (pwrite(fd, buf, chunk, (off_t)off) != (ssize_t)chunk)
			die("write %s: %s", path, strerror(errno));
	fsync(fd);
	close(fd);
	free(buf);
}

/* Operations per second on the host, one thread. */
static double host_run(const struct workload *w, uint64_t *ops_out)
{
	bool direct = !strcmp(cache, "none");
	int fd = open(path, O_RDWR | (direct ? O_DIRECT : 0));
	uint64_t seq = 0, ops = 0;
	void *buf;
	double t0, t;

	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	if (posix_memalign(&buf, 4096, w->bs))
		die("out of memory");
	memset(buf, 0x5a, w->bs);
	t0 = now();
	do {
		for (int i = 0; i < 64; i++) {
			uint64_t off = next_off(w, &seq);
			ssize_t n = w->write ? pwrite(fd, buf, w->bs, (off_t)off)
					     : pread(fd, buf, w->bs, (off_t)off);

			if (n != (ssize_t)w->bs)
				die("host %s: %s", w->name,
				    n < 0 ? strerror(errno) : "short");
		}
		ops += 64;
		t = now() - t0;
	} while (t < seconds);
	close(fd);
	free(buf);
	*ops_out = ops;
	return (double)ops / t;
}

struct slot {
	uint64_t hdr, status, data;
	int head;
};

static void submit(struct devtest *t, const struct workload *w,
		   struct slot *s, uint64_t *seq)
{
	uint8_t *h = devtest_gpa(t, s->hdr, 16);
	uint32_t type = htole32(w->write ? 1 : 0);
	uint64_t sector = htole64(next_off(w, seq) / SECTOR);

	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
	*(uint8_t *)devtest_gpa(t, s->status, 1) = 0xee;
	if (devtest_chain_begin(t, 0, 0) ||
	    devtest_chain_add(t, s->hdr, 16, false) < 0 ||
	    devtest_chain_add(t, s->data, w->bs, !w->write) < 0 ||
	    devtest_chain_add(t, s->status, 1, true) < 0 ||
	    (s->head = devtest_chain_submit(t)) < 0)
		die("submit: %s", devtest_error(t));
}

static double plugin_run(const struct workload *w, uint64_t *ops_out)
{
	char err[1024], pathkv[4200], iokv[64], cachekv[64];
	const char *kv[] = { pathkv, iokv, cachekv, NULL };
	struct devtest_opts o = {
		.threaded = true,
		.queue_size = 256,
		.ram_size = ((uint64_t)qd * w->bs + (8 << 20)) * 2,
		.plugin_dir = plugin_dir,
	};
	struct slot *slots = calloc(qd, sizeof(*slots));
	int head_slot[256];
	uint64_t seq = 0, ops = 0;
	struct devtest *t;
	double t0, el;

	snprintf(pathkv, sizeof(pathkv), "path=%s", path);
	snprintf(iokv, sizeof(iokv), "iothreads=%s", iothreads);
	snprintf(cachekv, sizeof(cachekv), "cache=%s", cache);
	t = devtest_new("virtio-blk", kv, &o, err, sizeof(err));
	if (!t)
		die("%s", err);
	/* No EVENT_IDX: an interrupt per completion batch, what the
	 * driver model waits on (Linux would re-arm used_event instead). */
	if (devtest_init_device(t, (1ULL << 32) | (1ULL << 9)))
		die("init: %s", devtest_error(t));
	for (unsigned int i = 0; i < qd; i++) {
		slots[i].hdr = devtest_alloc(t, 16, 16);
		slots[i].status = devtest_alloc(t, 1, 1);
		slots[i].data = devtest_alloc(t, w->bs, 4096);
		if (!slots[i].data)
			die("fake RAM too small");
		memset(devtest_gpa(t, slots[i].data, w->bs), 0xa5, w->bs);
	}
	t0 = now();
	for (unsigned int i = 0; i < qd; i++) {
		submit(t, w, &slots[i], &seq);
		head_slot[slots[i].head] = (int)i;
	}
	devtest_kick(t, 0);
	do {
		unsigned int done = 0;
		uint16_t id;
		int rc;

		/* One completion (waiting), then every other one there is. */
		rc = devtest_wait_used(t, 0, 10000, &id, NULL);
		if (rc)
			die("%s: %s", w->name, devtest_error(t));
		do {
			struct slot *s = &slots[head_slot[id]];
			uint8_t st = *(uint8_t *)devtest_gpa(t, s->status, 1);

			if (st != 0)
				die("%s: status %u", w->name, st);
			submit(t, w, s, &seq);
			head_slot[s->head] = (int)(s - slots);
			done++;
			rc = devtest_poll_used(t, 0, &id, NULL);
		} while (rc == 1);
		if (rc < 0)
			die("%s: %s", w->name, devtest_error(t));
		devtest_kick(t, 0);
		ops += done;
		el = now() - t0;
	} while (el < seconds);
	/* Drain what is still in flight (not counted). */
	while (devtest_inflight(t, 0))
		if (devtest_wait_used(t, 0, 10000, NULL, NULL))
			die("drain: %s", devtest_error(t));
	devtest_free(t);
	free(slots);
	*ops_out = ops;
	return (double)ops / el;
}

int main(int argc, char **argv)
{
	char defpath[4096];
	int c;

	while ((c = getopt(argc, argv, "f:s:t:q:j:c:w:p:h")) != -1) {
		switch (c) {
		case 'f': path = optarg; break;
		case 's': file_size = strtoull(optarg, NULL, 0) << 20; break;
		case 't': seconds = atof(optarg); break;
		case 'q': qd = (unsigned int)atoi(optarg); break;
		case 'j': iothreads = optarg; break;
		case 'c': cache = optarg; break;
		case 'w': only = optarg; break;
		case 'p': plugin_dir = optarg; break;
		default:
			fprintf(stderr, "usage: blk-bench [-f FILE] [-s MiB] "
					"[-t SECONDS] [-q QD] [-j IOTHREADS] "
					"[-c CACHE] [-w WORKLOADS] "
					"[-p PLUGIN_DIR]\n");
			return 2;
		}
	}
	if (qd < 1 || qd > 128 || file_size < (16 << 20) || seconds <= 0)
		die("bad arguments (qd 1..128, size >= 16 MiB)");
	if (!path) {
		snprintf(defpath, sizeof(defpath), "%s/smvmm-bench-blk.img",
			 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		path = defpath;
	}
	make_file();
	printf("# image %s, %" PRIu64 " MiB, cache=%s, %.1f s per run, "
	       "plugin QD %u, %s I/O threads; host: 1 thread pread/pwrite\n",
	       path, file_size >> 20, cache, seconds, qd, iothreads);
	printf("%-14s %14s %14s %7s\n", "workload", "host", "plugin",
	       "ratio");
	for (size_t i = 0; i < sizeof(loads) / sizeof(loads[0]); i++) {
		const struct workload *w = &loads[i];
		uint64_t hops, pops;
		double h, p, scale;
		bool mb = w->bs >= (1 << 20);

		if (!selected(w->name))
			continue;
		h = host_run(w, &hops);
		p = plugin_run(w, &pops);
		scale = mb ? w->bs / 1e6 : 1.0;

		printf("%-14s %10.0f %-3s %10.0f %-3s %7.2f\n", w->name,
		       h * scale, mb ? "MB/s" : "IOPS", p * scale,
		       mb ? "MB/s" : "IOPS", p / h);
		fflush(stdout);
	}
	unlink(path);
	return 0;
}
