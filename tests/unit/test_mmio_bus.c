// SPDX-License-Identifier: MIT
/* Unit tests for core/mmio_bus.c: overlap rules, lookup edges, dispatch. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mmio_bus.h"

struct hit {
	int calls;
	uint64_t offset;
	uint32_t len;
	bool is_write;
};

static void handler(void *opaque, uint64_t offset, uint8_t *data,
		    uint32_t len, bool is_write)
{
	struct hit *h = opaque;

	h->calls++;
	h->offset = offset;
	h->len = len;
	h->is_write = is_write;
	if (!is_write)
		memset(data, 0xab, len);
}

static struct mmio_bus bus;
static struct hit ha, hb;

/* Two ranges: A = [0x1000, 0x2000), B = [0x3000, 0x3100). */
static void setup(void)
{
	mmio_bus_init(&bus);
	memset(&ha, 0, sizeof(ha));
	memset(&hb, 0, sizeof(hb));
	ck_assert_int_eq(mmio_bus_add(&bus, 0x1000, 0x1000, handler, &ha, "A",
				      NULL), 0);
	ck_assert_int_eq(mmio_bus_add(&bus, 0x3000, 0x100, handler, &hb, "B",
				      NULL), 0);
}

static void teardown(void)
{
	mmio_bus_destroy(&bus);
}

static void expect_busy(uint64_t base, uint64_t size, const char *who)
{
	const char *conflict = "unset";

	ck_assert_int_eq(mmio_bus_add(&bus, base, size, handler, NULL, "new",
				      &conflict), -EBUSY);
	ck_assert_ptr_nonnull(conflict);
	ck_assert_str_eq(conflict, who);
	ck_assert_uint_eq(bus.nr, 2);
}

START_TEST(overlap_identical)
{
	expect_busy(0x1000, 0x1000, "A");
	expect_busy(0x3000, 0x100, "B");
}
END_TEST

START_TEST(overlap_partial_left)
{
	/* Starts before A, ends inside it. */
	expect_busy(0x800, 0x900, "A");
	/* Ends one byte into B. */
	expect_busy(0x2800, 0x801, "B");
}
END_TEST

START_TEST(overlap_partial_right)
{
	/* Starts inside A, ends after it. */
	expect_busy(0x1fff, 0x10, "A");
	expect_busy(0x30ff, 0x1000, "B");
}
END_TEST

START_TEST(overlap_containing)
{
	expect_busy(0x0, 0x10000, "A");
	expect_busy(0x2fff, 0x102, "B");
}
END_TEST

START_TEST(overlap_contained)
{
	expect_busy(0x1100, 0x10, "A");
	expect_busy(0x3080, 0x1, "B");
}
END_TEST

START_TEST(adjacent_ok_and_sorted)
{
	const char *conflict = "unset";

	/* Exactly touching on both sides: A ends at 0x2000, B starts 0x3000. */
	ck_assert_int_eq(mmio_bus_add(&bus, 0x2000, 0x1000, handler, NULL,
				      "C", &conflict), 0);
	ck_assert_ptr_null(conflict);
	ck_assert_int_eq(mmio_bus_add(&bus, 0x0, 0x1000, handler, NULL, "D",
				      NULL), 0);
	ck_assert_int_eq(mmio_bus_add(&bus, 0x3100, 0x10, handler, NULL, "E",
				      NULL), 0);
	ck_assert_uint_eq(bus.nr, 5);
	for (unsigned int i = 1; i < bus.nr; i++)
		ck_assert_uint_le(bus.ranges[i - 1].base + bus.ranges[i - 1].size,
				  bus.ranges[i].base);
	ck_assert_str_eq(bus.ranges[0].name, "D");
	ck_assert_str_eq(bus.ranges[2].name, "C");
	ck_assert_str_eq(bus.ranges[4].name, "E");
}
END_TEST

START_TEST(invalid_ranges)
{
	const char *conflict = "unset";

	ck_assert_int_eq(mmio_bus_add(&bus, 0x5000, 0, handler, NULL, "z",
				      &conflict), -EINVAL);
	/* base + size wraps past 2^64 */
	ck_assert_int_eq(mmio_bus_add(&bus, UINT64_MAX - 0xff, 0x200, handler,
				      NULL, "w", NULL), -EINVAL);
	/* ending exactly at 2^64 wraps the exclusive end to 0 */
	ck_assert_int_eq(mmio_bus_add(&bus, UINT64_MAX - 0xff, 0x100, handler,
				      NULL, "w", NULL), -EINVAL);
	ck_assert_int_eq(mmio_bus_add(&bus, UINT64_MAX - 0xff, 0xff, handler,
				      NULL, "top", NULL), 0);
	ck_assert_ptr_nonnull(mmio_bus_find(&bus, UINT64_MAX - 1, 1));
	ck_assert_ptr_null(mmio_bus_find(&bus, UINT64_MAX, 1));
	ck_assert_ptr_null(mmio_bus_find(&bus, UINT64_MAX - 1, 4));
	ck_assert_uint_eq(bus.nr, 3);
}
END_TEST

START_TEST(lookup_edges)
{
	const struct mmio_range *r;

	ck_assert_ptr_null(mmio_bus_find(&bus, 0xfff, 1));
	r = mmio_bus_find(&bus, 0x1000, 1);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->name, "A");
	r = mmio_bus_find(&bus, 0x1ffc, 4); /* last word */
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->name, "A");
	r = mmio_bus_find(&bus, 0x1fff, 1); /* last byte */
	ck_assert_ptr_nonnull(r);
	ck_assert_ptr_null(mmio_bus_find(&bus, 0x2000, 1)); /* one past */
	ck_assert_ptr_null(mmio_bus_find(&bus, 0x2fff, 1));
	r = mmio_bus_find(&bus, 0x30ff, 1);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->name, "B");
	ck_assert_ptr_null(mmio_bus_find(&bus, 0x1000, 0));
	ck_assert_ptr_null(mmio_bus_find(&bus, UINT64_MAX - 1, 4));
}
END_TEST

START_TEST(span_end_not_dispatched)
{
	uint8_t data[8];

	/* Straddles the end of A: not contained, not dispatched, reads ~0. */
	memset(data, 0, sizeof(data));
	ck_assert(!mmio_bus_access(&bus, 0x1ffe, data, 4, false));
	ck_assert_int_eq(ha.calls, 0);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(data[i], 0xff);
	ck_assert_uint_eq(data[4], 0);
	/* Straddles the start of B. */
	ck_assert(!mmio_bus_access(&bus, 0x2ffc, data, 8, true));
	ck_assert_int_eq(hb.calls, 0);
	/* An 8-byte access ending exactly at the end of A is dispatched. */
	ck_assert(mmio_bus_access(&bus, 0x1ff8, data, 8, false));
	ck_assert_int_eq(ha.calls, 1);
	ck_assert_uint_eq(ha.offset, 0xff8);
	ck_assert_uint_eq(ha.len, 8);
	ck_assert_uint_eq(data[7], 0xab);
	/* A write in B gets the offset relative to B. */
	ck_assert(mmio_bus_access(&bus, 0x3010, data, 4, true));
	ck_assert_int_eq(hb.calls, 1);
	ck_assert_uint_eq(hb.offset, 0x10);
	ck_assert(hb.is_write);
}
END_TEST

START_TEST(many_ranges)
{
	struct mmio_bus b;
	int order[64];

	/* Insert 64 ranges in a scrambled order, then look each one up. */
	mmio_bus_init(&b);
	for (int i = 0; i < 64; i++)
		order[i] = (i * 37) % 64;
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(mmio_bus_add(&b, 0x10000 + order[i] * 0x200,
					      0x200, handler,
					      (void *)(intptr_t)order[i],
					      "r", NULL), 0);
	for (int i = 0; i < 64; i++) {
		const struct mmio_range *r =
			mmio_bus_find(&b, 0x10000 + i * 0x200 + 0x1fc, 4);

		ck_assert_ptr_nonnull(r);
		ck_assert_int_eq((int)(intptr_t)r->opaque, i);
	}
	ck_assert_int_eq(mmio_bus_add(&b, 0x10000 + 31 * 0x200 + 4, 4, handler,
				      NULL, "x", NULL), -EBUSY);
	mmio_bus_destroy(&b);
	ck_assert_uint_eq(b.nr, 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("mmio_bus");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, overlap_identical);
	tcase_add_test(tc, overlap_partial_left);
	tcase_add_test(tc, overlap_partial_right);
	tcase_add_test(tc, overlap_containing);
	tcase_add_test(tc, overlap_contained);
	tcase_add_test(tc, adjacent_ok_and_sorted);
	tcase_add_test(tc, invalid_ranges);
	tcase_add_test(tc, lookup_edges);
	tcase_add_test(tc, span_end_not_dispatched);
	tcase_add_test(tc, many_ranges);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
