// SPDX-License-Identifier: MIT
/*
 * vhost-user back-end: one device plugin served to one front-end at a time
 * (QEMU docs/interop/vhost-user.rst, "the spec").  See vhost_user.h for the
 * mapping between virtio-mmio and vhost-user concepts.
 *
 * Rings
 * -----
 * The spec ("Ring states") has three states: stopped, started but disabled,
 * started and enabled.  A ring starts when it gets its kick fd
 * (SET_VRING_KICK) and stops at GET_VRING_BASE.  With
 * VHOST_USER_F_PROTOCOL_FEATURES negotiated a ring starts disabled and
 * SET_VRING_ENABLE switches it; without, it starts enabled.  Here:
 *   - starting a ring translates its addresses and runs virtq_setup (the same
 *     validation as a QueueReady write), then restores its indices: the
 *     next avail slot from SET_VRING_BASE, the used index from the guest's
 *     used ring;
 *   - the plugin is activated (ops->activate, the DRIVER_OK of virtio-mmio)
 *     when the first ring is started and enabled; QEMU configures every ring
 *     before it enables any, so the plugin sees all of them set up;
 *   - kicks on a disabled ring are remembered and delivered on enable: the
 *     spec asks a disabled ring to be processed "without side effects",
 *     and not processing it at all is the simplest way to have none;
 *   - GET_VRING_BASE stops the ring: kicks stop, chains the plugin still
 *     holds get a short grace period to complete (so a paused VM resumes
 *     without losing requests), the next avail index is returned, and the
 *     queue is unset.  When no ring is left started the plugin is reset
 *     (ops->reset), as by a Status write of 0.
 *
 * Locks (device.c's order, plus two leaves):
 *   h->lock (device) -> h->q[i].lock -> evloop lock
 *   ring->fd_lock and s->slave_lock are leaves: the transport hooks take
 *   them from any thread with any other lock held, and never take another.
 * Ring state read by the kick callback (started, enabled, kick_fd, active)
 * changes only under h->lock.  evloop_unwatch (which waits for a running
 * callback that takes h->lock) is never called with h->lock held.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "evloop.h"
#include "vhost_user.h"

/* Grace period for chains in flight when a ring stops (GET_VRING_BASE,
 * SET_MEM_TABLE on live rings): wait while they keep completing, give up
 * after QUIET_MS without progress or DRAIN_MAX_MS in total.  A vsock rx
 * buffer may legitimately be held for ever: those are handed back to the
 * front-end by returning an avail index before them. */
#define DRAIN_QUIET_MS 200
#define DRAIN_MAX_MS 5000

/*
 * Ring sizes accepted: up to the plugin's queue_size_max, and at least up to
 * QEMU's VIRTQUEUE_MAX_SIZE.  With vhost-user the front-end's device model
 * picks the maximum the guest sees (QEMU's virtio-mmio reports 1024 for every
 * queue), not the back-end; refusing 1024 would make most plugins unusable
 * under QEMU.  The plugin never sees the size: chains are validated by
 * virtq.c against the real size as in the VMM.
 */
#define VU_RING_MAX_MIN 1024

/*
 * Mappings replaced by SET_MEM_TABLE while the plugin may still hold chains
 * into them stay mapped until the device is reset (plugin.h: a plugin owns
 * its chains, and may fill them, until reset()).  At most this many; a
 * front-end that changes the table more often than that while buffers are
 * held gets an error.
 */
#define VU_MAX_RETIRED (4 * VHOST_USER_MAX_REGIONS)

struct vu_ring {
	struct vu_server *srv;
	uint16_t index;

	/* configuration from the front-end: main thread only */
	uint32_t num;
	uint64_t desc_uva, avail_uva, used_uva;
	bool num_set, addr_set;
	uint16_t base;          /* next avail index (SET/GET_VRING_BASE) */

	/* run state: written under h->lock, read by the kick callback */
	bool started;           /* has a kick fd; virtq set up */
	bool enabled;
	bool kick_pending;      /* kicked while disabled or not active */
	int kick_fd;

	/* notification fds: the raise hooks take fd_lock on any thread */
	pthread_mutex_t fd_lock;
	int call_fd;
	int err_fd;
};

struct vu_map {
	void *base;             /* what mmap returned */
	size_t len;
	int guard;              /* its slot in g_guard (the SIGBUS guard) */
	uint8_t *hva;           /* the region's first byte */
	uint64_t gpa, size, uva;
};

struct vu_server {
	struct smvmm_host h;
	struct gmem mem;        /* h.mem: the front-end's regions */
	struct evloop loop;
	bool loop_started;
	bool created;           /* device_create succeeded */

	/* session state (main thread) */
	int sock;
	uint64_t offered;       /* GET_FEATURES answer */
	uint64_t acked;         /* SET_FEATURES, PROTOCOL_FEATURES bit included */
	bool acked_set;
	bool plugin_features_ok; /* ops->set_features accepted `acked` since
				    the last device reset */
	uint64_t proto;         /* SET_PROTOCOL_FEATURES */
	bool owner;
	bool active;            /* ops->activate ran; under h->lock */
	struct vu_map map[VHOST_USER_MAX_REGIONS];
	unsigned int nmap;

	pthread_mutex_t slave_lock;
	int slave_fd;
	bool slave_fail_logged;

	struct vu_ring ring[SMVMM_MAX_QUEUES];

	/* Old memory tables kept for chains the plugin still holds (main
	 * thread); unmapped once the device is reset. */
	struct vu_map retired[VU_MAX_RETIRED];
	unsigned int nretired;
	bool chains_left;       /* a ring stopped with chains still held */

	/* The SIGBUS guard (see "Guest memory faults"): the handler sets
	 * mem_fault and signals fault_fd, which the serving thread polls. */
	int fault_fd;
	int mem_fault;          /* atomic */
};

/* One message as received: header, payload, passed fds. */
struct vu_msg {
	struct vhost_user_hdr hdr;
	union {
		uint64_t u64;
		struct vhost_user_vring_state state;
		struct vhost_user_vring_addr addr;
		struct vhost_user_memory mem;
		struct vhost_user_config cfg;
		uint8_t raw[VHOST_USER_MAX_PAYLOAD];
	} p;
	int fds[VHOST_USER_MAX_FDS];
	unsigned int nfds;
};

static void vu_log(struct vu_server *s, enum smvmm_log_level lvl,
		   const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void vu_log(struct vu_server *s, enum smvmm_log_level lvl,
		   const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	device_log(&s->h, lvl, "vhost-user: %s", msg);
}

static const char *req_name(uint32_t r)
{
	static const char *const names[] = {
		[VHOST_USER_GET_FEATURES] = "GET_FEATURES",
		[VHOST_USER_SET_FEATURES] = "SET_FEATURES",
		[VHOST_USER_SET_OWNER] = "SET_OWNER",
		[VHOST_USER_RESET_OWNER] = "RESET_OWNER",
		[VHOST_USER_SET_MEM_TABLE] = "SET_MEM_TABLE",
		[VHOST_USER_SET_LOG_BASE] = "SET_LOG_BASE",
		[VHOST_USER_SET_LOG_FD] = "SET_LOG_FD",
		[VHOST_USER_SET_VRING_NUM] = "SET_VRING_NUM",
		[VHOST_USER_SET_VRING_ADDR] = "SET_VRING_ADDR",
		[VHOST_USER_SET_VRING_BASE] = "SET_VRING_BASE",
		[VHOST_USER_GET_VRING_BASE] = "GET_VRING_BASE",
		[VHOST_USER_SET_VRING_KICK] = "SET_VRING_KICK",
		[VHOST_USER_SET_VRING_CALL] = "SET_VRING_CALL",
		[VHOST_USER_SET_VRING_ERR] = "SET_VRING_ERR",
		[VHOST_USER_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
		[VHOST_USER_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
		[VHOST_USER_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
		[VHOST_USER_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
		[VHOST_USER_SEND_RARP] = "SEND_RARP",
		[VHOST_USER_NET_SET_MTU] = "NET_SET_MTU",
		[VHOST_USER_SET_SLAVE_REQ_FD] = "SET_SLAVE_REQ_FD",
		[VHOST_USER_IOTLB_MSG] = "IOTLB_MSG",
		[VHOST_USER_SET_VRING_ENDIAN] = "SET_VRING_ENDIAN",
		[VHOST_USER_GET_CONFIG] = "GET_CONFIG",
		[VHOST_USER_SET_CONFIG] = "SET_CONFIG",
		[VHOST_USER_RESET_DEVICE] = "RESET_DEVICE",
		[VHOST_USER_VRING_KICK] = "VRING_KICK",
		[VHOST_USER_GET_MAX_MEM_SLOTS] = "GET_MAX_MEM_SLOTS",
		[VHOST_USER_ADD_MEM_REG] = "ADD_MEM_REG",
		[VHOST_USER_REM_MEM_REG] = "REM_MEM_REG",
		[VHOST_USER_SET_STATUS] = "SET_STATUS",
		[VHOST_USER_GET_STATUS] = "GET_STATUS",
	};

	if (r < sizeof(names) / sizeof(names[0]) && names[r])
		return names[r];
	return "unknown request";
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Write the 8-byte eventfd increment; a full or odd fd is not our problem
 * (the fd is non-blocking: a hostile front-end cannot stall a thread). */
static void signal_fd(int fd)
{
	uint64_t one = 1;
	ssize_t n;

	do
		n = write(fd, &one, sizeof(one));
	while (n < 0 && errno == EINTR);
}

/* ---- transport hooks (any thread, no lock but the leaves) ------------ */

static struct vu_server *srv_of(struct smvmm_host *h)
{
	return __atomic_load_n(&h->transport, __ATOMIC_ACQUIRE);
}

static void ring_call(struct vu_ring *r)
{
	pthread_mutex_lock(&r->fd_lock);
	if (r->call_fd >= 0)
		signal_fd(r->call_fd);
	pthread_mutex_unlock(&r->fd_lock);
}

/* Used buffer notification for queue q: its call eventfd. */
static void vu_raise_vq(struct smvmm_host *h, uint16_t q)
{
	struct vu_server *s = srv_of(h);

	if (s && q < SMVMM_MAX_QUEUES)
		ring_call(&s->ring[q]);
}

/* Config change: the back-end channel's CONFIG_CHANGE_MSG (the spec,
 * "Back-end message types").  Sent without need_reply and non-blocking: the
 * front-end may be waiting for us on the main channel right now. */
static void send_config_change(struct vu_server *s)
{
	struct vhost_user_hdr m = {
		.request = VHOST_USER_SLAVE_CONFIG_CHANGE_MSG,
		.flags = VHOST_USER_VERSION,
		.size = 0,
	};
	ssize_t n = -1;
	bool failed = false;

	pthread_mutex_lock(&s->slave_lock);
	if (s->slave_fd >= 0) {
		n = send(s->slave_fd, &m, sizeof(m),
			 MSG_DONTWAIT | MSG_NOSIGNAL);
		failed = n != (ssize_t)sizeof(m) && !s->slave_fail_logged;
		if (failed)
			s->slave_fail_logged = true;
	} else {
		failed = !s->slave_fail_logged;
		s->slave_fail_logged = true;
	}
	pthread_mutex_unlock(&s->slave_lock);
	if (failed)
		vu_log(s, SMVMM_LOG_WARN,
		       "config change not delivered: %s",
		       n < 0 && errno ? strerror(errno)
				      : "no back-end channel (SLAVE_REQ)");
}

static void vu_raise(struct smvmm_host *h, uint32_t bits)
{
	struct vu_server *s = srv_of(h);

	if (!s)
		return;
	/* Bit 0 without a queue (device.c uses raise_vq for queues): every
	 * ring; a spurious used-buffer notification is harmless (§2.7.7.2
	 * lets the driver see more than it asked for). */
	if (bits & 1)
		for (unsigned int q = 0; q < h->nr_queues; q++)
			ring_call(&s->ring[q]);
	if (bits & 2)
		send_config_change(s);
}

/* NEEDS_RESET has no vhost-user message; the err eventfds are the spec's
 * way to tell the front-end a ring failed. */
static void vu_set_needs_reset(struct smvmm_host *h)
{
	struct vu_server *s = srv_of(h);

	if (!s)
		return;
	for (unsigned int q = 0; q < h->nr_queues; q++) {
		struct vu_ring *r = &s->ring[q];

		pthread_mutex_lock(&r->fd_lock);
		if (r->err_fd >= 0)
			signal_fd(r->err_fd);
		pthread_mutex_unlock(&r->fd_lock);
	}
}

/* ---- kicks (event-loop thread) --------------------------------------- */

static bool queue_runnable(struct smvmm_host *h, uint16_t q)
{
	bool ok;

	pthread_mutex_lock(&h->q[q].lock);
	ok = h->q[q].vq.ready && !h->q[q].vq.broken;
	pthread_mutex_unlock(&h->q[q].lock);
	return ok;
}

static void kick_cb(void *opaque, int fd, uint32_t events)
{
	struct vu_ring *r = opaque;
	struct vu_server *s = r->srv;
	struct smvmm_host *h = &s->h;
	uint64_t v;
	ssize_t n;

	(void)events;
	/* Consume the eventfd counter: the watch is level-triggered. */
	do
		n = read(fd, &v, sizeof(v));
	while (n < 0 && errno == EINTR);
	if (n == 0) {
		/* Not an eventfd: a pipe whose writer closed.  It would be
		 * readable for ever; stop watching it. */
		vu_log(s, SMVMM_LOG_WARN,
		       "ring %u: kick fd reached end of file; ignoring it",
		       r->index);
		evloop_unwatch_nowait(&s->loop, fd);
		return;
	}
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
		/* Readable to epoll, yet read() fails (a listening socket
		 * with a connection waiting, a socket in error): the
		 * level-triggered watch would fire for ever.  Stop watching;
		 * the ring gets no kicks until SET_VRING_KICK sends an
		 * eventfd. */
		vu_log(s, SMVMM_LOG_WARN,
		       "ring %u: reading the kick fd failed: %s (not an "
		       "eventfd); ignoring it", r->index, strerror(errno));
		evloop_unwatch_nowait(&s->loop, fd);
		return;
	}

	pthread_mutex_lock(&h->lock);
	if (r->started && r->kick_fd == fd) {
		if (s->active && r->enabled && queue_runnable(h, r->index))
			h->ops->queue_notify(h->dev, r->index);
		else
			r->kick_pending = true;
	}
	pthread_mutex_unlock(&h->lock);
}

/*
 * Run queue_notify for a ring on the event-loop thread, where plugin.h
 * promises it runs: kick the ring ourselves.  Caller holds h->lock.
 */
static void self_kick(struct vu_ring *r)
{
	r->kick_pending = false;
	if (r->kick_fd >= 0)
		signal_fd(r->kick_fd);
}

/* ---- guest memory faults (SIGBUS guard) ------------------------------- */

/*
 * The front-end may shrink a memory file after SET_MEM_TABLE (the size check
 * there only holds at that moment, and only memfds can be sealed: QEMU's
 * memory-backend-file on tmpfs or hugetlbfs cannot be).  An access through
 * the mapping past the new end of file raises SIGBUS on whatever thread made
 * it: the serving thread, the event-loop thread or any plugin thread.
 *
 * Every guest mapping is registered in g_guard.  A process-wide SIGBUS
 * handler looks the faulting address up; if it lies in a guest mapping, the
 * whole mapping is replaced (MAP_FIXED) by anonymous zero memory, so the
 * faulting access, and every later one, completes harmlessly on any thread,
 * and the mapping's server is flagged (mem_fault, fault_fd): the serving
 * thread closes the session (-EPROTO), which resets the device and unmaps
 * everything.  A fault anywhere else goes to the previous handler, or kills
 * the process with SIGBUS as without the guard.
 *
 * The handler takes no lock: slots are published with atomics (len and srv
 * before start, start cleared first), and guard_del waits until no handler
 * is running (g_guard_active) before the mapping may be unmapped, so a
 * handler never maps over an address that was handed back to the kernel.
 * mmap and write are plain system calls (async-signal-safe on Linux).
 */
#define VU_GUARD_SLOTS 256

struct vu_guard {
	uintptr_t start;        /* 0: free; atomic */
	size_t len;             /* atomic */
	struct vu_server *srv;  /* atomic */
};

static struct vu_guard g_guard[VU_GUARD_SLOTS];
static pthread_mutex_t g_guard_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_guard_active;  /* handlers running; atomic */
static struct sigaction g_old_bus;
static pthread_once_t g_bus_once = PTHREAD_ONCE_INIT;
static int g_bus_rc;

static void bus_handler(int sig, siginfo_t *si, void *ctx)
{
	int saved = errno;
	uintptr_t a = (uintptr_t)si->si_addr;
	bool ours = false;

	__atomic_add_fetch(&g_guard_active, 1, __ATOMIC_SEQ_CST);
	/* si_code <= 0: sent by kill()/tgkill(), not a memory fault. */
	for (unsigned int i = 0; si->si_code > 0 && i < VU_GUARD_SLOTS; i++) {
		uintptr_t st = __atomic_load_n(&g_guard[i].start,
					       __ATOMIC_SEQ_CST);
		size_t len = __atomic_load_n(&g_guard[i].len, __ATOMIC_SEQ_CST);
		struct vu_server *srv;

		if (!st || a < st || a - st >= len)
			continue;
		if (mmap((void *)st, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
				 MAP_NORESERVE, -1, 0) == MAP_FAILED)
			break;
		srv = __atomic_load_n(&g_guard[i].srv, __ATOMIC_SEQ_CST);
		__atomic_store_n(&srv->mem_fault, 1, __ATOMIC_SEQ_CST);
		signal_fd(srv->fault_fd);
		ours = true;
		break;
	}
	__atomic_sub_fetch(&g_guard_active, 1, __ATOMIC_SEQ_CST);
	errno = saved;
	if (ours)
		return; /* the access is retried on the anonymous page */

	/* Not guest memory: what would have happened without us. */
	if (g_old_bus.sa_flags & SA_SIGINFO) {
		g_old_bus.sa_sigaction(sig, si, ctx);
	} else if (g_old_bus.sa_handler != SIG_DFL &&
		   g_old_bus.sa_handler != SIG_IGN) {
		g_old_bus.sa_handler(sig);
	} else {
		struct sigaction dfl = { .sa_handler = SIG_DFL };

		sigemptyset(&dfl.sa_mask);
		sigaction(SIGBUS, &dfl, NULL);
		if (si->si_code <= 0)
			raise(SIGBUS);
		/* a real fault re-faults on return and kills the process */
	}
}

static void bus_install(void)
{
	struct sigaction sa = { .sa_sigaction = bus_handler,
				.sa_flags = SA_SIGINFO | SA_ONSTACK };

	sigemptyset(&sa.sa_mask);
	g_bus_rc = sigaction(SIGBUS, &sa, &g_old_bus) ? -errno : 0;
}

/* Register [base, base+len) of server s: the slot, or -ENOSPC. */
static int guard_add(struct vu_server *s, void *base, size_t len)
{
	int slot = -ENOSPC;

	pthread_mutex_lock(&g_guard_lock);
	for (int i = 0; i < VU_GUARD_SLOTS; i++) {
		if (__atomic_load_n(&g_guard[i].start, __ATOMIC_SEQ_CST))
			continue;
		__atomic_store_n(&g_guard[i].len, len, __ATOMIC_SEQ_CST);
		__atomic_store_n(&g_guard[i].srv, s, __ATOMIC_SEQ_CST);
		__atomic_store_n(&g_guard[i].start, (uintptr_t)base,
				 __ATOMIC_SEQ_CST);
		slot = i;
		break;
	}
	pthread_mutex_unlock(&g_guard_lock);
	return slot;
}

/* Unregister a slot; on return no handler can touch its range. */
static void guard_del(int slot)
{
	if (slot < 0)
		return;
	pthread_mutex_lock(&g_guard_lock);
	__atomic_store_n(&g_guard[slot].start, 0, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&g_guard_active, __ATOMIC_SEQ_CST))
		sched_yield();
	pthread_mutex_unlock(&g_guard_lock);
}

/* ---- guest memory ----------------------------------------------------- */

/* Front-end virtual address -> guest-physical, through the memory table. */
static int uva_to_gpa(struct vu_server *s, uint64_t uva, uint64_t *gpa)
{
	for (unsigned int i = 0; i < s->nmap; i++) {
		const struct vu_map *m = &s->map[i];

		if (uva >= m->uva && uva - m->uva < m->size) {
			*gpa = m->gpa + (uva - m->uva);
			return 0;
		}
	}
	return -EFAULT;
}

static void unmap_all(struct vu_map *map, unsigned int *n)
{
	for (unsigned int i = 0; i < *n; i++) {
		guard_del(map[i].guard);
		munmap(map[i].base, map[i].len);
	}
	*n = 0;
}

/* ---- rings ------------------------------------------------------------ */

static uint16_t ring_max(struct vu_server *s)
{
	return s->h.info.queue_size_max > VU_RING_MAX_MIN
		       ? s->h.info.queue_size_max
		       : VU_RING_MAX_MIN;
}

/* The virtio feature bits the front-end acked (not the vhost-user ones). */
static uint64_t virtio_features(struct vu_server *s)
{
	return s->acked & ~(1ull << VHOST_USER_F_PROTOCOL_FEATURES);
}

/*
 * vq_unset: the one place a ring's queue is unset outside a device reset.
 * Chains the plugin still holds (inflight_count) keep pointing into the
 * current memory table after the queue forgets them; they are counted in
 * chains_left so that SET_MEM_TABLE retires that table instead of unmapping
 * it (plugin.h: a plugin owns its chains, and may fill them, until reset()).
 * Returns the number of chains still held.  Main thread, hq->lock held.
 */
static uint32_t vq_unset(struct vu_server *s, struct host_queue *hq)
{
	uint32_t left = hq->vq.inflight_count; /* 0 once reset */

	if (left)
		s->chains_left = true;
	virtq_reset(&hq->vq);
	return left;
}

/*
 * Set up queue q from the ring's configuration: translate the three ring
 * addresses, virtq_setup (validates size, alignment, bounds), then the
 * indices.  Main thread, h->lock held.
 */
static int ring_setup(struct vu_server *s, struct vu_ring *r)
{
	struct host_queue *hq = &s->h.q[r->index];
	uint64_t desc, avail, used;
	uint16_t used_idx;
	int rc;

	if (!r->num_set || !r->addr_set) {
		vu_log(s, SMVMM_LOG_ERROR,
		       "ring %u started before SET_VRING_%s", r->index,
		       r->num_set ? "ADDR" : "NUM");
		return -EINVAL;
	}
	if (!s->acked_set) {
		vu_log(s, SMVMM_LOG_ERROR,
		       "ring %u started before SET_FEATURES", r->index);
		return -EINVAL;
	}
	if (uva_to_gpa(s, r->desc_uva, &desc) ||
	    uva_to_gpa(s, r->avail_uva, &avail) ||
	    uva_to_gpa(s, r->used_uva, &used)) {
		vu_log(s, SMVMM_LOG_ERROR,
		       "ring %u: an address (desc 0x%" PRIx64 ", avail 0x%"
		       PRIx64 ", used 0x%" PRIx64 ") is in no memory region",
		       r->index, r->desc_uva, r->avail_uva, r->used_uva);
		return -EFAULT;
	}
	if (r->num > VIRTQ_MAX_SIZE) {
		vu_log(s, SMVMM_LOG_ERROR, "ring %u: size %u", r->index,
		       r->num);
		return -EINVAL;
	}

	pthread_mutex_lock(&hq->lock);
	vq_unset(s, hq); /* nothing held normally: ring_halt drained it */
	virtq_init(&hq->vq, &s->mem, r->index, ring_max(s));
	rc = virtq_setup(&hq->vq, (uint16_t)r->num, desc, avail, used,
			 virtio_features(s));
	if (rc) {
		vu_log(s, SMVMM_LOG_ERROR, "ring %u: %s", r->index,
		       hq->vq.err[0] ? hq->vq.err : strerror(-rc));
		vq_unset(s, hq);
		pthread_mutex_unlock(&hq->lock);
		return rc;
	}
	/* used->idx (§2.7.8) is the driver-visible count of used buffers;
	 * it lives in guest RAM checked by virtq_setup. */
	used_idx = le16toh(__atomic_load_n((uint16_t *)(hq->vq.used + 2),
					   __ATOMIC_ACQUIRE));
	if (used_idx != r->base)
		/* A previous back-end took chains it never completed; the
		 * front-end decides where to resume (QEMU rewinds to the
		 * used index itself when it lost its back-end). */
		vu_log(s, SMVMM_LOG_WARN,
		       "ring %u: resuming at avail index %u, used index is "
		       "%u: %u chain(s) of an earlier session stay "
		       "incomplete", r->index, r->base, used_idx,
		       (uint16_t)(r->base - used_idx));
	rc = virtq_set_indices(&hq->vq, r->base, used_idx);
	if (rc) {
		vu_log(s, SMVMM_LOG_ERROR, "ring %u: %s", r->index,
		       hq->vq.err[0] ? hq->vq.err : strerror(-rc));
		vq_unset(s, hq);
	}
	pthread_mutex_unlock(&hq->lock);
	return rc;
}

/*
 * Let the chains the plugin holds on queue q complete (see DRAIN_*), then
 * return the avail index to resume at: the next one, minus chains still
 * held, which the front-end will offer again.  The queue is left unset.
 * Main thread, h->lock NOT held (plugin completions may need it).
 */
static uint16_t ring_drain(struct vu_server *s, struct vu_ring *r)
{
	struct host_queue *hq = &s->h.q[r->index];
	uint64_t start = now_ms(), quiet = start;
	uint32_t left, last;
	uint16_t base;

	pthread_mutex_lock(&hq->lock);
	last = hq->vq.inflight_count;
	pthread_mutex_unlock(&hq->lock);
	while (last) {
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		uint64_t now;

		nanosleep(&ts, NULL);
		pthread_mutex_lock(&hq->lock);
		left = hq->vq.inflight_count;
		pthread_mutex_unlock(&hq->lock);
		now = now_ms();
		if (left != last) {
			last = left;
			quiet = now;
		}
		if (!left || now - quiet >= DRAIN_QUIET_MS ||
		    now - start >= DRAIN_MAX_MS)
			break;
	}

	pthread_mutex_lock(&hq->lock);
	left = hq->vq.inflight_count;
	base = (uint16_t)(hq->vq.last_avail_idx - left);
	if (!hq->vq.ready)
		base = r->base; /* never set up, or reset meanwhile */
	left = vq_unset(s, hq); /* their buffers stay mapped */
	pthread_mutex_unlock(&hq->lock);
	if (left)
		vu_log(s, SMVMM_LOG_DEBUG,
		       "ring %u stopped with %u chain(s) still held by the "
		       "device; they will be offered again", r->index, left);
	return base;
}

/* Activate the plugin (DRIVER_OK).  Main thread, h->lock held. */
static int device_activate(struct vu_server *s)
{
	struct smvmm_host *h = &s->h;
	int rc;

	if (!s->plugin_features_ok) {
		rc = h->ops->set_features(h->dev, virtio_features(s));
		if (rc) {
			vu_log(s, SMVMM_LOG_ERROR,
			       "device refused features 0x%" PRIx64 ": %s",
			       virtio_features(s), strerror(rc < 0 ? -rc : rc));
			return rc < 0 ? rc : -EINVAL;
		}
		s->plugin_features_ok = true;
	}
	h->features = virtio_features(s);
	rc = h->ops->activate(h->dev);
	if (rc) {
		vu_log(s, SMVMM_LOG_ERROR, "activate failed: %s",
		       strerror(rc < 0 ? -rc : rc));
		return rc < 0 ? rc : -EIO;
	}
	s->active = true;
	for (unsigned int q = 0; q < h->nr_queues; q++) {
		struct vu_ring *r = &s->ring[q];

		if (r->started && r->enabled)
			self_kick(r);
	}
	return 0;
}

/* The plugin's Status = 0: reset it and every queue.  h->lock NOT held by
 * the caller on another thread; main thread. */
static void device_stop(struct vu_server *s)
{
	struct smvmm_host *h = &s->h;

	pthread_mutex_lock(&h->lock);
	s->active = false;
	pthread_mutex_unlock(&h->lock);
	device_reset(h); /* ops->reset, then every queue; takes h->lock */
	s->plugin_features_ok = false;
	/* reset() dropped every chain: old tables can go now. */
	unmap_all(s->retired, &s->nretired);
	s->chains_left = false;
}

static bool any_started(struct vu_server *s)
{
	for (unsigned int q = 0; q < s->h.nr_queues; q++)
		if (s->ring[q].started)
			return true;
	return false;
}

/*
 * ring_halt: the one way a started ring stops short of a device reset
 * (GET_VRING_BASE, SET_MEM_TABLE on live rings): no more kicks (with
 * forget_kick the kick fd is unwatched and closed, otherwise it stays for a
 * restart), the chains in flight are drained and those still held counted
 * (ring_drain, vq_unset), and r->base becomes the avail index to resume at.
 * Returns whether the ring was started.  Main thread, h->lock NOT held.
 */
static bool ring_halt(struct vu_server *s, struct vu_ring *r,
		      bool forget_kick)
{
	struct smvmm_host *h = &s->h;
	bool was_started;
	int kfd = -1;

	pthread_mutex_lock(&h->lock);
	was_started = r->started;
	r->started = false;
	if (forget_kick) {
		kfd = r->kick_fd;
		r->kick_pending = false;
		r->kick_fd = -1;
	}
	pthread_mutex_unlock(&h->lock);
	if (kfd >= 0) {
		evloop_unwatch(&s->loop, kfd); /* waits for a running kick */
		close(kfd);
	}
	if (was_started)
		r->base = ring_drain(s, r);
	return was_started;
}

/*
 * Stop ring q (GET_VRING_BASE): ring_halt, and reset the plugin once no
 * ring is left started.  Returns the avail index to resume at.  Main thread.
 */
static uint16_t ring_stop(struct vu_server *s, struct vu_ring *r)
{
	struct smvmm_host *h = &s->h;
	bool last;

	ring_halt(s, r, true);

	pthread_mutex_lock(&h->lock);
	last = s->active && !any_started(s);
	pthread_mutex_unlock(&h->lock);
	if (last)
		device_stop(s);
	return r->base;
}

/* Forget every ring: stop, close fds, clear configuration.  Main thread. */
static void rings_teardown(struct vu_server *s)
{
	struct smvmm_host *h = &s->h;

	for (unsigned int q = 0; q < SMVMM_MAX_QUEUES; q++) {
		struct vu_ring *r = &s->ring[q];
		int kfd;

		pthread_mutex_lock(&h->lock);
		kfd = r->kick_fd;
		r->kick_fd = -1;
		r->started = false;
		r->enabled = false;
		r->kick_pending = false;
		pthread_mutex_unlock(&h->lock);
		if (kfd >= 0) {
			evloop_unwatch(&s->loop, kfd);
			close(kfd);
		}
	}
	/* The plugin stops its workers in reset; then nothing can raise. */
	device_stop(s);
	for (unsigned int q = 0; q < SMVMM_MAX_QUEUES; q++) {
		struct vu_ring *r = &s->ring[q];

		pthread_mutex_lock(&r->fd_lock);
		close_fd(&r->call_fd);
		close_fd(&r->err_fd);
		pthread_mutex_unlock(&r->fd_lock);
		r->num = 0;
		r->num_set = r->addr_set = false;
		r->desc_uva = r->avail_uva = r->used_uva = 0;
		r->base = 0;
	}
	s->acked = 0;
	s->acked_set = false;
}

/* ---- socket I/O ------------------------------------------------------- */

/*
 * Wait until `fd` is readable.  Meanwhile refuse extra connections on
 * listen_fd and watch stop_fd and the SIGBUS guard's fault_fd.  0, -EINTR
 * (stop), -EPROTO (guest memory faulted), -errno.
 */
static int wait_readable(struct vu_server *s, int fd, int listen_fd,
			 int stop_fd)
{
	for (;;) {
		struct pollfd p[4] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = stop_fd, .events = POLLIN },
			{ .fd = listen_fd, .events = POLLIN },
			{ .fd = s->fault_fd, .events = POLLIN },
		};
		int n;

		if (__atomic_load_n(&s->mem_fault, __ATOMIC_SEQ_CST)) {
			vu_log(s, SMVMM_LOG_ERROR,
			       "an access to guest memory faulted (SIGBUS): the "
			       "front-end shrank a memory region's file; "
			       "closing the connection");
			return -EPROTO;
		}
		n = poll(p, 4, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (p[1].revents)
			return -EINTR;
		if (p[3].revents)
			continue; /* mem_fault is set: checked above */
		if (p[2].revents & POLLIN) {
			int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

			if (c >= 0) {
				vu_log(s, SMVMM_LOG_WARN,
				       "refused a second front-end: this "
				       "back-end serves one at a time");
				close(c);
			}
		}
		if (p[0].revents)
			return 0;
	}
}

/* Take the fds out of a received control message (at most the room left). */
static int collect_fds(struct msghdr *mh, struct vu_msg *m)
{
	int rc = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t n;
		int *fds;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		fds = (int *)CMSG_DATA(c);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, &fds[i], sizeof(fd));
			if (m->nfds < VHOST_USER_MAX_FDS) {
				m->fds[m->nfds++] = fd;
			} else {
				close(fd);
				rc = -E2BIG;
			}
		}
	}
	if (mh->msg_flags & MSG_CTRUNC)
		rc = -E2BIG; /* the kernel dropped some: never silently */
	return rc;
}

/*
 * Read `len` bytes (fds, if any, are collected into m).  0, -ECONNRESET at
 * end of stream, -EPROTO for too many fds, -EINTR (stop), -errno.
 */
static int read_full(struct vu_server *s, void *buf, size_t len,
		     struct vu_msg *m, int listen_fd, int stop_fd,
		     bool first)
{
	uint8_t *p = buf;
	size_t got = 0;

	while (got < len) {
		union {
			char buf[CMSG_SPACE(VHOST_USER_MAX_FDS * sizeof(int))];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { p + got, len - got };
		struct msghdr mh = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = ctl.buf,
			.msg_controllen = sizeof(ctl.buf),
		};
		ssize_t n;
		int rc;

		rc = wait_readable(s, s->sock, listen_fd, stop_fd);
		if (rc)
			return rc;
		n = recvmsg(s->sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (collect_fds(&mh, m)) {
			vu_log(s, SMVMM_LOG_ERROR,
			       "more than %d file descriptors in one message",
			       VHOST_USER_MAX_FDS);
			return -EPROTO;
		}
		if (n == 0)
			return (first && got == 0) ? -ECONNRESET : -EPROTO;
		got += (size_t)n;
	}
	return 0;
}

static int send_all(struct vu_server *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(s->sock, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A reply to request `req` with `size` bytes of payload. */
static int reply(struct vu_server *s, uint32_t req, const void *payload,
		 uint32_t size)
{
	struct {
		struct vhost_user_hdr hdr;
		uint8_t p[VHOST_USER_CONFIG_HDR + VHOST_USER_MAX_CONFIG];
	} __attribute__((packed)) r;

	if (size > sizeof(r.p))
		return -EINVAL;
	r.hdr.request = req;
	r.hdr.flags = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK;
	r.hdr.size = size;
	if (size)
		memcpy(r.p, payload, size);
	return send_all(s, &r, sizeof(r.hdr) + size);
}

static int reply_u64(struct vu_server *s, uint32_t req, uint64_t v)
{
	return reply(s, req, &v, sizeof(v));
}

/* ---- request handlers ------------------------------------------------- */

/* Exact payload size per request; -1: variable (checked by the handler). */
static int expected_size(uint32_t req)
{
	switch (req) {
	case VHOST_USER_GET_FEATURES:
	case VHOST_USER_SET_OWNER:
	case VHOST_USER_RESET_OWNER:
	case VHOST_USER_GET_PROTOCOL_FEATURES:
	case VHOST_USER_GET_QUEUE_NUM:
	case VHOST_USER_SET_SLAVE_REQ_FD:
	case VHOST_USER_RESET_DEVICE:
		return 0;
	case VHOST_USER_SET_FEATURES:
	case VHOST_USER_SET_PROTOCOL_FEATURES:
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		return sizeof(uint64_t);
	case VHOST_USER_SET_VRING_NUM:
	case VHOST_USER_SET_VRING_BASE:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_SET_VRING_ENABLE:
		return sizeof(struct vhost_user_vring_state);
	case VHOST_USER_SET_VRING_ADDR:
		return sizeof(struct vhost_user_vring_addr);
	default:
		return -1;
	}
}

/* fds a request carries: exactly `want` (0 for most). */
static int want_fds(struct vu_server *s, const struct vu_msg *m,
		    unsigned int want)
{
	if (m->nfds == want)
		return 0;
	vu_log(s, SMVMM_LOG_ERROR, "%s with %u file descriptor(s), expected %u",
	       req_name(m->hdr.request), m->nfds, want);
	return -EINVAL;
}

/* The ring a vring_state / u64 index names. */
static struct vu_ring *ring_at(struct vu_server *s, uint32_t req,
			       uint64_t index)
{
	if (index < s->h.nr_queues)
		return &s->ring[index];
	vu_log(s, SMVMM_LOG_ERROR, "%s for ring %" PRIu64
	       " (the device has %u)", req_name(req), index, s->h.nr_queues);
	return NULL;
}

/*
 * stopped_ring_at: ring_at for the messages that configure a ring, which
 * must not change a running one; *rc gets -EINVAL or -EBUSY on NULL.
 */
static struct vu_ring *stopped_ring_at(struct vu_server *s, uint32_t req,
				       uint64_t index, int *rc)
{
	struct vu_ring *r = ring_at(s, req, index);

	if (!r) {
		*rc = -EINVAL;
		return NULL;
	}
	if (r->started) {
		vu_log(s, SMVMM_LOG_ERROR, "%s for ring %u while it runs",
		       req_name(req), r->index);
		*rc = -EBUSY;
		return NULL;
	}
	return r;
}

static uint64_t device_offered(struct vu_server *s)
{
	struct smvmm_host *h = &s->h;
	uint64_t f;

	pthread_mutex_lock(&h->lock);
	f = h->ops->get_features(h->dev);
	pthread_mutex_unlock(&h->lock);
	/* Bits this transport cannot honour: no IOMMU/IOTLB, no dirty log;
	 * 30 is vhost-user's own. */
	f &= ~((1ull << VIRTIO_F_ACCESS_PLATFORM) | (1ull << VHOST_F_LOG_ALL) |
	       (1ull << VHOST_USER_F_PROTOCOL_FEATURES));
	return f | (1ull << VHOST_USER_F_PROTOCOL_FEATURES);
}

/*
 * Protocol features offered: CONFIG only for a device with config space
 * (QEMU warns about a back-end offering CONFIG to a front-end device that
 * has none, e.g. vhost-user-rng).
 */
static uint64_t protocol_offered(struct vu_server *s)
{
	uint64_t f = VHOST_USER_PROTOCOL_FEATURES;

	if (!s->h.info.config_size)
		f &= ~(1ull << VHOST_USER_PROTOCOL_F_CONFIG);
	return f;
}

static int h_set_features(struct vu_server *s, uint64_t f)
{
	struct smvmm_host *h = &s->h;
	int rc = 0;

	s->offered = device_offered(s);
	if (f & ~s->offered) {
		vu_log(s, SMVMM_LOG_ERROR,
		       "SET_FEATURES 0x%" PRIx64 " has bits 0x%" PRIx64
		       " that were not offered", f, f & ~s->offered);
		return -EINVAL;
	}
	pthread_mutex_lock(&h->lock);
	if (s->active || any_started(s)) {
		/* Rings run with the negotiated layout (EVENT_IDX); only a
		 * repeat of the same bits is fine (QEMU resends them). */
		if (f != s->acked) {
			vu_log(s, SMVMM_LOG_ERROR,
			       "SET_FEATURES 0x%" PRIx64 " while rings run with "
			       "0x%" PRIx64, f, s->acked);
			rc = -EBUSY;
		}
		goto out;
	}
	s->acked = f;
	s->acked_set = true;
	/* Let the plugin refuse now (FEATURES_OK, §3.1.1 step 5), not at
	 * the first enable. */
	rc = h->ops->set_features(h->dev, virtio_features(s));
	s->plugin_features_ok = rc == 0;
	if (rc) {
		vu_log(s, SMVMM_LOG_ERROR,
		       "device refused features 0x%" PRIx64 ": %s",
		       virtio_features(s), strerror(rc < 0 ? -rc : rc));
		s->acked_set = false;
		rc = rc < 0 ? rc : -EINVAL;
	}
out:
	pthread_mutex_unlock(&h->lock);
	return rc;
}

/* Map one region: its fd must be a file at least mmap_offset + size long,
 * so no access through the mapping faults (SIGBUS) past its end as long as
 * the front-end does not shrink it; if it does, the SIGBUS guard (above)
 * catches the fault.  The mapping is registered with the guard. */
static int map_region(struct vu_server *s, const struct vhost_user_region *rg,
		      int fd, struct vu_map *out)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t end, delta, len, glen;
	struct stat st;
	int guard;
	void *p;

	if (rg->size == 0 || rg->size > SIZE_MAX / 2 ||
	    __builtin_add_overflow(rg->mmap_offset, rg->size, &end) ||
	    __builtin_add_overflow(rg->gpa, rg->size - 1, &len) ||
	    __builtin_add_overflow(rg->uva, rg->size - 1, &len)) {
		vu_log(s, SMVMM_LOG_ERROR,
		       "memory region gpa 0x%" PRIx64 " size 0x%" PRIx64
		       " offset 0x%" PRIx64 ": bad size or wraps",
		       rg->gpa, rg->size, rg->mmap_offset);
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < end) {
		vu_log(s, SMVMM_LOG_ERROR,
		       "memory region gpa 0x%" PRIx64 " size 0x%" PRIx64
		       ": its fd is %s", rg->gpa, rg->size,
		       S_ISREG(st.st_mode) ? "shorter than offset + size"
					   : "not a memory file (memfd, "
					     "tmpfs or hugetlbfs)");
		return -EINVAL;
	}
	/* Map from the page that holds mmap_offset; hugetlbfs wants a huge
	 * page aligned offset, so fall back to mapping from offset 0. */
	delta = rg->mmap_offset % (uint64_t)pg;
	len = rg->size + delta;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		 fd, (off_t)(rg->mmap_offset - delta));
	if (p == MAP_FAILED && errno == EINVAL) {
		delta = rg->mmap_offset;
		len = end;
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_NORESERVE, fd, 0);
	}
	if (p == MAP_FAILED) {
		int e = errno;

		vu_log(s, SMVMM_LOG_ERROR, "mmap of a memory region: %s",
		       strerror(e));
		return -e;
	}
	/* hugetlbfs: the kernel's mapping is whole huge pages (st_blksize),
	 * and the guard must replace all of it. */
	glen = len;
	if (st.st_blksize > pg && !(st.st_blksize & (st.st_blksize - 1)))
		glen = (len + (uint64_t)st.st_blksize - 1) &
		       ~((uint64_t)st.st_blksize - 1);
	guard = guard_add(s, p, glen);
	if (guard < 0) {
		vu_log(s, SMVMM_LOG_ERROR, "memory region gpa 0x%" PRIx64
		       ": more than %d guest mappings in this process",
		       rg->gpa, VU_GUARD_SLOTS);
		munmap(p, len);
		return guard;
	}
	*out = (struct vu_map){
		.base = p,
		.len = len,
		.guard = guard,
		.hva = (uint8_t *)p + delta,
		.gpa = rg->gpa,
		.size = rg->size,
		.uva = rg->uva,
	};
	return 0;
}

static int h_set_mem_table(struct vu_server *s, struct vu_msg *m)
{
	struct smvmm_host *h = &s->h;
	struct vu_map nmap[VHOST_USER_MAX_REGIONS];
	bool restart[SMVMM_MAX_QUEUES] = { false };
	struct gmem ng;
	unsigned int n = 0, i;
	int rc = 0;

	if (m->hdr.size < 8 || m->p.mem.nregions > VHOST_USER_MAX_REGIONS ||
	    m->hdr.size != 8 + m->p.mem.nregions *
					sizeof(struct vhost_user_region)) {
		vu_log(s, SMVMM_LOG_ERROR,
		       "SET_MEM_TABLE: %u regions in %u bytes (at most %d)",
		       m->hdr.size >= 4 ? m->p.mem.nregions : 0, m->hdr.size,
		       VHOST_USER_MAX_REGIONS);
		return -EINVAL;
	}
	rc = want_fds(s, m, m->p.mem.nregions);
	if (rc)
		return rc;
	if (s->nretired + s->nmap > VU_MAX_RETIRED) {
		vu_log(s, SMVMM_LOG_ERROR,
		       "SET_MEM_TABLE: the table changed too often while the "
		       "device holds buffers of old ones; reset the device");
		return -EBUSY;
	}

	/* Map and check everything first: a bad table changes nothing. */
	gmem_init(&ng);
	for (i = 0; i < m->p.mem.nregions; i++) {
		const struct vhost_user_region *rg = &m->p.mem.regions[i];

		rc = map_region(s, rg, m->fds[i], &nmap[n]);
		if (rc)
			goto err_unmap;
		n++;
		/* gmem checks alignment (4 KiB), overlap and wrapping: the
		 * same rules as the VMM's own RAM. */
		rc = gmem_add_mapping(&ng, rg->gpa, rg->size, nmap[n - 1].hva,
				      -1, rg->mmap_offset);
		if (rc < 0) {
			vu_log(s, SMVMM_LOG_ERROR,
			       "memory region gpa 0x%" PRIx64 " size 0x%"
			       PRIx64 ": %s", rg->gpa, rg->size,
			       rc == -EEXIST ? "overlaps another region"
					     : "not 4 KiB aligned");
			goto err_unmap;
		}
		rc = 0; /* gmem_add_mapping returned the region index */
	}

	/* Rings running on the old table stop while it changes (their host
	 * pointers move), then restart where they were. */
	for (unsigned int q = 0; q < h->nr_queues; q++)
		restart[q] = ring_halt(s, &s->ring[q], false);

	pthread_mutex_lock(&h->lock);
	if (s->chains_left) {
		/* The plugin may still write into chains of the old table:
		 * keep it mapped until the device is reset. */
		memcpy(s->retired + s->nretired, s->map,
		       s->nmap * sizeof(s->map[0]));
		s->nretired += s->nmap;
		s->nmap = 0;
	} else {
		unmap_all(s->map, &s->nmap);
	}
	memcpy(s->map, nmap, n * sizeof(nmap[0]));
	s->nmap = n;
	s->mem = ng;
	for (unsigned int q = 0; q < h->nr_queues; q++) {
		struct vu_ring *r = &s->ring[q];
		int rrc;

		if (!restart[q])
			continue;
		rrc = ring_setup(s, r);
		if (rrc) {
			rc = rc ? rc : rrc;
			continue;
		}
		r->started = true;
		if (s->active && r->enabled)
			self_kick(r);
	}
	pthread_mutex_unlock(&h->lock);
	return rc;

err_unmap:
	unmap_all(nmap, &n);
	return rc;
}

static int h_vring_fd(struct vu_server *s, struct vu_msg *m)
{
	struct smvmm_host *h = &s->h;
	uint64_t v = m->p.u64;
	bool nofd = v & VHOST_USER_VRING_NOFD_MASK;
	struct vu_ring *r;
	int fd = -1, old = -1, rc;

	if (v & ~(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK)) {
		vu_log(s, SMVMM_LOG_ERROR, "%s: reserved bits set in 0x%" PRIx64,
		       req_name(m->hdr.request), v);
		return -EINVAL;
	}
	r = ring_at(s, m->hdr.request, v & VHOST_USER_VRING_IDX_MASK);
	if (!r)
		return -EINVAL;
	rc = want_fds(s, m, nofd ? 0 : 1);
	if (rc)
		return rc;
	if (!nofd) {
		/* Non-blocking: a pipe that fills up must not stall a
		 * thread that signals it. */
		fd = m->fds[0];
		m->fds[0] = -1;
		m->nfds = 0;
		if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
			rc = -errno;
			close(fd);
			return rc;
		}
	}

	switch (m->hdr.request) {
	case VHOST_USER_SET_VRING_CALL:
		pthread_mutex_lock(&r->fd_lock);
		old = r->call_fd;
		r->call_fd = fd;
		/* QEMU swaps call fds when it masks/unmasks a guest
		 * notifier; a notification sent to the old one may be lost,
		 * so give the new one a (harmless, §2.7.7.2) spurious one. */
		if (fd >= 0 && r->started)
			signal_fd(fd);
		pthread_mutex_unlock(&r->fd_lock);
		if (old >= 0)
			close(old);
		return 0;
	case VHOST_USER_SET_VRING_ERR:
		pthread_mutex_lock(&r->fd_lock);
		old = r->err_fd;
		r->err_fd = fd;
		pthread_mutex_unlock(&r->fd_lock);
		if (old >= 0)
			close(old);
		return 0;
	default:
		break;
	}

	/* SET_VRING_KICK: starts the ring (the spec, "Ring states"). */
	if (nofd) {
		vu_log(s, SMVMM_LOG_ERROR,
		       "ring %u: polling mode (kick without fd) is not "
		       "supported", r->index);
		return -ENOTSUP;
	}
	/*
	 * Watch the new fd before anything changes: an fd epoll refuses (a
	 * regular file or memfd: -EPERM) is refused with the ring exactly as
	 * it was, running on its old kick fd or stopped.  h->lock is held
	 * across, so a kick on the new fd waits in kick_cb until the fd is
	 * the ring's (none is lost), and kick_cb ignores it if it never is.
	 */
	pthread_mutex_lock(&h->lock);
	rc = evloop_watch(&s->loop, fd, EPOLLIN, kick_cb, r, s);
	if (rc) {
		pthread_mutex_unlock(&h->lock);
		vu_log(s, SMVMM_LOG_ERROR, "ring %u: cannot watch the kick fd "
		       "(%s): refused, the ring is unchanged", r->index,
		       strerror(-rc));
		close(fd);
		return rc;
	}
	if (r->started) {
		old = r->kick_fd;
		r->kick_fd = fd;
	} else {
		rc = ring_setup(s, r);
		if (rc) {
			pthread_mutex_unlock(&h->lock);
			evloop_unwatch(&s->loop, fd);
			close(fd);
			return rc;
		}
		/* A kick fd left from a restart that failed (SET_MEM_TABLE). */
		old = r->kick_fd;
		r->kick_fd = fd;
		r->started = true;
		/* Without PROTOCOL_FEATURES a ring starts enabled. */
		if (!(s->acked & (1ull << VHOST_USER_F_PROTOCOL_FEATURES)))
			r->enabled = true;
	}
	if (r->enabled && !s->active)
		rc = device_activate(s);
	else if (r->enabled && s->active)
		self_kick(r);
	pthread_mutex_unlock(&h->lock);
	if (old >= 0) {
		evloop_unwatch(&s->loop, old);
		close(old);
	}
	return rc;
}

static int h_vring_enable(struct vu_server *s, struct vu_ring *r,
			  uint32_t num)
{
	struct smvmm_host *h = &s->h;
	int rc = 0;

	if (num > 1) {
		vu_log(s, SMVMM_LOG_ERROR, "SET_VRING_ENABLE %u for ring %u "
		       "(0 or 1)", num, r->index);
		return -EINVAL;
	}
	pthread_mutex_lock(&h->lock);
	r->enabled = num;
	if (r->enabled && r->started) {
		if (!s->active)
			rc = device_activate(s);
		else
			self_kick(r); /* kicks that came while disabled */
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

/* GET_CONFIG / SET_CONFIG payload check: 12 + size bytes, in the window. */
static int config_check(struct vu_server *s, const struct vu_msg *m)
{
	const struct vhost_user_config *c = &m->p.cfg;

	if (m->hdr.size < VHOST_USER_CONFIG_HDR ||
	    c->size > VHOST_USER_MAX_CONFIG ||
	    m->hdr.size != VHOST_USER_CONFIG_HDR + c->size ||
	    c->offset > VHOST_USER_MAX_CONFIG ||
	    c->offset + c->size > VHOST_USER_MAX_CONFIG) {
		vu_log(s, SMVMM_LOG_ERROR,
		       "%s: offset %u size %u in a %u-byte payload (config "
		       "space is at most %d bytes)", req_name(m->hdr.request),
		       m->hdr.size >= VHOST_USER_CONFIG_HDR ? c->offset : 0,
		       m->hdr.size >= VHOST_USER_CONFIG_HDR ? c->size : 0,
		       m->hdr.size, VHOST_USER_MAX_CONFIG);
		return -EINVAL;
	}
	return 0;
}

/* Largest naturally aligned access (4, 2, 1) at off with n bytes left. */
static uint32_t access_width(uint32_t off, uint32_t n)
{
	if (!(off & 3) && n >= 4)
		return 4;
	if (!(off & 1) && n >= 2)
		return 2;
	return 1;
}

/*
 * Config space through the plugin's config_read in the accesses a driver
 * would make; bytes past the device's config_size read 0 (the front-end
 * may ask for its full struct, the spec wants the size it asked for).
 */
static int h_get_config(struct vu_server *s, struct vu_msg *m)
{
	struct smvmm_host *h = &s->h;
	struct vhost_user_config *c = &m->p.cfg;
	uint32_t off = c->offset, end = c->offset + c->size;
	int rc = 0;

	memset(c->payload, 0, c->size);
	pthread_mutex_lock(&h->lock);
	while (off < end && off < h->info.config_size) {
		uint32_t lim = end < h->info.config_size ? end
							 : h->info.config_size;
		uint32_t w = access_width(off, lim - off);

		rc = h->ops->config_read(h->dev, off,
					 c->payload + (off - c->offset), w);
		if (rc)
			break;
		off += w;
	}
	pthread_mutex_unlock(&h->lock);
	if (rc) {
		vu_log(s, SMVMM_LOG_WARN, "GET_CONFIG offset %u size %u: %s",
		       c->offset, c->size, strerror(rc < 0 ? -rc : rc));
		/* The spec: a zero-length payload reports the error. */
		return reply(s, m->hdr.request, NULL, 0);
	}
	return reply(s, m->hdr.request, c, VHOST_USER_CONFIG_HDR + c->size);
}

static int h_set_config(struct vu_server *s, struct vu_msg *m)
{
	struct smvmm_host *h = &s->h;
	struct vhost_user_config *c = &m->p.cfg;
	uint32_t off = c->offset, end = c->offset + c->size;
	int rc = 0;

	if (c->flags > 1) {
		vu_log(s, SMVMM_LOG_ERROR, "SET_CONFIG flags 0x%x", c->flags);
		return -EINVAL;
	}
	if (end > h->info.config_size) {
		vu_log(s, SMVMM_LOG_ERROR,
		       "SET_CONFIG offset %u size %u beyond the %u-byte "
		       "config space", c->offset, c->size, h->info.config_size);
		return -EINVAL;
	}
	/* The plugin decides which fields are writable, as for a driver's
	 * write (the same op); migration writes (flags 1) take that path
	 * too: nothing here restores read-only fields. */
	pthread_mutex_lock(&h->lock);
	while (off < end) {
		uint32_t w = access_width(off, end - off);

		rc = h->ops->config_write(h->dev, off,
					  c->payload + (off - c->offset), w);
		if (rc)
			break;
		off += w;
	}
	pthread_mutex_unlock(&h->lock);
	if (rc)
		vu_log(s, SMVMM_LOG_WARN, "SET_CONFIG offset %u size %u: %s",
		       c->offset, c->size, strerror(rc < 0 ? -rc : rc));
	return rc < 0 ? rc : rc ? -EIO : 0;
}

/* Everything but the memory table and ownership back to the start. */
static void session_reset_device(struct vu_server *s)
{
	rings_teardown(s);
}

/*
 * Dispatch one request.  Returns 0 when handled (any explicit reply sent),
 * 1 when handled and the REPLY_ACK answer is still to send (rc in *ack),
 * or -EPROTO to close the connection.
 */
static int dispatch(struct vu_server *s, struct vu_msg *m, int *ack)
{
	struct smvmm_host *h = &s->h;
	uint32_t req = m->hdr.request;
	int want = expected_size(req);
	struct vu_ring *r;
	int rc = 0;

	*ack = 0;
	if (want >= 0 && m->hdr.size != (uint32_t)want) {
		vu_log(s, SMVMM_LOG_ERROR, "%s with a %u-byte payload, expected "
		       "%d", req_name(req), m->hdr.size, want);
		rc = -EINVAL;
		goto fail;
	}
	switch (req) {
	case VHOST_USER_GET_FEATURES:
		if ((rc = want_fds(s, m, 0)))
			goto fail;
		s->offered = device_offered(s);
		return reply_u64(s, req, s->offered) ? -EPROTO : 0;
	case VHOST_USER_SET_FEATURES:
		if ((rc = want_fds(s, m, 0)))
			goto fail;
		rc = h_set_features(s, m->p.u64);
		break;
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		if ((rc = want_fds(s, m, 0)))
			goto fail;
		return reply_u64(s, req, protocol_offered(s)) ? -EPROTO : 0;
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		if ((rc = want_fds(s, m, 0)))
			goto fail;
		if (m->p.u64 & ~protocol_offered(s)) {
			vu_log(s, SMVMM_LOG_ERROR,
			       "SET_PROTOCOL_FEATURES 0x%" PRIx64 " has bits "
			       "0x%" PRIx64 " that were not offered", m->p.u64,
			       m->p.u64 & ~protocol_offered(s));
			rc = -EINVAL;
			break;
		}
		s->proto = m->p.u64;
		break;
	case VHOST_USER_SET_OWNER:
		if ((rc = want_fds(s, m, 0)))
			goto fail;
		if (s->owner) {
			vu_log(s, SMVMM_LOG_ERROR, "SET_OWNER twice");
			rc = -EBUSY;
			break;
		}
		s->owner = true;
		break;
	case VHOST_USER_RESET_OWNER:
		/* Deprecated; the spec recommends treating it as "disable
		 * all rings".  We reset the device; ownership ends. */
		if ((rc = want_fds(s, m, 0)))
			goto fail;
		session_reset_device(s);
		s->owner = false;
		break;
	case VHOST_USER_RESET_DEVICE:
		if ((rc = want_fds(s, m, 0)))
			goto fail;
		if (!(s->proto & (1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE))) {
			rc = -ENOTSUP;
			break;
		}
		session_reset_device(s);
		break;
	case VHOST_USER_SET_MEM_TABLE:
		rc = h_set_mem_table(s, m);
		break;
	case VHOST_USER_SET_VRING_NUM:
	case VHOST_USER_SET_VRING_BASE:
		if ((rc = want_fds(s, m, 0)))
			goto fail;
		r = stopped_ring_at(s, req, m->p.state.index, &rc);
		if (!r)
			break;
		if (req == VHOST_USER_SET_VRING_BASE) {
			/* Split rings: a 16-bit free-running index. */
			if (m->p.state.num > 0xffff) {
				vu_log(s, SMVMM_LOG_ERROR, "SET_VRING_BASE %u "
				       "for ring %u", m->p.state.num, r->index);
				rc = -EINVAL;
				break;
			}
			r->base = (uint16_t)m->p.state.num;
			break;
		}
		/* §2.7: a power of two up to the device's maximum. */
		if (!m->p.state.num ||
		    (m->p.state.num & (m->p.state.num - 1)) ||
		    m->p.state.num > ring_max(s)) {
			vu_log(s, SMVMM_LOG_ERROR, "SET_VRING_NUM %u for ring "
			       "%u (a power of two, at most %u)",
			       m->p.state.num, r->index, ring_max(s));
			rc = -EINVAL;
			break;
		}
		r->num = m->p.state.num;
		r->num_set = true;
		break;
	case VHOST_USER_SET_VRING_ADDR:
		if ((rc = want_fds(s, m, 0)))
			goto fail;
		r = stopped_ring_at(s, req, m->p.addr.index, &rc);
		if (!r)
			break;
		if (m->p.addr.flags) {
			/* VHOST_VRING_F_LOG: logging is never offered. */
			vu_log(s, SMVMM_LOG_ERROR, "SET_VRING_ADDR flags 0x%x "
			       "(dirty logging is not supported)",
			       m->p.addr.flags);
			rc = -ENOTSUP;
			break;
		}
		r->desc_uva = m->p.addr.desc;
		r->avail_uva = m->p.addr.avail;
		r->used_uva = m->p.addr.used;
		r->addr_set = true;
		break;
	case VHOST_USER_GET_VRING_BASE: {
		struct vhost_user_vring_state st;

		if ((rc = want_fds(s, m, 0)))
			goto fail;
		r = ring_at(s, req, m->p.state.index);
		if (!r)
			return -EPROTO; /* a reply is due: no way to fail */
		st.index = r->index;
		st.num = ring_stop(s, r);
		return reply(s, req, &st, sizeof(st)) ? -EPROTO : 0;
	}
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		rc = h_vring_fd(s, m);
		break;
	case VHOST_USER_GET_QUEUE_NUM:
		if ((rc = want_fds(s, m, 0)))
			goto fail;
		return reply_u64(s, req, h->nr_queues) ? -EPROTO : 0;
	case VHOST_USER_SET_VRING_ENABLE:
		if ((rc = want_fds(s, m, 0)))
			goto fail;
		r = ring_at(s, req, m->p.state.index);
		if (!r) {
			rc = -EINVAL;
			break;
		}
		rc = h_vring_enable(s, r, m->p.state.num);
		break;
	case VHOST_USER_SET_SLAVE_REQ_FD:
		if ((rc = want_fds(s, m, 1)))
			goto fail;
		if (!(s->proto & (1ull << VHOST_USER_PROTOCOL_F_SLAVE_REQ))) {
			rc = -ENOTSUP;
			break;
		}
		pthread_mutex_lock(&s->slave_lock);
		close_fd(&s->slave_fd);
		s->slave_fd = m->fds[0];
		s->slave_fail_logged = false;
		pthread_mutex_unlock(&s->slave_lock);
		m->fds[0] = -1;
		m->nfds = 0;
		break;
	case VHOST_USER_GET_CONFIG:
		if (want_fds(s, m, 0) || config_check(s, m))
			/* The spec: a zero-length payload is the error. */
			return reply(s, req, NULL, 0) ? -EPROTO : 0;
		return h_get_config(s, m) ? -EPROTO : 0;
	case VHOST_USER_SET_CONFIG:
		if ((rc = want_fds(s, m, 0)) || (rc = config_check(s, m)))
			goto fail;
		rc = h_set_config(s, m);
		break;
	default:
		vu_log(s, SMVMM_LOG_ERROR, "%s (%u) is not supported",
		       req_name(req), req);
		rc = -ENOTSUP;
		break;
	}
fail:
	*ack = rc;
	return 1;
}

/* Requests whose reply is part of the protocol (no REPLY_ACK on top). */
static bool has_reply(uint32_t req)
{
	switch (req) {
	case VHOST_USER_GET_FEATURES:
	case VHOST_USER_GET_PROTOCOL_FEATURES:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_GET_QUEUE_NUM:
	case VHOST_USER_GET_CONFIG:
		return true;
	default:
		return false;
	}
}

static void msg_close_fds(struct vu_msg *m)
{
	for (unsigned int i = 0; i < m->nfds; i++)
		if (m->fds[i] >= 0)
			close(m->fds[i]);
	m->nfds = 0;
}

/*
 * One message: read, check the header, dispatch, answer.  0 to go on,
 * -ECONNRESET at a clean end of stream, -EPROTO to close, -EINTR, -errno.
 */
static int serve_one(struct vu_server *s, struct vu_msg *m, int listen_fd,
		     int stop_fd)
{
	uint32_t ver;
	int rc, ack;

	m->nfds = 0;
	rc = read_full(s, &m->hdr, sizeof(m->hdr), m, listen_fd, stop_fd,
		       true);
	if (rc)
		goto out;
	ver = m->hdr.flags & VHOST_USER_VERSION_MASK;
	if (ver != VHOST_USER_VERSION || (m->hdr.flags & VHOST_USER_REPLY_MASK)) {
		vu_log(s, SMVMM_LOG_ERROR,
		       "bad message header (request %u, flags 0x%x): version "
		       "must be %u and the reply bit clear", m->hdr.request,
		       m->hdr.flags, VHOST_USER_VERSION);
		rc = -EPROTO;
		goto out;
	}
	if (m->hdr.size > VHOST_USER_MAX_PAYLOAD) {
		vu_log(s, SMVMM_LOG_ERROR, "%s with a %u-byte payload (at most "
		       "%d)", req_name(m->hdr.request), m->hdr.size,
		       VHOST_USER_MAX_PAYLOAD);
		rc = -EPROTO;
		goto out;
	}
	/* Typed views of a short payload read zeros, never old bytes. */
	memset(&m->p, 0, sizeof(struct vhost_user_config));
	if (m->hdr.size) {
		rc = read_full(s, &m->p, m->hdr.size, m, listen_fd, stop_fd,
			       false);
		if (rc)
			goto out;
	}
	vu_log(s, SMVMM_LOG_DEBUG, "%s size %u fds %u flags 0x%x",
	       req_name(m->hdr.request), m->hdr.size, m->nfds, m->hdr.flags);

	rc = dispatch(s, m, &ack);
	if (rc <= 0)
		goto out;
	rc = 0;
	if ((m->hdr.flags & VHOST_USER_NEED_REPLY_MASK) &&
	    (s->proto & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK)) &&
	    !has_reply(m->hdr.request)) {
		/* REPLY_ACK: 0 on success, non-zero (the errno) on failure;
		 * the front-end decides what a failure means. */
		if (reply_u64(s, m->hdr.request, ack ? (uint64_t)-ack : 0))
			rc = -EPROTO;
	} else if (ack) {
		/* No way to tell the front-end: it would go on believing
		 * the request worked.  End the session cleanly instead. */
		vu_log(s, SMVMM_LOG_ERROR, "%s failed (%s): closing the "
		       "connection", req_name(m->hdr.request), strerror(-ack));
		rc = -EPROTO;
	}
out:
	msg_close_fds(m);
	return rc;
}

/* ---- session lifecycle ------------------------------------------------ */

static void session_end(struct vu_server *s)
{
	rings_teardown(s);
	pthread_mutex_lock(&s->h.lock);
	unmap_all(s->map, &s->nmap);
	gmem_init(&s->mem);
	pthread_mutex_unlock(&s->h.lock);
	pthread_mutex_lock(&s->slave_lock);
	close_fd(&s->slave_fd);
	pthread_mutex_unlock(&s->slave_lock);
	s->proto = 0;
	s->owner = false;
	close_fd(&s->sock);
	/* Nothing of this session is mapped any more: no new fault. */
	{
		uint64_t v;

		while (read(s->fault_fd, &v, sizeof(v)) > 0)
			;
	}
	__atomic_store_n(&s->mem_fault, 0, __ATOMIC_SEQ_CST);
}

int vu_server_serve(struct vu_server *s, int conn, int listen_fd,
		    int stop_fd)
{
	struct vu_msg *m;
	int rc;

	m = calloc(1, sizeof(*m));
	if (!m) {
		close(conn);
		return -ENOMEM;
	}
	s->sock = conn;
	s->proto = 0;
	s->owner = false;
	for (;;) {
		rc = serve_one(s, m, listen_fd, stop_fd);
		if (rc)
			break;
	}
	free(m);
	session_end(s);
	if (rc == -ECONNRESET)
		return 0;
	if (rc == -ECONNREFUSED || rc == -EPIPE)
		return 0;
	return rc;
}

/* ---- server ----------------------------------------------------------- */

int vu_server_new(struct vu_server **out, const struct smvmm_device_ops *ops,
		  const char *id, const char *file, int section_line,
		  const struct device_kv *kv, unsigned int nkv, char *err,
		  size_t errlen)
{
	struct vu_server *s;
	int rc;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->sock = -1;
	s->slave_fd = -1;
	pthread_once(&g_bus_once, bus_install);
	if (g_bus_rc) {
		snprintf(err, errlen, "SIGBUS handler: %s", strerror(-g_bus_rc));
		free(s);
		return g_bus_rc;
	}
	s->fault_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->fault_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(-rc));
		free(s);
		return rc;
	}
	pthread_mutex_init(&s->slave_lock, NULL);
	for (unsigned int q = 0; q < SMVMM_MAX_QUEUES; q++) {
		struct vu_ring *r = &s->ring[q];

		r->srv = s;
		r->index = (uint16_t)q;
		r->kick_fd = r->call_fd = r->err_fd = -1;
		pthread_mutex_init(&r->fd_lock, NULL);
	}
	gmem_init(&s->mem);
	rc = evloop_init(&s->loop);
	if (rc) {
		snprintf(err, errlen, "event loop: %s", strerror(-rc));
		goto err_free;
	}
	device_host_init(&s->h, id, file, section_line, kv, nkv, &s->mem,
			 &s->loop);
	rc = device_create(&s->h, ops, err, errlen);
	if (rc)
		goto err_host;
	s->created = true;
	s->h.transport = s;
	s->h.raise = vu_raise;
	s->h.raise_vq = vu_raise_vq;
	s->h.set_needs_reset = vu_set_needs_reset;
	rc = evloop_start(&s->loop);
	if (rc) {
		snprintf(err, errlen, "event loop thread: %s", strerror(-rc));
		goto err_dev;
	}
	s->loop_started = true;
	*out = s;
	return 0;

err_dev:
	device_destroy(&s->h);
	s->created = false;
	goto err_loop;
err_host:
	device_destroy(&s->h); /* safe after a failed create: locks */
err_loop:
	evloop_destroy(&s->loop);
err_free:
	for (unsigned int q = 0; q < SMVMM_MAX_QUEUES; q++)
		pthread_mutex_destroy(&s->ring[q].fd_lock);
	pthread_mutex_destroy(&s->slave_lock);
	close(s->fault_fd);
	free(s);
	return rc;
}

void vu_server_free(struct vu_server *s)
{
	if (!s)
		return;
	if (s->sock >= 0)
		session_end(s);
	/* Plugin watches are removed (and waited for) before the loop
	 * stops; the device is reset and destroyed while the loop runs. */
	device_destroy(&s->h);
	if (s->loop_started)
		evloop_stop(&s->loop);
	evloop_destroy(&s->loop);
	unmap_all(s->map, &s->nmap);
	unmap_all(s->retired, &s->nretired);
	for (unsigned int q = 0; q < SMVMM_MAX_QUEUES; q++) {
		close_fd(&s->ring[q].call_fd);
		close_fd(&s->ring[q].err_fd);
		pthread_mutex_destroy(&s->ring[q].fd_lock);
	}
	close_fd(&s->slave_fd);
	pthread_mutex_destroy(&s->slave_lock);
	close_fd(&s->fault_fd); /* after unmap_all: no guard slot left */
	free(s);
}

struct smvmm_host *vu_server_host(struct vu_server *s)
{
	return &s->h;
}

unsigned int vu_server_mapped(struct vu_server *s)
{
	unsigned int n;

	/* The serving thread changes the table under h.lock. */
	pthread_mutex_lock(&s->h.lock);
	n = s->nmap;
	pthread_mutex_unlock(&s->h.lock);
	return n;
}
