// SPDX-License-Identifier: MIT
/* Polling virtio-mmio driver library for the probe: see vq.h. */
#include "vq.h"

/* §4.2.2 register offsets used here */
#define R_DEVICE_FEATURES 0x010
#define R_DEVICE_FEATURES_SEL 0x014
#define R_DRIVER_FEATURES 0x020
#define R_DRIVER_FEATURES_SEL 0x024
#define R_QUEUE_SEL 0x030
#define R_QUEUE_NUM_MAX 0x034
#define R_QUEUE_NUM 0x038
#define R_QUEUE_READY 0x044
#define R_QUEUE_NOTIFY 0x050
#define R_INTERRUPT_STATUS 0x060
#define R_INTERRUPT_ACK 0x064
#define R_STATUS 0x070
#define R_QUEUE_DESC_LOW 0x080
#define R_QUEUE_DESC_HIGH 0x084
#define R_QUEUE_DRIVER_LOW 0x090
#define R_QUEUE_DRIVER_HIGH 0x094
#define R_QUEUE_DEVICE_LOW 0x0a0
#define R_QUEUE_DEVICE_HIGH 0x0a4
#define R_CONFIG 0x100

#define ARENA_SIZE (256 * 1024)
static u8 arena[ARENA_SIZE] __aligned(4096);
static size_t arena_used;

void *guest_alloc(size_t size, size_t align)
{
	size_t start = (arena_used + align - 1) & ~(align - 1);

	if (start > ARENA_SIZE || size > ARENA_SIZE - start)
		return NULL;
	arena_used = start + size;
	memset(arena + start, 0, size);
	return arena + start;
}

size_t guest_alloc_mark(void)
{
	return arena_used;
}

void guest_alloc_release(size_t mark)
{
	if (mark <= arena_used)
		arena_used = mark;
}

u32 vdev_rd(u64 base, u32 off)
{
	return mmio_read32(base + off);
}

void vdev_wr(u64 base, u32 off, u32 v)
{
	mmio_write32(base + off, v);
}

bool vdev_reset(u64 base)
{
	u64 dl = deadline_ms(opts.timeout_ms);

	vdev_wr(base, R_STATUS, 0);
	while (vdev_rd(base, R_STATUS) != 0) {
		if (expired(dl))
			return false;
		cpu_relax();
	}
	return true;
}

bool vdev_negotiate(u64 base, u64 want, u64 *offered, u64 *accepted)
{
	u32 st = GS_ACKNOWLEDGE | GS_DRIVER;
	u64 f, a;

	vdev_wr(base, R_STATUS, GS_ACKNOWLEDGE);
	vdev_wr(base, R_STATUS, st);
	vdev_wr(base, R_DEVICE_FEATURES_SEL, 0);
	f = vdev_rd(base, R_DEVICE_FEATURES);
	vdev_wr(base, R_DEVICE_FEATURES_SEL, 1);
	f |= (u64)vdev_rd(base, R_DEVICE_FEATURES) << 32;
	a = f & want;
	if (offered)
		*offered = f;
	if (accepted)
		*accepted = a;
	if (!(a & GVQ_F_VERSION_1)) {
		vdev_wr(base, R_STATUS, st | GS_FAILED);
		return false;
	}
	vdev_wr(base, R_DRIVER_FEATURES_SEL, 0);
	vdev_wr(base, R_DRIVER_FEATURES, (u32)a);
	vdev_wr(base, R_DRIVER_FEATURES_SEL, 1);
	vdev_wr(base, R_DRIVER_FEATURES, (u32)(a >> 32));
	st |= GS_FEATURES_OK;
	vdev_wr(base, R_STATUS, st);
	/* §3.1.1 step 6: re-read; the device may refuse the subset. */
	return vdev_rd(base, R_STATUS) == st;
}

static u16 *avail_ring(struct gvq *q, u16 slot)
{
	return (u16 *)&q->avail[2 + slot];
}

bool gvq_setup(u64 base, struct gvq *q, u16 index, u16 size, const char **why)
{
	u32 max;
	u16 n;
	u64 a;

	memset(q, 0, sizeof(*q));
	vdev_wr(base, R_QUEUE_SEL, index);
	if (vdev_rd(base, R_QUEUE_READY)) {
		*why = "QueueReady already 1";
		return false;
	}
	max = vdev_rd(base, R_QUEUE_NUM_MAX);
	if (!max) {
		*why = "QueueNumMax is 0";
		return false;
	}
	n = size > GVQ_MAX_SIZE ? GVQ_MAX_SIZE : size;
	while (n > max)
		n >>= 1; /* split queue sizes are powers of 2 (§2.7) */
	q->index = index;
	q->size = n;
	/* §2.7 alignment: descriptors 16, avail 2, used 4; used_event and
	 * avail_event included (EVENT_IDX). */
	q->desc = guest_alloc(16u * n, 16);
	q->avail = guest_alloc(6u + 2u * n, 2);
	q->used = guest_alloc(6u + 8u * n, 4);
	if (!q->desc || !q->avail || !q->used) {
		*why = "probe arena exhausted";
		return false;
	}
	for (u16 i = 0; i < n; i++)
		q->desc[i].next = (u16)(i + 1);
	q->free_head = 0;
	q->nfree = n;
	vdev_wr(base, R_QUEUE_NUM, n);
	a = (uintptr_t)q->desc;
	vdev_wr(base, R_QUEUE_DESC_LOW, (u32)a);
	vdev_wr(base, R_QUEUE_DESC_HIGH, (u32)(a >> 32));
	a = (uintptr_t)q->avail;
	vdev_wr(base, R_QUEUE_DRIVER_LOW, (u32)a);
	vdev_wr(base, R_QUEUE_DRIVER_HIGH, (u32)(a >> 32));
	a = (uintptr_t)q->used;
	vdev_wr(base, R_QUEUE_DEVICE_LOW, (u32)a);
	vdev_wr(base, R_QUEUE_DEVICE_HIGH, (u32)(a >> 32));
	vdev_wr(base, R_QUEUE_READY, 1);
	if (vdev_rd(base, R_QUEUE_READY) != 1) {
		*why = "QueueReady did not stick";
		return false;
	}
	return true;
}

bool vdev_driver_ok(u64 base)
{
	u32 st = GS_ACKNOWLEDGE | GS_DRIVER | GS_FEATURES_OK | GS_DRIVER_OK;

	vdev_wr(base, R_STATUS, st);
	return vdev_rd(base, R_STATUS) == st;
}

int gvq_add(struct gvq *q, const struct gbuf *b, int n)
{
	u16 head, i;

	if (n <= 0 || n > q->nfree)
		return -1;
	head = q->free_head;
	i = head;
	for (int k = 0; k < n; k++) {
		struct gvq_desc *d = &q->desc[i];

		d->addr = (uintptr_t)b[k].addr;
		d->len = b[k].len;
		d->flags = (u16)((b[k].write ? GVQ_DESC_F_WRITE : 0) |
				 (k + 1 < n ? GVQ_DESC_F_NEXT : 0));

		i = d->next;
	}
	q->free_head = i;
	q->nfree = (u16)(q->nfree - n);
	q->chain_len[head] = (u16)n;
	*avail_ring(q, (u16)(q->avail_idx & (q->size - 1))) = head;
	/* §2.7.13: the ring entry must be visible before the index. */
	barrier();
	q->avail_idx++;
	q->avail[1] = q->avail_idx;
	return head;
}

void gvq_kick(u64 base, struct gvq *q)
{
	/* §2.7.13.4: the index store must be visible before the notify; the
	 * MMIO write is a serialising exit, mb() documents it. */
	mb();
	vdev_wr(base, R_QUEUE_NOTIFY, q->index);
}

bool gvq_poll(struct gvq *q, u32 *id, u32 *len)
{
	volatile u16 *uidx = (volatile u16 *)(q->used + 2);
	volatile u32 *elem;
	u16 n, i;

	if (*uidx == q->last_used)
		return false;
	barrier(); /* read the element after seeing idx (§2.7.14) */
	elem = (volatile u32 *)(q->used + 4 + 8u * (q->last_used & (q->size - 1)));
	*id = elem[0];
	*len = elem[1];
	q->last_used++;
	if (*id >= q->size || !q->chain_len[*id]) {
		*id = 0xffffffff;
		return true;
	}
	/* Return the chain's descriptors to the free list. */
	n = q->chain_len[*id];
	q->chain_len[*id] = 0;
	i = (u16)*id;
	for (u16 k = 1; k < n; k++)
		i = q->desc[i].next;
	q->desc[i].next = q->free_head;
	q->free_head = (u16)*id;
	q->nfree = (u16)(q->nfree + n);
	return true;
}

bool gvq_wait(struct gvq *q, u32 *id, u32 *len)
{
	u64 dl = deadline_ms(opts.timeout_ms);

	while (!gvq_poll(q, id, len)) {
		if (expired(dl))
			return false;
		cpu_relax();
	}
	return true;
}

u32 vdev_ack_interrupts(u64 base)
{
	u32 isr = vdev_rd(base, R_INTERRUPT_STATUS);

	if (isr)
		vdev_wr(base, R_INTERRUPT_ACK, isr);
	return isr;
}

void vdev_config_read(u64 base, u32 off, void *buf, u32 len)
{
	u8 *p = buf;

	for (u32 i = 0; i < len; i++)
		p[i] = *(volatile u8 *)(uintptr_t)(base + R_CONFIG + off + i);
}
