// SPDX-License-Identifier: MIT
/*
 * blk-bench: virtio-blk through the driver model vs plain pread/pwrite.
 *
 *   blk-bench [-f FILE] [-s MiB] [-t SECONDS] [-q QD] [-j IOTHREADS]
 *             [-c writeback|none|unsafe] [-w WORKLOADS] [-i SLICE]
 *             [-p PLUGIN_DIR]
 *
 * On one image file (created, fully allocated, default 256 MiB) it runs
 * four workloads, each on the host and through the plugin:
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
 * The two sides alternate in slices of -i SLICE seconds (default 0.5) until
 * each had -t SECONDS (default 3), so that load from other processes on a
 * shared machine hits both alike; the plugin device stays up across its
 * slices and drains its queue (uncounted) at the end of each.
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
static double slice = 0.5; /* -i */

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

/* The host side: one thread, pread/pwrite on its own fd. */
struct host {
	const struct workload *w;
	int fd;
	void *buf;
	uint64_t seq;
};

static void host_open(struct host *hs, const struct workload *w)
{
	bool direct = !strcmp(cache, "none");

	hs->w = w;
	hs->seq = 0;
	hs->fd = open(path, O_RDWR | (direct ? O_DIRECT : 0));
	if (hs->fd < 0)
		die("%s: %s", path, strerror(errno));
	if (posix_memalign(&hs->buf, 4096, w->bs))
		die("out of memory");
	memset(hs->buf, 0x5a, w->bs);
}

/* Run for `secs`; adds operations and elapsed seconds. */
static void host_slice(struct host *hs, double secs, uint64_t *ops,
		       double *el)
{
	const struct workload *w = hs->w;
	double t0 = now(), t;

	do {
		for (int i = 0; i < 64; i++) {
			uint64_t off = next_off(w, &hs->seq);
			ssize_t n = w->write
					    ? pwrite(hs->fd, hs->buf, w->bs,
						     (off_t)off)
					    : pread(hs->fd, hs->buf, w->bs,
						    (off_t)off);

			if (n != (ssize_t)w->bs)
				die("host %s: %s", w->name,
				    n < 0 ? strerror(errno) : "short");
		}
		*ops += 64;
		t = now() - t0;
	} while (t < secs);
	*el += t;
}

static void host_close(struct host *hs)
{
	close(hs->fd);
	free(hs->buf);
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

/* The plugin side: the device, its driver state. */
struct plug {
	const struct workload *w;
	struct devtest *t;
	struct slot *slots;
	int head_slot[256];
	uint64_t seq;
};

static void plug_open(struct plug *pl, const struct workload *w)
{
	char err[1024], pathkv[4200], iokv[64], cachekv[64];
	const char *kv[] = { pathkv, iokv, cachekv, NULL };
	struct devtest_opts o = {
		.threaded = true,
		.queue_size = 256,
		.ram_size = ((uint64_t)qd * w->bs + (8 << 20)) * 2,
		.plugin_dir = plugin_dir,
	};
	struct devtest *t;

	pl->w = w;
	pl->seq = 0;
	pl->slots = calloc(qd, sizeof(*pl->slots));
	if (!pl->slots)
		die("out of memory");
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
		struct slot *s = &pl->slots[i];

		s->hdr = devtest_alloc(t, 16, 16);
		s->status = devtest_alloc(t, 1, 1);
		s->data = devtest_alloc(t, w->bs, 4096);
		if (!s->data)
			die("fake RAM too small");
		memset(devtest_gpa(t, s->data, w->bs), 0xa5, w->bs);
	}
	pl->t = t;
}

/*
 * Keep QD requests in flight for `secs`, then drain (not counted); adds
 * completed operations and the elapsed seconds up to the last refill.
 */
static void plug_slice(struct plug *pl, double secs, uint64_t *ops,
		       double *el)
{
	const struct workload *w = pl->w;
	struct devtest *t = pl->t;
	double t0 = now(), e;

	for (unsigned int i = 0; i < qd; i++) {
		submit(t, w, &pl->slots[i], &pl->seq);
		pl->head_slot[pl->slots[i].head] = (int)i;
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
			struct slot *s = &pl->slots[pl->head_slot[id]];
			uint8_t st = *(uint8_t *)devtest_gpa(t, s->status, 1);

			if (st != 0)
				die("%s: status %u", w->name, st);
			submit(t, w, s, &pl->seq);
			pl->head_slot[s->head] = (int)(s - pl->slots);
			done++;
			rc = devtest_poll_used(t, 0, &id, NULL);
		} while (rc == 1);
		if (rc < 0)
			die("%s: %s", w->name, devtest_error(t));
		devtest_kick(t, 0);
		*ops += done;
		e = now() - t0;
	} while (e < secs);
	*el += e;
	/* Drain what is still in flight (not counted). */
	while (devtest_inflight(t, 0)) {
		uint16_t id;

		if (devtest_wait_used(t, 0, 10000, &id, NULL))
			die("drain: %s", devtest_error(t));
		if (*(uint8_t *)devtest_gpa(t, pl->slots[pl->head_slot[id]]
							.status, 1) != 0)
			die("%s: bad status while draining", w->name);
	}
}

static void plug_close(struct plug *pl)
{
	devtest_free(pl->t);
	free(pl->slots);
}

int main(int argc, char **argv)
{
	char defpath[4096];
	int c;

	while ((c = getopt(argc, argv, "f:s:t:q:j:c:w:i:p:h")) != -1) {
		switch (c) {
		case 'f': path = optarg; break;
		case 's': file_size = strtoull(optarg, NULL, 0) << 20; break;
		case 't': seconds = atof(optarg); break;
		case 'q': qd = (unsigned int)atoi(optarg); break;
		case 'j': iothreads = optarg; break;
		case 'c': cache = optarg; break;
		case 'w': only = optarg; break;
		case 'i': slice = atof(optarg); break;
		case 'p': plugin_dir = optarg; break;
		default:
			fprintf(stderr, "usage: blk-bench [-f FILE] [-s MiB] "
					"[-t SECONDS] [-q QD] [-j IOTHREADS] "
					"[-c CACHE] [-w WORKLOADS] [-i SLICE] "
					"[-p PLUGIN_DIR]\n");
			return 2;
		}
	}
	if (qd < 1 || qd > 128 || file_size < (16 << 20) || seconds <= 0 ||
	    slice <= 0)
		die("bad arguments (qd 1..128, size >= 16 MiB, times > 0)");
	if (!path) {
		snprintf(defpath, sizeof(defpath), "%s/smvmm-bench-blk.img",
			 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		path = defpath;
	}
	make_file();
	printf("# image %s, %" PRIu64 " MiB, cache=%s, %.1f s per side in "
	       "%.2f s slices, plugin QD %u, %s I/O threads; host: 1 thread "
	       "pread/pwrite\n", path, file_size >> 20, cache, seconds, slice,
	       qd, iothreads);
	printf("%-14s %14s %14s %7s\n", "workload", "host", "plugin",
	       "ratio");
	for (size_t i = 0; i < sizeof(loads) / sizeof(loads[0]); i++) {
		const struct workload *w = &loads[i];
		uint64_t hops = 0, pops = 0;
		double hel = 0, pel = 0, h, p, scale;
		bool mb = w->bs >= (1 << 20);
		unsigned int n = (unsigned int)(seconds / slice + 0.5);
		struct host hs;
		struct plug pl;

		if (!selected(w->name))
			continue;
		/* Host and plugin alternate in slices: load from other
		 * processes on a shared machine hits both alike. */
		host_open(&hs, w);
		plug_open(&pl, w);
		for (unsigned int k = 0; k < (n ? n : 1); k++) {
			host_slice(&hs, seconds / (n ? n : 1), &hops, &hel);
			plug_slice(&pl, seconds / (n ? n : 1), &pops, &pel);
		}
		plug_close(&pl);
		host_close(&hs);
		h = (double)hops / hel;
		p = (double)pops / pel;
		scale = mb ? w->bs / 1e6 : 1.0;

		printf("%-14s %10.0f %-3s %10.0f %-3s %7.2f\n", w->name,
		       h * scale, mb ? "MB/s" : "IOPS", p * scale,
		       mb ? "MB/s" : "IOPS", p / h);
		fflush(stdout);
	}
	unlink(path);
	return 0;
}
