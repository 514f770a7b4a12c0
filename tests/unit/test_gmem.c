/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/gmem.c: region rules (alignment, overlap, capacity),
 * strict bounds of gmem_hva at every edge, wrap-around, ranges straddling two
 * regions, and the memfd backing of gmem_add_ram.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gmem.h"
#include "fake_ram.h"

#define KIB 1024ull

/* Page-aligned host buffer for gmem_add_mapping. */
static void *host_buf(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	return p;
}

START_TEST(test_init_empty)
{
	struct gmem m;

	gmem_init(&m);
	ck_assert_uint_eq(m.nr, 0);
	ck_assert_uint_eq(gmem_total(&m), 0);
	ck_assert_ptr_null(gmem_hva(&m, 0, 1));
	ck_assert(!gmem_is_ram(&m, 0, 0));
	gmem_destroy(&m);
}
END_TEST

START_TEST(test_alignment_rules)
{
	struct gmem m;
	uint8_t *buf = host_buf(64 * KIB);

	gmem_init(&m);
	/* gpa not 4 KiB aligned */
	ck_assert_int_eq(gmem_add_mapping(&m, 0x1001, 4 * KIB, buf, -1, 0),
			 -EINVAL);
	ck_assert_int_eq(gmem_add_mapping(&m, 0x800, 4 * KIB, buf, -1, 0),
			 -EINVAL);
	/* size not a 4 KiB multiple, or zero */
	ck_assert_int_eq(gmem_add_mapping(&m, 0x1000, 4 * KIB + 1, buf, -1, 0),
			 -EINVAL);
	ck_assert_int_eq(gmem_add_mapping(&m, 0x1000, 100, buf, -1, 0),
			 -EINVAL);
	ck_assert_int_eq(gmem_add_mapping(&m, 0x1000, 0, buf, -1, 0), -EINVAL);
	/* no host mapping */
	ck_assert_int_eq(gmem_add_mapping(&m, 0x1000, 4 * KIB, NULL, -1, 0),
			 -EINVAL);
	/* a region that would wrap past 2^64 */
	ck_assert_int_eq(gmem_add_mapping(&m, UINT64_MAX - 4095, 8 * KIB, buf,
					  -1, 0),
			 -EINVAL);
	ck_assert_int_eq(gmem_add_ram(&m, 0x1001, 4 * KIB, "t"), -EINVAL);
	ck_assert_int_eq(gmem_add_ram(&m, 0x1000, 4 * KIB + 8, "t"), -EINVAL);
	ck_assert_int_eq(gmem_add_ram(&m, 0x1000, 0, "t"), -EINVAL);
	/* nothing was added by the failures */
	ck_assert_uint_eq(m.nr, 0);
	/* and a good one is accepted */
	ck_assert_int_eq(gmem_add_mapping(&m, 0x1000, 4 * KIB, buf, -1, 0), 0);
	ck_assert_uint_eq(m.nr, 1);
	gmem_destroy(&m);
	munmap(buf, 64 * KIB);
}
END_TEST

START_TEST(test_overlap_rejected)
{
	struct gmem m;
	uint8_t *buf = host_buf(64 * KIB);

	gmem_init(&m);
	/* [0x10000, 0x14000) */
	ck_assert_int_eq(gmem_add_mapping(&m, 0x10000, 16 * KIB, buf, -1, 0),
			 0);
	/* identical */
	ck_assert_int_eq(gmem_add_mapping(&m, 0x10000, 16 * KIB, buf, -1, 0),
			 -EEXIST);
	/* overlaps the start */
	ck_assert_int_eq(gmem_add_mapping(&m, 0xf000, 8 * KIB, buf, -1, 0),
			 -EEXIST);
	/* overlaps the end by one page */
	ck_assert_int_eq(gmem_add_mapping(&m, 0x13000, 8 * KIB, buf, -1, 0),
			 -EEXIST);
	/* inside */
	ck_assert_int_eq(gmem_add_mapping(&m, 0x11000, 4 * KIB, buf, -1, 0),
			 -EEXIST);
	/* contains it */
	ck_assert_int_eq(gmem_add_mapping(&m, 0x0, 1024 * KIB, buf, -1, 0),
			 -EEXIST);
	ck_assert_int_eq(gmem_add_ram(&m, 0x12000, 4 * KIB, "t"), -EEXIST);
	ck_assert_uint_eq(m.nr, 1);
	/* adjacent on both sides is fine; indices follow insertion order */
	ck_assert_int_eq(gmem_add_mapping(&m, 0x14000, 4 * KIB, buf, -1, 0), 1);
	ck_assert_int_eq(gmem_add_mapping(&m, 0xf000, 4 * KIB, buf, -1, 0), 2);
	ck_assert_uint_eq(m.nr, 3);
	ck_assert_uint_eq(gmem_total(&m), 24 * KIB);
	gmem_destroy(&m);
	munmap(buf, 64 * KIB);
}
END_TEST

START_TEST(test_region_limit)
{
	struct gmem m;
	uint8_t *buf = host_buf(4 * KIB);

	gmem_init(&m);
	for (unsigned int i = 0; i < SMVMM_GMEM_MAX_REGIONS; i++)
		ck_assert_int_eq(gmem_add_mapping(&m, (uint64_t)i * 0x100000,
						  4 * KIB, buf, -1, 0),
				 (int)i);
	ck_assert_int_eq(gmem_add_mapping(&m, 0x7000000, 4 * KIB, buf, -1, 0),
			 -ENOSPC);
	ck_assert_int_eq(gmem_add_ram(&m, 0x7000000, 4 * KIB, "t"), -ENOSPC);
	ck_assert_uint_eq(m.nr, SMVMM_GMEM_MAX_REGIONS);
	/* every region still translates to its own mapping */
	for (unsigned int i = 0; i < SMVMM_GMEM_MAX_REGIONS; i++)
		ck_assert_ptr_eq(gmem_hva(&m, (uint64_t)i * 0x100000 + 5, 1),
				 buf + 5);
	gmem_destroy(&m);
	ck_assert_uint_eq(m.nr, 0);
	munmap(buf, 4 * KIB);
}
END_TEST

START_TEST(test_hva_edges)
{
	struct gmem m;
	uint8_t *buf = host_buf(64 * KIB);
	const uint64_t base = 0x10000, size = 64 * KIB, last = base + size - 1;

	gmem_init(&m);
	ck_assert_int_eq(gmem_add_mapping(&m, base, size, buf, -1, 0), 0);

	/* whole region, first byte, last byte */
	ck_assert_ptr_eq(gmem_hva(&m, base, size), buf);
	ck_assert_ptr_eq(gmem_hva(&m, base, 1), buf);
	ck_assert_ptr_eq(gmem_hva(&m, last, 1), buf + size - 1);
	ck_assert_ptr_eq(gmem_hva(&m, last - 7, 8), buf + size - 8);
	/* one byte too many, one byte before, one byte after */
	ck_assert_ptr_null(gmem_hva(&m, base, size + 1));
	ck_assert_ptr_null(gmem_hva(&m, last - 7, 9));
	ck_assert_ptr_null(gmem_hva(&m, base - 1, 1));
	ck_assert_ptr_null(gmem_hva(&m, base - 1, 2));
	ck_assert_ptr_null(gmem_hva(&m, last + 1, 1));
	/* len 0 is treated as 1 */
	ck_assert_ptr_eq(gmem_hva(&m, last, 0), buf + size - 1);
	ck_assert_ptr_null(gmem_hva(&m, last + 1, 0));
	ck_assert_ptr_null(gmem_hva(&m, base - 1, 0));
	ck_assert(gmem_is_ram(&m, base, size));
	ck_assert(!gmem_is_ram(&m, base, size + 1));
	ck_assert(!gmem_is_ram(&m, 0, 1));
	gmem_destroy(&m);
	munmap(buf, 64 * KIB);
}
END_TEST

START_TEST(test_hva_wrap)
{
	struct gmem m;
	uint8_t *buf = host_buf(8 * KIB);

	gmem_init(&m);
	ck_assert_int_eq(gmem_add_mapping(&m, 0x10000, 8 * KIB, buf, -1, 0), 0);
	/* lengths that wrap the end address past 2^64 back into the region */
	ck_assert_ptr_null(gmem_hva(&m, 0x10000, UINT64_MAX));
	ck_assert_ptr_null(gmem_hva(&m, 0x10010, UINT64_MAX - 0xf));
	ck_assert_ptr_null(gmem_hva(&m, 0x10010, 0 - (uint64_t)0x10));
	ck_assert_ptr_null(gmem_hva(&m, UINT64_MAX, 1));
	ck_assert_ptr_null(gmem_hva(&m, UINT64_MAX, 2));
	ck_assert_ptr_null(gmem_hva(&m, UINT64_MAX - 0xf, 0x20));
	gmem_destroy(&m);

	/* the very last page of the address space is usable and exact */
	gmem_init(&m);
	ck_assert_int_eq(gmem_add_mapping(&m, UINT64_MAX - 4095, 4 * KIB, buf,
					  -1, 0),
			 0);
	ck_assert_ptr_eq(gmem_hva(&m, UINT64_MAX, 1), buf + 4095);
	ck_assert_ptr_eq(gmem_hva(&m, UINT64_MAX - 4095, 4096), buf);
	ck_assert_ptr_null(gmem_hva(&m, UINT64_MAX, 2));
	ck_assert_ptr_null(gmem_hva(&m, UINT64_MAX - 4095, 4097));
	ck_assert_ptr_null(gmem_hva(&m, UINT64_MAX - 4095, UINT64_MAX));
	gmem_destroy(&m);
	munmap(buf, 8 * KIB);
}
END_TEST

START_TEST(test_straddle_two_regions)
{
	struct gmem m;
	uint8_t *a = host_buf(64 * KIB), *b = host_buf(64 * KIB);
	uint8_t data[32];

	gmem_init(&m);
	/* adjacent in guest space, unrelated in host space */
	ck_assert_int_eq(gmem_add_mapping(&m, 0x10000, 64 * KIB, a, -1, 0), 0);
	ck_assert_int_eq(gmem_add_mapping(&m, 0x20000, 64 * KIB, b, -1, 0), 1);
	ck_assert_ptr_eq(gmem_hva(&m, 0x1fff0, 16), a + 0xfff0);
	ck_assert_ptr_eq(gmem_hva(&m, 0x20000, 16), b);
	ck_assert_ptr_null(gmem_hva(&m, 0x1fff0, 17));
	ck_assert_ptr_null(gmem_hva(&m, 0x1ffff, 2));
	ck_assert_ptr_null(gmem_hva(&m, 0x10000, 128 * KIB));
	ck_assert(!gmem_is_ram(&m, 0x1fff0, 32));
	memset(data, 0xab, sizeof(data));
	ck_assert_int_eq(gmem_write(&m, 0x1fff0, data, sizeof(data)), -EFAULT);
	/* a refused write writes nothing */
	for (unsigned int i = 0; i < 16; i++)
		ck_assert_uint_eq(a[0xfff0 + i], 0);
	ck_assert_uint_eq(b[0], 0);
	ck_assert_int_eq(gmem_read(&m, 0x1fff0, data, sizeof(data)), -EFAULT);
	gmem_destroy(&m);
	munmap(a, 64 * KIB);
	munmap(b, 64 * KIB);
}
END_TEST

START_TEST(test_hole_and_fake_ram)
{
	struct fake_ram fr;

	ck_assert_int_eq(fake_ram_init(&fr), 0);
	ck_assert_uint_eq(fr.mem.nr, 2);
	ck_assert_uint_eq(gmem_total(&fr.mem), 2 * FAKE_MIB);
	ck_assert_ptr_eq(gmem_hva(&fr.mem, FAKE_HOLE_GPA - 1, 1),
			 fr.base + FAKE_HOLE_GPA - 1);
	ck_assert_ptr_null(gmem_hva(&fr.mem, FAKE_HOLE_GPA, 1));
	ck_assert_ptr_null(gmem_hva(&fr.mem, FAKE_HOLE_GPA - 1, 2));
	ck_assert_ptr_null(gmem_hva(&fr.mem, FAKE_RAM1_GPA - 1, 1));
	ck_assert_ptr_eq(gmem_hva(&fr.mem, FAKE_RAM1_GPA, 1),
			 fr.base + FAKE_RAM1_GPA);
	/* spanning the hole entirely is still not one region */
	ck_assert_ptr_null(gmem_hva(&fr.mem, 0, FAKE_RAM_END));
	ck_assert_ptr_null(gmem_hva(&fr.mem, FAKE_RAM_END - 1, 2));
	ck_assert_ptr_null(gmem_hva(&fr.mem, FAKE_RAM_END, 1));
	fake_ram_destroy(&fr);
}
END_TEST

START_TEST(test_memfd_ram_rw)
{
	struct gmem m;
	const uint64_t gpa = 0x100000, size = 2048 * KIB;
	char out[64], back[64], via_fd[64];
	const struct gmem_region *r;
	int idx, flags;

	gmem_init(&m);
	idx = gmem_add_ram(&m, gpa, size, "test-ram");
	ck_assert_int_eq(idx, 0);
	r = &m.r[idx];
	ck_assert(r->owned);
	ck_assert_int_ge(r->fd, 0);
	ck_assert_ptr_nonnull(r->hva);
	ck_assert_uint_eq(r->gpa, gpa);
	ck_assert_uint_eq(r->size, size);
	/* MFD_CLOEXEC: the fd must not leak into children */
	flags = fcntl(r->fd, F_GETFD);
	ck_assert_int_ge(flags, 0);
	ck_assert(flags & FD_CLOEXEC);
	/* the memfd has the region's size */
	ck_assert_int_eq(lseek(r->fd, 0, SEEK_END), (off_t)size);

	/* fresh RAM reads as zero, at both ends */
	ck_assert_int_eq(gmem_read(&m, gpa, back, sizeof(back)), 0);
	for (unsigned int i = 0; i < sizeof(back); i++)
		ck_assert_int_eq(back[i], 0);

	for (unsigned int i = 0; i < sizeof(out); i++)
		out[i] = (char)(i * 7 + 1);
	/* last 64 bytes of the region */
	ck_assert_int_eq(gmem_write(&m, gpa + size - 64, out, 64), 0);
	ck_assert_int_eq(gmem_read(&m, gpa + size - 64, back, 64), 0);
	ck_assert_mem_eq(out, back, 64);
	/* MAP_SHARED: the bytes are in the memfd itself */
	ck_assert_int_eq(pread(r->fd, via_fd, 64, (off_t)(size - 64)), 64);
	ck_assert_mem_eq(out, via_fd, 64);
	/* one byte further is refused */
	ck_assert_int_eq(gmem_write(&m, gpa + size - 63, out, 64), -EFAULT);
	ck_assert_int_eq(gmem_read(&m, gpa - 1, back, 2), -EFAULT);
	/* and a write through the fd is visible through gmem */
	ck_assert_int_eq(pwrite(r->fd, "hello", 5, 4096), 5);
	ck_assert_mem_eq(gmem_hva(&m, gpa + 4096, 5), "hello", 5);

	int fd = r->fd;
	gmem_destroy(&m);
	ck_assert_uint_eq(m.nr, 0);
	/* owned: closed by gmem_destroy */
	ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
	ck_assert_int_eq(errno, EBADF);
}
END_TEST

START_TEST(test_mapping_not_owned)
{
	struct gmem m;
	uint8_t *buf = host_buf(8 * KIB);
	int pipefd[2];

	ck_assert_int_eq(pipe(pipefd), 0);
	gmem_init(&m);
	ck_assert_int_eq(gmem_add_mapping(&m, 0x4000, 8 * KIB, buf, pipefd[0],
					  0x1000),
			 0);
	ck_assert(!m.r[0].owned);
	ck_assert_int_eq(m.r[0].fd, pipefd[0]);
	ck_assert_uint_eq(m.r[0].fd_offset, 0x1000);
	ck_assert_int_eq(gmem_write(&m, 0x5000, "x", 1), 0);
	ck_assert_uint_eq(buf[0x1000], 'x');
	gmem_destroy(&m);
	/* neither unmapped nor closed */
	buf[0] = 1;
	ck_assert_int_ge(fcntl(pipefd[0], F_GETFD), 0);
	close(pipefd[0]);
	close(pipefd[1]);
	munmap(buf, 8 * KIB);
}
END_TEST

static Suite *gmem_suite(void)
{
	Suite *s = suite_create("gmem");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_init_empty);
	tcase_add_test(tc, test_alignment_rules);
	tcase_add_test(tc, test_overlap_rejected);
	tcase_add_test(tc, test_region_limit);
	tcase_add_test(tc, test_hva_edges);
	tcase_add_test(tc, test_hva_wrap);
	tcase_add_test(tc, test_straddle_two_regions);
	tcase_add_test(tc, test_hole_and_fake_ram);
	tcase_add_test(tc, test_memfd_ram_rw);
	tcase_add_test(tc, test_mapping_not_owned);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(gmem_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
