/* SPDX-License-Identifier: MIT */
/*
 * smvmm device plugin ABI, major version 1.
 *
 * A device plugin is a shared object that exports exactly one symbol,
 * SMVMM_PLUGIN_SYMBOL ("smvmm_plugin_v1"), a `const struct smvmm_plugin_desc`.
 * The ABI major version is part of the symbol name; the minor version and the
 * size of every table are carried in the data, so the host can load a plugin
 * built against an older minor version:
 *
 *   - same major (the symbol name), plugin minor <= host minor;
 *   - the host copies min(struct_size, sizeof(host struct)) of each table into a
 *     zeroed host copy, so fields a plugin does not know about read as 0/NULL;
 *   - required ops that are NULL make the loader reject the plugin, naming the
 *     file and the op; optional ops that are NULL mean "not supported".
 *
 * Tables are only ever appended to; fields are never reordered or removed.
 *
 * The core owns the virtio-mmio register file (VIRTIO 1.2 §4.2.2) and the split
 * virtqueues (VIRTIO 1.2 §2.7).  A device plugin never sees QueueSel, Status or
 * descriptor addresses: it sees decoded events (features, config space,
 * DRIVER_OK, queue notify, reset) and validated descriptor chains whose buffers
 * are already translated into host virtual addresses.
 *
 * Plugins link only libc (plus their own backend library) and use nothing from
 * the core but the services table passed to create(); build them with
 * -Wl,-z,defs to prove it.  `pkg-config --cflags smvmm-plugin` gives the flags.
 *
 * Threads and locking
 * -------------------
 *   - create/destroy run on the main thread before the VM starts / after it
 *     stopped.
 *   - config_read/config_write run on a vCPU thread (the MMIO exit).
 *   - set_features, activate and reset run on a vCPU thread (Status writes).
 *   - fd-watch callbacks run on the I/O (event loop) thread; so does
 *     queue_notify for ioeventfd kicks, but see queue_notify for the cases
 *     where it runs on a vCPU thread.
 *   - The core holds one per-device mutex around every op and every fd-watch
 *     callback, so a plugin's ops never run concurrently with each other.
 *   - Virtqueue services (vq_pop/vq_push/vq_notify) take a per-queue lock inside
 *     the core and may be called from any thread, including plugin worker
 *     threads.  reset() must stop such workers (and wait for them) before it
 *     returns; after reset returns the plugin must not touch its chains again.
 */
#ifndef SMVMM_PLUGIN_H
#define SMVMM_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SMVMM_PLUGIN_ABI_MAJOR 1
#define SMVMM_PLUGIN_ABI_MINOR 0
/* The one symbol a plugin exports; the major version is in its name. */
#define SMVMM_PLUGIN_SYMBOL "smvmm_plugin_v1"

/* What kind of plugin a descriptor describes. */
enum smvmm_plugin_kind {
	SMVMM_PLUGIN_DEVICE = 1,  /* ops: const struct smvmm_device_ops * */
	SMVMM_PLUGIN_BACKEND = 2, /* ops: const struct smvmm_backend_ops * (backend.h) */
};

/* Log levels for smvmm_host_services.log. */
enum smvmm_log_level {
	SMVMM_LOG_ERROR = 0,
	SMVMM_LOG_WARN = 1,
	SMVMM_LOG_INFO = 2,
	SMVMM_LOG_DEBUG = 3,
};

/* fd-watch event bits (same values as EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP). */
#define SMVMM_FD_IN 0x001u
#define SMVMM_FD_OUT 0x004u
#define SMVMM_FD_ERR 0x008u
#define SMVMM_FD_HUP 0x010u

/* Largest number of virtqueues one device may have. */
#define SMVMM_MAX_QUEUES 64

/*
 * One validated descriptor chain (VIRTIO 1.2 §2.7.5, §2.7.13.2).
 *
 * iov[0 .. n_out-1] are the device-readable buffers, iov[n_out .. n_out+n_in-1]
 * the device-writable ones, in chain order, indirect tables already flattened.
 * Every iov lies wholly inside guest RAM; out_len/in_len are the byte totals
 * (their sum fits in 32 bits).  The chain is owned by the plugin from vq_pop()
 * until it hands it back with vq_push(); the core frees it there.
 */
struct smvmm_chain {
	uint16_t queue;     /* queue index */
	uint16_t head;      /* head descriptor index: the used ring element id */
	uint32_t n_out;     /* device-readable segments */
	uint32_t n_in;      /* device-writable segments */
	uint32_t out_len;   /* bytes in the readable segments */
	uint32_t in_len;    /* bytes in the writable segments */
	struct iovec *iov;  /* n_out + n_in entries */
};

struct smvmm_host; /* opaque: one per device instance, owned by the core */

/* fd-watch callback; runs on the I/O thread with the device lock held. */
typedef void (*smvmm_fd_cb)(void *dev, int fd, uint32_t events);

/*
 * Services the host offers a device plugin.  Every function takes the
 * `struct smvmm_host *` the plugin got in create().  Functions returning int
 * return 0 (or a count) on success and a negative errno on failure.
 */
struct smvmm_host_services {
	uint32_t struct_size; /* sizeof(struct smvmm_host_services) of the host */

	/*
	 * log: one line to the VMM log, prefixed with the device id.  Any thread.
	 */
	void (*log)(struct smvmm_host *h, enum smvmm_log_level level,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

	/*
	 * config_get: the value of a plugin-specific key from this device's
	 * [device.<id>] section, or NULL if absent.  Only keys the plugin listed
	 * in smvmm_plugin_desc.config_keys are present (others are rejected by
	 * the core at parse time).  The string lives as long as the device.
	 * Main thread, during create().
	 */
	const char *(*config_get)(struct smvmm_host *h, const char *key);

	/*
	 * config_error: report that key's value is invalid.  The core prints
	 * "<file>:<line>: [device.<id>] <key>: <message>" and create() must
	 * then return -EINVAL.  Main thread, during create().
	 */
	void (*config_error)(struct smvmm_host *h, const char *key,
			     const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));

	/*
	 * gpa_to_hva: translate [gpa, gpa+len) to a host pointer, or NULL if any
	 * byte of it lies outside guest RAM or the range wraps.  The pointer
	 * stays valid until destroy().  Any thread.
	 */
	void *(*gpa_to_hva)(struct smvmm_host *h, uint64_t gpa, uint64_t len);

	/*
	 * vq_pop: take the next available descriptor chain of queue `q`
	 * (VIRTIO 1.2 §2.7.13.2).  Returns 1 and stores a chain in *out, 0 if
	 * the avail ring is empty (or the queue is not enabled), or a negative
	 * errno if the driver broke the queue; the core has then marked the
	 * device NEEDS_RESET and logged why, and the plugin should stop using
	 * the queue until reset().  With VIRTIO_F_EVENT_IDX, pop also publishes
	 * avail_event.  Any thread; per-queue lock inside.
	 */
	int (*vq_pop)(struct smvmm_host *h, uint16_t q, struct smvmm_chain **out);

	/*
	 * vq_push: put chain `c` in the used ring with `written` bytes written
	 * into its device-writable buffers (VIRTIO 1.2 §2.7.8), and free it.
	 * `written` larger than c->in_len is clamped and logged.  Does not
	 * interrupt the driver; call vq_notify() after a batch.  Any thread.
	 */
	int (*vq_push)(struct smvmm_host *h, struct smvmm_chain *c,
		       uint32_t written);

	/*
	 * vq_notify: send a used buffer notification for queue `q` unless the
	 * driver suppressed it (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with
	 * VIRTIO_F_EVENT_IDX, VIRTIO 1.2 §2.7.10).  Any thread.
	 */
	void (*vq_notify)(struct smvmm_host *h, uint16_t q);

	/*
	 * config_changed: send a configuration change notification
	 * (VIRTIO 1.2 §4.2.2, InterruptStatus bit 1).  Any thread.
	 */
	void (*config_changed)(struct smvmm_host *h);

	/*
	 * needs_reset: mark the device VIRTIO_CONFIG_S_NEEDS_RESET (§2.1.2) and
	 * notify the driver; `why` is logged once.  Any thread.
	 */
	void (*needs_reset)(struct smvmm_host *h, const char *why);

	/*
	 * watch_fd: call cb(dev, fd, events) on the I/O thread whenever fd has
	 * any of `events` (SMVMM_FD_*).  Level-triggered.  Watching an fd
	 * already watched replaces its events/callback.  Main or I/O thread.
	 */
	int (*watch_fd)(struct smvmm_host *h, int fd, uint32_t events,
			smvmm_fd_cb cb);

	/*
	 * unwatch_fd: stop watching fd.  After it returns the callback for fd
	 * will not run again.  Main or I/O thread.
	 */
	int (*unwatch_fd)(struct smvmm_host *h, int fd);

	/*
	 * Appended after ABI 1.0 (no minor bump: a plugin calls these only
	 * when struct_size covers them, SMVMM_SVC_HAS(svc, field); older
	 * hosts lack them).
	 */

	/*
	 * config_path (since: services table growth 1): like config_get, but
	 * a relative value is resolved against the directory of the file the
	 * [device.<id>] section is in (as [boot] kernel is), so the path does
	 * not depend on smvmm's working directory.  NULL if absent; the
	 * string lives as long as the device.  Main thread, during create().
	 */
	const char *(*config_path)(struct smvmm_host *h, const char *key);

	/*
	 * check_only (since: services table growth 1): 1 when the device is
	 * created only to validate the machine (smvmm --check, --dump-acpi)
	 * and will never run: create() must check its keys but must not
	 * create, remove, bind or lock files.  0 otherwise.  Any thread.
	 */
	int (*check_only)(struct smvmm_host *h);

	/*
	 * reset_defer (since: services table growth 2): called from reset()
	 * by a plugin that cannot finish the reset now, because work it
	 * cannot cancel still writes into guest memory (a preadv into guest
	 * RAM on storage that stopped answering).  0: the transport accepted:
	 * reset() may return at once, the driver reads a non-zero Status
	 * until the plugin calls reset_done() (VIRTIO 1.2 §2.4.2: the driver
	 * waits for Status 0 before it reinitializes), and every register
	 * write meanwhile is ignored.  The queues are reset anyway: the
	 * plugin must not push its remaining chains (it frees them) and must
	 * call reset_done() once nothing of it touches guest memory any
	 * more.  -ENOTSUP: this transport cannot wait (vhost-user, whose
	 * front-end may unmap the memory as soon as reset returns): reset()
	 * must wait as before.  Only meaningful inside reset(); -EINVAL
	 * elsewhere.  The thread reset() runs on.
	 */
	int (*reset_defer)(struct smvmm_host *h);

	/*
	 * reset_done (since: services table growth 2): the deferred reset is
	 * complete: Status reads 0 again.  Any thread, no plugin lock held
	 * that an op could be waiting for (the core takes the device lock).
	 */
	void (*reset_done)(struct smvmm_host *h);
};

/* Does the host's services table have `field` (an appended service)? */
#define SMVMM_SVC_HAS(svc, field)                                  \
	((svc)->struct_size >= offsetof(struct smvmm_host_services, field) + \
				       sizeof((svc)->field) &&          \
	 (svc)->field != NULL)

/*
 * What a device tells the core about itself, filled in by create().
 */
struct smvmm_device_info {
	uint32_t device_id;      /* VIRTIO 1.2 §5: 4 = entropy, 2 = block, ... */
	uint32_t vendor_id;      /* 0 means the core's default */
	uint32_t num_queues;     /* 1 .. SMVMM_MAX_QUEUES */
	uint16_t queue_size_max; /* power of two, 1 .. 32768 (QueueNumMax) */
	uint16_t reserved;
	uint32_t config_size;    /* bytes of device config space, <= 256 */
};

/*
 * Device operations.  `dev` is what create() stored.
 */
struct smvmm_device_ops {
	uint32_t struct_size; /* sizeof(struct smvmm_device_ops) of the plugin */

	/* --- required --- */

	/*
	 * create: make one device instance from its [device.<id>] keys (read
	 * them with svc->config_get).  Fills *info and stores the instance in
	 * *dev.  Returns 0 or a negative errno (after config_error() for bad
	 * keys).  `svc` and `h` stay valid until destroy().  Main thread.
	 */
	int (*create)(const struct smvmm_host_services *svc,
		      struct smvmm_host *h, struct smvmm_device_info *info,
		      void **dev);

	/* destroy: free the instance; the device is reset already.  Main thread. */
	void (*destroy)(void *dev);

	/*
	 * get_features: the device feature bits (VIRTIO 1.2 §2.2), all 64.
	 * The core adds nothing; a modern device must offer VIRTIO_F_VERSION_1
	 * (bit 32).  vCPU thread.
	 */
	uint64_t (*get_features)(void *dev);

	/*
	 * set_features: the driver wrote FEATURES_OK with these features (a
	 * subset of get_features(), checked by the core).  Return 0 to accept,
	 * a negative errno to refuse (FEATURES_OK then reads back clear,
	 * §3.1.1).  vCPU thread.
	 */
	int (*set_features)(void *dev, uint64_t features);

	/*
	 * config_read / config_write: access to device config space at byte
	 * `offset` (0-based), `len` 1, 2, 4 or 8; offset+len <= config_size is
	 * checked by the core.  Values are little-endian in `data`.  Return 0
	 * or a negative errno (reads then return zeros, writes are dropped).
	 * vCPU thread.
	 */
	int (*config_read)(void *dev, uint32_t offset, void *data, uint32_t len);
	int (*config_write)(void *dev, uint32_t offset, const void *data,
			    uint32_t len);

	/*
	 * activate: the driver set DRIVER_OK (§3.1.1 step 8); queues are set up
	 * and may be used.  A negative errno puts the device in NEEDS_RESET.
	 * vCPU thread.
	 */
	int (*activate)(void *dev);

	/*
	 * queue_notify: the driver kicked queue `q` (QueueNotify, ioeventfd).
	 * Only called after activate().  Usually the I/O thread (ioeventfd);
	 * a vCPU thread when the kick arrives as an MMIO write (a backend
	 * without ioeventfd) and for a kick sent before DRIVER_OK, which is
	 * delivered on the vCPU thread right after activate().  Always under
	 * the device lock.
	 */
	void (*queue_notify)(void *dev, uint16_t q);

	/*
	 * reset: the driver wrote 0 to Status (§2.4) or the VM is stopping.
	 * Stop all work, drop every chain, forget negotiated features; the
	 * core resets the queues.  Work that cannot be stopped (I/O into
	 * guest memory already under way) is waited for, or, where the
	 * transport allows it, left to finish after reset_defer() (see the
	 * services table).  vCPU or main thread.
	 */
	void (*reset)(void *dev);

	/* --- optional (NULL: not supported) --- */

	/*
	 * snapshot_save: serialize device state (not guest RAM, not queue state,
	 * which the core saves) into a malloc()ed buffer *data of *len bytes,
	 * which the core frees.  Called with the VM paused.  Main thread.
	 */
	int (*snapshot_save)(void *dev, void **data, size_t *len);

	/*
	 * snapshot_restore: the inverse; `data` is untrusted (validate every
	 * field).  Called on a freshly created device, VM paused.  Main thread.
	 */
	int (*snapshot_restore)(void *dev, const void *data, size_t len);
};

/*
 * The exported descriptor: `const struct smvmm_plugin_desc smvmm_plugin_v1`.
 */
struct smvmm_plugin_desc {
	uint32_t abi_major;   /* SMVMM_PLUGIN_ABI_MAJOR the plugin was built for */
	uint32_t abi_minor;   /* SMVMM_PLUGIN_ABI_MINOR the plugin was built for */
	uint32_t struct_size; /* sizeof(struct smvmm_plugin_desc) of the plugin */
	uint32_t kind;        /* enum smvmm_plugin_kind */
	const char *name;     /* "virtio-rng": the INI `type` it implements */
	const char *version;  /* the plugin's own version string */
	const char *description;
	/* NULL-terminated list of plugin-specific INI keys it accepts. */
	const char *const *config_keys;
	/* struct smvmm_device_ops or struct smvmm_backend_ops, by kind */
	const void *ops;
};

/* Convenience for plugins: declare the exported descriptor. */
#define SMVMM_PLUGIN_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
}
#endif
#endif /* SMVMM_PLUGIN_H */
