// SPDX-License-Identifier: MIT
/*
 * IRQ/GSI planning: every device gets its own IOAPIC input.  Sharing a line
 * would need level-triggered, ISR-polling handlers in every driver; with one
 * edge-triggered line per virtio-mmio device there is nothing to share.
 */
#include <errno.h>
#include <stddef.h>

#include "irq.h"

void irq_plan_init(struct irq_plan *p)
{
	for (unsigned int i = 0; i < IRQ_PLAN_LINES; i++)
		p->owner[i] = NULL;
}

int irq_plan_claim(struct irq_plan *p, uint32_t gsi, const char *owner,
		   const char **holder)
{
	if (holder)
		*holder = NULL;
	if (!owner)
		return -EINVAL;
	if (gsi >= IRQ_PLAN_LINES)
		return -ERANGE;
	if (p->owner[gsi]) {
		if (holder)
			*holder = p->owner[gsi];
		return -EBUSY;
	}
	p->owner[gsi] = owner;
	return 0;
}

int irq_plan_alloc(struct irq_plan *p, const char *owner)
{
	if (!owner)
		return -EINVAL;
	for (unsigned int i = IRQ_PLAN_FIRST_DYNAMIC; i < IRQ_PLAN_LINES; i++)
		if (!p->owner[i]) {
			p->owner[i] = owner;
			return (int)i;
		}
	return -ENOSPC;
}
