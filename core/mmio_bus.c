// SPDX-License-Identifier: MIT
/*
 * MMIO bus: a sorted array of non-overlapping ranges, binary-searched on the
 * vCPU exit path.  Built on the main thread before the vCPUs start and never
 * changed afterwards, so lookups take no lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mmio_bus.h"

void mmio_bus_init(struct mmio_bus *bus)
{
	bus->nr = bus->cap = 0;
	bus->ranges = NULL;
}

void mmio_bus_destroy(struct mmio_bus *bus)
{
	free(bus->ranges);
	mmio_bus_init(bus);
}

/* Index of the first range whose base is > addr (0..nr). */
static unsigned int upper_bound(const struct mmio_bus *bus, uint64_t addr)
{
	unsigned int lo = 0, hi = bus->nr;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;

		if (bus->ranges[mid].base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int mmio_bus_add(struct mmio_bus *bus, uint64_t base, uint64_t size,
		 mmio_handler_fn fn, void *opaque, const char *name,
		 const char **conflict)
{
	const struct mmio_range *prev, *next;
	unsigned int i;

	if (conflict)
		*conflict = NULL;
	/*
	 * base + size must not wrap: a range ending exactly at 2^64 is
	 * rejected too, so `base + size` (the exclusive end) is always a
	 * valid comparison below.
	 */
	if (size == 0 || !fn || base > UINT64_MAX - size)
		return -EINVAL;

	i = upper_bound(bus, base);
	/* Ranges are disjoint and sorted: only the neighbours can overlap. */
	prev = i > 0 ? &bus->ranges[i - 1] : NULL;
	next = i < bus->nr ? &bus->ranges[i] : NULL;
	if (prev && prev->base + prev->size > base) {
		if (conflict)
			*conflict = prev->name;
		return -EBUSY;
	}
	if (next && base + size > next->base) {
		if (conflict)
			*conflict = next->name;
		return -EBUSY;
	}

	if (bus->nr == bus->cap) {
		unsigned int cap = bus->cap ? bus->cap * 2 : 8;
		struct mmio_range *r;

		r = realloc(bus->ranges, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		bus->ranges = r;
		bus->cap = cap;
	}
	memmove(&bus->ranges[i + 1], &bus->ranges[i],
		(bus->nr - i) * sizeof(bus->ranges[0]));
	bus->ranges[i] = (struct mmio_range){
		.base = base, .size = size, .fn = fn, .opaque = opaque,
		.name = name,
	};
	bus->nr++;
	return 0;
}

const struct mmio_range *mmio_bus_find(const struct mmio_bus *bus,
				       uint64_t addr, uint32_t len)
{
	const struct mmio_range *r;
	unsigned int i;
	uint64_t off;

	if (len == 0)
		return NULL;
	i = upper_bound(bus, addr);
	if (i == 0)
		return NULL;
	r = &bus->ranges[i - 1];
	off = addr - r->base;
	/* Written so that nothing can overflow: off < size, len <= rest. */
	if (off >= r->size || len > r->size - off)
		return NULL;
	return r;
}

bool mmio_bus_access(const struct mmio_bus *bus, uint64_t addr, uint8_t *data,
		     uint32_t len, bool is_write)
{
	const struct mmio_range *r = mmio_bus_find(bus, addr, len);

	if (!r) {
		/* Unassigned bus space reads as all ones, like real hardware. */
		if (!is_write)
			memset(data, 0xff, len);
		return false;
	}
	r->fn(r->opaque, addr - r->base, data, len, is_write);
	return true;
}
