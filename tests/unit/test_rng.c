// SPDX-License-Identifier: MIT
/*
 * virtio-rng (plugins/rng/rng.c) through the driver model: the real
 * smvmm-virtio-rng.so, the real loader, device host and virtio-mmio
 * transport, fake guest RAM with a hole.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devtest.h"

#define RNG_ID 4
#define F_INDIRECT (1ULL << VIRTIO_F_INDIRECT_DESC)
#define F_EVENT_IDX (1ULL << VIRTIO_F_EVENT_IDX)
#define F_VERSION_1 (1ULL << VIRTIO_F_VERSION_1)

static struct devtest *rng_new_opts(const char *const *kv,
				    const struct devtest_opts *opts)
{
	struct devtest_opts o = { 0 };
	char err[1024];
	struct devtest *t;

	if (opts)
		o = *opts;
	o.plugin_dir = SMVMM_BUILD_DIR;
	t = devtest_new("virtio-rng", kv, &o, err, sizeof(err));
	ck_assert_msg(t, "devtest_new: %s", err);
	return t;
}

static struct devtest *rng_up(const char *const *kv)
{
	struct devtest *t = rng_new_opts(kv, NULL);
	int rc = devtest_init_device(t, DEVTEST_FEATURES_ALL);

	ck_assert_msg(rc == 0, "init: %d %s", rc, devtest_error(t));
	return t;
}

/* devtest_new that must fail; returns its message. */
static const char *rng_new_fails(const char *const *kv)
{
	static char err[1024];
	struct devtest_opts o = { .plugin_dir = SMVMM_BUILD_DIR };
	struct devtest *t;

	err[0] = '\0';
	t = devtest_new("virtio-rng", kv, &o, err, sizeof(err));
	ck_assert_msg(!t, "devtest_new accepted the configuration");
	ck_assert(err[0]);
	return err;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* One writable buffer of len bytes: returns the written length. */
static uint32_t read_random(struct devtest *t, uint64_t gpa, uint32_t len)
{
	uint16_t id;
	uint32_t got;
	int head, rc;

	head = devtest_submit_buf(t, 0, gpa, len, true);
	ck_assert_msg(head >= 0, "submit: %s", devtest_error(t));
	devtest_kick(t, 0);
	rc = devtest_wait_used(t, 0, 5000, &id, &got);
	ck_assert_msg(rc == 0, "wait_used: %d %s", rc, devtest_error(t));
	ck_assert_int_eq(id, head);
	return got;
}

/* ------------------------------------------------------------------------ */

START_TEST(test_identity_and_features)
{
	struct devtest *t = rng_new_opts(NULL, NULL);
	uint32_t lo, hi;

	ck_assert_uint_eq(devtest_read32(t, VIRTIO_MMIO_MAGIC_VALUE),
			  VIRTIO_MMIO_MAGIC);
	ck_assert_uint_eq(devtest_read32(t, VIRTIO_MMIO_VERSION), 2);
	ck_assert_uint_eq(devtest_read32(t, VIRTIO_MMIO_DEVICE_ID), RNG_ID);

	devtest_write32(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	lo = devtest_read32(t, VIRTIO_MMIO_DEVICE_FEATURES);
	devtest_write32(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	hi = devtest_read32(t, VIRTIO_MMIO_DEVICE_FEATURES);
	/* §5.4.3: no device feature bits; the core handles these three. */
	ck_assert_uint_eq(((uint64_t)hi << 32) | lo,
			  F_VERSION_1 | F_EVENT_IDX | F_INDIRECT);

	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_uint_eq(devtest_features(t),
			  F_VERSION_1 | F_EVENT_IDX | F_INDIRECT);
	/* §5.4.2: exactly one queue, requestq. */
	ck_assert_uint_eq(devtest_num_queues(t), 1);
	devtest_write32(t, VIRTIO_MMIO_QUEUE_SEL, 0);
	ck_assert_uint_eq(devtest_read32(t, VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
	devtest_write32(t, VIRTIO_MMIO_QUEUE_SEL, 1);
	ck_assert_uint_eq(devtest_read32(t, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	ck_assert_uint_eq(devtest_status(t) & VIRTIO_STATUS_DRIVER_OK,
			  VIRTIO_STATUS_DRIVER_OK);

	ck_assert_str_eq(devtest_plugin(t)->name, "virtio-rng");
	devtest_free(t);
}
END_TEST

START_TEST(test_refuses_legacy_driver)
{
	struct devtest *t = rng_new_opts(NULL, NULL);

	/* §6.1: without VIRTIO_F_VERSION_1 FEATURES_OK does not stick. */
	ck_assert_int_eq(devtest_init_device(t, F_EVENT_IDX | F_INDIRECT),
			 -ENOTSUP);
	ck_assert(!(devtest_status(t) & VIRTIO_STATUS_FEATURES_OK));
	/* And the device still works after a proper init. */
	ck_assert_int_eq(devtest_init_device(t, F_VERSION_1), 0);
	ck_assert_uint_eq(devtest_features(t), F_VERSION_1);
	ck_assert_uint_eq(read_random(t, devtest_alloc(t, 32, 8), 32), 32);
	devtest_free(t);
}
END_TEST

START_TEST(test_no_config_space)
{
	struct devtest *t = rng_up(NULL);
	uint8_t buf[8];
	uint64_t v8 = ~0ULL;

	/* §5.4.4: no configuration fields; reads out of range are 0. */
	memset(buf, 0xff, sizeof(buf));
	devtest_config_read(t, 0, buf, 4);
	ck_assert(all_zero(buf, 4));
	memset(buf, 0xff, sizeof(buf));
	devtest_config_read(t, 0, buf, 1);
	ck_assert_uint_eq(buf[0], 0);
	devtest_config_read(t, 0x10, &v8, 8);
	ck_assert_uint_eq(v8, 0);
	/* Writes are dropped, no crash, device still fine. */
	devtest_config_write(t, 0, "abcd", 4);
	ck_assert(!(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET));
	devtest_free(t);
}
END_TEST

START_TEST(test_read_64)
{
	struct devtest *t = rng_up(NULL);
	uint64_t gpa = devtest_alloc(t, 64 + 64, 64);
	uint8_t *p = devtest_gpa(t, gpa, 128);
	uint64_t irqs = devtest_irq_count(t);

	memset(p + 64, 0xa5, 64); /* guard after the buffer */
	ck_assert_uint_eq(read_random(t, gpa, 64), 64);
	ck_assert(!all_zero(p, 64)); /* 2^-512 to fail by chance */
	for (int i = 64; i < 128; i++)
		ck_assert_uint_eq(p[i], 0xa5);
	ck_assert_uint_gt(devtest_irq_count(t), irqs);
	ck_assert_uint_eq(devtest_ack_irq(t) & VIRTIO_MMIO_INT_VRING,
			  VIRTIO_MMIO_INT_VRING);
	ck_assert_uint_eq(devtest_inflight(t, 0), 0);
	devtest_free(t);
}
END_TEST

START_TEST(test_many_reads)
{
	struct devtest *t = rng_up(NULL);
	uint64_t gpa = devtest_alloc(t, 32, 8);
	uint8_t *p = devtest_gpa(t, gpa, 32), prev[32];
	int same = 0;

	memset(prev, 0, sizeof(prev));
	/* Several times the queue size: indices wrap (uint16 arithmetic). */
	for (int i = 0; i < 3000; i++) {
		ck_assert_uint_eq(read_random(t, gpa, 32), 32);
		if (!memcmp(prev, p, 32))
			same++;
		memcpy(prev, p, 32);
	}
	ck_assert_int_eq(same, 0);
	/* A batch: 200 buffers then one kick, one notification at least. */
	for (int i = 0; i < 200; i++)
		ck_assert_int_ge(devtest_submit_buf(t, 0, devtest_alloc(t, 16, 8),
						    16, true), 0);
	devtest_kick(t, 0);
	for (int i = 0; i < 200; i++) {
		uint32_t len;

		ck_assert_int_eq(devtest_wait_used(t, 0, 5000, NULL, &len), 0);
		ck_assert_uint_eq(len, 16);
	}
	devtest_free(t);
}
END_TEST

START_TEST(test_64k_and_cap)
{
	struct devtest *t = rng_up(NULL);
	uint64_t gpa = devtest_alloc(t, 128 * 1024, 4096);
	uint8_t *p = devtest_gpa(t, gpa, 128 * 1024);
	int seen[256] = { 0 }, distinct = 0;

	ck_assert_uint_eq(read_random(t, gpa, 64 * 1024), 64 * 1024);
	for (int i = 0; i < 64 * 1024; i++)
		seen[p[i]]++;
	for (int i = 0; i < 256; i++)
		distinct += seen[i] > 0;
	ck_assert_int_eq(distinct, 256);
	ck_assert(!all_zero(p + 64 * 1024 - 32, 32)); /* the tail too */
	ck_assert(all_zero(p + 64 * 1024, 64 * 1024));

	/* Larger requests are served in part (§5.4.6.2: "MAY use less"). */
	ck_assert_uint_eq(read_random(t, gpa, 128 * 1024), 64 * 1024);

	/* 24 x 64 KiB in one kick: the device yields the shared I/O thread
	 * part-way (no kick serves them all) and finishes on its own. */
	for (int i = 0; i < 24; i++)
		ck_assert_int_ge(devtest_submit_buf(t, 0, gpa, 64 * 1024, true),
				 0);
	devtest_kick(t, 0);
	ck_assert_uint_gt(devtest_inflight(t, 0), 0);
	for (int i = 0; i < 24; i++) {
		uint32_t len;

		ck_assert_int_eq(devtest_wait_used(t, 0, 5000, NULL, &len), 0);
		ck_assert_uint_eq(len, 64 * 1024);
	}
	devtest_free(t);
}
END_TEST

START_TEST(test_split_descriptors)
{
	struct devtest *t = rng_up(NULL);
	uint64_t a = devtest_alloc_in(t, 0, 10, 1);
	uint64_t b = devtest_alloc_in(t, 1, 100, 1);
	uint64_t c = devtest_alloc_in(t, 0, 1000, 1);
	uint64_t d = devtest_alloc_in(t, 1, 7, 1);
	uint16_t id;
	uint32_t len;
	int head;

	ck_assert(a && b && c && d);
	ck_assert_int_eq(devtest_chain_begin(t, 0, 0), 0);
	ck_assert_int_ge(devtest_chain_add(t, a, 10, true), 0);
	ck_assert_int_ge(devtest_chain_add(t, b, 100, true), 0);
	ck_assert_int_ge(devtest_chain_add(t, c, 1000, true), 0);
	/* A zero-length descriptor in the middle is legal (§2.7.5). */
	ck_assert_int_ge(devtest_chain_add(t, c, 0, true), 0);
	ck_assert_int_ge(devtest_chain_add(t, d, 7, true), 0);
	head = devtest_chain_submit(t);
	ck_assert_int_ge(head, 0);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_wait_used(t, 0, 5000, &id, &len), 0);
	ck_assert_int_eq(id, head);
	ck_assert_uint_eq(len, 1117);
	ck_assert(!all_zero(devtest_gpa(t, a, 10), 10));
	ck_assert(!all_zero(devtest_gpa(t, b, 100), 100));
	ck_assert(!all_zero(devtest_gpa(t, c, 1000), 1000));
	ck_assert(!all_zero(devtest_gpa(t, d, 7), 7));
	devtest_free(t);
}
END_TEST

START_TEST(test_indirect)
{
	struct devtest *t = rng_up(NULL);
	uint64_t a = devtest_alloc(t, 48, 8), b = devtest_alloc_in(t, 1, 80, 8);
	uint32_t len;

	for (int round = 0; round < 600; round++) {
		memset(devtest_gpa(t, a, 48), 0, 48);
		ck_assert_int_eq(devtest_chain_begin(t, 0, DEVTEST_CHAIN_INDIRECT),
				 0);
		ck_assert_int_eq(devtest_chain_add(t, a, 48, true), 0);
		ck_assert_int_eq(devtest_chain_add(t, b, 80, true), 1);
		ck_assert_int_ge(devtest_chain_submit(t), 0);
		devtest_kick(t, 0);
		ck_assert_int_eq(devtest_wait_used(t, 0, 5000, NULL, &len), 0);
		ck_assert_uint_eq(len, 128);
		ck_assert(!all_zero(devtest_gpa(t, a, 48), 48));
	}
	devtest_free(t);
}
END_TEST

START_TEST(test_indirect_not_negotiated)
{
	struct devtest *t = rng_new_opts(NULL, NULL);
	uint64_t a = devtest_alloc(t, 48, 8);

	ck_assert_int_eq(devtest_init_device(t, F_VERSION_1), 0);
	ck_assert_int_eq(devtest_chain_begin(t, 0, DEVTEST_CHAIN_INDIRECT), 0);
	ck_assert_int_eq(devtest_chain_add(t, a, 48, true), 0);
	ck_assert_int_ge(devtest_chain_submit(t), 0);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_wait_used(t, 0, 100, NULL, NULL), -ETIMEDOUT);
	ck_assert(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET);
	ck_assert(all_zero(devtest_gpa(t, a, 48), 48));
	devtest_free(t);
}
END_TEST

START_TEST(test_readable_buffer_completed_empty)
{
	struct devtest *t = rng_up(NULL);
	uint64_t r = devtest_alloc(t, 16, 8), w = devtest_alloc(t, 16, 8);
	uint8_t *rp = devtest_gpa(t, r, 16);
	uint16_t id;
	uint32_t len;
	int head;

	/* §5.4.6.1: the driver MUST NOT place device-readable buffers. We
	 * complete such a request with 0 bytes and touch nothing. */
	memset(rp, 0x5a, 16);
	ck_assert_int_eq(devtest_chain_begin(t, 0, 0), 0);
	ck_assert_int_ge(devtest_chain_add(t, r, 16, false), 0);
	ck_assert_int_ge(devtest_chain_add(t, w, 16, true), 0);
	head = devtest_chain_submit(t);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_wait_used(t, 0, 5000, &id, &len), 0);
	ck_assert_int_eq(id, head);
	ck_assert_uint_eq(len, 0);
	ck_assert(all_zero(devtest_gpa(t, w, 16), 16));
	for (int i = 0; i < 16; i++)
		ck_assert_uint_eq(rp[i], 0x5a);

	/* Readable only, twice (logged once). */
	for (int i = 0; i < 2; i++) {
		head = devtest_submit_buf(t, 0, r, 16, false);
		devtest_kick(t, 0);
		ck_assert_int_eq(devtest_wait_used(t, 0, 5000, &id, &len), 0);
		ck_assert_int_eq(id, head);
		ck_assert_uint_eq(len, 0);
	}
	/* A writable buffer of length 0: nothing to fill. */
	head = devtest_submit_buf(t, 0, w, 0, true);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_wait_used(t, 0, 5000, &id, &len), 0);
	ck_assert_uint_eq(len, 0);

	/* The queue is still usable. */
	ck_assert(!(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET));
	ck_assert_uint_eq(read_random(t, w, 16), 16);
	devtest_free(t);
}
END_TEST

/* A buffer at `gpa` must break the queue, not the VMM, and reset heals. */
static void check_bad_buffer(struct devtest *t, uint64_t gpa, uint32_t len)
{
	uint64_t good = devtest_alloc(t, 64, 8);
	int rc;

	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_int_ge(devtest_submit_buf(t, 0, gpa, len, true), 0);
	devtest_kick(t, 0);
	rc = devtest_wait_used(t, 0, 100, NULL, NULL);
	ck_assert_msg(rc == -ETIMEDOUT, "gpa %#llx len %u: %d",
		      (unsigned long long)gpa, len, rc);
	ck_assert_msg(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET,
		      "gpa %#llx len %u: Status %#x", (unsigned long long)gpa,
		      len, devtest_status(t));
	/* Later kicks are ignored without a crash. */
	devtest_submit_buf(t, 0, good, 64, true);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_wait_used(t, 0, 50, NULL, NULL), -ETIMEDOUT);

	/* §2.4 reset, re-init: works again. */
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert(!(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET));
	ck_assert_uint_eq(read_random(t, good, 64), 64);
}

START_TEST(test_buffers_outside_ram)
{
	struct devtest *t = rng_new_opts(NULL, NULL);
	uint64_t r0, s0;

	devtest_region(t, 0, &r0, &s0);
	check_bad_buffer(t, devtest_hole_gpa(t), 64);
	check_bad_buffer(t, devtest_hole_gpa(t) + 4096, 1);
	check_bad_buffer(t, r0 + s0 - 8, 16); /* straddles into the hole */
	check_bad_buffer(t, devtest_ram_end(t), 64);
	check_bad_buffer(t, devtest_ram_end(t) - 32, 64);
	check_bad_buffer(t, UINT64_MAX - 15, 64); /* wraps */
	check_bad_buffer(t, 0x7fffffff00000000ULL, 4096);
	devtest_free(t);
}
END_TEST

START_TEST(test_hostile_chains)
{
	struct devtest *t = rng_new_opts(NULL, NULL);
	uint64_t buf = devtest_alloc(t, 64, 8);
	int i0;

	/* A loop: descriptor pointing at itself. */
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_int_eq(devtest_chain_begin(t, 0, 0), 0);
	i0 = devtest_chain_add(t, buf, 64, true);
	ck_assert_int_ge(i0, 0);
	ck_assert_int_ge(devtest_chain_add_raw(t, buf, 64,
					       VIRTQ_DESC_F_WRITE |
						       VIRTQ_DESC_F_NEXT,
					       (uint16_t)i0), 0);
	ck_assert_int_ge(devtest_chain_submit(t), 0);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_wait_used(t, 0, 100, NULL, NULL), -ETIMEDOUT);
	ck_assert(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET);

	/* A head beyond the queue size. */
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_int_eq(devtest_avail_add(t, 0, 60000), 0);
	devtest_kick(t, 0);
	ck_assert(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET);

	/* avail->idx far ahead of what was published. */
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_int_eq(devtest_avail_set_idx(t, 0, 1000), 0);
	devtest_kick(t, 0);
	ck_assert(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET);

	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_uint_eq(read_random(t, buf, 64), 64);
	devtest_free(t);
}
END_TEST

START_TEST(test_bad_config_values)
{
	static const struct {
		const char *kv[3];
		const char *key, *words;
	} bad[] = {
		{ { "rate_limit=abc" }, "rate_limit", "not a number" },
		{ { "rate_limit=" }, "rate_limit", "not a number" },
		{ { "rate_limit=12x" }, "rate_limit", "not a number" },
		{ { "rate_limit=-5" }, "rate_limit", "negative" },
		{ { "rate_limit=99999999999999999999999" }, "rate_limit",
		  "too large" },
		{ { "rate_limit=2G" }, "rate_limit", "too large" },
		{ { "rate_limit=18014398509481984K" }, "rate_limit",
		  "too large" },
		{ { "rate_limit=1024", "rate_burst=0" }, "rate_burst",
		  "at least" },
		{ { "rate_limit=1024", "rate_burst=1.5" }, "rate_burst",
		  "not a number" },
		{ { "rate_burst=64" }, "rate_burst", "rate_limit" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *err = rng_new_fails(bad[i].kv);
		char want[64];

		snprintf(want, sizeof(want), "[device.devtest] %s:",
			 bad[i].key);
		ck_assert_msg(strstr(err, want), "case %zu: %s", i, err);
		ck_assert_msg(strstr(err, bad[i].words), "case %zu: %s", i,
			      err);
	}
}
END_TEST

START_TEST(test_good_config_values)
{
	static const char *const ok[][3] = {
		{ "rate_limit=0" },
		{ "rate_limit=1" },
		{ "rate_limit=64K", "rate_burst=1k" },
		{ "rate_limit=1G", "rate_burst=1G" },
		{ "rate_limit= 4096 " },
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct devtest *t = rng_new_opts(ok[i], NULL);

		ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL),
				 0);
		ck_assert_uint_ge(read_random(t, devtest_alloc(t, 1, 1), 1),
				  1);
		devtest_free(t);
	}
}
END_TEST

START_TEST(test_unknown_key)
{
	const char *kv[] = { "rate_limt=5", NULL };
	const char *err = rng_new_fails(kv);
	const char *const *keys;
	struct devtest *t;
	int n = 0;

	ck_assert_msg(strstr(err, "rate_limt: unknown key for type virtio-rng"),
		      "%s", err);
	ck_assert_msg(strstr(err, "rate_limit"), "%s", err);

	/* The list the INI check (machine_check_device_keys) uses. */
	t = rng_new_opts(NULL, NULL);
	keys = devtest_plugin(t)->config_keys;
	for (; keys && keys[n]; n++)
		ck_assert(!strcmp(keys[n], "rate_limit") ||
			  !strcmp(keys[n], "rate_burst"));
	ck_assert_int_eq(n, 2);
	devtest_free(t);
}
END_TEST

START_TEST(test_rate_limit)
{
	/* 4 KiB/s, bucket of 1 KiB (full at start): 3 x 1 KiB takes
	 * >= 0.5 s; no upper bound is asserted (loaded CI machines). */
	const char *kv[] = { "rate_limit=4096", "rate_burst=1024", NULL };
	struct devtest *t = rng_up(kv);
	uint64_t b[3];
	double t0, t1, t2;
	uint32_t len;
	uint16_t id;
	int h[3];

	for (int i = 0; i < 3; i++) {
		b[i] = devtest_alloc(t, 1024, 8);
		h[i] = devtest_submit_buf(t, 0, b[i], 1024, true);
	}
	t0 = now_s();
	devtest_kick(t, 0);
	/* The first is served from the full bucket, within the kick. */
	ck_assert_int_eq(devtest_poll_used(t, 0, &id, &len), 1);
	ck_assert_int_eq(id, h[0]);
	ck_assert_uint_eq(len, 1024);
	ck_assert_int_eq(devtest_poll_used(t, 0, NULL, NULL), 0);
	/* More kicks do not bypass the limiter. */
	devtest_kick(t, 0);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_poll_used(t, 0, NULL, NULL), 0);

	ck_assert_int_eq(devtest_wait_used(t, 0, 10000, &id, &len), 0);
	t1 = now_s() - t0;
	ck_assert_int_eq(id, h[1]);
	ck_assert_uint_eq(len, 1024);
	ck_assert_int_eq(devtest_wait_used(t, 0, 10000, &id, &len), 0);
	t2 = now_s() - t0;
	ck_assert_int_eq(id, h[2]);
	ck_assert_uint_eq(len, 1024);
	ck_assert_msg(t1 >= 0.2, "second after %.3f s", t1);
	ck_assert_msg(t2 >= 0.45, "third after %.3f s", t2);

	/* A request above the burst gets one burst's worth. */
	ck_assert_uint_eq(read_random(t, devtest_alloc(t, 4096, 8), 4096),
			  1024);
	devtest_free(t);
}
END_TEST

START_TEST(test_reset_while_held)
{
	const char *kv[] = { "rate_limit=1024", "rate_burst=512", NULL };
	struct devtest *t = rng_up(kv);
	uint64_t a = devtest_alloc(t, 512, 8), b = devtest_alloc(t, 512, 8);

	devtest_submit_buf(t, 0, a, 512, true);
	devtest_submit_buf(t, 0, b, 512, true);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_poll_used(t, 0, NULL, NULL), 1);
	ck_assert_uint_eq(devtest_inflight(t, 0), 1); /* b is held */

	/* Reset drops the held chain and disarms the timer. */
	ck_assert_int_eq(devtest_reset(t), 0);
	memset(devtest_gpa(t, b, 512), 0, 512);
	ck_assert_int_eq(devtest_negotiate(t, DEVTEST_FEATURES_ALL, NULL), 0);
	ck_assert_int_eq(devtest_setup_queue(t, 0, 0), 0);
	ck_assert_int_eq(devtest_driver_ok(t), 0);
	/* Longer than the held chain's wait: nothing may appear. */
	for (int i = 0; i < 8; i++)
		devtest_run_io(t, 100);
	ck_assert_uint_eq(devtest_used_idx(t, 0), 0);
	ck_assert(all_zero(devtest_gpa(t, b, 512), 512));

	/* The bucket was not refilled by the reset, but has refilled with
	 * time since: a new request is served. */
	ck_assert_uint_eq(read_random(t, b, 512), 512);
	ck_assert(!all_zero(devtest_gpa(t, b, 512), 512));

	/* Destroy with a chain held. */
	devtest_submit_buf(t, 0, a, 512, true);
	devtest_kick(t, 0);
	devtest_free(t);
}
END_TEST

START_TEST(test_threaded)
{
	struct devtest_opts o = { .threaded = true, .queue_size = 64 };
	struct devtest *t = rng_new_opts(NULL, &o);
	uint64_t buf = devtest_alloc(t, 64 * 64, 64);

	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_uint_eq(devtest_queue_size(t, 0), 64);
	for (int round = 0; round < 50; round++) {
		for (int i = 0; i < 64; i++)
			ck_assert_int_ge(devtest_submit_buf(t, 0, buf + 64 * i,
							    64, true), 0);
		devtest_kick_if_needed(t, 0);
		for (int i = 0; i < 64; i++) {
			uint32_t len;
			int rc = devtest_wait_used(t, 0, 5000, NULL, &len);

			ck_assert_msg(rc == 0, "%d %s", rc, devtest_error(t));
			ck_assert_uint_eq(len, 64);
		}
	}
	devtest_free(t);
}
END_TEST

START_TEST(test_threaded_rate_limit_and_reset)
{
	const char *kv[] = { "rate_limit=2048", "rate_burst=256", NULL };
	struct devtest_opts o = { .threaded = true };
	struct devtest *t = rng_new_opts(kv, &o);
	uint64_t buf = devtest_alloc(t, 256 * 4, 64);
	double t0;

	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	t0 = now_s();
	for (int i = 0; i < 4; i++)
		devtest_submit_buf(t, 0, buf + 256 * i, 256, true);
	devtest_kick(t, 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(devtest_wait_used(t, 0, 10000, NULL, NULL), 0);
	/* 3 x 256 bytes beyond the burst at 2048 bytes/s: >= 0.375 s. */
	ck_assert_double_ge(now_s() - t0, 0.3);

	/* Reset with a chain held, while the I/O thread may be running. */
	devtest_submit_buf(t, 0, buf, 256, true);
	devtest_submit_buf(t, 0, buf + 256, 256, true);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_int_eq(devtest_wait_used(t, 0, 300, NULL, NULL), -ETIMEDOUT);
	ck_assert_int_eq(devtest_submit_buf(t, 0, buf, 256, true), 0);
	devtest_kick(t, 0);
	ck_assert_int_eq(devtest_wait_used(t, 0, 10000, NULL, NULL), 0);
	devtest_free(t);
}
END_TEST

START_TEST(test_multiple_instances)
{
	const char *kv[] = { "rate_limit=1024", "rate_burst=64", NULL };
	struct devtest *fast = rng_up(NULL);
	struct devtest *slow = rng_up(kv);
	struct devtest *fast2 = rng_up(NULL);
	uint64_t fb = devtest_alloc(fast, 64, 8), sb = devtest_alloc(slow, 64, 8);
	uint64_t f2 = devtest_alloc(fast2, 64, 8);

	/* slow: one burst, then held */
	devtest_submit_buf(slow, 0, sb, 64, true);
	devtest_submit_buf(slow, 0, sb, 64, true);
	devtest_kick(slow, 0);
	ck_assert_int_eq(devtest_poll_used(slow, 0, NULL, NULL), 1);
	ck_assert_int_eq(devtest_poll_used(slow, 0, NULL, NULL), 0);

	/* the unlimited instances do not share slow's bucket or state */
	for (int i = 0; i < 100; i++) {
		ck_assert_uint_eq(read_random(fast, fb, 64), 64);
		ck_assert_uint_eq(read_random(fast2, f2, 64), 64);
	}
	/* resetting one leaves the others alone */
	ck_assert_int_eq(devtest_reset(fast), 0);
	ck_assert_uint_eq(read_random(fast2, f2, 64), 64);
	ck_assert_int_eq(devtest_wait_used(slow, 0, 5000, NULL, NULL), 0);

	devtest_free(fast);
	ck_assert_uint_eq(read_random(fast2, f2, 64), 64);
	devtest_free(slow);
	devtest_free(fast2);
}
END_TEST

static Suite *rng_suite(void)
{
	Suite *s = suite_create("virtio-rng");
	TCase *tc = tcase_create("driver-model");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_identity_and_features);
	tcase_add_test(tc, test_refuses_legacy_driver);
	tcase_add_test(tc, test_no_config_space);
	tcase_add_test(tc, test_read_64);
	tcase_add_test(tc, test_many_reads);
	tcase_add_test(tc, test_64k_and_cap);
	tcase_add_test(tc, test_split_descriptors);
	tcase_add_test(tc, test_indirect);
	tcase_add_test(tc, test_indirect_not_negotiated);
	tcase_add_test(tc, test_readable_buffer_completed_empty);
	tcase_add_test(tc, test_buffers_outside_ram);
	tcase_add_test(tc, test_hostile_chains);
	tcase_add_test(tc, test_bad_config_values);
	tcase_add_test(tc, test_good_config_values);
	tcase_add_test(tc, test_unknown_key);
	tcase_add_test(tc, test_rate_limit);
	tcase_add_test(tc, test_reset_while_held);
	tcase_add_test(tc, test_threaded);
	tcase_add_test(tc, test_threaded_rate_limit_and_reset);
	tcase_add_test(tc, test_multiple_instances);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(rng_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
