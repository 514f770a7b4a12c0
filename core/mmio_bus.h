/* SPDX-License-Identifier: MIT */
/*
 * MMIO bus: sorted, non-overlapping [base, base+size) ranges, each with a
 * handler.  Lookup is a binary search; the table is built before vCPUs start
 * and read-only afterwards (no lock needed on the vCPU path).
 */
#ifndef SMVMM_MMIO_BUS_H
#define SMVMM_MMIO_BUS_H

#include <stdbool.h>
#include <stdint.h>

/* Access handler: `offset` is relative to the range base; data is LE bytes. */
typedef void (*mmio_handler_fn)(void *opaque, uint64_t offset, uint8_t *data,
				uint32_t len, bool is_write);

struct mmio_range {
	uint64_t base, size;
	mmio_handler_fn fn;
	void *opaque;
	const char *name; /* for error messages: the device id */
};

struct mmio_bus {
	unsigned int nr, cap;
	struct mmio_range *ranges; /* sorted by base */
};

void mmio_bus_init(struct mmio_bus *bus);
void mmio_bus_destroy(struct mmio_bus *bus);

/*
 * mmio_bus_add: register a range.  -EINVAL for size 0 or base+size wrapping;
 * -EBUSY when it overlaps an existing range (*conflict, if non-NULL, is set to
 * that range's name); -ENOMEM.  Main thread, before vCPUs run.
 */
int mmio_bus_add(struct mmio_bus *bus, uint64_t base, uint64_t size,
		 mmio_handler_fn fn, void *opaque, const char *name,
		 const char **conflict);

/* mmio_bus_find: the range containing [addr, addr+len) entirely, or NULL. */
const struct mmio_range *mmio_bus_find(const struct mmio_bus *bus,
				       uint64_t addr, uint32_t len);

/*
 * mmio_bus_access: dispatch; returns false (reads fill data with 0xff) when
 * no range contains the access.  vCPU thread.
 */
bool mmio_bus_access(const struct mmio_bus *bus, uint64_t addr, uint8_t *data,
		     uint32_t len, bool is_write);

#endif
