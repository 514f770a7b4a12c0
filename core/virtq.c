/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueue, device side (VIRTIO 1.2 §2.7).
 *
 * The driver is hostile: the rings live in guest RAM and a vCPU may rewrite
 * them while we read.  Three rules follow from that:
 *
 *  1. Every guest value is fetched exactly once into a local and only the
 *     local is validated and used (no double fetch / TOCTOU).  Guest fields
 *     are read through volatile or __atomic accesses so the compiler cannot
 *     re-load them from guest memory behind our back.
 *  2. Every index is checked against its table size before use, every
 *     address range is translated with gmem_hva() over its whole length, and
 *     every walk has an explicit bound (see virtq.h for the bounds chosen).
 *  3. A violation never aborts: the queue is marked broken with a one-line
 *     reason in vq->err, and the transport turns that into NEEDS_RESET.
 *
 * Ring layout (§2.7): avail = { le16 flags, idx, ring[size], used_event },
 * used = { le16 flags, idx, { le32 id, len } ring[size], le16 avail_event }.
 */
#define _GNU_SOURCE
#include "virtq.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/*
 * What virtq_pop returns: one malloc() block.  The public struct comes first
 * so free(chain) releases everything; the private tail lets virtq_push tell a
 * live chain of this queue from a stale one (popped before a reset) or one of
 * another queue.
 */
struct vq_chain {
	struct smvmm_chain c;      /* must stay first */
	const struct virtq *owner;
	uint32_t gen;              /* owner->gen at pop time */
	uint32_t cap;              /* iovecs allocated in iov[] */
	struct iovec iov[];
};

#define VQ_CHAIN_INITIAL_IOVS 8u

/* Avail ring: uint16_t index of each field. */
#define AVAIL_FLAGS 0
#define AVAIL_IDX 1
#define AVAIL_RING 2
/* Used ring: byte offsets. */
#define USED_IDX_OFF 2
#define USED_RING_OFF 4
#define USED_ELEM_SIZE 8

static int vq_fail(struct virtq *vq, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int vq_fail(struct virtq *vq, int err, const char *fmt, ...)
{
	va_list ap;
	int n;

	/* keep the first reason: later calls only say "already broken" */
	if (!vq->broken) {
		n = snprintf(vq->err, sizeof(vq->err), "queue %u: ", vq->index);
		if (n < 0 || (size_t)n >= sizeof(vq->err))
			n = 0;
		va_start(ap, fmt);
		vsnprintf(vq->err + n, sizeof(vq->err) - n, fmt, ap);
		va_end(ap);
	}
	vq->broken = true;
	return err;
}

/* ---- guest memory accessors ---------------------------------------------- */

/*
 * Read one descriptor exactly once.  The volatile accesses are the C
 * equivalent of Linux READ_ONCE: each field is loaded once and the compiler
 * may not re-read guest memory later.  The struct is packed, so this works
 * for indirect tables at any guest address (§2.7.5.3 gives them no alignment
 * rule).
 */
static void read_desc(const struct virtq_desc *p, struct virtq_desc *d)
{
	const volatile struct virtq_desc *v = p;

	d->addr = le64toh(v->addr);
	d->len = le32toh(v->len);
	d->flags = le16toh(v->flags);
	d->next = le16toh(v->next);
}

static inline uint16_t avail_load(const struct virtq *vq, unsigned int i)
{
	return le16toh(__atomic_load_n(&vq->avail[i], __ATOMIC_RELAXED));
}

/*
 * avail->idx with acquire semantics.  VIRTIO 1.2 §2.7.13.3: the driver
 * writes the ring entry (and the descriptors) before it increments idx, with
 * a barrier in between; the matching acquire here makes sure our reads of
 * ring[] and of the descriptor table are not satisfied before the idx load,
 * i.e. we never see a new idx with stale entries.
 */
static inline uint16_t avail_idx_acquire(const struct virtq *vq)
{
	uint16_t v = __atomic_load_n(&vq->avail[AVAIL_IDX], __ATOMIC_ACQUIRE);

	return le16toh(v);
}

static inline uint16_t *used_idx_ptr(const struct virtq *vq)
{
	return (uint16_t *)(vq->used + USED_IDX_OFF);
}

static inline uint16_t *avail_event_ptr(const struct virtq *vq)
{
	return (uint16_t *)(vq->used + USED_RING_OFF +
			    (size_t)USED_ELEM_SIZE * vq->size);
}

/* §2.7.10: with EVENT_IDX the device asks for a kick once idx passes this. */
static inline void set_avail_event(struct virtq *vq, uint16_t v)
{
	__atomic_store_n(avail_event_ptr(vq), htole16(v), __ATOMIC_RELAXED);
}

static inline bool inflight_test(const struct virtq *vq, uint16_t head)
{
	return vq->inflight[head / 8] & (1u << (head % 8));
}

static inline void inflight_set(struct virtq *vq, uint16_t head)
{
	vq->inflight[head / 8] |= (uint8_t)(1u << (head % 8));
}

static inline void inflight_clear(struct virtq *vq, uint16_t head)
{
	vq->inflight[head / 8] &= (uint8_t)~(1u << (head % 8));
}

/* ---- set-up and reset ---------------------------------------------------- */

/*
 * Queue generations are unique process-wide (not per queue): virtq_init()
 * zeroes a queue, so a per-queue counter could repeat after reset + init and
 * let a chain popped before the reset complete a head of the new ring.
 * 0 is never used: it means "not set up".
 */
static uint32_t vq_next_gen(void)
{
	static uint32_t counter;
	uint32_t g;

	do
		g = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
	while (g == 0);
	return g;
}

void virtq_init(struct virtq *vq, const struct gmem *mem, uint16_t index,
		uint16_t max_size)
{
	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
	vq->index = index;
	vq->max_size = max_size;
}

void virtq_reset(struct virtq *vq)
{
	const struct gmem *mem = vq->mem;
	uint16_t index = vq->index, max_size = vq->max_size;

	free(vq->inflight);
	virtq_init(vq, mem, index, max_size); /* gen 0: no chain matches */
}

int virtq_setup(struct virtq *vq, uint16_t size, uint64_t desc_gpa,
		uint64_t avail_gpa, uint64_t used_gpa, uint64_t features)
{
	bool event_idx = features & (1ull << VIRTIO_F_EVENT_IDX);
	uint64_t desc_len, avail_len, used_len;
	void *desc, *avail, *used;
	uint8_t *inflight;

	if (vq->broken)
		return -EIO;
	if (vq->ready)
		return -EBUSY;
	if (features & (1ull << VIRTIO_F_RING_PACKED))
		return vq_fail(vq, -EINVAL,
			       "VIRTIO_F_RING_PACKED negotiated, only split rings are supported");

	/* §2.7: Queue Size is a power of 2, at most 32768 and QueueNumMax */
	if (size == 0 || (size & (size - 1)))
		return vq_fail(vq, -EINVAL, "size %u is not a power of two",
			       size);
	if (size > vq->max_size || size > VIRTQ_MAX_SIZE)
		return vq_fail(vq, -EINVAL, "size %u > QueueNumMax %u", size,
			       vq->max_size);

	/* §2.7 alignment table: desc 16, driver area 2, device area 4 */
	if (desc_gpa & 15)
		return vq_fail(vq, -EINVAL,
			       "descriptor table 0x%" PRIx64 " is not 16-byte aligned",
			       desc_gpa);
	if (avail_gpa & 1)
		return vq_fail(vq, -EINVAL,
			       "avail ring 0x%" PRIx64 " is not 2-byte aligned",
			       avail_gpa);
	if (used_gpa & 3)
		return vq_fail(vq, -EINVAL,
			       "used ring 0x%" PRIx64 " is not 4-byte aligned",
			       used_gpa);

	/* used_event/avail_event exist only with EVENT_IDX (§2.7.6, §2.7.8) */
	desc_len = 16ull * size;
	avail_len = 4ull + 2ull * size + (event_idx ? 2 : 0);
	used_len = 4ull + 8ull * size + (event_idx ? 2 : 0);

	desc = gmem_hva(vq->mem, desc_gpa, desc_len);
	if (!desc)
		return vq_fail(vq, -EFAULT,
			       "descriptor table 0x%" PRIx64 "+0x%" PRIx64 " is not guest RAM",
			       desc_gpa, desc_len);
	avail = gmem_hva(vq->mem, avail_gpa, avail_len);
	if (!avail)
		return vq_fail(vq, -EFAULT,
			       "avail ring 0x%" PRIx64 "+0x%" PRIx64 " is not guest RAM",
			       avail_gpa, avail_len);
	used = gmem_hva(vq->mem, used_gpa, used_len);
	if (!used)
		return vq_fail(vq, -EFAULT,
			       "used ring 0x%" PRIx64 "+0x%" PRIx64 " is not guest RAM",
			       used_gpa, used_len);
	/*
	 * The ring fields are accessed with __atomic operations, which need
	 * natural alignment of the HOST address too.  Only a region added with
	 * gmem_add_mapping() over an oddly aligned buffer can break this; it is
	 * a host set-up error, but still not worth a crash.
	 */
	if (((uintptr_t)avail & 1) || ((uintptr_t)used & 3))
		return vq_fail(vq, -EINVAL,
			       "host mapping of the rings is misaligned");

	inflight = calloc((size + 7u) / 8u, 1);
	if (!inflight)
		return -ENOMEM;

	vq->size = size;
	vq->desc_gpa = desc_gpa;
	vq->avail_gpa = avail_gpa;
	vq->used_gpa = used_gpa;
	vq->event_idx = event_idx;
	vq->indirect = features & (1ull << VIRTIO_F_INDIRECT_DESC);
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vq->inflight = inflight;
	vq->inflight_count = 0;
	vq->last_avail_idx = 0;
	vq->used_idx = 0;
	vq->signalled_used = 0;
	vq->signalled_used_valid = false;
	vq->err[0] = '\0';
	vq->gen = vq_next_gen();
	vq->ready = true;
	return 0;
}

int virtq_set_indices(struct virtq *vq, uint16_t last_avail_idx,
		      uint16_t used_idx)
{
	uint16_t avail_idx;

	if (vq->broken || !vq->ready)
		return -EIO;
	if ((uint16_t)(last_avail_idx - used_idx) > vq->size)
		return vq_fail(vq, -EINVAL,
			       "restored last_avail_idx %u - used_idx %u > size %u",
			       last_avail_idx, used_idx, vq->size);
	avail_idx = avail_idx_acquire(vq);
	if ((uint16_t)(avail_idx - last_avail_idx) > vq->size)
		return vq_fail(vq, -EINVAL,
			       "avail idx %u - restored last_avail_idx %u > size %u",
			       avail_idx, last_avail_idx, vq->size);

	vq->last_avail_idx = last_avail_idx;
	vq->used_idx = used_idx;
	vq->signalled_used_valid = false;
	memset(vq->inflight, 0, (vq->size + 7u) / 8u);
	vq->inflight_count = 0;
	vq->gen = vq_next_gen(); /* chains popped before no longer match */
	if (vq->event_idx)
		set_avail_event(vq, last_avail_idx);
	return 0;
}

/* ---- chain walk ---------------------------------------------------------- */

struct walk {
	struct virtq *vq;
	struct vq_chain *vc;
	uint32_t nbufs;   /* buffer descriptors seen, zero-length included */
	uint64_t total;   /* bytes, out + in */
	bool seen_write;
	uint16_t di;      /* descriptor table index being walked */
	int32_t ti;       /* indirect table entry being walked, -1: none */
	char loc[48];     /* "descriptor 5" / "descriptor 5: indirect entry 2" */
};

/* Where the walk is, for messages; formatted only on the error path. */
static const char *walk_loc(struct walk *w)
{
	if (w->ti < 0)
		snprintf(w->loc, sizeof(w->loc), "descriptor %u", w->di);
	else
		snprintf(w->loc, sizeof(w->loc),
			 "descriptor %u: indirect entry %u", w->di,
			 (unsigned int)w->ti);
	return w->loc;
}

static int walk_grow(struct walk *w)
{
	struct vq_chain *n;
	uint32_t cap = w->vc->cap * 2;

	/* nbufs <= size bounds the iovec count: never more than size */
	if (cap > w->vq->size)
		cap = w->vq->size;
	if (cap <= w->vc->cap) /* unreachable while nbufs <= size holds */
		return vq_fail(w->vq, -ELOOP, "%s: too many buffers",
			       walk_loc(w));
	n = realloc(w->vc, sizeof(*n) + (size_t)cap * sizeof(struct iovec));
	if (!n)
		return -ENOMEM;
	n->cap = cap;
	w->vc = n;
	return 0;
}

/* Account one buffer descriptor `d` (already a local copy). */
static int walk_add_buf(struct walk *w, const struct virtq_desc *d)
{
	struct virtq *vq = w->vq;
	struct smvmm_chain *c = &w->vc->c;
	bool write = d->flags & VIRTQ_DESC_F_WRITE;
	uint32_t n;
	void *hva;
	int ret;

	if (++w->nbufs > vq->size)
		return vq_fail(vq, -ELOOP,
			       "%s: chain has more than %u buffers (loop?)",
			       walk_loc(w), vq->size);
	/* §2.7.4.2: device-writable descriptors come after readable ones */
	if (!write && w->seen_write)
		return vq_fail(vq, -EINVAL,
			       "%s: device-readable buffer after a device-writable one",
			       walk_loc(w));
	w->seen_write |= write;

	/*
	 * Zero-length buffers are legal (§2.7.5 has no rule against them) but
	 * carry no data: no iovec, and addr is irrelevant.  QEMU asserted on
	 * them once (CVE-2016-6490); skipping is the safe reading.
	 */
	if (d->len == 0)
		return 0;

	/* §2.7.5.2: a chain is at most 2^32 - 1 bytes (CVE-2016-7422 shape) */
	w->total += d->len;
	if (w->total > UINT32_MAX)
		return vq_fail(vq, -EOVERFLOW,
			       "%s: chain length %" PRIu64 " exceeds 2^32-1",
			       walk_loc(w), w->total);

	/* the whole buffer, not only its start, must be guest RAM */
	hva = gmem_hva(vq->mem, d->addr, d->len);
	if (!hva)
		return vq_fail(vq, -EFAULT,
			       "%s: buffer 0x%" PRIx64 "+0x%x is not guest RAM",
			       walk_loc(w), d->addr, d->len);

	n = c->n_out + c->n_in;
	if (n == w->vc->cap) {
		ret = walk_grow(w);
		if (ret)
			return ret;
		c = &w->vc->c;
	}
	w->vc->iov[n].iov_base = hva;
	w->vc->iov[n].iov_len = d->len;
	if (write) {
		c->n_in++;
		c->in_len += d->len;
	} else {
		c->n_out++;
		c->out_len += d->len;
	}
	return 0;
}

/* §2.7.5.3: descriptor `di` (copy `d`) points at an indirect table. */
static int walk_indirect(struct walk *w, uint16_t di,
			 const struct virtq_desc *d)
{
	struct virtq *vq = w->vq;
	const struct virtq_desc *table;
	uint32_t nt, steps = 0;
	uint16_t j = 0;
	int ret;

	if (!vq->indirect)
		return vq_fail(vq, -EINVAL,
			       "descriptor %u: INDIRECT without VIRTIO_F_INDIRECT_DESC",
			       di);
	/* §2.7.5.3.1: INDIRECT and NEXT together are forbidden */
	if (d->flags & VIRTQ_DESC_F_NEXT)
		return vq_fail(vq, -EINVAL,
			       "descriptor %u: INDIRECT with NEXT set", di);
	if (d->len == 0 || d->len % sizeof(struct virtq_desc))
		return vq_fail(vq, -EINVAL,
			       "descriptor %u: indirect table length %u is not a non-zero multiple of 16",
			       di, d->len);
	nt = d->len / sizeof(struct virtq_desc);
	/* §2.7.5.3.1: no chain longer than the queue size */
	if (nt > vq->size)
		return vq_fail(vq, -EINVAL,
			       "descriptor %u: indirect table of %u entries > queue size %u",
			       di, nt, vq->size);
	table = gmem_hva(vq->mem, d->addr, d->len);
	if (!table)
		return vq_fail(vq, -EFAULT,
			       "descriptor %u: indirect table 0x%" PRIx64 "+0x%x is not guest RAM",
			       di, d->addr, d->len);

	for (;;) {
		struct virtq_desc e;

		w->ti = j;
		if (++steps > nt)
			return vq_fail(vq, -ELOOP,
				       "%s: indirect chain longer than its table of %u (loop?)",
				       walk_loc(w), nt);
		read_desc(&table[j], &e);
		/* §2.7.5.3.1: only one table per descriptor */
		if (e.flags & VIRTQ_DESC_F_INDIRECT)
			return vq_fail(vq, -EINVAL, "%s: nested INDIRECT",
				       walk_loc(w));
		ret = walk_add_buf(w, &e);
		if (ret)
			return ret;
		if (!(e.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (e.next >= nt)
			return vq_fail(vq, -EINVAL,
				       "%s: next %u >= table size %u", walk_loc(w),
				       e.next, nt);
		j = e.next;
	}
}

static int walk_chain(struct walk *w, uint16_t head)
{
	struct virtq *vq = w->vq;
	uint32_t steps = 0;
	uint16_t i = head;
	int ret;

	for (;;) {
		struct virtq_desc d;

		w->di = i;
		/* a chain never needs more than `size` table entries: a loop */
		if (++steps > vq->size)
			return vq_fail(vq, -ELOOP,
				       "%s: chain longer than queue size %u (loop?)",
				       walk_loc(w), vq->size);
		read_desc(&vq->desc[i], &d);
		/*
		 * §2.7.5.3.2: zero or more direct descriptors, then at most
		 * one INDIRECT one, which ends the chain (NEXT is refused).
		 */
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return walk_indirect(w, i, &d);
		ret = walk_add_buf(w, &d);
		if (ret)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= vq->size)
			return vq_fail(vq, -EINVAL,
				       "%s: next %u >= queue size %u", walk_loc(w),
				       d.next, vq->size);
		i = d.next;
	}
}

/* ---- pop / push / notify ------------------------------------------------- */

int virtq_pop(struct virtq *vq, struct smvmm_chain **out)
{
	struct walk w = { .vq = vq, .ti = -1 };
	uint16_t avail_idx, pending, slot, head;
	uint32_t cap;
	int ret;

	*out = NULL;
	if (vq->broken)
		return -EIO;
	if (!vq->ready)
		return 0;

	avail_idx = avail_idx_acquire(vq);
	pending = (uint16_t)(avail_idx - vq->last_avail_idx);
	if (pending == 0 && vq->event_idx) {
		/*
		 * §2.7.10: ask for a kick when the next entry arrives, then
		 * look again.  The full barrier orders our avail_event store
		 * before the avail->idx re-load; the driver does the mirror
		 * image (store idx, full barrier, load avail_event), so at
		 * least one side sees the other and a buffer added now is
		 * never left without a notification.
		 */
		set_avail_event(vq, vq->last_avail_idx);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		avail_idx = avail_idx_acquire(vq);
		pending = (uint16_t)(avail_idx - vq->last_avail_idx);
	}
	/* §2.7.13.3 / QEMU CVE-2016-5403: idx never runs > size ahead */
	if (pending > vq->size)
		return vq_fail(vq, -EINVAL,
			       "avail idx %u is %u ahead of last_avail_idx %u (> size %u)",
			       avail_idx, pending, vq->last_avail_idx,
			       vq->size);
	if (pending == 0)
		return 0;

	slot = vq->last_avail_idx & (vq->size - 1);
	head = avail_load(vq, AVAIL_RING + slot);
	if (head >= vq->size)
		return vq_fail(vq, -EINVAL,
			       "avail ring[%u]: head %u >= queue size %u",
			       slot, head, vq->size);
	if (inflight_test(vq, head))
		return vq_fail(vq, -EINVAL,
			       "avail ring[%u]: head %u is already in flight",
			       slot, head);

	cap = vq->size < VQ_CHAIN_INITIAL_IOVS ? vq->size
					       : VQ_CHAIN_INITIAL_IOVS;
	w.vc = malloc(sizeof(*w.vc) + (size_t)cap * sizeof(struct iovec));
	if (!w.vc)
		return -ENOMEM;
	memset(w.vc, 0, sizeof(*w.vc));
	w.vc->cap = cap;

	ret = walk_chain(&w, head);
	if (ret) {
		free(w.vc);
		return ret;
	}

	w.vc->owner = vq;
	w.vc->gen = vq->gen;
	w.vc->c.queue = vq->index;
	w.vc->c.head = head;
	w.vc->c.iov = w.vc->iov;

	vq->last_avail_idx++;
	inflight_set(vq, head);
	vq->inflight_count++;
	/* §2.7.10: we consumed up to last_avail_idx; kick us for the next */
	if (vq->event_idx)
		set_avail_event(vq, vq->last_avail_idx);
	*out = &w.vc->c;
	return 1;
}

int virtq_push(struct virtq *vq, struct smvmm_chain *c, uint32_t written)
{
	struct vq_chain *vc = (struct vq_chain *)c;
	uint16_t old, new, slot;
	uint32_t *elem;
	int ret = 0;

	if (!c)
		return -EINVAL;
	/* §2.1.2: after NEEDS_RESET the device must not use buffers */
	if (vq->broken || !vq->ready) {
		ret = -EIO;
		goto out;
	}
	if (vc->owner != vq || vc->gen != vq->gen || c->queue != vq->index ||
	    c->head >= vq->size || !inflight_test(vq, c->head)) {
		ret = -EINVAL;
		goto out;
	}
	if (written > c->in_len)
		written = c->in_len;

	old = vq->used_idx;
	new = (uint16_t)(old + 1);
	slot = old & (vq->size - 1);
	elem = (uint32_t *)(vq->used + USED_RING_OFF +
			    (size_t)USED_ELEM_SIZE * slot);
	__atomic_store_n(&elem[0], htole32(c->head), __ATOMIC_RELAXED);
	__atomic_store_n(&elem[1], htole32(written), __ATOMIC_RELAXED);
	/*
	 * §2.7.8.2: "The device MUST set len prior to updating the used idx."
	 * The release store orders the element (and the data the device wrote
	 * into the buffers) before the new idx becomes visible to the driver.
	 */
	__atomic_store_n(used_idx_ptr(vq), htole16(new), __ATOMIC_RELEASE);
	vq->used_idx = new;

	/*
	 * If used_idx went all the way round since the last notification,
	 * signalled_used aliases a current value and vring_need_event() would
	 * give the wrong answer: forget it so the next decision notifies
	 * (same rule as Linux vhost).
	 */
	if ((uint16_t)(new - vq->signalled_used) < (uint16_t)(new - old))
		vq->signalled_used_valid = false;

	inflight_clear(vq, c->head);
	vq->inflight_count--;
out:
	free(vc);
	return ret;
}

bool virtq_should_notify(struct virtq *vq)
{
	uint16_t old, new, event;
	bool valid;

	if (!vq->ready || vq->broken)
		return false;
	/*
	 * Full barrier: our used->idx store must be globally visible before
	 * we read the driver's flags/used_event.  The driver updates
	 * used_event, does a full barrier and re-reads used->idx; without
	 * this fence both sides could read stale values and the interrupt
	 * would be lost (§2.7.7, same pairing as Linux virtqueue_enable_cb).
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);

	if (!vq->event_idx)
		return !(avail_load(vq, AVAIL_FLAGS) &
			 VIRTQ_AVAIL_F_NO_INTERRUPT);

	old = vq->signalled_used;
	valid = vq->signalled_used_valid;
	new = vq->signalled_used = vq->used_idx;
	vq->signalled_used_valid = true;
	if (!valid)
		return true;
	/*
	 * §2.7.7.2: notify when used->idx passed used_event + 1 in the
	 * entries added since the last notification, i.e. used_event lies
	 * in [old, new).  Linux vring_need_event(), modulo 2^16.
	 */
	event = avail_load(vq, AVAIL_RING + vq->size);
	return (uint16_t)(new - event - 1) < (uint16_t)(new - old);
}

bool virtq_has_avail(struct virtq *vq)
{
	if (!vq->ready || vq->broken)
		return false;
	return avail_idx_acquire(vq) != vq->last_avail_idx;
}
