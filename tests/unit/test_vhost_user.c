// SPDX-License-Identifier: MIT
/*
 * The vhost-user back-end (core/vhost_user.c) driven by a front-end written
 * here, over a socketpair, with "guest RAM" in a memfd passed by SCM_RIGHTS
 * exactly as QEMU passes it.  Two devices: the real smvmm-virtio-rng.so
 * through the real loader, and `tdev`, a device defined below with config
 * space and two echo queues, which counts the ops the core calls.
 *
 * Every request of the spec the back-end implements is exercised, malformed
 * messages get an error reply (REPLY_ACK) or a clean disconnect, the server
 * survives each and serves the next connection, and after a disconnect the
 * device is reset and guest memory unmapped.
 */
#define _GNU_SOURCE
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>

#include "loader.h"
#include "vhost_user.h"
#include "virtq.h"

#define RAM_SIZE (1u << 20)
#define UVA_BASE 0x7f1200000000ull /* the "front-end's" address of RAM */
#define GPA_BASE 0x100000ull
#define DESC_OFF 0x1000u
#define AVAIL_OFF 0x2000u
#define USED_OFF 0x3000u
#define BUF_OFF 0x10000u
#define QSIZE 16

#define F_VERSION_1 (1ull << VIRTIO_F_VERSION_1)
#define F_EVENT_IDX (1ull << VIRTIO_F_EVENT_IDX)
#define F_PROTO (1ull << VHOST_USER_F_PROTOCOL_FEATURES)
#define PF(b) (1ull << VHOST_USER_PROTOCOL_F_##b)

/* ---- tdev: a device with config space and two echo queues ------------ */

#define TDEV_ID 0x1234
#define TDEV_F_ECHO (1ull << 0)

struct tdev {
	const struct smvmm_host_services *svc;
	struct smvmm_host *h;
	uint8_t cfg[16]; /* 0..7 read-only pattern, 8..15 writable */
	int activated, resets, set_features;
	uint64_t features;
	bool active;
};

static struct tdev *g_tdev;

static int t_create(const struct smvmm_host_services *svc,
		    struct smvmm_host *h, struct smvmm_device_info *info,
		    void **dev)
{
	struct tdev *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->svc = svc;
	t->h = h;
	for (int i = 0; i < 8; i++)
		t->cfg[i] = (uint8_t)(0xa0 + i);
	info->device_id = TDEV_ID;
	info->num_queues = 2;
	info->queue_size_max = 64;
	info->config_size = sizeof(t->cfg);
	*dev = t;
	g_tdev = t;
	return 0;
}

static void t_destroy(void *dev)
{
	free(dev);
	g_tdev = NULL;
}

static uint64_t t_get_features(void *dev)
{
	(void)dev;
	return F_VERSION_1 | F_EVENT_IDX | TDEV_F_ECHO;
}

static int t_set_features(void *dev, uint64_t f)
{
	struct tdev *t = dev;

	t->set_features++;
	t->features = f;
	return (f & F_VERSION_1) ? 0 : -ENOTSUP;
}

static int t_config_read(void *dev, uint32_t off, void *data, uint32_t len)
{
	struct tdev *t = dev;

	ck_assert(len == 1 || len == 2 || len == 4 || len == 8);
	ck_assert_uint_le(off + len, sizeof(t->cfg));
	memcpy(data, t->cfg + off, len);
	return 0;
}

static int t_config_write(void *dev, uint32_t off, const void *data,
			  uint32_t len)
{
	struct tdev *t = dev;

	ck_assert(len == 1 || len == 2 || len == 4 || len == 8);
	if (off < 8)
		return -EPERM;
	memcpy(t->cfg + off, data, len);
	if (off == 8)
		t->svc->config_changed(t->h);
	return 0;
}

static int t_activate(void *dev)
{
	struct tdev *t = dev;

	t->activated++;
	t->active = true;
	return 0;
}

/* Echo: copy the readable bytes into the writable ones. */
static void t_queue_notify(void *dev, uint16_t q)
{
	struct tdev *t = dev;
	struct smvmm_chain *c;
	int n = 0, rc;

	ck_assert(t->active);
	while ((rc = t->svc->vq_pop(t->h, q, &c)) == 1) {
		uint32_t done = 0, oi = 0, ii = c->n_out;
		size_t oo = 0, io = 0;

		while (oi < c->n_out && ii < c->n_out + c->n_in) {
			size_t k = c->iov[oi].iov_len - oo;

			if (k > c->iov[ii].iov_len - io)
				k = c->iov[ii].iov_len - io;
			memcpy((uint8_t *)c->iov[ii].iov_base + io,
			       (uint8_t *)c->iov[oi].iov_base + oo, k);
			done += (uint32_t)k;
			oo += k;
			io += k;
			if (oo == c->iov[oi].iov_len) {
				oi++;
				oo = 0;
			}
			if (io == c->iov[ii].iov_len) {
				ii++;
				io = 0;
			}
		}
		t->svc->vq_push(t->h, c, done);
		n++;
	}
	if (n)
		t->svc->vq_notify(t->h, q);
}

static void t_reset(void *dev)
{
	struct tdev *t = dev;

	t->resets++;
	t->active = false;
}

static const struct smvmm_device_ops tdev_ops = {
	.struct_size = sizeof(struct smvmm_device_ops),
	.create = t_create,
	.destroy = t_destroy,
	.get_features = t_get_features,
	.set_features = t_set_features,
	.config_read = t_config_read,
	.config_write = t_config_write,
	.activate = t_activate,
	.queue_notify = t_queue_notify,
	.reset = t_reset,
};

/* ---- the test front-end ----------------------------------------------- */

struct fe {
	struct vu_server *srv;
	int sock;       /* our end */
	pthread_t thr;
	int peer;       /* the server's end, owned by the serve thread */
	int stop_fd;
	int serve_rc;
	bool serving;

	int ram_fd;
	uint8_t *ram;   /* guest RAM as the "guest" sees it */
	int kick[2], call[2], err[2];
	uint16_t avail_idx, used_seen;
};

static void *serve_thread(void *arg)
{
	struct fe *f = arg;

	f->serve_rc = vu_server_serve(f->srv, f->peer, -1, f->stop_fd);
	return NULL;
}

static struct vu_server *new_server(const struct smvmm_device_ops *ops)
{
	struct vu_server *s;
	char err[512];
	int rc;

	rc = vu_server_new(&s, ops, "t0", "test.ini", 1, NULL, 0, err,
			   sizeof(err));
	ck_assert_msg(rc == 0, "vu_server_new: %s", err);
	return s;
}

/* The real rng plugin through the loader, as `smvmm vhost-user` does. */
static struct smvmm_plugin g_rng_plugin;

static struct vu_server *new_rng_server(void)
{
	struct loader_search ls = { .plugin_dir = SMVMM_BUILD_DIR };
	char err[512];
	int rc;

	rc = loader_load("virtio-rng", SMVMM_PLUGIN_DEVICE, &ls, &g_rng_plugin,
			 err, sizeof(err));
	ck_assert_msg(rc == 0, "loader: %s", err);
	return new_server(&g_rng_plugin.dev_ops);
}

static void fe_connect(struct fe *f, struct vu_server *s)
{
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	f->srv = s;
	f->sock = sv[0];
	f->peer = sv[1];
	f->serving = true;
	ck_assert_int_eq(pthread_create(&f->thr, NULL, serve_thread, f), 0);
}

static void fe_init(struct fe *f, struct vu_server *s)
{
	memset(f, 0, sizeof(*f));
	f->stop_fd = eventfd(0, EFD_CLOEXEC);
	ck_assert_int_ge(f->stop_fd, 0);
	f->ram_fd = memfd_create("ram", MFD_CLOEXEC);
	ck_assert_int_ge(f->ram_fd, 0);
	ck_assert_int_eq(ftruncate(f->ram_fd, RAM_SIZE), 0);
	f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		      f->ram_fd, 0);
	ck_assert(f->ram != MAP_FAILED);
	for (int i = 0; i < 2; i++) {
		int *p[3] = { f->kick, f->call, f->err };

		(void)i;
		for (int k = 0; k < 3; k++)
			p[k][0] = p[k][1] = -1;
	}
	fe_connect(f, s);
}

/* Close our end, wait for the server to finish the session. */
static int fe_disconnect(struct fe *f)
{
	if (f->sock >= 0)
		close(f->sock);
	f->sock = -1;
	if (f->serving)
		pthread_join(f->thr, NULL);
	f->serving = false;
	return f->serve_rc;
}

static void fe_fini(struct fe *f)
{
	fe_disconnect(f);
	for (int k = 0; k < 2; k++) {
		if (f->kick[k] >= 0)
			close(f->kick[k]);
		if (f->call[k] >= 0)
			close(f->call[k]);
		if (f->err[k] >= 0)
			close(f->err[k]);
	}
	munmap(f->ram, RAM_SIZE);
	close(f->ram_fd);
	close(f->stop_fd);
}

static void fe_send_raw(struct fe *f, const void *buf, size_t len,
			const int *fds, unsigned int nfds)
{
	union {
		char buf[CMSG_SPACE(16 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { (void *)buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	/* The server may already have closed: EPIPE is a valid outcome. */
	(void)sendmsg(f->sock, &mh, MSG_NOSIGNAL);
}

static void fe_send(struct fe *f, uint32_t req, uint32_t flags,
		    const void *payload, uint32_t size, const int *fds,
		    unsigned int nfds)
{
	uint8_t buf[sizeof(struct vhost_user_hdr) + 512];
	struct vhost_user_hdr h = { req, flags, size };

	ck_assert_uint_le(size, 512);
	memcpy(buf, &h, sizeof(h));
	if (size)
		memcpy(buf + sizeof(h), payload, size);
	fe_send_raw(f, buf, sizeof(h) + size, fds, nfds);
}

/* Read exactly len bytes; false at EOF or after 5 s. */
static bool fe_read(struct fe *f, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = f->sock, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 5000) != 1)
			return false;
		n = recv(f->sock, (uint8_t *)buf + got, len - got, 0);
		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	return true;
}

/* A reply to req: returns its payload size, -1 if the connection closed. */
static int fe_reply(struct fe *f, uint32_t req, void *payload, size_t max)
{
	struct vhost_user_hdr h;

	if (!fe_read(f, &h, sizeof(h)))
		return -1;
	ck_assert_uint_eq(h.request, req);
	ck_assert_uint_eq(h.flags, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK);
	ck_assert_uint_le(h.size, max);
	if (h.size)
		ck_assert(fe_read(f, payload, h.size));
	return (int)h.size;
}

/* True when the server closed the connection (EOF within 5 s). */
static bool fe_closed(struct fe *f)
{
	struct pollfd p = { .fd = f->sock, .events = POLLIN };
	char c;

	if (poll(&p, 1, 5000) != 1)
		return false;
	return recv(f->sock, &c, 1, MSG_DONTWAIT) == 0;
}

static uint64_t fe_get_u64(struct fe *f, uint32_t req)
{
	uint64_t v = 0;

	fe_send(f, req, VHOST_USER_VERSION, NULL, 0, NULL, 0);
	ck_assert_int_eq(fe_reply(f, req, &v, sizeof(v)), 8);
	return v;
}

/* A request with need_reply: the REPLY_ACK value (0 = success). */
static uint64_t fe_ack(struct fe *f, uint32_t req, const void *p,
		       uint32_t size, const int *fds, unsigned int nfds)
{
	uint64_t v = ~0ull;

	fe_send(f, req, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, p,
		size, fds, nfds);
	ck_assert_int_eq(fe_reply(f, req, &v, sizeof(v)), 8);
	return v;
}

static uint64_t fe_ack_u64(struct fe *f, uint32_t req, uint64_t v,
			   const int *fds, unsigned int nfds)
{
	return fe_ack(f, req, &v, sizeof(v), fds, nfds);
}

static uint64_t fe_ack_state(struct fe *f, uint32_t req, uint32_t index,
			     uint32_t num)
{
	struct vhost_user_vring_state st = { index, num };

	return fe_ack(f, req, &st, sizeof(st), NULL, 0);
}

/* The handshake QEMU does, with REPLY_ACK so every step is checked. */
static void fe_handshake(struct fe *f, uint64_t proto)
{
	uint64_t feat = fe_get_u64(f, VHOST_USER_GET_FEATURES);

	ck_assert(feat & F_PROTO);
	ck_assert(feat & F_VERSION_1);
	ck_assert((proto & ~fe_get_u64(f, VHOST_USER_GET_PROTOCOL_FEATURES)) ==
		  0);
	fe_send(f, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION,
		&proto, 8, NULL, 0);
	if (proto & PF(REPLY_ACK))
		ck_assert_uint_eq(fe_ack(f, VHOST_USER_SET_OWNER, NULL, 0,
					 NULL, 0), 0);
	else
		fe_send(f, VHOST_USER_SET_OWNER, VHOST_USER_VERSION, NULL, 0,
			NULL, 0);
}

static struct vhost_user_memory one_region(uint64_t size, uint64_t off)
{
	struct vhost_user_memory m = { .nregions = 1 };

	m.regions[0] = (struct vhost_user_region){
		.gpa = GPA_BASE, .size = size, .uva = UVA_BASE,
		.mmap_offset = off,
	};
	return m;
}

static uint64_t fe_mem_table(struct fe *f, const struct vhost_user_memory *m,
			     const int *fds, unsigned int nfds)
{
	return fe_ack(f, VHOST_USER_SET_MEM_TABLE, m,
		      8 + m->nregions * sizeof(struct vhost_user_region), fds,
		      nfds);
}

static uint64_t ring_uva(unsigned int q, uint32_t off)
{
	return UVA_BASE + q * 0x4000u + off;
}

static uint8_t *ring_ptr(struct fe *f, unsigned int q, uint32_t off)
{
	return f->ram + q * 0x4000u + off;
}

/* SET_VRING_NUM/ADDR/BASE/CALL/ERR/KICK + ENABLE for ring q. */
static void fe_ring_up(struct fe *f, unsigned int q, uint16_t base,
		       bool enable)
{
	struct vhost_user_vring_addr a = {
		.index = q,
		.desc = ring_uva(q, DESC_OFF),
		.avail = ring_uva(q, AVAIL_OFF),
		.used = ring_uva(q, USED_OFF),
	};

	if (f->call[q] < 0) {
		f->call[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		f->kick[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		f->err[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}
	ck_assert_uint_eq(fe_ack_state(f, VHOST_USER_SET_VRING_NUM, q, QSIZE),
			  0);
	ck_assert_uint_eq(fe_ack_state(f, VHOST_USER_SET_VRING_BASE, q, base),
			  0);
	ck_assert_uint_eq(fe_ack(f, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a),
				 NULL, 0), 0);
	ck_assert_uint_eq(fe_ack_u64(f, VHOST_USER_SET_VRING_CALL, q,
				     &f->call[q], 1), 0);
	ck_assert_uint_eq(fe_ack_u64(f, VHOST_USER_SET_VRING_ERR, q,
				     &f->err[q], 1), 0);
	ck_assert_uint_eq(fe_ack_u64(f, VHOST_USER_SET_VRING_KICK, q,
				     &f->kick[q], 1), 0);
	if (enable)
		ck_assert_uint_eq(fe_ack_state(f, VHOST_USER_SET_VRING_ENABLE,
					       q, 1), 0);
}

/* Everything up to a running ring 0 (and 1) of tdev. */
static void fe_device_up(struct fe *f, unsigned int nrings)
{
	struct vhost_user_memory m = one_region(RAM_SIZE, 0);

	fe_handshake(f, PF(MQ) | PF(REPLY_ACK) | PF(CONFIG));
	ck_assert_uint_eq(fe_ack_u64(f, VHOST_USER_SET_FEATURES,
				     F_VERSION_1 | F_EVENT_IDX | F_PROTO |
					     TDEV_F_ECHO, NULL, 0), 0);
	ck_assert_uint_eq(fe_mem_table(f, &m, &f->ram_fd, 1), 0);
	for (unsigned int q = 0; q < nrings; q++)
		fe_ring_up(f, q, 0, true);
}

/* The driver side of a split ring (VIRTIO 1.2 §2.7) in our RAM view. */
static void drv_desc(struct fe *f, unsigned int q, uint16_t i, uint64_t gpa,
		     uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {
		.addr = htole64(gpa), .len = htole32(len),
		.flags = htole16(flags), .next = htole16(next),
	};

	memcpy(ring_ptr(f, q, DESC_OFF) + 16u * i, &d, sizeof(d));
}

static uint16_t used_idx(struct fe *f, unsigned int q);

static void drv_publish(struct fe *f, unsigned int q, uint16_t head)
{
	uint16_t *avail = (uint16_t *)ring_ptr(f, q, AVAIL_OFF);
	uint16_t idx = le16toh(avail[1]);

	/* EVENT_IDX (§2.7.10): used_event = what we have seen, so the next
	 * used buffer is notified. */
	avail[2 + QSIZE] = htole16(used_idx(f, q));
	avail[2 + idx % QSIZE] = htole16(head);
	__atomic_store_n(&avail[1], htole16((uint16_t)(idx + 1)),
			 __ATOMIC_RELEASE);
}

static void kick(int fd)
{
	uint64_t one = 1;

	ck_assert_int_eq(write(fd, &one, 8), 8);
}

/* Wait for an eventfd to fire (true) within ms. */
static bool wait_fd(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t v;

	if (poll(&p, 1, ms) != 1)
		return false;
	return read(fd, &v, 8) == 8;
}

static uint16_t used_idx(struct fe *f, unsigned int q)
{
	uint16_t *u = (uint16_t *)ring_ptr(f, q, USED_OFF);

	return le16toh(__atomic_load_n(&u[1], __ATOMIC_ACQUIRE));
}

/* The used element for slot i: id and len. */
static void used_elem(struct fe *f, unsigned int q, uint16_t i, uint32_t *id,
		      uint32_t *len)
{
	uint32_t *e = (uint32_t *)(ring_ptr(f, q, USED_OFF) + 4 + 8 * (i % QSIZE));

	*id = le32toh(e[0]);
	*len = le32toh(e[1]);
}

/* One echo request on ring q: `n` bytes out, read back in. */
static void echo_once(struct fe *f, unsigned int q, uint8_t seed)
{
	uint32_t out = BUF_OFF + q * 0x8000u, in = out + 0x1000u, id, len;
	uint16_t u = used_idx(f, q);

	for (int i = 0; i < 100; i++)
		f->ram[out + i] = (uint8_t)(seed + i);
	memset(f->ram + in, 0, 100);
	drv_desc(f, q, 0, GPA_BASE + out, 100, VIRTQ_DESC_F_NEXT, 1);
	drv_desc(f, q, 1, GPA_BASE + in, 100, VIRTQ_DESC_F_WRITE, 0);
	drv_publish(f, q, 0);
	kick(f->kick[q]);
	ck_assert_msg(wait_fd(f->call[q], 5000), "no used notification");
	ck_assert_uint_eq(used_idx(f, q), (uint16_t)(u + 1));
	used_elem(f, q, u, &id, &len);
	ck_assert_uint_eq(id, 0);
	ck_assert_uint_eq(len, 100);
	ck_assert_mem_eq(f->ram + in, f->ram + out, 100);
}

static void free_server(struct vu_server *s)
{
	vu_server_free(s);
	if (g_rng_plugin.handle)
		loader_close(&g_rng_plugin);
}

/* ---- tests ------------------------------------------------------------ */

START_TEST(test_handshake_and_queries)
{
	struct vu_server *s = new_server(&tdev_ops);
	struct fe f;
	uint64_t feat, proto;

	fe_init(&f, s);
	feat = fe_get_u64(&f, VHOST_USER_GET_FEATURES);
	ck_assert_uint_eq(feat, F_VERSION_1 | F_EVENT_IDX | TDEV_F_ECHO |
					F_PROTO);
	proto = fe_get_u64(&f, VHOST_USER_GET_PROTOCOL_FEATURES);
	ck_assert_uint_eq(proto, VHOST_USER_PROTOCOL_FEATURES);
	/* Offering something we do not have is refused ... */
	fe_send(&f, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION,
		&(uint64_t){ PF(REPLY_ACK) }, 8, NULL, 0);
	ck_assert_uint_ne(fe_ack_u64(&f, VHOST_USER_SET_PROTOCOL_FEATURES,
				     PF(REPLY_ACK) | PF(STATUS), NULL, 0), 0);
	/* ... and the connection goes on (REPLY_ACK was negotiated). */
	ck_assert_uint_eq(fe_ack_u64(&f, VHOST_USER_SET_PROTOCOL_FEATURES,
				     proto, NULL, 0), 0);
	ck_assert_uint_eq(fe_get_u64(&f, VHOST_USER_GET_QUEUE_NUM), 2);
	ck_assert_uint_eq(fe_ack(&f, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0),
			  0);
	ck_assert_uint_ne(fe_ack(&f, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0),
			  0);
	/* Features not offered are refused; offered ones reach the plugin. */
	ck_assert_uint_ne(fe_ack_u64(&f, VHOST_USER_SET_FEATURES,
				     F_VERSION_1 | (1ull << 5), NULL, 0), 0);
	ck_assert_uint_eq(fe_ack_u64(&f, VHOST_USER_SET_FEATURES,
				     F_VERSION_1 | F_PROTO, NULL, 0), 0);
	ck_assert_uint_eq(g_tdev->features, F_VERSION_1);
	/* A plugin that refuses (no VERSION_1) makes SET_FEATURES fail. */
	ck_assert_uint_ne(fe_ack_u64(&f, VHOST_USER_SET_FEATURES, F_PROTO,
				     NULL, 0), 0);
	ck_assert_int_eq(fe_disconnect(&f), 0);
	fe_fini(&f);
	free_server(s);
}
END_TEST

START_TEST(test_config_space)
{
	struct vu_server *s = new_server(&tdev_ops);
	struct vhost_user_config c = { 0 }, r;
	struct fe f;
	int n;

	fe_init(&f, s);
	fe_handshake(&f, PF(REPLY_ACK) | PF(CONFIG) | PF(SLAVE_REQ));
	/* Back-end channel for config change notifications. */
	int sp[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	ck_assert_uint_eq(fe_ack(&f, VHOST_USER_SET_SLAVE_REQ_FD, NULL, 0,
				 &sp[1], 1), 0);
	close(sp[1]);

	/* The whole space, then a longer read (the tail reads 0), then an
	 * odd unaligned window. */
	c.offset = 0;
	c.size = 16;
	fe_send(&f, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION, &c, 12 + 16,
		NULL, 0);
	n = fe_reply(&f, VHOST_USER_GET_CONFIG, &r, sizeof(r));
	ck_assert_int_eq(n, 12 + 16);
	ck_assert_uint_eq(r.size, 16);
	for (int i = 0; i < 8; i++)
		ck_assert_uint_eq(r.payload[i], 0xa0 + i);
	c.size = 60; /* QEMU asks for its whole struct virtio_blk_config */
	fe_send(&f, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION, &c, 12 + 60,
		NULL, 0);
	n = fe_reply(&f, VHOST_USER_GET_CONFIG, &r, sizeof(r));
	ck_assert_int_eq(n, 12 + 60);
	for (int i = 16; i < 60; i++)
		ck_assert_uint_eq(r.payload[i], 0);
	c.offset = 3;
	c.size = 6;
	fe_send(&f, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION, &c, 12 + 6,
		NULL, 0);
	ck_assert_int_eq(fe_reply(&f, VHOST_USER_GET_CONFIG, &r, sizeof(r)),
			 12 + 6);
	ck_assert_uint_eq(r.payload[0], 0xa3);
	ck_assert_uint_eq(r.payload[4], 0xa7);

	/* Out of the 256-byte window, or a size that does not match the
	 * payload: a zero-length reply (the spec's error), still open. */
	c.offset = 250;
	c.size = 16;
	fe_send(&f, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION, &c, 12 + 16,
		NULL, 0);
	ck_assert_int_eq(fe_reply(&f, VHOST_USER_GET_CONFIG, &r, sizeof(r)),
			 0);
	c.offset = 0;
	c.size = 16;
	fe_send(&f, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION, &c, 12 + 8,
		NULL, 0);
	ck_assert_int_eq(fe_reply(&f, VHOST_USER_GET_CONFIG, &r, sizeof(r)),
			 0);

	/* SET_CONFIG: writable field, read-only field, beyond the space. */
	c.offset = 8;
	c.size = 4;
	c.flags = 0;
	memcpy(c.payload, "\x11\x22\x33\x44", 4);
	ck_assert_uint_eq(fe_ack(&f, VHOST_USER_SET_CONFIG, &c, 12 + 4, NULL,
				 0), 0);
	ck_assert_mem_eq(g_tdev->cfg + 8, "\x11\x22\x33\x44", 4);
	{
		/* config_changed -> CONFIG_CHANGE_MSG on the channel */
		struct vhost_user_hdr h;
		struct pollfd p = { .fd = sp[0], .events = POLLIN };

		ck_assert_int_eq(poll(&p, 1, 5000), 1);
		ck_assert_int_eq(recv(sp[0], &h, sizeof(h), 0), sizeof(h));
		ck_assert_uint_eq(h.request, VHOST_USER_SLAVE_CONFIG_CHANGE_MSG);
		ck_assert_uint_eq(h.flags, VHOST_USER_VERSION);
		ck_assert_uint_eq(h.size, 0);
	}
	c.offset = 0;
	ck_assert_uint_ne(fe_ack(&f, VHOST_USER_SET_CONFIG, &c, 12 + 4, NULL,
				 0), 0);
	c.offset = 14;
	ck_assert_uint_ne(fe_ack(&f, VHOST_USER_SET_CONFIG, &c, 12 + 4, NULL,
				 0), 0);
	c.offset = 8;
	c.flags = 7;
	ck_assert_uint_ne(fe_ack(&f, VHOST_USER_SET_CONFIG, &c, 12 + 4, NULL,
				 0), 0);
	ck_assert_int_eq(fe_disconnect(&f), 0);
	close(sp[0]);
	fe_fini(&f);
	free_server(s);
}
END_TEST

START_TEST(test_data_path_and_lifecycle)
{
	struct vu_server *s = new_server(&tdev_ops);
	struct vhost_user_vring_state st;
	struct fe f;

	fe_init(&f, s);
	fe_device_up(&f, 2);
	ck_assert_uint_eq(vu_server_mapped(s), 1);
	ck_assert_int_eq(g_tdev->activated, 1);
	for (int i = 0; i < 20; i++) {
		echo_once(&f, 0, (uint8_t)i);
		echo_once(&f, 1, (uint8_t)(i * 3));
	}

	/* Disable ring 1: kicks wait until it is enabled again. */
	ck_assert_uint_eq(fe_ack_state(&f, VHOST_USER_SET_VRING_ENABLE, 1, 0),
			  0);
	drv_desc(&f, 1, 0, GPA_BASE + BUF_OFF + 0x8000, 10, VIRTQ_DESC_F_NEXT,
		 1);
	drv_desc(&f, 1, 1, GPA_BASE + BUF_OFF + 0x9000, 10, VIRTQ_DESC_F_WRITE,
		 0);
	drv_publish(&f, 1, 0);
	kick(f.kick[1]);
	ck_assert(!wait_fd(f.call[1], 300));
	ck_assert_uint_eq(used_idx(&f, 1), 20);
	ck_assert_uint_eq(fe_ack_state(&f, VHOST_USER_SET_VRING_ENABLE, 1, 1),
			  0);
	ck_assert(wait_fd(f.call[1], 5000));
	ck_assert_uint_eq(used_idx(&f, 1), 21);

	/* GET_VRING_BASE stops a ring and gives the next avail index; the
	 * device is reset only when the last ring stops. */
	st = (struct vhost_user_vring_state){ 0, 0 };
	fe_send(&f, VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, &st,
		sizeof(st), NULL, 0);
	ck_assert_int_eq(fe_reply(&f, VHOST_USER_GET_VRING_BASE, &st,
				  sizeof(st)), 8);
	ck_assert_uint_eq(st.index, 0);
	ck_assert_uint_eq(st.num, 20);
	ck_assert_int_eq(g_tdev->resets, 0);
	/* A kick on a stopped ring does nothing. */
	drv_publish(&f, 0, 0);
	kick(f.kick[0]);
	ck_assert(!wait_fd(f.call[0], 200));
	st = (struct vhost_user_vring_state){ 1, 0 };
	fe_send(&f, VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, &st,
		sizeof(st), NULL, 0);
	ck_assert_int_eq(fe_reply(&f, VHOST_USER_GET_VRING_BASE, &st,
				  sizeof(st)), 8);
	ck_assert_uint_eq(st.num, 21);
	ck_assert_int_eq(g_tdev->resets, 1);
	ck_assert(!g_tdev->active);

	/* Restart where it stopped (a paused VM resumed): ring 0 has the
	 * chain published while it was stopped. */
	ck_assert_uint_eq(fe_ack_u64(&f, VHOST_USER_SET_FEATURES,
				     F_VERSION_1 | F_EVENT_IDX | F_PROTO |
					     TDEV_F_ECHO, NULL, 0), 0);
	close(f.kick[0]);
	f.kick[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	fe_ring_up(&f, 0, 20, true);
	ck_assert_int_eq(g_tdev->activated, 2);
	ck_assert(wait_fd(f.call[0], 5000));
	ck_assert_uint_eq(used_idx(&f, 0), 21);
	echo_once(&f, 0, 99);

	/* The memory table changes under a running ring: it goes on. */
	{
		struct vhost_user_memory m = one_region(RAM_SIZE, 0);

		ck_assert_uint_eq(fe_mem_table(&f, &m, &f.ram_fd, 1), 0);
		echo_once(&f, 0, 7);
	}

	/* RESET_DEVICE: the device is reset, rings forgotten. */
	{
		uint64_t p = PF(MQ) | PF(REPLY_ACK) | PF(CONFIG) |
			     PF(RESET_DEVICE);
		int resets = g_tdev->resets;

		ck_assert_uint_eq(fe_ack_u64(&f,
					     VHOST_USER_SET_PROTOCOL_FEATURES,
					     p, NULL, 0), 0);
		ck_assert_uint_eq(fe_ack(&f, VHOST_USER_RESET_DEVICE, NULL, 0,
					 NULL, 0), 0);
		ck_assert_int_eq(g_tdev->resets, resets + 1);
		/* rings need their configuration again */
		ck_assert_uint_ne(fe_ack_u64(&f, VHOST_USER_SET_VRING_KICK, 0,
					     &f.kick[0], 1), 0);
	}

	/* Disconnect: device reset, memory unmapped; a new front-end gets a
	 * fresh device. */
	ck_assert_int_eq(fe_disconnect(&f), 0);
	ck_assert_uint_eq(vu_server_mapped(s), 0);
	ck_assert(!g_tdev->active);
	fe_fini(&f);

	fe_init(&f, s);
	fe_device_up(&f, 1);
	echo_once(&f, 0, 42);
	ck_assert_int_eq(fe_disconnect(&f), 0);
	fe_fini(&f);
	free_server(s);
}
END_TEST

START_TEST(test_rng_plugin)
{
	struct vu_server *s = new_rng_server();
	struct vhost_user_memory m = one_region(RAM_SIZE, 0);
	struct fe f;
	uint32_t id, len;
	uint64_t feat;
	bool nonzero = false;

	fe_init(&f, s);
	ck_assert_uint_eq(vu_server_host(s)->info.device_id, 4);
	/* No config space: CONFIG is not offered (QEMU warns otherwise). */
	ck_assert_uint_eq(fe_get_u64(&f, VHOST_USER_GET_PROTOCOL_FEATURES) &
				  PF(CONFIG), 0);
	fe_handshake(&f, PF(MQ) | PF(REPLY_ACK));
	feat = fe_get_u64(&f, VHOST_USER_GET_FEATURES);
	ck_assert_uint_eq(fe_ack_u64(&f, VHOST_USER_SET_FEATURES, feat, NULL,
				     0), 0);
	ck_assert_uint_eq(fe_mem_table(&f, &m, &f.ram_fd, 1), 0);
	/* Ring size 1024 although the plugin says 256: QEMU's virtio-mmio
	 * always offers 1024 to the guest. */
	ck_assert_uint_eq(fe_ack_state(&f, VHOST_USER_SET_VRING_NUM, 0, 1024),
			  0);
	ck_assert_uint_ne(fe_ack_state(&f, VHOST_USER_SET_VRING_NUM, 0, 2048),
			  0);
	fe_ring_up(&f, 0, 0, true);
	memset(f.ram + BUF_OFF, 0, 64);
	drv_desc(&f, 0, 3, GPA_BASE + BUF_OFF, 64, VIRTQ_DESC_F_WRITE, 0);
	drv_publish(&f, 0, 3);
	kick(f.kick[0]);
	ck_assert(wait_fd(f.call[0], 5000));
	ck_assert_uint_eq(used_idx(&f, 0), 1);
	used_elem(&f, 0, 0, &id, &len);
	ck_assert_uint_eq(id, 3);
	ck_assert_uint_eq(len, 64);
	for (int i = 0; i < 64; i++)
		nonzero |= f.ram[BUF_OFF + i] != 0;
	ck_assert(nonzero);
	ck_assert_int_eq(fe_disconnect(&f), 0);
	fe_fini(&f);
	free_server(s);
}
END_TEST

/* A broken ring (head out of range) signals the err eventfd. */
START_TEST(test_broken_ring_signals_err)
{
	struct vu_server *s = new_server(&tdev_ops);
	struct fe f;

	fe_init(&f, s);
	fe_device_up(&f, 1);
	drv_publish(&f, 0, 99); /* head >= size */
	kick(f.kick[0]);
	ck_assert(wait_fd(f.err[0], 5000));
	ck_assert_int_eq(fe_disconnect(&f), 0);
	fe_fini(&f);
	free_server(s);
}
END_TEST

/*
 * A device that keeps the chains it pops (as virtio-vsock keeps rx buffers
 * until the host has data): plugin.h lets it write into them at any time
 * until reset().
 */
static pthread_mutex_t g_hold_lock = PTHREAD_MUTEX_INITIALIZER;
static struct smvmm_chain *g_held[QSIZE]; /* g_hold_lock */
static unsigned int g_nheld;

static void hold_queue_notify(void *dev, uint16_t q)
{
	struct tdev *t = dev;
	struct smvmm_chain *c;

	pthread_mutex_lock(&g_hold_lock);
	while (g_nheld < QSIZE && t->svc->vq_pop(t->h, q, &c) == 1)
		g_held[g_nheld++] = c;
	pthread_mutex_unlock(&g_hold_lock);
}

static void hold_reset(void *dev)
{
	struct tdev *t = dev;

	/* Drop every chain (plugin.h); the core frees them in vq_push. */
	pthread_mutex_lock(&g_hold_lock);
	for (unsigned int i = 0; i < g_nheld; i++)
		t->svc->vq_push(t->h, g_held[i], 0);
	g_nheld = 0;
	pthread_mutex_unlock(&g_hold_lock);
	t_reset(dev);
}

static unsigned int held_count(void)
{
	unsigned int n;

	pthread_mutex_lock(&g_hold_lock);
	n = g_nheld;
	pthread_mutex_unlock(&g_hold_lock);
	return n;
}

static const struct smvmm_device_ops hold_ops = {
	.struct_size = sizeof(struct smvmm_device_ops),
	.create = t_create,
	.destroy = t_destroy,
	.get_features = t_get_features,
	.set_features = t_set_features,
	.config_read = t_config_read,
	.config_write = t_config_write,
	.activate = t_activate,
	.queue_notify = hold_queue_notify,
	.reset = hold_reset,
};

/*
 * SET_MEM_TABLE while the device holds chains of the old table: the old
 * mapping must stay valid until the device is reset, since the plugin may
 * still fill those buffers (a hostile front-end must not be able to make the
 * back-end write into unmapped memory).
 */
START_TEST(test_mem_table_change_keeps_held_buffers_mapped)
{
	struct vu_server *s = new_server(&hold_ops);
	struct vhost_user_memory m = one_region(RAM_SIZE, 0);
	uint32_t in = BUF_OFF + 0x1000u;
	struct fe f;

	g_nheld = 0;
	fe_init(&f, s);
	fe_device_up(&f, 1);
	drv_desc(&f, 0, 0, GPA_BASE + in, 64, VIRTQ_DESC_F_WRITE, 0);
	drv_publish(&f, 0, 0);
	kick(f.kick[0]);
	for (int i = 0; i < 500 && !held_count(); i++)
		usleep(10000);
	ck_assert_uint_eq(held_count(), 1);

	/* A new table (same memory, new mapping): the drain gives up on the
	 * held chain after its quiet period. */
	ck_assert_uint_eq(fe_mem_table(&f, &m, &f.ram_fd, 1), 0);

	/* The device completes the held buffer now, as vsock would when
	 * data arrives: with the old mapping gone this faults. */
	pthread_mutex_lock(&g_hold_lock);
	ck_assert_uint_eq(g_held[0]->n_in, 1);
	memset(g_held[0]->iov[0].iov_base, 0x77, g_held[0]->iov[0].iov_len);
	pthread_mutex_unlock(&g_hold_lock);
	ck_assert_uint_eq(f.ram[in], 0x77);

	ck_assert_int_eq(fe_disconnect(&f), 0);
	ck_assert_uint_eq(held_count(), 0);
	ck_assert_uint_eq(vu_server_mapped(s), 0);
	fe_fini(&f);
	free_server(s);
}
END_TEST

/*
 * SET_VRING_KICK with an fd epoll cannot watch (a memfd: EPERM) on a running
 * ring whose chain the device holds: the kick is refused and changes
 * nothing.  Before the fix the error path reset the ring without draining it
 * or counting the held chain, so the next SET_MEM_TABLE unmapped the memory
 * the device still writes into (SIGSEGV here, or a write into whatever was
 * mapped there next).
 */
START_TEST(test_bad_kick_fd_keeps_held_buffers_mapped)
{
	struct vu_server *s = new_server(&hold_ops);
	struct vhost_user_memory m = one_region(RAM_SIZE, 0);
	uint32_t in = BUF_OFF + 0x1000u;
	struct fe f;
	int mfd;

	g_nheld = 0;
	fe_init(&f, s);
	fe_device_up(&f, 1);
	drv_desc(&f, 0, 0, GPA_BASE + in, 64, VIRTQ_DESC_F_WRITE, 0);
	drv_publish(&f, 0, 0);
	kick(f.kick[0]);
	for (int i = 0; i < 500 && !held_count(); i++)
		usleep(10000);
	ck_assert_uint_eq(held_count(), 1);

	/* A kick fd epoll refuses: an error reply, nothing else changes. */
	mfd = memfd_create("not-an-eventfd", MFD_CLOEXEC);
	ck_assert_int_ge(mfd, 0);
	ck_assert_uint_ne(fe_ack_u64(&f, VHOST_USER_SET_VRING_KICK, 0, &mfd,
				     1), 0);
	close(mfd);

	/* The ring still runs on its old kick fd. */
	drv_desc(&f, 0, 1, GPA_BASE + in + 0x100, 64, VIRTQ_DESC_F_WRITE, 0);
	drv_publish(&f, 0, 1);
	kick(f.kick[0]);
	for (int i = 0; i < 500 && held_count() < 2; i++)
		usleep(10000);
	ck_assert_uint_eq(held_count(), 2);

	/* A new table: the old mapping must stay while the chains are held. */
	ck_assert_uint_eq(fe_mem_table(&f, &m, &f.ram_fd, 1), 0);
	pthread_mutex_lock(&g_hold_lock);
	for (unsigned int i = 0; i < 2; i++) {
		ck_assert_uint_eq(g_held[i]->n_in, 1);
		memset(g_held[i]->iov[0].iov_base, 0x55 + i,
		       g_held[i]->iov[0].iov_len);
	}
	pthread_mutex_unlock(&g_hold_lock);
	ck_assert_uint_eq(f.ram[in], 0x55);
	ck_assert_uint_eq(f.ram[in + 0x100], 0x56);

	/* The same refusal on a ring that is not started yet. */
	mfd = memfd_create("not-an-eventfd", MFD_CLOEXEC);
	ck_assert_int_ge(mfd, 0);
	ck_assert_uint_ne(fe_ack_u64(&f, VHOST_USER_SET_VRING_KICK, 1, &mfd,
				     1), 0);
	close(mfd);
	ck_assert(fe_get_u64(&f, VHOST_USER_GET_FEATURES) & F_PROTO);

	ck_assert_int_eq(fe_disconnect(&f), 0);
	ck_assert_uint_eq(held_count(), 0);
	ck_assert_uint_eq(vu_server_mapped(s), 0);
	fe_fini(&f);
	free_server(s);
}
END_TEST

/*
 * The front-end shrinks its memory file after SET_MEM_TABLE (the check at
 * SET_MEM_TABLE passed): the back-end's next access past the new end of
 * file faults (SIGBUS).  The back-end must survive it, whichever thread
 * faults, close the session (-EPROTO) and serve the next front-end.
 */
/* tdev's echo memcpy()s into the buffer on the event-loop thread (a
 * plugin that read()s or getrandom()s into guest memory gets EFAULT from
 * the kernel instead of a signal). */
START_TEST(test_truncated_memfd_loop_thread)
{
	struct vu_server *s = new_server(&tdev_ops);
	struct fe f;

	for (int round = 0; round < 2; round++) {
		fe_init(&f, s);
		fe_device_up(&f, 1);
		echo_once(&f, 0, 1);
		/* Keep the rings and the out buffer, drop the in buffer. */
		ck_assert_int_eq(ftruncate(f.ram_fd, BUF_OFF + 0x1000u), 0);
		drv_desc(&f, 0, 0, GPA_BASE + BUF_OFF, 100, VIRTQ_DESC_F_NEXT,
			 1);
		drv_desc(&f, 0, 1, GPA_BASE + BUF_OFF + 0x1000u, 100,
			 VIRTQ_DESC_F_WRITE, 0);
		drv_publish(&f, 0, 0);
		kick(f.kick[0]);
		ck_assert_msg(fe_closed(&f), "the session did not end");
		ck_assert_int_eq(fe_disconnect(&f), -EPROTO);
		ck_assert_uint_eq(vu_server_mapped(s), 0);
		ck_assert(!g_tdev->active);
		fe_fini(&f);
	}

	/* Then a normal session works. */
	fe_init(&f, s);
	fe_device_up(&f, 1);
	echo_once(&f, 0, 2);
	ck_assert_int_eq(fe_disconnect(&f), 0);
	fe_fini(&f);
	free_server(s);
}
END_TEST

/* A plugin's own thread (here the test's) fills a held chain after the
 * file shrank to nothing: it survives, and the session ends. */
START_TEST(test_truncated_memfd_plugin_thread)
{
	struct vu_server *s = new_server(&hold_ops);
	uint32_t in = BUF_OFF + 0x1000u;
	struct fe f;

	g_nheld = 0;
	fe_init(&f, s);
	fe_device_up(&f, 1);
	drv_desc(&f, 0, 0, GPA_BASE + in, 8192, VIRTQ_DESC_F_WRITE, 0);
	drv_publish(&f, 0, 0);
	kick(f.kick[0]);
	for (int i = 0; i < 500 && !held_count(); i++)
		usleep(10000);
	ck_assert_uint_eq(held_count(), 1);

	/* From here on the test must not touch f.ram: it would fault. */
	ck_assert_int_eq(ftruncate(f.ram_fd, 0), 0);
	pthread_mutex_lock(&g_hold_lock);
	memset(g_held[0]->iov[0].iov_base, 0x66, g_held[0]->iov[0].iov_len);
	ck_assert_uint_eq(((uint8_t *)g_held[0]->iov[0].iov_base)[100], 0x66);
	pthread_mutex_unlock(&g_hold_lock);

	ck_assert_msg(fe_closed(&f), "the session did not end");
	ck_assert_int_eq(fe_disconnect(&f), -EPROTO);
	ck_assert_uint_eq(held_count(), 0);
	ck_assert_uint_eq(vu_server_mapped(s), 0);
	fe_fini(&f);

	/* The server goes on. */
	fe_init(&f, s);
	fe_device_up(&f, 1);
	ck_assert_int_eq(fe_disconnect(&f), 0);
	fe_fini(&f);
	free_server(s);
}
END_TEST

/* Send one message; expect the connection to close; the server lives. */
static void expect_close(struct vu_server *s, uint32_t req, uint32_t flags,
			 const void *p, uint32_t size, const int *fds,
			 unsigned int nfds, bool reply_ack)
{
	struct fe f;

	fe_init(&f, s);
	if (reply_ack)
		fe_handshake(&f, PF(REPLY_ACK) | PF(CONFIG));
	fe_send(&f, req, flags, p, size, fds, nfds);
	ck_assert_msg(fe_closed(&f), "request %u was not refused", req);
	ck_assert_int_eq(fe_disconnect(&f), -EPROTO);
	fe_fini(&f);
}

/* Send one message with need_reply: expect a non-zero ack, then the
 * connection still works. */
static void expect_nack(struct vu_server *s, uint32_t req, const void *p,
			uint32_t size, const int *fds, unsigned int nfds,
			bool mem)
{
	struct fe f;

	fe_init(&f, s);
	if (mem) {
		fe_device_up(&f, 0);
	} else {
		fe_handshake(&f, PF(REPLY_ACK) | PF(CONFIG));
	}
	ck_assert_uint_ne(fe_ack(&f, req, p, size, fds, nfds), 0);
	ck_assert(fe_get_u64(&f, VHOST_USER_GET_FEATURES) & F_PROTO);
	ck_assert_int_eq(fe_disconnect(&f), 0);
	fe_fini(&f);
}

/*
 * A kick fd that epoll accepts and reports readable but whose read() fails:
 * a listening socket with a connection waiting.  The level-triggered watch
 * fired again and again and kick_cb ran the ring every time: the I/O thread
 * spun at 100%.  The back-end must stop watching it (logged once) and keep
 * the session.
 */
static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

START_TEST(test_kick_fd_read_fails)
{
	struct vu_server *s = new_server(&tdev_ops);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct fe f;
	int lfd, cfd;
	double c0, used;

	fe_init(&f, s);
	fe_device_up(&f, 1);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(lfd, 0);
	/* abstract name: nothing in the file system */
	snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "smvmm-kick-%d",
		 getpid());
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(lfd, 4), 0);
	ck_assert_uint_eq(fe_ack_u64(&f, VHOST_USER_SET_VRING_KICK, 0, &lfd,
				     1), 0);
	cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(cfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	usleep(50000);
	c0 = cpu_s();
	usleep(400000);
	used = cpu_s() - c0;
	ck_assert_msg(used < 0.1, "%.3f s of CPU in 0.4 s with a kick fd "
		      "whose read() fails", used);
	/* The session still answers. */
	ck_assert(fe_get_u64(&f, VHOST_USER_GET_FEATURES) & F_PROTO);
	close(cfd);
	close(lfd);
	ck_assert_int_eq(fe_disconnect(&f), 0);
	fe_fini(&f);
	free_server(s);
}
END_TEST

START_TEST(test_malformed_header)
{
	struct vu_server *s = new_server(&tdev_ops);
	uint64_t v = 0;
	struct fe f;

	expect_close(s, VHOST_USER_GET_FEATURES, 0, NULL, 0, NULL, 0, false);
	expect_close(s, VHOST_USER_GET_FEATURES, 2, NULL, 0, NULL, 0, false);
	expect_close(s, VHOST_USER_GET_FEATURES,
		     VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, NULL, 0, NULL,
		     0, false);
	/* payload size mismatch for a request without REPLY_ACK */
	expect_close(s, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, &v, 4,
		     NULL, 0, false);
	expect_close(s, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, &v, 8,
		     NULL, 0, true);
	/* unknown and unsupported requests */
	expect_close(s, 999, VHOST_USER_VERSION, NULL, 0, NULL, 0, false);
	expect_close(s, VHOST_USER_SET_LOG_BASE, VHOST_USER_VERSION, &v, 8,
		     NULL, 0, false);
	expect_close(s, VHOST_USER_GET_STATUS, VHOST_USER_VERSION, NULL, 0,
		     NULL, 0, true);
	/* a stray fd on a request that has a reply */
	expect_close(s, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0,
		     (int[]){ 0 }, 1, false);

	/* a payload larger than any message: closed without reading it */
	{
		struct vhost_user_hdr h = { VHOST_USER_SET_FEATURES,
					    VHOST_USER_VERSION, 1u << 20 };

		fe_init(&f, s);
		fe_send_raw(&f, &h, sizeof(h), NULL, 0);
		ck_assert(fe_closed(&f));
		ck_assert_int_eq(fe_disconnect(&f), -EPROTO);
		fe_fini(&f);
	}
	/* more than 8 fds in one message */
	{
		int fds[12];

		for (int i = 0; i < 12; i++)
			fds[i] = 0;
		fe_init(&f, s);
		fe_send(&f, VHOST_USER_SET_OWNER, VHOST_USER_VERSION, NULL, 0,
			fds, 12);
		ck_assert(fe_closed(&f));
		fe_disconnect(&f);
		fe_fini(&f);
	}
	/* truncated: a header that promises more than ever comes */
	{
		struct vhost_user_hdr h = { VHOST_USER_SET_FEATURES,
					    VHOST_USER_VERSION, 8 };

		fe_init(&f, s);
		fe_send_raw(&f, &h, sizeof(h), NULL, 0);
		fe_send_raw(&f, "abc", 3, NULL, 0);
		ck_assert_int_eq(fe_disconnect(&f), -EPROTO);
		fe_fini(&f);
	}
	/* half a header */
	fe_init(&f, s);
	fe_send_raw(&f, "\x01\x00", 2, NULL, 0);
	ck_assert_int_eq(fe_disconnect(&f), -EPROTO);
	fe_fini(&f);

	/* with REPLY_ACK: an error ack and the session goes on */
	expect_nack(s, 999, NULL, 0, NULL, 0, false);
	expect_nack(s, VHOST_USER_SET_FEATURES, &v, 4, NULL, 0, false);
	expect_nack(s, VHOST_USER_SET_VRING_ENDIAN, &v, 8, NULL, 0, false);
	expect_nack(s, VHOST_USER_SET_OWNER, NULL, 0, (int[]){ 0 }, 1, false);

	/* and after all that, a complete session works */
	fe_init(&f, s);
	fe_device_up(&f, 2);
	echo_once(&f, 1, 5);
	ck_assert_int_eq(fe_disconnect(&f), 0);
	fe_fini(&f);
	free_server(s);
}
END_TEST

START_TEST(test_bad_rings)
{
	struct vu_server *s = new_server(&tdev_ops);
	struct vhost_user_vring_state st;
	struct vhost_user_vring_addr a;
	struct fe f;
	int efd = eventfd(0, EFD_CLOEXEC);

	/* ring index beyond the device's queues */
	st = (struct vhost_user_vring_state){ 2, 16 };
	expect_nack(s, VHOST_USER_SET_VRING_NUM, &st, sizeof(st), NULL, 0,
		    false);
	st = (struct vhost_user_vring_state){ 64, 0 };
	expect_nack(s, VHOST_USER_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0,
		    false);
	/* sizes: not a power of two, zero, too large; base > 16 bits;
	 * enable not 0/1 */
	st = (struct vhost_user_vring_state){ 0, 3 };
	expect_nack(s, VHOST_USER_SET_VRING_NUM, &st, sizeof(st), NULL, 0,
		    false);
	st.num = 0;
	expect_nack(s, VHOST_USER_SET_VRING_NUM, &st, sizeof(st), NULL, 0,
		    false);
	st.num = 65536;
	expect_nack(s, VHOST_USER_SET_VRING_NUM, &st, sizeof(st), NULL, 0,
		    false);
	expect_nack(s, VHOST_USER_SET_VRING_BASE, &st, sizeof(st), NULL, 0,
		    false);
	st.num = 2;
	expect_nack(s, VHOST_USER_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0,
		    false);
	/* kick/call/err: reserved bits, index out of range, fd count */
	expect_nack(s, VHOST_USER_SET_VRING_CALL, &(uint64_t){ 1ull << 9 }, 8,
		    &efd, 1, false);
	expect_nack(s, VHOST_USER_SET_VRING_CALL, &(uint64_t){ 5 }, 8, &efd, 1,
		    false);
	expect_nack(s, VHOST_USER_SET_VRING_CALL, &(uint64_t){ 0 }, 8, NULL, 0,
		    false);
	expect_nack(s, VHOST_USER_SET_VRING_ERR,
		    &(uint64_t){ VHOST_USER_VRING_NOFD_MASK }, 8, &efd, 1,
		    false);
	/* polling mode is not supported */
	expect_nack(s, VHOST_USER_SET_VRING_KICK,
		    &(uint64_t){ VHOST_USER_VRING_NOFD_MASK }, 8, NULL, 0,
		    false);
	/* a kick before the ring was configured */
	expect_nack(s, VHOST_USER_SET_VRING_KICK, &(uint64_t){ 0 }, 8, &efd, 1,
		    true);
	/* the dirty log flag */
	a = (struct vhost_user_vring_addr){ .index = 0, .flags = 1 };
	expect_nack(s, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0,
		    false);

	/* ring addresses outside the memory table, misaligned, or running
	 * off the end of the region: the kick (start) fails */
	{
		uint64_t bad[][3] = {
			{ 0x1000, ring_uva(0, AVAIL_OFF), ring_uva(0, USED_OFF) },
			{ ring_uva(0, DESC_OFF) + 8, ring_uva(0, AVAIL_OFF),
			  ring_uva(0, USED_OFF) },
			{ ring_uva(0, DESC_OFF), ring_uva(0, AVAIL_OFF),
			  UVA_BASE + RAM_SIZE - 8 },
			{ ring_uva(0, DESC_OFF), UVA_BASE + RAM_SIZE + 4,
			  ring_uva(0, USED_OFF) },
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			fe_init(&f, s);
			fe_device_up(&f, 0);
			a = (struct vhost_user_vring_addr){
				.index = 0, .desc = bad[i][0],
				.avail = bad[i][1], .used = bad[i][2],
			};
			ck_assert_uint_eq(fe_ack_state(&f,
						       VHOST_USER_SET_VRING_NUM,
						       0, QSIZE), 0);
			ck_assert_uint_eq(fe_ack(&f, VHOST_USER_SET_VRING_ADDR,
						 &a, sizeof(a), NULL, 0), 0);
			ck_assert_uint_ne(fe_ack_u64(&f,
						     VHOST_USER_SET_VRING_KICK,
						     0, &efd, 1), 0);
			ck_assert_int_eq(g_tdev->activated, 0);
			ck_assert_int_eq(fe_disconnect(&f), 0);
			fe_fini(&f);
		}
	}
	/* a ring cannot be reconfigured while it runs */
	fe_init(&f, s);
	fe_device_up(&f, 1);
	ck_assert_uint_ne(fe_ack_state(&f, VHOST_USER_SET_VRING_NUM, 0, 8), 0);
	ck_assert_uint_ne(fe_ack_state(&f, VHOST_USER_SET_VRING_BASE, 0, 8), 0);
	/* SET_FEATURES with other bits while running is refused, the same
	 * bits are fine */
	ck_assert_uint_ne(fe_ack_u64(&f, VHOST_USER_SET_FEATURES,
				     F_VERSION_1 | F_PROTO, NULL, 0), 0);
	ck_assert_uint_eq(fe_ack_u64(&f, VHOST_USER_SET_FEATURES,
				     F_VERSION_1 | F_EVENT_IDX | F_PROTO |
					     TDEV_F_ECHO, NULL, 0), 0);
	echo_once(&f, 0, 1);
	/* GET_VRING_BASE for a ring that does not exist: no reply is
	 * possible, the connection closes */
	st = (struct vhost_user_vring_state){ 9, 0 };
	fe_send(&f, VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, &st,
		sizeof(st), NULL, 0);
	ck_assert(fe_closed(&f));
	ck_assert_int_eq(fe_disconnect(&f), -EPROTO);
	fe_fini(&f);
	close(efd);
	free_server(s);
}
END_TEST

START_TEST(test_bad_mem_tables)
{
	struct vu_server *s = new_server(&tdev_ops);
	struct vhost_user_memory m;
	int small = memfd_create("small", MFD_CLOEXEC), p[2];
	struct fe f;

	ck_assert_int_ge(small, 0);
	ck_assert_int_eq(ftruncate(small, 4096), 0);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	/* "Guest RAM" for the tables below; one session at a time. */
	f.ram_fd = memfd_create("ram", MFD_CLOEXEC);
	ck_assert_int_ge(f.ram_fd, 0);
	ck_assert_int_eq(ftruncate(f.ram_fd, RAM_SIZE), 0);

	/* nregions > 8; size not matching nregions; fd count mismatch */
	m = one_region(RAM_SIZE, 0);
	m.nregions = 9;
	expect_nack(s, VHOST_USER_SET_MEM_TABLE, &m, 8 + 8 * 32, &f.ram_fd, 1,
		    false);
	m.nregions = 1;
	expect_nack(s, VHOST_USER_SET_MEM_TABLE, &m, 8 + 2 * 32, &f.ram_fd, 1,
		    false);
	expect_nack(s, VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, NULL, 0, false);
	/* the file is smaller than the region (would SIGBUS) */
	expect_nack(s, VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, &small, 1, false);
	m = one_region(4096, 4096);
	expect_nack(s, VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, &small, 1, false);
	/* not a memory file */
	m = one_region(4096, 0);
	expect_nack(s, VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, &p[0], 1, false);
	/* zero size, wrapping gpa, wrapping offset, unaligned gpa */
	m = one_region(0, 0);
	expect_nack(s, VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, &f.ram_fd, 1,
		    false);
	m = one_region(RAM_SIZE, 0);
	m.regions[0].gpa = ~0ull - 4095;
	expect_nack(s, VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, &f.ram_fd, 1,
		    false);
	m = one_region(RAM_SIZE, ~0ull - 10);
	expect_nack(s, VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, &f.ram_fd, 1,
		    false);
	m = one_region(RAM_SIZE / 2, 0);
	m.regions[0].gpa = GPA_BASE + 12;
	expect_nack(s, VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, &f.ram_fd, 1,
		    false);
	/* overlapping regions */
	m = one_region(RAM_SIZE / 2, 0);
	m.nregions = 2;
	m.regions[1] = m.regions[0];
	m.regions[1].gpa += 4096;
	m.regions[1].uva += RAM_SIZE;
	{
		int fds[2] = { f.ram_fd, f.ram_fd };

		expect_nack(s, VHOST_USER_SET_MEM_TABLE, &m, 8 + 64, fds, 2,
			    false);
		close(f.ram_fd);
		fe_init(&f, s);
		fds[0] = fds[1] = f.ram_fd;
		/* non-overlapping: fine, two regions mapped */
		m.regions[1].gpa = GPA_BASE + RAM_SIZE;
		m.regions[1].mmap_offset = RAM_SIZE / 2;
		fe_handshake(&f, PF(REPLY_ACK));
		ck_assert_uint_eq(fe_mem_table(&f, &m, fds, 2), 0);
		ck_assert_uint_eq(vu_server_mapped(s), 2);
		/* a bad table leaves the old one in place */
		m.regions[1].gpa = GPA_BASE;
		ck_assert_uint_ne(fe_mem_table(&f, &m, fds, 2), 0);
		ck_assert_uint_eq(vu_server_mapped(s), 2);
	}
	ck_assert_int_eq(fe_disconnect(&f), 0);
	ck_assert_uint_eq(vu_server_mapped(s), 0);
	fe_fini(&f);
	close(small);
	close(p[0]);
	close(p[1]);
	free_server(s);
}
END_TEST

/* Random messages: whatever comes, the server answers, errors or closes;
 * it never crashes and always serves the next connection. */
START_TEST(test_fuzz)
{
	struct vu_server *s = new_server(&tdev_ops);
	unsigned int seed = 12345;

	for (int it = 0; it < 300; it++) {
		uint8_t buf[sizeof(struct vhost_user_hdr) + 320];
		struct vhost_user_hdr *h = (struct vhost_user_hdr *)buf;
		uint32_t size = (uint32_t)(rand_r(&seed) % 300);
		int efd = eventfd(0, EFD_CLOEXEC);
		struct fe f;

		fe_init(&f, s);
		if (it & 1)
			fe_device_up(&f, it & 2 ? 1 : 0);
		for (uint32_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)rand_r(&seed);
		h->request = (uint32_t)(rand_r(&seed) % 42);
		h->flags = VHOST_USER_VERSION |
			   (rand_r(&seed) % 2 ? VHOST_USER_NEED_REPLY_MASK : 0);
		/* mostly the right size for the request */
		if (rand_r(&seed) % 4) {
			switch (h->request) {
			case VHOST_USER_SET_VRING_ADDR: size = 40; break;
			case VHOST_USER_SET_MEM_TABLE: size = 8 + 32; break;
			case VHOST_USER_GET_CONFIG:
			case VHOST_USER_SET_CONFIG: size = 12 + (buf[16] = 8);
				buf[13] = buf[14] = buf[15] = 0;
				buf[17] = buf[18] = buf[19] = 0;
				break;
			default: size = (uint32_t)(rand_r(&seed) % 3) * 8; break;
			}
		}
		h->size = size;
		fe_send_raw(&f, buf, sizeof(*h) + size, &efd,
			    rand_r(&seed) % 2);
		/* then a query: answered, or the connection is closed */
		fe_send(&f, VHOST_USER_GET_QUEUE_NUM, VHOST_USER_VERSION, NULL,
			0, NULL, 0);
		fe_disconnect(&f);
		fe_fini(&f);
		close(efd);
	}
	{
		struct fe f;

		fe_init(&f, s);
		fe_device_up(&f, 2);
		echo_once(&f, 0, 3);
		ck_assert_int_eq(fe_disconnect(&f), 0);
		fe_fini(&f);
	}
	free_server(s);
}
END_TEST

START_TEST(test_stop_fd)
{
	struct vu_server *s = new_server(&tdev_ops);
	struct fe f;

	fe_init(&f, s);
	fe_device_up(&f, 1);
	echo_once(&f, 0, 1);
	kick(f.stop_fd);
	pthread_join(f.thr, NULL);
	f.serving = false;
	ck_assert_int_eq(f.serve_rc, -EINTR);
	ck_assert_uint_eq(vu_server_mapped(s), 0);
	ck_assert(!g_tdev->active);
	fe_fini(&f);
	free_server(s);
}
END_TEST

/* The CLI: argument and device-file errors exit 1 with a message. */
START_TEST(test_cli_errors)
{
	char *argv_nocfg[] = { "vhost-user", "--socket", "/tmp/x", NULL };
	char *argv_both[] = { "vhost-user", "--socket", "/tmp/x", "--fd", "0",
			      "-c", "/nonexistent.ini", NULL };
	char *argv_missing[] = { "vhost-user", "--socket", "/tmp/x", "-c",
				 "/nonexistent.ini", NULL };

	ck_assert_int_eq(vhost_user_main(3, argv_nocfg), 1);
	ck_assert_int_eq(vhost_user_main(7, argv_both), 1);
	ck_assert_int_eq(vhost_user_main(5, argv_missing), 1);
}
END_TEST

static Suite *vhost_user_suite(void)
{
	Suite *s = suite_create("vhost-user");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_handshake_and_queries);
	tcase_add_test(tc, test_config_space);
	tcase_add_test(tc, test_data_path_and_lifecycle);
	tcase_add_test(tc, test_rng_plugin);
	tcase_add_test(tc, test_broken_ring_signals_err);
	tcase_add_test(tc, test_mem_table_change_keeps_held_buffers_mapped);
	tcase_add_test(tc, test_bad_kick_fd_keeps_held_buffers_mapped);
	tcase_add_test(tc, test_truncated_memfd_loop_thread);
	tcase_add_test(tc, test_truncated_memfd_plugin_thread);
	tcase_add_test(tc, test_kick_fd_read_fails);
	tcase_add_test(tc, test_malformed_header);
	tcase_add_test(tc, test_bad_rings);
	tcase_add_test(tc, test_bad_mem_tables);
	tcase_add_test(tc, test_fuzz);
	tcase_add_test(tc, test_stop_fd);
	tcase_add_test(tc, test_cli_errors);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(vhost_user_suite());
	int failed;

	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
