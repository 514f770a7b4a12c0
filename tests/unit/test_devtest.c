// SPDX-License-Identifier: MIT
/*
 * The driver model itself (tests/driver/devtest.c): its allocator, chain
 * builder, error reporting and device checks, driven against the real
 * virtio-rng plugin (the simplest device) and, where a device must misbehave,
 * against used-ring entries written by the test.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devtest.h"

#define F_EVENT_IDX (1ULL << VIRTIO_F_EVENT_IDX)
#define F_VERSION_1 (1ULL << VIRTIO_F_VERSION_1)

static struct devtest *dt_new(const struct devtest_opts *opts)
{
	struct devtest_opts o = { 0 };
	char err[1024];
	struct devtest *t;

	if (opts)
		o = *opts;
	o.plugin_dir = SMVMM_BUILD_DIR;
	t = devtest_new("virtio-rng", NULL, &o, err, sizeof(err));
	ck_assert_msg(t, "devtest_new: %s", err);
	return t;
}

/* Write a used element as a (buggy) device would. */
static void fake_used(struct devtest *t, uint32_t id, uint32_t len)
{
	struct virtq *vq = &devtest_host(t)->q[0].vq;
	uint16_t size = devtest_queue_size(t, 0), idx;
	uint8_t *used = devtest_gpa(t, vq->used_gpa, 4 + 8ULL * size);

	ck_assert_ptr_nonnull(used);
	memcpy(&idx, used + 2, 2);
	memcpy(used + 4 + 8 * (idx % size), &id, 4);
	memcpy(used + 8 + 8 * (idx % size), &len, 4);
	idx++;
	memcpy(used + 2, &idx, 2);
}

START_TEST(test_new_errors)
{
	struct devtest_opts o = { .plugin_dir = SMVMM_BUILD_DIR };
	const char *bad_kv[] = { "novalue", NULL };
	const char *empty_key[] = { "=5", NULL };
	const char *dup[] = { "rate_limit=1", "rate_limit=2", NULL };
	char err[1024];

	ck_assert_ptr_null(devtest_new("no-such-device", NULL, &o, err,
				       sizeof(err)));
	ck_assert_msg(strstr(err, "smvmm-no-such-device.so"), "%s", err);

	ck_assert_ptr_null(devtest_new("virtio-rng", bad_kv, &o, err,
				       sizeof(err)));
	ck_assert_msg(strstr(err, "expected key=value"), "%s", err);
	ck_assert_ptr_null(devtest_new("virtio-rng", empty_key, &o, err,
				       sizeof(err)));
	ck_assert_msg(strstr(err, "expected key=value"), "%s", err);
	ck_assert_ptr_null(devtest_new("virtio-rng", dup, &o, err,
				       sizeof(err)));
	ck_assert_msg(strstr(err, "rate_limit: duplicate key"), "%s", err);

	ck_assert_ptr_null(devtest_new(NULL, NULL, &o, err, sizeof(err)));
	devtest_free(NULL);
}
END_TEST

START_TEST(test_memory_layout)
{
	struct devtest_opts o = { .ram_size = 1 << 20, .hole_size = 64 << 10 };
	struct devtest *t = dt_new(&o);
	uint64_t g0, s0, g1, s1, a, b;
	struct devtest_mark m;

	ck_assert_int_eq(devtest_region(t, 0, &g0, &s0), 0);
	ck_assert_int_eq(devtest_region(t, 1, &g1, &s1), 0);
	ck_assert_int_eq(devtest_region(t, 2, NULL, NULL), -EINVAL);
	ck_assert_uint_eq(g0, 0);
	ck_assert_uint_eq(s0, 512 << 10);
	ck_assert_uint_eq(g1, (512 << 10) + (64 << 10));
	ck_assert_uint_eq(s1, 512 << 10);
	ck_assert_uint_eq(devtest_hole_gpa(t), 512 << 10);
	ck_assert_uint_eq(devtest_ram_end(t), g1 + s1);

	ck_assert_ptr_nonnull(devtest_gpa(t, g0, s0));
	ck_assert_ptr_null(devtest_gpa(t, devtest_hole_gpa(t), 1));
	ck_assert_ptr_null(devtest_gpa(t, g0 + s0 - 1, 2));
	ck_assert_ptr_null(devtest_gpa(t, devtest_ram_end(t), 1));

	a = devtest_alloc(t, 3, 1);
	ck_assert_uint_ge(a, 4096); /* gpa 0 page never handed out */
	b = devtest_alloc(t, 100, 256);
	ck_assert_uint_eq(b % 256, 0);
	ck_assert_uint_ge(b, a + 3);
	ck_assert_uint_eq(devtest_alloc(t, 8, 3), 0); /* bad alignment */
	ck_assert_uint_eq(devtest_alloc(t, 0, 8), 0);
	ck_assert_uint_eq(devtest_alloc_in(t, 2, 8, 8), 0);
	a = devtest_alloc_in(t, 1, 10, 8);
	ck_assert_uint_ge(a, g1);
	ck_assert_uint_lt(a, g1 + s1);

	/* Allocations are zeroed and reusable after a release. */
	m = devtest_alloc_mark(t);
	a = devtest_alloc_in(t, 1, 4096, 4096);
	memset(devtest_gpa(t, a, 4096), 0xff, 4096);
	devtest_alloc_release(t, m);
	b = devtest_alloc_in(t, 1, 4096, 4096);
	ck_assert_uint_eq(a, b);
	ck_assert_uint_eq(*(uint8_t *)devtest_gpa(t, b, 1), 0);

	/* Exhaustion: region 1 runs out, then devtest_alloc falls back to
	 * region 0 until that is gone too. */
	ck_assert_uint_eq(devtest_alloc_in(t, 1, s1, 8), 0);
	while (devtest_alloc(t, 16 << 10, 8))
		;
	ck_assert_uint_eq(devtest_alloc(t, 16 << 10, 8), 0);
	devtest_free(t);
}
END_TEST

START_TEST(test_chain_api_errors)
{
	struct devtest_opts o = { .queue_size = 4 };
	struct devtest *t = dt_new(&o);
	uint64_t buf = devtest_alloc(t, 64, 8);
	int heads[4];
	uint16_t id;

	/* Before the queue exists. */
	ck_assert_int_eq(devtest_chain_begin(t, 0, 0), -EINVAL);
	ck_assert_int_eq(devtest_submit_buf(t, 0, buf, 64, true), -EINVAL);
	ck_assert_msg(strstr(devtest_error(t), "not set up"), "%s",
		      devtest_error(t));
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_uint_eq(devtest_queue_size(t, 0), 4);
	ck_assert_int_eq(devtest_chain_begin(t, 1, 0), -EINVAL);

	ck_assert_int_eq(devtest_chain_add(t, buf, 8, true), -EINVAL);
	ck_assert_int_eq(devtest_chain_submit(t), -EINVAL);
	ck_assert_int_eq(devtest_chain_begin(t, 0, 0), 0);
	ck_assert_int_eq(devtest_chain_begin(t, 0, 0), -EBUSY);
	ck_assert_int_eq(devtest_chain_submit(t), -EINVAL); /* empty */
	devtest_chain_abort(t);

	/* Four descriptors: the fifth does not fit until one completes. */
	for (int i = 0; i < 4; i++) {
		heads[i] = devtest_submit_buf(t, 0, buf, 8, true);
		ck_assert_int_ge(heads[i], 0);
	}
	ck_assert_int_eq(devtest_submit_buf(t, 0, buf, 8, true), -ENOSPC);
	ck_assert_uint_eq(devtest_inflight(t, 0), 4);
	devtest_kick(t, 0);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(devtest_wait_used(t, 0, 1000, &id, NULL), 0);
		ck_assert_int_eq(id, heads[i]);
	}
	ck_assert_int_eq(devtest_wait_used(t, 0, 20, &id, NULL), -ETIMEDOUT);
	ck_assert_msg(strstr(devtest_error(t), "no used buffer"), "%s",
		      devtest_error(t));
	ck_assert_uint_eq(devtest_inflight(t, 0), 0);
	ck_assert_int_ge(devtest_submit_buf(t, 0, buf, 8, true), 0);

	/* Indirect tables are bounded. */
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_wait_used(t, 0, 1000, NULL, NULL), 0);
	ck_assert_int_eq(devtest_chain_begin(t, 0, DEVTEST_CHAIN_INDIRECT), 0);
	for (int i = 0; i < DEVTEST_MAX_INDIRECT; i++)
		ck_assert_int_eq(devtest_chain_add(t, buf, 1, true), i);
	ck_assert_int_eq(devtest_chain_add(t, buf, 1, true), -ENOSPC);
	devtest_chain_abort(t);
	ck_assert_uint_eq(devtest_inflight(t, 0), 0);
	devtest_free(t);
}
END_TEST

START_TEST(test_detects_bad_device)
{
	struct devtest *t = dt_new(NULL);
	uint64_t buf = devtest_alloc(t, 64, 8);
	int head;

	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	/* An id that was never made available. */
	fake_used(t, 7, 0);
	ck_assert_int_eq(devtest_poll_used(t, 0, NULL, NULL), -EPROTO);
	ck_assert_msg(strstr(devtest_error(t), "not a head in flight"), "%s",
		      devtest_error(t));
	/* More bytes than the chain could take. */
	head = devtest_submit_buf(t, 0, buf, 16, true);
	fake_used(t, (uint32_t)head, 100);
	ck_assert_int_eq(devtest_poll_used(t, 0, NULL, NULL), -EPROTO);
	ck_assert_msg(strstr(devtest_error(t), "16 writable"), "%s",
		      devtest_error(t));
	/* An id completed twice. */
	head = devtest_submit_buf(t, 0, buf, 16, true);
	fake_used(t, (uint32_t)head, 16);
	fake_used(t, (uint32_t)head, 16);
	ck_assert_int_eq(devtest_poll_used(t, 0, NULL, NULL), 1);
	ck_assert_int_eq(devtest_poll_used(t, 0, NULL, NULL), -EPROTO);
	devtest_free(t);
}
END_TEST

START_TEST(test_interrupt_suppression)
{
	struct devtest *t = dt_new(NULL);
	uint64_t buf = devtest_alloc(t, 64, 8);
	uint64_t n;

	/* Without EVENT_IDX: VIRTQ_AVAIL_F_NO_INTERRUPT (§2.7.7). */
	ck_assert_int_eq(devtest_init_device(t, F_VERSION_1), 0);
	ck_assert_int_eq(devtest_set_no_interrupt(t, 0, true), 0);
	n = devtest_irq_count(t);
	devtest_submit_buf(t, 0, buf, 8, true);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_wait_used(t, 0, 1000, NULL, NULL), 0);
	ck_assert_uint_eq(devtest_irq_count(t), n);
	ck_assert_int_eq(devtest_set_no_interrupt(t, 0, false), 0);
	devtest_submit_buf(t, 0, buf, 8, true);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_wait_used(t, 0, 1000, NULL, NULL), 0);
	ck_assert_uint_eq(devtest_irq_count(t), n + 1);
	ck_assert_uint_eq(devtest_ack_irq(t), VIRTIO_MMIO_INT_VRING);
	ck_assert_uint_eq(devtest_ack_irq(t), 0);

	/* With EVENT_IDX: interrupt only when used->idx passes used_event. */
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert(devtest_features(t) & F_EVENT_IDX);
	ck_assert_int_eq(devtest_set_used_event(t, 0, 2), 0);
	for (int i = 0; i < 4; i++) {
		n = devtest_irq_count(t);
		devtest_submit_buf(t, 0, buf, 8, true);
		ck_assert(devtest_kick_if_needed(t, 0));
		ck_assert_int_eq(devtest_wait_used(t, 0, 1000, NULL, NULL), 0);
		/* used->idx goes 1, 2, 3, 4: the step to 3 crosses
		 * used_event; 2 and 4 do not.  (The first may notify: the
		 * device has no previous notification to compare with.) */
		if (i > 0)
			ck_assert_uint_eq(devtest_irq_count(t) - n, i == 2);
	}
	ck_assert_uint_eq(devtest_used_idx(t, 0), 4);
	devtest_free(t);
}
END_TEST

START_TEST(test_hostile_queue_setup)
{
	struct devtest *t = dt_new(NULL);
	uint64_t hole = devtest_hole_gpa(t);
	uint64_t ok = devtest_alloc(t, 8192, 4096);
	uint32_t st;

	ck_assert_int_eq(devtest_reset(t), 0);
	ck_assert_int_eq(devtest_negotiate(t, DEVTEST_FEATURES_ALL, NULL), 0);
	/* Descriptor table in the hole: the queue must not become usable. */
	if (devtest_setup_queue_raw(t, 0, 256, hole, ok, ok + 4096) == 1) {
		/* A transport may accept the write and fail at DRIVER_OK. */
		devtest_write32(t, VIRTIO_MMIO_STATUS,
				devtest_status(t) | VIRTIO_STATUS_DRIVER_OK);
	}
	st = devtest_status(t);
	ck_assert_msg(devtest_read32(t, VIRTIO_MMIO_QUEUE_READY) == 0 ||
			      (st & VIRTIO_STATUS_NEEDS_RESET) ||
			      !(st & VIRTIO_STATUS_DRIVER_OK),
		      "Status %#x", st);
	/* Size not a power of two. */
	ck_assert_int_eq(devtest_reset(t), 0);
	ck_assert_int_eq(devtest_negotiate(t, DEVTEST_FEATURES_ALL, NULL), 0);
	ck_assert_int_eq(devtest_setup_queue(t, 0, 3), -EINVAL);
	ck_assert_int_eq(devtest_setup_queue(t, 0, 512), -EINVAL);
	ck_assert_int_eq(devtest_setup_queue_raw(t, 0, 3, ok, ok + 2048,
						 ok + 4096) &&
				 !(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET),
			 0);
	/* And it all recovers. */
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_int_ge(devtest_submit_buf(t, 0, ok, 64, true), 0);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_wait_used(t, 0, 1000, NULL, NULL), 0);
	devtest_free(t);
}
END_TEST

START_TEST(test_threaded_kicks_use_ioeventfd)
{
	struct devtest_opts o = { .threaded = true };
	struct devtest *t = dt_new(&o);
	uint64_t buf = devtest_alloc(t, 64, 8);

	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	/* The transport assigned an ioeventfd for the ready queue. */
	ck_assert_uint_eq(devtest_transport(t)->ioevent_mask & 1, 1);
	for (int i = 0; i < 500; i++) {
		devtest_submit_buf(t, 0, buf, 64, true);
		devtest_kick(t, 0);
		ck_assert_int_eq(devtest_wait_used(t, 0, 5000, NULL, NULL), 0);
	}
	/* Reset de-assigns; re-init assigns again and kicks still work. */
	ck_assert_int_eq(devtest_reset(t), 0);
	ck_assert_uint_eq(devtest_transport(t)->ioevent_mask & 1, 0);
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	devtest_submit_buf(t, 0, buf, 64, true);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_wait_used(t, 0, 5000, NULL, NULL), 0);
	devtest_free(t);
}
END_TEST

static Suite *devtest_suite(void)
{
	Suite *s = suite_create("devtest");
	TCase *tc = tcase_create("driver-model");

	tcase_add_test(tc, test_new_errors);
	tcase_add_test(tc, test_memory_layout);
	tcase_add_test(tc, test_chain_api_errors);
	tcase_add_test(tc, test_detects_bad_device);
	tcase_add_test(tc, test_interrupt_suppression);
	tcase_add_test(tc, test_hostile_queue_setup);
	tcase_add_test(tc, test_threaded_kicks_use_ioeventfd);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(devtest_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
