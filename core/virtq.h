/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueue, device side (VIRTIO 1.2 §2.7).
 *
 * Everything read from guest memory is untrusted.  Any violation of the rules
 * below makes the call return a negative errno, sets vq->broken, and stores a
 * one-line reason in vq->err; the transport then sets NEEDS_RESET and logs it
 * once.  A broken queue stays broken until virtq_reset().
 *
 *  - size a power of two, 1..max_size (§2.7: Queue Size);
 *  - desc 16-byte, avail 2-byte, used 4-byte aligned (§2.7 table), each ring
 *    wholly inside guest RAM;
 *  - avail->idx - last_avail_idx > size (§2.7.13.3; QEMU CVE-2016-5403);
 *  - head or next index >= size;
 *  - chains longer than size, counting indirect descriptors (loops);
 *  - VIRTQ_DESC_F_INDIRECT without the negotiated feature, nested indirect,
 *    indirect with NEXT set, an indirect table whose length is 0, not a
 *    multiple of 16, or larger than size * 16 (§2.7.5.3.1);
 *  - total length overflowing 32 bits; buffers that wrap or leave guest RAM
 *    (each checked over its whole length, not only its start);
 *  - a device-readable descriptor after a device-writable one (§2.7.4.2);
 *  - the same head popped again while still in flight.
 *
 * Not thread-safe: the caller holds a per-queue lock.
 */
#ifndef SMVMM_VIRTQ_H
#define SMVMM_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>

#include <smvmm/plugin.h>

#include "gmem.h"

/* VIRTIO 1.2 §2.7.5 descriptor flags */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
/* §2.7.6 / §2.7.8 ring flags */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* Feature bits (VIRTIO 1.2 §6) the virtqueue code itself honours. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_RING_PACKED 34

#define VIRTQ_MAX_SIZE 32768

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
} __attribute__((packed));

struct virtq {
	const struct gmem *mem;
	uint16_t max_size;   /* QueueNumMax */
	uint16_t index;      /* queue index, for messages */

	/* set by the driver through the transport */
	uint16_t size;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool ready;          /* virtq_setup succeeded */
	bool event_idx;      /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;       /* VIRTIO_F_INDIRECT_DESC negotiated */

	/* device state */
	uint16_t last_avail_idx; /* next avail ring slot to read */
	uint16_t used_idx;       /* our copy of used->idx */
	uint16_t signalled_used; /* used_idx at the last notification */
	bool signalled_used_valid;
	bool broken;
	char err[160];

	/* host pointers into guest RAM, valid when ready */
	struct virtq_desc *desc;
	uint16_t *avail;         /* flags, idx, ring[size], used_event */
	uint8_t *used;           /* flags, idx, ring[size]{id,len}, avail_event */
	uint8_t *inflight;       /* bitmap of heads popped and not pushed */
	uint32_t inflight_count;
};

/* virtq_init: an unset queue with QueueNumMax `max_size` (power of two). */
void virtq_init(struct virtq *vq, const struct gmem *mem, uint16_t index,
		uint16_t max_size);

/*
 * virtq_setup: validate size and ring addresses and make the queue ready.
 * `features` are the negotiated feature bits.  -EINVAL (vq->err says why).
 * -ENOMEM.
 */
int virtq_setup(struct virtq *vq, uint16_t size, uint64_t desc_gpa,
		uint64_t avail_gpa, uint64_t used_gpa, uint64_t features);

/* virtq_reset: back to the unset state; frees the in-flight bitmap. */
void virtq_reset(struct virtq *vq);

/*
 * virtq_pop: read the next chain.  1 with a malloc()ed *out (one allocation:
 * free() it, or pass it to virtq_push which frees it), 0 when the ring is
 * empty or the queue is not ready, negative errno when the driver broke the
 * queue (see the list above).  Publishes avail_event with EVENT_IDX.
 */
int virtq_pop(struct virtq *vq, struct smvmm_chain **out);

/*
 * virtq_push: add `c` to the used ring with `written` bytes (clamped to
 * c->in_len), bump used->idx (after a release barrier) and free c.
 * -EINVAL if c is not in flight on this queue.
 */
int virtq_push(struct virtq *vq, struct smvmm_chain *c, uint32_t written);

/*
 * virtq_should_notify: whether the driver wants a used buffer notification
 * now (§2.7.10: VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX).
 * Updates the signalled state; call once per notification decision.
 */
bool virtq_should_notify(struct virtq *vq);

/* virtq_has_avail: the avail ring has entries we have not popped. */
bool virtq_has_avail(struct virtq *vq);

#endif
