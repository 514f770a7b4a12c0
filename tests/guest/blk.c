// SPDX-License-Identifier: MIT
/*
 * virtio-blk driver for the probe (VIRTIO 1.2 §5.2), polling one request
 * queue through vq.h.  Every request is header (16 bytes, device-readable),
 * data, status (1 byte, device-writable), submitted alone and waited for.
 *
 * Options (see README.md):
 *   probe.blk=N          exactly N virtio-blk devices must be found
 *   probe.blk_sectors=N  expected capacity (512-byte sectors)
 *   probe.blk_serial=S   expected GET_ID string (no blanks)
 *   probe.blk_seed=X     the image holds pattern X (below): sectors 0..7
 *                        are read and checked
 *   probe.blk_ro=1       the disk must be read-only: writes must fail
 *   probe.blk_round=R    crash-test mode: write pattern R to sectors
 *                        8R..8R+7, FLUSH, print the OK line, nothing else
 *
 * The pattern: sector s of pattern X is 32 16-byte text records
 * "%06x:%05x:%02x\n" (X, s, record index), easy to produce and check on the
 * host with awk and cmp.  Guest code is slow (~1 us per instruction on our
 * KVM), so only a few KiB are ever touched and formatting is done by hand.
 */
#include "vq.h"

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13

#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2

#define SECTOR 512u
#define NSEC 8u /* sectors per data transfer: 4 KiB */
#define WRITE_AT 16u
#define DISCARD_AT 64u
#define DISCARD_N 64u
#define ZERO_AT 128u

static struct {
	int count;          /* probe.blk, -1 = not given */
	long long sectors;  /* probe.blk_sectors, -1 */
	char serial[21];
	bool serial_set;
	long long seed;     /* probe.blk_seed, -1 */
	bool ro;
	long long round;    /* probe.blk_round, -1 */
} bo = { -1, -1, "", false, -1, false, -1 };

static bool parse_num(const char *s, size_t n, u64 max, long long *out)
{
	u64 v;

	if (!probe_parse_u64(s, n, max, &v))
		return false;
	*out = (long long)v;
	return true;
}

bool blk_option(const char *key, size_t klen, const char *val, size_t vlen)
{
	long long v;

#define BKEY(k) (klen == sizeof(k) - 1 && !strncmp(key, k, klen))
	if (BKEY("blk")) {
		if (!parse_num(val, vlen, MAX_VDEVS, &v))
			return false;
		bo.count = (int)v;
		return true;
	}
	if (BKEY("blk_sectors"))
		return parse_num(val, vlen, 1ull << 62, &bo.sectors);
	if (BKEY("blk_seed"))
		return parse_num(val, vlen, 0xffffff, &bo.seed);
	if (BKEY("blk_round"))
		return parse_num(val, vlen, 0xfffff / NSEC, &bo.round);
	if (BKEY("blk_ro")) {
		if (!parse_num(val, vlen, 1, &v))
			return false;
		bo.ro = v;
		return true;
	}
	if (BKEY("blk_serial")) {
		if (vlen > 20)
			return false;
		memcpy(bo.serial, val, vlen);
		bo.serial[vlen] = '\0';
		bo.serial_set = true;
		return true;
	}
#undef BKEY
	return false;
}

/* ---- the pattern ---------------------------------------------------------- */

static void hex(char *p, u64 v, int digits)
{
	static const char x[] = "0123456789abcdef";

	for (int i = digits - 1; i >= 0; i--, v >>= 4)
		p[i] = x[v & 15];
}

static void pattern_fill(u8 *buf, u32 seed, u64 sector, u32 nsec)
{
	for (u32 s = 0; s < nsec; s++) {
		for (u32 r = 0; r < SECTOR / 16; r++) {
			char *p = (char *)buf + s * SECTOR + r * 16;

			hex(p, seed, 6);
			p[6] = ':';
			hex(p + 7, sector + s, 5);
			p[12] = ':';
			hex(p + 13, r, 2);
			p[15] = '\n';
		}
	}
}

/* Index of the first byte that differs from the pattern, or -1. */
static long pattern_check(const u8 *buf, u32 seed, u64 sector, u32 nsec)
{
	char rec[16];

	for (u32 s = 0; s < nsec; s++) {
		for (u32 r = 0; r < SECTOR / 16; r++) {
			const u8 *p = buf + s * SECTOR + r * 16;

			hex(rec, seed, 6);
			rec[6] = ':';
			hex(rec + 7, sector + s, 5);
			rec[12] = ':';
			hex(rec + 13, r, 2);
			rec[15] = '\n';
			for (int i = 0; i < 16; i++)
				if (p[i] != (u8)rec[i])
					return (long)(s * SECTOR + r * 16 + i);
		}
	}
	return -1;
}

static bool all_zero(const u8 *p, u32 n)
{
	for (u32 i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- requests ------------------------------------------------------------- */

struct blkdev {
	u64 base;
	char tag[40];
	struct gvq q;
	u64 features;
	u64 capacity;
	u8 *hdr, *status, *data; /* data: NSEC sectors */
};

/*
 * One request; returns the status byte, or -1 when it did not complete
 * (timeout, a used id that is not ours, a status left untouched).
 */
static int blk_rq(struct blkdev *b, u32 type, u64 sector, void *data, u32 len,
		  bool device_writes)
{
	struct gbuf bufs[3];
	int n = 0, head;
	u32 id, used;

	memset(b->hdr, 0, 16);
	b->hdr[0] = (u8)type;
	b->hdr[1] = (u8)(type >> 8);
	b->hdr[2] = (u8)(type >> 16);
	b->hdr[3] = (u8)(type >> 24);
	for (int i = 0; i < 8; i++)
		b->hdr[8 + i] = (u8)(sector >> (8 * i));
	*b->status = 0xee;
	bufs[n++] = (struct gbuf){ b->hdr, 16, false };
	if (len)
		bufs[n++] = (struct gbuf){ data, len, device_writes };
	bufs[n++] = (struct gbuf){ b->status, 1, true };
	head = gvq_add(&b->q, bufs, n);
	if (head < 0)
		return -1;
	gvq_kick(b->base, &b->q);
	if (!gvq_wait(&b->q, &id, &used) || id != (u32)head)
		return -1;
	vdev_ack_interrupts(b->base);
	barrier();
	return *(volatile u8 *)b->status == 0xee ? -1 : *b->status;
}

static const char *st_name(int st)
{
	switch (st) {
	case S_OK:
		return "OK";
	case S_IOERR:
		return "IOERR";
	case S_UNSUPP:
		return "UNSUPP";
	case -1:
		return "no completion";
	default:
		return "bad status";
	}
}

static int seg_rq(struct blkdev *b, u32 type, u64 sector, u32 num)
{
	u8 *seg = b->data; /* 16-byte segment, §5.2.6 */

	memset(seg, 0, 16);
	for (int i = 0; i < 8; i++)
		seg[i] = (u8)(sector >> (8 * i));
	for (int i = 0; i < 4; i++)
		seg[8 + i] = (u8)(num >> (8 * i));
	return blk_rq(b, type, 0, seg, 16, false);
}

/* Crash-test mode: one write + FLUSH, then the OK line. */
static void blk_round(struct blkdev *b)
{
	u32 r = (u32)bo.round;
	int st, fl;

	pattern_fill(b->data, r, (u64)r * NSEC, NSEC);
	st = blk_rq(b, T_OUT, (u64)r * NSEC, b->data, NSEC * SECTOR, false);
	fl = st == S_OK ? blk_rq(b, T_FLUSH, 0, NULL, 0, false) : -1;
	tap(st == S_OK && fl == S_OK,
	    "%s: round %u written and flushed # write %s, flush %s", b->tag,
	    r, st_name(st), st_name(fl));
}

static void blk_tests(struct blkdev *b)
{
	u64 cap = b->capacity;
	int st;
	long bad;

	/* GET_ID (§5.2.6): 20 bytes, NUL-padded. */
	{
		char id[21];

		memset(b->data, 0xaa, 32);
		st = blk_rq(b, T_GET_ID, 0, b->data, 20, true);
		memcpy(id, b->data, 20);
		id[20] = '\0';
		bool match = !bo.serial_set ||
			     (strlen(id) == strlen(bo.serial) &&
			      !memcmp(id, bo.serial, strlen(id)));
		tap(st == S_OK && match && b->data[20] == 0xaa,
		    "%s: GET_ID \"%s\"%s%s # status %s", b->tag, id,
		    bo.serial_set ? ", expected " : "",
		    bo.serial_set ? bo.serial : "", st_name(st));
	}

	/* Read the first 4 KiB. */
	memset(b->data, 0, NSEC * SECTOR);
	st = blk_rq(b, T_IN, 0, b->data, NSEC * SECTOR, true);
	bad = bo.seed >= 0 ? pattern_check(b->data, (u32)bo.seed, 0, NSEC) : -1;
	tap(st == S_OK && bad < 0, "%s: read sectors 0-7%s # status %s, first bad byte %ld",
	    b->tag, bo.seed >= 0 ? ", image pattern matches" : "",
	    st_name(st), bad);

	if (bo.ro) {
		tap(b->features & (1ull << VIRTIO_BLK_F_RO),
		    "%s: read-only disk offers VIRTIO_BLK_F_RO", b->tag);
		st = blk_rq(b, T_OUT, WRITE_AT, b->data, NSEC * SECTOR, false);
		tap(st == S_IOERR, "%s: write to a read-only disk fails # status %s",
		    b->tag, st_name(st));
	} else {
		/* Write pattern seed+1 at WRITE_AT, read it back. */
		u32 wseed = (u32)(bo.seed >= 0 ? bo.seed + 1 : 1) & 0xffffff;

		pattern_fill(b->data, wseed, WRITE_AT, NSEC);
		st = blk_rq(b, T_OUT, WRITE_AT, b->data, NSEC * SECTOR, false);
		tap(st == S_OK, "%s: write sectors %u-%u # status %s", b->tag,
		    WRITE_AT, WRITE_AT + NSEC - 1, st_name(st));
		memset(b->data, 0, NSEC * SECTOR);
		st = blk_rq(b, T_IN, WRITE_AT, b->data, NSEC * SECTOR, true);
		bad = pattern_check(b->data, wseed, WRITE_AT, NSEC);
		tap(st == S_OK && bad < 0, "%s: read back what was written # status %s, first bad byte %ld",
		    b->tag, st_name(st), bad);
	}

	st = blk_rq(b, T_FLUSH, 0, NULL, 0, false);
	tap(st == S_OK, "%s: FLUSH # status %s", b->tag, st_name(st));

	if (!bo.ro && (b->features & (1ull << VIRTIO_BLK_F_DISCARD))) {
		st = seg_rq(b, T_DISCARD, DISCARD_AT, DISCARD_N);
		tap(st == S_OK, "%s: DISCARD sectors %u-%u # status %s", b->tag,
		    DISCARD_AT, DISCARD_AT + DISCARD_N - 1, st_name(st));
	}
	if (!bo.ro && (b->features & (1ull << VIRTIO_BLK_F_WRITE_ZEROES))) {
		st = seg_rq(b, T_WRITE_ZEROES, ZERO_AT, NSEC);
		memset(b->data, 0xff, NSEC * SECTOR);
		int st2 = blk_rq(b, T_IN, ZERO_AT, b->data, NSEC * SECTOR, true);

		tap(st == S_OK && st2 == S_OK && all_zero(b->data, NSEC * SECTOR),
		    "%s: WRITE_ZEROES sectors %u-%u, reads back zeroes # status %s, read %s",
		    b->tag, ZERO_AT, ZERO_AT + NSEC - 1, st_name(st),
		    st_name(st2));
	}

	/* Out of range: IOERR, never a host access outside the image. */
	st = blk_rq(b, T_IN, cap, b->data, SECTOR, true);
	tap(st == S_IOERR, "%s: read at the capacity (sector %llu) fails # status %s",
	    b->tag, (unsigned long long)cap, st_name(st));
	st = cap ? blk_rq(b, T_IN, cap - 1, b->data, 2 * SECTOR, true) : S_IOERR;
	tap(st == S_IOERR, "%s: read across the end fails # status %s", b->tag,
	    st_name(st));
	st = blk_rq(b, T_OUT, 1ull << 55, b->data, SECTOR, false);
	tap(st == S_IOERR, "%s: write at sector 2^55 (offset wraps) fails # status %s",
	    b->tag, st_name(st));
	if (!bo.ro && (b->features & (1ull << VIRTIO_BLK_F_WRITE_ZEROES))) {
		st = seg_rq(b, T_WRITE_ZEROES, ~0ull - 1, 4);
		tap(st == S_IOERR, "%s: WRITE_ZEROES segment wrapping past 2^64 fails # status %s",
		    b->tag, st_name(st));
	}
	st = blk_rq(b, 0x99, 0, b->data, SECTOR, true);
	tap(st == S_UNSUPP, "%s: unknown request type is UNSUPP # status %s",
	    b->tag, st_name(st));
	st = blk_rq(b, T_IN, 0, b->data, 100, true);
	tap(st == S_IOERR, "%s: read of 100 bytes (not a sector multiple) fails # status %s",
	    b->tag, st_name(st));

	u32 status = vdev_rd(b->base, 0x070);
	tap(!(status & GS_NEEDS_RESET), "%s: device healthy after bad requests # status 0x%x",
	    b->tag, status);
}

void drive_blk(struct vdev *d, int idx)
{
	static struct blkdev b;
	size_t mark = guest_alloc_mark();
	const char *why = "";
	u64 offered = 0, want;
	u8 cfg[8];

	(void)d; /* struct vdev is private to virtio.c; acpi.dev has it all */
	memset(&b, 0, sizeof(b));
	b.base = acpi.dev[idx].base;
	snprintf(b.tag, sizeof(b.tag), "virtio-blk@0x%llx",
		 (unsigned long long)b.base);

	want = GVQ_F_VERSION_1 | (1ull << VIRTIO_BLK_F_RO) |
	       (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH) |
	       (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_SIZE_MAX) |
	       (1ull << VIRTIO_BLK_F_DISCARD) |
	       (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	bool neg = vdev_negotiate(b.base, want, &offered, &b.features);
	if (!tap(neg && (offered & (1ull << VIRTIO_BLK_F_FLUSH)),
		 "%s: features negotiated (FLUSH offered) # offered 0x%llx, accepted 0x%llx",
		 b.tag, (unsigned long long)offered,
		 (unsigned long long)b.features))
		goto out;

	/* §5.2.4: capacity at offset 0, read before DRIVER_OK is fine. */
	vdev_config_read(b.base, 0, cfg, 8);
	b.capacity = get64(cfg);
	if (!tap(bo.sectors < 0 || b.capacity == (u64)bo.sectors,
		 "%s: capacity %llu sectors%s # expected %lld", b.tag,
		 (unsigned long long)b.capacity,
		 bo.sectors < 0 ? "" : " as expected", bo.sectors))
		goto out;

	b.hdr = guest_alloc(16, 16);
	b.status = guest_alloc(1, 1);
	b.data = guest_alloc(NSEC * SECTOR, 4096);
	if (!b.hdr || !b.status || !b.data ||
	    !gvq_setup(b.base, &b.q, 0, 16, &why) || !vdev_driver_ok(b.base)) {
		tap(false, "%s: queue 0 set up, DRIVER_OK # %s", b.tag,
		    b.data ? why : "probe arena exhausted");
		goto out;
	}
	if (bo.round >= 0)
		blk_round(&b);
	else
		blk_tests(&b);
out:
	tap(vdev_reset(b.base), "%s: reset after use", b.tag);
	guest_alloc_release(mark);
}

void blk_summary(int n)
{
	if (bo.count >= 0)
		tap(n == bo.count, "found %d virtio-blk device(s), expected %d",
		    n, bo.count);
}
