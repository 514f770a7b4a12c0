// SPDX-License-Identifier: MIT
/*
 * Device host: one plugin instance, its virtqueues and the services table
 * (plugin.h) it calls back into.
 *
 * Locks, in the order they may nest:
 *   transport register lock (virtio_mmio.c)
 *     -> h->lock    (recursive; held around every plugin op and fd callback)
 *       -> h->q[i].lock (one virtqueue; vq_* services)
 *         -> evloop lock (inside evloop_watch/unwatch, never held while a
 *            callback runs)
 * The transport hooks h->raise and h->set_needs_reset take no lock (they use
 * atomics), so any service may be called with any of the locks above held.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "evloop.h"
#include "machine.h" /* machine_dir_of, machine_join_path */

/* ---- logging ---------------------------------------------------------- */

static void device_vlog(struct smvmm_host *h, enum smvmm_log_level level,
			const char *fmt, va_list ap)
{
	static const char *const tag[] = {
		[SMVMM_LOG_ERROR] = "error: ",
		[SMVMM_LOG_WARN] = "warning: ",
		[SMVMM_LOG_INFO] = "",
		[SMVMM_LOG_DEBUG] = "debug: ",
	};
	char msg[512];
	size_t n;

	if ((unsigned int)level > SMVMM_LOG_DEBUG)
		level = SMVMM_LOG_DEBUG;
	if (level == SMVMM_LOG_DEBUG && !getenv("SMVMM_DEBUG"))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* One line per message, whatever the plugin put at the end. */
	n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	/* A single stdio call on unbuffered stderr: lines do not interleave. */
	fprintf(stderr, "smvmm: [%s] %s%s\n", h && h->id ? h->id : "?",
		tag[level], msg);
}

void device_log(struct smvmm_host *h, enum smvmm_log_level level,
		const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	device_vlog(h, level, fmt, ap);
	va_end(ap);
}

void device_needs_reset(struct smvmm_host *h, const char *fmt, ...)
{
	void (*hook)(struct smvmm_host *h);
	char why[256];
	va_list ap;

	/* §2.1.2: one transition to NEEDS_RESET per reset; log it once. */
	if (__atomic_exchange_n(&h->needs_reset_logged, true, __ATOMIC_ACQ_REL))
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	device_log(h, SMVMM_LOG_ERROR, "%s (device needs reset)", why);
	hook = __atomic_load_n(&h->set_needs_reset, __ATOMIC_ACQUIRE);
	if (hook)
		hook(h);
}

/* Log a plugin/driver oddity once per device (flag is a bool in *h). */
static bool first_time(bool *flag)
{
	return !__atomic_exchange_n(flag, true, __ATOMIC_RELAXED);
}

/* ---- services table --------------------------------------------------- */

static void svc_log(struct smvmm_host *h, enum smvmm_log_level level,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void svc_log(struct smvmm_host *h, enum smvmm_log_level level,
		    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	device_vlog(h, level, fmt, ap);
	va_end(ap);
}

static const struct device_kv *find_kv(struct smvmm_host *h, const char *key)
{
	if (!key)
		return NULL;
	for (unsigned int i = 0; i < h->nkv; i++)
		if (h->kv[i].key && strcmp(h->kv[i].key, key) == 0)
			return &h->kv[i];
	return NULL;
}

static const char *svc_config_get(struct smvmm_host *h, const char *key)
{
	const struct device_kv *kv = find_kv(h, key);

	return kv ? kv->value : NULL;
}

static void svc_config_error(struct smvmm_host *h, const char *key,
			     const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void svc_config_error(struct smvmm_host *h, const char *key,
			     const char *fmt, ...)
{
	const struct device_kv *kv = find_kv(h, key);
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* A key the INI does not have (a missing required key) points at
	 * the section header.  The first error is kept for device_create's
	 * message; later ones go to the log so none is lost. */
	if (!h->config_failed)
		snprintf(h->config_err, sizeof(h->config_err),
			 "%s:%d: [device.%s] %s: %s",
			 h->file ? h->file : "<config>",
			 kv ? kv->line : h->section_line, h->id ? h->id : "?",
			 key ? key : "?", msg);
	else
		fprintf(stderr, "smvmm: %s:%d: [device.%s] %s: %s\n",
			h->file ? h->file : "<config>",
			kv ? kv->line : h->section_line, h->id ? h->id : "?",
			key ? key : "?", msg);
	h->config_failed = true;
}

static void *svc_gpa_to_hva(struct smvmm_host *h, uint64_t gpa, uint64_t len)
{
	if (!h->mem)
		return NULL;
	return gmem_hva(h->mem, gpa, len);
}

static bool queue_ok(struct smvmm_host *h, uint16_t q, const char *what)
{
	if (q < h->nr_queues)
		return true;
	if (first_time(&h->bad_queue_logged))
		device_log(h, SMVMM_LOG_ERROR,
			   "plugin bug: %s on queue %u, device has %u queues",
			   what, q, h->nr_queues);
	return false;
}

static int svc_vq_pop(struct smvmm_host *h, uint16_t q,
		      struct smvmm_chain **out)
{
	struct host_queue *hq;
	char why[sizeof(hq->vq.err)];
	bool broken;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!queue_ok(h, q, "vq_pop"))
		return -EINVAL;
	hq = &h->q[q];
	pthread_mutex_lock(&hq->lock);
	rc = virtq_pop(&hq->vq, out);
	broken = rc < 0 && hq->vq.broken;
	if (broken)
		memcpy(why, hq->vq.err, sizeof(why));
	pthread_mutex_unlock(&hq->lock);
	/* -ENOMEM leaves the queue intact: not the driver's fault. */
	if (broken) {
		why[sizeof(why) - 1] = '\0';
		device_needs_reset(h, "%s", why); /* err names the queue */
	}
	return rc;
}

static int svc_vq_push(struct smvmm_host *h, struct smvmm_chain *c,
		       uint32_t written)
{
	struct host_queue *hq;
	uint16_t q;
	int rc;

	if (!c)
		return -EINVAL;
	q = c->queue;
	if (!queue_ok(h, q, "vq_push")) {
		free(c); /* the core owns chains handed back to it */
		return -EINVAL;
	}
	if (written > c->in_len && first_time(&h->push_clamp_logged))
		device_log(h, SMVMM_LOG_WARN,
			   "queue %u: plugin reports %u bytes written, chain "
			   "has %u writable; clamped", q, written, c->in_len);
	hq = &h->q[q];
	pthread_mutex_lock(&hq->lock);
	rc = virtq_push(&hq->vq, c, written); /* frees c in every case */
	pthread_mutex_unlock(&hq->lock);
	if (rc == -EINVAL)
		device_log(h, SMVMM_LOG_DEBUG,
			   "queue %u: push of a chain not in flight", q);
	return rc;
}

/* The transport may detach (vmmio_destroy) while plugin threads run. */
static void raise_irq(struct smvmm_host *h, uint32_t bits)
{
	void (*raise)(struct smvmm_host *h, uint32_t isr_bits);

	raise = __atomic_load_n(&h->raise, __ATOMIC_ACQUIRE);
	if (raise)
		raise(h, bits);
}

static void svc_vq_notify(struct smvmm_host *h, uint16_t q)
{
	struct host_queue *hq;
	bool notify;

	if (!queue_ok(h, q, "vq_notify"))
		return;
	hq = &h->q[q];
	pthread_mutex_lock(&hq->lock);
	notify = virtq_should_notify(&hq->vq);
	pthread_mutex_unlock(&hq->lock);
	if (notify) {
		void (*raise_vq)(struct smvmm_host *h, uint16_t q);

		/* A per-queue notification where the transport has one
		 * (vhost-user: the queue's call eventfd). */
		raise_vq = __atomic_load_n(&h->raise_vq, __ATOMIC_ACQUIRE);
		if (raise_vq)
			raise_vq(h, q);
		else
			raise_irq(h, 1); /* InterruptStatus bit 0: used buffer
					    (§4.2.2) */
	}
}

static void svc_config_changed(struct smvmm_host *h)
{
	raise_irq(h, 2); /* InterruptStatus bit 1: config change */
}

static void svc_needs_reset(struct smvmm_host *h, const char *why)
{
	device_needs_reset(h, "%s", why ? why : "device error");
}

static struct host_watch *find_watch(struct smvmm_host *h, int fd)
{
	for (unsigned int i = 0; i < h->nwatches; i++)
		if (h->watches[i].fd == fd)
			return &h->watches[i];
	return NULL;
}

/*
 * Event-loop callback for every plugin watch (opaque is the host, which
 * outlives its watches: device_destroy removes them first).  The table check
 * under h->lock is what guarantees "no callback after unwatch_fd returns":
 * unwatch_fd edits the table under the same lock.
 */
static void watch_trampoline(void *opaque, int fd, uint32_t events)
{
	struct smvmm_host *h = opaque;
	struct host_watch *w;

	pthread_mutex_lock(&h->lock);
	w = find_watch(h, fd);
	if (w && h->ops)
		w->cb(h->dev, fd, events);
	pthread_mutex_unlock(&h->lock);
}

#define SVC_FD_EVENTS (SMVMM_FD_IN | SMVMM_FD_OUT | SMVMM_FD_ERR | SMVMM_FD_HUP)

static int svc_watch_fd(struct smvmm_host *h, int fd, uint32_t events,
			smvmm_fd_cb cb)
{
	struct host_watch *w, old = { 0 };
	bool added = false;
	int rc;

	if (!h->loop)
		return -ENOSYS;
	if (fd < 0)
		return -EBADF;
	if (!cb || !events || (events & ~SVC_FD_EVENTS))
		return -EINVAL;

	pthread_mutex_lock(&h->lock);
	w = find_watch(h, fd);
	if (w) {
		old = *w;
	} else {
		if (h->nwatches == h->watch_cap) {
			unsigned int cap = h->watch_cap ? h->watch_cap * 2 : 4;
			struct host_watch *n;

			n = realloc(h->watches, cap * sizeof(*n));
			if (!n) {
				rc = -ENOMEM;
				goto out;
			}
			h->watches = n;
			h->watch_cap = cap;
		}
		w = &h->watches[h->nwatches++];
		added = true;
	}
	*w = (struct host_watch){ .fd = fd, .events = events, .cb = cb };
	/* SMVMM_FD_* have the EPOLL* values (plugin.h). */
	rc = evloop_watch(h->loop, fd, events, watch_trampoline, h, h);
	if (rc) {
		if (added)
			h->nwatches--;
		else
			*w = old;
	}
out:
	pthread_mutex_unlock(&h->lock);
	return rc;
}

static int svc_unwatch_fd(struct smvmm_host *h, int fd)
{
	struct host_watch *w;
	int rc = 0;

	if (!h->loop)
		return -ENOSYS;
	pthread_mutex_lock(&h->lock);
	w = find_watch(h, fd);
	if (!w) {
		rc = -ENOENT;
		goto out;
	}
	*w = h->watches[--h->nwatches];
	/*
	 * No waiting: a callback running now holds h->lock, which we hold
	 * (possibly recursively, from inside an op or that very callback), so
	 * waiting for it could deadlock; one that has not taken the lock yet
	 * will not find fd in the table.
	 */
	(void)evloop_unwatch_nowait(h->loop, fd);
out:
	pthread_mutex_unlock(&h->lock);
	return rc;
}

/* One place for "relative to the INI file": machine.c's [boot] rules. */
static const char *svc_config_path(struct smvmm_host *h, const char *key)
{
	const struct device_kv *kv = find_kv(h, key);
	char *dir, *p = NULL, **n;

	if (!kv || !kv->value)
		return NULL;
	if (kv->value[0] == '/' || !kv->value[0])
		return kv->value;
	dir = machine_dir_of(h->file ? h->file : ".");
	if (!dir || machine_join_path(dir, kv->value, &p)) {
		free(dir);
		return kv->value; /* out of memory / too long: the plugin's
				     open reports it */
	}
	free(dir);
	n = realloc(h->paths, (h->npaths + 1) * sizeof(*n));
	if (!n) {
		free(p);
		return kv->value;
	}
	h->paths = n;
	h->paths[h->npaths++] = p;
	return p;
}

static int svc_check_only(struct smvmm_host *h)
{
	return h->check_only ? 1 : 0;
}

static int svc_reset_defer(struct smvmm_host *h)
{
	int rc;

	pthread_mutex_lock(&h->lock);
	if (!h->in_reset)
		rc = -EINVAL;
	else if (!__atomic_load_n(&h->reset_completed, __ATOMIC_ACQUIRE))
		rc = -ENOTSUP;
	else {
		h->reset_deferred = true;
		rc = 0;
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

static void svc_reset_done(struct smvmm_host *h)
{
	void (*hook)(struct smvmm_host *h);
	bool was;

	pthread_mutex_lock(&h->lock);
	was = h->reset_deferred;
	h->reset_deferred = false;
	hook = __atomic_load_n(&h->reset_completed, __ATOMIC_ACQUIRE);
	pthread_mutex_unlock(&h->lock);
	if (was) {
		device_log(h, SMVMM_LOG_INFO, "the deferred reset completed");
		if (hook)
			hook(h);
	}
}

const struct smvmm_host_services smvmm_host_services_v1 = {
	.struct_size = sizeof(struct smvmm_host_services),
	.log = svc_log,
	.config_get = svc_config_get,
	.config_error = svc_config_error,
	.gpa_to_hva = svc_gpa_to_hva,
	.vq_pop = svc_vq_pop,
	.vq_push = svc_vq_push,
	.vq_notify = svc_vq_notify,
	.config_changed = svc_config_changed,
	.needs_reset = svc_needs_reset,
	.watch_fd = svc_watch_fd,
	.unwatch_fd = svc_unwatch_fd,
	.config_path = svc_config_path,
	.check_only = svc_check_only,
	.reset_defer = svc_reset_defer,
	.reset_done = svc_reset_done,
};

/* ---- lifecycle -------------------------------------------------------- */

void device_host_init(struct smvmm_host *h, const char *id, const char *file,
		      int section_line, const struct device_kv *kv,
		      unsigned int nkv, struct gmem *mem, struct evloop *loop)
{
	pthread_mutexattr_t attr;

	memset(h, 0, sizeof(*h));
	h->id = id;
	h->file = file;
	h->section_line = section_line;
	h->kv = kv;
	h->nkv = nkv;
	h->mem = mem;
	h->loop = loop;

	/* Cannot fail on Linux for the default and recursive types. */
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&h->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	for (unsigned int i = 0; i < SMVMM_MAX_QUEUES; i++) {
		pthread_mutex_init(&h->q[i].lock, NULL);
		virtq_init(&h->q[i].vq, mem, (uint16_t)i, 0);
	}
}

/* Drop the plugin's fd watches, waiting for a running callback. */
static void drop_watches(struct smvmm_host *h)
{
	if (h->loop)
		evloop_unwatch_owner(h->loop, h);
	pthread_mutex_lock(&h->lock);
	free(h->watches);
	h->watches = NULL;
	h->nwatches = h->watch_cap = 0;
	pthread_mutex_unlock(&h->lock);
}

static const char *missing_op(const struct smvmm_device_ops *ops)
{
#define REQ(op)            \
	if (!ops->op)      \
		return #op
	REQ(create);
	REQ(destroy);
	REQ(get_features);
	REQ(set_features);
	REQ(config_read);
	REQ(config_write);
	REQ(activate);
	REQ(queue_notify);
	REQ(reset);
#undef REQ
	return NULL;
}

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

int device_create(struct smvmm_host *h, const struct smvmm_device_ops *ops,
		  char *err, size_t errlen)
{
	/* Features the core cannot honour (split rings only, QueueNotify
	 * carries the bare index, no per-queue reset after DRIVER_OK). */
	static const struct {
		unsigned int bit;
		const char *name;
	} unsupported[] = {
		{ VIRTIO_F_RING_PACKED, "VIRTIO_F_RING_PACKED" },
		{ 38, "VIRTIO_F_NOTIFICATION_DATA" },
		{ 40, "VIRTIO_F_RING_RESET" },
	};
	const char *id = h->id ? h->id : "?";
	struct smvmm_device_info info;
	const char *op;
	uint64_t features;
	void *dev = NULL;
	int rc;

	if (!ops) {
		snprintf(err, errlen, "[device.%s]: no device operations", id);
		return -EINVAL;
	}
	op = missing_op(ops);
	if (op) {
		snprintf(err, errlen, "[device.%s]: plugin has no %s op", id, op);
		return -EINVAL;
	}

	memset(&info, 0, sizeof(info));
	h->config_failed = false;
	/* Held so an fd the plugin watches in create() cannot call back
	 * before the instance exists. */
	pthread_mutex_lock(&h->lock);
	rc = ops->create(&smvmm_host_services_v1, h, &info, &dev);
	if (rc > 0)
		rc = -EINVAL; /* not 0 or -errno: a plugin bug */
	if (rc == 0 && h->config_failed) {
		/* config_error() was called yet create() said yes. */
		snprintf(err, errlen, "%s", h->config_err);
		rc = -EINVAL;
		goto err_dev;
	}
	if (rc < 0) {
		pthread_mutex_unlock(&h->lock);
		if (h->config_failed)
			snprintf(err, errlen, "%s", h->config_err);
		else
			snprintf(err, errlen, "[device.%s]: create failed: %s",
				 id, strerror(-rc));
		drop_watches(h);
		return rc;
	}

	rc = -EINVAL;
	if (info.device_id == 0) {
		/* §4.2.2: DeviceID 0 is a placeholder the driver skips. */
		snprintf(err, errlen, "[device.%s]: plugin reports device id 0",
			 id);
		goto err_dev;
	}
	if (info.num_queues < 1 || info.num_queues > SMVMM_MAX_QUEUES) {
		snprintf(err, errlen,
			 "[device.%s]: plugin reports %u queues (1..%u)", id,
			 info.num_queues, SMVMM_MAX_QUEUES);
		goto err_dev;
	}
	if (!is_pow2(info.queue_size_max) ||
	    info.queue_size_max > VIRTQ_MAX_SIZE) {
		snprintf(err, errlen,
			 "[device.%s]: plugin reports queue size %u (a power "
			 "of two, 1..%u)", id, info.queue_size_max,
			 VIRTQ_MAX_SIZE);
		goto err_dev;
	}
	if (info.config_size > 256) {
		/* The virtio-mmio window has 0x100 bytes of config space. */
		snprintf(err, errlen,
			 "[device.%s]: plugin reports %u bytes of config space "
			 "(at most 256)", id, info.config_size);
		goto err_dev;
	}
	features = ops->get_features(dev);
	if (!(features & (1ULL << VIRTIO_F_VERSION_1))) {
		/* Only modern (VIRTIO 1.x) devices: §6, §4.2.4 legacy. */
		snprintf(err, errlen,
			 "[device.%s]: plugin does not offer VIRTIO_F_VERSION_1",
			 id);
		goto err_dev;
	}
	for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]);
	     i++)
		if (features & (1ULL << unsupported[i].bit)) {
			snprintf(err, errlen,
				 "[device.%s]: plugin offers %s, which the "
				 "core does not support", id,
				 unsupported[i].name);
			goto err_dev;
		}

	h->info = info;
	h->ops = ops;
	h->dev = dev;
	h->nr_queues = info.num_queues;
	h->features = 0;
	for (unsigned int i = 0; i < h->nr_queues; i++) {
		pthread_mutex_lock(&h->q[i].lock);
		virtq_reset(&h->q[i].vq);
		virtq_init(&h->q[i].vq, h->mem, (uint16_t)i,
			   info.queue_size_max);
		pthread_mutex_unlock(&h->q[i].lock);
	}
	pthread_mutex_unlock(&h->lock);
	return 0;

err_dev:
	pthread_mutex_unlock(&h->lock);
	/* Callbacks off before the instance goes away. */
	drop_watches(h);
	ops->destroy(dev);
	return rc;
}

void device_reset(struct smvmm_host *h)
{
	pthread_mutex_lock(&h->lock);
	if (h->ops) {
		h->in_reset = true;
		h->ops->reset(h->dev);
		h->in_reset = false;
	}
	/* §2.4: after reset the queues are unset; the plugin dropped its
	 * chains in reset() (plugin.h), so nothing is in flight. */
	for (unsigned int i = 0; i < h->nr_queues; i++) {
		pthread_mutex_lock(&h->q[i].lock);
		virtq_reset(&h->q[i].vq);
		pthread_mutex_unlock(&h->q[i].lock);
	}
	h->features = 0;
	__atomic_store_n(&h->needs_reset_logged, false, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&h->lock);
}

void device_destroy(struct smvmm_host *h)
{
	drop_watches(h);
	if (h->ops) {
		device_reset(h);
		h->ops->destroy(h->dev);
	}
	h->ops = NULL;
	h->dev = NULL;
	for (unsigned int i = 0; i < SMVMM_MAX_QUEUES; i++) {
		virtq_reset(&h->q[i].vq);
		pthread_mutex_destroy(&h->q[i].lock);
	}
	h->nr_queues = 0;
	for (unsigned int i = 0; i < h->npaths; i++)
		free(h->paths[i]);
	free(h->paths);
	h->paths = NULL;
	h->npaths = 0;
	pthread_mutex_destroy(&h->lock);
}
