// SPDX-License-Identifier: MIT
/*
 * Probe guest virtio-mmio driver (VIRTIO 1.2 §4.2, modern interface only)
 * with one split virtqueue (§2.7).  Drives virtio-rng (device id 4,
 * §5.4); any other device is identified, reset and left alone.
 */
#include "probe.h"

/* §4.2.2 MMIO Device Register Layout */
#define VMMIO_MAGIC 0x000
#define VMMIO_VERSION 0x004
#define VMMIO_DEVICE_ID 0x008
#define VMMIO_VENDOR_ID 0x00c
#define VMMIO_DEVICE_FEATURES 0x010
#define VMMIO_DEVICE_FEATURES_SEL 0x014
#define VMMIO_DRIVER_FEATURES 0x020
#define VMMIO_DRIVER_FEATURES_SEL 0x024
#define VMMIO_QUEUE_SEL 0x030
#define VMMIO_QUEUE_NUM_MAX 0x034
#define VMMIO_QUEUE_NUM 0x038
#define VMMIO_QUEUE_READY 0x044
#define VMMIO_QUEUE_NOTIFY 0x050
#define VMMIO_INTERRUPT_STATUS 0x060
#define VMMIO_INTERRUPT_ACK 0x064
#define VMMIO_STATUS 0x070
#define VMMIO_QUEUE_DESC_LOW 0x080
#define VMMIO_QUEUE_DESC_HIGH 0x084
#define VMMIO_QUEUE_DRIVER_LOW 0x090
#define VMMIO_QUEUE_DRIVER_HIGH 0x094
#define VMMIO_QUEUE_DEVICE_LOW 0x0a0
#define VMMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VMMIO_CONFIG_GENERATION 0x0fc

/* §2.1 Device Status Field */
#define S_ACKNOWLEDGE 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 0x40
#define S_FAILED 0x80

/* §6 Reserved Feature Bits (bit numbers - 32, in the high word) */
#define F_VERSION_1_HI (1u << 0)       /* bit 32 */
#define F_ACCESS_PLATFORM_HI (1u << 1) /* bit 33 */

#define VRING_DESC_F_WRITE 2
#define QSIZE_MAX 16
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_VSOCK 19

/* §2.7.5 / §2.7.6 / §2.7.8 split virtqueue layout */
struct vring_desc {
	u64 addr;
	u32 len;
	u16 flags, next;
};
struct vring_avail {
	u16 flags, idx;
	u16 ring[QSIZE_MAX];
	u16 used_event;
};
struct vring_used {
	u16 flags, idx;
	struct {
		u32 id, len;
	} ring[QSIZE_MAX];
	u16 avail_event;
};

/*
 * Per device: one page of rings (descriptor table 16-byte aligned, avail
 * 2-byte, used 4-byte: §2.7 alignment table) and two pages of buffers.
 */
struct vq_area {
	struct vring_desc desc[QSIZE_MAX];
	u8 pad0[0x100 - sizeof(struct vring_desc) * QSIZE_MAX];
	struct vring_avail avail;
	u8 pad1[0x100 - sizeof(struct vring_avail)];
	struct vring_used used;
	u8 pad2[0x1000 - 0x200 - sizeof(struct vring_used)];
	u8 buf[2][4096];
};
static struct vq_area vq_mem[MAX_VDEVS] __aligned(4096);

struct vdev {
	struct vmmio *m;
	u64 base;
	struct vq_area *vq;
	u16 qsize;
	u16 avail_idx, used_seen;
	volatile u32 irqs;      /* interrupts taken */
	volatile u32 isr_seen;  /* InterruptStatus bits read by the handler */
	char tag[40];
};

static u32 rd(struct vdev *d, u32 off)
{
	return mmio_read32(d->base + off);
}

static void wr(struct vdev *d, u32 off, u32 v)
{
	mmio_write32(d->base + off, v);
}

/* Write 0 to Status and wait until it reads back 0 (§4.2.3.1: the driver
 * must not reinitialise before that). */
static bool reset(struct vdev *d)
{
	wr(d, VMMIO_STATUS, 0);
	u64 dl = deadline_ms(opts.timeout_ms);
	while (rd(d, VMMIO_STATUS) != 0) {
		if (expired(dl))
			return false;
		cpu_relax();
	}
	return true;
}

static void irq_handler(u8 vector, void *arg)
{
	struct vdev *d = arg;

	(void)vector;
	/* Ack before the EOI: with a level-triggered line the device keeps
	 * it asserted until InterruptStatus is cleared (§4.2.2). */
	u32 isr = rd(d, VMMIO_INTERRUPT_STATUS);
	d->isr_seen |= isr;
	if (isr)
		wr(d, VMMIO_INTERRUPT_ACK, isr);
	d->irqs++;
}

/* §3.1.1 Driver Requirements: Device Initialization, up to FEATURES_OK. */
static bool negotiate(struct vdev *d)
{
	u32 st = S_ACKNOWLEDGE;

	wr(d, VMMIO_STATUS, st);
	st |= S_DRIVER;
	wr(d, VMMIO_STATUS, st);
	wr(d, VMMIO_DEVICE_FEATURES_SEL, 0);
	u32 f0 = rd(d, VMMIO_DEVICE_FEATURES);
	wr(d, VMMIO_DEVICE_FEATURES_SEL, 1);
	u32 f1 = rd(d, VMMIO_DEVICE_FEATURES);
	if (!(f1 & F_VERSION_1_HI)) {
		tap(false, "%s: device offers VIRTIO_F_VERSION_1 # features 0x%08x%08x",
		    d->tag, f1, f0);
		wr(d, VMMIO_STATUS, st | S_FAILED);
		return false;
	}
	/* Accept VERSION_1 only, plus ACCESS_PLATFORM if offered (§6.1: a
	 * driver SHOULD accept it; identity mapping makes it harmless). */
	u32 a1 = F_VERSION_1_HI | (f1 & F_ACCESS_PLATFORM_HI);
	wr(d, VMMIO_DRIVER_FEATURES_SEL, 0);
	wr(d, VMMIO_DRIVER_FEATURES, 0);
	wr(d, VMMIO_DRIVER_FEATURES_SEL, 1);
	wr(d, VMMIO_DRIVER_FEATURES, a1);
	st |= S_FEATURES_OK;
	wr(d, VMMIO_STATUS, st);
	u32 back = rd(d, VMMIO_STATUS);
	return tap(back == st,
		   "%s: features negotiated, FEATURES_OK kept # offered 0x%08x%08x, accepted 0x%08x00000000, status 0x%x",
		   d->tag, f1, f0, a1, back);
}

/* §4.2.3.2 Virtqueue Configuration, then DRIVER_OK. */
static bool setup_queue(struct vdev *d)
{
	struct vq_area *q = d->vq;

	wr(d, VMMIO_QUEUE_SEL, 0);
	u32 ready = rd(d, VMMIO_QUEUE_READY);
	u32 max = rd(d, VMMIO_QUEUE_NUM_MAX);
	if (ready || !max) {
		tap(false, "%s: queue 0 usable # QueueReady %u, QueueNumMax %u",
		    d->tag, ready, max);
		return false;
	}
	u16 n = QSIZE_MAX;
	while (n > max)
		n >>= 1; /* split queue sizes are powers of 2 (§2.7) */
	d->qsize = n;
	memset(q, 0, 0x1000);
	u64 da = (uintptr_t)q->desc, aa = (uintptr_t)&q->avail,
	    ua = (uintptr_t)&q->used;
	wr(d, VMMIO_QUEUE_NUM, n);
	wr(d, VMMIO_QUEUE_DESC_LOW, (u32)da);
	wr(d, VMMIO_QUEUE_DESC_HIGH, (u32)(da >> 32));
	wr(d, VMMIO_QUEUE_DRIVER_LOW, (u32)aa);
	wr(d, VMMIO_QUEUE_DRIVER_HIGH, (u32)(aa >> 32));
	wr(d, VMMIO_QUEUE_DEVICE_LOW, (u32)ua);
	wr(d, VMMIO_QUEUE_DEVICE_HIGH, (u32)(ua >> 32));
	wr(d, VMMIO_QUEUE_READY, 1);
	ready = rd(d, VMMIO_QUEUE_READY);

	u32 st = S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK;
	wr(d, VMMIO_STATUS, st);
	u32 back = rd(d, VMMIO_STATUS);
	return tap(ready == 1 && back == st,
		   "%s: queue 0 ready (size %u of max %u), DRIVER_OK # QueueReady %u, status 0x%x",
		   d->tag, n, max, ready, back);
}

/*
 * Post one device-writable buffer, kick, wait for it in the used ring.
 * Returns the used length, or -1 on timeout/bad used element.
 */
static long rng_request(struct vdev *d, int which, const char **why)
{
	struct vq_area *q = d->vq;
	u16 slot = (u16)(which % d->qsize); /* descriptor 0 or 1 */

	q->desc[slot] = (struct vring_desc){
		.addr = (uintptr_t)q->buf[which],
		.len = opts.rng_bytes,
		.flags = VRING_DESC_F_WRITE,
	};
	q->avail.ring[d->avail_idx % d->qsize] = slot;
	/* §2.7.13: the ring entry before idx, idx before the notify; x86
	 * keeps store order, the compiler must too. */
	barrier();
	d->avail_idx++;
	q->avail.idx = d->avail_idx;
	/* IF is 0 here, so no interrupt can be counted before this. */
	u32 irqs0 = d->irqs;
	mb();
	wr(d, VMMIO_QUEUE_NOTIFY, 0);

	u64 dl = deadline_ms(opts.timeout_ms);
	if (opts.irq) {
		/* sti; hlt is atomic w.r.t. interrupt delivery (the STI
		 * shadow), so the kick's interrupt cannot be lost; the LAPIC
		 * timer bounds each hlt. */
		while (*(volatile u16 *)&q->used.idx == d->used_seen &&
		       !expired(dl))
			__asm__ volatile("sti; hlt; cli" ::: "memory");
		/* The interrupt may trail the used-ring update a little. */
		while (d->irqs == irqs0 && !expired(dl))
			__asm__ volatile("sti; hlt; cli" ::: "memory");
	} else {
		while (*(volatile u16 *)&q->used.idx == d->used_seen &&
		       !expired(dl))
			cpu_relax();
	}
	u16 used = *(volatile u16 *)&q->used.idx;
	barrier(); /* read the element after seeing idx (§2.7.14) */
	if (used == d->used_seen) {
		*why = "timed out waiting for the used ring";
		return -1;
	}
	if ((u16)(used - d->used_seen) != 1) {
		*why = "used idx moved by more than the one buffer posted";
		return -1;
	}
	u32 id = q->used.ring[d->used_seen % d->qsize].id;
	u32 len = q->used.ring[d->used_seen % d->qsize].len;
	d->used_seen = used;
	if (id != slot) {
		*why = "used element names another descriptor";
		return -1;
	}
	if (len == 0 || len > opts.rng_bytes) {
		*why = len ? "used len larger than the buffer" : "used len 0";
		return -1;
	}
	return len;
}

static bool looks_random(const u8 *b, u32 n)
{
	bool nonzero = false, varied = false;

	for (u32 i = 0; i < n; i++) {
		nonzero |= b[i] != 0;
		varied |= b[i] != b[0];
	}
	/* Fewer than 8 bytes can legitimately be all-equal. */
	return n < 8 || (nonzero && varied);
}

static bool wait_isr_polled(struct vdev *d)
{
	u64 dl = deadline_ms(opts.timeout_ms);
	u32 isr;

	/* The device may set InterruptStatus just after the used idx. */
	while (!((isr = rd(d, VMMIO_INTERRUPT_STATUS)) & 1) && !expired(dl))
		cpu_relax();
	if (isr)
		wr(d, VMMIO_INTERRUPT_ACK, isr);
	u32 after = rd(d, VMMIO_INTERRUPT_STATUS);
	return tap((isr & 1) && !(after & 1),
		   "%s: InterruptStatus used-buffer bit set, cleared by InterruptACK # before 0x%x, after 0x%x",
		   d->tag, isr, after);
}

static void drive_rng(struct vdev *d, int idx)
{
	const char *why = "";
	u8 vector = (u8)(0x30 + idx);
	bool routed = false;
	u32 isr;

	if (opts.irq) {
		if (irq_route(d->m->irq, d->m->edge, d->m->active_low, vector,
			      irq_handler, d)) {
			tap(false, "%s: route GSI %u through an IOAPIC # no IOAPIC serves it",
			    d->tag, d->m->irq);
			return;
		}
		routed = true;
	}
	if (!negotiate(d) || !setup_queue(d))
		goto out;

	long n1 = rng_request(d, 0, &why);
	if (!tap(n1 > 0 && looks_random(d->vq->buf[0], (u32)n1),
		 "virtio-rng@0x%llx: got %ld random bytes%s%s",
		 (unsigned long long)d->base, n1 > 0 ? n1 : 0,
		 n1 > 0 ? "" : " # ", n1 > 0 ? "" : why))
		goto out;
	if (opts.irq)
		tap(d->irqs >= 1 && (d->isr_seen & 1),
		    "%s: interrupt delivered on GSI %u vector 0x%x # %u interrupt(s), InterruptStatus 0x%x",
		    d->tag, d->m->irq, vector, d->irqs, d->isr_seen);
	else
		wait_isr_polled(d);

	u32 irqs_before = d->irqs;
	long n2 = rng_request(d, 1, &why);
	bool differ = n2 > 0 &&
		      (n1 < 8 || n2 < 8 ||
		       memcmp(d->vq->buf[0], d->vq->buf[1],
			      (size_t)(n1 < n2 ? n1 : n2)));
	tap(differ && looks_random(d->vq->buf[1], n2 > 0 ? (u32)n2 : 0),
	    "virtio-rng@0x%llx: second request got %ld different bytes%s%s",
	    (unsigned long long)d->base, n2 > 0 ? n2 : 0, n2 > 0 ? "" : " # ",
	    n2 > 0 ? "" : why);
	if (opts.irq)
		tap(d->irqs > irqs_before, "%s: second interrupt delivered",
		    d->tag);
	else if ((isr = rd(d, VMMIO_INTERRUPT_STATUS)))
		wr(d, VMMIO_INTERRUPT_ACK, isr);
out:
	/* §4.2.2.1: after reset the device clears QueueReady. */
	if (routed)
		irq_unroute(d->m->irq);
	bool r = reset(d);
	wr(d, VMMIO_QUEUE_SEL, 0);
	u32 ready = rd(d, VMMIO_QUEUE_READY);
	tap(r && ready == 0, "%s: reset after use, QueueReady reads 0 # status %s, QueueReady %u",
	    d->tag, r ? "0" : "stuck", ready);
}

void virtio_probe_all(void)
{
	static struct vdev devs[MAX_VDEVS];
	int nrng = 0, nblk = 0, nvsock = 0;
	int n = acpi.ndev < MAX_VDEVS ? acpi.ndev : MAX_VDEVS;

	if (opts.irq) {
		int r = lapic_init();
		tap(r == 0, "local APIC enabled at 0x%llx",
		    (unsigned long long)acpi.lapic_addr);
		if (r)
			return;
		/* ~1 ms at the usual 1 GHz APIC bus clock: wakes hlt. */
		lapic_timer_start(1000000);
	}
	for (int i = 0; i < n; i++) {
		struct vdev *d = &devs[i];
		d->m = &acpi.dev[i];
		if (!d->m->crs_ok)
			continue;
		d->base = d->m->base;
		d->vq = &vq_mem[i];
		snprintf(d->tag, sizeof(d->tag), "virtio@0x%llx",
			 (unsigned long long)d->base);

		u32 magic = rd(d, VMMIO_MAGIC), ver = rd(d, VMMIO_VERSION);
		u32 id = rd(d, VMMIO_DEVICE_ID), vendor = rd(d, VMMIO_VENDOR_ID);
		/* §4.2.3.1.1: magic "virt", version 2 (1 is legacy). */
		if (!tap(magic == 0x74726976 && ver == 2,
			 "%s: MagicValue 'virt', Version 2 # magic 0x%x, version %u, device id %u, vendor 0x%x",
			 d->tag, magic, ver, id, vendor))
			continue;
		if (id == 0) {
			/* §4.2.3.1.1: DeviceID 0 is a placeholder; ignore. */
			tap(true, "%s: device id 0 (empty transport, ignored)",
			    d->tag);
			continue;
		}
		if (!tap(reset(d), "%s: reset, Status reads back 0", d->tag))
			continue;
		switch (id) {
		case VIRTIO_ID_RNG:
			nrng++;
			drive_rng(d, i);
			break;
		case VIRTIO_ID_BLOCK:
			nblk++;
			drive_blk(d, i);
			break;
		case VIRTIO_ID_VSOCK:
			nvsock++;
			drive_vsock(d, i);
			break;
		default:
			tap(true, "%s: device id %u (not driven)", d->tag, id);
			break;
		}
	}
	blk_summary(nblk);
	vsock_summary(nvsock);
	if (opts.irq)
		lapic_timer_stop();
	if (opts.rng >= 0)
		tap(nrng == opts.rng, "found %d virtio-rng device(s), expected %d",
		    nrng, opts.rng);
}
