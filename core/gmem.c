/* SPDX-License-Identifier: MIT */
/*
 * Guest memory regions and bounds-checked guest-physical -> host translation.
 *
 * Every address handed to gmem_hva() may come straight from a hostile guest
 * (a descriptor, a ring address, a boot-protocol field), so the checks are
 * written to be overflow-free: a range is represented by its first and last
 * byte (`gpa` and `gpa + len - 1`), never by an exclusive end that could wrap
 * to 0, and a range is accepted only when both ends lie in the SAME region.
 * Regions are few (SMVMM_GMEM_MAX_REGIONS) and are only added on the main
 * thread before vCPUs and the I/O thread start, so lookups take no lock.
 */
#define _GNU_SOURCE
#include "gmem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GMEM_PAGE 4096ull

void gmem_init(struct gmem *m)
{
	memset(m, 0, sizeof(*m));
	for (unsigned int i = 0; i < SMVMM_GMEM_MAX_REGIONS; i++)
		m->r[i].fd = -1;
}

/*
 * Validate a new region [gpa, gpa + size): 4 KiB aligned, non-empty, not
 * wrapping past 2^64, not overlapping an existing region, and a free slot.
 */
static int gmem_check_new(const struct gmem *m, uint64_t gpa, uint64_t size)
{
	uint64_t last;

	if (size == 0 || (gpa & (GMEM_PAGE - 1)) || (size & (GMEM_PAGE - 1)))
		return -EINVAL;
	/* last byte; size >= 4096 here so size - 1 does not underflow */
	if (__builtin_add_overflow(gpa, size - 1, &last))
		return -EINVAL;
	for (unsigned int i = 0; i < m->nr; i++) {
		const struct gmem_region *r = &m->r[i];
		uint64_t rlast = r->gpa + (r->size - 1);

		/* closed intervals [gpa,last] and [r->gpa,rlast] intersect */
		if (gpa <= rlast && r->gpa <= last)
			return -EEXIST;
	}
	if (m->nr >= SMVMM_GMEM_MAX_REGIONS)
		return -ENOSPC;
	return 0;
}

static int gmem_insert(struct gmem *m, uint64_t gpa, uint64_t size, void *hva,
		       int fd, uint64_t fd_offset, bool owned)
{
	/*
	 * Regions are kept in insertion order so the index returned to the
	 * caller stays valid; with at most SMVMM_GMEM_MAX_REGIONS entries a
	 * linear lookup is as fast as a sorted one.
	 */
	unsigned int i = m->nr;

	m->r[i] = (struct gmem_region){
		.gpa = gpa,
		.size = size,
		.hva = hva,
		.fd = fd,
		.fd_offset = fd_offset,
		.owned = owned,
	};
	m->nr++;
	return (int)i;
}

int gmem_add_ram(struct gmem *m, uint64_t gpa, uint64_t size, const char *name)
{
	void *hva;
	int fd, ret;

	ret = gmem_check_new(m, gpa, size);
	if (ret)
		return ret;
	if (size > (uint64_t)INT64_MAX)
		return -EINVAL; /* ftruncate takes a signed off_t */

	/*
	 * A memfd rather than anonymous memory: snapshots can write the file
	 * and vhost-user back-ends can map the same pages (SCM_RIGHTS).
	 */
	fd = memfd_create(name ? name : "smvmm-ram", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		ret = -errno;
		goto err_fd;
	}
	/*
	 * MAP_NORESERVE: guest RAM is populated lazily as the guest touches
	 * it, so a large but mostly idle guest must not need swap reserved up
	 * front.
	 */
	hva = mmap(NULL, size, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (hva == MAP_FAILED) {
		ret = -errno;
		goto err_fd;
	}
	return gmem_insert(m, gpa, size, hva, fd, 0, true);

err_fd:
	close(fd);
	return ret;
}

int gmem_add_mapping(struct gmem *m, uint64_t gpa, uint64_t size, void *hva,
		     int fd, uint64_t fd_offset)
{
	int ret;

	if (!hva)
		return -EINVAL;
	ret = gmem_check_new(m, gpa, size);
	if (ret)
		return ret;
	/* the host range must not wrap either */
	if ((uintptr_t)hva + (size - 1) < (uintptr_t)hva)
		return -EINVAL;
	return gmem_insert(m, gpa, size, hva, fd, fd_offset, false);
}

void gmem_destroy(struct gmem *m)
{
	for (unsigned int i = 0; i < m->nr; i++) {
		struct gmem_region *r = &m->r[i];

		if (!r->owned)
			continue;
		munmap(r->hva, r->size);
		if (r->fd >= 0)
			close(r->fd);
	}
	gmem_init(m);
}

void *gmem_hva(const struct gmem *m, uint64_t gpa, uint64_t len)
{
	uint64_t last;

	if (len == 0)
		len = 1;
	/* a range that wraps past 2^64 is never RAM */
	if (__builtin_add_overflow(gpa, len - 1, &last))
		return NULL;
	for (unsigned int i = 0; i < m->nr; i++) {
		const struct gmem_region *r = &m->r[i];

		/*
		 * Both ends in this region.  r->gpa + r->size - 1 cannot
		 * overflow: gmem_check_new refused such regions.  Checking
		 * `last` against the same region is what rejects a buffer that
		 * starts in one region and runs across a hole (or into the
		 * next region, whose host mapping need not be contiguous).
		 */
		if (gpa >= r->gpa && last <= r->gpa + (r->size - 1))
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

int gmem_read(const struct gmem *m, uint64_t gpa, void *dst, size_t len)
{
	const void *src = gmem_hva(m, gpa, len);

	if (!src)
		return -EFAULT;
	if (len)
		memcpy(dst, src, len);
	return 0;
}

int gmem_write(const struct gmem *m, uint64_t gpa, const void *src, size_t len)
{
	void *dst = gmem_hva(m, gpa, len);

	if (!dst)
		return -EFAULT;
	if (len)
		memcpy(dst, src, len);
	return 0;
}

bool gmem_is_ram(const struct gmem *m, uint64_t gpa, uint64_t len)
{
	return gmem_hva(m, gpa, len) != NULL;
}

uint64_t gmem_total(const struct gmem *m)
{
	uint64_t sum = 0;

	for (unsigned int i = 0; i < m->nr; i++)
		sum += m->r[i].size;
	return sum;
}
