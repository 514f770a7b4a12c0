/* SPDX-License-Identifier: MIT */
/*
 * The driver model (libsmvmm-devtest): an in-process virtio driver that
 * drives a REAL device plugin (smvmm-<type>.so, loaded by the real loader)
 * through the REAL virtio-mmio transport (vmmio_access) over fake guest RAM
 * (two gmem regions with a hole between them).  Unit tests and benchmarks of
 * every device use it; see docs/driver-model.md for a walk-through.
 *
 *   struct devtest *t = devtest_new("virtio-rng", NULL, NULL, err, sizeof err);
 *   devtest_init_device(t, DEVTEST_FEATURES_ALL);        // §3.1.1
 *   uint64_t buf = devtest_alloc(t, 64, 8);
 *   devtest_chain_begin(t, 0, 0);
 *   devtest_chain_add(t, buf, 64, true);                 // device-writable
 *   int head = devtest_chain_submit(t);                  // avail ring
 *   devtest_kick(t, 0);                                  // QueueNotify
 *   devtest_wait_used(t, 0, 1000, &id, &len);            // used ring
 *   devtest_free(t);
 *
 * Two modes (devtest_opts.threaded):
 *   - synchronous (default): no I/O thread.  A kick is an MMIO write of
 *     QueueNotify that the transport dispatches to the plugin's queue_notify
 *     on the calling thread; plugin fd watches (timers, sockets) run when the
 *     driver waits (devtest_wait_used, devtest_run_io), which pump the event
 *     loop with evloop_run_once.  Deterministic; ideal for unit tests.
 *   - threaded: an evloop thread as in the VMM.  Each ready queue gets an
 *     ioeventfd (the transport's ioevent hook); devtest_kick writes it like
 *     KVM would, and the plugin runs on the I/O thread concurrently with the
 *     driver.  Use it for concurrency tests and benchmarks.
 *
 * Guest memory layout (defaults): region 0 = [0, ram/2), a hole of hole_size
 * bytes, region 1 = [ram/2 + hole, ram + hole).  The first 4 KiB of region 0
 * are never handed out by the allocator (gpa 0 stays a "NULL" trap).
 *
 * The driver side checks the device too: a used element with an id that is
 * not an in-flight head, or a length above the chain's writable bytes, makes
 * devtest_wait_used/devtest_poll_used fail with -EPROTO and a message in
 * devtest_error().
 *
 * Threads: one struct devtest is driven by one thread at a time (the "vCPU"
 * and driver); in threaded mode the device runs on the I/O thread.  Distinct
 * instances are independent.  Little-endian hosts only (as the VMM).
 *
 * Errors: functions returning int return >= 0 on success and a negative errno
 * on failure, with a one-line explanation in devtest_error(t).
 */
#ifndef SMVMM_DEVTEST_H
#define SMVMM_DEVTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <smvmm/plugin.h>

#include "device.h"
#include "virtio_mmio.h"
#include "virtq.h"

#ifdef __cplusplus
extern "C" {
#endif

struct devtest;

/* Accept every feature the device offers (devtest_init_device). */
#define DEVTEST_FEATURES_ALL UINT64_MAX

/* Largest indirect table devtest_chain_begin(.., DEVTEST_CHAIN_INDIRECT). */
#define DEVTEST_MAX_INDIRECT 64

/* devtest_chain_begin flags */
#define DEVTEST_CHAIN_INDIRECT 1u /* one ring descriptor -> indirect table */

struct devtest_opts {
	/* Total fake RAM in bytes, split into two equal regions; rounded up
	 * to 8 KiB.  0: 4 MiB. */
	uint64_t ram_size;
	/* Gap between the two regions, bytes, 4 KiB multiple.  0: 1 MiB. */
	uint64_t hole_size;
	/* QueueNum for queues set up by devtest_init_device; capped at the
	 * device's QueueNumMax.  0: QueueNumMax capped at 256. */
	uint16_t queue_size;
	/* Run an I/O thread and ioeventfds (see above).  Default false. */
	bool threaded;
	/* Directory with smvmm-<type>.so, tried first.  NULL: the loader's
	 * normal search with "next to the binary" = $SMVMM_BUILD_DIR when
	 * set (ctest sets it), else the test binary's directory. */
	const char *plugin_dir;
	/* Device id for log lines and config errors.  NULL: "devtest". */
	const char *id;
	/* Pass keys the plugin does not list in config_keys (normally
	 * rejected like machine_check_device_keys does). */
	bool allow_unknown_keys;
};

/*
 * devtest_new: load smvmm-<type>.so, create the fake RAM, the device (keys
 * from `kv`, a NULL-terminated list of "key=value" strings, may be NULL;
 * reported as file "devtest", line = 1 + index in kv) and attach a virtio-mmio
 * transport.  `opts` may be NULL for defaults.  Returns NULL on failure with
 * the reason in err: loader errors, "key: unknown key ...", malformed
 * "key=value", and the plugin's config_error() text
 * ("devtest:<line>: [device.<id>] <key>: <message>").  Main thread.
 */
struct devtest *devtest_new(const char *type, const char *const *kv,
			    const struct devtest_opts *opts, char *err,
			    size_t errlen);

/*
 * devtest_free: stop the I/O thread, destroy the device (reset + destroy),
 * the transport, the plugin and the RAM.  NULL is a no-op.
 */
void devtest_free(struct devtest *t);

/* devtest_error: the last error message ("" if none); valid until next call. */
const char *devtest_error(const struct devtest *t);

/* ------------------------------------------------------------------------ */
/* Device initialisation (VIRTIO 1.2 §3.1.1, §4.2.3.1.1, §4.2.3.2)          */

/*
 * devtest_init_device: the whole driver init sequence through registers:
 * check MagicValue/Version/DeviceID, reset, ACKNOWLEDGE, DRIVER, negotiate
 * (device features & accept), FEATURES_OK and its read-back, set up every
 * queue the device has (QueueNumMax != 0) with rings in region 0, DRIVER_OK.
 * -ENODEV (bad magic/version/device id 0), -ENOTSUP (FEATURES_OK refused;
 * FAILED is then set as §3.1.1 says), -EIO (a queue did not become ready,
 * or NEEDS_RESET/FAILED after DRIVER_OK), -ENOMEM (fake RAM exhausted).
 */
int devtest_init_device(struct devtest *t, uint64_t accept_features);

/*
 * The same sequence in steps, for tests that stop or misbehave in between:
 * devtest_reset writes Status 0, waits for it to read 0 and forgets all
 * driver-side queue state (ring memory is kept and reused).
 * devtest_negotiate does ACKNOWLEDGE, DRIVER, features, FEATURES_OK and
 * returns the accepted features in *features (-ENOTSUP if refused).
 * devtest_setup_queue sets up queue q with `size` entries (0 = default).
 * devtest_driver_ok sets DRIVER_OK.
 */
int devtest_reset(struct devtest *t);
int devtest_negotiate(struct devtest *t, uint64_t accept, uint64_t *features);
int devtest_setup_queue(struct devtest *t, uint16_t q, uint16_t size);
int devtest_driver_ok(struct devtest *t);

/* devtest_features: features negotiated by the last devtest_negotiate. */
uint64_t devtest_features(const struct devtest *t);
/* devtest_num_queues: queues found by devtest_init_device. */
unsigned int devtest_num_queues(const struct devtest *t);
/* devtest_queue_size: QueueNum in use for q (0 = not set up). */
uint16_t devtest_queue_size(const struct devtest *t, uint16_t q);

/* ------------------------------------------------------------------------ */
/* Registers (the vCPU side).  `off` is an offset into the register window. */

uint32_t devtest_read32(struct devtest *t, uint32_t off);
void devtest_write32(struct devtest *t, uint32_t off, uint32_t val);
/* Any width (1, 2, 4; 8 in config space), as a vCPU access would be. */
void devtest_access(struct devtest *t, uint32_t off, void *data, uint32_t len,
		    bool is_write);
/* Status register (§2.1), e.g. & VIRTIO_STATUS_NEEDS_RESET. */
uint32_t devtest_status(struct devtest *t);
/*
 * devtest_config_read / _write: device config space at `off` (from 0x100),
 * split into naturally aligned accesses of up to 4 bytes (8 if len is 8 and
 * off is 8-aligned).  Out-of-range bytes read as the transport returns them.
 */
void devtest_config_read(struct devtest *t, uint32_t off, void *buf,
			 uint32_t len);
void devtest_config_write(struct devtest *t, uint32_t off, const void *buf,
			  uint32_t len);

/* ------------------------------------------------------------------------ */
/* Interrupts                                                               */

/* devtest_irq_count: interrupts the transport raised since devtest_new. */
uint64_t devtest_irq_count(struct devtest *t);
/*
 * devtest_wait_irq: wait until devtest_irq_count() differs from `seen` (an
 * earlier devtest_irq_count()), at most timeout_us microseconds; in
 * synchronous mode, runs the device's I/O once meanwhile.  0 or -ETIMEDOUT.
 * For drivers that serve several queues (any interrupt wakes them).
 */
int devtest_wait_irq(struct devtest *t, uint64_t seen, int timeout_us);
/* devtest_ack_irq: read InterruptStatus, write it to InterruptAck, return it. */
uint32_t devtest_ack_irq(struct devtest *t);

/* ------------------------------------------------------------------------ */
/* Fake guest RAM                                                           */

/*
 * devtest_alloc: `size` bytes aligned to `align` (power of two, 0 = 8) from
 * region 0, then region 1; zeroed.  Returns the gpa, or 0 when RAM is
 * exhausted (0 is never a valid allocation).  devtest_alloc_in picks the
 * region (0 or 1).  A bump allocator: release with devtest_alloc_release
 * back to a devtest_alloc_mark.
 */
uint64_t devtest_alloc(struct devtest *t, uint64_t size, uint64_t align);
uint64_t devtest_alloc_in(struct devtest *t, unsigned int region,
			  uint64_t size, uint64_t align);
struct devtest_mark {
	uint64_t next[2];
};
struct devtest_mark devtest_alloc_mark(const struct devtest *t);
void devtest_alloc_release(struct devtest *t, struct devtest_mark m);

/* devtest_gpa: host pointer for [gpa, gpa+len) or NULL if not RAM. */
void *devtest_gpa(struct devtest *t, uint64_t gpa, uint64_t len);
/* devtest_region: base and size of region i (0 or 1); -EINVAL. */
int devtest_region(const struct devtest *t, unsigned int i, uint64_t *gpa,
		   uint64_t *size);
/* devtest_hole_gpa: first byte of the hole between the regions. */
uint64_t devtest_hole_gpa(const struct devtest *t);
/* devtest_ram_end: first byte after region 1. */
uint64_t devtest_ram_end(const struct devtest *t);

/* ------------------------------------------------------------------------ */
/* Building and submitting chains (§2.7.13)                                 */

/*
 * devtest_chain_begin: start a chain on queue q (set up already).  With
 * DEVTEST_CHAIN_INDIRECT the descriptors go into an indirect table
 * (§2.7.5.3) owned by the head; the ring gets one descriptor.  -EBUSY when
 * a chain is already being built; -EINVAL for a queue not set up.
 */
int devtest_chain_begin(struct devtest *t, uint16_t q, unsigned int flags);

/*
 * devtest_chain_add: append a buffer; VIRTQ_DESC_F_NEXT/next are filled in
 * at submit.  Returns the descriptor's index (in the ring's table, or in the
 * indirect table), -ENOSPC when the queue has no free descriptor (or the
 * indirect table is full), -EINVAL without devtest_chain_begin.
 */
int devtest_chain_add(struct devtest *t, uint64_t gpa, uint32_t len,
		      bool device_writable);

/*
 * devtest_chain_add_raw: append a descriptor written exactly as given
 * (hostile tests: loops, bad next, INDIRECT flags, buffers in the hole).
 * Returns its index like devtest_chain_add.  Use the returned indices of
 * earlier descriptors to build loops.
 */
int devtest_chain_add_raw(struct devtest *t, uint64_t addr, uint32_t len,
			  uint16_t flags, uint16_t next);

/*
 * devtest_chain_submit: write the descriptors, put the head in the avail
 * ring and publish avail->idx (release).  Does not kick.  Returns the head
 * index (the id the used ring will report) or -errno.
 */
int devtest_chain_submit(struct devtest *t);

/* devtest_chain_abort: drop the chain being built. */
void devtest_chain_abort(struct devtest *t);

/*
 * devtest_submit_buf: one-buffer chain on queue q, submitted (not kicked).
 * Returns the head or -errno.
 */
int devtest_submit_buf(struct devtest *t, uint16_t q, uint64_t gpa,
		       uint32_t len, bool device_writable);

/*
 * devtest_kick: notify queue q unconditionally: the ioeventfd in threaded
 * mode, else a QueueNotify write (the plugin's queue_notify runs before
 * this returns).  devtest_kick_if_needed honours VIRTQ_USED_F_NO_NOTIFY or,
 * with EVENT_IDX, avail_event (§2.7.10); returns true if it kicked.
 */
void devtest_kick(struct devtest *t, uint16_t q);
bool devtest_kick_if_needed(struct devtest *t, uint16_t q);

/*
 * devtest_poll_used: take one used element of q if there is one.  1 with
 * *id (head) and *len (bytes written), 0 if none, -EPROTO if the device
 * returned a bad id or length (message in devtest_error).  The chain's
 * descriptors are freed.  id/len may be NULL.
 */
int devtest_poll_used(struct devtest *t, uint16_t q, uint16_t *id,
		      uint32_t *len);

/*
 * devtest_wait_used: devtest_poll_used, waiting up to timeout_ms (< 0:
 * forever) and running the device's I/O meanwhile (synchronous mode).
 * 0, -ETIMEDOUT, -EPROTO.
 */
int devtest_wait_used(struct devtest *t, uint16_t q, int timeout_ms,
		      uint16_t *id, uint32_t *len);

/* devtest_inflight: chains of q submitted and not yet seen in the used ring. */
unsigned int devtest_inflight(const struct devtest *t, uint16_t q);

/*
 * devtest_run_io: synchronous mode: dispatch the device's pending fd events
 * (timers...) waiting up to timeout_ms for the first one; threaded mode:
 * sleep timeout_ms.  Returns the evloop_run_once result or 0.
 */
int devtest_run_io(struct devtest *t, int timeout_ms);

/* ------------------------------------------------------------------------ */
/* Hostile and low-level driver actions                                     */

/* devtest_desc_write: write descriptor idx (< queue size) of q verbatim. */
int devtest_desc_write(struct devtest *t, uint16_t q, uint16_t idx,
		       uint64_t addr, uint32_t len, uint16_t flags,
		       uint16_t next);
/*
 * devtest_avail_add: put `head` (any value) in the next avail slot and bump
 * avail->idx.  The head is tracked as in flight if it is < size, so its
 * completion is accepted by devtest_poll_used (its descriptors are not
 * managed by devtest: they stay allocated until devtest_reset).
 */
int devtest_avail_add(struct devtest *t, uint16_t q, uint16_t head);
/* devtest_avail_set_idx: write avail->idx verbatim (and the driver shadow). */
int devtest_avail_set_idx(struct devtest *t, uint16_t q, uint16_t idx);
/* devtest_set_no_interrupt: set/clear VIRTQ_AVAIL_F_NO_INTERRUPT. */
int devtest_set_no_interrupt(struct devtest *t, uint16_t q, bool on);
/* devtest_set_used_event: write used_event (EVENT_IDX, §2.7.10). */
int devtest_set_used_event(struct devtest *t, uint16_t q, uint16_t idx);
/* devtest_used_idx: the device's used->idx for q, read now (acquire). */
uint16_t devtest_used_idx(struct devtest *t, uint16_t q);

/*
 * devtest_setup_queue_raw: select q and write QueueNum and the three ring
 * addresses verbatim, then QueueReady = 1.  Returns QueueReady read back
 * (0 or 1).  The driver-side state of q is not touched: use it to check
 * that the transport refuses bad rings.
 */
int devtest_setup_queue_raw(struct devtest *t, uint16_t q, uint32_t num,
			    uint64_t desc, uint64_t driver, uint64_t device);

/* ------------------------------------------------------------------------ */
/* White box                                                                */

/* The device as the core sees it (plugin ops, queues), and the transport. */
struct smvmm_host *devtest_host(struct devtest *t);
struct vmmio *devtest_transport(struct devtest *t);
/* The loaded plugin's descriptor (name, config_keys...). */
const struct smvmm_plugin_desc *devtest_plugin(const struct devtest *t);

#ifdef __cplusplus
}
#endif
#endif /* SMVMM_DEVTEST_H */
