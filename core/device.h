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

	struct gmem *mem;
	struct evloop *loop;   /* may be NULL (driver model without a loop) */

	/* the plugin */
	const struct smvmm_device_ops *ops;
	void *dev;
	struct smvmm_device_info info;
	pthread_mutex_t lock;  /* the per-device lock held around every op */

	unsigned int nr_queues;
	struct host_queue q[SMVMM_MAX_QUEUES];
	uint64_t features;     /* negotiated */

	/* transport hooks */
	void *transport;
	/* raise: set InterruptStatus bits (1 used buffer, 2 config) + interrupt */
	void (*raise)(struct smvmm_host *h, uint32_t isr_bits);
	/* needs_reset: set DEVICE_NEEDS_RESET and send a config interrupt */
	void (*set_needs_reset)(struct smvmm_host *h);
	bool needs_reset_logged;
};

/* The services table given to every plugin's create(). */
extern const struct smvmm_host_services smvmm_host_services_v1;

/*
 * device_host_init: fill identity and memory fields, init locks and queues
 * (queues get their max size after create()).  Main thread.
 */
void device_host_init(struct smvmm_host *h, const char *id, const char *file,
		      int section_line, const struct device_kv *kv,
		      unsigned int nkv, struct gmem *mem, struct evloop *loop);

/*
 * device_create: call ops->create, check the info it returned (num_queues
 * 1..SMVMM_MAX_QUEUES, queue_size_max a power of two <= 32768, config_size
 * <= 256, VIRTIO_F_VERSION_1 offered) and size the queues.  On failure writes
 * a message naming the device to err.  Main thread.
 */
int device_create(struct smvmm_host *h, const struct smvmm_device_ops *ops,
		  char *err, size_t errlen);

/* device_destroy: reset, ops->destroy, free queue state.  Main thread. */
void device_destroy(struct smvmm_host *h);

/*
 * device_reset: under the device lock, ops->reset then reset every queue.
 */
void device_reset(struct smvmm_host *h);

/* device_log: printf-style log line prefixed with the device id. */
void device_log(struct smvmm_host *h, enum smvmm_log_level level,
		const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
