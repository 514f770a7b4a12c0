// SPDX-License-Identifier: MIT
/* Unit tests for core/irq.c: claims, conflicts, allocation, exhaustion. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "irq.h"

START_TEST(claim_conflict_names_holder)
{
	struct irq_plan p;
	const char *holder = "unset";

	irq_plan_init(&p);
	ck_assert_int_eq(irq_plan_claim(&p, 4, "COM1", &holder), 0);
	ck_assert_ptr_null(holder);
	ck_assert_int_eq(irq_plan_claim(&p, 10, "blk0", NULL), 0);
	ck_assert_int_eq(irq_plan_claim(&p, 10, "rng0", &holder), -EBUSY);
	ck_assert_str_eq(holder, "blk0");
	ck_assert_int_eq(irq_plan_claim(&p, 4, "net0", &holder), -EBUSY);
	ck_assert_str_eq(holder, "COM1");
	/* Same owner twice is still a conflict: one line per device. */
	ck_assert_int_eq(irq_plan_claim(&p, 10, "blk0", &holder), -EBUSY);
	ck_assert_str_eq(p.owner[10], "blk0");
}
END_TEST

START_TEST(claim_range)
{
	struct irq_plan p;
	const char *holder = "unset";

	irq_plan_init(&p);
	ck_assert_int_eq(irq_plan_claim(&p, IRQ_PLAN_LINES, "x", &holder),
			 -ERANGE);
	ck_assert_ptr_null(holder);
	ck_assert_int_eq(irq_plan_claim(&p, UINT32_MAX, "x", NULL), -ERANGE);
	ck_assert_int_eq(irq_plan_claim(&p, IRQ_PLAN_LINES - 1, "x", NULL), 0);
	ck_assert_int_eq(irq_plan_claim(&p, 0, "timer", NULL), 0);
	ck_assert_int_eq(irq_plan_claim(&p, 3, NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(alloc_skips_legacy_and_taken)
{
	struct irq_plan p;

	irq_plan_init(&p);
	/* Lines 0..4 are free but legacy: never handed out. */
	ck_assert_int_eq(irq_plan_alloc(&p, "a"), IRQ_PLAN_FIRST_DYNAMIC);
	ck_assert_int_eq(irq_plan_claim(&p, 6, "fixed", NULL), 0);
	ck_assert_int_eq(irq_plan_claim(&p, 7, "fixed2", NULL), 0);
	ck_assert_int_eq(irq_plan_alloc(&p, "b"), 8);
	ck_assert_str_eq(p.owner[8], "b");
	for (int i = 0; i < IRQ_PLAN_FIRST_DYNAMIC; i++)
		ck_assert_ptr_null(p.owner[i]);
	ck_assert_int_eq(irq_plan_alloc(&p, NULL), -EINVAL);
}
END_TEST

START_TEST(exhaustion)
{
	struct irq_plan p;
	int n = 0, rc;

	irq_plan_init(&p);
	while ((rc = irq_plan_alloc(&p, "dev")) >= 0) {
		ck_assert_int_eq(rc, IRQ_PLAN_FIRST_DYNAMIC + n);
		n++;
	}
	ck_assert_int_eq(rc, -ENOSPC);
	ck_assert_int_eq(n, IRQ_PLAN_LINES - IRQ_PLAN_FIRST_DYNAMIC);
	/* Legacy lines can still be claimed explicitly. */
	ck_assert_int_eq(irq_plan_claim(&p, 4, "COM1", NULL), 0);
	ck_assert_int_eq(irq_plan_alloc(&p, "dev"), -ENOSPC);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("irq");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, claim_conflict_names_holder);
	tcase_add_test(tc, claim_range);
	tcase_add_test(tc, alloc_skips_legacy_and_taken);
	tcase_add_test(tc, exhaustion);
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
