/* SPDX-License-Identifier: MIT */
/*
 * A device instance as the core sees it: the plugin (ops + dev), its queues,
 * and the services table the plugin calls.  Transports (virtio-mmio in the VMM,
 * vhost-user in `smvmm vhost-user`, the in-process driver model) embed or point
 * at one `struct smvmm_host` and supply the two transport hooks.
 */
#ifndef SMVMM_DEVICE_H
#define SMVMM_DEVICE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <smvmm/plugin.h>

#include "gmem.h"
#include "virtq.h"

struct evloop;

/* Plugin-specific key from [device.<id>], with its line for messages. */
struct device_kv {
	const char *key;
	const char *value;
	int line;
};

/* One fd a plugin watches through the services table (see watch_fd). */
struct host_watch {
	int fd;
	uint32_t events;
	smvmm_fd_cb cb;
};

struct host_queue {
	struct virtq vq;
	pthread_mutex_t lock; /* guards vq: plugin threads vs transport */
};

struct smvmm_host {
	/* identity, for logs and config errors */
	const char *id;        /* the <id> of [device.<id>] */
	const char *file;      /* INI file name, for config_error */
	int section_line;
	const struct device_kv *kv;
	unsigned int nkv;
	bool config_failed;    /* config_error() was called */
	char config_err[640];  /* the first config_error(), file:line: key: msg */

	struct gmem *mem;
	struct evloop *loop;   /* may be NULL (driver model without a loop) */

	/* the plugin */
	const struct smvmm_device_ops *ops;
	void *dev;
	struct smvmm_device_info info;
	pthread_mutex_t lock;  /* the per-device lock held around every op;
				  recursive, so a plugin may call services
				  that take it (watch_fd) from inside an op */

	unsigned int nr_queues;
	struct host_queue q[SMVMM_MAX_QUEUES];
	uint64_t features;     /* negotiated */

	/* transport hooks */
	void *transport;
	/* raise: set InterruptStatus bits (1 used buffer, 2 config) + interrupt */
	void (*raise)(struct smvmm_host *h, uint32_t isr_bits);
	/* needs_reset: set DEVICE_NEEDS_RESET and send a config interrupt */
	void (*set_needs_reset)(struct smvmm_host *h);
	bool needs_reset_logged; /* atomic; cleared by device_reset */

	/* Appended.  Plugin fd watches, guarded by `lock`: the event-loop
	 * callback re-checks this table under the lock before calling the
	 * plugin, which is what makes unwatch_fd safe inside an op. */
	struct host_watch *watches;
	unsigned int nwatches, watch_cap;
	bool push_clamp_logged;  /* vq_push with written > in_len (atomic) */
	/* Deferred reset (reset_defer/reset_done services), under `lock`:
	 * in_reset while ops->reset runs, reset_deferred from reset_defer
	 * until reset_done.  reset_completed: the transport's hook, NULL
	 * when it cannot defer a reset (vhost-user). */
	bool in_reset, reset_deferred;
	void (*reset_completed)(struct smvmm_host *h);
	bool bad_queue_logged;   /* vq_* with a queue index out of range */

	/* Appended.  Optional transport hook: a used buffer notification for
	 * queue q alone.  vhost-user has one call eventfd per queue where
	 * virtio-mmio has one interrupt line; when set, the vq_notify service
	 * calls it instead of raise(h, 1).  Takes no lock (like raise). */
	void (*raise_vq)(struct smvmm_host *h, uint16_t q);

	/* Appended.  check_only service: created for --check/--dump-acpi
	 * only (set by the caller after device_host_init). */
	bool check_only;
	/* config_path results, freed by device_destroy. */
	char **paths;
	unsigned int npaths;
};

/* The services table given to every plugin's create(). */
extern const struct smvmm_host_services smvmm_host_services_v1;

/*
 * device_host_init: zero *h, fill identity and memory fields, init locks and
 * queues (queues get their max size after create()).  kv/file/id must
 * outlive the host.  Main thread.
 */
void device_host_init(struct smvmm_host *h, const char *id, const char *file,
		      int section_line, const struct device_kv *kv,
		      unsigned int nkv, struct gmem *mem, struct evloop *loop);

/*
 * device_create: call ops->create, check the info it returned (device_id not
 * 0, num_queues 1..SMVMM_MAX_QUEUES, queue_size_max a power of two <= 32768,
 * config_size <= 256, VIRTIO_F_VERSION_1 offered, and none of the features
 * the core's transport cannot honour: VIRTIO_F_RING_PACKED,
 * VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_RESET) and size the queues.  A
 * create() that called config_error() fails with -EINVAL even if it returned
 * 0.  On failure the instance (if any) is destroyed, h->ops stays NULL and
 * err gets a one-line message naming the device.  -EINVAL for a missing
 * required op or bad info, or create()'s own -errno.  Main thread.
 */
int device_create(struct smvmm_host *h, const struct smvmm_device_ops *ops,
		  char *err, size_t errlen);

/*
 * device_destroy: remove the plugin's fd watches (waiting for a running
 * callback), reset, ops->destroy, free queue state and locks.  Safe after a
 * failed device_create.  The event loop may still be running.  Main thread.
 */
void device_destroy(struct smvmm_host *h);

/*
 * device_reset: under the device lock, ops->reset then reset every queue
 * (each under its lock), forget the negotiated features and re-arm the
 * once-only NEEDS_RESET log.  vCPU or main thread.
 */
void device_reset(struct smvmm_host *h);

/*
 * device_log: one line on stderr, "smvmm: [<id>] <message>" (errors and
 * warnings say so after the prefix).  DEBUG lines only with SMVMM_DEBUG set
 * in the environment.  Any thread.
 */
void device_log(struct smvmm_host *h, enum smvmm_log_level level,
		const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * device_needs_reset: the services' needs_reset with a format: the first
 * call after a reset logs the reason and calls h->set_needs_reset (which
 * sets DEVICE_NEEDS_RESET and notifies the driver, §2.1.2); later calls do
 * nothing.  Any thread; takes no device lock.
 */
void device_needs_reset(struct smvmm_host *h, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
