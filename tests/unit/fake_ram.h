/* SPDX-License-Identifier: MIT */
/*
 * fake_ram.h: header-only test helper.  A fake guest RAM with a hole, plus
 * helpers to lay out split-virtqueue rings (VIRTIO 1.2 §2.7) in it the way a
 * driver would.  Self-contained: needs only libc and core/gmem.h +
 * core/virtq.h (for the descriptor layout and flag names).
 *
 * Guest-physical layout (struct fake_ram):
 *
 *   [0,       1 MiB)  RAM region 0        FAKE_RAM0_GPA / FAKE_RAM0_SIZE
 *   [1 MiB,   2 MiB)  hole, not RAM       FAKE_HOLE_GPA / FAKE_HOLE_SIZE
 *   [2 MiB,   3 MiB)  RAM region 1        FAKE_RAM1_GPA / FAKE_RAM1_SIZE
 *   [3 MiB,   ...  )  beyond RAM          FAKE_RAM_END
 *
 * The host backing is ONE anonymous mapping of 4 MiB laid out like the guest
 * space, with the hole and the 1 MiB after the end mapped PROT_NONE: code
 * that translates a guest address without bounds checks (gpa + base) and
 * touches the hole or runs off the end gets SIGSEGV instead of silently
 * reading neighbouring RAM.  Regions are added with gmem_add_mapping(), so
 * gmem_destroy() does not unmap them; fake_ram_destroy() does.
 *
 * Usage:
 *
 *	struct fake_ram fr;
 *	struct fake_vring vr;
 *	ck_assert_int_eq(fake_ram_init(&fr), 0);
 *	fake_vring_layout(&vr, &fr, 256, FAKE_RAM1_GPA);   // desc/avail/used
 *	fake_vring_set_desc(&vr, 0, 0x1000, 64, 0, 0);     // a driver write
 *	fake_vring_publish(&vr, 0);                        // avail ring + idx
 *	virtq_setup(&vq, vr.size, vr.desc, vr.avail, vr.used, features);
 *	...
 *	fake_ram_destroy(&fr);
 *
 * All functions are static inline (no -Wunused-function) and abort() with a
 * message when a test passes an address that is not fake RAM: that is a bug
 * in the test, not a behaviour under test.  Fields are written little-endian
 * as the spec requires.
 */
#ifndef SMVMM_TESTS_FAKE_RAM_H
#define SMVMM_TESTS_FAKE_RAM_H

#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gmem.h"
#include "virtq.h"

#define FAKE_MIB (1024ull * 1024ull)
#define FAKE_RAM0_GPA 0ull
#define FAKE_RAM0_SIZE FAKE_MIB
#define FAKE_HOLE_GPA (1 * FAKE_MIB)
#define FAKE_HOLE_SIZE FAKE_MIB
#define FAKE_RAM1_GPA (2 * FAKE_MIB)
#define FAKE_RAM1_SIZE FAKE_MIB
#define FAKE_RAM_END (3 * FAKE_MIB)
#define FAKE_MAP_SIZE (4 * FAKE_MIB) /* host backing incl. guard tail */

struct fake_ram {
	struct gmem mem;  /* two regions, see above */
	uint8_t *base;    /* host address of gpa 0 */
};

/* fake_ram_init: map and register the two RAM regions.  0 or -errno. */
static inline int fake_ram_init(struct fake_ram *fr)
{
	void *p;
	int ret;

	memset(fr, 0, sizeof(*fr));
	gmem_init(&fr->mem);
	p = mmap(NULL, FAKE_MAP_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	fr->base = p;
	if (mprotect(fr->base + FAKE_HOLE_GPA, FAKE_HOLE_SIZE, PROT_NONE) ||
	    mprotect(fr->base + FAKE_RAM_END, FAKE_MAP_SIZE - FAKE_RAM_END,
		     PROT_NONE)) {
		ret = -errno;
		goto err_map;
	}
	ret = gmem_add_mapping(&fr->mem, FAKE_RAM0_GPA, FAKE_RAM0_SIZE,
			       fr->base + FAKE_RAM0_GPA, -1, 0);
	if (ret < 0)
		goto err_map;
	ret = gmem_add_mapping(&fr->mem, FAKE_RAM1_GPA, FAKE_RAM1_SIZE,
			       fr->base + FAKE_RAM1_GPA, -1, 0);
	if (ret < 0)
		goto err_map;
	return 0;

err_map:
	munmap(fr->base, FAKE_MAP_SIZE);
	fr->base = NULL;
	return ret;
}

static inline void fake_ram_destroy(struct fake_ram *fr)
{
	gmem_destroy(&fr->mem);
	if (fr->base)
		munmap(fr->base, FAKE_MAP_SIZE);
	fr->base = NULL;
}

/* Host pointer for [gpa, gpa+len) of fake RAM; aborts if it is not RAM. */
static inline void *fake_ram_ptr(struct fake_ram *fr, uint64_t gpa,
				 uint64_t len)
{
	void *p = gmem_hva(&fr->mem, gpa, len);

	if (!p) {
		fprintf(stderr, "fake_ram: test bug: 0x%llx+0x%llx is not RAM\n",
			(unsigned long long)gpa, (unsigned long long)len);
		abort();
	}
	return p;
}

static inline void fake_ram_w16(struct fake_ram *fr, uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	memcpy(fake_ram_ptr(fr, gpa, 2), &v, 2);
}

static inline void fake_ram_w32(struct fake_ram *fr, uint64_t gpa, uint32_t v)
{
	v = htole32(v);
	memcpy(fake_ram_ptr(fr, gpa, 4), &v, 4);
}

static inline void fake_ram_w64(struct fake_ram *fr, uint64_t gpa, uint64_t v)
{
	v = htole64(v);
	memcpy(fake_ram_ptr(fr, gpa, 8), &v, 8);
}

static inline uint16_t fake_ram_r16(struct fake_ram *fr, uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, fake_ram_ptr(fr, gpa, 2), 2);
	return le16toh(v);
}

static inline uint32_t fake_ram_r32(struct fake_ram *fr, uint64_t gpa)
{
	uint32_t v;

	memcpy(&v, fake_ram_ptr(fr, gpa, 4), 4);
	return le32toh(v);
}

/*
 * fake_desc_write: descriptor `i` of the table at `table_gpa` (the queue's
 * descriptor table or an indirect table; any alignment).
 */
static inline void fake_desc_write(struct fake_ram *fr, uint64_t table_gpa,
				   uint32_t i, uint64_t addr, uint32_t len,
				   uint16_t flags, uint16_t next)
{
	uint64_t d = table_gpa + 16ull * i;

	fake_ram_w64(fr, d, addr);
	fake_ram_w32(fr, d + 8, len);
	fake_ram_w16(fr, d + 12, flags);
	fake_ram_w16(fr, d + 14, next);
}

/*
 * A split ring as a driver lays it out.  Space for used_event/avail_event
 * is always reserved (as Linux does), whether or not EVENT_IDX is used.
 */
struct fake_vring {
	struct fake_ram *ram;
	uint16_t size;
	uint64_t desc;      /* gpa of the descriptor table (16-aligned) */
	uint64_t avail;     /* gpa of the avail ring (driver area) */
	uint64_t used;      /* gpa of the used ring (device area, 4-aligned) */
	uint16_t avail_idx; /* the driver's copy of avail->idx */
};

/* Bytes of each part for a queue of `size` (event fields included). */
#define FAKE_DESC_BYTES(size) (16ull * (size))
#define FAKE_AVAIL_BYTES(size) (6ull + 2ull * (size))
#define FAKE_USED_BYTES(size) (6ull + 8ull * (size))

/*
 * fake_vring_layout: desc at `gpa` rounded up to 16, avail right after it,
 * used after avail rounded up to 4; all three zeroed.  The whole layout must
 * fit in one RAM region (aborts otherwise).
 */
static inline void fake_vring_layout(struct fake_vring *vr,
				     struct fake_ram *fr, uint16_t size,
				     uint64_t gpa)
{
	memset(vr, 0, sizeof(*vr));
	vr->ram = fr;
	vr->size = size;
	vr->desc = (gpa + 15) & ~15ull;
	vr->avail = vr->desc + FAKE_DESC_BYTES(size);
	vr->used = (vr->avail + FAKE_AVAIL_BYTES(size) + 3) & ~3ull;
	memset(fake_ram_ptr(fr, vr->desc, FAKE_DESC_BYTES(size)), 0,
	       FAKE_DESC_BYTES(size));
	memset(fake_ram_ptr(fr, vr->avail, FAKE_AVAIL_BYTES(size)), 0,
	       FAKE_AVAIL_BYTES(size));
	memset(fake_ram_ptr(fr, vr->used, FAKE_USED_BYTES(size)), 0,
	       FAKE_USED_BYTES(size));
}

/* First gpa after the layout (e.g. to place buffers behind the rings). */
static inline uint64_t fake_vring_end(const struct fake_vring *vr)
{
	return vr->used + FAKE_USED_BYTES(vr->size);
}

static inline void fake_vring_set_desc(struct fake_vring *vr, uint16_t i,
				       uint64_t addr, uint32_t len,
				       uint16_t flags, uint16_t next)
{
	fake_desc_write(vr->ram, vr->desc, i, addr, len, flags, next);
}

/* avail->ring[slot] = head, without touching idx (slot taken mod size). */
static inline void fake_vring_set_avail_ring(struct fake_vring *vr,
					     uint16_t slot, uint16_t head)
{
	fake_ram_w16(vr->ram, vr->avail + 4 + 2ull * (slot % vr->size), head);
}

/* avail->idx = idx (the driver's copy follows). */
static inline void fake_vring_set_avail_idx(struct fake_vring *vr,
					    uint16_t idx)
{
	vr->avail_idx = idx;
	fake_ram_w16(vr->ram, vr->avail + 2, idx);
}

/* Make chain `head` available: ring[avail_idx % size] = head, idx++. */
static inline void fake_vring_publish(struct fake_vring *vr, uint16_t head)
{
	fake_vring_set_avail_ring(vr, vr->avail_idx, head);
	fake_vring_set_avail_idx(vr, (uint16_t)(vr->avail_idx + 1));
}

static inline void fake_vring_set_avail_flags(struct fake_vring *vr,
					      uint16_t flags)
{
	fake_ram_w16(vr->ram, vr->avail, flags);
}

/* used_event: avail->ring[size] (§2.7.6, EVENT_IDX). */
static inline void fake_vring_set_used_event(struct fake_vring *vr,
					     uint16_t v)
{
	fake_ram_w16(vr->ram, vr->avail + 4 + 2ull * vr->size, v);
}

static inline uint16_t fake_vring_used_flags(struct fake_vring *vr)
{
	return fake_ram_r16(vr->ram, vr->used);
}

static inline uint16_t fake_vring_used_idx(struct fake_vring *vr)
{
	return fake_ram_r16(vr->ram, vr->used + 2);
}

/* used->ring[slot % size]: id and len. */
static inline void fake_vring_used_elem(struct fake_vring *vr, uint16_t slot,
					uint32_t *id, uint32_t *len)
{
	uint64_t e = vr->used + 4 + 8ull * (slot % vr->size);

	*id = fake_ram_r32(vr->ram, e);
	*len = fake_ram_r32(vr->ram, e + 4);
}

/* avail_event: used->ring[size] (§2.7.8, EVENT_IDX). */
static inline uint16_t fake_vring_avail_event(struct fake_vring *vr)
{
	return fake_ram_r16(vr->ram, vr->used + 4 + 8ull * vr->size);
}

#endif /* SMVMM_TESTS_FAKE_RAM_H */
