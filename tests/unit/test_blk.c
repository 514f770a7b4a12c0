// SPDX-License-Identifier: MIT
/*
 * virtio-blk (plugins/virtio-blk/blk.c) through the driver model: the real
 * smvmm-virtio-blk.so, the real loader, device host, virtio-mmio transport
 * and virtqueues, fake guest RAM with a hole, and a real image file in
 * $TMPDIR whose content is checked from the host side.
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "devtest.h"

#define BLK_ID 2
#define F_SIZE_MAX (1ULL << 1)
#define F_SEG_MAX (1ULL << 2)
#define F_RO (1ULL << 5)
#define F_BLK_SIZE (1ULL << 6)
#define F_FLUSH (1ULL << 9)
#define F_MQ (1ULL << 12)
#define F_DISCARD (1ULL << 13)
#define F_WRITE_ZEROES (1ULL << 14)
#define F_INDIRECT (1ULL << VIRTIO_F_INDIRECT_DESC)
#define F_EVENT_IDX (1ULL << VIRTIO_F_EVENT_IDX)
#define F_VERSION_1 (1ULL << VIRTIO_F_VERSION_1)

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_GET_LIFETIME 10
#define T_DISCARD 11
#define T_WRITE_ZEROES 13
#define T_SECURE_ERASE 14

#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2
#define S_NONE 0xee /* what we put in the status byte before a request */

#define SECTOR 512u
#define IMG_SECTORS 2048u /* 1 MiB images */

/* config space offsets (§5.2.4) */
#define C_CAPACITY 0
#define C_SIZE_MAX 8
#define C_SEG_MAX 12
#define C_BLK_SIZE 20
#define C_WRITEBACK 32
#define C_NUM_QUEUES 34
#define C_MAX_DISCARD_SECTORS 36
#define C_MAX_DISCARD_SEG 40
#define C_DISCARD_ALIGN 44
#define C_MAX_WZ_SECTORS 48
#define C_MAX_WZ_SEG 52
#define C_WZ_MAY_UNMAP 56

static char img[PATH_MAX];

/* A byte of the reference pattern at image offset `off`. */
static uint8_t pat(uint64_t off, unsigned int seed)
{
	uint64_t x = (off / 8) * 0x9e3779b97f4a7c15ULL + seed;

	x ^= x >> 29;
	return (uint8_t)(x >> (8 * (off % 8)));
}

/* Create a fresh image of `bytes` bytes filled with pattern `seed`. */
static void make_image(uint64_t bytes, unsigned int seed)
{
	uint8_t buf[4096];
	int fd;

	snprintf(img, sizeof(img), "%s/smvmm-test-blk-%d.img",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", getpid());
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_msg(fd >= 0, "%s: %s", img, strerror(errno));
	for (uint64_t off = 0; off < bytes; off += sizeof(buf)) {
		size_t n = bytes - off < sizeof(buf) ? bytes - off : sizeof(buf);

		for (size_t i = 0; i < n; i++)
			buf[i] = pat(off + i, seed);
		ck_assert_int_eq(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
	}
	close(fd);
}

static void unmake_image(void)
{
	if (img[0])
		unlink(img);
}

static void file_read(uint64_t off, void *buf, size_t len)
{
	int fd = open(img, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static bool file_is_pattern(uint64_t off, size_t len, unsigned int seed)
{
	uint8_t *buf = malloc(len);
	bool ok = true;

	file_read(off, buf, len);
	for (size_t i = 0; i < len && ok; i++)
		ok = buf[i] == pat(off + i, seed);
	free(buf);
	return ok;
}

static bool all_val(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

static bool file_is_zero(uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len);
	bool ok;

	file_read(off, buf, len);
	ok = all_val(buf, len, 0);
	free(buf);
	return ok;
}

/* devtest_new with the image path prepended to kv. */
static struct devtest *blk_new_opts(const char *const *kv,
				    const struct devtest_opts *opts,
				    char *err, size_t errlen)
{
	struct devtest_opts o = { .threaded = true };
	const char *all[16];
	char pathkv[PATH_MAX + 8];
	int n = 0;

	if (opts)
		o = *opts;
	o.plugin_dir = SMVMM_BUILD_DIR;
	snprintf(pathkv, sizeof(pathkv), "path=%s", img);
	all[n++] = pathkv;
	for (; kv && kv[n - 1] && n < 15; n++)
		all[n] = kv[n - 1];
	all[n] = NULL;
	return devtest_new("virtio-blk", all, &o, err, errlen);
}

static struct devtest *blk_new(const char *const *kv,
			       const struct devtest_opts *opts)
{
	char err[1024];
	struct devtest *t = blk_new_opts(kv, opts, err, sizeof(err));

	ck_assert_msg(t, "devtest_new: %s", err);
	return t;
}

static struct devtest *blk_up(const char *const *kv)
{
	struct devtest *t = blk_new(kv, NULL);
	int rc = devtest_init_device(t, DEVTEST_FEATURES_ALL);

	ck_assert_msg(rc == 0, "init: %d %s", rc, devtest_error(t));
	return t;
}

/* devtest_new that must fail; returns its message. */
static const char *blk_new_fails(const char *const *kv)
{
	static char err[1024];
	struct devtest *t;

	err[0] = '\0';
	t = blk_new_opts(kv, NULL, err, sizeof(err));
	ck_assert_msg(!t, "devtest_new accepted the configuration");
	ck_assert(err[0]);
	return err;
}

static void wait_needs_reset(struct devtest *t)
{
	for (int i = 0; i < 500; i++) {
		if (devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET)
			return;
		usleep(2000);
	}
	ck_abort_msg("device did not enter NEEDS_RESET (Status %#x)",
		     devtest_status(t));
}

/* One request built from parts. */
struct rq {
	uint16_t q;
	uint32_t type;
	uint64_t sector;
	uint64_t data;      /* gpa, 0 = none */
	uint32_t len;
	bool data_write;    /* data descriptor device-writable */
	unsigned int flags; /* devtest_chain_begin flags */
};

/* Submit a request (header 16 bytes readable, data, 1-byte status). */
static int submit(struct devtest *t, const struct rq *r, uint64_t *status)
{
	uint64_t hdr = devtest_alloc(t, 16, 8);
	uint8_t *h = devtest_gpa(t, hdr, 16);
	uint64_t le_sector = htole64(r->sector);
	uint32_t le_type = htole32(r->type);
	int head;

	*status = devtest_alloc(t, 1, 1);
	ck_assert(hdr && *status);
	memcpy(h, &le_type, 4);
	memcpy(h + 8, &le_sector, 8);
	*(uint8_t *)devtest_gpa(t, *status, 1) = S_NONE;
	ck_assert_int_eq(devtest_chain_begin(t, r->q, r->flags), 0);
	ck_assert_int_ge(devtest_chain_add(t, hdr, 16, false), 0);
	if (r->data)
		ck_assert_int_ge(devtest_chain_add(t, r->data, r->len,
						   r->data_write), 0);
	ck_assert_int_ge(devtest_chain_add(t, *status, 1, true), 0);
	head = devtest_chain_submit(t);
	ck_assert_msg(head >= 0, "submit: %s", devtest_error(t));
	return head;
}

/* Run a request to completion; returns the status byte. */
static uint8_t run(struct devtest *t, const struct rq *r, uint32_t *written)
{
	struct devtest_mark m = devtest_alloc_mark(t);
	uint64_t st;
	uint32_t len;
	uint16_t id;
	int head, rc;
	uint8_t s;

	head = submit(t, r, &st);
	devtest_kick(t, r->q);
	rc = devtest_wait_used(t, r->q, 5000, &id, &len);
	ck_assert_msg(rc == 0, "wait_used: %d %s", rc, devtest_error(t));
	ck_assert_int_eq(id, head);
	s = *(uint8_t *)devtest_gpa(t, st, 1);
	if (written)
		*written = len;
	devtest_alloc_release(t, m);
	return s;
}

static uint8_t rw(struct devtest *t, uint32_t type, uint64_t sector,
		  uint64_t data, uint32_t len)
{
	struct rq r = { .type = type, .sector = sector, .data = data,
			.len = len, .data_write = type == T_IN ||
						  type == T_GET_ID };

	return run(t, &r, NULL);
}

/* A discard / write zeroes request with n segments. */
struct seg {
	uint64_t sector;
	uint32_t num, flags;
};

static uint8_t segs(struct devtest *t, uint32_t type, const struct seg *s,
		    unsigned int n)
{
	uint64_t gpa = devtest_alloc(t, 16u * n + 16, 8);
	uint8_t *p = devtest_gpa(t, gpa, 16u * n + 16);

	for (unsigned int i = 0; i < n; i++) {
		uint64_t sec = htole64(s[i].sector);
		uint32_t num = htole32(s[i].num), fl = htole32(s[i].flags);

		memcpy(p + 16 * i, &sec, 8);
		memcpy(p + 16 * i + 8, &num, 4);
		memcpy(p + 16 * i + 12, &fl, 4);
	}
	return rw(t, type, 0, gpa, 16u * n);
}

static uint32_t cfg32(struct devtest *t, uint32_t off)
{
	uint32_t v;

	devtest_config_read(t, off, &v, 4);
	return le32toh(v);
}

static uint64_t device_features(struct devtest *t)
{
	uint32_t lo, hi;

	devtest_write32(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	lo = devtest_read32(t, VIRTIO_MMIO_DEVICE_FEATURES);
	devtest_write32(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	hi = devtest_read32(t, VIRTIO_MMIO_DEVICE_FEATURES);
	return (uint64_t)hi << 32 | lo;
}

/* The fd numbers of this process open on `path` (the plugin's). */
static int image_fds(const char *path, int *fds, int max)
{
	char link[PATH_MAX], target[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	ck_assert(d);
	while ((de = readdir(d)) && n < max) {
		ssize_t l;

		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
		l = readlink(link, target, sizeof(target) - 1);
		if (l <= 0)
			continue;
		target[l] = '\0';
		if (!strcmp(target, path))
			fds[n++] = atoi(de->d_name);
	}
	closedir(d);
	return n;
}

/* ------------------------------------------------------------------------ */

START_TEST(test_identity_features_config)
{
	struct devtest *t;
	uint64_t f, cap;

	make_image(IMG_SECTORS * SECTOR + 100, 1); /* partial last sector */
	t = blk_new(NULL, NULL);
	ck_assert_uint_eq(devtest_read32(t, VIRTIO_MMIO_DEVICE_ID), BLK_ID);
	f = device_features(t);
	ck_assert_uint_eq(f, F_VERSION_1 | F_EVENT_IDX | F_INDIRECT |
				     F_SIZE_MAX | F_SEG_MAX | F_BLK_SIZE |
				     F_FLUSH | F_MQ | F_DISCARD |
				     F_WRITE_ZEROES);
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_uint_eq(devtest_num_queues(t), 1);
	devtest_write32(t, VIRTIO_MMIO_QUEUE_SEL, 0);
	ck_assert_uint_eq(devtest_read32(t, VIRTIO_MMIO_QUEUE_NUM_MAX), 256);

	/* §5.2.4: capacity in 512-byte sectors, the partial one hidden. */
	devtest_config_read(t, C_CAPACITY, &cap, 8);
	ck_assert_uint_eq(le64toh(cap), IMG_SECTORS);
	ck_assert_uint_eq(cfg32(t, C_SIZE_MAX), 1u << 20);
	ck_assert_uint_eq(cfg32(t, C_SEG_MAX), 254);
	ck_assert_uint_eq(cfg32(t, C_BLK_SIZE), 512);
	ck_assert_uint_eq(cfg32(t, C_NUM_QUEUES) & 0xffff, 1);
	ck_assert_uint_eq(cfg32(t, C_MAX_DISCARD_SECTORS), 1u << 22);
	ck_assert_uint_eq(cfg32(t, C_MAX_DISCARD_SEG), 32);
	ck_assert_uint_eq(cfg32(t, C_DISCARD_ALIGN), 8);
	ck_assert_uint_eq(cfg32(t, C_MAX_WZ_SECTORS), 1u << 22);
	ck_assert_uint_eq(cfg32(t, C_MAX_WZ_SEG), 32);
	ck_assert_uint_eq(cfg32(t, C_WZ_MAY_UNMAP) & 0xff, 1);
	ck_assert_uint_eq(cfg32(t, C_WRITEBACK) & 0xff, 1);
	/* Byte-wise reads agree (Linux reads u8 fields that way). */
	uint8_t b8[8];

	for (int i = 0; i < 8; i++)
		devtest_config_read(t, C_CAPACITY + (uint32_t)i, &b8[i], 1);
	memcpy(&cap, b8, 8);
	ck_assert_uint_eq(le64toh(cap), IMG_SECTORS);
	/* The config space is read-only (no CONFIG_WCE). */
	devtest_config_write(t, C_WRITEBACK, "\0\0\0\0", 4);
	ck_assert_uint_eq(cfg32(t, C_WRITEBACK) & 0xff, 1);
	ck_assert(!(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET));
	ck_assert_str_eq(devtest_plugin(t)->name, "virtio-blk");
	devtest_free(t);

	/* Options change what is offered. */
	{
		const char *kv[] = { "readonly=on", "discard=off", "queues=4",
				     "queue_size=64", NULL };

		t = blk_new(kv, NULL);
		f = device_features(t);
		ck_assert(f & F_RO);
		ck_assert(!(f & F_DISCARD));
		ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL),
				 0);
		ck_assert_uint_eq(devtest_num_queues(t), 4);
		devtest_write32(t, VIRTIO_MMIO_QUEUE_SEL, 3);
		ck_assert_uint_eq(devtest_read32(t, VIRTIO_MMIO_QUEUE_NUM_MAX),
				  64);
		ck_assert_uint_eq(cfg32(t, C_NUM_QUEUES) & 0xffff, 4);
		ck_assert_uint_eq(cfg32(t, C_SEG_MAX), 62);
		ck_assert_uint_eq(cfg32(t, C_MAX_DISCARD_SECTORS), 0);
		ck_assert_uint_eq(cfg32(t, C_WZ_MAY_UNMAP) & 0xff, 0);
		devtest_free(t);
	}
	unmake_image();
}
END_TEST

START_TEST(test_refuses_legacy_driver)
{
	struct devtest *t;

	make_image(IMG_SECTORS * SECTOR, 1);
	t = blk_new(NULL, NULL);
	ck_assert_int_eq(devtest_init_device(t, F_FLUSH), -ENOTSUP);
	ck_assert_int_eq(devtest_init_device(t, F_VERSION_1), 0);
	devtest_free(t);
	unmake_image();
}
END_TEST

START_TEST(test_read_write)
{
	struct devtest *t;
	uint64_t buf;
	uint8_t *p;
	uint32_t written;

	make_image(IMG_SECTORS * SECTOR, 7);
	t = blk_up(NULL);
	buf = devtest_alloc(t, 64 * 1024, 4096);
	p = devtest_gpa(t, buf, 64 * 1024);

	/* Reads at the start, in the middle and the very last sector. */
	const uint64_t secs[] = { 0, 1, 777, IMG_SECTORS - 8, IMG_SECTORS - 1 };
	for (size_t i = 0; i < sizeof(secs) / sizeof(secs[0]); i++) {
		uint32_t n = secs[i] + 8 <= IMG_SECTORS ? 8 : 1;
		struct rq r = { .type = T_IN, .sector = secs[i], .data = buf,
				.len = n * SECTOR, .data_write = true };

		memset(p, 0, n * SECTOR);
		ck_assert_int_eq(run(t, &r, &written), S_OK);
		/* §2.7.8: data + status written. */
		ck_assert_uint_eq(written, n * SECTOR + 1);
		for (uint32_t k = 0; k < n * SECTOR; k++)
			ck_assert_uint_eq(p[k], pat(secs[i] * SECTOR + k, 7));
	}

	/* A 64 KiB write, then read back through the device and the host. */
	for (uint32_t k = 0; k < 64 * 1024; k++)
		p[k] = pat(k, 99);
	ck_assert_int_eq(rw(t, T_OUT, 100, buf, 64 * 1024), S_OK);
	ck_assert(file_is_pattern(100 * SECTOR - 4096, 4096, 7));
	{
		uint8_t *host = malloc(64 * 1024);

		file_read(100 * SECTOR, host, 64 * 1024);
		ck_assert(!memcmp(host, p, 64 * 1024));
		free(host);
	}
	ck_assert(file_is_pattern(100 * SECTOR + 64 * 1024, 4096, 7));
	memset(p, 0, 64 * 1024);
	ck_assert_int_eq(rw(t, T_IN, 100, buf, 64 * 1024), S_OK);
	for (uint32_t k = 0; k < 64 * 1024; k++)
		ck_assert_uint_eq(p[k], pat(k, 99));

	/* A zero-length read or write is a valid no-op. */
	{
		struct rq r = { .type = T_IN, .sector = 5 };

		ck_assert_int_eq(run(t, &r, NULL), S_OK);
		r.type = T_OUT;
		ck_assert_int_eq(run(t, &r, &written), S_OK);
		ck_assert_uint_eq(written, 1);
	}
	/* FLUSH */
	{
		struct rq r = { .type = T_FLUSH };

		ck_assert_int_eq(run(t, &r, &written), S_OK);
		ck_assert_uint_eq(written, 1);
	}
	devtest_free(t);
	unmake_image();
}
END_TEST

/* Data split over many descriptors in both RAM regions, header and status
 * framed unusually, and an indirect table. */
START_TEST(test_scatter_gather_and_framing)
{
	struct devtest *t;
	uint64_t a, b, c, hdr, st;
	uint8_t *pa, *pb, *pc;
	uint16_t id;
	uint32_t len;

	make_image(IMG_SECTORS * SECTOR, 3);
	t = blk_up(NULL);
	a = devtest_alloc_in(t, 0, 100, 1);
	b = devtest_alloc_in(t, 1, 800, 1);
	c = devtest_alloc_in(t, 0, 124, 1);
	pa = devtest_gpa(t, a, 100);
	pb = devtest_gpa(t, b, 800);
	pc = devtest_gpa(t, c, 124);
	hdr = devtest_alloc(t, 16, 1);
	st = devtest_alloc(t, 1, 1);

	/* Read 1024 bytes from sector 10 into 100 + 800 + 124 bytes, the
	 * header split 5 + 11, a zero-length descriptor in between. */
	{
		uint8_t *h = devtest_gpa(t, hdr, 16);
		uint64_t sec = htole64(10);

		memset(h, 0, 16);
		memcpy(h + 8, &sec, 8);
		ck_assert_int_eq(devtest_chain_begin(t, 0, 0), 0);
		devtest_chain_add(t, hdr, 5, false);
		devtest_chain_add(t, hdr + 5, 11, false);
		devtest_chain_add(t, a, 100, true);
		devtest_chain_add(t, a, 0, true);
		devtest_chain_add(t, b, 800, true);
		devtest_chain_add(t, c, 124, true);
		devtest_chain_add(t, st, 1, true);
		ck_assert_int_ge(devtest_chain_submit(t), 0);
		devtest_kick(t, 0);
		ck_assert_int_eq(devtest_wait_used(t, 0, 5000, &id, &len), 0);
		ck_assert_uint_eq(*(uint8_t *)devtest_gpa(t, st, 1), S_OK);
		ck_assert_uint_eq(len, 1025);
		for (int k = 0; k < 100; k++)
			ck_assert_uint_eq(pa[k], pat(10 * SECTOR + k, 3));
		for (int k = 0; k < 800; k++)
			ck_assert_uint_eq(pb[k], pat(10 * SECTOR + 100 + k, 3));
		for (int k = 0; k < 124; k++)
			ck_assert_uint_eq(pc[k], pat(10 * SECTOR + 900 + k, 3));
	}

	/* Status byte sharing the last data descriptor (§2.6.4 framing):
	 * 512 bytes of data + 1 status in one 513-byte buffer. */
	{
		uint64_t d = devtest_alloc(t, 513, 1);
		uint8_t *pd = devtest_gpa(t, d, 513);
		uint8_t *h = devtest_gpa(t, hdr, 16);
		uint64_t sec = htole64(3);

		memset(h, 0, 16);
		memcpy(h + 8, &sec, 8);
		pd[512] = S_NONE;
		ck_assert_int_eq(devtest_chain_begin(t, 0, 0), 0);
		devtest_chain_add(t, hdr, 16, false);
		devtest_chain_add(t, d, 513, true);
		ck_assert_int_ge(devtest_chain_submit(t), 0);
		devtest_kick(t, 0);
		ck_assert_int_eq(devtest_wait_used(t, 0, 5000, &id, &len), 0);
		ck_assert_uint_eq(pd[512], S_OK);
		for (int k = 0; k < 512; k++)
			ck_assert_uint_eq(pd[k], pat(3 * SECTOR + k, 3));
	}

	/* Header + write data in one readable descriptor, indirect. */
	{
		uint64_t d = devtest_alloc(t, 16 + 1024, 8);
		uint8_t *pd = devtest_gpa(t, d, 16 + 1024);
		uint64_t sec = htole64(20);
		uint32_t type = htole32(T_OUT);

		memset(pd, 0, 16);
		memcpy(pd, &type, 4);
		memcpy(pd + 8, &sec, 8);
		for (int k = 0; k < 1024; k++)
			pd[16 + k] = (uint8_t)(k * 7);
		ck_assert_int_eq(devtest_chain_begin(t, 0,
						     DEVTEST_CHAIN_INDIRECT), 0);
		devtest_chain_add(t, d, 16 + 1024, false);
		devtest_chain_add(t, st, 1, true);
		ck_assert_int_ge(devtest_chain_submit(t), 0);
		devtest_kick(t, 0);
		ck_assert_int_eq(devtest_wait_used(t, 0, 5000, &id, &len), 0);
		ck_assert_uint_eq(*(uint8_t *)devtest_gpa(t, st, 1), S_OK);
		uint8_t host[1024];

		file_read(20 * SECTOR, host, 1024);
		for (int k = 0; k < 1024; k++)
			ck_assert_uint_eq(host[k], (uint8_t)(k * 7));
	}
	devtest_free(t);
	unmake_image();
}
END_TEST

START_TEST(test_get_id)
{
	const char *kv[] = { "serial=ABCDEFGHIJKLMNOPQRST", NULL };
	const char *kv2[] = { "serial=disk-7", NULL };
	struct devtest *t;
	uint64_t buf;
	uint8_t *p;
	uint32_t written;

	make_image(IMG_SECTORS * SECTOR, 1);
	t = blk_up(kv);
	buf = devtest_alloc(t, 64, 8);
	p = devtest_gpa(t, buf, 64);

	/* §5.2.6: 20 bytes, no NUL when all are used. */
	memset(p, 0xaa, 64);
	{
		struct rq r = { .type = T_GET_ID, .data = buf, .len = 20,
				.data_write = true };

		ck_assert_int_eq(run(t, &r, &written), S_OK);
		ck_assert_uint_eq(written, 21);
	}
	ck_assert(!memcmp(p, "ABCDEFGHIJKLMNOPQRST", 20));
	ck_assert_uint_eq(p[20], 0xaa);
	/* A short buffer gets a prefix. */
	memset(p, 0xaa, 64);
	ck_assert_int_eq(rw(t, T_GET_ID, 0, buf, 7), S_OK);
	ck_assert(!memcmp(p, "ABCDEFG", 7));
	ck_assert_uint_eq(p[7], 0xaa);
	/* A readable data buffer is the wrong direction. */
	{
		struct rq r = { .type = T_GET_ID, .data = buf, .len = 20 };

		ck_assert_int_eq(run(t, &r, NULL), S_IOERR);
	}
	devtest_free(t);

	t = blk_up(kv2);
	buf = devtest_alloc(t, 64, 8);
	p = devtest_gpa(t, buf, 64);
	memset(p, 0xaa, 64);
	ck_assert_int_eq(rw(t, T_GET_ID, 0, buf, 40), S_OK);
	ck_assert(!memcmp(p, "disk-7", 6));
	ck_assert(all_val(p + 6, 34, 0)); /* NUL-padded */
	devtest_free(t);

	/* No serial: all zeroes. */
	t = blk_up(NULL);
	buf = devtest_alloc(t, 64, 8);
	p = devtest_gpa(t, buf, 64);
	memset(p, 0xaa, 64);
	ck_assert_int_eq(rw(t, T_GET_ID, 0, buf, 20), S_OK);
	ck_assert(all_val(p, 20, 0));
	devtest_free(t);
	unmake_image();
}
END_TEST

static long file_blocks(void)
{
	struct stat st;

	ck_assert_int_eq(stat(img, &st), 0);
	return (long)st.st_blocks;
}

START_TEST(test_discard_and_write_zeroes)
{
	struct devtest *t;
	struct stat st0;
	long before, after;

	make_image(IMG_SECTORS * SECTOR, 5);
	ck_assert_int_eq(stat(img, &st0), 0);
	t = blk_up(NULL);

	/* DISCARD 256 KiB at 256 KiB: a hole (fewer blocks), reads zeroes,
	 * the size is unchanged, neighbours untouched. */
	before = file_blocks();
	{
		struct seg s = { 512, 512, 0 };

		ck_assert_int_eq(segs(t, T_DISCARD, &s, 1), S_OK);
	}
	after = file_blocks();
	ck_assert_msg(after <= before - 256 * 1024 / 512,
		      "blocks %ld -> %ld", before, after);
	ck_assert(file_is_zero(512 * SECTOR, 256 * 1024));
	ck_assert(file_is_pattern(511 * SECTOR, SECTOR, 5));
	ck_assert(file_is_pattern(1024 * SECTOR, SECTOR, 5));
	{
		off_t hole = lseek(open(img, O_RDONLY), 0, SEEK_HOLE);

		ck_assert_int_eq(hole, 512 * SECTOR);
	}

	/* WRITE_ZEROES without unmap: zeroes, blocks stay allocated
	 * (ZERO_RANGE); two segments at once. */
	before = file_blocks();
	{
		struct seg s[2] = { { 10, 3, 0 }, { 1500, 16, 0 } };

		ck_assert_int_eq(segs(t, T_WRITE_ZEROES, s, 2), S_OK);
	}
	ck_assert(file_is_zero(10 * SECTOR, 3 * SECTOR));
	ck_assert(file_is_zero(1500 * SECTOR, 16 * SECTOR));
	ck_assert(file_is_pattern(9 * SECTOR, SECTOR, 5));
	ck_assert(file_is_pattern(13 * SECTOR, SECTOR, 5));
	ck_assert(file_is_pattern(1516 * SECTOR, SECTOR, 5));

	/* WRITE_ZEROES with unmap (may_unmap = 1 with discard=on): a hole. */
	before = file_blocks();
	{
		struct seg s = { 1024, 256, 1 };

		ck_assert_int_eq(segs(t, T_WRITE_ZEROES, &s, 1), S_OK);
	}
	ck_assert(file_is_zero(1024 * SECTOR, 256 * SECTOR));
	ck_assert_int_le(file_blocks(), before - 256);
	{
		struct stat st;

		ck_assert_int_eq(stat(img, &st), 0);
		ck_assert_int_eq(st.st_size, st0.st_size);
	}
	/* Up to the last sector is fine; zero sectors is a no-op. */
	{
		struct seg s[2] = { { IMG_SECTORS - 1, 1, 0 },
				    { 0, 0, 0 } };

		ck_assert_int_eq(segs(t, T_DISCARD, s, 2), S_OK);
		ck_assert_int_eq(segs(t, T_WRITE_ZEROES, s, 2), S_OK);
		ck_assert(file_is_zero((IMG_SECTORS - 1) * SECTOR, SECTOR));
		ck_assert(file_is_pattern(0, SECTOR, 5));
	}
	devtest_free(t);

	/* discard=off: DISCARD not offered -> UNSUPP; WRITE_ZEROES with
	 * the unmap flag still zeroes (without punching). */
	{
		const char *kv[] = { "discard=off", NULL };
		struct seg s = { 100, 8, 0 };
		struct seg u = { 200, 8, 1 };

		make_image(IMG_SECTORS * SECTOR, 6);
		t = blk_up(kv);
		ck_assert_int_eq(segs(t, T_DISCARD, &s, 1), S_UNSUPP);
		ck_assert(file_is_pattern(100 * SECTOR, 8 * SECTOR, 6));
		ck_assert_int_eq(segs(t, T_WRITE_ZEROES, &u, 1), S_OK);
		ck_assert(file_is_zero(200 * SECTOR, 8 * SECTOR));
		devtest_free(t);
	}
	/* Not negotiated: UNSUPP even though offered. */
	{
		struct seg s = { 100, 8, 0 };

		t = blk_new(NULL, NULL);
		ck_assert_int_eq(devtest_init_device(t, F_VERSION_1 | F_FLUSH),
				 0);
		ck_assert_int_eq(segs(t, T_DISCARD, &s, 1), S_UNSUPP);
		ck_assert_int_eq(segs(t, T_WRITE_ZEROES, &s, 1), S_UNSUPP);
		ck_assert(file_is_pattern(100 * SECTOR, 8 * SECTOR, 6));
		devtest_free(t);
	}
	unmake_image();
}
END_TEST

START_TEST(test_bad_segments)
{
	struct devtest *t;
	uint64_t huge = (UINT64_MAX >> 9) + 1; /* * 512 wraps to 0 */
	static const struct {
		struct seg s;
		uint8_t want;
	} bad[] = {
		{ { IMG_SECTORS, 1, 0 }, S_IOERR },
		{ { IMG_SECTORS - 1, 2, 0 }, S_IOERR },
		{ { 0, IMG_SECTORS + 1, 0 }, S_IOERR },
		{ { UINT64_MAX, 1, 0 }, S_IOERR },
		{ { UINT64_MAX - 2, 8, 0 }, S_IOERR }, /* sector + num wraps */
		{ { 0, (1u << 22) + 1, 0 }, S_IOERR }, /* > max sectors */
		{ { 0, 8, 2 }, S_UNSUPP },	        /* unknown flag */
		{ { 0, 8, 0x80000000u }, S_UNSUPP },
	};

	make_image(IMG_SECTORS * SECTOR, 8);
	t = blk_up(NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(segs(t, T_DISCARD, &bad[i].s, 1) == bad[i].want,
			      "discard case %zu", i);
		ck_assert_msg(segs(t, T_WRITE_ZEROES, &bad[i].s, 1) ==
				      bad[i].want, "wz case %zu", i);
	}
	{
		struct seg s = { huge, 8, 0 };

		ck_assert_int_eq(segs(t, T_DISCARD, &s, 1), S_IOERR);
		ck_assert_int_eq(segs(t, T_WRITE_ZEROES, &s, 1), S_IOERR);
	}
	/* §5.2.6.2: the unmap flag on a discard is UNSUPP. */
	{
		struct seg s = { 0, 8, 1 };

		ck_assert_int_eq(segs(t, T_DISCARD, &s, 1), S_UNSUPP);
	}
	/* A bad segment after a good one: nothing is done. */
	{
		struct seg s[2] = { { 0, 8, 0 }, { IMG_SECTORS, 8, 0 } };

		ck_assert_int_eq(segs(t, T_WRITE_ZEROES, s, 2), S_IOERR);
	}
	/* Segment list: none, not a multiple of 16, more than 32. */
	{
		uint64_t d = devtest_alloc(t, 34 * 16, 8);

		ck_assert_int_eq(rw(t, T_DISCARD, 0, d, 0), S_IOERR);
		ck_assert_int_eq(rw(t, T_DISCARD, 0, d, 24), S_IOERR);
		ck_assert_int_eq(rw(t, T_WRITE_ZEROES, 0, d, 33 * 16), S_IOERR);
		ck_assert_int_eq(rw(t, T_WRITE_ZEROES, 0, d, 32 * 16), S_OK);
	}
	/* A device-writable segment list is the wrong direction. */
	{
		uint64_t d = devtest_alloc(t, 16, 8);
		struct rq r = { .type = T_DISCARD, .data = d, .len = 16,
				.data_write = true };

		ck_assert_int_eq(run(t, &r, NULL), S_IOERR);
	}
	ck_assert(file_is_pattern(SECTOR, (IMG_SECTORS - 1) * SECTOR, 8));
	ck_assert(!(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET));
	devtest_free(t);
	unmake_image();
}
END_TEST

START_TEST(test_bad_requests)
{
	struct devtest *t;
	uint64_t buf;
	uint8_t *p;

	make_image(IMG_SECTORS * SECTOR, 9);
	t = blk_up(NULL);
	buf = devtest_alloc(t, 8192, 512);
	p = devtest_gpa(t, buf, 8192);
	memset(p, 0x77, 8192);

	/* Out of range (and overflowing) reads and writes: IOERR, the file
	 * is neither read nor written outside the image. */
	static const struct {
		uint64_t sector;
		uint32_t len;
	} oob[] = {
		{ IMG_SECTORS, 512 },
		{ IMG_SECTORS - 1, 1024 },
		{ IMG_SECTORS + 1000, 0 },
		{ UINT64_MAX, 512 },
		{ UINT64_MAX - 1, 1024 },
		{ (UINT64_MAX >> 9) + 1, 512 }, /* sector * 512 wraps to 0 */
		{ 1ULL << 55, 4096 },
	};
	for (size_t i = 0; i < sizeof(oob) / sizeof(oob[0]); i++) {
		ck_assert_msg(rw(t, T_IN, oob[i].sector, oob[i].len ? buf : 0,
				 oob[i].len) == S_IOERR, "read case %zu", i);
		ck_assert_msg(rw(t, T_OUT, oob[i].sector, oob[i].len ? buf : 0,
				 oob[i].len) == S_IOERR, "write case %zu", i);
	}
	ck_assert(all_val(p, 8192, 0x77));
	{
		struct stat st;

		ck_assert_int_eq(stat(img, &st), 0);
		ck_assert_int_eq(st.st_size, IMG_SECTORS * SECTOR);
	}

	/* Lengths not a multiple of 512. */
	ck_assert_int_eq(rw(t, T_IN, 0, buf, 511), S_IOERR);
	ck_assert_int_eq(rw(t, T_IN, 0, buf, 513), S_IOERR);
	ck_assert_int_eq(rw(t, T_OUT, 0, buf, 100), S_IOERR);

	/* Wrong data direction: readable data for a read, writable data
	 * for a write (the device must not read/write them). */
	{
		struct rq r = { .type = T_IN, .data = buf, .len = 512 };

		ck_assert_int_eq(run(t, &r, NULL), S_IOERR);
		ck_assert(all_val(p, 512, 0x77));
		r.type = T_OUT;
		r.data_write = true;
		ck_assert_int_eq(run(t, &r, NULL), S_IOERR);
		ck_assert(all_val(p, 512, 0x77));
		/* A flush carrying data. */
		r.type = T_FLUSH;
		r.data_write = false;
		ck_assert_int_eq(run(t, &r, NULL), S_IOERR);
	}

	/* Unknown or unsupported types: UNSUPP. */
	{
		const uint32_t types[] = { 2, 3, 5, T_GET_LIFETIME,
					   T_SECURE_ERASE, 99, UINT32_MAX };

		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
			struct rq r = { .type = types[i], .data = buf,
					.len = 512, .data_write = true };

			ck_assert_msg(run(t, &r, NULL) == S_UNSUPP, "type %u",
				      types[i]);
		}
	}

	/* A header shorter than 16 bytes: IOERR. */
	{
		uint64_t hdr = devtest_alloc(t, 16, 8), st = devtest_alloc(t, 1, 1);
		uint8_t *sp = devtest_gpa(t, st, 1);

		*sp = S_NONE;
		ck_assert_int_eq(devtest_chain_begin(t, 0, 0), 0);
		devtest_chain_add(t, hdr, 15, false);
		devtest_chain_add(t, st, 1, true);
		ck_assert_int_ge(devtest_chain_submit(t), 0);
		devtest_kick(t, 0);
		ck_assert_int_eq(devtest_wait_used(t, 0, 5000, NULL, NULL), 0);
		ck_assert_uint_eq(*sp, S_IOERR);

		/* No header at all (status only). */
		*sp = S_NONE;
		ck_assert_int_ge(devtest_submit_buf(t, 0, st, 1, true), 0);
		devtest_kick(t, 0);
		ck_assert_int_eq(devtest_wait_used(t, 0, 5000, NULL, NULL), 0);
		ck_assert_uint_eq(*sp, S_IOERR);

		/* Status of 0 bytes after a 512-byte read buffer: the
		 * status lands in the data's last byte, 511 bytes of data
		 * are not a sector multiple: IOERR, nothing read. */
		memset(p, 0x77, 512);
		ck_assert_int_eq(devtest_chain_begin(t, 0, 0), 0);
		devtest_chain_add(t, hdr, 16, false);
		devtest_chain_add(t, buf, 512, true);
		devtest_chain_add(t, st, 0, true);
		ck_assert_int_ge(devtest_chain_submit(t), 0);
		devtest_kick(t, 0);
		ck_assert_int_eq(devtest_wait_used(t, 0, 5000, NULL, NULL), 0);
		ck_assert_uint_eq(p[511], S_IOERR);
		ck_assert(all_val(p, 511, 0x77));
	}
	ck_assert(!(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET));
	ck_assert(file_is_pattern(0, IMG_SECTORS * SECTOR, 9));

	/* No device-writable byte at all: no status to report: the queue
	 * is broken, the device asks for a reset, and a reset heals it. */
	{
		uint64_t hdr = devtest_alloc(t, 16 + 512, 8);
		uint32_t type = htole32(T_OUT);

		memcpy(devtest_gpa(t, hdr, 4), &type, 4);
		ck_assert_int_ge(devtest_submit_buf(t, 0, hdr, 16 + 512, false),
				 0);
		devtest_kick(t, 0);
		wait_needs_reset(t);
		ck_assert(file_is_pattern(0, IMG_SECTORS * SECTOR, 9));
	}
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_int_eq(rw(t, T_IN, 0, buf, 512), S_OK);
	devtest_free(t);
	unmake_image();
}
END_TEST

/* Cloud Hypervisor GHSA-f47p-p25q-83rh: one head offered twice while the
 * first is still in flight must never be executed or completed twice. */
START_TEST(test_same_head_twice)
{
	struct devtest *t;
	uint64_t buf, st;
	int head;

	make_image(IMG_SECTORS * SECTOR, 4);
	for (int sync = 0; sync < 2; sync++) {
		struct devtest_opts o = { .threaded = !sync };

		t = blk_new(NULL, &o);
		ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL),
				 0);
		buf = devtest_alloc(t, 4096, 512);
		memset(devtest_gpa(t, buf, 4096), 0x5c, 4096);
		struct rq r = { .type = T_OUT, .sector = 64, .data = buf,
				.len = 4096 };

		head = submit(t, &r, &st);
		ck_assert_int_eq(devtest_avail_add(t, 0, (uint16_t)head), 0);
		devtest_kick(t, 0);
		wait_needs_reset(t);
		/* At most the first one completed; never twice. */
		for (int i = 0; i < 20; i++)
			devtest_run_io(t, 5);
		ck_assert_uint_le(devtest_used_idx(t, 0), 1);
		/* And the device is usable again after a reset. */
		ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL),
				 0);
		ck_assert_int_eq(rw(t, T_IN, 0, buf, 512), S_OK);
		devtest_free(t);
	}
	unmake_image();
}
END_TEST

START_TEST(test_hostile_buffers)
{
	struct devtest *t;
	uint64_t r0, s0;

	make_image(IMG_SECTORS * SECTOR, 4);
	t = blk_new(NULL, NULL);
	devtest_region(t, 0, &r0, &s0);
	const uint64_t bad[] = { devtest_hole_gpa(t), r0 + s0 - 256,
				 devtest_ram_end(t) - 256, UINT64_MAX - 255 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL),
				 0);
		struct rq r = { .type = T_IN, .data = bad[i], .len = 512,
				.data_write = true };
		uint64_t st;

		submit(t, &r, &st);
		devtest_kick(t, 0);
		wait_needs_reset(t);
		ck_assert_uint_eq(devtest_used_idx(t, 0), 0);
	}
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_int_eq(rw(t, T_IN, 0, devtest_alloc(t, 512, 512), 512), S_OK);
	ck_assert(file_is_pattern(0, IMG_SECTORS * SECTOR, 4));
	devtest_free(t);
	unmake_image();
}
END_TEST

START_TEST(test_readonly)
{
	const char *kv[] = { "readonly=on", NULL };
	struct devtest *t;
	uint64_t buf;

	make_image(IMG_SECTORS * SECTOR, 11);
	chmod(img, 0400); /* root ignores it, but nobody needs write access */
	t = blk_up(kv);
	ck_assert(devtest_features(t) & F_RO);
	buf = devtest_alloc(t, 4096, 512);
	memset(devtest_gpa(t, buf, 4096), 0x33, 4096);

	/* §5.2.6.2: writes of any kind fail with IOERR, nothing changes. */
	ck_assert_int_eq(rw(t, T_OUT, 0, buf, 4096), S_IOERR);
	{
		struct seg s = { 0, 16, 0 };

		ck_assert_int_eq(segs(t, T_WRITE_ZEROES, &s, 1), S_IOERR);
		ck_assert_int_eq(segs(t, T_DISCARD, &s, 1), S_IOERR);
	}
	ck_assert(file_is_pattern(0, IMG_SECTORS * SECTOR, 11));
	/* Reads and flushes work. */
	ck_assert_int_eq(rw(t, T_IN, 8, buf, 4096), S_OK);
	ck_assert_uint_eq(((uint8_t *)devtest_gpa(t, buf, 1))[0],
			  pat(8 * SECTOR, 11));
	{
		struct rq r = { .type = T_FLUSH };

		ck_assert_int_eq(run(t, &r, NULL), S_OK);
	}
	/* The image fd is really read-only. */
	{
		int fds[4], n = image_fds(img, fds, 4);

		ck_assert_int_ge(n, 1);
		for (int i = 0; i < n; i++)
			ck_assert_int_eq(fcntl(fds[i], F_GETFL) & O_ACCMODE,
					 O_RDONLY);
	}
	devtest_free(t);
	unmake_image();
}
END_TEST

START_TEST(test_locking)
{
	const char *ro[] = { "readonly=on", NULL };
	char err[1024];
	struct devtest *a, *b;

	make_image(IMG_SECTORS * SECTOR, 1);
	/* rw + rw: refused, clear message naming the key and the file. */
	a = blk_new(NULL, NULL);
	b = blk_new_opts(NULL, NULL, err, sizeof(err));
	ck_assert(!b);
	ck_assert_msg(strstr(err, "[device.devtest] path:") &&
			      strstr(err, "in use") && strstr(err, img),
		      "%s", err);
	/* rw + ro: refused (a reader would see a disk changing under it). */
	b = blk_new_opts(ro, NULL, err, sizeof(err));
	ck_assert_msg(!b && strstr(err, "in use"), "%s", err);
	devtest_free(a);
	/* The lock goes with the device. */
	a = blk_new(NULL, NULL);
	devtest_free(a);

	/* ro + ro: fine; ro + rw: refused. */
	a = blk_new(ro, NULL);
	b = blk_new(ro, NULL);
	devtest_free(b);
	b = blk_new_opts(NULL, NULL, err, sizeof(err));
	ck_assert_msg(!b && strstr(err, "in use"), "%s", err);
	devtest_free(a);

	/* Another process holding a write lock (another VM). */
	{
		int fd = open(img, O_RDWR);
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(fcntl(fd, F_OFD_SETLK, &fl), 0);
		b = blk_new_opts(ro, NULL, err, sizeof(err));
		ck_assert_msg(!b && strstr(err, "in use"), "%s", err);
		close(fd);
		b = blk_new(ro, NULL);
		devtest_free(b);
	}
	unmake_image();
}
END_TEST

START_TEST(test_bad_config_values)
{
	static const struct {
		const char *kv[3];
		const char *key, *words;
	} bad[] = {
		{ { "readonly=maybe" }, "readonly", "on or off" },
		{ { "readonly=" }, "readonly", "on or off" },
		{ { "serial=ABCDEFGHIJKLMNOPQRSTU" }, "serial", "at most 20" },
		{ { "serial=a\tb" }, "serial", "printable" },
		{ { "cache=writethrough" }, "cache", "writeback, none or unsafe" },
		{ { "cache=" }, "cache", "writeback" },
		{ { "discard=1x" }, "discard", "on or off" },
		{ { "queues=0" }, "queues", "1..64" },
		{ { "queues=65" }, "queues", "1..64" },
		{ { "queues=-1" }, "queues", "1..64" },
		{ { "queues=two" }, "queues", "1..64" },
		{ { "queues=99999999999999999999999" }, "queues", "1..64" },
		{ { "queue_size=100" }, "queue_size", "power of two" },
		{ { "queue_size=1" }, "queue_size", "power of two" },
		{ { "queue_size=2048" }, "queue_size", "power of two" },
		{ { "queue_size=0x100" }, "queue_size", "power of two" },
		{ { "iothreads=0" }, "iothreads", "1..64" },
	};

	make_image(IMG_SECTORS * SECTOR, 1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *err = blk_new_fails(bad[i].kv);
		char want[64];

		snprintf(want, sizeof(want), "[device.devtest] %s:",
			 bad[i].key);
		ck_assert_msg(strstr(err, want), "case %zu: %s", i, err);
		ck_assert_msg(strstr(err, bad[i].words), "case %zu: %s", i,
			      err);
	}
	unmake_image();
}
END_TEST

START_TEST(test_bad_paths)
{
	struct devtest_opts o = { .plugin_dir = SMVMM_BUILD_DIR };
	char err[1024];
	struct devtest *t;

	/* Missing path key. */
	t = devtest_new("virtio-blk", NULL, &o, err, sizeof(err));
	ck_assert(!t);
	ck_assert_msg(strstr(err, "path:") && strstr(err, "required"), "%s",
		      err);
	{
		const char *kv[] = { "path=/nonexistent/disk.img", NULL };

		t = devtest_new("virtio-blk", kv, &o, err, sizeof(err));
		ck_assert(!t);
		ck_assert_msg(strstr(err, "path:") &&
				      strstr(err, "No such file"), "%s", err);
	}
	{
		const char *kv[] = { "path=/tmp", NULL };

		t = devtest_new("virtio-blk", kv, &o, err, sizeof(err));
		ck_assert(!t);
		ck_assert_msg(strstr(err, "path:"), "%s", err);
	}
	{
		const char *kv[] = { "path=/dev/null", "readonly=on", NULL };

		t = devtest_new("virtio-blk", kv, &o, err, sizeof(err));
		ck_assert(!t);
		ck_assert_msg(strstr(err, "neither a regular file nor a block "
					  "device"), "%s", err);
	}
	{
		const char *kv[] = { "path=/tmp/x.img", "pth=1", NULL };

		t = devtest_new("virtio-blk", kv, &o, err, sizeof(err));
		ck_assert(!t);
		ck_assert_msg(strstr(err, "pth: unknown key for type "
					  "virtio-blk"), "%s", err);
	}
	/* The key list the INI check uses. */
	make_image(SECTOR, 1);
	t = blk_new(NULL, NULL);
	{
		static const char *const want[] = { "path", "readonly",
						    "serial", "cache",
						    "discard", "queues",
						    "queue_size", "iothreads" };
		const char *const *k = devtest_plugin(t)->config_keys;
		size_t n = 0;

		for (; k[n]; n++)
			ck_assert_str_eq(k[n], want[n]);
		ck_assert_uint_eq(n, 8);
	}
	devtest_free(t);
	unmake_image();
}
END_TEST

START_TEST(test_good_config_values)
{
	static const char *const ok[][4] = {
		{ "cache=none" },
		{ "cache=unsafe", "discard=off" },
		{ "cache=writeback", "readonly=off", "serial=" },
		{ "queues=64", "queue_size=1024" },
		{ "queue_size=4", "iothreads=1" },
		{ "readonly=true", "discard=no" },
	};

	make_image(IMG_SECTORS * SECTOR, 2);
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct devtest_opts o = { .threaded = true, .ram_size = 16 << 20 };
		struct devtest *t = blk_new(ok[i], &o);
		uint64_t buf;

		ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL),
				 0);
		buf = devtest_alloc(t, 4096, 8); /* unaligned for O_DIRECT */
		ck_assert_int_eq(rw(t, T_IN, 1, buf + 1, 2048), S_OK);
		ck_assert_uint_eq(((uint8_t *)devtest_gpa(t, buf + 1, 1))[0],
				  pat(SECTOR, 2));
		struct rq f = { .type = T_FLUSH };

		ck_assert_int_eq(run(&*t, &f, NULL), S_OK);
		devtest_free(t);
	}
	unmake_image();
}
END_TEST

/* cache=none: aligned and unaligned guest buffers, both reach the file. */
START_TEST(test_cache_none)
{
	const char *kv[] = { "cache=none", NULL };
	struct devtest *t;
	uint64_t buf;
	uint8_t *p;

	make_image(IMG_SECTORS * SECTOR, 12);
	t = blk_up(kv);
	buf = devtest_alloc(t, 16384, 4096);
	p = devtest_gpa(t, buf, 16384);
	for (int i = 0; i < 8192; i++)
		p[i] = (uint8_t)(i ^ 0x5a);
	ck_assert_int_eq(rw(t, T_OUT, 8, buf, 4096), S_OK);
	ck_assert_int_eq(rw(t, T_OUT, 16, buf + 4096 + 3, 1024), S_OK);
	{
		uint8_t host[4096];

		file_read(8 * SECTOR, host, 4096);
		ck_assert(!memcmp(host, p, 4096));
		file_read(16 * SECTOR, host, 1024);
		ck_assert(!memcmp(host, p + 4096 + 3, 1024));
	}
	memset(p + 8192, 0, 4096);
	ck_assert_int_eq(rw(t, T_IN, 8, buf + 8192, 4096), S_OK);
	ck_assert(!memcmp(p + 8192, p, 4096));
	struct rq f = { .type = T_FLUSH };

	ck_assert_int_eq(run(t, &f, NULL), S_OK);
	devtest_free(t);
	unmake_image();
}
END_TEST

/* Host-side errors: the image replaced under the device by something that
 * fails (a pipe: ESPIPE for I/O, EINVAL for fdatasync). */
START_TEST(test_host_io_errors_and_sticky_flush)
{
	struct devtest *t;
	uint64_t buf;
	int fds[4], n, pipefd[2], keep;
	struct rq f = { .type = T_FLUSH };

	make_image(IMG_SECTORS * SECTOR, 13);
	t = blk_up(NULL);
	buf = devtest_alloc(t, 4096, 512);
	ck_assert_int_eq(run(t, &f, NULL), S_OK);

	n = image_fds(img, fds, 4);
	ck_assert_int_eq(n, 1);
	keep = dup(fds[0]);
	ck_assert_int_ge(pipe(pipefd), 0);
	ck_assert_int_ge(dup2(pipefd[0], fds[0]), 0);

	ck_assert_int_eq(rw(t, T_IN, 0, buf, 512), S_IOERR);
	ck_assert_int_eq(rw(t, T_OUT, 0, buf, 512), S_IOERR);
	ck_assert_int_eq(run(t, &f, NULL), S_IOERR);

	/* The image is back, but a failed fdatasync is never retried into
	 * a success: every later FLUSH fails (the data may be gone). */
	ck_assert_int_ge(dup2(keep, fds[0]), 0);
	ck_assert_int_eq(rw(t, T_IN, 0, buf, 512), S_OK);
	ck_assert_int_eq(run(t, &f, NULL), S_IOERR);
	ck_assert_int_eq(run(t, &f, NULL), S_IOERR);
	/* ... across a device reset too. */
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_int_eq(run(t, &f, NULL), S_IOERR);
	ck_assert(!(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET));
	devtest_free(t);
	close(keep);
	close(pipefd[0]);
	close(pipefd[1]);

	/* The image shrinking under the device: reads past the new end of
	 * file are host I/O errors, not zeroes. */
	t = blk_up(NULL);
	buf = devtest_alloc(t, 4096, 512);
	ck_assert_int_eq(truncate(img, 100 * SECTOR), 0);
	ck_assert_int_eq(rw(t, T_IN, 99, buf, 512), S_OK);
	ck_assert_int_eq(rw(t, T_IN, 100, buf, 512), S_IOERR);
	ck_assert_int_eq(rw(t, T_IN, 99, buf, 1024), S_IOERR);
	devtest_free(t);
	unmake_image();
}
END_TEST

/* Without VIRTIO_BLK_F_FLUSH the device is write-through: still correct. */
START_TEST(test_no_flush_feature)
{
	struct devtest *t;
	uint64_t buf;

	make_image(IMG_SECTORS * SECTOR, 14);
	t = blk_new(NULL, NULL);
	ck_assert_int_eq(devtest_init_device(t, F_VERSION_1), 0);
	buf = devtest_alloc(t, 4096, 512);
	memset(devtest_gpa(t, buf, 4096), 0x42, 4096);
	ck_assert_int_eq(rw(t, T_OUT, 0, buf, 4096), S_OK);
	ck_assert(file_is_pattern(4096, 4096, 14));
	{
		uint8_t host[4096];

		file_read(0, host, 4096);
		ck_assert(all_val(host, 4096, 0x42));
	}
	devtest_free(t);
	unmake_image();
}
END_TEST

START_TEST(test_multiqueue)
{
	const char *kv[] = { "queues=4", "queue_size=64", NULL };
	struct devtest *t;
	uint64_t buf[4];
	int head[4][16];

	make_image(IMG_SECTORS * SECTOR, 15);
	t = blk_up(kv);
	ck_assert(devtest_features(t) & F_MQ);
	ck_assert_uint_eq(devtest_num_queues(t), 4);
	for (int q = 0; q < 4; q++)
		buf[q] = devtest_alloc(t, 16 * 4096, 4096);
	/* 16 writes on each of 4 queues, all in flight at once. */
	for (int q = 0; q < 4; q++) {
		uint8_t *p = devtest_gpa(t, buf[q], 16 * 4096);

		for (int i = 0; i < 16; i++) {
			struct rq r = { .q = (uint16_t)q, .type = T_OUT,
					.sector = (uint64_t)(q * 16 + i) * 8,
					.data = buf[q] + 4096u * i,
					.len = 4096 };
			uint64_t st;

			memset(p + 4096 * i, q * 16 + i + 1, 4096);
			head[q][i] = submit(t, &r, &st);
		}
	}
	for (int q = 0; q < 4; q++)
		devtest_kick(t, (uint16_t)q);
	for (int q = 0; q < 4; q++) {
		bool seen[16] = { false };

		for (int i = 0; i < 16; i++) {
			uint16_t id;
			int rc = devtest_wait_used(t, (uint16_t)q, 5000, &id,
						   NULL);

			ck_assert_msg(rc == 0, "%s", devtest_error(t));
			for (int k = 0; k < 16; k++)
				if (head[q][k] == id)
					seen[k] = true;
		}
		for (int i = 0; i < 16; i++)
			ck_assert(seen[i]);
		ck_assert_uint_eq(devtest_inflight(t, (uint16_t)q), 0);
	}
	for (int i = 0; i < 64; i++) {
		uint8_t host[4096];

		file_read((uint64_t)i * 4096, host, 4096);
		ck_assert(all_val(host, 4096, (uint8_t)(i + 1)));
	}
	devtest_free(t);
	unmake_image();
}
END_TEST

START_TEST(test_event_idx)
{
	struct devtest *t;
	uint64_t buf, irq0;

	make_image(IMG_SECTORS * SECTOR, 16);
	t = blk_up(NULL);
	ck_assert(devtest_features(t) & F_EVENT_IDX);
	buf = devtest_alloc(t, 512, 512);

	/* The core notifies the first completion after setup (nothing
	 * signalled yet, as QEMU does); then used_event = 4 (used idx is 1):
	 * completions to idx 2..4 send no interrupt, the one that moves used
	 * idx from 4 to 5 does (§2.7.10). */
	ck_assert_int_eq(rw(t, T_IN, 0, buf, 512), S_OK);
	ck_assert_uint_eq(devtest_used_idx(t, 0), 1);
	ck_assert_int_eq(devtest_set_used_event(t, 0, 4), 0);
	irq0 = devtest_irq_count(t);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(rw(t, T_IN, (uint64_t)i, buf, 512), S_OK);
	ck_assert_uint_eq(devtest_irq_count(t), irq0);
	ck_assert_int_eq(rw(t, T_IN, 3, buf, 512), S_OK);
	ck_assert_uint_eq(devtest_irq_count(t), irq0 + 1);
	/* used_event behind: no interrupts until it comes round. */
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(rw(t, T_IN, 0, buf, 512), S_OK);
	ck_assert_uint_eq(devtest_irq_count(t), irq0 + 1);
	devtest_free(t);

	/* Without EVENT_IDX: one interrupt per completion; NO_INTERRUPT
	 * suppresses them. */
	t = blk_new(NULL, NULL);
	ck_assert_int_eq(devtest_init_device(t, F_VERSION_1 | F_FLUSH), 0);
	buf = devtest_alloc(t, 512, 512);
	irq0 = devtest_irq_count(t);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(rw(t, T_IN, 0, buf, 512), S_OK);
	ck_assert_uint_eq(devtest_irq_count(t), irq0 + 4);
	devtest_set_no_interrupt(t, 0, true);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(rw(t, T_IN, 0, buf, 512), S_OK);
	ck_assert_uint_eq(devtest_irq_count(t), irq0 + 4);
	devtest_free(t);
	unmake_image();
}
END_TEST

/* Reset and destroy while requests are queued and running. */
START_TEST(test_reset_in_flight)
{
	struct devtest_opts o = { .threaded = true, .ram_size = 16 << 20,
				  .queue_size = 128 };
	const char *kv[] = { "iothreads=2", NULL };
	struct devtest *t;

	struct devtest_mark m;

	make_image(IMG_SECTORS * SECTOR * 8, 17);
	t = blk_new(kv, &o);
	m = devtest_alloc_mark(t);
	for (int round = 0; round < 20; round++) {
		uint64_t buf;

		ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL),
				 0);
		buf = devtest_alloc(t, 40 * 65536, 4096);
		ck_assert(buf);
		for (int i = 0; i < 40; i++) {
			struct rq r = { .type = round & 1 ? T_OUT : T_IN,
					.sector = (uint64_t)i * 128,
					.data = buf + 65536u * i, .len = 65536,
					.data_write = !(round & 1) };
			uint64_t st;

			submit(t, &r, &st);
		}
		devtest_kick(t, 0);
		if (round & 2)
			usleep(200);
		ck_assert_int_eq(devtest_reset(t), 0);
		devtest_alloc_release(t, m);
	}
	/* After all that, a clean init works and nothing stale arrives. */
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	usleep(20000);
	ck_assert_uint_eq(devtest_used_idx(t, 0), 0);
	ck_assert_int_eq(rw(t, T_IN, 0, devtest_alloc(t, 512, 512), 512), S_OK);
	/* Destroy with requests in flight. */
	{
		uint64_t buf = devtest_alloc(t, 8 * 65536, 4096);

		for (int i = 0; i < 8; i++) {
			struct rq r = { .type = T_IN, .sector = (uint64_t)i * 128,
					.data = buf + 65536u * i, .len = 65536,
					.data_write = true };
			uint64_t st;

			submit(t, &r, &st);
		}
		devtest_kick(t, 0);
	}
	devtest_free(t);
	unmake_image();
}
END_TEST

/* Random reads and writes at queue depth 32 checked against a host-side
 * model of the disk. */
START_TEST(test_random_qd32)
{
	struct devtest_opts o = { .threaded = true, .ram_size = 8 << 20,
				  .queue_size = 128 };
	const uint32_t nsec = 512; /* 256 KiB disk */
	uint8_t *model = calloc(nsec, SECTOR);
	struct devtest *t;
	uint64_t buf;
	unsigned int seed = 1234;
	struct {
		int head;
		uint64_t st, data;
		uint32_t type, sector, n;
	} slot[32];

	make_image((uint64_t)nsec * SECTOR, 18);
	file_read(0, model, (size_t)nsec * SECTOR);
	t = blk_new(NULL, &o);
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	buf = devtest_alloc(t, 32 * 8 * SECTOR, 512);
	struct devtest_mark m = devtest_alloc_mark(t);

	for (int round = 0; round < 60; round++) {
		/* 32 requests to disjoint sector ranges (the device may run
		 * them in any order). */
		bool used[512] = { false };
		int n = 0;

		for (int i = 0; i < 32; i++) {
			uint32_t cnt = 1 + rand_r(&seed) % 8;
			uint32_t sec = rand_r(&seed) % (nsec - cnt);
			bool clash = false;

			for (uint32_t k = 0; k < cnt; k++)
				clash |= used[sec + k];
			if (clash)
				continue;
			for (uint32_t k = 0; k < cnt; k++)
				used[sec + k] = true;
			slot[n].type = rand_r(&seed) & 1 ? T_OUT : T_IN;
			slot[n].sector = sec;
			slot[n].n = cnt;
			slot[n].data = buf + (uint64_t)n * 8 * SECTOR;
			uint8_t *p = devtest_gpa(t, slot[n].data, cnt * SECTOR);

			if (slot[n].type == T_OUT) {
				for (uint32_t k = 0; k < cnt * SECTOR; k++)
					p[k] = (uint8_t)rand_r(&seed);
				memcpy(model + (size_t)sec * SECTOR, p,
				       cnt * SECTOR);
			} else {
				memset(p, 0, cnt * SECTOR);
			}
			struct rq r = { .type = slot[n].type, .sector = sec,
					.data = slot[n].data,
					.len = cnt * SECTOR,
					.data_write = slot[n].type == T_IN };

			slot[n].head = submit(t, &r, &slot[n].st);
			n++;
		}
		devtest_kick_if_needed(t, 0);
		for (int i = 0; i < n; i++) {
			uint16_t id;
			int rc = devtest_wait_used(t, 0, 5000, &id, NULL), s;

			ck_assert_msg(rc == 0, "%s", devtest_error(t));
			for (s = 0; s < n && slot[s].head != id; s++)
				;
			ck_assert_int_lt(s, n);
			ck_assert_uint_eq(*(uint8_t *)devtest_gpa(t, slot[s].st,
								  1), S_OK);
			if (slot[s].type == T_IN)
				ck_assert(!memcmp(
					devtest_gpa(t, slot[s].data,
						    slot[s].n * SECTOR),
					model + (size_t)slot[s].sector * SECTOR,
					slot[s].n * SECTOR));
			slot[s].head = -1;
		}
		devtest_alloc_release(t, m);
	}
	{
		uint8_t *host = malloc((size_t)nsec * SECTOR);

		file_read(0, host, (size_t)nsec * SECTOR);
		ck_assert(!memcmp(host, model, (size_t)nsec * SECTOR));
		free(host);
	}
	devtest_free(t);
	free(model);
	unmake_image();
}
END_TEST

/* ---- the inline fast path (page-cache hits on the I/O thread) ------------ */

/* Does the image's file system take RWF_NOWAIT reads?  (tmpfs does not:
 * then every read goes to the workers and only correctness is checked.) */
static bool nowait_reads(void)
{
	char b[512];
	struct iovec v = { .iov_base = b, .iov_len = sizeof(b) };
	int fd = open(img, O_RDONLY);
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	n = preadv2(fd, &v, 1, 0, RWF_NOWAIT);
	close(fd);
	if (n < 0 && errno == EOPNOTSUPP) {
		fprintf(stderr, "test_blk: %s: no RWF_NOWAIT reads; fast-path "
				"checks skipped\n", img);
		return false;
	}
	return true;
}

/* Is the image page holding byte `off` in the page cache (mincore)? */
static bool resident(uint64_t off)
{
	long pg = sysconf(_SC_PAGESIZE);
	int fd = open(img, O_RDONLY);
	unsigned char v = 0;
	void *m;

	ck_assert_int_ge(fd, 0);
	m = mmap(NULL, (size_t)pg, PROT_READ, MAP_SHARED, fd,
		 (off_t)(off & ~(uint64_t)(pg - 1)));
	ck_assert(m != MAP_FAILED);
	ck_assert_int_eq(mincore(m, (size_t)pg, &v), 0);
	munmap(m, (size_t)pg);
	close(fd);
	return v & 1;
}

/* Drop the image from the page cache (written back first: DONTNEED keeps
 * dirty pages). */
static void evict_image(void)
{
	int fd = open(img, O_RDWR);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fdatasync(fd), 0);
	ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	close(fd);
}

/* Bring the one page at `off` into the page cache, no readahead. */
static void cache_page(uint64_t off)
{
	uint8_t buf[4096];
	int fd = open(img, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM), 0);
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), (off_t)off),
			 (ssize_t)sizeof(buf));
	close(fd);
}

/* A read of the lens[0..n) bytes at gpa (consecutive), at `sector`, the
 * data split over n descriptors. */
static int submit_split_read(struct devtest *t, uint64_t sector, uint64_t gpa,
			     const uint32_t *lens, int n, uint64_t *status)
{
	uint64_t hdr = devtest_alloc(t, 16, 8);
	uint8_t *h = devtest_gpa(t, hdr, 16);
	uint64_t le_sector = htole64(sector);
	int head;

	*status = devtest_alloc(t, 1, 1);
	ck_assert(hdr && *status);
	memset(h, 0, 16); /* type IN = 0 */
	memcpy(h + 8, &le_sector, 8);
	*(uint8_t *)devtest_gpa(t, *status, 1) = S_NONE;
	ck_assert_int_eq(devtest_chain_begin(t, 0, 0), 0);
	ck_assert_int_ge(devtest_chain_add(t, hdr, 16, false), 0);
	for (int i = 0; i < n; i++) {
		ck_assert_int_ge(devtest_chain_add(t, gpa, lens[i], true), 0);
		gpa += lens[i];
	}
	ck_assert_int_ge(devtest_chain_add(t, *status, 1, true), 0);
	head = devtest_chain_submit(t);
	ck_assert_msg(head >= 0, "submit: %s", devtest_error(t));
	return head;
}

/* The data at gpa is the image's pattern `seed` at byte `off`. */
static bool gpa_is_pattern(struct devtest *t, uint64_t gpa, uint64_t off,
			   uint32_t len, unsigned int seed)
{
	const uint8_t *p = devtest_gpa(t, gpa, len);

	for (uint32_t i = 0; i < len; i++)
		if (p[i] != pat(off + i, seed))
			return false;
	return true;
}

/*
 * Page-cache hits complete on the I/O thread, inside queue_notify: in
 * synchronous mode the used ring is complete when the kick returns, with
 * one interrupt for the whole batch.  Beyond the per-call budget and for
 * large requests the workers take over; everything reads the right bytes.
 */
START_TEST(test_inline_reads)
{
	struct devtest_opts o = { .ram_size = 16 << 20, .queue_size = 256 };
	const uint32_t split[] = { 1000, 2000, 1096 }; /* 4096 */
	struct devtest *t;
	uint64_t buf, irq0;
	struct {
		int head;
		uint64_t st, data, sector;
		uint32_t len;
	} r[200];
	bool fast;

	make_image(IMG_SECTORS * SECTOR * 4, 31); /* 4 MiB, in the cache */
	fast = nowait_reads();
	t = blk_new(NULL, &o);
	/* No EVENT_IDX: every vq_notify is an interrupt, so they count. */
	ck_assert_int_eq(devtest_init_device(t, F_VERSION_1 | F_FLUSH |
						F_INDIRECT), 0);
	buf = devtest_alloc(t, 200 * 4096, 4096);
	ck_assert(buf);

	/* 16 reads in one kick: plain, split over 3 descriptors, a sector
	 * not page-aligned, the last sector, zero-length. */
	for (int i = 0; i < 16; i++) {
		r[i].data = buf + 4096u * (uint64_t)i;
		r[i].sector = (uint64_t)i * 61 + 3;
		r[i].len = 4096;
		if (i == 14) {
			r[i].sector = IMG_SECTORS * 4 - 1;
			r[i].len = SECTOR;
		}
		if (i == 15)
			r[i].len = 0;
		if (i % 4 == 1) {
			r[i].head = submit_split_read(t, r[i].sector,
						      r[i].data, split, 3,
						      &r[i].st);
		} else {
			struct rq q = { .type = T_IN, .sector = r[i].sector,
					.data = r[i].len ? r[i].data : 0,
					.len = r[i].len, .data_write = true };

			r[i].head = submit(t, &q, &r[i].st);
		}
	}
	irq0 = devtest_irq_count(t);
	devtest_kick(t, 0);
	if (fast) {
		ck_assert_uint_eq(devtest_used_idx(t, 0), 16);
		ck_assert_uint_eq(devtest_irq_count(t), irq0 + 1);
	}
	for (int n = 0; n < 16; n++) {
		uint32_t len;
		uint16_t id;
		int i, rc = devtest_wait_used(t, 0, 5000, &id, &len);

		ck_assert_msg(rc == 0, "%s", devtest_error(t));
		for (i = 0; i < 16 && r[i].head != id; i++)
			;
		ck_assert_int_lt(i, 16);
		ck_assert_uint_eq(*(uint8_t *)devtest_gpa(t, r[i].st, 1), S_OK);
		ck_assert_uint_eq(len, r[i].len + 1);
		ck_assert_msg(gpa_is_pattern(t, r[i].data, r[i].sector * SECTOR,
					     r[i].len, 31), "read %d", i);
	}
	devtest_alloc_release(t, devtest_alloc_mark(t));

	/* 200 reads of 4 KiB (indirect: one ring descriptor each) in one
	 * kick, more than one call does inline (128): the first 128 are
	 * done when the kick returns, the rest by the workers; plus a
	 * 128 KiB read, never inline. */
	for (int i = 0; i < 200; i++) {
		struct rq q = { .type = T_IN, .data_write = true,
				.flags = DEVTEST_CHAIN_INDIRECT };

		r[i].data = buf + 4096u * (uint64_t)i;
		r[i].sector = (uint64_t)(i * 37 % 1000) * 8 + (uint64_t)i % 8;
		r[i].len = 4096;
		memset(devtest_gpa(t, r[i].data, 4096), 0, 4096);
		q.sector = r[i].sector;
		q.data = r[i].data;
		q.len = r[i].len;
		r[i].head = submit(t, &q, &r[i].st);
	}
	devtest_kick(t, 0);
	if (fast)
		ck_assert_uint_ge(devtest_used_idx(t, 0), 16 + 128);
	for (int n = 0; n < 200; n++) {
		uint16_t id;
		int i, rc = devtest_wait_used(t, 0, 5000, &id, NULL);

		ck_assert_msg(rc == 0, "%s", devtest_error(t));
		for (i = 0; i < 200 && r[i].head != id; i++)
			;
		ck_assert_int_lt(i, 200);
		ck_assert_uint_eq(*(uint8_t *)devtest_gpa(t, r[i].st, 1), S_OK);
		ck_assert_msg(gpa_is_pattern(t, r[i].data, r[i].sector * SECTOR,
					     4096, 31), "read %d", i);
		r[i].head = -1;
	}
	memset(devtest_gpa(t, buf, 128 << 10), 0, 128 << 10);
	ck_assert_int_eq(rw(t, T_IN, 1000, buf, 128 << 10), S_OK);
	ck_assert(gpa_is_pattern(t, buf, 1000 * SECTOR, 128 << 10, 31));
	ck_assert(!(devtest_status(t) & VIRTIO_STATUS_NEEDS_RESET));
	devtest_free(t);
	unmake_image();
}
END_TEST

/*
 * Page-cache misses: RWF_NOWAIT gives EAGAIN and the worker does the whole
 * read; a read whose first page is cached and second is not comes back
 * short from the inline attempt and the worker must continue at the short
 * offset, inside a descriptor (the split is not page-aligned).
 */
START_TEST(test_inline_misses_and_short_reads)
{
	const uint32_t split[] = { 1000, 5000, 2192 }; /* 8192 */
	struct devtest_opts o = { .ram_size = 8 << 20 };
	struct devtest *t;
	uint64_t buf;
	bool evictable;

	make_image(IMG_SECTORS * SECTOR * 4, 32);
	(void)nowait_reads();
	t = blk_new(NULL, &o);
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	buf = devtest_alloc(t, 64 << 10, 4096);

	evict_image();
	evictable = !resident(0) && !resident(12288);
	if (!evictable)
		fprintf(stderr, "test_blk: %s: the page cache keeps the image "
				"(tmpfs?); miss paths not provoked\n", img);
	/* Whole miss: 16 KiB from sector 0 (EAGAIN, then the worker). */
	ck_assert_int_eq(rw(t, T_IN, 0, buf, 16384), S_OK);
	ck_assert(gpa_is_pattern(t, buf, 0, 16384, 32));

	/* Several rounds of short reads at fresh offsets: page P cached,
	 * page P + 1 not. */
	for (int round = 0; round < 8; round++) {
		uint64_t off = (uint64_t)(100 + round * 16) * 4096;
		struct devtest_mark m = devtest_alloc_mark(t);
		uint64_t st;
		uint32_t len;
		uint16_t id;
		int head;

		evict_image();
		cache_page(off);
		if (evictable)
			ck_assert_msg(resident(off) && !resident(off + 4096),
				      "page cache setup: %d %d",
				      resident(off), resident(off + 4096));
		memset(devtest_gpa(t, buf, 8192), 0, 8192);
		head = submit_split_read(t, off / SECTOR, buf, split, 3, &st);
		devtest_kick(t, 0);
		ck_assert_int_eq(devtest_wait_used(t, 0, 5000, &id, &len), 0);
		ck_assert_int_eq(id, head);
		ck_assert_uint_eq(*(uint8_t *)devtest_gpa(t, st, 1), S_OK);
		ck_assert_uint_eq(len, 8193);
		ck_assert_msg(gpa_is_pattern(t, buf, off, 8192, 32),
			      "round %d", round);
		devtest_alloc_release(t, m);
	}

	/* Reads at QD 16 on an evicted image (readahead makes some of
	 * them hits): a mix of inline hits and worker misses. */
	evict_image();
	for (int round = 0; round < 4; round++) {
		struct devtest_mark m = devtest_alloc_mark(t);
		uint64_t st[16];
		int head[16];

		for (int i = 0; i < 16; i++) {
			struct rq q = { .type = T_IN, .data_write = true,
					.sector = (uint64_t)(i * 97 + round) %
						  1000 * 8,
					.data = buf + 4096u * (uint64_t)i,
					.len = 4096 };

			memset(devtest_gpa(t, q.data, 4096), 0, 4096);
			head[i] = submit(t, &q, &st[i]);
		}
		devtest_kick(t, 0);
		for (int n = 0; n < 16; n++) {
			uint16_t id;
			int i;

			ck_assert_int_eq(devtest_wait_used(t, 0, 5000, &id,
							   NULL), 0);
			for (i = 0; i < 16 && head[i] != id; i++)
				;
			ck_assert_int_lt(i, 16);
			ck_assert_uint_eq(*(uint8_t *)devtest_gpa(t, st[i], 1),
					  S_OK);
			ck_assert(gpa_is_pattern(t, buf + 4096u * (uint64_t)i,
						 (uint64_t)(i * 97 + round) %
							 1000 * 8 * SECTOR,
						 4096, 32));
		}
		devtest_alloc_release(t, m);
	}
	devtest_free(t);
	unmake_image();
}
END_TEST

START_TEST(test_two_devices_two_images)
{
	struct devtest *a, *b;
	char img_a[PATH_MAX];
	uint64_t ba, bb;

	make_image(IMG_SECTORS * SECTOR, 21);
	memcpy(img_a, img, sizeof(img_a));
	a = blk_up(NULL);
	{
		size_t l = strlen(img);

		ck_assert_uint_lt(l + 3, sizeof(img));
		memcpy(img + l, ".b", 3);
	}
	{
		int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(ftruncate(fd, 4096), 0);
		close(fd);
	}
	b = blk_up(NULL);
	ba = devtest_alloc(a, 512, 512);
	bb = devtest_alloc(b, 512, 512);
	memset(devtest_gpa(b, bb, 512), 0x99, 512);
	ck_assert_int_eq(rw(b, T_OUT, 7, bb, 512), S_OK);
	ck_assert_int_eq(rw(b, T_OUT, 8, bb, 512), S_IOERR);
	ck_assert_int_eq(rw(a, T_IN, 7, ba, 512), S_OK);
	ck_assert_uint_eq(*(uint8_t *)devtest_gpa(a, ba, 1), pat(7 * SECTOR, 21));
	devtest_free(b);
	unlink(img);
	devtest_free(a);
	memcpy(img, img_a, sizeof(img));
	unmake_image();
}
END_TEST

/*
 * A driver that refills the ring as fast as the device completes (here a
 * second thread re-offers a GET_ID chain for every used element, the way a
 * hostile guest on another vCPU polls the used ring) must not keep the
 * I/O thread inside one queue_notify call: the call ends after
 * BLK_NOTIFY_BUDGET chains and the rest continues from the event loop.
 */
#define NOTIFY_BUDGET 256u /* BLK_NOTIFY_BUDGET */

struct refill {
	struct devtest *t;
	uint64_t hdr, id, st;
	bool stop;              /* atomic */
	bool running;           /* atomic: the refiller has started */
	unsigned long done;     /* atomic: used elements seen */
	int err;
};

static int submit_get_id(struct devtest *t, uint64_t hdr, uint64_t id,
			 uint64_t st)
{
	if (devtest_chain_begin(t, 0, DEVTEST_CHAIN_INDIRECT) < 0 ||
	    devtest_chain_add(t, hdr, 16, false) < 0 ||
	    devtest_chain_add(t, id, 20, true) < 0 ||
	    devtest_chain_add(t, st, 1, true) < 0)
		return -EIO;
	return devtest_chain_submit(t);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *refiller(void *arg)
{
	struct refill *r = arg;
	double end = now_s() + 2.0; /* the unbounded loop ends here too */

	__atomic_store_n(&r->running, true, __ATOMIC_RELEASE);

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE) && now_s() < end) {
		int rc = devtest_poll_used(r->t, 0, NULL, NULL);

		if (rc < 0) {
			r->err = rc;
			break;
		}
		if (rc == 0)
			continue;
		__atomic_add_fetch(&r->done, 1, __ATOMIC_RELEASE);
		if (submit_get_id(r->t, r->hdr, r->id, r->st) < 0) {
			r->err = -EIO;
			break;
		}
	}
	return NULL;
}

START_TEST(test_refill_bounded)
{
	struct devtest_opts o = { .threaded = false, .queue_size = 1024 };
	const char *kv[] = { "queue_size=1024", NULL };
	struct refill r = { 0 };
	unsigned long during;
	pthread_t th;
	double t0, took, end;

	make_image(IMG_SECTORS * SECTOR, 3);
	r.t = blk_new(kv, &o);
	ck_assert_int_eq(devtest_init_device(r.t, DEVTEST_FEATURES_ALL), 0);
	r.hdr = devtest_alloc(r.t, 16, 8);
	r.id = devtest_alloc(r.t, 20, 1);
	r.st = devtest_alloc(r.t, 1, 1);
	{
		uint32_t type = htole32(T_GET_ID);

		memcpy(devtest_gpa(r.t, r.hdr, 16), &type, 4);
	}
	/* A full ring: one call takes one budget's worth, the event loop
	 * the rest. */
	for (int i = 0; i < 1024; i++)
		ck_assert_int_ge(submit_get_id(r.t, r.hdr, r.id, r.st), 0);
	devtest_kick(r.t, 0);
	ck_assert_uint_eq(devtest_used_idx(r.t, 0), NOTIFY_BUDGET);
	end = now_s() + 5.0;
	while (devtest_used_idx(r.t, 0) != 1024 && now_s() < end)
		devtest_run_io(r.t, 10);
	ck_assert_uint_eq(devtest_used_idx(r.t, 0), 1024);
	for (int i = 0; i < 1024; i++) {
		ck_assert_int_eq(devtest_poll_used(r.t, 0, NULL, NULL), 1);
		ck_assert_int_ge(submit_get_id(r.t, r.hdr, r.id, r.st), 0);
	}
	/* The hostile driver: refills while the device works. */
	ck_assert_int_eq(pthread_create(&th, NULL, refiller, &r), 0);
	while (!__atomic_load_n(&r.running, __ATOMIC_ACQUIRE))
		sched_yield();
	t0 = now_s();
	devtest_kick(r.t, 0); /* queue_notify, on this thread */
	took = now_s() - t0;
	during = __atomic_load_n(&r.done, __ATOMIC_ACQUIRE);
	__atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	ck_assert_msg(r.err == 0, "refiller: %d %s", r.err,
		      devtest_error(r.t));
	ck_assert_msg(during <= NOTIFY_BUDGET,
		      "one queue_notify call completed %lu chains in %.3f s "
		      "(budget %u)", during, took, NOTIFY_BUDGET);
	/* The rest is not lost: it completes from the event loop. */
	end = now_s() + 5.0;
	while (devtest_inflight(r.t, 0) && now_s() < end) {
		int rc = devtest_poll_used(r.t, 0, NULL, NULL);

		ck_assert_int_ge(rc, 0);
		if (rc == 0)
			devtest_run_io(r.t, 10);
	}
	ck_assert_msg(devtest_inflight(r.t, 0) == 0,
		      "%u chains never completed after the budget ran out",
		      devtest_inflight(r.t, 0));
	devtest_free(r.t);
	unmake_image();
}
END_TEST

/*
 * Storage that stops answering (an NFS server gone, a stalled disk): this
 * executable's preadv() blocks while g_hang is set; the plugin resolves
 * preadv to it (ENABLE_EXPORTS in tests/CMakeLists.txt).  preadv2 with
 * RWF_NOWAIT says EAGAIN meanwhile, so the inline path hands the request
 * to a worker.
 */
static int g_hang;     /* atomic */
static int g_hung;     /* callers blocked, under g_hang_lock */
static pthread_mutex_t g_hang_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_hang_cond = PTHREAD_COND_INITIALIZER;

ssize_t preadv(int fd, const struct iovec *iov, int n, off_t off)
{
	static ssize_t (*real)(int, const struct iovec *, int, off_t);

	if (!real)
		real = (ssize_t(*)(int, const struct iovec *, int, off_t))
			dlsym(RTLD_NEXT, "preadv");
	if (__atomic_load_n(&g_hang, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&g_hang_lock);
		g_hung++;
		pthread_cond_broadcast(&g_hang_cond);
		while (__atomic_load_n(&g_hang, __ATOMIC_ACQUIRE))
			pthread_cond_wait(&g_hang_cond, &g_hang_lock);
		g_hung--;
		pthread_mutex_unlock(&g_hang_lock);
	}
	return real(fd, iov, n, off);
}

ssize_t preadv2(int fd, const struct iovec *iov, int n, off_t off,
		int flags)
{
	static ssize_t (*real)(int, const struct iovec *, int, off_t, int);

	if (!real)
		real = (ssize_t(*)(int, const struct iovec *, int, off_t,
				   int))dlsym(RTLD_NEXT, "preadv2");
	if (__atomic_load_n(&g_hang, __ATOMIC_ACQUIRE) &&
	    (flags & RWF_NOWAIT)) {
		errno = EAGAIN;
		return -1;
	}
	return real(fd, iov, n, off, flags);
}

static void hang_release(void)
{
	pthread_mutex_lock(&g_hang_lock);
	__atomic_store_n(&g_hang, 0, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&g_hang_cond);
	pthread_mutex_unlock(&g_hang_lock);
}

static int g_watchdog_done; /* atomic */

/* Ends the hang after 3 s whatever happens, so a reset that waits for the
 * storage fails the test instead of hanging it. */
static void *hang_watchdog(void *arg)
{
	(void)arg;
	for (int i = 0; i < 300; i++) {
		if (__atomic_load_n(&g_watchdog_done, __ATOMIC_ACQUIRE))
			return NULL;
		usleep(10000);
	}
	hang_release();
	return NULL;
}

/*
 * A driver reset while a request is stuck in the host: the Status write
 * must not hold the vCPU until the storage answers.  The device defers the
 * reset: Status reads non-zero (the driver waits for 0, §2.4.2), register
 * writes are ignored, and once the request returns Status reads 0 and the
 * device works again.
 */
START_TEST(test_reset_hung_storage)
{
	struct devtest *t;
	struct rq r;
	uint64_t buf, st;
	pthread_t wd;
	double t0, took;
	int hung = 0;

	make_image(IMG_SECTORS * SECTOR, 5);
	t = blk_up(NULL);
	buf = devtest_alloc(t, 4096, 4096);
	r = (struct rq){ .type = T_IN, .sector = 8, .data = buf, .len = 4096,
			 .data_write = true };
	__atomic_store_n(&g_watchdog_done, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&g_hang, 1, __ATOMIC_RELEASE);
	ck_assert_int_eq(pthread_create(&wd, NULL, hang_watchdog, NULL), 0);
	submit(t, &r, &st);
	devtest_kick(t, 0);
	for (int i = 0; i < 200 && !hung; i++) {
		pthread_mutex_lock(&g_hang_lock);
		hung = g_hung;
		pthread_mutex_unlock(&g_hang_lock);
		if (!hung)
			usleep(10000);
	}
	ck_assert_msg(hung, "the read never reached preadv");

	t0 = now_s();
	devtest_write32(t, VIRTIO_MMIO_STATUS, 0); /* the driver's reset */
	took = now_s() - t0;
	ck_assert_msg(took < 2.0, "the reset held the vCPU %.2f s, until the "
		      "storage answered", took);
	ck_assert_uint_ne(devtest_status(t), 0);
	/* A driver that does not wait: ignored until the reset is done. */
	devtest_write32(t, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	ck_assert_uint_ne(devtest_status(t), VIRTIO_STATUS_ACKNOWLEDGE);

	hang_release();
	for (int i = 0; i < 200 && devtest_status(t) != 0; i++)
		usleep(10000);
	ck_assert_uint_eq(devtest_status(t), 0);
	/* The late completion was dropped, never pushed; the device works. */
	ck_assert_int_eq(devtest_init_device(t, DEVTEST_FEATURES_ALL), 0);
	ck_assert_uint_eq(devtest_used_idx(t, 0), 0);
	ck_assert_int_eq(rw(t, T_IN, 0, devtest_alloc(t, 512, 512), 512), S_OK);
	__atomic_store_n(&g_watchdog_done, 1, __ATOMIC_RELEASE);
	pthread_join(wd, NULL);
	devtest_free(t);
	unmake_image();
}
END_TEST

static Suite *blk_suite(void)
{
	Suite *s = suite_create("virtio-blk");
	TCase *tc = tcase_create("driver-model");

	tcase_set_timeout(tc, 120);
	/* Also after a failed assertion: no image left in $TMPDIR. */
	tcase_add_checked_fixture(tc, NULL, unmake_image);
	tcase_add_test(tc, test_identity_features_config);
	tcase_add_test(tc, test_refuses_legacy_driver);
	tcase_add_test(tc, test_read_write);
	tcase_add_test(tc, test_scatter_gather_and_framing);
	tcase_add_test(tc, test_get_id);
	tcase_add_test(tc, test_discard_and_write_zeroes);
	tcase_add_test(tc, test_bad_segments);
	tcase_add_test(tc, test_bad_requests);
	tcase_add_test(tc, test_same_head_twice);
	tcase_add_test(tc, test_hostile_buffers);
	tcase_add_test(tc, test_readonly);
	tcase_add_test(tc, test_locking);
	tcase_add_test(tc, test_bad_config_values);
	tcase_add_test(tc, test_bad_paths);
	tcase_add_test(tc, test_good_config_values);
	tcase_add_test(tc, test_cache_none);
	tcase_add_test(tc, test_host_io_errors_and_sticky_flush);
	tcase_add_test(tc, test_no_flush_feature);
	tcase_add_test(tc, test_multiqueue);
	tcase_add_test(tc, test_event_idx);
	tcase_add_test(tc, test_reset_in_flight);
	tcase_add_test(tc, test_random_qd32);
	tcase_add_test(tc, test_two_devices_two_images);
	tcase_add_test(tc, test_inline_reads);
	tcase_add_test(tc, test_inline_misses_and_short_reads);
	tcase_add_test(tc, test_refill_bounded);
	tcase_add_test(tc, test_reset_hung_storage);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(blk_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
