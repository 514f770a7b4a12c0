/* SPDX-License-Identifier: MIT */
/*
 * virtio-rng: the entropy device (VIRTIO 1.2 §5.4).
 *
 * Device id 4, one virtqueue (requestq), no device-specific feature bits and
 * no configuration space.  The driver posts device-writable buffers; the
 * device fills them from getrandom(2) and returns the number of bytes written.
 *
 * INI keys ([device.<id>] with type = virtio-rng), both optional:
 *
 *   rate_limit = <bytes per second>   0 or absent: unlimited.  A decimal
 *                                     integer with an optional K, M or G
 *                                     (binary) suffix, at most 1G.
 *   rate_burst = <bytes>              token-bucket size; default rate_limit
 *                                     (one second's worth).  Same syntax,
 *                                     at most 1G; needs rate_limit.
 *
 * Rate limit: a token bucket holding at most rate_burst bytes, refilled at
 * rate_limit bytes per second, full when the device is created.  A chain is
 * granted min(its writable length, RNG_CHAIN_MAX, rate_burst) bytes; when the
 * bucket holds fewer tokens than that, the chain is held (not completed) and
 * a timerfd is armed for the moment enough tokens will have accumulated.
 * Chains behind it wait too (the used ring stays in order of service).  The
 * bucket is NOT refilled by a device reset: a driver cannot reset its way
 * around the limit.
 *
 * Behaviour on driver errors:
 *   - a chain with any device-readable buffer violates §5.4.6.1 ("The driver
 *     MUST NOT place device-readable buffers into the queue"); it is completed
 *     with 0 bytes written, its buffers are not touched, and a warning is
 *     logged once per device.  The queue stays usable: the driver gets its
 *     buffer back and loses nothing but its own bad request.
 *   - a chain with no writable bytes is completed with 0 bytes the same way.
 *   - anything malformed at the virtqueue level (bad indices, buffers outside
 *     RAM, loops...) is caught by the core's vq_pop, which puts the device in
 *     NEEDS_RESET; the plugin then leaves the queue alone until reset.
 *
 * Fairness: the I/O thread is shared by all devices, so one run serves at
 * most RNG_RUN_BUDGET bytes; if more chains are waiting, the timer is armed
 * to fire immediately and the run continues on the next loop iteration.
 *
 * Threads: every op and the timer callback run under the core's per-device
 * lock (plugin.h), so the state below needs no lock of its own.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <smvmm/plugin.h>

#define VIRTIO_ID_ENTROPY 4
#define RNG_QUEUE_SIZE_MAX 256

#define RNG_F_INDIRECT_DESC (1ULL << 28)
#define RNG_F_EVENT_IDX (1ULL << 29)
#define RNG_F_VERSION_1 (1ULL << 32)
#define RNG_FEATURES (RNG_F_VERSION_1 | RNG_F_EVENT_IDX | RNG_F_INDIRECT_DESC)

/*
 * Largest fill per chain.  §5.4.6.2 lets the device "use less than the entire
 * buffer length"; capping bounds the time one hostile 4 GiB chain can hold the
 * shared I/O thread.  Linux asks for 32..64 bytes at a time.
 */
#define RNG_CHAIN_MAX (64u * 1024)
/* Bytes served per run before yielding the I/O thread (see above). */
#define RNG_RUN_BUDGET (1024u * 1024)
/* Upper bound of rate_limit and rate_burst: keeps burst * 1e9 in 64 bits. */
#define RNG_RATE_MAX (1ULL << 30)

#define NSEC_PER_SEC 1000000000ULL

struct rng {
	const struct smvmm_host_services *svc;
	struct smvmm_host *h;

	/* rate limit; rate == 0: unlimited */
	uint64_t rate;         /* bytes per second */
	uint64_t burst;        /* bucket size, bytes */
	uint64_t credit;       /* tokens in nano-bytes (bytes * 1e9) */
	uint64_t last_refill;  /* CLOCK_MONOTONIC ns of the last refill */

	int timer_fd;          /* rate-limit wait and budget yield */
	bool timer_armed;

	bool active;           /* DRIVER_OK seen, not reset since */
	bool broken;           /* vq_pop reported a broken queue */
	bool warned_readable;  /* the §5.4.6.1 warning was logged */
	bool warned_getrandom;

	struct smvmm_chain *held; /* popped, waiting for tokens or budget */
	uint64_t bytes_served;    /* statistics, for logs */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/*
 * parse_bytes: "<decimal>[K|M|G]" -> bytes.  Returns NULL or a message.  The
 * value comes from the INI file and is untrusted: no sign, no trailing junk,
 * no overflow, at most `max`.
 */
static const char *parse_bytes(const char *s, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	uint64_t mult = 1;
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '-')
		return "must not be negative";
	if (*s < '0' || *s > '9')
		return "not a number";
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return "number too large";
	switch (*end) {
	case 'k':
	case 'K':
		mult = 1ULL << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mult = 1ULL << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mult = 1ULL << 30;
		end++;
		break;
	default:
		break;
	}
	while (*end == ' ' || *end == '\t')
		end++;
	if (*end != '\0')
		return "not a number (expected <n>[K|M|G])";
	if (v > max / mult)
		return "too large (at most 1G)";
	*out = (uint64_t)v * mult;
	return NULL;
}

static int rng_parse_config(struct rng *r)
{
	const char *v, *msg;
	bool burst_set = false;

	v = r->svc->config_get(r->h, "rate_limit");
	if (v) {
		msg = parse_bytes(v, RNG_RATE_MAX, &r->rate);
		if (msg) {
			r->svc->config_error(r->h, "rate_limit", "%s: \"%s\"",
					     msg, v);
			return -EINVAL;
		}
	}
	v = r->svc->config_get(r->h, "rate_burst");
	if (v) {
		msg = parse_bytes(v, RNG_RATE_MAX, &r->burst);
		if (msg) {
			r->svc->config_error(r->h, "rate_burst", "%s: \"%s\"",
					     msg, v);
			return -EINVAL;
		}
		if (r->burst == 0) {
			r->svc->config_error(r->h, "rate_burst",
					     "must be at least 1 byte");
			return -EINVAL;
		}
		if (r->rate == 0) {
			r->svc->config_error(r->h, "rate_burst",
					     "needs a non-zero rate_limit");
			return -EINVAL;
		}
		burst_set = true;
	}
	if (r->rate && !burst_set)
		r->burst = r->rate;
	return 0;
}

/* Refill the bucket for the time elapsed since the last refill. */
static void bucket_refill(struct rng *r)
{
	uint64_t now = now_ns(), cap = r->burst * NSEC_PER_SEC;
	uint64_t elapsed = now - r->last_refill;

	r->last_refill = now;
	/* elapsed * rate can only overflow when the bucket would be full. */
	if (elapsed >= (cap - r->credit) / r->rate + 1)
		r->credit = cap;
	else
		r->credit += elapsed * r->rate;
	if (r->credit > cap)
		r->credit = cap;
}

/*
 * bucket_take: take `bytes` tokens (bytes <= burst).  Returns 0, or the
 * nanoseconds until enough tokens will be there (>= 1).
 */
static uint64_t bucket_take(struct rng *r, uint64_t bytes)
{
	uint64_t need = bytes * NSEC_PER_SEC;

	bucket_refill(r);
	if (r->credit >= need) {
		r->credit -= need;
		return 0;
	}
	return (need - r->credit + r->rate - 1) / r->rate;
}

static void timer_arm(struct rng *r, uint64_t ns)
{
	struct itimerspec its = { 0 };

	if (ns == 0)
		ns = 1; /* it_value 0 would disarm */
	its.it_value.tv_sec = (time_t)(ns / NSEC_PER_SEC);
	its.it_value.tv_nsec = (long)(ns % NSEC_PER_SEC);
	if (timerfd_settime(r->timer_fd, 0, &its, NULL) < 0) {
		/* Cannot happen with valid arguments; never strand a chain. */
		r->svc->log(r->h, SMVMM_LOG_ERROR, "timerfd_settime: %s",
			    strerror(errno));
		return;
	}
	r->timer_armed = true;
}

static void timer_disarm(struct rng *r)
{
	struct itimerspec its = { 0 };
	uint64_t ticks;

	if (r->timer_fd < 0)
		return;
	timerfd_settime(r->timer_fd, 0, &its, NULL);
	/* Drain a tick that fired before the disarm (fd is non-blocking). */
	while (read(r->timer_fd, &ticks, sizeof(ticks)) < 0 && errno == EINTR)
		;
	r->timer_armed = false;
}

/*
 * Fill up to `want` bytes of the chain's writable buffers.  Returns the bytes
 * written; sets *err to a positive errno when getrandom failed.
 */
static uint32_t fill_chain(const struct smvmm_chain *c, uint32_t want,
			   int *err)
{
	uint32_t done = 0, i;

	*err = 0;
	for (i = c->n_out; i < c->n_out + c->n_in && done < want; i++) {
		uint8_t *p = c->iov[i].iov_base;
		size_t left = c->iov[i].iov_len;

		if (left > want - done)
			left = want - done;
		while (left) {
			/* Blocking getrandom: the pool is initialised long
			 * before a VMM runs; short reads (> 256 bytes, or a
			 * signal) are continued. */
			ssize_t n = getrandom(p, left, 0);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				*err = errno;
				return done;
			}
			p += n;
			left -= (size_t)n;
			done += (uint32_t)n;
		}
	}
	return done;
}

static void rng_complete(struct rng *r, struct smvmm_chain *c,
			 uint32_t written)
{
	int ret = r->svc->vq_push(r->h, c, written);

	if (ret < 0)
		r->svc->log(r->h, SMVMM_LOG_ERROR, "vq_push: %s",
			    strerror(-ret));
}

/*
 * Serve chains until the ring is empty, the bucket is empty or the run budget
 * is spent.  Called from queue_notify and the timer, under the device lock.
 */
static void rng_run(struct rng *r)
{
	uint32_t budget = RNG_RUN_BUDGET;
	unsigned int pushed = 0;

	while (r->active && !r->broken) {
		struct smvmm_chain *c = r->held;
		uint32_t want, written;
		int ret, err;

		r->held = NULL;
		if (!c) {
			ret = r->svc->vq_pop(r->h, 0, &c);
			if (ret < 0) {
				/* The core set NEEDS_RESET and logged why. */
				r->broken = true;
				break;
			}
			if (ret == 0)
				break;
		}

		if (c->n_out || c->in_len == 0) {
			if (!r->warned_readable) {
				r->warned_readable = true;
				r->svc->log(r->h, SMVMM_LOG_WARN,
					    "request with %" PRIu32
					    " device-readable and %" PRIu32
					    " writable bytes completed empty "
					    "(VIRTIO 1.2 §5.4.6.1); further "
					    "ones are not logged",
					    c->out_len, c->in_len);
			}
			rng_complete(r, c, 0);
			pushed++;
			continue;
		}

		want = c->in_len < RNG_CHAIN_MAX ? c->in_len : RNG_CHAIN_MAX;
		if (r->rate && want > r->burst)
			want = (uint32_t)r->burst;
		if (want > budget) {
			/* Yield the I/O thread; continue right after. */
			r->held = c;
			timer_arm(r, 0);
			break;
		}
		if (r->rate) {
			uint64_t wait = bucket_take(r, want);

			if (wait) {
				r->held = c;
				timer_arm(r, wait);
				break;
			}
		}

		written = fill_chain(c, want, &err);
		if (err && !r->warned_getrandom) {
			r->warned_getrandom = true;
			r->svc->log(r->h, SMVMM_LOG_ERROR, "getrandom: %s",
				    strerror(err));
		}
		rng_complete(r, c, written);
		pushed++;
		budget -= want;
		r->bytes_served += written;
		if (err && written == 0) {
			/* No entropy source: stop rather than spin the
			 * driver on empty completions. */
			r->broken = true;
			r->svc->needs_reset(r->h, "getrandom failed");
			break;
		}
	}
	if (pushed)
		r->svc->vq_notify(r->h, 0);
}

static void rng_timer_cb(void *dev, int fd, uint32_t events)
{
	struct rng *r = dev;
	uint64_t ticks;

	(void)events;
	/* Level-triggered watch: consume the expiration or it fires again. */
	while (read(fd, &ticks, sizeof(ticks)) < 0 && errno == EINTR)
		;
	r->timer_armed = false;
	rng_run(r);
}

static int rng_create(const struct smvmm_host_services *svc,
		      struct smvmm_host *h, struct smvmm_device_info *info,
		      void **devp)
{
	struct rng *r;
	int ret;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->svc = svc;
	r->h = h;
	r->timer_fd = -1;

	ret = rng_parse_config(r);
	if (ret)
		goto err_free;

	r->timer_fd = timerfd_create(CLOCK_MONOTONIC,
				     TFD_NONBLOCK | TFD_CLOEXEC);
	if (r->timer_fd < 0) {
		ret = -errno;
		svc->log(h, SMVMM_LOG_ERROR, "timerfd_create: %s",
			 strerror(errno));
		goto err_free;
	}
	/*
	 * Watched for the device's lifetime, unwatched only in destroy: reset
	 * runs under the device lock on a vCPU thread, where unwatching could
	 * wait for a timer callback that itself waits for that lock.
	 */
	ret = svc->watch_fd(h, r->timer_fd, SMVMM_FD_IN, rng_timer_cb);
	if (ret < 0) {
		svc->log(h, SMVMM_LOG_ERROR, "cannot watch the timer fd: %s",
			 strerror(-ret));
		goto err_timer;
	}

	if (r->rate) {
		r->credit = r->burst * NSEC_PER_SEC; /* starts full */
		r->last_refill = now_ns();
		svc->log(h, SMVMM_LOG_DEBUG,
			 "rate limit %" PRIu64 " bytes/s, burst %" PRIu64,
			 r->rate, r->burst);
	}

	memset(info, 0, sizeof(*info));
	info->device_id = VIRTIO_ID_ENTROPY;
	info->num_queues = 1;
	info->queue_size_max = RNG_QUEUE_SIZE_MAX;
	info->config_size = 0; /* §5.4.4: no configuration fields */
	*devp = r;
	return 0;

err_timer:
	close(r->timer_fd);
err_free:
	free(r);
	return ret;
}

/* Drop everything in flight; used by reset and destroy. */
static void rng_stop(struct rng *r)
{
	r->active = false;
	r->broken = false;
	timer_disarm(r);
	/*
	 * A held chain is never completed: after reset the device must not
	 * touch the rings (§2.4).  virtq_pop chains are one malloc()
	 * allocation (virtq.h); the core forgets in-flight heads when it
	 * resets the queue right after this.
	 */
	free(r->held);
	r->held = NULL;
}

static void rng_destroy(void *dev)
{
	struct rng *r = dev;

	rng_stop(r);
	if (r->timer_fd >= 0) {
		r->svc->unwatch_fd(r->h, r->timer_fd);
		close(r->timer_fd);
	}
	free(r);
}

static uint64_t rng_get_features(void *dev)
{
	(void)dev;
	return RNG_FEATURES;
}

static int rng_set_features(void *dev, uint64_t features)
{
	(void)dev;
	/* §6.1: a device MAY refuse a driver without VIRTIO_F_VERSION_1; we
	 * have no legacy interface to fall back to. */
	if (!(features & RNG_F_VERSION_1))
		return -ENOTSUP;
	return 0;
}

static int rng_config_read(void *dev, uint32_t offset, void *data,
			   uint32_t len)
{
	/* config_size is 0, so the core never calls this; be safe anyway. */
	(void)dev;
	(void)offset;
	memset(data, 0, len);
	return -EINVAL;
}

static int rng_config_write(void *dev, uint32_t offset, const void *data,
			    uint32_t len)
{
	(void)dev;
	(void)offset;
	(void)data;
	(void)len;
	return -EINVAL;
}

static int rng_activate(void *dev)
{
	struct rng *r = dev;

	r->active = true;
	r->broken = false;
	return 0;
}

static void rng_queue_notify(void *dev, uint16_t q)
{
	struct rng *r = dev;

	if (q != 0)
		return; /* the core only has queue 0; be strict anyway */
	/* While a chain waits for tokens the armed timer resumes the run;
	 * running now would only re-arm it. */
	if (r->held && r->timer_armed)
		return;
	rng_run(r);
}

static void rng_reset(void *dev)
{
	struct rng *r = dev;

	rng_stop(r);
}

static const struct smvmm_device_ops rng_ops = {
	.struct_size = sizeof(struct smvmm_device_ops),
	.create = rng_create,
	.destroy = rng_destroy,
	.get_features = rng_get_features,
	.set_features = rng_set_features,
	.config_read = rng_config_read,
	.config_write = rng_config_write,
	.activate = rng_activate,
	.queue_notify = rng_queue_notify,
	.reset = rng_reset,
};

static const char *const rng_config_keys[] = { "rate_limit", "rate_burst",
					       NULL };

SMVMM_PLUGIN_EXPORT const struct smvmm_plugin_desc smvmm_plugin_v1 = {
	.abi_major = SMVMM_PLUGIN_ABI_MAJOR,
	.abi_minor = SMVMM_PLUGIN_ABI_MINOR,
	.struct_size = sizeof(struct smvmm_plugin_desc),
	.kind = SMVMM_PLUGIN_DEVICE,
	.name = "virtio-rng",
	.version = "1.0",
	.description = "virtio entropy device (VIRTIO 1.2 §5.4), getrandom(2)",
	.config_keys = rng_config_keys,
	.ops = &rng_ops,
};
