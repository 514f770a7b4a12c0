// SPDX-License-Identifier: MIT
/*
 * The driver model: an in-process virtio driver (the guest's side) over fake
 * guest RAM, driving a real plugin through the real loader, device host and
 * virtio-mmio transport.  See devtest.h for the API, docs/driver-model.md for
 * the picture.
 *
 * Memory ordering mirrors a real driver (VIRTIO 1.2 §2.7.13): descriptors and
 * the avail ring entry are written before avail->idx is published with a
 * release store; used->idx is read with an acquire load before the used
 * element; a full fence separates publishing avail->idx from reading the
 * device's notification suppression (§2.7.10).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "devtest.h"
#include "evloop.h"
#include "gmem.h"
#include "loader.h"

#define DT_PAGE 4096ULL
#define DT_DEFAULT_RAM (4ULL << 20)
#define DT_DEFAULT_HOLE (1ULL << 20)
#define DT_DEFAULT_QSIZE 256
#define DT_MAX_PENDING (VIRTQ_MAX_SIZE + DEVTEST_MAX_INDIRECT)

struct dt_head {
	bool inflight;
	bool checkable; /* built by devtest_chain_*: wlen is exact */
	uint16_t ndesc;  /* ring descriptors devtest allocated for it */
	uint32_t wlen;   /* device-writable bytes */
};

struct dt_queue {
	struct devtest *t;
	uint16_t index;
	uint16_t size;      /* 0 = not set up */
	uint16_t mem_size;  /* ring memory is big enough for this size */
	bool event_idx;

	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint64_t ind_gpa;   /* indirect pool: mem_size tables, 0 = none */
	struct virtq_desc *desc;
	uint16_t *avail;    /* flags, idx, ring[size], used_event */
	uint8_t *used;      /* flags, idx, ring[size]{id,len}, avail_event */
	struct virtq_desc *ind;

	uint16_t avail_idx; /* driver shadow of avail->idx */
	uint16_t last_used; /* next used element to consume */
	uint16_t kicked_idx;/* avail_idx at the last kick */

	/* descriptor allocation, host side (the device cannot corrupt it) */
	uint16_t *free_stack;
	unsigned int nfree;
	uint16_t *hnext;
	struct dt_head *heads;
	unsigned int host_cap; /* entries in the three arrays above */
	unsigned int inflight;

	int efd;            /* ioeventfd (threaded mode), -1 */
	bool ioevent_on;
};

struct dt_pend {
	uint16_t idx;
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
	bool raw;
};

struct devtest {
	struct devtest_opts opts;
	char *type;
	char *id;

	/* identity and keys handed to the device host (must outlive it) */
	struct device_kv *kv;
	unsigned int nkv;

	struct smvmm_plugin plugin;
	bool plugin_loaded;

	struct gmem mem;
	uint64_t rbase[2], rsize[2];
	uint64_t next[2];   /* bump pointers (gpa) */
	uint64_t sys_top;   /* region 0 ring area grows down from here */

	struct evloop loop;
	bool loop_inited, loop_started;

	struct smvmm_host host;
	bool host_inited, created;
	struct vmmio mmio;
	bool mmio_inited;

	pthread_mutex_t irq_lock;
	pthread_cond_t irq_cond;
	uint64_t irq_count;

	uint64_t features;
	unsigned int nqueues;
	struct dt_queue q[SMVMM_MAX_QUEUES];

	struct {
		bool active;
		bool indirect;
		uint16_t q;
		uint16_t head; /* indirect: the ring descriptor */
		unsigned int n;
		struct dt_pend *e;
	} chain;

	char errbuf[512];
};

static void dt_err(struct devtest *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void dt_err(struct devtest *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->errbuf, sizeof(t->errbuf), fmt, ap);
	va_end(ap);
}

const char *devtest_error(const struct devtest *t)
{
	return t->errbuf;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- registers -------------------------------------------------------- */

void devtest_access(struct devtest *t, uint32_t off, void *data, uint32_t len,
		    bool is_write)
{
	vmmio_access(&t->mmio, off, data, len, is_write);
}

uint32_t devtest_read32(struct devtest *t, uint32_t off)
{
	uint32_t v = 0;

	vmmio_access(&t->mmio, off, (uint8_t *)&v, 4, false);
	return v;
}

void devtest_write32(struct devtest *t, uint32_t off, uint32_t val)
{
	vmmio_access(&t->mmio, off, (uint8_t *)&val, 4, true);
}

uint32_t devtest_status(struct devtest *t)
{
	return devtest_read32(t, VIRTIO_MMIO_STATUS);
}

/* Largest naturally aligned access of at most 4 bytes (8 for a lone u64). */
static uint32_t cfg_chunk(uint32_t off, uint32_t left, uint32_t total)
{
	if (total == 8 && left == 8 && !(off & 7))
		return 8;
	if (left >= 4 && !(off & 3))
		return 4;
	if (left >= 2 && !(off & 1))
		return 2;
	return 1;
}

void devtest_config_read(struct devtest *t, uint32_t off, void *buf,
			 uint32_t len)
{
	uint8_t *p = buf;
	uint32_t done = 0;

	while (done < len) {
		uint32_t n = cfg_chunk(off + done, len - done, len);

		vmmio_access(&t->mmio, VIRTIO_MMIO_CONFIG + off + done,
			     p + done, n, false);
		done += n;
	}
}

void devtest_config_write(struct devtest *t, uint32_t off, const void *buf,
			  uint32_t len)
{
	const uint8_t *p = buf;
	uint32_t done = 0;

	while (done < len) {
		uint32_t n = cfg_chunk(off + done, len - done, len);
		uint8_t tmp[8];

		memcpy(tmp, p + done, n);
		vmmio_access(&t->mmio, VIRTIO_MMIO_CONFIG + off + done, tmp,
			     n, true);
		done += n;
	}
}

/* ---- interrupts ------------------------------------------------------- */

static void dt_irq(void *opaque)
{
	struct devtest *t = opaque;

	pthread_mutex_lock(&t->irq_lock);
	t->irq_count++;
	pthread_cond_broadcast(&t->irq_cond);
	pthread_mutex_unlock(&t->irq_lock);
}

uint64_t devtest_irq_count(struct devtest *t)
{
	uint64_t n;

	pthread_mutex_lock(&t->irq_lock);
	n = t->irq_count;
	pthread_mutex_unlock(&t->irq_lock);
	return n;
}

int devtest_wait_irq(struct devtest *t, uint64_t seen, int timeout_us)
{
	struct timespec ts;
	int rc = 0;

	if (!t->opts.threaded) {
		if (devtest_irq_count(t) == seen)
			evloop_run_once(&t->loop, (timeout_us + 999) / 1000);
		return devtest_irq_count(t) != seen ? 0 : -ETIMEDOUT;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)(timeout_us % 1000000) * 1000;
	ts.tv_sec += timeout_us / 1000000 + ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&t->irq_lock);
	while (t->irq_count == seen && rc == 0)
		rc = pthread_cond_timedwait(&t->irq_cond, &t->irq_lock, &ts);
	rc = t->irq_count != seen ? 0 : -ETIMEDOUT;
	pthread_mutex_unlock(&t->irq_lock);
	return rc;
}

uint32_t devtest_ack_irq(struct devtest *t)
{
	uint32_t isr = devtest_read32(t, VIRTIO_MMIO_INTERRUPT_STATUS);

	if (isr)
		devtest_write32(t, VIRTIO_MMIO_INTERRUPT_ACK, isr);
	return isr;
}

/* ---- ioeventfd (threaded mode) ------------------------------------------ */

static void dt_kick_cb(void *opaque, int fd, uint32_t events)
{
	struct dt_queue *dq = opaque;
	uint64_t v;

	(void)events;
	/* Consume every pending kick: one notify covers them (§2.7.13.4). */
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return;
	vmmio_queue_notify(&dq->t->mmio, dq->index);
}

/*
 * Transport hook, vCPU (driver) thread with the register lock held.  The
 * eventfd and its watch are created once and kept until devtest_free: on
 * de-assign only the flag drops, so no unwatch (which may wait for the
 * loop) runs under the transport's lock.
 */
static void dt_ioevent(void *opaque, uint16_t q, bool assign)
{
	struct devtest *t = opaque;
	struct dt_queue *dq;

	if (q >= SMVMM_MAX_QUEUES)
		return;
	dq = &t->q[q];
	if (!assign) {
		__atomic_store_n(&dq->ioevent_on, false, __ATOMIC_RELEASE);
		return;
	}
	if (dq->efd < 0) {
		dq->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (dq->efd < 0)
			return; /* kicks fall back to QueueNotify writes */
		if (evloop_watch(&t->loop, dq->efd, EPOLLIN, dt_kick_cb, dq,
				 t) < 0) {
			close(dq->efd);
			dq->efd = -1;
			return;
		}
	}
	__atomic_store_n(&dq->ioevent_on, true, __ATOMIC_RELEASE);
}

/* ---- fake RAM ----------------------------------------------------------- */

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

uint64_t devtest_alloc_in(struct devtest *t, unsigned int region,
			  uint64_t size, uint64_t align)
{
	uint64_t start, end, limit;
	void *p;

	if (region > 1 || size == 0)
		return 0;
	if (align == 0)
		align = 8;
	if (align & (align - 1))
		return 0;
	start = align_up(t->next[region], align);
	limit = region == 0 ? t->sys_top : t->rbase[1] + t->rsize[1];
	if (start < t->next[region] || start > limit || size > limit - start)
		return 0;
	end = start + size;
	t->next[region] = end;
	p = gmem_hva(&t->mem, start, size);
	if (p)
		memset(p, 0, size);
	return start;
}

uint64_t devtest_alloc(struct devtest *t, uint64_t size, uint64_t align)
{
	uint64_t gpa = devtest_alloc_in(t, 0, size, align);

	return gpa ? gpa : devtest_alloc_in(t, 1, size, align);
}

/* Ring memory: top-down in region 0, never released by marks. */
static uint64_t sys_alloc(struct devtest *t, uint64_t size, uint64_t align)
{
	uint64_t top = t->sys_top;

	if (size > top - t->next[0])
		return 0;
	top = (top - size) & ~(align - 1);
	if (top < t->next[0] || top == 0)
		return 0;
	t->sys_top = top;
	memset(gmem_hva(&t->mem, top, size), 0, size);
	return top;
}

struct devtest_mark devtest_alloc_mark(const struct devtest *t)
{
	struct devtest_mark m = { { t->next[0], t->next[1] } };

	return m;
}

void devtest_alloc_release(struct devtest *t, struct devtest_mark m)
{
	for (int i = 0; i < 2; i++)
		if (m.next[i] >= t->rbase[i] && m.next[i] <= t->next[i])
			t->next[i] = m.next[i];
}

void *devtest_gpa(struct devtest *t, uint64_t gpa, uint64_t len)
{
	return gmem_hva(&t->mem, gpa, len);
}

int devtest_region(const struct devtest *t, unsigned int i, uint64_t *gpa,
		   uint64_t *size)
{
	if (i > 1)
		return -EINVAL;
	if (gpa)
		*gpa = t->rbase[i];
	if (size)
		*size = t->rsize[i];
	return 0;
}

uint64_t devtest_hole_gpa(const struct devtest *t)
{
	return t->rbase[0] + t->rsize[0];
}

uint64_t devtest_ram_end(const struct devtest *t)
{
	return t->rbase[1] + t->rsize[1];
}

/* ---- creation --------------------------------------------------------- */

/* Parse "key=value" strings into device_kv (lines 1, 2, ...). */
static int dt_parse_kv(struct devtest *t, const char *const *kv, char *err,
		       size_t errlen)
{
	unsigned int n = 0;

	while (kv && kv[n])
		n++;
	if (!n)
		return 0;
	t->kv = calloc(n, sizeof(*t->kv));
	if (!t->kv) {
		snprintf(err, errlen, "devtest: out of memory");
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < n; i++) {
		const char *eq = strchr(kv[i], '=');
		char *key;

		if (!eq || eq == kv[i]) {
			snprintf(err, errlen,
				 "devtest: kv[%u] \"%s\": expected key=value",
				 i, kv[i]);
			return -EINVAL;
		}
		key = strndup(kv[i], (size_t)(eq - kv[i]));
		if (!key) {
			snprintf(err, errlen, "devtest: out of memory");
			return -ENOMEM;
		}
		t->kv[i].key = key;
		t->kv[i].value = strdup(eq + 1);
		t->kv[i].line = (int)i + 1;
		t->nkv = i + 1;
		if (!t->kv[i].value) {
			snprintf(err, errlen, "devtest: out of memory");
			return -ENOMEM;
		}
		for (unsigned int j = 0; j < i; j++)
			if (!strcmp(t->kv[j].key, key)) {
				snprintf(err, errlen,
					 "devtest:%u: [device.%s] %s: "
					 "duplicate key", i + 1, t->id, key);
				return -EINVAL;
			}
	}
	return 0;
}

/* The INI-level check (machine_check_device_keys) for keys given as kv. */
static int dt_check_keys(struct devtest *t, char *err, size_t errlen)
{
	const char *const *allowed = t->plugin.desc.config_keys;

	for (unsigned int i = 0; i < t->nkv; i++) {
		bool ok = false;
		size_t off;

		for (unsigned int j = 0; allowed && allowed[j]; j++)
			if (!strcmp(allowed[j], t->kv[i].key))
				ok = true;
		if (ok)
			continue;
		off = (size_t)snprintf(err, errlen,
				       "devtest:%d: [device.%s] %s: unknown "
				       "key for type %s (known:",
				       t->kv[i].line, t->id, t->kv[i].key,
				       t->type);
		for (unsigned int j = 0; allowed && allowed[j]; j++)
			if (off < errlen)
				off += (size_t)snprintf(err + off, errlen - off,
							" %s", allowed[j]);
		if (!allowed || !allowed[0])
			if (off < errlen)
				off += (size_t)snprintf(err + off, errlen - off,
							" none");
		if (off < errlen)
			snprintf(err + off, errlen - off, ")");
		return -EINVAL;
	}
	return 0;
}

/*
 * device_create reports a plugin's first config_error() as
 * "<file>:<line>: [device.<id>] <key>: <msg>" in err, which tests match.
 */
static int dt_device_create(struct devtest *t, char *err, size_t errlen)
{
	return device_create(&t->host, &t->plugin.dev_ops, err, errlen);
}

struct devtest *devtest_new(const char *type, const char *const *kv,
			    const struct devtest_opts *opts, char *err,
			    size_t errlen)
{
	struct loader_search search = { 0 };
	struct devtest *t;
	uint64_t half;
	int rc;

	if (errlen)
		err[0] = '\0';
	if (!type) {
		snprintf(err, errlen, "devtest: no device type");
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "devtest: out of memory");
		return NULL;
	}
	if (opts)
		t->opts = *opts;
	if (!t->opts.ram_size)
		t->opts.ram_size = DT_DEFAULT_RAM;
	if (!t->opts.hole_size)
		t->opts.hole_size = DT_DEFAULT_HOLE;
	pthread_mutex_init(&t->irq_lock, NULL);
	pthread_cond_init(&t->irq_cond, NULL);
	for (unsigned int i = 0; i < SMVMM_MAX_QUEUES; i++) {
		t->q[i].t = t;
		t->q[i].index = (uint16_t)i;
		t->q[i].efd = -1;
	}
	gmem_init(&t->mem);
	t->type = strdup(type);
	t->id = strdup(t->opts.id ? t->opts.id : "devtest");
	t->chain.e = calloc(DT_MAX_PENDING, sizeof(*t->chain.e));
	if (!t->type || !t->id || !t->chain.e) {
		snprintf(err, errlen, "devtest: out of memory");
		goto err_free;
	}
	t->opts.id = t->id;
	t->opts.plugin_dir = NULL; /* not kept: the caller's string */

	if (dt_parse_kv(t, kv, err, errlen))
		goto err_free;

	search.plugin_dir = opts ? opts->plugin_dir : NULL;
	search.exe_dir = getenv("SMVMM_BUILD_DIR");
	if (search.exe_dir && !search.exe_dir[0])
		search.exe_dir = NULL;
	rc = loader_load(type, SMVMM_PLUGIN_DEVICE, &search, &t->plugin, err,
			 errlen);
	if (rc)
		goto err_free;
	t->plugin_loaded = true;

	if (!t->opts.allow_unknown_keys && dt_check_keys(t, err, errlen))
		goto err_free;

	/* Two regions with a hole: buffers that straddle or fall into it
	 * must be refused by the core. */
	half = align_up(t->opts.ram_size, 2 * DT_PAGE) / 2;
	t->opts.hole_size = align_up(t->opts.hole_size, DT_PAGE);
	t->rbase[0] = 0;
	t->rsize[0] = half;
	t->rbase[1] = half + t->opts.hole_size;
	t->rsize[1] = half;
	rc = gmem_add_ram(&t->mem, t->rbase[0], half, "devtest-ram0");
	if (rc >= 0)
		rc = gmem_add_ram(&t->mem, t->rbase[1], half, "devtest-ram1");
	if (rc < 0) {
		snprintf(err, errlen, "devtest: guest RAM (2 x %llu bytes): %s",
			 (unsigned long long)half, strerror(-rc));
		goto err_free;
	}
	t->next[0] = t->rbase[0] + DT_PAGE; /* gpa 0 is never handed out */
	t->next[1] = t->rbase[1];
	t->sys_top = t->rbase[0] + t->rsize[0];

	rc = evloop_init(&t->loop);
	if (rc) {
		snprintf(err, errlen, "devtest: evloop_init: %s",
			 strerror(-rc));
		goto err_free;
	}
	t->loop_inited = true;

	device_host_init(&t->host, t->id, "devtest", 0, t->kv, t->nkv, &t->mem,
			 &t->loop);
	t->host_inited = true;
	if (dt_device_create(t, err, errlen) < 0)
		goto err_free;
	t->created = true;

	vmmio_init(&t->mmio, &t->host, dt_irq, t,
		   t->opts.threaded ? dt_ioevent : NULL, t);
	t->mmio_inited = true;

	if (t->opts.threaded) {
		rc = evloop_start(&t->loop);
		if (rc) {
			snprintf(err, errlen, "devtest: evloop_start: %s",
				 strerror(-rc));
			goto err_free;
		}
		t->loop_started = true;
	}
	return t;

err_free:
	devtest_free(t);
	return NULL;
}

static void dt_queue_free(struct dt_queue *dq)
{
	free(dq->free_stack);
	free(dq->hnext);
	free(dq->heads);
}

void devtest_free(struct devtest *t)
{
	if (!t)
		return;
	if (t->loop_started)
		evloop_stop(&t->loop);
	/* device_destroy resets the device and drops the plugin's watches;
	 * then the transport, whose hooks the host may still call until
	 * then. */
	if (t->host_inited)
		device_destroy(&t->host);
	if (t->mmio_inited)
		vmmio_destroy(&t->mmio);
	if (t->loop_inited) {
		evloop_unwatch_owner(&t->loop, t);
		evloop_destroy(&t->loop);
	}
	for (unsigned int i = 0; i < SMVMM_MAX_QUEUES; i++) {
		if (t->q[i].efd >= 0)
			close(t->q[i].efd);
		dt_queue_free(&t->q[i]);
	}
	if (t->plugin_loaded)
		loader_close(&t->plugin);
	gmem_destroy(&t->mem);
	for (unsigned int i = 0; i < t->nkv; i++) {
		free((char *)t->kv[i].key);
		free((char *)t->kv[i].value);
	}
	free(t->kv);
	free(t->chain.e);
	free(t->type);
	free(t->id);
	pthread_cond_destroy(&t->irq_cond);
	pthread_mutex_destroy(&t->irq_lock);
	free(t);
}

/* ---- initialisation ----------------------------------------------------- */

static void dt_set_status(struct devtest *t, uint32_t s)
{
	devtest_write32(t, VIRTIO_MMIO_STATUS, s);
}

/* Forget the driver side of queue q (ring memory is kept). */
static void dt_queue_forget(struct dt_queue *dq)
{
	dq->size = 0;
	dq->avail_idx = dq->last_used = dq->kicked_idx = 0;
	dq->nfree = 0;
	dq->inflight = 0;
}

int devtest_reset(struct devtest *t)
{
	devtest_chain_abort(t);
	dt_set_status(t, 0);
	/* §4.2.3.1.1 / §2.4: reset is complete when Status reads back 0. */
	for (int i = 0; devtest_status(t) != 0; i++) {
		if (i == 1000) {
			dt_err(t, "reset: Status still %#x",
			       devtest_status(t));
			return -EIO;
		}
		usleep(1000);
	}
	for (unsigned int i = 0; i < SMVMM_MAX_QUEUES; i++)
		dt_queue_forget(&t->q[i]);
	t->features = 0;
	return 0;
}

int devtest_negotiate(struct devtest *t, uint64_t accept, uint64_t *features)
{
	uint32_t lo, hi, st;
	uint64_t f;

	/* §3.1.1 steps 2-6. */
	st = VIRTIO_STATUS_ACKNOWLEDGE;
	dt_set_status(t, st);
	st |= VIRTIO_STATUS_DRIVER;
	dt_set_status(t, st);

	devtest_write32(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	lo = devtest_read32(t, VIRTIO_MMIO_DEVICE_FEATURES);
	devtest_write32(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	hi = devtest_read32(t, VIRTIO_MMIO_DEVICE_FEATURES);
	f = ((uint64_t)hi << 32 | lo) & accept;

	devtest_write32(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	devtest_write32(t, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
	devtest_write32(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	devtest_write32(t, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));

	st |= VIRTIO_STATUS_FEATURES_OK;
	dt_set_status(t, st);
	if (!(devtest_status(t) & VIRTIO_STATUS_FEATURES_OK)) {
		/* §3.1.1 step 6: not supported; the driver gives up. */
		dt_set_status(t, st | VIRTIO_STATUS_FAILED);
		dt_err(t, "device refused features %#llx (FEATURES_OK clear)",
		       (unsigned long long)f);
		return -ENOTSUP;
	}
	t->features = f;
	if (features)
		*features = f;
	return 0;
}

/* Host-side arrays for a queue of `size` entries. */
static int dt_queue_host_alloc(struct dt_queue *dq, uint16_t size)
{
	if (dq->host_cap >= size)
		return 0;
	dt_queue_free(dq);
	dq->free_stack = calloc(size, sizeof(*dq->free_stack));
	dq->hnext = calloc(size, sizeof(*dq->hnext));
	dq->heads = calloc(size, sizeof(*dq->heads));
	dq->host_cap = 0;
	if (!dq->free_stack || !dq->hnext || !dq->heads)
		return -ENOMEM;
	dq->host_cap = size;
	return 0;
}

static uint64_t avail_bytes(uint16_t size)
{
	return 6 + 2ULL * size; /* flags, idx, ring, used_event */
}

static uint64_t used_bytes(uint16_t size)
{
	return 6 + 8ULL * size; /* flags, idx, ring, avail_event */
}

static void write64_regs(struct devtest *t, uint32_t lo_off, uint64_t v)
{
	devtest_write32(t, lo_off, (uint32_t)v);
	devtest_write32(t, lo_off + 4, (uint32_t)(v >> 32));
}

int devtest_setup_queue(struct devtest *t, uint16_t q, uint16_t size)
{
	struct dt_queue *dq;
	uint32_t max;
	uint16_t def;
	int rc;

	if (q >= SMVMM_MAX_QUEUES) {
		dt_err(t, "queue %u: out of range", q);
		return -EINVAL;
	}
	dq = &t->q[q];
	/* §4.2.3.2 */
	devtest_write32(t, VIRTIO_MMIO_QUEUE_SEL, q);
	if (devtest_read32(t, VIRTIO_MMIO_QUEUE_READY)) {
		dt_err(t, "queue %u: QueueReady already 1", q);
		return -EBUSY;
	}
	max = devtest_read32(t, VIRTIO_MMIO_QUEUE_NUM_MAX);
	if (max == 0) {
		dt_err(t, "queue %u: not available (QueueNumMax 0)", q);
		return -ENOENT;
	}
	def = t->opts.queue_size ? t->opts.queue_size : DT_DEFAULT_QSIZE;
	if (!size)
		size = def < max ? def : (uint16_t)max;
	if (size > max || (size & (size - 1))) {
		dt_err(t, "queue %u: size %u (QueueNumMax %u, power of two)",
		       q, size, max);
		return -EINVAL;
	}
	rc = dt_queue_host_alloc(dq, size);
	if (rc) {
		dt_err(t, "queue %u: out of memory", q);
		return rc;
	}
	if (dq->mem_size < size) {
		dq->desc_gpa = sys_alloc(t, 16ULL * size, DT_PAGE);
		dq->avail_gpa = sys_alloc(t, avail_bytes(size), 64);
		dq->used_gpa = sys_alloc(t, used_bytes(size), DT_PAGE);
		dq->ind_gpa = 0;
		if (!dq->desc_gpa || !dq->avail_gpa || !dq->used_gpa) {
			dt_err(t, "queue %u: no fake RAM for the rings", q);
			dq->mem_size = 0;
			return -ENOMEM;
		}
		dq->mem_size = size;
	}
	dq->desc = gmem_hva(&t->mem, dq->desc_gpa, 16ULL * size);
	dq->avail = gmem_hva(&t->mem, dq->avail_gpa, avail_bytes(size));
	dq->used = gmem_hva(&t->mem, dq->used_gpa, used_bytes(size));
	memset(dq->desc, 0, 16ULL * size);
	memset(dq->avail, 0, avail_bytes(size));
	memset(dq->used, 0, used_bytes(size));

	dq->size = size;
	dq->event_idx = t->features & (1ULL << VIRTIO_F_EVENT_IDX);
	dq->avail_idx = dq->last_used = dq->kicked_idx = 0;
	dq->inflight = 0;
	memset(dq->heads, 0, size * sizeof(*dq->heads));
	dq->nfree = size;
	for (unsigned int i = 0; i < size; i++)
		dq->free_stack[i] = (uint16_t)(size - 1 - i); /* pop 0 first */

	devtest_write32(t, VIRTIO_MMIO_QUEUE_NUM, size);
	write64_regs(t, VIRTIO_MMIO_QUEUE_DESC_LOW, dq->desc_gpa);
	write64_regs(t, VIRTIO_MMIO_QUEUE_DRIVER_LOW, dq->avail_gpa);
	write64_regs(t, VIRTIO_MMIO_QUEUE_DEVICE_LOW, dq->used_gpa);
	devtest_write32(t, VIRTIO_MMIO_QUEUE_READY, 1);
	if (devtest_read32(t, VIRTIO_MMIO_QUEUE_READY) != 1) {
		dt_err(t, "queue %u: QueueReady did not stick", q);
		dq->size = 0;
		return -EIO;
	}
	if (q >= t->nqueues)
		t->nqueues = q + 1u;
	return 0;
}

int devtest_setup_queue_raw(struct devtest *t, uint16_t q, uint32_t num,
			    uint64_t desc, uint64_t driver, uint64_t device)
{
	devtest_write32(t, VIRTIO_MMIO_QUEUE_SEL, q);
	devtest_write32(t, VIRTIO_MMIO_QUEUE_NUM, num);
	write64_regs(t, VIRTIO_MMIO_QUEUE_DESC_LOW, desc);
	write64_regs(t, VIRTIO_MMIO_QUEUE_DRIVER_LOW, driver);
	write64_regs(t, VIRTIO_MMIO_QUEUE_DEVICE_LOW, device);
	devtest_write32(t, VIRTIO_MMIO_QUEUE_READY, 1);
	return devtest_read32(t, VIRTIO_MMIO_QUEUE_READY) ? 1 : 0;
}

int devtest_driver_ok(struct devtest *t)
{
	uint32_t st = devtest_status(t);

	dt_set_status(t, st | VIRTIO_STATUS_DRIVER_OK);
	st = devtest_status(t);
	if (!(st & VIRTIO_STATUS_DRIVER_OK) ||
	    (st & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED))) {
		dt_err(t, "DRIVER_OK not accepted: Status %#x", st);
		return -EIO;
	}
	return 0;
}

int devtest_init_device(struct devtest *t, uint64_t accept_features)
{
	uint32_t v;
	int rc;

	/* §4.2.3.1.1: check MagicValue, Version, DeviceID first. */
	v = devtest_read32(t, VIRTIO_MMIO_MAGIC_VALUE);
	if (v != VIRTIO_MMIO_MAGIC) {
		dt_err(t, "MagicValue %#x", v);
		return -ENODEV;
	}
	v = devtest_read32(t, VIRTIO_MMIO_VERSION);
	if (v != 2) {
		dt_err(t, "Version %u, want 2", v);
		return -ENODEV;
	}
	v = devtest_read32(t, VIRTIO_MMIO_DEVICE_ID);
	if (v == 0) {
		dt_err(t, "DeviceID 0 (placeholder)");
		return -ENODEV;
	}
	rc = devtest_reset(t);
	if (rc)
		return rc;
	rc = devtest_negotiate(t, accept_features, NULL);
	if (rc)
		return rc;
	t->nqueues = 0;
	for (unsigned int q = 0; q < SMVMM_MAX_QUEUES; q++) {
		devtest_write32(t, VIRTIO_MMIO_QUEUE_SEL, q);
		if (devtest_read32(t, VIRTIO_MMIO_QUEUE_NUM_MAX) == 0)
			break;
		rc = devtest_setup_queue(t, (uint16_t)q, 0);
		if (rc)
			return rc == -ENOMEM ? rc : -EIO;
	}
	if (t->nqueues == 0) {
		dt_err(t, "device has no queues");
		return -EIO;
	}
	return devtest_driver_ok(t);
}

uint64_t devtest_features(const struct devtest *t)
{
	return t->features;
}

unsigned int devtest_num_queues(const struct devtest *t)
{
	return t->nqueues;
}

uint16_t devtest_queue_size(const struct devtest *t, uint16_t q)
{
	return q < SMVMM_MAX_QUEUES ? t->q[q].size : 0;
}

/* ---- chains ------------------------------------------------------------- */

static struct dt_queue *dt_queue(struct devtest *t, uint16_t q)
{
	if (q >= SMVMM_MAX_QUEUES || !t->q[q].size) {
		dt_err(t, "queue %u is not set up", q);
		return NULL;
	}
	return &t->q[q];
}

static int dt_desc_alloc(struct dt_queue *dq)
{
	if (!dq->nfree)
		return -ENOSPC;
	return dq->free_stack[--dq->nfree];
}

static void dt_desc_release(struct dt_queue *dq, uint16_t idx)
{
	if (dq->nfree < dq->size)
		dq->free_stack[dq->nfree++] = idx;
}

int devtest_chain_begin(struct devtest *t, uint16_t q, unsigned int flags)
{
	struct dt_queue *dq;
	int head;

	if (t->chain.active) {
		dt_err(t, "a chain is already being built");
		return -EBUSY;
	}
	dq = dt_queue(t, q);
	if (!dq)
		return -EINVAL;
	t->chain.q = q;
	t->chain.n = 0;
	t->chain.indirect = flags & DEVTEST_CHAIN_INDIRECT;
	if (t->chain.indirect) {
		if (!dq->ind_gpa) {
			/* One table of DEVTEST_MAX_INDIRECT entries per
			 * possible head. */
			dq->ind_gpa = sys_alloc(t, 16ULL * DEVTEST_MAX_INDIRECT *
							   dq->mem_size, 16);
			if (!dq->ind_gpa) {
				dt_err(t, "no fake RAM for indirect tables");
				return -ENOMEM;
			}
			dq->ind = gmem_hva(&t->mem, dq->ind_gpa,
					   16ULL * DEVTEST_MAX_INDIRECT *
						   dq->mem_size);
		}
		head = dt_desc_alloc(dq);
		if (head < 0) {
			dt_err(t, "queue %u: no free descriptor", q);
			return head;
		}
		t->chain.head = (uint16_t)head;
	}
	t->chain.active = true;
	return 0;
}

static int dt_chain_append(struct devtest *t, struct dt_pend *p)
{
	struct dt_queue *dq;
	int idx;

	if (!t->chain.active) {
		dt_err(t, "no chain: call devtest_chain_begin");
		return -EINVAL;
	}
	dq = &t->q[t->chain.q];
	if (t->chain.indirect) {
		if (t->chain.n >= DEVTEST_MAX_INDIRECT) {
			dt_err(t, "indirect table full (%u entries)",
			       DEVTEST_MAX_INDIRECT);
			return -ENOSPC;
		}
		idx = (int)t->chain.n;
	} else {
		idx = dt_desc_alloc(dq);
		if (idx < 0) {
			dt_err(t, "queue %u: no free descriptor", t->chain.q);
			return idx;
		}
	}
	p->idx = (uint16_t)idx;
	t->chain.e[t->chain.n++] = *p;
	return idx;
}

int devtest_chain_add(struct devtest *t, uint64_t gpa, uint32_t len,
		      bool device_writable)
{
	struct dt_pend p = {
		.addr = gpa,
		.len = len,
		.flags = device_writable ? VIRTQ_DESC_F_WRITE : 0,
	};

	return dt_chain_append(t, &p);
}

int devtest_chain_add_raw(struct devtest *t, uint64_t addr, uint32_t len,
			  uint16_t flags, uint16_t next)
{
	struct dt_pend p = {
		.addr = addr,
		.len = len,
		.flags = flags,
		.next = next,
		.raw = true,
	};

	return dt_chain_append(t, &p);
}

void devtest_chain_abort(struct devtest *t)
{
	struct dt_queue *dq;

	if (!t->chain.active)
		return;
	dq = &t->q[t->chain.q];
	if (t->chain.indirect) {
		dt_desc_release(dq, t->chain.head);
	} else {
		for (unsigned int i = t->chain.n; i-- > 0;)
			dt_desc_release(dq, t->chain.e[i].idx);
	}
	t->chain.active = false;
	t->chain.n = 0;
}

static void dt_write_desc(struct virtq_desc *d, uint64_t addr, uint32_t len,
			  uint16_t flags, uint16_t next)
{
	struct virtq_desc v = {
		.addr = addr, .len = len, .flags = flags, .next = next
	};

	memcpy(d, &v, sizeof(v));
}

/* Publish head in the avail ring (§2.7.13.2, §2.7.13.3). */
static void dt_publish(struct dt_queue *dq, uint16_t head)
{
	dq->avail[2 + dq->avail_idx % dq->size] = head;
	dq->avail_idx++;
	/* Ring entry and descriptors before the index (§2.7.13.3.1). */
	__atomic_store_n(&dq->avail[1], dq->avail_idx, __ATOMIC_RELEASE);
}

int devtest_chain_submit(struct devtest *t)
{
	struct dt_queue *dq;
	struct dt_head *h;
	unsigned int n = t->chain.n;
	uint32_t wlen = 0;
	bool raw = false;
	uint16_t head;

	if (!t->chain.active) {
		dt_err(t, "no chain: call devtest_chain_begin");
		return -EINVAL;
	}
	dq = &t->q[t->chain.q];
	if (!t->chain.indirect && n == 0) {
		dt_err(t, "empty chain");
		return -EINVAL;
	}
	for (unsigned int i = 0; i < n; i++) {
		struct dt_pend *p = &t->chain.e[i];
		uint16_t flags = p->flags, next = p->next;
		struct virtq_desc *table;

		if (p->raw) {
			raw = true;
		} else {
			if (i + 1 < n) {
				flags |= VIRTQ_DESC_F_NEXT;
				next = t->chain.e[i + 1].idx;
			} else {
				next = 0;
			}
			if (flags & VIRTQ_DESC_F_WRITE)
				wlen += p->len;
		}
		table = t->chain.indirect
				? dq->ind + (size_t)t->chain.head *
						    DEVTEST_MAX_INDIRECT
				: dq->desc;
		dt_write_desc(&table[p->idx], p->addr, p->len, flags, next);
	}
	if (t->chain.indirect) {
		head = t->chain.head;
		dt_write_desc(&dq->desc[head],
			      dq->ind_gpa + 16ULL * DEVTEST_MAX_INDIRECT * head,
			      16u * n, VIRTQ_DESC_F_INDIRECT, 0);
		dq->hnext[head] = head;
	} else {
		head = t->chain.e[0].idx;
		for (unsigned int i = 0; i + 1 < n; i++)
			dq->hnext[t->chain.e[i].idx] = t->chain.e[i + 1].idx;
	}
	h = &dq->heads[head];
	h->inflight = true;
	h->checkable = !raw;
	h->ndesc = (uint16_t)(t->chain.indirect ? 1 : n);
	h->wlen = wlen;
	dq->inflight++;
	t->chain.active = false;
	t->chain.n = 0;
	dt_publish(dq, head);
	return head;
}

int devtest_submit_buf(struct devtest *t, uint16_t q, uint64_t gpa,
		       uint32_t len, bool device_writable)
{
	int rc = devtest_chain_begin(t, q, 0);

	if (rc)
		return rc;
	rc = devtest_chain_add(t, gpa, len, device_writable);
	if (rc < 0) {
		devtest_chain_abort(t);
		return rc;
	}
	return devtest_chain_submit(t);
}

/* ---- kicks and completions --------------------------------------------- */

void devtest_kick(struct devtest *t, uint16_t q)
{
	if (q < SMVMM_MAX_QUEUES) {
		struct dt_queue *dq = &t->q[q];

		dq->kicked_idx = dq->avail_idx;
		if (t->opts.threaded &&
		    __atomic_load_n(&dq->ioevent_on, __ATOMIC_ACQUIRE) &&
		    dq->efd >= 0) {
			uint64_t one = 1;

			/* What KVM does with a QueueNotify write that
			 * matches an ioeventfd. */
			if (write(dq->efd, &one, sizeof(one)) == sizeof(one))
				return;
		}
	}
	devtest_write32(t, VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

bool devtest_kick_if_needed(struct devtest *t, uint16_t q)
{
	struct dt_queue *dq = dt_queue(t, q);
	uint16_t old, now;
	bool need;

	if (!dq)
		return false;
	/* avail->idx store before reading the device's suppression
	 * (§2.7.10; Linux virtqueue_kick_prepare's smp_mb). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	old = dq->kicked_idx;
	now = dq->avail_idx;
	if (dq->event_idx) {
		/* avail_event is written by the device thread: an atomic
		 * load, like the flags below (the ring is 4-byte aligned, so
		 * this u16 is 2-byte aligned). */
		uint16_t ev = __atomic_load_n(
			(uint16_t *)(dq->used + 4 + 8ULL * dq->size),
			__ATOMIC_RELAXED);

		need = (uint16_t)(now - ev - 1) < (uint16_t)(now - old);
	} else {
		uint16_t flags = __atomic_load_n((uint16_t *)dq->used,
						 __ATOMIC_RELAXED);

		need = !(flags & VIRTQ_USED_F_NO_NOTIFY);
	}
	if (need)
		devtest_kick(t, q);
	else
		dq->kicked_idx = now;
	return need;
}

uint16_t devtest_used_idx(struct devtest *t, uint16_t q)
{
	struct dt_queue *dq = dt_queue(t, q);

	if (!dq)
		return 0;
	return __atomic_load_n((uint16_t *)(dq->used + 2), __ATOMIC_ACQUIRE);
}

int devtest_poll_used(struct devtest *t, uint16_t q, uint16_t *id,
		      uint32_t *len)
{
	struct dt_queue *dq = dt_queue(t, q);
	uint32_t eid, elen;
	uint16_t uidx, slot;
	struct dt_head *h;

	if (!dq)
		return -EINVAL;
	uidx = __atomic_load_n((uint16_t *)(dq->used + 2), __ATOMIC_ACQUIRE);
	if (uidx == dq->last_used)
		return 0;
	if ((uint16_t)(uidx - dq->last_used) > dq->size) {
		dt_err(t, "queue %u: device moved used->idx from %u to %u "
			  "(more than %u entries)", q, dq->last_used, uidx,
		       dq->size);
		return -EPROTO;
	}
	slot = dq->last_used % dq->size;
	/* The element after the index (acquire above, §2.7.14). */
	memcpy(&eid, dq->used + 4 + 8ULL * slot, 4);
	memcpy(&elen, dq->used + 8 + 8ULL * slot, 4);
	dq->last_used++;
	if (eid >= dq->size || !dq->heads[eid].inflight) {
		dt_err(t, "queue %u: used element %u has id %u, not a head "
			  "in flight", q, (uint16_t)(dq->last_used - 1), eid);
		return -EPROTO;
	}
	h = &dq->heads[eid];
	h->inflight = false;
	dq->inflight--;
	/* Return the chain's descriptors, following host-side links. */
	for (uint16_t i = 0, d = (uint16_t)eid; i < h->ndesc; i++) {
		uint16_t nx = dq->hnext[d];

		dt_desc_release(dq, d);
		d = nx;
	}
	if (id)
		*id = (uint16_t)eid;
	if (len)
		*len = elen;
	if (h->checkable && elen > h->wlen) {
		dt_err(t, "queue %u: head %u: device reports %u bytes written, "
			  "the chain has %u writable", q, eid, elen, h->wlen);
		return -EPROTO;
	}
	return 1;
}

int devtest_run_io(struct devtest *t, int timeout_ms)
{
	if (t->opts.threaded) {
		if (timeout_ms > 0)
			usleep((useconds_t)timeout_ms * 1000);
		return 0;
	}
	return evloop_run_once(&t->loop, timeout_ms);
}

int devtest_wait_used(struct devtest *t, uint16_t q, int timeout_ms,
		      uint16_t *id, uint32_t *len)
{
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX
					   : mono_ms() + (uint64_t)timeout_ms;

	for (;;) {
		uint64_t seen = devtest_irq_count(t), now;
		int rc = devtest_poll_used(t, q, id, len);
		int slice;

		if (rc != 0)
			return rc < 0 ? rc : 0;
		now = mono_ms();
		if (now >= deadline) {
			dt_err(t, "queue %u: no used buffer within %d ms "
				  "(%u in flight, Status %#x)", q, timeout_ms,
			       t->q[q].inflight, devtest_status(t));
			return -ETIMEDOUT;
		}
		slice = deadline - now > 10 ? 10 : (int)(deadline - now);
		if (!t->opts.threaded) {
			/* The device's timers and fds run here. */
			evloop_run_once(&t->loop, slice);
		} else {
			struct timespec ts;

			/* Woken by the interrupt; the short slice covers
			 * drivers that suppressed interrupts. */
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 2 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_mutex_lock(&t->irq_lock);
			if (t->irq_count == seen)
				pthread_cond_timedwait(&t->irq_cond,
						       &t->irq_lock, &ts);
			pthread_mutex_unlock(&t->irq_lock);
		}
	}
}

unsigned int devtest_inflight(const struct devtest *t, uint16_t q)
{
	return q < SMVMM_MAX_QUEUES ? t->q[q].inflight : 0;
}

/* ---- hostile helpers ---------------------------------------------------- */

int devtest_desc_write(struct devtest *t, uint16_t q, uint16_t idx,
		       uint64_t addr, uint32_t len, uint16_t flags,
		       uint16_t next)
{
	struct dt_queue *dq = dt_queue(t, q);

	if (!dq)
		return -EINVAL;
	if (idx >= dq->size) {
		dt_err(t, "descriptor %u beyond the table (%u)", idx,
		       dq->size);
		return -EINVAL;
	}
	dt_write_desc(&dq->desc[idx], addr, len, flags, next);
	return 0;
}

int devtest_avail_add(struct devtest *t, uint16_t q, uint16_t head)
{
	struct dt_queue *dq = dt_queue(t, q);

	if (!dq)
		return -EINVAL;
	if (head < dq->size && !dq->heads[head].inflight) {
		dq->heads[head] = (struct dt_head){ .inflight = true };
		dq->inflight++;
	}
	dt_publish(dq, head);
	return 0;
}

int devtest_avail_set_idx(struct devtest *t, uint16_t q, uint16_t idx)
{
	struct dt_queue *dq = dt_queue(t, q);

	if (!dq)
		return -EINVAL;
	dq->avail_idx = idx;
	__atomic_store_n(&dq->avail[1], idx, __ATOMIC_RELEASE);
	return 0;
}

int devtest_set_no_interrupt(struct devtest *t, uint16_t q, bool on)
{
	struct dt_queue *dq = dt_queue(t, q);

	if (!dq)
		return -EINVAL;
	__atomic_store_n(&dq->avail[0], on ? VIRTQ_AVAIL_F_NO_INTERRUPT : 0,
			 __ATOMIC_RELEASE);
	return 0;
}

int devtest_set_used_event(struct devtest *t, uint16_t q, uint16_t idx)
{
	struct dt_queue *dq = dt_queue(t, q);

	if (!dq)
		return -EINVAL;
	__atomic_store_n(&dq->avail[2 + dq->size], idx, __ATOMIC_RELEASE);
	return 0;
}

/* ---- white box ---------------------------------------------------------- */

struct smvmm_host *devtest_host(struct devtest *t)
{
	return &t->host;
}

struct vmmio *devtest_transport(struct devtest *t)
{
	return &t->mmio;
}

const struct smvmm_plugin_desc *devtest_plugin(const struct devtest *t)
{
	return &t->plugin.desc;
}
