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
 * Bounds chosen (VIRTIO 1.2 §2.7.5.3.1: "A driver MUST NOT create a descriptor
 * chain longer than the Queue Size"; §2.7.4.1: the device "MAY have a
 * reasonable limit of descriptors it will allow in a chain"):
 *  - at most `size` descriptors are walked in the descriptor table (the one
 *    carrying VIRTQ_DESC_F_INDIRECT included);
 *  - an indirect table holds 1..size entries (len 16..size*16, a multiple
 *    of 16) and at most that many of its entries are walked;
 *  - at most `size` buffer descriptors in total (direct ones plus indirect
 *    table entries; the descriptor that points at the table is not a
 *    buffer), so a chain has at most `size` iovecs.
 * Zero-length descriptors are allowed by the spec (nothing forbids them,
 * §2.7.5): they take part in the ordering and count rules above but add no
 * iovec and their address is not looked at (QEMU CVE-2016-6490 asserted on
 * them).  The WRITE flag of a descriptor that points at an indirect table is
 * ignored (§2.7.5.3.2).
 *
 * Error codes returned by virtq_setup / virtq_pop:
 *   -EINVAL    malformed size, alignment, index, flags or indirect table;
 *   -EFAULT    a ring, indirect table or buffer not wholly in guest RAM;
 *   -EOVERFLOW the chain's total length does not fit in 32 bits;
 *   -ELOOP     more descriptors than the bounds above (a loop);
 *   -EIO       the queue was already broken (by an earlier call);
 *   -ENOMEM    allocation failure: the queue is NOT marked broken and the
 *              chain stays in the avail ring (a later pop retries it).
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
	uint8_t *used;           /* flags, idx, ring[size]{id,len},
				    avail_event */
	uint8_t *inflight;       /* bitmap of heads popped and not pushed */
	uint32_t inflight_count;
	uint32_t gen;            /* unique per setup/restore, 0 when unset:
				    chains of an earlier one fail virtq_push */
};

/*
 * virtq_init: an unset queue with QueueNumMax `max_size` (power of two,
 * <= VIRTQ_MAX_SIZE; 0 makes every virtq_setup fail).  `mem` must outlive
 * the queue.  Main thread.
 */
void virtq_init(struct virtq *vq, const struct gmem *mem, uint16_t index,
		uint16_t max_size);

/*
 * virtq_setup: validate size and ring addresses and make the queue ready.
 * `features` are the negotiated feature bits (VIRTIO_F_EVENT_IDX and
 * VIRTIO_F_INDIRECT_DESC are honoured; VIRTIO_F_RING_PACKED is refused).
 * The rings are (§2.7): desc 16*size bytes, 16-aligned; avail 4+2*size
 * (+2 with EVENT_IDX), 2-aligned; used 4+8*size (+2 with EVENT_IDX),
 * 4-aligned; each must lie within one RAM region.  Indices start at 0.
 * Errors: -EINVAL or -EFAULT (queue marked broken, vq->err says why),
 * -EBUSY if already ready, -EIO if broken (call virtq_reset first), -ENOMEM.
 * Transport (vCPU) thread, queue lock held.
 */
int virtq_setup(struct virtq *vq, uint16_t size, uint64_t desc_gpa,
		uint64_t avail_gpa, uint64_t used_gpa, uint64_t features);

/*
 * virtq_reset: back to the unset state (not ready, not broken, indices 0);
 * frees the in-flight bitmap.  Chains popped before the reset may still be
 * freed with free(); virtq_push refuses (and frees) them.  Queue lock held.
 */
void virtq_reset(struct virtq *vq);

/*
 * virtq_pop: read the next chain.  1 with a malloc()ed *out (one allocation
 * holding the struct and its iovec array: free() it, or pass it to
 * virtq_push which frees it), 0 when the ring is empty or the queue is not
 * ready, negative errno when the driver broke the queue (see the list
 * above; *out is NULL then).  With EVENT_IDX it publishes avail_event =
 * last_avail_idx after popping, and before returning 0 it publishes it and
 * re-checks avail->idx after a full barrier, so a driver that adds a buffer
 * after this returned 0 will kick (§2.7.10).  Queue lock held; any thread.
 */
int virtq_pop(struct virtq *vq, struct smvmm_chain **out);

/*
 * virtq_push: add `c` to the used ring with `written` bytes (clamped to
 * c->in_len), bump used->idx (after a release barrier) and free c.
 * c is freed in every case.  -EINVAL if c is not in flight on this queue
 * (another queue's chain, a chain from before virtq_reset, a head not in
 * flight), -EIO if the queue is broken or not ready (a device in
 * NEEDS_RESET must not use buffers, §2.1.2).  Queue lock held; any thread.
 */
int virtq_push(struct virtq *vq, struct smvmm_chain *c, uint32_t written);

/*
 * virtq_should_notify: whether the driver wants a used buffer notification
 * now (§2.7.7: VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX, in
 * the Linux vring_need_event form).  Updates the signalled state; call once
 * per notification decision, after the pushes it covers.  false when the
 * queue is not ready or broken (§2.1.2).  Queue lock held; any thread.
 */
bool virtq_should_notify(struct virtq *vq);

/*
 * virtq_has_avail: the avail ring has entries we have not popped (false when
 * not ready or broken).  Does not validate them: virtq_pop does.
 */
bool virtq_has_avail(struct virtq *vq);

/*
 * virtq_set_indices: restore last_avail_idx and used_idx of a ready queue
 * (snapshot restore, live migration); no chain is in flight afterwards.
 * Errors (queue marked broken): -EINVAL if last_avail_idx - used_idx > size
 * (more chains in flight than the ring holds; "more used than popped" also
 * lands here by wrap-around) or if the guest's avail->idx - last_avail_idx
 * > size.  -EIO if broken or not ready.  Queue lock held.
 */
int virtq_set_indices(struct virtq *vq, uint16_t last_avail_idx,
		      uint16_t used_idx);

#endif
