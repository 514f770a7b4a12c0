/* SPDX-License-Identifier: MIT */
/*
 * IRQ/GSI planning: one IOAPIC input per device, never shared.  Lines below
 * IRQ_PLAN_FIRST_DYNAMIC are reserved for legacy ISA devices (COM1 = 4).
 */
#ifndef SMVMM_IRQ_H
#define SMVMM_IRQ_H

#include <stdint.h>

#define IRQ_PLAN_LINES 24          /* IOAPIC pins */
#define IRQ_PLAN_FIRST_DYNAMIC 5   /* first line handed out automatically */

struct irq_plan {
	const char *owner[IRQ_PLAN_LINES]; /* NULL = free */
};

void irq_plan_init(struct irq_plan *p);

/*
 * irq_plan_claim: give line `gsi` to `owner` (any line, legacy ones
 * included: COM1 claims 4).  -EINVAL if owner is NULL; -ERANGE if gsi >= 24;
 * -EBUSY if taken, even by the same owner (*holder, if non-NULL, is set to
 * the current owner, else NULL).  Main thread.
 */
int irq_plan_claim(struct irq_plan *p, uint32_t gsi, const char *owner,
		   const char **holder);

/*
 * irq_plan_alloc: claim the lowest free line >= IRQ_PLAN_FIRST_DYNAMIC for
 * `owner` and return it; -ENOSPC when none is left, -EINVAL if owner is NULL.
 * Main thread.
 */
int irq_plan_alloc(struct irq_plan *p, const char *owner);

#endif
