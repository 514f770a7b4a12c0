/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk: the block device (VIRTIO 1.2 §5.2) backed by a raw image.
 *
 * Device id 2.  The backend is a regular file or a block device holding a
 * raw image: its bytes are the disk's bytes.  The content is never looked at
 * to guess a format (a guest that writes a qcow2 header into its raw disk
 * must not make the host parse it on the next boot).
 *
 * INI keys ([device.<id>] with type = virtio-blk):
 *
 *   path       = <file>     the image (required); regular file or block
 *                           device; capacity = size / 512 (a partial last
 *                           sector is not visible)
 *   readonly   = on|off     VIRTIO_BLK_F_RO, image opened O_RDONLY (off)
 *   serial     = <text>     GET_ID string, 0..20 printable ASCII bytes
 *                           (default: empty)
 *   cache      = writeback  (default) FLUSH = fdatasync before the status
 *              | none       O_DIRECT where the file system allows it, FLUSH
 *                           still fdatasyncs (drive caches)
 *              | unsafe     FLUSH completes without syncing: a host crash
 *                           or power loss loses data the guest believes
 *                           durable.  For throw-away VMs only.
 *   discard    = on|off     VIRTIO_BLK_F_DISCARD (punch hole) and
 *                           write_zeroes_may_unmap (on)
 *   queues     = 1..64      request queues, VIRTIO_BLK_F_MQ (1)
 *   queue_size = 2..1024    QueueNumMax, power of two (256)
 *   iothreads  = 1..64      worker threads doing the I/O (4)
 *
 * Locking: the image is locked with an open file description lock
 * (F_OFD_SETLK: a write lock for read-write, a read lock for readonly) held
 * while the device exists, so a second VM (or a second device of this VM)
 * cannot open a writable image in use, nor write an image another VM reads.
 *
 * Threads
 * -------
 * queue_notify (I/O thread) pops the available chains, at most
 * BLK_NOTIFY_BUDGET per call (the rest is continued from the event loop
 * through resume_fd, so a driver that refills the ring as fast as it
 * completes cannot keep the shared I/O thread to itself), validates the
 * request (header, status, data direction, ranges; the discard/write-zeroes
 * segments are copied out of guest memory so the guest cannot change them
 * after the check) and either completes it at once (errors, GET_ID) or
 * hands it to the worker pool.  Workers run preadv/pwritev/fdatasync/
 * fallocate on the image, write the status byte and vq_push the chain from
 * the worker thread; the last worker to find the work list empty sends one
 * vq_notify per queue it completed on (the core applies EVENT_IDX /
 * NO_INTERRUPT suppression, §2.7.10).  Completions are therefore published
 * in the order they finish, not the order they were submitted (§5.2.6.4:
 * the driver may not assume ordering).
 *
 * Inline fast path: a hand-off to a worker and the worker's wake-up cost
 * more than a read the page cache serves (~1 us).  So IN requests, and OUT
 * requests while FLUSH is negotiated, of at most BLK_INLINE_REQ_MAX bytes on
 * a page-cache fd are first tried on the I/O thread with preadv2/pwritev2
 * (RWF_NOWAIT), within a per-call budget (BLK_INLINE_MAX_*); what completes
 * is pushed there and the call ends with one vq_notify.  EAGAIN, errors and
 * end of file go to the pool as before; a short transfer goes to the pool
 * with r->done bytes done, the worker continuing after them.  cache=none
 * stays on the pool (RWF_NOWAIT does not make O_DIRECT I/O asynchronous).
 * The inline attempt runs under the device lock, like reset(), so a reset
 * never sees one half done.  docs/virtio-blk.md has the measurements.
 *
 * reset() (vCPU thread, device lock held): queued requests that no worker
 * has started are dropped: their chains are free()d, never pushed (§2.4:
 * the device must not touch the rings after reset).  Requests a worker is
 * executing cannot be cancelled (a preadv into guest RAM is under way), so
 * reset waits for them, at most BLK_RESET_WAIT_MS; past that (storage that
 * does not answer) it defers the reset through the reset_defer service
 * where the transport offers it (virtio-mmio: Status reads non-zero until
 * the last one returns and the worker calls reset_done; vhost-user: waits
 * as before); a request that finishes after reset began is
 * free()d instead of pushed.  The pool threads live as long as the device.
 *
 * Validation (every case gives an error status or breaks the queue, never a
 * host access outside the image):
 *   - no device-writable byte at all: nowhere to put a status: the queue is
 *     broken (NEEDS_RESET);
 *   - the status is the last byte of the device-writable area (§2.6.4: any
 *     framing; normally its own 1-byte descriptor, last);
 *   - fewer than 16 device-readable bytes (no header): IOERR;
 *   - IN/GET_ID with device-readable data, OUT/FLUSH/DISCARD/WRITE_ZEROES
 *     with device-writable bytes besides the status: IOERR;
 *   - IN/OUT data not a multiple of 512, or sector * 512 + length beyond the
 *     capacity (computed without overflow): IOERR;
 *   - DISCARD/WRITE_ZEROES: payload not a whole number of 16-byte segments,
 *     0 or more than max_*_seg segments, a segment beyond the capacity or
 *     longer than max_*_sectors: IOERR; unknown segment flags, or the unmap
 *     flag on DISCARD (§5.2.6.2): UNSUPP; feature not negotiated: UNSUPP;
 *   - unknown request types: UNSUPP; writes of any kind to a read-only
 *     disk: IOERR;
 *   - a host I/O error: IOERR, logged once per device;
 *   - a failed fdatasync is sticky: that FLUSH and every later one returns
 *     IOERR (the kernel may have dropped the dirty pages: "fsyncgate");
 *   - a head already in flight is refused by the core's vq_pop (NEEDS_RESET).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <smvmm/plugin.h>

#define VIRTIO_ID_BLOCK 2

/* VIRTIO 1.2 §5.2.3 feature bits */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14
/* §6 */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

#define BIT(n) (1ULL << (n))

/* §5.2.6 request types */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

/* §5.2.6 status values */
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

/* §5.2.6: discard / write zeroes segment flags */
#define VIRTIO_BLK_WZ_F_UNMAP 1u

#define BLK_SECTOR_SHIFT 9
#define BLK_SECTOR_SIZE 512u
#define BLK_HDR_SIZE 16u
#define BLK_SEG_SIZE 16u
#define BLK_ID_BYTES 20u

#define BLK_QUEUE_SIZE_DEFAULT 256
/* A chain has at most queue-size iovecs (virtq.h); preadv takes IOV_MAX. */
#define BLK_QUEUE_SIZE_MAX 1024
#define BLK_IOTHREADS_DEFAULT 4
#define BLK_IOTHREADS_MAX 64
/* Largest single segment we advertise (size_max); larger ones still work. */
#define BLK_SIZE_MAX (1u << 20)
/* Discard / write zeroes limits (config space, §5.2.4). */
#define BLK_DISCARD_SECTORS_MAX (1u << 22) /* 2 GiB per segment */
#define BLK_DISCARD_SEG_MAX 32u
#define BLK_DISCARD_ALIGN 8u /* sectors: 4 KiB, the usual fs block */
/*
 * reset() waits this long for requests a worker is executing; past it (a
 * hung NFS server, a stalled disk) the reset is deferred (reset_defer
 * service): the vCPU goes on, the driver reads a non-zero Status until the
 * last of them returns.
 */
#define BLK_RESET_WAIT_MS 200
/* Chains popped before they are handed to the pool in one go. */
#define BLK_POP_BATCH 64
/*
 * Chains one queue_notify call takes from a queue, at most.  A driver that
 * refills the ring as fast as requests complete (the inline path completes
 * them on this thread) would otherwise keep the shared I/O thread in this
 * call for as long as it likes.  Past the budget the call ends and the rest
 * is continued from the event loop (resume_fd), after the other devices'
 * events: one ring's worth at the default queue size.
 */
#define BLK_NOTIFY_BUDGET 256u
/* Requests one worker takes from the list at a time, at most. */
#define BLK_WORKER_BATCH 8
/*
 * Inline fast path (see "Threads" above): per queue_notify call, at most
 * this many requests / bytes are tried on the I/O thread, and only requests
 * of at most BLK_INLINE_REQ_MAX bytes (a page-cache copy of 64 KiB is
 * ~10 us; larger transfers gain nothing from skipping the hand-off and
 * would serialize on the I/O thread what the workers do in parallel).
 * 128 x 4 KiB hits are ~150 us of I/O thread time: other devices served
 * by the same event loop wait at most that long.
 */
#define BLK_INLINE_MAX_REQS 128
#define BLK_INLINE_MAX_BYTES (512u << 10)
#define BLK_INLINE_REQ_MAX (64u << 10)
/* Writes inline too (FLUSH negotiated)?  XFS takes RWF_NOWAIT buffered
 * writes (measured: 0.54x -> 0.60x of the host at QD 32 on one CPU); ext4
 * and tmpfs refuse them and the first EOPNOTSUPP turns this off. */
#define BLK_INLINE_WRITES 1

enum blk_cache { CACHE_WRITEBACK, CACHE_NONE, CACHE_UNSAFE };

/* §5.2.4 struct virtio_blk_config, little-endian, 72 bytes (VIRTIO 1.2). */
struct blk_config {
	uint64_t capacity;
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t blk_size;
	uint8_t physical_block_exp;
	uint8_t alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
	uint32_t max_secure_erase_sectors;
	uint32_t max_secure_erase_seg;
	uint32_t secure_erase_sector_alignment;
} __attribute__((packed));

_Static_assert(sizeof(struct blk_config) == 72, "virtio_blk_config layout");

/* A discard / write zeroes segment, copied out of guest memory (§5.2.6). */
struct blk_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

struct blk_req {
	struct blk_req *next;
	struct smvmm_chain *c;
	uint32_t type;
	uint32_t gen;          /* blk.gen when popped */
	uint64_t sector;
	struct iovec *iov;     /* data segments, inside c->iov */
	int niov;
	uint32_t len;          /* data bytes */
	uint32_t done;         /* IN/OUT bytes already transferred inline;
				* iov/niov then start after them */
	uint8_t *status;       /* last device-writable byte */
	bool writethrough;     /* FLUSH not negotiated: sync each write */
	bool may_unmap;        /* write zeroes may punch holes */
	uint32_t nsegs;
	struct blk_seg *segs;  /* discard / write zeroes, malloc()ed */
};

struct blk {
	const struct smvmm_host_services *svc;
	struct smvmm_host *h;

	/* configuration */
	char *path;
	bool readonly;
	char serial[BLK_ID_BYTES];
	enum blk_cache cache;
	bool discard;
	unsigned int queues;
	unsigned int queue_size;
	unsigned int iothreads;

	int fd;                /* buffered, locked */
	int fd_direct;         /* cache=none: O_DIRECT, else -1 */
	uint64_t capacity;     /* sectors */
	struct blk_config cfg;

	/* device state: ops and queue_notify, under the core's device lock */
	uint64_t features;
	bool active;
	bool broken[SMVMM_MAX_QUEUES];
	bool no_nowait[2];     /* RWF_NOWAIT unsupported: [0] reads, [1] writes */
	bool more[SMVMM_MAX_QUEUES]; /* budget spent: continue (resume_fd) */
	int resume_fd;         /* eventfd watched on the I/O thread */
	struct blk_req *spare; /* free requests for reuse (ops only) */
	unsigned int nspare;

	/* the worker pool */
	pthread_mutex_t lock;
	pthread_cond_t work_cond;   /* work queued or stop */
	pthread_cond_t idle_cond;   /* running dropped to 0 */
	struct blk_req *head, **tail;
	unsigned int running;       /* requests being executed */
	unsigned int queued;        /* requests in the list */
	unsigned int idle;          /* workers waiting for work */
	uint32_t gen;               /* bumped by reset */
	uint64_t dirty;             /* queues pushed to since last notify */
	bool stop;
	bool reset_deferred;        /* reset_done when running drops to 0 */
	pthread_t *threads;
	unsigned int nthreads;

	/* sticky / once-only, any thread (atomics) */
	bool flush_failed;
	bool io_err_logged;
	bool direct_fallback_logged;
	bool discard_unsup_logged;
	bool bad_req_logged;
};

/* ---- helpers -------------------------------------------------------------- */

/* Log a line the first time `flag` is set (any thread). */
#define LOG_ONCE(b, flag, lvl, ...)                                          \
	do {                                                                 \
		if (!__atomic_exchange_n(&(b)->flag, true, __ATOMIC_RELAXED)) \
			(b)->svc->log((b)->h, (lvl), __VA_ARGS__);           \
	} while (0)

/* Copy `len` bytes at byte `off` of an iovec array into buf. */
static bool iov_read(const struct iovec *iov, unsigned int n, size_t off,
		     void *buf, size_t len)
{
	uint8_t *p = buf;

	for (unsigned int i = 0; i < n && len; i++) {
		size_t l = iov[i].iov_len, k;

		if (off >= l) {
			off -= l;
			continue;
		}
		k = l - off < len ? l - off : len;
		memcpy(p, (uint8_t *)iov[i].iov_base + off, k);
		p += k;
		len -= k;
		off = 0;
	}
	return len == 0;
}

/*
 * Trim the first `skip` bytes off iov[0..n): returns the index of the first
 * remaining iovec (its base/len adjusted in place).
 */
static unsigned int iov_skip(struct iovec *iov, unsigned int n, size_t skip)
{
	unsigned int i = 0;

	while (i < n && skip >= iov[i].iov_len) {
		skip -= iov[i].iov_len;
		i++;
	}
	if (i < n && skip) {
		iov[i].iov_base = (uint8_t *)iov[i].iov_base + skip;
		iov[i].iov_len -= skip;
	}
	return i;
}

/* "on"/"off" and the usual synonyms. */
static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "on", "true", "yes", "1" };
	static const char *const no[] = { "off", "false", "no", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(v, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(v, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* Decimal integer in [lo, hi], no sign, no junk (blanks around allowed). */
static int parse_uint(const char *v, unsigned long lo, unsigned long hi,
		      unsigned int *out)
{
	unsigned long x;
	char *end;

	while (*v == ' ' || *v == '\t')
		v++;
	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	x = strtoul(v, &end, 10);
	if (errno)
		return -ERANGE;
	while (*end == ' ' || *end == '\t')
		end++;
	if (*end)
		return -EINVAL;
	if (x < lo || x > hi)
		return -ERANGE;
	*out = (unsigned int)x;
	return 0;
}

/* ---- configuration -------------------------------------------------------- */

static int blk_parse_config(struct blk *b)
{
	const struct smvmm_host_services *svc = b->svc;
	const char *v;

	/* Relative to the INI file (hosts before config_path: as given). */
	v = SMVMM_SVC_HAS(svc, config_path) ? svc->config_path(b->h, "path")
					    : svc->config_get(b->h, "path");
	if (!v || !*v) {
		svc->config_error(b->h, "path",
				  "required: the raw image file or block device");
		return -EINVAL;
	}
	b->path = strdup(v);
	if (!b->path)
		return -ENOMEM;

	v = svc->config_get(b->h, "readonly");
	if (v && parse_bool(v, &b->readonly)) {
		svc->config_error(b->h, "readonly",
				  "expected on or off, got \"%s\"", v);
		return -EINVAL;
	}

	v = svc->config_get(b->h, "serial");
	if (v) {
		size_t n = strlen(v);

		/* §5.2.6: the ID is at most 20 bytes, NUL-padded. */
		if (n > BLK_ID_BYTES) {
			svc->config_error(b->h, "serial",
					  "%zu bytes, at most %u", n,
					  BLK_ID_BYTES);
			return -EINVAL;
		}
		for (size_t i = 0; i < n; i++)
			if (v[i] < 0x20 || v[i] > 0x7e) {
				svc->config_error(b->h, "serial",
						  "only printable ASCII "
						  "allowed (byte %zu)", i);
				return -EINVAL;
			}
		memcpy(b->serial, v, n);
	}

	b->cache = CACHE_WRITEBACK;
	v = svc->config_get(b->h, "cache");
	if (v) {
		if (!strcmp(v, "writeback"))
			b->cache = CACHE_WRITEBACK;
		else if (!strcmp(v, "none"))
			b->cache = CACHE_NONE;
		else if (!strcmp(v, "unsafe"))
			b->cache = CACHE_UNSAFE;
		else {
			svc->config_error(b->h, "cache",
					  "expected writeback, none or unsafe, "
					  "got \"%s\"", v);
			return -EINVAL;
		}
	}

	b->discard = true;
	v = svc->config_get(b->h, "discard");
	if (v && parse_bool(v, &b->discard)) {
		svc->config_error(b->h, "discard",
				  "expected on or off, got \"%s\"", v);
		return -EINVAL;
	}

	b->queues = 1;
	v = svc->config_get(b->h, "queues");
	if (v && parse_uint(v, 1, SMVMM_MAX_QUEUES, &b->queues)) {
		svc->config_error(b->h, "queues",
				  "expected a number of queues 1..%u, got "
				  "\"%s\"", SMVMM_MAX_QUEUES, v);
		return -EINVAL;
	}

	b->queue_size = BLK_QUEUE_SIZE_DEFAULT;
	v = svc->config_get(b->h, "queue_size");
	if (v && (parse_uint(v, 2, BLK_QUEUE_SIZE_MAX, &b->queue_size) ||
		  (b->queue_size & (b->queue_size - 1)))) {
		/* 2: a request needs a header and a status (§5.2.6). */
		svc->config_error(b->h, "queue_size",
				  "expected a power of two 2..%u, got \"%s\"",
				  BLK_QUEUE_SIZE_MAX, v);
		return -EINVAL;
	}

	b->iothreads = BLK_IOTHREADS_DEFAULT;
	v = svc->config_get(b->h, "iothreads");
	if (v && parse_uint(v, 1, BLK_IOTHREADS_MAX, &b->iothreads)) {
		svc->config_error(b->h, "iothreads",
				  "expected a number of threads 1..%u, got "
				  "\"%s\"", BLK_IOTHREADS_MAX, v);
		return -EINVAL;
	}
	return 0;
}

/*
 * Open and lock the image.  Errors are reported through config_error on
 * "path" (the key the user has to fix).
 */
static int blk_open(struct blk *b)
{
	const struct smvmm_host_services *svc = b->svc;
	int flags = (b->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct flock fl = {
		.l_type = b->readonly ? F_RDLCK : F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = 0,
		.l_len = 0, /* the whole file, however it grows */
	};
	struct stat st;
	int ret;

	/* O_NONBLOCK for the open only: a FIFO opened read-only would wait
	 * for a writer; it is refused below like anything but a regular file
	 * or a block device. */
	b->fd = open(b->path, flags | O_NONBLOCK);
	if (b->fd < 0) {
		ret = -errno;
		svc->config_error(b->h, "path", "cannot open \"%s\"%s: %s",
				  b->path, b->readonly ? " read-only" : "",
				  strerror(errno));
		return ret;
	}
	if (fstat(b->fd, &st) < 0) {
		ret = -errno;
		svc->config_error(b->h, "path", "cannot stat \"%s\": %s",
				  b->path, strerror(errno));
		return ret;
	}
	if (S_ISREG(st.st_mode)) {
		b->capacity = (uint64_t)st.st_size >> BLK_SECTOR_SHIFT;
		if (st.st_size % BLK_SECTOR_SIZE)
			svc->log(b->h, SMVMM_LOG_WARN,
				 "\"%s\": size %lld is not a multiple of 512; "
				 "the last %lld bytes are not visible",
				 b->path, (long long)st.st_size,
				 (long long)(st.st_size % BLK_SECTOR_SIZE));
	} else if (S_ISBLK(st.st_mode)) {
		uint64_t bytes;

		if (ioctl(b->fd, BLKGETSIZE64, &bytes) < 0) {
			ret = -errno;
			svc->config_error(b->h, "path",
					  "cannot get the size of block device "
					  "\"%s\": %s", b->path,
					  strerror(errno));
			return ret;
		}
		b->capacity = bytes >> BLK_SECTOR_SHIFT;
	} else {
		svc->config_error(b->h, "path",
				  "\"%s\" is neither a regular file nor a "
				  "block device", b->path);
		return -EINVAL;
	}
	if (fcntl(b->fd, F_SETFL, 0) < 0) {
		ret = -errno;
		svc->config_error(b->h, "path", "\"%s\": fcntl: %s", b->path,
				  strerror(errno));
		return ret;
	}

	/*
	 * OFD locks belong to the open file description: they conflict with
	 * other processes AND with other opens in this process (two devices
	 * on one image), and go away when the fd is closed or the process
	 * dies (SIGKILL included).
	 */
	if (fcntl(b->fd, F_OFD_SETLK, &fl) < 0) {
		ret = -errno;
		if (errno == EAGAIN || errno == EACCES)
			svc->config_error(b->h, "path",
					  "\"%s\" is in use: another VM (or "
					  "device) holds a %s lock on it; "
					  "refusing to open it %s", b->path,
					  b->readonly ? "write" : "read or write",
					  b->readonly ? "read-only"
						      : "read-write");
		else
			svc->config_error(b->h, "path",
					  "cannot lock \"%s\": %s", b->path,
					  strerror(errno));
		return ret;
	}

	b->fd_direct = -1;
	if (b->cache == CACHE_NONE) {
		b->fd_direct = open(b->path, flags | O_DIRECT);
		if (b->fd_direct < 0)
			svc->log(b->h, SMVMM_LOG_WARN,
				 "cache=none: \"%s\" does not allow O_DIRECT "
				 "(%s); using the page cache", b->path,
				 strerror(errno));
	}
	return 0;
}

static void blk_fill_config(struct blk *b)
{
	struct blk_config *c = &b->cfg;

	memset(c, 0, sizeof(*c));
	c->capacity = htole64(b->capacity);
	c->size_max = htole32(BLK_SIZE_MAX);
	/* Linux's convention: header and status take two descriptors. */
	c->seg_max = htole32(b->queue_size - 2);
	c->blk_size = htole32(BLK_SECTOR_SIZE);
	c->writeback = b->cache != CACHE_NONE;
	c->num_queues = htole16((uint16_t)b->queues);
	if (b->discard) {
		c->max_discard_sectors = htole32(BLK_DISCARD_SECTORS_MAX);
		c->max_discard_seg = htole32(BLK_DISCARD_SEG_MAX);
		c->discard_sector_alignment = htole32(BLK_DISCARD_ALIGN);
	}
	c->max_write_zeroes_sectors = htole32(BLK_DISCARD_SECTORS_MAX);
	c->max_write_zeroes_seg = htole32(BLK_DISCARD_SEG_MAX);
	c->write_zeroes_may_unmap = b->discard;
}

/* ---- I/O (worker threads) ------------------------------------------------- */

static void io_error(struct blk *b, const char *what, int err)
{
	LOG_ONCE(b, io_err_logged, SMVMM_LOG_ERROR,
		 "host I/O error (%s: %s); the guest gets IOERR; further "
		 "errors are not logged", what, strerror(err));
}

/*
 * preadv/pwritev of the whole iovec array at `off`, continuing short
 * transfers.  Returns 0 or -errno (-EIO for an unexpected end of file).
 */
static int rw_full(struct blk *b, bool write, struct iovec *iov, int niov,
		   off_t off)
{
	int fd = b->fd_direct >= 0 ? b->fd_direct : b->fd;

	while (niov > 0) {
		ssize_t n;

		if (!iov->iov_len) {
			iov++;
			niov--;
			continue;
		}
		n = write ? pwritev(fd, iov, niov, off)
			  : preadv(fd, iov, niov, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EINVAL && fd == b->fd_direct) {
				/* Guest buffers not aligned as O_DIRECT
				 * wants: this request goes through the page
				 * cache (coherent with O_DIRECT in Linux). */
				LOG_ONCE(b, direct_fallback_logged,
					 SMVMM_LOG_INFO,
					 "cache=none: unaligned requests use "
					 "the page cache");
				fd = b->fd;
				continue;
			}
			return -errno;
		}
		if (n == 0)
			return -EIO; /* the image shrank under us */
		off += n;
		while (n > 0) {
			if ((size_t)n >= iov->iov_len) {
				n -= (ssize_t)iov->iov_len;
				iov++;
				niov--;
			} else {
				iov->iov_base = (uint8_t *)iov->iov_base + n;
				iov->iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return 0;
}

/* fdatasync with the sticky failure rule ("fsyncgate"). */
static int blk_sync(struct blk *b)
{
	if (__atomic_load_n(&b->flush_failed, __ATOMIC_ACQUIRE))
		return -EIO;
	if (b->cache == CACHE_UNSAFE)
		return 0;
	while (fdatasync(b->fd) < 0) {
		int err = errno;

		if (err == EINTR)
			continue;
		/*
		 * Never retried: after a failed writeback Linux may mark the
		 * pages clean, and a second fdatasync would "succeed" with
		 * the data gone.  Every later FLUSH fails too.
		 */
		__atomic_store_n(&b->flush_failed, true, __ATOMIC_RELEASE);
		b->svc->log(b->h, SMVMM_LOG_ERROR,
			    "fdatasync \"%s\": %s; data may be lost, every "
			    "further FLUSH fails", b->path, strerror(err));
		return -err;
	}
	return 0;
}

/* Write zeroes the slow way (no fallocate support). */
static int write_zeroes_slow(struct blk *b, off_t off, uint64_t len)
{
	static const uint8_t zeroes[64 * 1024] __attribute__((aligned(4096)));

	while (len) {
		size_t k = len < sizeof(zeroes) ? (size_t)len : sizeof(zeroes);
		struct iovec iov = { .iov_base = (void *)zeroes, .iov_len = k };
		int ret = rw_full(b, true, &iov, 1, off);

		if (ret)
			return ret;
		off += (off_t)k;
		len -= k;
	}
	return 0;
}

static int do_discard(struct blk *b, const struct blk_seg *s)
{
	off_t off = (off_t)(s->sector << BLK_SECTOR_SHIFT);
	off_t len = (off_t)((uint64_t)s->num_sectors << BLK_SECTOR_SHIFT);

	if (!len)
		return 0;
	if (fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
		      len) == 0)
		return 0;
	if (errno == EOPNOTSUPP || errno == ENOSYS) {
		/* Discard is a hint (§5.2.6.2): succeed without freeing. */
		LOG_ONCE(b, discard_unsup_logged, SMVMM_LOG_INFO,
			 "\"%s\" cannot punch holes; discard is a no-op",
			 b->path);
		return 0;
	}
	return -errno;
}

static int do_write_zeroes(struct blk *b, const struct blk_seg *s,
			   bool may_unmap)
{
	off_t off = (off_t)(s->sector << BLK_SECTOR_SHIFT);
	off_t len = (off_t)((uint64_t)s->num_sectors << BLK_SECTOR_SHIFT);

	if (!len)
		return 0;
	/* A punched hole reads back as zeroes (files and block devices). */
	if (may_unmap && (s->flags & VIRTIO_BLK_WZ_F_UNMAP) &&
	    fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
		      len) == 0)
		return 0;
	if (fallocate(b->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off,
		      len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
		return -errno;
	return write_zeroes_slow(b, off, (uint64_t)len);
}

/* Execute one request; returns its status byte value. */
static uint8_t blk_execute(struct blk *b, struct blk_req *r)
{
	/* r->done: bytes the I/O thread already moved (a short inline
	 * transfer); r->iov starts after them. */
	off_t off = (off_t)(r->sector << BLK_SECTOR_SHIFT) + (off_t)r->done;
	int ret = 0;

	switch (r->type) {
	case VIRTIO_BLK_T_IN:
		ret = rw_full(b, false, r->iov, r->niov, off);
		if (ret)
			io_error(b, "read", -ret);
		break;
	case VIRTIO_BLK_T_OUT:
		ret = rw_full(b, true, r->iov, r->niov, off);
		if (ret)
			io_error(b, "write", -ret);
		else if (r->writethrough)
			ret = blk_sync(b);
		break;
	case VIRTIO_BLK_T_FLUSH:
		ret = blk_sync(b);
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		for (uint32_t i = 0; i < r->nsegs && !ret; i++)
			ret = r->type == VIRTIO_BLK_T_DISCARD
				      ? do_discard(b, &r->segs[i])
				      : do_write_zeroes(b, &r->segs[i],
							r->may_unmap);
		if (ret)
			io_error(b, r->type == VIRTIO_BLK_T_DISCARD
					    ? "discard"
					    : "write zeroes", -ret);
		else if (r->type == VIRTIO_BLK_T_WRITE_ZEROES &&
			 r->writethrough)
			ret = blk_sync(b);
		break;
	default:
		ret = -EINVAL; /* blk_prepare only queues the types above */
		break;
	}
	return ret ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

static void req_free(struct blk_req *r)
{
	free(r->segs);
	free(r);
}

/*
 * Request structs freed by the ops (queue_notify's inline completions,
 * errors) are kept for the next requests: a malloc/free pair less per
 * request on the I/O thread.  Only the ops touch b->spare, and the core
 * never runs two ops of a device at once (plugin.h); workers free theirs.
 */
#define BLK_SPARE_MAX 256

static struct blk_req *req_alloc(struct blk *b)
{
	struct blk_req *r = b->spare;

	if (!r)
		return calloc(1, sizeof(*r));
	b->spare = r->next;
	b->nspare--;
	memset(r, 0, sizeof(*r));
	return r;
}

static void req_recycle(struct blk *b, struct blk_req *r)
{
	if (b->nspare >= BLK_SPARE_MAX) {
		req_free(r);
		return;
	}
	free(r->segs);
	r->next = b->spare;
	b->spare = r;
	b->nspare++;
}

/* Bytes reported in the used element (§2.7.8.1: a lower bound, counted from
 * the first device-writable byte). */
static uint32_t written_len(const struct smvmm_chain *c, uint32_t type,
			    uint8_t status)
{
	if (status == VIRTIO_BLK_S_OK &&
	    (type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID))
		return c->in_len;
	return c->in_len == 1 ? 1 : 0;
}

static void *blk_worker(void *arg)
{
	struct blk *b = arg;

	pthread_mutex_lock(&b->lock);
	for (;;) {
		struct blk_req *batch, *r;
		unsigned int n, take;

		while (!b->stop && !b->head) {
			b->idle++;
			pthread_cond_wait(&b->work_cond, &b->lock);
			b->idle--;
		}
		if (b->stop)
			break;
		/* Take a fair share (at most BLK_WORKER_BATCH): fewer lock
		 * round trips for small requests, other workers still get
		 * some of a large batch. */
		take = b->queued / (b->idle + 1);
		if (take < 1)
			take = 1;
		if (take > BLK_WORKER_BATCH)
			take = BLK_WORKER_BATCH;
		batch = b->head;
		r = batch;
		for (n = 1; n < take && r->next; n++)
			r = r->next;
		b->head = r->next;
		r->next = NULL;
		if (!b->head)
			b->tail = &b->head;
		b->queued -= n;
		b->running += n;
		pthread_mutex_unlock(&b->lock);

		for (r = batch; r; r = r->next)
			*r->status = blk_execute(b, r);

		pthread_mutex_lock(&b->lock);
		while (batch) {
			r = batch;
			batch = r->next;
			/* Under the pool lock: reset cannot slip in between
			 * the check and the push (it bumps gen under it). */
			if (r->gen != b->gen) {
				free(r->c);
			} else {
				uint16_t q = r->c->queue;

				b->svc->vq_push(b->h, r->c,
						written_len(r->c, r->type,
							    *r->status));
				b->dirty |= BIT(q);
			}
			r->c = NULL;
			req_free(r);
		}
		b->running -= n;
		if (!b->running) {
			pthread_cond_broadcast(&b->idle_cond);
			if (b->reset_deferred) {
				/* The last request of a deferred reset:
				 * nothing touches guest memory any more. */
				b->reset_deferred = false;
				pthread_mutex_unlock(&b->lock);
				b->svc->reset_done(b->h);
				pthread_mutex_lock(&b->lock);
			}
		}
		if (!b->head && b->dirty) {
			/* One notification per queue for the whole batch. */
			uint64_t dirty = b->dirty;

			b->dirty = 0;
			pthread_mutex_unlock(&b->lock);
			for (unsigned int q = 0; dirty; q++, dirty >>= 1)
				if (dirty & 1)
					b->svc->vq_notify(b->h, (uint16_t)q);
			pthread_mutex_lock(&b->lock);
		}
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* ---- request parsing (I/O thread) ----------------------------------------- */

/* Complete a request on the I/O thread without I/O. */
static void complete_now(struct blk *b, struct smvmm_chain *c, uint32_t type,
			 uint8_t *status, uint8_t st)
{
	*status = st;
	b->svc->vq_push(b->h, c, written_len(c, type, st));
}

static void bad_request(struct blk *b, const char *why)
{
	LOG_ONCE(b, bad_req_logged, SMVMM_LOG_WARN,
		 "bad request from the driver: %s; further ones are not "
		 "logged", why);
}

/* sector + nsec within the capacity, without overflow. */
static bool range_ok(const struct blk *b, uint64_t sector, uint64_t nsec)
{
	return sector <= b->capacity && nsec <= b->capacity - sector;
}

/*
 * Copy and check discard / write zeroes segments (§5.2.6.2).  Returns a
 * status: OK (r->segs filled), IOERR or UNSUPP.
 */
static uint8_t parse_segments(struct blk *b, struct blk_req *r)
{
	bool discard = r->type == VIRTIO_BLK_T_DISCARD;
	uint32_t max_seg = BLK_DISCARD_SEG_MAX;
	uint32_t max_sec = BLK_DISCARD_SECTORS_MAX;

	if (r->len == 0 || r->len % BLK_SEG_SIZE ||
	    r->len / BLK_SEG_SIZE > max_seg) {
		bad_request(b, discard ? "discard segment list length"
				       : "write zeroes segment list length");
		return VIRTIO_BLK_S_IOERR;
	}
	r->nsegs = r->len / BLK_SEG_SIZE;
	r->segs = calloc(r->nsegs, sizeof(*r->segs));
	if (!r->segs)
		return VIRTIO_BLK_S_IOERR;
	for (uint32_t i = 0; i < r->nsegs; i++) {
		uint8_t raw[BLK_SEG_SIZE];
		struct blk_seg *s = &r->segs[i];

		/* Copied once: the guest cannot change a checked segment. */
		iov_read(r->iov, (unsigned int)r->niov, (size_t)i * BLK_SEG_SIZE,
			 raw, sizeof(raw));
		memcpy(&s->sector, raw, 8);
		memcpy(&s->num_sectors, raw + 8, 4);
		memcpy(&s->flags, raw + 12, 4);
		s->sector = le64toh(s->sector);
		s->num_sectors = le32toh(s->num_sectors);
		s->flags = le32toh(s->flags);
		/* §5.2.6.2: unknown flags, or unmap on a discard: UNSUPP. */
		if ((s->flags & ~VIRTIO_BLK_WZ_F_UNMAP) ||
		    (discard && (s->flags & VIRTIO_BLK_WZ_F_UNMAP)))
			return VIRTIO_BLK_S_UNSUPP;
		if (s->num_sectors > max_sec ||
		    !range_ok(b, s->sector, s->num_sectors)) {
			bad_request(b, "discard/write zeroes segment out of "
				       "range");
			return VIRTIO_BLK_S_IOERR;
		}
	}
	return VIRTIO_BLK_S_OK;
}

/*
 * Validate chain c.  Returns a request for the pool, or NULL when c was
 * completed here (pushed, not notified) or the queue was broken (*broken
 * set, c freed).
 */
static struct blk_req *blk_prepare(struct blk *b, struct smvmm_chain *c,
				   bool *broken)
{
	struct iovec *last;
	struct blk_req *r;
	uint8_t hdr[BLK_HDR_SIZE], *status, st;
	uint32_t type;
	bool data_in;
	unsigned int i;

	if (c->in_len == 0) {
		/* No writable status byte: the driver can never learn the
		 * outcome; refuse the queue (§2.1.2). */
		free(c);
		*broken = true;
		b->svc->needs_reset(b->h, "virtio-blk request without a "
					  "device-writable status byte");
		return NULL;
	}
	/* The core drops zero-length descriptors: the last iovec is >= 1. */
	last = &c->iov[c->n_out + c->n_in - 1];
	status = (uint8_t *)last->iov_base + last->iov_len - 1;

	if (c->out_len < BLK_HDR_SIZE) {
		bad_request(b, "header shorter than 16 device-readable bytes");
		complete_now(b, c, UINT32_MAX, status, VIRTIO_BLK_S_IOERR);
		return NULL;
	}
	iov_read(c->iov, c->n_out, 0, hdr, sizeof(hdr));
	memcpy(&type, hdr, 4);
	type = le32toh(type);

	r = req_alloc(b);
	if (!r) {
		complete_now(b, c, type, status, VIRTIO_BLK_S_IOERR);
		return NULL;
	}
	r->c = c;
	r->type = type;
	r->status = status;
	memcpy(&r->sector, hdr + 8, 8);
	r->sector = le64toh(r->sector);
	r->writethrough = !(b->features & BIT(VIRTIO_BLK_F_FLUSH));
	r->may_unmap = b->discard;

	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_GET_ID:
		data_in = true;
		break;
	case VIRTIO_BLK_T_OUT:
	case VIRTIO_BLK_T_FLUSH:
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		data_in = false;
		break;
	default:
		st = VIRTIO_BLK_S_UNSUPP;
		goto done;
	}

	/* Data direction (§5.2.6: IN data is device-writable, OUT data
	 * device-readable); the other side holds only header / status. */
	if (data_in) {
		if (c->out_len != BLK_HDR_SIZE) {
			bad_request(b, "device-readable data in a read");
			st = VIRTIO_BLK_S_IOERR;
			goto done;
		}
		r->iov = &c->iov[c->n_out];
		r->niov = (int)c->n_in;
		r->len = c->in_len - 1;
		last->iov_len--; /* the status byte is not data */
		if (!last->iov_len)
			r->niov--; /* a status-only descriptor (usual) */
	} else {
		if (c->in_len != 1) {
			bad_request(b, "device-writable data in a write");
			st = VIRTIO_BLK_S_IOERR;
			goto done;
		}
		i = iov_skip(c->iov, c->n_out, BLK_HDR_SIZE);
		r->iov = &c->iov[i];
		r->niov = (int)(c->n_out - i);
		r->len = c->out_len - BLK_HDR_SIZE;
	}

	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (r->len % BLK_SECTOR_SIZE) {
			bad_request(b, "data length not a multiple of 512");
			st = VIRTIO_BLK_S_IOERR;
			goto done;
		}
		if (!range_ok(b, r->sector, r->len >> BLK_SECTOR_SHIFT)) {
			bad_request(b, "sector range beyond the capacity");
			st = VIRTIO_BLK_S_IOERR;
			goto done;
		}
		if (type == VIRTIO_BLK_T_OUT && b->readonly) {
			st = VIRTIO_BLK_S_IOERR;
			goto done;
		}
		return r;
	case VIRTIO_BLK_T_FLUSH:
		if (r->len) {
			bad_request(b, "data in a flush");
			st = VIRTIO_BLK_S_IOERR;
			goto done;
		}
		return r;
	case VIRTIO_BLK_T_GET_ID: {
		/* §5.2.6: up to 20 bytes, NUL-padded; not NUL-terminated
		 * when all 20 are used.  The rest of the buffer is zeroed. */
		uint32_t left = r->len;

		for (i = 0; i < (unsigned int)r->niov && left; i++) {
			size_t k = r->iov[i].iov_len < left ? r->iov[i].iov_len
							     : left;
			uint32_t done = r->len - left;

			memset(r->iov[i].iov_base, 0, k);
			if (done < BLK_ID_BYTES)
				memcpy(r->iov[i].iov_base, b->serial + done,
				       k < BLK_ID_BYTES - done
					       ? k
					       : BLK_ID_BYTES - done);
			left -= (uint32_t)k;
		}
		st = VIRTIO_BLK_S_OK;
		goto done;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (!(b->features & BIT(type == VIRTIO_BLK_T_DISCARD
						? VIRTIO_BLK_F_DISCARD
						: VIRTIO_BLK_F_WRITE_ZEROES))) {
			st = VIRTIO_BLK_S_UNSUPP;
			goto done;
		}
		if (b->readonly) {
			st = VIRTIO_BLK_S_IOERR;
			goto done;
		}
		st = parse_segments(b, r);
		if (st != VIRTIO_BLK_S_OK)
			goto done;
		return r;
	}
	st = VIRTIO_BLK_S_UNSUPP;
done:
	complete_now(b, c, type, status, st);
	r->c = NULL;
	req_recycle(b, r);
	return NULL;
}

/* ---- inline fast path (I/O thread) ---------------------------------------- */

/*
 * May r be tried on the I/O thread?  Only transfers through the page cache:
 * with cache=none the O_DIRECT fd would do the device I/O synchronously on
 * the I/O thread (RWF_NOWAIT on O_DIRECT only refuses to wait for locks or
 * allocation, not for the disk), one request at a time instead of the
 * pool's many in flight.  Writes only while FLUSH is negotiated: a
 * write-through write needs an fdatasync.
 */
static bool inline_candidate(const struct blk *b, const struct blk_req *r)
{
	if (b->fd_direct >= 0 || r->len > BLK_INLINE_REQ_MAX)
		return false;
	if (r->type == VIRTIO_BLK_T_IN)
		return !b->no_nowait[0];
	return BLK_INLINE_WRITES && r->type == VIRTIO_BLK_T_OUT &&
	       !r->writethrough && !b->no_nowait[1];
}

/*
 * Try IN/OUT request r without blocking: preadv2/pwritev2 with RWF_NOWAIT
 * copy what is in the page cache and return EAGAIN (or a short count)
 * where they would wait for the disk, a page lock or writeback throttling.
 * Returns true when r is complete (*r->status = OK); false when a worker
 * has to do the rest: r->done counts the bytes already transferred and
 * r->iov/r->niov were advanced past them, so the worker continues at
 * sector * 512 + done and never re-reads into (or re-writes from) guest
 * memory already handled.  Errors other than EAGAIN also go to the worker,
 * which retries and reports them (IOERR, logged once) as before.
 *
 * Runs under the device lock, like reset(): a reset never sees a request
 * half done here, and one handed to the pool is an ordinary pool request.
 */
static bool blk_try_inline(struct blk *b, struct blk_req *r)
{
	bool write = r->type == VIRTIO_BLK_T_OUT;
	off_t base = (off_t)(r->sector << BLK_SECTOR_SHIFT);

	if (b->no_nowait[write])
		return false; /* found out earlier in this batch */
	while (r->done < r->len) {
		off_t off = base + (off_t)r->done;
		unsigned int k;
		ssize_t n;

		n = write ? pwritev2(b->fd, r->iov, r->niov, off, RWF_NOWAIT)
			  : preadv2(b->fd, r->iov, r->niov, off, RWF_NOWAIT);
		if (n < 0) {
			if (errno == EOPNOTSUPP) {
				/* File system without RWF_NOWAIT for this
				 * direction (or a kernel < 4.14): stop
				 * trying, everything goes to the pool. */
				b->no_nowait[write] = true;
				b->svc->log(b->h, SMVMM_LOG_DEBUG,
					    "\"%s\": no RWF_NOWAIT %s; they "
					    "all go to the worker threads",
					    b->path, write ? "writes" : "reads");
			}
			return false;
		}
		if (n == 0 || (size_t)n > r->len - r->done)
			return false; /* end of file: the worker reports it */
		r->done += (uint32_t)n;
		k = iov_skip(r->iov, (unsigned int)r->niov, (size_t)n);
		r->iov += k;
		r->niov -= (int)k;
	}
	*r->status = VIRTIO_BLK_S_OK;
	return true;
}

/* Hand a list of requests to the pool. */
static void pool_submit(struct blk *b, struct blk_req *first,
			struct blk_req **last_next, unsigned int n)
{
	pthread_mutex_lock(&b->lock);
	*b->tail = first;
	b->tail = last_next;
	b->queued += n;
	if (n <= BLK_WORKER_BATCH || b->idle <= 1)
		pthread_cond_signal(&b->work_cond);
	else
		pthread_cond_broadcast(&b->work_cond);
	pthread_mutex_unlock(&b->lock);
}

/* Continue a queue later from the event loop (BLK_NOTIFY_BUDGET). */
static void blk_resume_later(struct blk *b, uint16_t q)
{
	uint64_t one = 1;

	b->more[q] = true;
	if (write(b->resume_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		b->svc->log(b->h, SMVMM_LOG_ERROR, "eventfd: %s",
			    strerror(errno));
}

static void blk_queue_notify(void *dev, uint16_t q)
{
	struct blk *b = dev;
	unsigned int inline_reqs = 0;
	uint32_t inline_bytes = 0;
	unsigned int pushed = 0, taken = 0;

	if (!b->active || q >= b->queues || b->broken[q])
		return;
	b->more[q] = false;
	for (;;) {
		struct blk_req *first = NULL, **tail = &first;
		struct blk_req *fast = NULL, **ftail = &fast;
		unsigned int n = 0, popped;
		int rc = 0;

		if (taken >= BLK_NOTIFY_BUDGET) {
			/* The I/O thread is shared: the rest of this queue
			 * waits behind the other devices' events. */
			blk_resume_later(b, q);
			break;
		}
		/* Pop a whole batch before any of it runs: a head offered
		 * twice is then always caught by vq_pop as "in flight". */
		for (popped = 0; popped < BLK_POP_BATCH &&
				 taken < BLK_NOTIFY_BUDGET;
		     popped++, taken++) {
			struct smvmm_chain *c;
			struct blk_req *r;
			bool broken = false;

			rc = b->svc->vq_pop(b->h, q, &c);
			if (rc <= 0)
				break;
			r = blk_prepare(b, c, &broken);
			if (broken) {
				rc = -EIO;
				break;
			}
			if (!r) {
				pushed++; /* completed here */
				continue;
			}
			r->gen = b->gen;
			if (inline_candidate(b, r) &&
			    inline_reqs < BLK_INLINE_MAX_REQS &&
			    r->len <= BLK_INLINE_MAX_BYTES - inline_bytes) {
				/* Within this call's budget: the I/O thread
				 * is shared with other devices. */
				inline_reqs++;
				inline_bytes += r->len;
				*ftail = r;
				ftail = &r->next;
			} else {
				*tail = r;
				tail = &r->next;
				n++;
			}
		}
		if (rc < 0) {
			/* The queue is broken (the core logged why and set
			 * NEEDS_RESET): its chains must not be used. */
			b->broken[q] = true;
			*ftail = first; /* one list to free */
			while (fast) {
				struct blk_req *r = fast;

				fast = r->next;
				free(r->c);
				req_recycle(b, r);
			}
			break;
		}
		/* The rest first: the workers start on it while this thread
		 * copies the page-cache hits. */
		if (n)
			pool_submit(b, first, tail, n);
		first = NULL;
		tail = &first;
		n = 0;
		while (fast) {
			struct blk_req *r = fast;

			fast = r->next;
			r->next = NULL;
			if (blk_try_inline(b, r)) {
				b->svc->vq_push(b->h, r->c,
						written_len(r->c, r->type,
							    *r->status));
				r->c = NULL;
				req_recycle(b, r);
				pushed++;
			} else {
				*tail = r;
				tail = &r->next;
				n++;
			}
		}
		/* Misses (EAGAIN, short transfers, errors): the pool. */
		if (n)
			pool_submit(b, first, tail, n);
		if (rc == 0)
			break;
	}
	/*
	 * One used buffer notification per call for everything completed
	 * here (the core applies EVENT_IDX / NO_INTERRUPT, §2.7.10).
	 * Measured: notifying every 4..16 inline completions, so the driver
	 * could refill while this thread copies, was slower on 2 CPUs (more
	 * wake-ups per request).
	 */
	if (pushed)
		b->svc->vq_notify(b->h, q);
}

/* resume_fd: continue the queues whose budget ran out (I/O thread, device
 * lock held). */
static void blk_resume_cb(void *dev, int fd, uint32_t events)
{
	struct blk *b = dev;
	uint64_t n;

	(void)events;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		b->svc->log(b->h, SMVMM_LOG_ERROR, "eventfd: %s",
			    strerror(errno));
	for (unsigned int q = 0; q < b->queues; q++)
		if (b->more[q])
			blk_queue_notify(b, (uint16_t)q);
}

/* ---- ops ------------------------------------------------------------------ */

static void pool_stop(struct blk *b)
{
	pthread_mutex_lock(&b->lock);
	b->stop = true;
	pthread_cond_broadcast(&b->work_cond);
	pthread_mutex_unlock(&b->lock);
	for (unsigned int i = 0; i < b->nthreads; i++)
		pthread_join(b->threads[i], NULL);
	b->nthreads = 0;
}

/*
 * Drop queued requests and wait for the running ones (see the header), at
 * most wait_ms (< 0: for ever).  true when none is running any more.
 */
static bool pool_drain(struct blk *b, int wait_ms)
{
	struct timespec until;
	bool idle;

	clock_gettime(CLOCK_MONOTONIC, &until);
	if (wait_ms >= 0) {
		until.tv_sec += wait_ms / 1000;
		until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&b->lock);
	b->gen++;
	while (b->head) {
		struct blk_req *r = b->head;

		b->head = r->next;
		free(r->c);
		req_free(r);
	}
	b->tail = &b->head;
	b->queued = 0;
	while (b->running) {
		if (wait_ms < 0)
			pthread_cond_wait(&b->idle_cond, &b->lock);
		else if (pthread_cond_timedwait(&b->idle_cond, &b->lock,
						&until) == ETIMEDOUT)
			break;
	}
	idle = !b->running;
	b->dirty = 0;
	pthread_mutex_unlock(&b->lock);
	return idle;
}

static void blk_free(struct blk *b)
{
	while (b->spare) {
		struct blk_req *r = b->spare;

		b->spare = r->next;
		free(r);
	}
	if (b->resume_fd >= 0)
		close(b->resume_fd);
	if (b->fd_direct >= 0)
		close(b->fd_direct);
	if (b->fd >= 0)
		close(b->fd); /* releases the OFD lock */
	free(b->threads);
	free(b->path);
	pthread_cond_destroy(&b->idle_cond);
	pthread_cond_destroy(&b->work_cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static int blk_create(const struct smvmm_host_services *svc,
		      struct smvmm_host *h, struct smvmm_device_info *info,
		      void **devp)
{
	struct blk *b;
	int ret;

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->svc = svc;
	b->h = h;
	b->fd = -1;
	b->fd_direct = -1;
	b->resume_fd = -1;
	b->tail = &b->head;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->work_cond, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&b->idle_cond, &ca);
		pthread_condattr_destroy(&ca);
	}

	ret = blk_parse_config(b);
	if (ret)
		goto err_free;
	ret = blk_open(b);
	if (ret)
		goto err_free;
	blk_fill_config(b);

	b->resume_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->resume_fd < 0) {
		ret = -errno;
		svc->log(h, SMVMM_LOG_ERROR, "eventfd: %s", strerror(errno));
		goto err_free;
	}
	ret = svc->watch_fd(h, b->resume_fd, SMVMM_FD_IN, blk_resume_cb);
	if (ret) {
		svc->log(h, SMVMM_LOG_ERROR, "watch_fd: %s", strerror(-ret));
		goto err_free;
	}

	b->threads = calloc(b->iothreads, sizeof(*b->threads));
	if (!b->threads) {
		ret = -ENOMEM;
		goto err_free;
	}
	for (unsigned int i = 0; i < b->iothreads; i++) {
		ret = -pthread_create(&b->threads[i], NULL, blk_worker, b);
		if (ret) {
			svc->log(h, SMVMM_LOG_ERROR, "pthread_create: %s",
				 strerror(-ret));
			goto err_threads;
		}
		b->nthreads++;
	}

	svc->log(h, SMVMM_LOG_DEBUG,
		 "\"%s\": %" PRIu64 " sectors, %s, cache=%s, discard=%s, "
		 "%u queue(s) of %u, %u I/O threads", b->path, b->capacity,
		 b->readonly ? "read-only" : "read-write",
		 b->cache == CACHE_NONE	    ? "none"
		 : b->cache == CACHE_UNSAFE ? "unsafe"
					    : "writeback",
		 b->discard ? "on" : "off", b->queues, b->queue_size,
		 b->iothreads);

	memset(info, 0, sizeof(*info));
	info->device_id = VIRTIO_ID_BLOCK;
	info->num_queues = b->queues;
	info->queue_size_max = (uint16_t)b->queue_size;
	info->config_size = sizeof(struct blk_config);
	*devp = b;
	return 0;

err_threads:
	pool_stop(b);
	svc->unwatch_fd(h, b->resume_fd);
err_free:
	blk_free(b);
	return ret;
}

static void blk_destroy(void *dev)
{
	struct blk *b = dev;

	pool_drain(b, -1);
	pool_stop(b);
	if (b->resume_fd >= 0)
		b->svc->unwatch_fd(b->h, b->resume_fd);
	blk_free(b);
}

static uint64_t blk_get_features(void *dev)
{
	struct blk *b = dev;
	uint64_t f = BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_F_EVENT_IDX) |
		     BIT(VIRTIO_F_INDIRECT_DESC) | BIT(VIRTIO_BLK_F_SIZE_MAX) |
		     BIT(VIRTIO_BLK_F_SEG_MAX) | BIT(VIRTIO_BLK_F_BLK_SIZE) |
		     BIT(VIRTIO_BLK_F_FLUSH) | BIT(VIRTIO_BLK_F_MQ) |
		     BIT(VIRTIO_BLK_F_WRITE_ZEROES);

	if (b->readonly)
		f |= BIT(VIRTIO_BLK_F_RO);
	if (b->discard)
		f |= BIT(VIRTIO_BLK_F_DISCARD);
	return f;
}

static int blk_set_features(void *dev, uint64_t features)
{
	struct blk *b = dev;

	/* §6.1: no legacy interface to fall back to. */
	if (!(features & BIT(VIRTIO_F_VERSION_1)))
		return -ENOTSUP;
	b->features = features;
	return 0;
}

static int blk_config_read(void *dev, uint32_t offset, void *data,
			   uint32_t len)
{
	struct blk *b = dev;

	/* offset + len <= config_size is checked by the core. */
	memcpy(data, (const uint8_t *)&b->cfg + offset, len);
	return 0;
}

static int blk_config_write(void *dev, uint32_t offset, const void *data,
			    uint32_t len)
{
	(void)dev;
	(void)offset;
	(void)data;
	(void)len;
	/* Only `writeback` is writable, with VIRTIO_BLK_F_CONFIG_WCE, which
	 * is not offered (§5.2.4). */
	return -EROFS;
}

static int blk_activate(void *dev)
{
	struct blk *b = dev;

	memset(b->broken, 0, sizeof(b->broken));
	b->active = true;
	return 0;
}

static void blk_reset(void *dev)
{
	struct blk *b = dev;

	b->active = false;
	if (!pool_drain(b, BLK_RESET_WAIT_MS)) {
		/* Still running after BLK_RESET_WAIT_MS: storage that does
		 * not answer.  Do not hold the vCPU (and the device lock)
		 * until it does, where the transport can wait for us. */
		bool defer = SMVMM_SVC_HAS(b->svc, reset_defer) &&
			     SMVMM_SVC_HAS(b->svc, reset_done);

		pthread_mutex_lock(&b->lock);
		if (defer && b->running &&
		    b->svc->reset_defer(b->h) == 0) {
			b->reset_deferred = true;
			b->svc->log(b->h, SMVMM_LOG_WARN,
				    "reset: %u request(s) on \"%s\" still "
				    "running after %d ms (storage not "
				    "answering?); the reset completes when "
				    "they return", b->running, b->path,
				    BLK_RESET_WAIT_MS);
			defer = true;
		} else {
			defer = false;
		}
		pthread_mutex_unlock(&b->lock);
		if (!defer)
			pool_drain(b, -1);
	}
	memset(b->broken, 0, sizeof(b->broken));
	memset(b->more, 0, sizeof(b->more));
	b->features = 0;
}

static const struct smvmm_device_ops blk_ops = {
	.struct_size = sizeof(struct smvmm_device_ops),
	.create = blk_create,
	.destroy = blk_destroy,
	.get_features = blk_get_features,
	.set_features = blk_set_features,
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.activate = blk_activate,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
};

static const char *const blk_config_keys[] = {
	"path",	   "readonly",	 "serial",    "cache", "discard",
	"queues", "queue_size", "iothreads", NULL,
};

SMVMM_PLUGIN_EXPORT const struct smvmm_plugin_desc smvmm_plugin_v1 = {
	.abi_major = SMVMM_PLUGIN_ABI_MAJOR,
	.abi_minor = SMVMM_PLUGIN_ABI_MINOR,
	.struct_size = sizeof(struct smvmm_plugin_desc),
	.kind = SMVMM_PLUGIN_DEVICE,
	.name = "virtio-blk",
	.version = "1.0",
	.description = "virtio block device (VIRTIO 1.2 §5.2), raw image",
	.config_keys = blk_config_keys,
	.ops = &blk_ops,
};
