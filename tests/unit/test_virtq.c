/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/virtq.c: the split virtqueue against a hostile driver.
 *
 * Rings are built in a fake guest RAM (tests/unit/fake_ram.h): RAM at
 * [0, 1 MiB) and [2 MiB, 3 MiB) with a PROT_NONE hole between them and a
 * PROT_NONE tail after the end, so an unchecked access into the hole crashes
 * the test instead of passing silently.  Rings live in the second region,
 * data buffers mostly in the first.
 *
 * Every validation rule in core/virtq.h has a test that breaks exactly that
 * rule and checks the errno, the broken flag and the message; the CVE shapes
 * (QEMU CVE-2016-5403, -6490, -7422, CVE-2011-2512, CVE-2024-3446) are
 * reproduced at the virtqueue level.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fake_ram.h"
#include "gmem.h"
#include "virtq.h"

#define F_INDIRECT (1ull << VIRTIO_F_INDIRECT_DESC)
#define F_EVENT (1ull << VIRTIO_F_EVENT_IDX)
#define F_V1 (1ull << VIRTIO_F_VERSION_1)
#define F_PACKED (1ull << VIRTIO_F_RING_PACKED)

#define BUF0 0x10000ull                  /* data buffers in RAM region 0 */
#define BUF1 (FAKE_RAM1_GPA + 0x80000ull) /* ... and in region 1 */
#define TABLE0 0x40000ull                /* indirect tables */

#define NEXT VIRTQ_DESC_F_NEXT
#define WRITE VIRTQ_DESC_F_WRITE
#define INDIRECT VIRTQ_DESC_F_INDIRECT

static struct fake_ram fr;
static struct fake_vring vr;
static struct virtq vq;

/* Fake RAM + a ring of `size` at `gpa` + a ready queue with `features`. */
static void ring_up_at(uint16_t size, uint64_t features, uint64_t gpa)
{
	int ret;

	ck_assert_int_eq(fake_ram_init(&fr), 0);
	fake_vring_layout(&vr, &fr, size, gpa);
	virtq_init(&vq, &fr.mem, 0, size);
	ret = virtq_setup(&vq, size, vr.desc, vr.avail, vr.used, features);
	ck_assert_msg(ret == 0, "setup: %d %s", ret, vq.err);
	ck_assert(vq.ready);
}

static void ring_up(uint16_t size, uint64_t features)
{
	ring_up_at(size, features, FAKE_RAM1_GPA);
}

static void ring_down(void)
{
	virtq_reset(&vq);
	fake_ram_destroy(&fr);
}

static void *ram(uint64_t gpa)
{
	return fake_ram_ptr(&fr, gpa, 1);
}

static struct smvmm_chain *pop_ok(void)
{
	struct smvmm_chain *c = NULL;
	int ret = virtq_pop(&vq, &c);

	ck_assert_msg(ret == 1, "pop returned %d: %s", ret, vq.err);
	ck_assert_ptr_nonnull(c);
	ck_assert(!vq.broken);
	return c;
}

static void push_ok(struct smvmm_chain *c, uint32_t written)
{
	ck_assert_int_eq(virtq_push(&vq, c, written), 0);
}

/*
 * `ret` must be `err`, the queue broken with a message containing `msg`,
 * the avail position unchanged, and the queue must stay broken.
 */
static void expect_broken_ret(int ret, int err, const char *msg)
{
	struct smvmm_chain *c = (struct smvmm_chain *)&c;

	ck_assert_msg(ret == err, "ret %d, expected %d (err: '%s')", ret, err,
		      vq.err);
	ck_assert(vq.broken);
	ck_assert_msg(strstr(vq.err, msg), "vq.err '%s' lacks '%s'", vq.err,
		      msg);
	ck_assert_msg(strncmp(vq.err, "queue 0: ", 9) == 0,
		      "message '%s' does not name the queue", vq.err);
	/* sticky until reset, and nothing leaks out */
	ck_assert_int_eq(virtq_pop(&vq, &c), -EIO);
	ck_assert_ptr_null(c);
	ck_assert(!virtq_has_avail(&vq));
	ck_assert(!virtq_should_notify(&vq));
}

/* Pop must fail with `err` and `msg`; the ring position does not move. */
static void expect_pop_broken(int err, const char *msg)
{
	struct smvmm_chain *c = (struct smvmm_chain *)&c;
	uint16_t last = vq.last_avail_idx;
	uint16_t used = fake_vring_used_idx(&vr);
	int ret = virtq_pop(&vq, &c);

	ck_assert_ptr_null(c);
	ck_assert_uint_eq(vq.last_avail_idx, last);
	ck_assert_uint_eq(fake_vring_used_idx(&vr), used);
	expect_broken_ret(ret, err, msg);
}

/* ---- virtq_setup --------------------------------------------------------- */

START_TEST(test_setup_ok)
{
	struct smvmm_chain *c = NULL;

	ring_up(256, F_V1 | F_EVENT | F_INDIRECT);
	ck_assert_uint_eq(vq.size, 256);
	ck_assert(vq.event_idx);
	ck_assert(vq.indirect);
	ck_assert(!vq.broken);
	ck_assert_ptr_eq(vq.desc, ram(vr.desc));
	ck_assert_ptr_eq(vq.avail, ram(vr.avail));
	ck_assert_ptr_eq(vq.used, ram(vr.used));
	ck_assert_ptr_nonnull(vq.inflight);
	ck_assert_uint_eq(vq.last_avail_idx, 0);
	ck_assert_uint_eq(vq.used_idx, 0);
	ck_assert(!virtq_has_avail(&vq));
	ck_assert_int_eq(virtq_pop(&vq, &c), 0);
	ck_assert_ptr_null(c);
	ring_down();

	/* features are honoured only when negotiated */
	ring_up(8, F_V1);
	ck_assert(!vq.event_idx);
	ck_assert(!vq.indirect);
	ring_down();
}
END_TEST

START_TEST(test_setup_not_ready_pops_nothing)
{
	struct smvmm_chain *c = (struct smvmm_chain *)&c;

	ck_assert_int_eq(fake_ram_init(&fr), 0);
	virtq_init(&vq, &fr.mem, 3, 256);
	ck_assert(!vq.ready);
	ck_assert_uint_eq(vq.index, 3);
	ck_assert_uint_eq(vq.max_size, 256);
	ck_assert_int_eq(virtq_pop(&vq, &c), 0);
	ck_assert_ptr_null(c);
	ck_assert(!virtq_has_avail(&vq));
	ck_assert(!virtq_should_notify(&vq));
	ck_assert_int_eq(virtq_set_indices(&vq, 0, 0), -EIO);
	fake_ram_destroy(&fr);
}
END_TEST

START_TEST(test_setup_size_not_power_of_two)
{
	static const uint16_t bad[] = { 0, 3, 6, 100, 255, 129, 0xffff };

	ck_assert_int_eq(fake_ram_init(&fr), 0);
	fake_vring_layout(&vr, &fr, 256, FAKE_RAM1_GPA);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		virtq_init(&vq, &fr.mem, 0, 32768);
		ck_assert_int_eq(virtq_setup(&vq, bad[i], vr.desc, vr.avail,
					     vr.used, 0),
				 -EINVAL);
		ck_assert(vq.broken);
		ck_assert(!vq.ready);
		ck_assert_msg(strstr(vq.err, "not a power of two"), "%s",
			      vq.err);
		virtq_reset(&vq);
	}
	fake_ram_destroy(&fr);
}
END_TEST

START_TEST(test_setup_size_above_max)
{
	ck_assert_int_eq(fake_ram_init(&fr), 0);
	fake_vring_layout(&vr, &fr, 512, FAKE_RAM1_GPA);
	virtq_init(&vq, &fr.mem, 0, 256);
	ck_assert_int_eq(virtq_setup(&vq, 512, vr.desc, vr.avail, vr.used, 0),
			 -EINVAL);
	ck_assert_str_eq(vq.err, "queue 0: size 512 > QueueNumMax 256");
	virtq_reset(&vq);
	/* max itself is fine, and so is any smaller power of two */
	ck_assert_int_eq(virtq_setup(&vq, 256, vr.desc, vr.avail, vr.used, 0),
			 0);
	virtq_reset(&vq);
	ck_assert_int_eq(virtq_setup(&vq, 1, vr.desc, vr.avail, vr.used, 0), 0);
	virtq_reset(&vq);
	fake_ram_destroy(&fr);

	/* the largest queue the spec allows (§2.7: 32768) fits in 1 MiB */
	ring_up_at(32768, F_EVENT, FAKE_RAM0_GPA);
	ring_down();
}
END_TEST

START_TEST(test_setup_misaligned)
{
	struct {
		int64_t d, a, u;
		const char *msg;
	} cases[] = {
		{ 8, 0, 0, "is not 16-byte aligned" },
		{ 1, 0, 0, "is not 16-byte aligned" },
		{ 0, 1, 0, "is not 2-byte aligned" },
		{ 0, 0, 2, "is not 4-byte aligned" },
		{ 0, 0, 1, "is not 4-byte aligned" },
	};

	ck_assert_int_eq(fake_ram_init(&fr), 0);
	fake_vring_layout(&vr, &fr, 64, FAKE_RAM1_GPA + 0x100);
	for (unsigned int i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		virtq_init(&vq, &fr.mem, 0, 256);
		ck_assert_int_eq(virtq_setup(&vq, 64, vr.desc + cases[i].d,
					     vr.avail + cases[i].a,
					     vr.used + cases[i].u, 0),
				 -EINVAL);
		ck_assert(vq.broken && !vq.ready);
		ck_assert_msg(strstr(vq.err, cases[i].msg), "%u: %s", i,
			      vq.err);
		virtq_reset(&vq);
	}
	fake_ram_destroy(&fr);
}
END_TEST

/* Which ring, at which gpa, should be refused as not-RAM. */
static void setup_expect_efault(unsigned int which, uint64_t gpa,
				uint64_t features, const char *msg)
{
	uint64_t d = vr.desc, a = vr.avail, u = vr.used;
	int ret;

	if (which == 0)
		d = gpa;
	else if (which == 1)
		a = gpa;
	else
		u = gpa;
	virtq_init(&vq, &fr.mem, 0, 256);
	ret = virtq_setup(&vq, 256, d, a, u, features);
	ck_assert_msg(ret == -EFAULT, "ring %u at 0x%llx: %d %s", which,
		      (unsigned long long)gpa, ret, vq.err);
	ck_assert(vq.broken && !vq.ready);
	ck_assert_msg(strstr(vq.err, msg), "%s", vq.err);
	ck_assert_msg(strstr(vq.err, "is not guest RAM"), "%s", vq.err);
	virtq_reset(&vq);
}

START_TEST(test_setup_rings_outside_ram)
{
	ck_assert_int_eq(fake_ram_init(&fr), 0);
	fake_vring_layout(&vr, &fr, 256, FAKE_RAM1_GPA);
	/* in the hole */
	setup_expect_efault(0, FAKE_HOLE_GPA, 0, "descriptor table");
	setup_expect_efault(1, FAKE_HOLE_GPA + 0x1000, 0, "avail ring");
	setup_expect_efault(2, FAKE_HOLE_GPA + 0x2000, 0, "used ring");
	/* beyond the end of RAM, in "MMIO space", at the top of 2^64 */
	setup_expect_efault(0, FAKE_RAM_END, 0, "descriptor table");
	setup_expect_efault(1, 0xd0000000ull, 0, "avail ring");
	setup_expect_efault(2, 0xfee00000ull, 0, "used ring");
	setup_expect_efault(0, UINT64_MAX - 15, 0, "descriptor table");
	setup_expect_efault(2, UINT64_MAX - 3, 0, "used ring");
	/* starting in RAM and running into the hole / off the end */
	setup_expect_efault(0, FAKE_HOLE_GPA - 0x800, 0, "descriptor table");
	setup_expect_efault(1, FAKE_HOLE_GPA - 0x100, 0, "avail ring");
	setup_expect_efault(2, FAKE_RAM_END - 0x400, 0, "used ring");
	fake_ram_destroy(&fr);
}
END_TEST

START_TEST(test_setup_ring_edges)
{
	/* size 256: avail 516 (+2), used 2052 (+2) bytes */
	const uint64_t used_end = FAKE_HOLE_GPA;
	const uint64_t avail_end = FAKE_RAM_END;

	ck_assert_int_eq(fake_ram_init(&fr), 0);
	fake_vring_layout(&vr, &fr, 256, FAKE_RAM1_GPA);

	/* exactly up to the last byte of RAM: fine without EVENT_IDX */
	virtq_init(&vq, &fr.mem, 0, 256);
	ck_assert_int_eq(virtq_setup(&vq, 256, vr.desc, avail_end - 516,
				     used_end - 2052, 0),
			 0);
	virtq_reset(&vq);
	/* with EVENT_IDX each needs two bytes more (used_event/avail_event) */
	setup_expect_efault(2, used_end - 2052, F_EVENT, "used ring");
	setup_expect_efault(1, avail_end - 516, F_EVENT, "avail ring");
	virtq_init(&vq, &fr.mem, 0, 256);
	ck_assert_int_eq(virtq_setup(&vq, 256, vr.desc, avail_end - 518,
				     used_end - 2056, F_EVENT),
			 0);
	virtq_reset(&vq);
	/* descriptor table ending exactly at the hole */
	virtq_init(&vq, &fr.mem, 0, 256);
	ck_assert_int_eq(virtq_setup(&vq, 256, FAKE_HOLE_GPA - 4096, vr.avail,
				     vr.used, 0),
			 0);
	virtq_reset(&vq);
	setup_expect_efault(0, FAKE_HOLE_GPA - 4096 + 16, 0,
			    "descriptor table");
	fake_ram_destroy(&fr);
}
END_TEST

START_TEST(test_setup_packed_refused)
{
	ck_assert_int_eq(fake_ram_init(&fr), 0);
	fake_vring_layout(&vr, &fr, 64, FAKE_RAM1_GPA);
	virtq_init(&vq, &fr.mem, 0, 256);
	ck_assert_int_eq(virtq_setup(&vq, 64, vr.desc, vr.avail, vr.used,
				     F_V1 | F_PACKED),
			 -EINVAL);
	ck_assert(strstr(vq.err, "RING_PACKED"));
	virtq_reset(&vq);
	fake_ram_destroy(&fr);
}
END_TEST

START_TEST(test_setup_busy_and_broken)
{
	ring_up(64, 0);
	ck_assert_int_eq(virtq_setup(&vq, 64, vr.desc, vr.avail, vr.used, 0),
			 -EBUSY);
	ck_assert(vq.ready && !vq.broken);
	virtq_reset(&vq);
	/* a failed setup breaks the queue; only reset un-breaks it */
	ck_assert_int_eq(virtq_setup(&vq, 63, vr.desc, vr.avail, vr.used, 0),
			 -EINVAL);
	ck_assert_int_eq(virtq_setup(&vq, 64, vr.desc, vr.avail, vr.used, 0),
			 -EIO);
	ck_assert(strstr(vq.err, "power of two")); /* first reason kept */
	virtq_reset(&vq);
	ck_assert_int_eq(virtq_setup(&vq, 64, vr.desc, vr.avail, vr.used, 0),
			 0);
	ring_down();
}
END_TEST

START_TEST(test_reset_clears_state)
{
	struct smvmm_chain *c;
	uint32_t gen;

	ring_up(16, F_EVENT | F_INDIRECT);
	vq.index = 5;
	fake_vring_set_desc(&vr, 0, BUF0, 16, 0, 0);
	fake_vring_set_desc(&vr, 1, BUF0, 16, 0, 0);
	fake_vring_publish(&vr, 0);
	fake_vring_publish(&vr, 1);
	c = pop_ok();
	ck_assert_uint_eq(c->queue, 5);
	fake_vring_publish(&vr, 20); /* head out of range: breaks */
	free(pop_ok());
	ck_assert_int_lt(virtq_pop(&vq, &(struct smvmm_chain *){ NULL }), 0);
	ck_assert(vq.broken);
	gen = vq.gen;

	virtq_reset(&vq);
	ck_assert(!vq.ready);
	ck_assert(!vq.broken);
	ck_assert_str_eq(vq.err, "");
	ck_assert_ptr_null(vq.inflight);
	ck_assert_uint_eq(vq.inflight_count, 0);
	ck_assert_uint_eq(vq.last_avail_idx, 0);
	ck_assert_uint_eq(vq.used_idx, 0);
	ck_assert_uint_eq(vq.size, 0);
	ck_assert(!vq.event_idx && !vq.indirect);
	ck_assert_ptr_null(vq.desc);
	ck_assert_ptr_eq(vq.mem, &fr.mem);
	ck_assert_uint_eq(vq.index, 5);
	ck_assert_uint_eq(vq.max_size, 16);
	ck_assert_uint_ne(vq.gen, gen);

	/* a chain from before the reset: refused while not ready ... */
	ck_assert_int_eq(virtq_push(&vq, c, 0), -EIO);
	/* ... and by generation after a new setup */
	fake_vring_layout(&vr, &fr, 16, FAKE_RAM1_GPA);
	fake_vring_set_desc(&vr, 0, BUF0, 16, 0, 0);
	ck_assert_int_eq(virtq_setup(&vq, 16, vr.desc, vr.avail, vr.used, 0),
			 0);
	fake_vring_publish(&vr, 0);
	c = pop_ok();
	ck_assert_uint_eq(c->head, 0);
	virtq_reset(&vq);
	ck_assert_int_eq(virtq_setup(&vq, 16, vr.desc, vr.avail, vr.used, 0),
			 0);
	fake_vring_set_avail_idx(&vr, 0);
	fake_vring_publish(&vr, 0);
	ck_assert_int_eq(virtq_push(&vq, c, 0), -EINVAL);
	ck_assert_uint_eq(fake_vring_used_idx(&vr), 0);
	/* head 0 was not marked in flight by the stale chain */
	push_ok(pop_ok(), 0);
	ck_assert_uint_eq(fake_vring_used_idx(&vr), 1);
	ring_down();
}
END_TEST

START_TEST(test_stale_chain_after_reinit)
{
	/*
	 * device.c re-initialises queues with reset + init.  A chain popped
	 * before must not complete the same head popped from the new ring.
	 */
	struct smvmm_chain *stale, *fresh;
	uint32_t id, len;

	ring_up(16, 0);
	fake_vring_set_desc(&vr, 2, BUF0, 8, WRITE, 0);
	fake_vring_publish(&vr, 2);
	stale = pop_ok();
	virtq_reset(&vq);
	virtq_init(&vq, &fr.mem, 0, 16);
	fake_vring_layout(&vr, &fr, 16, FAKE_RAM1_GPA);
	ck_assert_int_eq(virtq_setup(&vq, 16, vr.desc, vr.avail, vr.used, 0),
			 0);
	fake_vring_set_desc(&vr, 2, BUF0, 8, WRITE, 0);
	fake_vring_publish(&vr, 2);
	fresh = pop_ok();
	ck_assert_uint_eq(stale->head, fresh->head);
	ck_assert_int_eq(virtq_push(&vq, stale, 8), -EINVAL);
	ck_assert_uint_eq(fake_vring_used_idx(&vr), 0);
	ck_assert_uint_eq(vq.inflight_count, 1);
	push_ok(fresh, 3);
	fake_vring_used_elem(&vr, 0, &id, &len);
	ck_assert_uint_eq(id, 2);
	ck_assert_uint_eq(len, 3);
	ring_down();
}
END_TEST

/* ---- virtq_pop: well-formed chains --------------------------------------- */

START_TEST(test_pop_simple_chain)
{
	struct smvmm_chain *c;

	ring_up(256, 0);
	memcpy(ram(BUF0), "hello", 5);
	fake_vring_set_desc(&vr, 7, BUF0, 5, 0, 0);
	fake_vring_publish(&vr, 7);
	ck_assert(virtq_has_avail(&vq));
	c = pop_ok();
	ck_assert_uint_eq(c->queue, 0);
	ck_assert_uint_eq(c->head, 7);
	ck_assert_uint_eq(c->n_out, 1);
	ck_assert_uint_eq(c->n_in, 0);
	ck_assert_uint_eq(c->out_len, 5);
	ck_assert_uint_eq(c->in_len, 0);
	ck_assert_ptr_eq(c->iov[0].iov_base, ram(BUF0));
	ck_assert_uint_eq(c->iov[0].iov_len, 5);
	ck_assert_mem_eq(c->iov[0].iov_base, "hello", 5);
	/* the iovec array is part of the one allocation */
	ck_assert((uintptr_t)c->iov > (uintptr_t)c &&
		  (uintptr_t)c->iov < (uintptr_t)c + 256);
	ck_assert_uint_eq(vq.last_avail_idx, 1);
	ck_assert_uint_eq(vq.inflight_count, 1);
	ck_assert(!virtq_has_avail(&vq));
	free(c);
	ck_assert_int_eq(virtq_pop(&vq, &c), 0);
	ck_assert_ptr_null(c);
	/* nothing is written to the used ring by pop */
	ck_assert_uint_eq(fake_vring_used_idx(&vr), 0);
	ring_down();
}
END_TEST

START_TEST(test_pop_free_releases_everything)
{
	/* one malloc block: free(chain) must be all (ASan/LSan check this) */
	ring_up(16, F_INDIRECT);
	for (unsigned int i = 0; i < 12; i++)
		fake_desc_write(&fr, TABLE0, i, BUF0 + 64 * i, 64, NEXT,
				(uint16_t)(i + 1));
	fake_desc_write(&fr, TABLE0, 11, BUF0, 64, 0, 0);
	fake_vring_set_desc(&vr, 0, TABLE0, 12 * 16, INDIRECT, 0);
	fake_vring_publish(&vr, 0);
	struct smvmm_chain *c = pop_ok();
	ck_assert_uint_eq(c->n_out, 12); /* more than the first allocation */
	free(c);
	ring_down();
}
END_TEST

START_TEST(test_pop_mixed_out_in)
{
	struct smvmm_chain *c;

	ring_up(256, 0);
	/* header (out), payload (out, in region 1), data (in), status (in) */
	fake_vring_set_desc(&vr, 0, BUF0, 16, NEXT, 5);
	fake_vring_set_desc(&vr, 5, BUF1, 512, NEXT, 200);
	fake_vring_set_desc(&vr, 200, BUF0 + 0x1000, 4096, NEXT | WRITE, 255);
	fake_vring_set_desc(&vr, 255, BUF1 + 0x2000, 1, WRITE, 0);
	fake_vring_publish(&vr, 0);
	c = pop_ok();
	ck_assert_uint_eq(c->head, 0);
	ck_assert_uint_eq(c->n_out, 2);
	ck_assert_uint_eq(c->n_in, 2);
	ck_assert_uint_eq(c->out_len, 528);
	ck_assert_uint_eq(c->in_len, 4097);
	ck_assert_ptr_eq(c->iov[0].iov_base, ram(BUF0));
	ck_assert_uint_eq(c->iov[0].iov_len, 16);
	ck_assert_ptr_eq(c->iov[1].iov_base, ram(BUF1));
	ck_assert_uint_eq(c->iov[1].iov_len, 512);
	ck_assert_ptr_eq(c->iov[2].iov_base, ram(BUF0 + 0x1000));
	ck_assert_uint_eq(c->iov[2].iov_len, 4096);
	ck_assert_ptr_eq(c->iov[3].iov_base, ram(BUF1 + 0x2000));
	ck_assert_uint_eq(c->iov[3].iov_len, 1);
	free(c);

	/* write-only chain */
	fake_vring_set_desc(&vr, 1, BUF0, 8, WRITE | NEXT, 2);
	fake_vring_set_desc(&vr, 2, BUF0 + 8, 8, WRITE, 0);
	fake_vring_publish(&vr, 1);
	c = pop_ok();
	ck_assert_uint_eq(c->n_out, 0);
	ck_assert_uint_eq(c->n_in, 2);
	ck_assert_uint_eq(c->in_len, 16);
	free(c);
	ring_down();
}
END_TEST

START_TEST(test_pop_longest_direct_chain)
{
	/* exactly `size` descriptors is legal (§2.7.5.3.1) */
	struct smvmm_chain *c;

	uint16_t order[16];

	ring_up(16, 0);
	/* visit every index once, out of table order: 0,15,1,14,2,13,... */
	for (unsigned int k = 0; k < 8; k++) {
		order[2 * k] = (uint16_t)k;
		order[2 * k + 1] = (uint16_t)(15 - k);
	}
	for (unsigned int k = 0; k < 16; k++)
		fake_vring_set_desc(&vr, order[k], BUF0 + 16 * k, 16,
				    k < 15 ? NEXT : 0,
				    k < 15 ? order[k + 1] : 0);
	fake_vring_publish(&vr, 0);
	c = pop_ok();
	ck_assert_uint_eq(c->n_out, 16);
	ck_assert_uint_eq(c->out_len, 256);
	for (unsigned int k = 0; k < 16; k++)
		ck_assert_ptr_eq(c->iov[k].iov_base, ram(BUF0 + 16 * k));
	free(c);
	ring_down();
}
END_TEST

START_TEST(test_pop_indirect_chain)
{
	struct smvmm_chain *c;

	ring_up(16, F_INDIRECT);
	/* direct out, then INDIRECT -> { out, in, in } in chain order 0,2,1 */
	fake_desc_write(&fr, TABLE0, 0, BUF0 + 0x100, 32, NEXT, 2);
	fake_desc_write(&fr, TABLE0, 2, BUF1, 64, NEXT | WRITE, 1);
	fake_desc_write(&fr, TABLE0, 1, BUF1 + 0x100, 2, WRITE, 0);
	fake_vring_set_desc(&vr, 3, BUF0, 10, NEXT, 9);
	/* §2.7.5.3.2: the WRITE flag on the table descriptor is ignored */
	fake_vring_set_desc(&vr, 9, TABLE0, 3 * 16, INDIRECT | WRITE, 0);
	fake_vring_publish(&vr, 3);
	c = pop_ok();
	ck_assert_uint_eq(c->head, 3);
	ck_assert_uint_eq(c->n_out, 2);
	ck_assert_uint_eq(c->n_in, 2);
	ck_assert_uint_eq(c->out_len, 42);
	ck_assert_uint_eq(c->in_len, 66);
	ck_assert_ptr_eq(c->iov[0].iov_base, ram(BUF0));
	ck_assert_ptr_eq(c->iov[1].iov_base, ram(BUF0 + 0x100));
	ck_assert_ptr_eq(c->iov[2].iov_base, ram(BUF1));
	ck_assert_ptr_eq(c->iov[3].iov_base, ram(BUF1 + 0x100));
	push_ok(c, 66);
	ring_down();
}
END_TEST

START_TEST(test_pop_indirect_unaligned_and_full)
{
	struct smvmm_chain *c;
	const uint64_t t = TABLE0 + 8; /* §2.7.5.3 sets no alignment */

	ring_up(16, F_INDIRECT);
	/* a table of exactly `size` entries is the largest allowed */
	for (unsigned int i = 0; i < 16; i++)
		fake_desc_write(&fr, t, i, BUF0 + 4 * i, 4,
				(i < 15 ? NEXT : 0) | (i >= 8 ? WRITE : 0),
				(uint16_t)(i + 1));
	fake_vring_set_desc(&vr, 0, t, 16 * 16, INDIRECT, 0);
	fake_vring_publish(&vr, 0);
	c = pop_ok();
	ck_assert_uint_eq(c->n_out, 8);
	ck_assert_uint_eq(c->n_in, 8);
	ck_assert_ptr_eq(c->iov[15].iov_base, ram(BUF0 + 60));
	free(c);
	ring_down();
}
END_TEST

START_TEST(test_pop_zero_length_descriptors)
{
	/*
	 * QEMU CVE-2016-6490: an assertion on a zero-length descriptor.  They
	 * are legal; we skip them in the iov and never look at their address
	 * (here: in the hole, and at the very top of the address space).
	 */
	struct smvmm_chain *c;

	ring_up(16, F_INDIRECT);
	fake_vring_set_desc(&vr, 0, FAKE_HOLE_GPA, 0, 0, 0);
	fake_vring_publish(&vr, 0);
	c = pop_ok();
	ck_assert_uint_eq(c->n_out + c->n_in, 0);
	ck_assert_uint_eq(c->out_len + c->in_len, 0);
	push_ok(c, 100); /* clamped to in_len 0 */
	{
		uint32_t id, len;
		fake_vring_used_elem(&vr, 0, &id, &len);
		ck_assert_uint_eq(id, 0);
		ck_assert_uint_eq(len, 0);
	}

	/* zero-length ones in the middle of a chain */
	fake_vring_set_desc(&vr, 1, BUF0, 16, NEXT, 2);
	fake_vring_set_desc(&vr, 2, UINT64_MAX, 0, NEXT, 3);
	fake_vring_set_desc(&vr, 3, 0, 0, NEXT | WRITE, 4);
	fake_vring_set_desc(&vr, 4, BUF1, 8, WRITE, 0);
	fake_vring_publish(&vr, 1);
	c = pop_ok();
	ck_assert_uint_eq(c->n_out, 1);
	ck_assert_uint_eq(c->n_in, 1);
	ck_assert_ptr_eq(c->iov[0].iov_base, ram(BUF0));
	ck_assert_ptr_eq(c->iov[1].iov_base, ram(BUF1));
	free(c);

	/* ... and inside an indirect table */
	fake_desc_write(&fr, TABLE0, 0, FAKE_RAM_END, 0, NEXT, 1);
	fake_desc_write(&fr, TABLE0, 1, BUF0, 4, 0, 0);
	fake_vring_set_desc(&vr, 5, TABLE0, 32, INDIRECT, 0);
	fake_vring_publish(&vr, 5);
	c = pop_ok();
	ck_assert_uint_eq(c->n_out, 1);
	ck_assert_uint_eq(c->out_len, 4);
	free(c);
	ring_down();
}
END_TEST

START_TEST(test_pop_zero_length_still_ordered)
{
	/* a zero-length readable descriptor after a writable one is misuse */
	ring_up(16, 0);
	fake_vring_set_desc(&vr, 0, BUF0, 16, WRITE | NEXT, 1);
	fake_vring_set_desc(&vr, 1, BUF0, 0, 0, 0);
	fake_vring_publish(&vr, 0);
	expect_pop_broken(-EINVAL,
			  "descriptor 1: device-readable buffer after a device-writable one");
	ring_down();
}
END_TEST

START_TEST(test_pop_buffer_edges_ok)
{
	/* buffers that end exactly on the last byte of each region */
	struct smvmm_chain *c;

	ring_up(16, 0);
	fake_vring_set_desc(&vr, 0, FAKE_HOLE_GPA - 16, 16, NEXT, 1);
	fake_vring_set_desc(&vr, 1, FAKE_RAM_END - 1, 1, NEXT, 2);
	fake_vring_set_desc(&vr, 2, 0, FAKE_RAM0_SIZE, 0, 0);
	fake_vring_publish(&vr, 0);
	c = pop_ok();
	ck_assert_uint_eq(c->n_out, 3);
	ck_assert_ptr_eq(c->iov[0].iov_base, ram(FAKE_HOLE_GPA - 16));
	ck_assert_ptr_eq(c->iov[1].iov_base, ram(FAKE_RAM_END - 1));
	ck_assert_uint_eq(c->out_len, 17 + FAKE_RAM0_SIZE);
	free(c);
	ring_down();
}
END_TEST

/* ---- virtq_pop: hostile rings -------------------------------------------- */

START_TEST(test_avail_idx_jump)
{
	/* QEMU CVE-2016-5403: avail->idx more than `size` ahead */
	ring_up(256, 0);
	fake_vring_set_avail_idx(&vr, 257);
	ck_assert(virtq_has_avail(&vq));
	expect_pop_broken(-EINVAL,
			  "avail idx 257 is 257 ahead of last_avail_idx 0 (> size 256)");
	ring_down();

	/* "decrementing" idx looks like 65535 entries ahead */
	ring_up(256, F_EVENT);
	fake_vring_set_avail_idx(&vr, 0xffff);
	expect_pop_broken(-EINVAL, "65535 ahead");
	ring_down();
}
END_TEST

START_TEST(test_avail_idx_exactly_full)
{
	/* `size` entries pending is a full ring, not an error */
	ring_up(8, 0);
	for (uint16_t i = 0; i < 8; i++) {
		fake_vring_set_desc(&vr, i, BUF0 + 64 * i, 64, 0, 0);
		fake_vring_publish(&vr, (uint16_t)(7 - i));
	}
	for (uint16_t i = 0; i < 8; i++) {
		struct smvmm_chain *c = pop_ok();
		ck_assert_uint_eq(c->head, 7 - i);
		free(c);
	}
	ck_assert_int_eq(virtq_pop(&vq, &(struct smvmm_chain *){ NULL }), 0);
	ck_assert_uint_eq(vq.inflight_count, 8);
	ring_down();
}
END_TEST

START_TEST(test_head_out_of_range)
{
	/* CVE-2011-2512 shape at the virtq level: head >= size, and 0xffff */
	ring_up(256, 0);
	fake_vring_publish(&vr, 256);
	expect_pop_broken(-EINVAL, "avail ring[0]: head 256 >= queue size 256");
	ring_down();

	ring_up(256, 0);
	fake_vring_set_desc(&vr, 0, BUF0, 8, 0, 0);
	fake_vring_publish(&vr, 0);
	fake_vring_publish(&vr, 0xffff);
	free(pop_ok());
	expect_pop_broken(-EINVAL,
			  "avail ring[1]: head 65535 >= queue size 256");
	ring_down();
}
END_TEST

START_TEST(test_next_out_of_range)
{
	ring_up(256, 0);
	fake_vring_set_desc(&vr, 2, BUF0, 8, NEXT, 5);
	fake_vring_set_desc(&vr, 5, BUF0, 8, NEXT, 300);
	fake_vring_publish(&vr, 2);
	expect_pop_broken(-EINVAL, "next 300");
	ck_assert_str_eq(vq.err,
			 "queue 0: descriptor 5: next 300 >= queue size 256");
	ring_down();

	ring_up(256, 0);
	fake_vring_set_desc(&vr, 0, BUF0, 8, NEXT, 0xffff);
	fake_vring_publish(&vr, 0);
	expect_pop_broken(-EINVAL, "descriptor 0: next 65535 >= queue size 256");
	ring_down();

	/* next == size: the first out-of-range value */
	ring_up(16, 0);
	fake_vring_set_desc(&vr, 15, BUF0, 8, NEXT, 16);
	fake_vring_publish(&vr, 15);
	expect_pop_broken(-EINVAL, "descriptor 15: next 16 >= queue size 16");
	ring_down();
}
END_TEST

START_TEST(test_chain_loop)
{
	/* 0 -> 1 -> 2 -> 0: the walk bound (size) stops it */
	ring_up(16, 0);
	fake_vring_set_desc(&vr, 0, BUF0, 8, NEXT, 1);
	fake_vring_set_desc(&vr, 1, BUF0, 8, NEXT, 2);
	fake_vring_set_desc(&vr, 2, BUF0, 8, NEXT, 0);
	fake_vring_publish(&vr, 0);
	expect_pop_broken(-ELOOP, "chain longer than queue size 16");
	ring_down();

	/* self-loop, zero-length so no length limit could stop it */
	ring_up(32768, 0);
	fake_vring_set_desc(&vr, 77, 0, 0, NEXT, 77);
	fake_vring_publish(&vr, 77);
	expect_pop_broken(-ELOOP,
			  "descriptor 77: chain longer than queue size 32768");
	ring_down();
}
END_TEST

START_TEST(test_buffer_count_bound)
{
	/*
	 * 1 direct buffer + a full table of `size` entries = size + 1
	 * buffers: more than a chain may have (§2.7.5.3.1).
	 */
	ring_up(16, F_INDIRECT);
	for (unsigned int i = 0; i < 16; i++)
		fake_desc_write(&fr, TABLE0, i, BUF0, 4, i < 15 ? NEXT : 0,
				(uint16_t)(i + 1));
	fake_vring_set_desc(&vr, 0, BUF0, 4, NEXT, 1);
	fake_vring_set_desc(&vr, 1, TABLE0, 16 * 16, INDIRECT, 0);
	fake_vring_publish(&vr, 0);
	expect_pop_broken(-ELOOP,
			  "descriptor 1: indirect entry 15: chain has more than 16 buffers");
	ring_down();
}
END_TEST

START_TEST(test_indirect_without_feature)
{
	ring_up(16, 0);
	fake_desc_write(&fr, TABLE0, 0, BUF0, 4, 0, 0);
	fake_vring_set_desc(&vr, 4, TABLE0, 16, INDIRECT, 0);
	fake_vring_publish(&vr, 4);
	expect_pop_broken(-EINVAL,
			  "descriptor 4: INDIRECT without VIRTIO_F_INDIRECT_DESC");
	ring_down();
}
END_TEST

START_TEST(test_indirect_with_next)
{
	ring_up(16, F_INDIRECT);
	fake_desc_write(&fr, TABLE0, 0, BUF0, 4, 0, 0);
	fake_vring_set_desc(&vr, 0, TABLE0, 16, INDIRECT | NEXT, 1);
	fake_vring_set_desc(&vr, 1, BUF0, 4, 0, 0);
	fake_vring_publish(&vr, 0);
	expect_pop_broken(-EINVAL, "descriptor 0: INDIRECT with NEXT set");
	ring_down();
}
END_TEST

START_TEST(test_indirect_bad_length)
{
	static const uint32_t lens[] = { 0, 8, 24, 17 * 16, 0xfffffff0 };

	for (unsigned int i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		ring_up(16, F_INDIRECT);
		fake_vring_set_desc(&vr, 0, TABLE0, lens[i], INDIRECT, 0);
		fake_vring_publish(&vr, 0);
		if (lens[i] % 16 == 0 && lens[i])
			expect_pop_broken(-EINVAL, "> queue size 16");
		else
			expect_pop_broken(-EINVAL,
					  "is not a non-zero multiple of 16");
		ring_down();
	}
}
END_TEST

START_TEST(test_indirect_table_outside_ram)
{
	static const uint64_t addrs[] = {
		FAKE_HOLE_GPA,        /* in the hole */
		FAKE_HOLE_GPA - 16,   /* runs into the hole */
		FAKE_RAM_END - 16,    /* runs off the end */
		0xd0000000ull,        /* MMIO space */
		UINT64_MAX - 15,      /* wraps around 2^64 */
	};

	for (unsigned int i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		ring_up(16, F_INDIRECT);
		fake_vring_set_desc(&vr, 0, addrs[i], 32, INDIRECT, 0);
		fake_vring_publish(&vr, 0);
		expect_pop_broken(-EFAULT, "indirect table");
		ck_assert(strstr(vq.err, "is not guest RAM"));
		ring_down();
	}
}
END_TEST

START_TEST(test_indirect_nested)
{
	ring_up(16, F_INDIRECT);
	fake_desc_write(&fr, TABLE0 + 0x100, 0, BUF0, 4, 0, 0);
	fake_desc_write(&fr, TABLE0, 0, BUF0, 4, NEXT, 1);
	fake_desc_write(&fr, TABLE0, 1, TABLE0 + 0x100, 16, INDIRECT, 0);
	fake_vring_set_desc(&vr, 0, TABLE0, 32, INDIRECT, 0);
	fake_vring_publish(&vr, 0);
	expect_pop_broken(-EINVAL,
			  "descriptor 0: indirect entry 1: nested INDIRECT");
	ring_down();
}
END_TEST

START_TEST(test_indirect_next_out_of_range)
{
	ring_up(16, F_INDIRECT);
	fake_desc_write(&fr, TABLE0, 0, BUF0, 4, NEXT, 1);
	fake_desc_write(&fr, TABLE0, 1, BUF0, 4, NEXT, 4);
	fake_desc_write(&fr, TABLE0, 4, BUF0, 4, 0, 0); /* beyond the table */
	fake_vring_set_desc(&vr, 6, TABLE0, 4 * 16, INDIRECT, 0);
	fake_vring_publish(&vr, 6);
	expect_pop_broken(-EINVAL,
			  "descriptor 6: indirect entry 1: next 4 >= table size 4");
	ring_down();
}
END_TEST

START_TEST(test_indirect_loop)
{
	ring_up(16, F_INDIRECT);
	fake_desc_write(&fr, TABLE0, 0, BUF0, 0, NEXT, 1);
	fake_desc_write(&fr, TABLE0, 1, BUF0, 0, NEXT, 0);
	fake_vring_set_desc(&vr, 0, TABLE0, 2 * 16, INDIRECT, 0);
	fake_vring_publish(&vr, 0);
	expect_pop_broken(-ELOOP, "indirect chain longer than its table of 2");
	ring_down();
}
END_TEST

START_TEST(test_read_after_write)
{
	/* §2.7.4.2: readable after writable, direct */
	ring_up(16, F_INDIRECT);
	fake_vring_set_desc(&vr, 0, BUF0, 8, NEXT, 1);
	fake_vring_set_desc(&vr, 1, BUF0, 8, WRITE | NEXT, 2);
	fake_vring_set_desc(&vr, 2, BUF0, 8, 0, 0);
	fake_vring_publish(&vr, 0);
	expect_pop_broken(-EINVAL,
			  "descriptor 2: device-readable buffer after a device-writable one");
	ring_down();

	/* writable direct descriptor, then a readable one in the table */
	ring_up(16, F_INDIRECT);
	fake_desc_write(&fr, TABLE0, 0, BUF0, 4, 0, 0);
	fake_vring_set_desc(&vr, 0, BUF0, 8, WRITE | NEXT, 1);
	fake_vring_set_desc(&vr, 1, TABLE0, 16, INDIRECT, 0);
	fake_vring_publish(&vr, 0);
	expect_pop_broken(-EINVAL,
			  "descriptor 1: indirect entry 0: device-readable buffer after");
	ring_down();

	/* inside one table */
	ring_up(16, F_INDIRECT);
	fake_desc_write(&fr, TABLE0, 0, BUF0, 4, WRITE | NEXT, 1);
	fake_desc_write(&fr, TABLE0, 1, BUF0, 4, 0, 0);
	fake_vring_set_desc(&vr, 0, TABLE0, 32, INDIRECT, 0);
	fake_vring_publish(&vr, 0);
	expect_pop_broken(-EINVAL, "indirect entry 1: device-readable");
	ring_down();
}
END_TEST

/* One descriptor [addr, addr+len) must be refused as not guest RAM. */
static void expect_buffer_refused(uint64_t addr, uint32_t len)
{
	char msg[96];

	ring_up(16, 0);
	fake_vring_set_desc(&vr, 0, BUF0, 8, NEXT, 3);
	fake_vring_set_desc(&vr, 3, addr, len, WRITE, 0);
	fake_vring_publish(&vr, 0);
	snprintf(msg, sizeof(msg),
		 "descriptor 3: buffer 0x%llx+0x%x is not guest RAM",
		 (unsigned long long)addr, len);
	expect_pop_broken(-EFAULT, msg);
	ring_down();
}

START_TEST(test_buffer_outside_ram)
{
	/* CVE-2024-3446 shape: a descriptor pointing at MMIO / not RAM */
	expect_buffer_refused(0xd0000000ull, 0x200);   /* virtio-mmio window */
	expect_buffer_refused(0xfee00000ull, 4);       /* LAPIC */
	expect_buffer_refused(FAKE_HOLE_GPA, 1);       /* the hole */
	expect_buffer_refused(FAKE_HOLE_GPA + 0x8000, 16);
	expect_buffer_refused(FAKE_RAM_END, 1);        /* just past RAM */
	expect_buffer_refused(1ull << 40, 4096);       /* far past RAM */
}
END_TEST

START_TEST(test_buffer_runs_out_of_ram)
{
	/* starts in RAM, runs into the hole / off the end / across the hole */
	expect_buffer_refused(FAKE_HOLE_GPA - 8, 16);
	expect_buffer_refused(FAKE_HOLE_GPA - 1, 2);
	expect_buffer_refused(FAKE_RAM_END - 8, 16);
	expect_buffer_refused(0, FAKE_RAM_END);
	expect_buffer_refused(FAKE_RAM0_GPA, FAKE_RAM0_SIZE + 1);
}
END_TEST

START_TEST(test_buffer_wraps)
{
	/* a buffer wrapping around 2^64 back into RAM at 0 */
	expect_buffer_refused(UINT64_MAX - 15, 32);
	expect_buffer_refused(UINT64_MAX, 2);
	expect_buffer_refused(UINT64_MAX, 0x1000);
	expect_buffer_refused(0 - (uint64_t)0x1000, 0x2000);
}
END_TEST

START_TEST(test_huge_lengths)
{
	/*
	 * CVE-2016-7422 shape: huge lengths.  A nearly 4 GiB buffer is refused
	 * as not RAM (never mapped or allocated for) ...
	 */
	expect_buffer_refused(0, 0xfffffff7u);
	expect_buffer_refused(BUF0, 0x80000000u);

	/* ... and 8 + 0xffffffff bytes overflow 32 bits before any lookup */
	ring_up(16, 0);
	fake_vring_set_desc(&vr, 0, BUF0, 8, NEXT, 1);
	fake_vring_set_desc(&vr, 1, 0, 0xffffffffu, WRITE, 0);
	fake_vring_publish(&vr, 0);
	expect_pop_broken(-EOVERFLOW,
			  "descriptor 1: chain length 4294967303 exceeds 2^32-1");
	ring_down();
}
END_TEST

START_TEST(test_length_sum_overflow)
{
	/*
	 * 4097 buffers of 1 MiB, each wholly in RAM (all the same memory):
	 * the 4096th brings the total to 2^32, which must not wrap to 0.
	 */
	struct smvmm_chain *c;

	ring_up(8192, F_INDIRECT);
	for (unsigned int i = 0; i < 4097; i++)
		fake_desc_write(&fr, TABLE0, i, FAKE_RAM0_GPA, FAKE_RAM0_SIZE,
				i < 4096 ? NEXT : 0, (uint16_t)(i + 1));
	fake_vring_set_desc(&vr, 0, TABLE0, 4097 * 16, INDIRECT, 0);
	fake_vring_publish(&vr, 0);
	expect_pop_broken(-EOVERFLOW,
			  "descriptor 0: indirect entry 4095: chain length 4294967296 exceeds 2^32-1");
	ring_down();

	/* the same through the descriptor table */
	ring_up(8192, 0);
	for (unsigned int i = 0; i < 8192; i++)
		fake_vring_set_desc(&vr, (uint16_t)i, FAKE_RAM0_GPA,
				    FAKE_RAM0_SIZE, i < 8191 ? NEXT : 0,
				    (uint16_t)(i + 1));
	fake_vring_publish(&vr, 0);
	expect_pop_broken(-EOVERFLOW,
			  "descriptor 4095: chain length 4294967296 exceeds 2^32-1");
	ring_down();

	/* exactly 4 GiB - 1: allowed */
	ring_up(8192, F_INDIRECT);
	for (unsigned int i = 0; i < 4096; i++)
		fake_desc_write(&fr, TABLE0, i, FAKE_RAM0_GPA,
				i < 4095 ? FAKE_RAM0_SIZE : FAKE_RAM0_SIZE - 1,
				i < 4095 ? NEXT : 0, (uint16_t)(i + 1));
	fake_vring_set_desc(&vr, 0, TABLE0, 4096 * 16, INDIRECT, 0);
	fake_vring_publish(&vr, 0);
	c = pop_ok();
	ck_assert_uint_eq(c->out_len, 0xffffffffu);
	ck_assert_uint_eq(c->n_out, 4096);
	free(c);
	ring_down();
}
END_TEST

START_TEST(test_same_head_twice)
{
	struct smvmm_chain *c;

	ring_up(16, 0);
	fake_vring_set_desc(&vr, 3, BUF0, 8, 0, 0);
	fake_vring_publish(&vr, 3);
	fake_vring_publish(&vr, 3);
	c = pop_ok();
	expect_pop_broken(-EINVAL, "avail ring[1]: head 3 is already in flight");
	/* completing after the break is refused: the device needs a reset */
	ck_assert_int_eq(virtq_push(&vq, c, 0), -EIO);
	ck_assert_uint_eq(fake_vring_used_idx(&vr), 0);
	ring_down();

	/* after it is pushed, the same head may be offered again */
	ring_up(16, 0);
	fake_vring_set_desc(&vr, 3, BUF0, 8, 0, 0);
	fake_vring_publish(&vr, 3);
	fake_vring_publish(&vr, 3);
	push_ok(pop_ok(), 0);
	c = pop_ok();
	ck_assert_uint_eq(c->head, 3);
	push_ok(c, 0);
	ck_assert_uint_eq(fake_vring_used_idx(&vr), 2);
	ring_down();
}
END_TEST

START_TEST(test_broken_is_sticky)
{
	char first[sizeof(vq.err)];

	ring_up(16, 0);
	fake_vring_publish(&vr, 99);
	expect_pop_broken(-EINVAL, "head 99");
	memcpy(first, vq.err, sizeof(first));
	ck_assert_int_eq(virtq_setup(&vq, 16, vr.desc, vr.avail, vr.used, 0),
			 -EIO);
	ck_assert_int_eq(virtq_set_indices(&vq, 0, 0), -EIO);
	ck_assert_str_eq(vq.err, first);
	/* reset and set up again: works */
	virtq_reset(&vq);
	fake_vring_layout(&vr, &fr, 16, FAKE_RAM1_GPA);
	ck_assert_int_eq(virtq_setup(&vq, 16, vr.desc, vr.avail, vr.used, 0),
			 0);
	fake_vring_set_desc(&vr, 0, BUF0, 8, 0, 0);
	fake_vring_publish(&vr, 0);
	push_ok(pop_ok(), 0);
	ring_down();
}
END_TEST

/*
 * Double fetch: another thread flips a descriptor's len between a valid 16
 * and a length that leaves RAM while we pop.  An implementation that reads
 * len twice (check, then use) can hand out an iovec running off RAM; ours
 * reads it once, so every chain we get has len 16, every refusal is EFAULT.
 */
struct flipper {
	uint32_t *len;
	int stop;
};

static void *flip_len(void *arg)
{
	struct flipper *f = arg;
	uint32_t v = 0;

	while (!__atomic_load_n(&f->stop, __ATOMIC_RELAXED)) {
		__atomic_store_n(f->len, htole32(v & 1 ? 0x7ffff000u : 16),
				 __ATOMIC_RELAXED);
		v++;
	}
	return NULL;
}

START_TEST(test_descriptor_read_once)
{
	struct flipper f = { 0 };
	pthread_t t;
	unsigned int ok = 0, refused = 0;

	ring_up(16, 0);
	fake_vring_set_desc(&vr, 0, BUF0, 16, 0, 0);
	f.len = (uint32_t *)ram(vr.desc + 8);
	ck_assert_int_eq(pthread_create(&t, NULL, flip_len, &f), 0);
	for (unsigned int i = 0; i < 20000; i++) {
		struct smvmm_chain *c = NULL;
		int ret;

		fake_vring_publish(&vr, 0);
		ret = virtq_pop(&vq, &c);
		if (ret == 1) {
			ck_assert_uint_eq(c->n_out, 1);
			ck_assert_uint_eq(c->iov[0].iov_len, 16);
			ck_assert_uint_eq(c->out_len, 16);
			push_ok(c, 0);
			ok++;
			continue;
		}
		ck_assert_int_eq(ret, -EFAULT);
		ck_assert(strstr(vq.err, "+0x7ffff000 is not guest RAM"));
		refused++;
		virtq_reset(&vq);
		ck_assert_int_eq(virtq_setup(&vq, 16, vr.desc, vr.avail,
					     vr.used, 0),
				 0);
		fake_vring_set_avail_idx(&vr, 0);
	}
	__atomic_store_n(&f.stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	ck_assert_uint_eq(ok + refused, 20000);
	ring_down();
}
END_TEST

/* ---- virtq_push ---------------------------------------------------------- */

START_TEST(test_push_used_ring)
{
	struct smvmm_chain *a, *b;
	uint32_t id, len;

	ring_up(16, 0);
	fake_vring_set_desc(&vr, 4, BUF0, 8, NEXT, 5);
	fake_vring_set_desc(&vr, 5, BUF0 + 8, 100, WRITE, 0);
	fake_vring_set_desc(&vr, 9, BUF0 + 0x100, 16, WRITE, 0);
	fake_vring_publish(&vr, 4);
	fake_vring_publish(&vr, 9);
	a = pop_ok();
	b = pop_ok();
	ck_assert_uint_eq(vq.inflight_count, 2);
	/* completion out of order: b first, written clamped to in_len */
	push_ok(b, 1000);
	ck_assert_uint_eq(fake_vring_used_idx(&vr), 1);
	fake_vring_used_elem(&vr, 0, &id, &len);
	ck_assert_uint_eq(id, 9);
	ck_assert_uint_eq(len, 16);
	push_ok(a, 42);
	ck_assert_uint_eq(fake_vring_used_idx(&vr), 2);
	fake_vring_used_elem(&vr, 1, &id, &len);
	ck_assert_uint_eq(id, 4);
	ck_assert_uint_eq(len, 42);
	ck_assert_uint_eq(vq.used_idx, 2);
	ck_assert_uint_eq(vq.inflight_count, 0);
	/* the device never sets used->flags here */
	ck_assert_uint_eq(fake_vring_used_flags(&vr), 0);
	ring_down();
}
END_TEST

START_TEST(test_push_foreign_chain)
{
	struct fake_vring vr2;
	struct virtq vq2;
	struct smvmm_chain *c, *other;

	ring_up(16, 0);
	/* a second queue (index 1) on a ring in region 0 */
	fake_vring_layout(&vr2, &fr, 16, 0x80000);
	virtq_init(&vq2, &fr.mem, 1, 16);
	ck_assert_int_eq(virtq_setup(&vq2, 16, vr2.desc, vr2.avail, vr2.used,
				     0),
			 0);
	fake_desc_write(&fr, vr2.desc, 0, BUF0, 8, 0, 0);
	fake_vring_publish(&vr2, 0);
	ck_assert_int_eq(virtq_pop(&vq2, &other), 1);
	ck_assert_uint_eq(other->queue, 1);

	fake_vring_set_desc(&vr, 0, BUF0, 8, 0, 0);
	fake_vring_publish(&vr, 0);
	c = pop_ok();
	/* same head 0 is in flight on our queue, but this chain is not ours */
	ck_assert_int_eq(virtq_push(&vq, other, 0), -EINVAL);
	ck_assert_uint_eq(fake_vring_used_idx(&vr), 0);
	ck_assert_uint_eq(vq.inflight_count, 1);
	ck_assert(!vq.broken); /* a device bug, not the driver's */
	push_ok(c, 0);
	ck_assert_int_eq(virtq_push(&vq, NULL, 0), -EINVAL);
	virtq_reset(&vq2);
	ring_down();
}
END_TEST

START_TEST(test_used_idx_wrap)
{
	struct smvmm_chain *c;
	uint32_t id, len;

	ring_up(16, 0);
	fake_vring_set_avail_idx(&vr, 65534);
	ck_assert_int_eq(virtq_set_indices(&vq, 65534, 65534), 0);
	for (uint16_t i = 0; i < 3; i++) {
		fake_vring_set_desc(&vr, i, BUF0, 8, WRITE, 0);
		fake_vring_publish(&vr, i);
	}
	ck_assert_uint_eq(vr.avail_idx, 1);
	for (uint16_t i = 0; i < 3; i++) {
		c = pop_ok();
		ck_assert_uint_eq(c->head, i);
		push_ok(c, i);
	}
	ck_assert_uint_eq(vq.last_avail_idx, 1);
	ck_assert_uint_eq(vq.used_idx, 1);
	ck_assert_uint_eq(fake_vring_used_idx(&vr), 1);
	/* slots 65534 % 16 = 14, 15, then 0 */
	fake_vring_used_elem(&vr, 14, &id, &len);
	ck_assert_uint_eq(id, 0);
	fake_vring_used_elem(&vr, 15, &id, &len);
	ck_assert_uint_eq(id, 1);
	ck_assert_uint_eq(len, 1);
	fake_vring_used_elem(&vr, 0, &id, &len);
	ck_assert_uint_eq(id, 2);
	ck_assert_uint_eq(len, 2);
	ring_down();
}
END_TEST

START_TEST(test_set_indices_validation)
{
	struct smvmm_chain *c;

	ring_up(16, F_EVENT);
	/* more in flight than the ring holds */
	ck_assert_int_eq(virtq_set_indices(&vq, 17, 0), -EINVAL);
	ck_assert(strstr(vq.err, "restored last_avail_idx 17 - used_idx 0"));
	ring_down();

	ring_up(16, 0);
	/* used ahead of avail == a huge in-flight count */
	ck_assert_int_eq(virtq_set_indices(&vq, 0, 1), -EINVAL);
	ring_down();

	ring_up(16, 0);
	/* the guest's avail idx is too far ahead of the restored index */
	fake_vring_set_avail_idx(&vr, 1000);
	ck_assert_int_eq(virtq_set_indices(&vq, 983, 983), -EINVAL);
	ck_assert(strstr(vq.err, "avail idx 1000 - restored last_avail_idx 983"));
	ring_down();

	ring_up(16, F_EVENT);
	fake_vring_set_desc(&vr, 0, BUF0, 8, 0, 0);
	fake_vring_set_desc(&vr, 1, BUF0, 8, 0, 0);
	fake_vring_publish(&vr, 0);
	c = pop_ok();
	/* restore: 984 consumed, 980 used (4 lost in flight), 1 pending */
	fake_vring_set_avail_idx(&vr, 984);
	fake_vring_publish(&vr, 1);
	ck_assert_int_eq(virtq_set_indices(&vq, 984, 980), 0);
	ck_assert_uint_eq(fake_vring_avail_event(&vr), 984);
	ck_assert_uint_eq(vq.inflight_count, 0);
	/* the chain popped before the restore is stale */
	ck_assert_int_eq(virtq_push(&vq, c, 0), -EINVAL);
	c = pop_ok();
	ck_assert_uint_eq(c->head, 1);
	push_ok(c, 0);
	ck_assert_uint_eq(fake_vring_used_idx(&vr), 981);
	ring_down();
}
END_TEST

/* ---- notifications ------------------------------------------------------- */

/* Publish and pop `n` one-buffer chains (heads first..first+n-1). */
static void pop_n(struct smvmm_chain **out, uint16_t first, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		uint16_t h = (uint16_t)((first + i) % vr.size);

		fake_vring_set_desc(&vr, h, BUF0 + 16 * h, 16, WRITE, 0);
		fake_vring_publish(&vr, h);
		out[i] = pop_ok();
	}
}

START_TEST(test_avail_event_published)
{
	struct smvmm_chain *c[4];

	ring_up(16, F_EVENT);
	/* an empty pop publishes where we are (0) */
	fake_ram_w16(&fr, vr.used + 4 + 8 * 16, 0x5555);
	ck_assert_int_eq(virtq_pop(&vq, &c[0]), 0);
	ck_assert_uint_eq(fake_vring_avail_event(&vr), 0);
	pop_n(c, 0, 3);
	ck_assert_uint_eq(fake_vring_avail_event(&vr), 3);
	for (unsigned int i = 0; i < 3; i++)
		push_ok(c[i], 0);
	ck_assert_int_eq(virtq_pop(&vq, &c[0]), 0);
	ck_assert_uint_eq(fake_vring_avail_event(&vr), 3);
	ring_down();

	/* without EVENT_IDX the field (which may not exist) is left alone */
	ring_up(16, 0);
	fake_ram_w16(&fr, vr.used + 4 + 8 * 16, 0x5555);
	pop_n(c, 0, 2);
	ck_assert_uint_eq(fake_vring_avail_event(&vr), 0x5555);
	free(c[0]);
	free(c[1]);
	ring_down();
}
END_TEST

START_TEST(test_avail_event_after_restore)
{
	struct smvmm_chain *c = NULL;

	ring_up(16, F_EVENT);
	fake_vring_set_avail_idx(&vr, 100);
	ck_assert_int_eq(virtq_set_indices(&vq, 100, 100), 0);
	fake_ram_w16(&fr, vr.used + 4 + 8 * 16, 0);
	ck_assert_int_eq(virtq_pop(&vq, &c), 0);
	ck_assert_uint_eq(fake_vring_avail_event(&vr), 100);
	ring_down();
}
END_TEST

START_TEST(test_should_notify_used_event)
{
	struct smvmm_chain *c[8];

	ring_up(16, F_EVENT);
	pop_n(c, 0, 4);
	fake_vring_set_used_event(&vr, 0);
	push_ok(c[0], 0); /* used idx 1 */
	/* first decision: no signalled state yet, notify */
	ck_assert(virtq_should_notify(&vq));
	/* asking again with nothing new: no */
	ck_assert(!virtq_should_notify(&vq));

	/* driver: "notify me when used idx passes 2" (reaches 3) */
	fake_vring_set_used_event(&vr, 2);
	push_ok(c[1], 0); /* 2 */
	ck_assert(!virtq_should_notify(&vq));
	push_ok(c[2], 0); /* 3 */
	ck_assert(virtq_should_notify(&vq));
	push_ok(c[3], 0); /* 4: event 2 already passed */
	ck_assert(!virtq_should_notify(&vq));

	/* a batch that crosses the event: one decision, notify */
	fake_vring_set_used_event(&vr, 5);
	pop_n(c, 4, 3);
	for (unsigned int i = 0; i < 3; i++)
		push_ok(c[i], 0); /* 5, 6, 7 */
	ck_assert(virtq_should_notify(&vq));
	/* a batch that stops short of the event: no */
	fake_vring_set_used_event(&vr, 10);
	pop_n(c, 7, 2);
	push_ok(c[0], 0);
	push_ok(c[1], 0); /* 8, 9 */
	ck_assert(!virtq_should_notify(&vq));
	/* EVENT_IDX: the NO_INTERRUPT flag is ignored (§2.7.7.2) */
	fake_vring_set_avail_flags(&vr, VIRTQ_AVAIL_F_NO_INTERRUPT);
	pop_n(c, 9, 1);
	push_ok(c[0], 0); /* 10 */
	ck_assert(!virtq_should_notify(&vq));
	fake_vring_set_used_event(&vr, 10);
	pop_n(c, 10, 1);
	push_ok(c[0], 0); /* 11: passes 10 */
	ck_assert(virtq_should_notify(&vq));
	ring_down();
}
END_TEST

START_TEST(test_should_notify_wrap)
{
	struct smvmm_chain *c[8];

	ring_up(16, F_EVENT);
	fake_vring_set_avail_idx(&vr, 65530);
	ck_assert_int_eq(virtq_set_indices(&vq, 65530, 65530), 0);
	pop_n(c, 0, 8);
	ck_assert_uint_eq(vq.last_avail_idx, 2);
	ck_assert(virtq_should_notify(&vq)); /* after restore: notify once */
	fake_vring_set_used_event(&vr, 65535);
	for (unsigned int i = 0; i < 5; i++)
		push_ok(c[i], 0); /* ... 65535 */
	ck_assert_uint_eq(fake_vring_used_idx(&vr), 65535);
	ck_assert(!virtq_should_notify(&vq));
	push_ok(c[5], 0); /* 0: passed 65535 */
	ck_assert_uint_eq(fake_vring_used_idx(&vr), 0);
	ck_assert(virtq_should_notify(&vq));
	fake_vring_set_used_event(&vr, 0);
	push_ok(c[6], 0); /* 1: passes 0 */
	ck_assert(virtq_should_notify(&vq));
	fake_vring_set_used_event(&vr, 65534); /* long ago */
	push_ok(c[7], 0); /* 2 */
	ck_assert(!virtq_should_notify(&vq));
	ring_down();
}
END_TEST

START_TEST(test_should_notify_after_full_wrap)
{
	/*
	 * 65536 completions without a notification decision: signalled_used
	 * equals used_idx again and vring_need_event alone would say "no"
	 * although used_event was passed.  The stale state must be dropped.
	 */
	struct smvmm_chain *c;

	ring_up(1, F_EVENT);
	fake_vring_set_desc(&vr, 0, BUF0, 16, WRITE, 0);
	ck_assert(virtq_should_notify(&vq)); /* signalled_used = 0, valid */
	fake_vring_set_used_event(&vr, 0);
	for (unsigned int i = 0; i < 65536; i++) {
		fake_vring_publish(&vr, 0);
		c = pop_ok();
		push_ok(c, 0);
	}
	ck_assert_uint_eq(vq.used_idx, 0);
	ck_assert(virtq_should_notify(&vq));
	ring_down();
}
END_TEST

START_TEST(test_no_interrupt_flag)
{
	struct smvmm_chain *c[2];

	/* without EVENT_IDX: flags decide, used_event is ignored */
	ring_up(16, 0);
	pop_n(c, 0, 2);
	fake_vring_set_used_event(&vr, 0x1234);
	push_ok(c[0], 0);
	fake_vring_set_avail_flags(&vr, VIRTQ_AVAIL_F_NO_INTERRUPT);
	ck_assert(!virtq_should_notify(&vq));
	fake_vring_set_avail_flags(&vr, 0);
	ck_assert(virtq_should_notify(&vq));
	push_ok(c[1], 0);
	ck_assert(virtq_should_notify(&vq));
	/* other (invalid) bits do not suppress */
	fake_vring_set_avail_flags(&vr, 0xfffe);
	ck_assert(virtq_should_notify(&vq));
	ring_down();
}
END_TEST

START_TEST(test_has_avail)
{
	struct smvmm_chain *c;

	ring_up(16, 0);
	ck_assert(!virtq_has_avail(&vq));
	fake_vring_set_desc(&vr, 0, BUF0, 8, 0, 0);
	fake_vring_publish(&vr, 0);
	ck_assert(virtq_has_avail(&vq));
	c = pop_ok();
	ck_assert(!virtq_has_avail(&vq));
	push_ok(c, 0);
	ck_assert(!virtq_has_avail(&vq));
	ring_down();
}
END_TEST

static Suite *virtq_suite(void)
{
	Suite *s = suite_create("virtq");
	TCase *setup = tcase_create("setup");
	TCase *pop = tcase_create("pop");
	TCase *hostile = tcase_create("hostile");
	TCase *push = tcase_create("push");
	TCase *notify = tcase_create("notify");

	tcase_add_test(setup, test_setup_ok);
	tcase_add_test(setup, test_setup_not_ready_pops_nothing);
	tcase_add_test(setup, test_setup_size_not_power_of_two);
	tcase_add_test(setup, test_setup_size_above_max);
	tcase_add_test(setup, test_setup_misaligned);
	tcase_add_test(setup, test_setup_rings_outside_ram);
	tcase_add_test(setup, test_setup_ring_edges);
	tcase_add_test(setup, test_setup_packed_refused);
	tcase_add_test(setup, test_setup_busy_and_broken);
	tcase_add_test(setup, test_reset_clears_state);
	tcase_add_test(setup, test_stale_chain_after_reinit);
	suite_add_tcase(s, setup);

	tcase_add_test(pop, test_pop_simple_chain);
	tcase_add_test(pop, test_pop_free_releases_everything);
	tcase_add_test(pop, test_pop_mixed_out_in);
	tcase_add_test(pop, test_pop_longest_direct_chain);
	tcase_add_test(pop, test_pop_indirect_chain);
	tcase_add_test(pop, test_pop_indirect_unaligned_and_full);
	tcase_add_test(pop, test_pop_zero_length_descriptors);
	tcase_add_test(pop, test_pop_zero_length_still_ordered);
	tcase_add_test(pop, test_pop_buffer_edges_ok);
	tcase_add_test(pop, test_has_avail);
	suite_add_tcase(s, pop);

	tcase_add_test(hostile, test_avail_idx_jump);
	tcase_add_test(hostile, test_avail_idx_exactly_full);
	tcase_add_test(hostile, test_head_out_of_range);
	tcase_add_test(hostile, test_next_out_of_range);
	tcase_add_test(hostile, test_chain_loop);
	tcase_add_test(hostile, test_buffer_count_bound);
	tcase_add_test(hostile, test_indirect_without_feature);
	tcase_add_test(hostile, test_indirect_with_next);
	tcase_add_test(hostile, test_indirect_bad_length);
	tcase_add_test(hostile, test_indirect_table_outside_ram);
	tcase_add_test(hostile, test_indirect_nested);
	tcase_add_test(hostile, test_indirect_next_out_of_range);
	tcase_add_test(hostile, test_indirect_loop);
	tcase_add_test(hostile, test_read_after_write);
	tcase_add_test(hostile, test_buffer_outside_ram);
	tcase_add_test(hostile, test_buffer_runs_out_of_ram);
	tcase_add_test(hostile, test_buffer_wraps);
	tcase_add_test(hostile, test_huge_lengths);
	tcase_add_test(hostile, test_length_sum_overflow);
	tcase_add_test(hostile, test_same_head_twice);
	tcase_add_test(hostile, test_broken_is_sticky);
	tcase_add_test(hostile, test_descriptor_read_once);
	suite_add_tcase(s, hostile);

	tcase_add_test(push, test_push_used_ring);
	tcase_add_test(push, test_push_foreign_chain);
	tcase_add_test(push, test_used_idx_wrap);
	tcase_add_test(push, test_set_indices_validation);
	suite_add_tcase(s, push);

	tcase_add_test(notify, test_avail_event_published);
	tcase_add_test(notify, test_avail_event_after_restore);
	tcase_add_test(notify, test_should_notify_used_event);
	tcase_add_test(notify, test_should_notify_wrap);
	tcase_add_test(notify, test_should_notify_after_full_wrap);
	tcase_add_test(notify, test_no_interrupt_flag);
	suite_add_tcase(s, notify);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(virtq_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
