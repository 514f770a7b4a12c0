/* SPDX-License-Identifier: MIT */
/*
 * Guest memory: a small set of RAM regions, each backed by a memfd mapped
 * MAP_SHARED into the VMM, so snapshots and vhost-user back-ends can share it.
 * All translations are bounds-checked: a range that wraps or leaves a region
 * (including one that straddles two regions) translates to NULL.
 */
#ifndef SMVMM_GMEM_H
#define SMVMM_GMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMVMM_GMEM_MAX_REGIONS 8

struct gmem_region {
	uint64_t gpa;    /* guest-physical base, 4 KiB aligned */
	uint64_t size;   /* bytes, 4 KiB multiple */
	uint8_t *hva;    /* host mapping of the whole region */
	int fd;          /* backing memfd (or -1 if external/anonymous) */
	uint64_t fd_offset;
	bool owned;      /* gmem_destroy unmaps/closes it */
};

struct gmem {
	unsigned int nr;
	struct gmem_region r[SMVMM_GMEM_MAX_REGIONS];
};

/* gmem_init: empty map.  Any thread before use. */
void gmem_init(struct gmem *m);

/*
 * gmem_add_ram: create a memfd (MFD_CLOEXEC) of `size` bytes named `name`,
 * map it MAP_SHARED|MAP_NORESERVE and add it at `gpa`.  Regions must not
 * overlap (-EEXIST), must have a 4 KiB aligned gpa and a non-zero 4 KiB
 * multiple size that does not wrap past 2^64 (-EINVAL), and must fit
 * (-ENOSPC when SMVMM_GMEM_MAX_REGIONS are in use); memfd/ftruncate/mmap
 * failures return their -errno.  Returns the region index (stable: regions
 * are kept in insertion order) or -errno.  Main thread, before the map is
 * shared with other threads.
 */
int gmem_add_ram(struct gmem *m, uint64_t gpa, uint64_t size, const char *name);

/*
 * gmem_add_mapping: add an already-mapped range (fd may be -1); not owned:
 * gmem_destroy neither unmaps it nor closes fd.  Used by tests (fake RAM)
 * and vhost-user.  Same errors as gmem_add_ram; hva NULL is -EINVAL.  `hva`
 * needs no particular alignment.  Main thread.
 */
int gmem_add_mapping(struct gmem *m, uint64_t gpa, uint64_t size, void *hva,
		     int fd, uint64_t fd_offset);

/* gmem_destroy: unmap and close owned regions; the map is empty afterwards. */
void gmem_destroy(struct gmem *m);

/*
 * gmem_hva: host pointer for [gpa, gpa+len) or NULL if any byte is outside
 * a single RAM region or gpa+len wraps.  len 0 is treated as 1.  A range
 * that straddles two adjacent regions is NULL too (their host mappings need
 * not be contiguous).  Any thread.
 */
void *gmem_hva(const struct gmem *m, uint64_t gpa, uint64_t len);

/*
 * gmem_read / gmem_write: copy `len` bytes; -EFAULT if the range is not RAM
 * (same rule as gmem_hva, so len 0 still needs gpa to be RAM).  Any thread.
 */
int gmem_read(const struct gmem *m, uint64_t gpa, void *dst, size_t len);
int gmem_write(const struct gmem *m, uint64_t gpa, const void *src, size_t len);

/* gmem_is_ram: true when [gpa, gpa+len) is entirely guest RAM. */
bool gmem_is_ram(const struct gmem *m, uint64_t gpa, uint64_t len);

/* gmem_total: sum of region sizes in bytes. */
uint64_t gmem_total(const struct gmem *m);

#endif
