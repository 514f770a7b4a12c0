// SPDX-License-Identifier: MIT
/*
 * A small polling virtio-mmio driver library for the probe's device tests
 * (VIRTIO 1.2 §4.2.3 initialisation, §2.7 split virtqueues), usable for any
 * device and any number of queues.  Interrupts are not used: completion is
 * found by polling the used ring with a TSC deadline.
 *
 * Memory comes from a static arena in the probe's .bss (guest_alloc), which
 * is identity-mapped, so guest-virtual == guest-physical addresses.
 */
#ifndef PROBE_VQ_H
#define PROBE_VQ_H

#include "probe.h"

#define GVQ_MAX_SIZE 256

/* §2.1 Device Status Field */
#define GS_ACKNOWLEDGE 1
#define GS_DRIVER 2
#define GS_DRIVER_OK 4
#define GS_FEATURES_OK 8
#define GS_NEEDS_RESET 0x40
#define GS_FAILED 0x80

#define GVQ_F_VERSION_1 (1ull << 32)
#define GVQ_F_EVENT_IDX (1ull << 29)
#define GVQ_F_INDIRECT_DESC (1ull << 28)

#define GVQ_DESC_F_NEXT 1
#define GVQ_DESC_F_WRITE 2

struct gvq_desc {
	u64 addr;
	u32 len;
	u16 flags, next;
};

/* One split virtqueue owned by the probe. */
struct gvq {
	u16 index, size;
	struct gvq_desc *desc;  /* size entries, 16-byte aligned */
	volatile u16 *avail;    /* flags, idx, ring[size], used_event */
	volatile u8 *used;      /* flags, idx, ring[size]{id,len}, avail_event */
	u16 free_head, nfree;   /* free descriptor list, linked by next */
	u16 avail_idx;          /* next avail slot we write */
	u16 last_used;          /* next used slot we read */
	u16 chain_len[GVQ_MAX_SIZE]; /* descriptors per in-flight head */
};

/* A buffer for gvq_add: guest address, length, device-writable or not. */
struct gbuf {
	void *addr;
	u32 len;
	bool write;
};

/*
 * guest_alloc: zeroed memory from the probe's arena, `align` a power of two.
 * Returns NULL when the arena (256 KiB) is exhausted.  guest_alloc_mark /
 * guest_alloc_release give it back in LIFO order.
 */
void *guest_alloc(size_t size, size_t align);
size_t guest_alloc_mark(void);
void guest_alloc_release(size_t mark);

/* Register access at `base` (the device's virtio-mmio window). */
u32 vdev_rd(u64 base, u32 off);
void vdev_wr(u64 base, u32 off, u32 v);

/* vdev_reset: write 0 to Status and wait until it reads 0 (§4.2.3.1). */
bool vdev_reset(u64 base);

/*
 * vdev_negotiate: ACKNOWLEDGE, DRIVER, read the 64 device feature bits,
 * accept `want` & offered (VERSION_1 is required), FEATURES_OK, and check it
 * stuck (§3.1.1 steps 1-6).  offered and accepted may be NULL.
 */
bool vdev_negotiate(u64 base, u64 want, u64 *offered, u64 *accepted);

/*
 * gvq_setup: allocate and configure queue `index` with at most `size`
 * entries (rounded down to QueueNumMax's power of two), QueueReady=1
 * (§4.2.3.2).  False (and a reason in *why) when the queue is unusable.
 */
bool gvq_setup(u64 base, struct gvq *q, u16 index, u16 size, const char **why);

/* vdev_driver_ok: set DRIVER_OK (§3.1.1 step 8); false if it did not stick. */
bool vdev_driver_ok(u64 base);

/*
 * gvq_add: put a chain of n buffers (device-readable ones first) in the
 * avail ring and return its head, or -1 when there are too few free
 * descriptors.  Does not kick.
 */
int gvq_add(struct gvq *q, const struct gbuf *b, int n);

/* gvq_kick: QueueNotify with this queue's index (§4.2.3.3). */
void gvq_kick(u64 base, struct gvq *q);

/*
 * gvq_poll: take the next used element if there is one: returns true with
 * *id and *len, and frees the chain's descriptors.  A used id that is not in
 * flight returns true with *id = 0xffffffff (a device bug the caller reports).
 */
bool gvq_poll(struct gvq *q, u32 *id, u32 *len);

/* gvq_wait: gvq_poll until the deadline (opts.timeout_ms); false on timeout. */
bool gvq_wait(struct gvq *q, u32 *id, u32 *len);

/* vdev_ack_interrupts: read InterruptStatus and write it to InterruptACK. */
u32 vdev_ack_interrupts(u64 base);

/* vdev_config_read: device config space byte access (offset from 0x100). */
void vdev_config_read(u64 base, u32 off, void *buf, u32 len);

#endif
