/* SPDX-License-Identifier: MIT */
/*
 * A guest-side virtio-vsock stack on the driver model (tests/driver/devtest.h):
 * what a guest kernel's vsock transport does (VIRTIO 1.2 §5.10.6), small and
 * strict, so that unit tests (tests/unit/test_vsock.c) and the benchmark
 * (bench/vsock.c) can drive the real plugin:
 *
 *   - rx queue: VD_RX_BUFS buffers of VD_RX_BUF_LEN bytes posted, reposted
 *     after each packet; every packet is checked (CIDs, type, len vs the
 *     used length) and dispatched to a connection by its ports;
 *   - tx queue: VD_TX_SLOTS buffers of header + up to 64 KiB payload, as a
 *     two-descriptor chain (header, payload);
 *   - event queue: one buffer; TRANSPORT_RESET events are counted;
 *   - features: everything the device offers, EVENT_IDX included (§2.7.10),
 *     used as Linux does: kicks only when the device asked for one
 *     (avail_event, devtest_kick_if_needed), and interrupts only while the
 *     driver sleeps in vd_pump (used_event is set to the used index just
 *     before sleeping, and left behind while the driver is busy polling,
 *     like a NAPI-style driver with callbacks disabled);
 *   - credit (§5.10.6.3): the guest advertises buf_alloc per connection and
 *     its fwd_cnt (bytes the "application" consumed); a connection with
 *     consume == false holds received bytes (credit exhaustion tests) until
 *     vd_consume().  With consume == true the "application" reads what a
 *     vd_poll() batch delivered right after it (recv() calls of up to
 *     64 KiB).  CREDIT_UPDATE follows Linux's rule
 *     (virtio_transport_stream_do_dequeue): when fwd_cnt moved and either
 *     the peer's view of free space is below 64 KiB or the receive queue
 *     is empty.  vd_send_data() never exceeds the device's credit.
 *     A device that sends beyond the guest's credit is counted in
 *     vd->violations (tests assert 0).
 *
 * Synchronous devtest mode: vd_pump() runs the device's I/O (event loop);
 * threaded mode: it waits for an interrupt.  One thread drives a vdrv.
 */
#ifndef SMVMM_BENCH_VSOCK_DRIVER_H
#define SMVMM_BENCH_VSOCK_DRIVER_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devtest.h"

#define VD_Q_RX 0
#define VD_Q_TX 1
#define VD_Q_EVENT 2
#define VD_HDR 44
#define VD_MAX_PKT (64u * 1024)
/* 16 x 64 KiB = 1 MiB of rx buffers (a Linux guest posts 128 x 4 KiB):
 * plenty for a 256 KiB credit window, and the device fills them in ring
 * order, so a larger set only spreads the copies over more cold memory. */
#define VD_RX_BUFS 16
#define VD_RX_BUF_LEN (VD_HDR + VD_MAX_PKT)
#define VD_TX_SLOTS 64
#define VD_MAX_CONNS 1100
#define VD_MAX_LISTEN 8

#define VD_OP_REQUEST 1
#define VD_OP_RESPONSE 2
#define VD_OP_RST 3
#define VD_OP_SHUTDOWN 4
#define VD_OP_RW 5
#define VD_OP_CREDIT_UPDATE 6
#define VD_OP_CREDIT_REQUEST 7

struct vd_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

enum vd_state { VD_FREE, VD_CONNECTING, VD_OPEN, VD_CLOSED };

struct vd_conn {
	enum vd_state state;
	uint32_t lport, pport;      /* guest port, host (peer) port */
	bool got_rst;
	uint32_t peer_shut;         /* SHUTDOWN flags received */
	/* receive side (host -> guest) */
	uint32_t buf_alloc;         /* ours */
	uint32_t fwd_cnt;           /* consumed */
	uint32_t fwd_sent;          /* fwd_cnt last advertised */
	uint32_t held;              /* received, not consumed */
	bool consume;               /* consume on arrival */
	uint64_t rx_bytes;
	uint64_t rx_sum;            /* FNV-1a over the received stream */
	uint8_t *cap;               /* optional copy of received bytes */
	size_t cap_len, cap_size;
	/* send side (guest -> host) */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	uint32_t credit_requests_rx, credit_updates_rx;
	bool pending;               /* in vdrv.pend: consume after the batch */
};

struct vdrv {
	struct devtest *t;
	uint64_t cid;
	uint64_t rx_gpa[VD_RX_BUFS];
	int rx_of_head[1024];       /* head -> rx buffer index */
	uint64_t tx_gpa[VD_TX_SLOTS];
	bool tx_busy[VD_TX_SLOTS];
	int tx_of_head[1024];
	unsigned int tx_free;
	uint64_t ev_gpa;
	unsigned int events;        /* TRANSPORT_RESET events seen */
	struct vd_conn c[VD_MAX_CONNS];
	uint32_t listen[VD_MAX_LISTEN]; /* guest ports accepting REQUESTs */
	unsigned int nlisten;
	uint32_t next_port;
	unsigned int violations;    /* device broke the protocol */
	unsigned int rst_unknown;   /* RSTs for no connection */
	unsigned int rx_packets;
	unsigned int irq_timeouts;  /* vd_pump slept its whole timeout */
	char why[256];              /* first violation */
	bool threaded;
	bool rx_kick_pending;
	bool nosum;                 /* benchmarks: skip the checksum */
	struct vd_conn *pend[VD_MAX_CONNS]; /* received data to consume */
	unsigned int npend;
	uint8_t *sink;              /* benchmarks: received payload is copied
				       here (what recv() does), if set */
	size_t sink_len;
};

static inline uint64_t vd_fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}
#define VD_FNV_INIT 0xcbf29ce484222325ULL

static inline void vd_violation(struct vdrv *d, const char *what)
{
	if (!d->violations++)
		snprintf(d->why, sizeof(d->why), "%s", what);
}

static inline int vd_post_rx(struct vdrv *d, int i)
{
	int head = devtest_submit_buf(d->t, VD_Q_RX, d->rx_gpa[i],
				      VD_RX_BUF_LEN, true);

	if (head < 0)
		return head;
	d->rx_of_head[head] = i;
	d->rx_kick_pending = true;
	return 0;
}

static inline int vd_post_event(struct vdrv *d)
{
	int head = devtest_submit_buf(d->t, VD_Q_EVENT, d->ev_gpa, 8, true);

	if (head < 0)
		return head;
	devtest_kick_if_needed(d->t, VD_Q_EVENT);
	return 0;
}

/* Bring the device up and post buffers.  0 or -errno. */
static inline int vd_init(struct vdrv *d, struct devtest *t, uint64_t cid)
{
	int rc;

	memset(d, 0, sizeof(*d));
	d->t = t;
	d->cid = cid;
	d->next_port = 50000;
	rc = devtest_init_device(t, DEVTEST_FEATURES_ALL);
	if (rc)
		return rc;
	for (int i = 0; i < VD_RX_BUFS; i++) {
		d->rx_gpa[i] = devtest_alloc(t, VD_RX_BUF_LEN, 64);
		if (!d->rx_gpa[i])
			return -ENOMEM;
	}
	for (int i = 0; i < VD_TX_SLOTS; i++) {
		d->tx_gpa[i] = devtest_alloc(t, VD_HDR + VD_MAX_PKT, 64);
		if (!d->tx_gpa[i])
			return -ENOMEM;
	}
	d->tx_free = VD_TX_SLOTS;
	d->ev_gpa = devtest_alloc(t, 8, 8);
	if (!d->ev_gpa)
		return -ENOMEM;
	/* The queue has 256 entries: as many rx buffers as fit. */
	for (int i = 0; i < VD_RX_BUFS; i++) {
		rc = vd_post_rx(d, i);
		if (rc)
			return rc;
	}
	devtest_kick(t, VD_Q_RX);
	d->rx_kick_pending = false;
	rc = devtest_submit_buf(t, VD_Q_EVENT, d->ev_gpa, 8, true);
	if (rc < 0)
		return rc;
	devtest_kick(t, VD_Q_EVENT);
	return 0;
}

static inline struct vd_conn *vd_find(struct vdrv *d, uint32_t lport,
				      uint32_t pport)
{
	for (int i = 0; i < VD_MAX_CONNS; i++)
		if (d->c[i].state != VD_FREE && d->c[i].lport == lport &&
		    d->c[i].pport == pport)
			return &d->c[i];
	return NULL;
}

static inline struct vd_conn *vd_alloc(struct vdrv *d, uint32_t lport,
				       uint32_t pport)
{
	for (int i = 0; i < VD_MAX_CONNS; i++) {
		struct vd_conn *c = &d->c[i];

		if (c->state == VD_FREE) {
			uint8_t *cap = c->cap;
			size_t cap_size = c->cap_size;

			memset(c, 0, sizeof(*c));
			c->cap = cap;
			c->cap_size = cap_size;
			c->lport = lport;
			c->pport = pport;
			c->buf_alloc = 256 * 1024;
			c->consume = true;
			c->rx_sum = VD_FNV_INIT;
			return c;
		}
	}
	return NULL;
}

/* Forget a closed connection (frees its slot; keeps a capture buffer). */
static inline void vd_release(struct vd_conn *c)
{
	c->state = VD_FREE;
}

static inline int vd_poll(struct vdrv *d);

/*
 * Ask for an interrupt at the next used buffer of every queue (§2.7.10:
 * used_event = the used index now), then a full barrier: the device
 * publishes used->idx, barriers and reads used_event, so either it sees
 * ours or our next vd_poll() sees its buffer (Linux virtqueue_enable_cb).
 */
static inline void vd_arm_irq(struct vdrv *d)
{
	for (uint16_t q = VD_Q_RX; q <= VD_Q_EVENT; q++)
		devtest_set_used_event(d->t, q, devtest_used_idx(d->t, q));
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* Run the device a little: I/O (sync mode) or wait for an interrupt. */
static inline void vd_pump(struct vdrv *d, int ms)
{
	if (d->rx_kick_pending) {
		d->rx_kick_pending = false;
		devtest_kick_if_needed(d->t, VD_Q_RX);
	}
	if (!d->threaded) {
		devtest_run_io(d->t, ms);
	} else {
		uint64_t seen = devtest_irq_count(d->t);

		/* Sleep on the interrupt when nothing is pending.  The count
		 * is read before interrupts are enabled and the queues are
		 * looked at again, so a buffer used meanwhile either shows
		 * up in that vd_poll() or raises the count. */
		if (vd_poll(d) == 0) {
			vd_arm_irq(d);
			if (vd_poll(d) == 0 &&
			    devtest_wait_irq(d->t, seen,
					     ms > 0 ? ms * 1000 : 200000))
				d->irq_timeouts++;
		}
	}
	vd_poll(d);
}

/* Queue one packet on tx (header + payload), kick.  0 or -errno. */
static inline int vd_send(struct vdrv *d, struct vd_conn *c, uint16_t op,
			  uint32_t flags, const void *data, uint32_t len)
{
	struct vd_hdr h;
	int slot = -1, head, spins = 0;

	/* Wait for a slot first: pumping may consume data and send a newer
	 * fwd_cnt, which this header must not undercut (§5.10.6.3). */
	while (!d->tx_free) {
		vd_pump(d, 1);
		if (++spins > 20000)
			return -ETIMEDOUT;
	}
	h = (struct vd_hdr){
		.src_cid = d->cid, .dst_cid = 2,
		.src_port = c->lport, .dst_port = c->pport,
		.len = len, .type = 1, .op = op, .flags = flags,
		.buf_alloc = c->buf_alloc, .fwd_cnt = c->fwd_cnt,
	};
	for (int i = 0; i < VD_TX_SLOTS; i++)
		if (!d->tx_busy[i]) {
			slot = i;
			break;
		}
	memcpy(devtest_gpa(d->t, d->tx_gpa[slot], VD_HDR), &h, VD_HDR);
	if (len)
		memcpy(devtest_gpa(d->t, d->tx_gpa[slot] + VD_HDR, len), data,
		       len);
	devtest_chain_begin(d->t, VD_Q_TX, 0);
	devtest_chain_add(d->t, d->tx_gpa[slot], VD_HDR, false);
	if (len)
		devtest_chain_add(d->t, d->tx_gpa[slot] + VD_HDR, len, false);
	head = devtest_chain_submit(d->t);
	if (head < 0)
		return head;
	d->tx_busy[slot] = true;
	d->tx_free--;
	d->tx_of_head[head] = slot;
	c->fwd_sent = c->fwd_cnt;
	if (op == VD_OP_RW)
		c->tx_cnt += len;
	devtest_kick_if_needed(d->t, VD_Q_TX);
	return 0;
}

/* Send a raw header (hostile tests): any fields, optional payload. */
static inline int vd_send_raw(struct vdrv *d, const struct vd_hdr *h,
			      const void *data, uint32_t hdr_len,
			      uint32_t data_len)
{
	int slot = -1, head;

	while (!d->tx_free)
		vd_pump(d, 1);
	for (int i = 0; i < VD_TX_SLOTS; i++)
		if (!d->tx_busy[i]) {
			slot = i;
			break;
		}
	memcpy(devtest_gpa(d->t, d->tx_gpa[slot], VD_HDR), h, VD_HDR);
	if (data_len)
		memcpy(devtest_gpa(d->t, d->tx_gpa[slot] + VD_HDR, data_len),
		       data, data_len);
	devtest_chain_begin(d->t, VD_Q_TX, 0);
	devtest_chain_add(d->t, d->tx_gpa[slot], hdr_len, false);
	if (data_len)
		devtest_chain_add(d->t, d->tx_gpa[slot] + VD_HDR, data_len,
				  false);
	head = devtest_chain_submit(d->t);
	if (head < 0)
		return head;
	d->tx_busy[slot] = true;
	d->tx_free--;
	d->tx_of_head[head] = slot;
	devtest_kick_if_needed(d->t, VD_Q_TX);
	return 0;
}

static inline uint32_t vd_tx_credit(const struct vd_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	return in_flight >= c->peer_buf_alloc ? 0
					      : c->peer_buf_alloc - in_flight;
}

/*
 * The application consumed n held bytes; advertise when it matters, with
 * Linux's rule (virtio_transport_stream_do_dequeue): fwd_cnt moved since
 * the last header and the peer's view of our free space is below one
 * packet, or nothing is left to read.
 */
static inline void vd_consume(struct vdrv *d, struct vd_conn *c, uint32_t n)
{
	uint32_t delta;

	if (n > c->held)
		n = c->held;
	c->held -= n;
	c->fwd_cnt += n;
	delta = c->fwd_cnt - c->fwd_sent;
	if (delta && (c->buf_alloc - delta < VD_MAX_PKT || c->held == 0))
		vd_send(d, c, VD_OP_CREDIT_UPDATE, 0, NULL, 0);
}

static inline void vd_rx_packet(struct vdrv *d, const uint8_t *buf,
				uint32_t used)
{
	struct vd_hdr h;
	struct vd_conn *c;
	char why[160];

	d->rx_packets++;
	if (used < VD_HDR) {
		vd_violation(d, "rx packet shorter than a header");
		return;
	}
	memcpy(&h, buf, VD_HDR);
	if (h.src_cid != 2 || h.dst_cid != d->cid || h.type != 1 ||
	    h.len != used - VD_HDR || h.len > VD_MAX_PKT ||
	    (h.op != VD_OP_RW && h.len)) {
		snprintf(why, sizeof(why),
			 "bad rx header: cid %llu->%llu type %u op %u len %u "
			 "used %u", (unsigned long long)h.src_cid,
			 (unsigned long long)h.dst_cid, h.type, h.op, h.len,
			 used);
		vd_violation(d, why);
		return;
	}
	c = vd_find(d, h.dst_port, h.src_port);
	if (!c) {
		if (h.op == VD_OP_RST) {
			d->rst_unknown++;
			return;
		}
		if (h.op == VD_OP_REQUEST) {
			for (unsigned int i = 0; i < d->nlisten; i++) {
				if (d->listen[i] != h.dst_port)
					continue;
				c = vd_alloc(d, h.dst_port, h.src_port);
				if (!c)
					break;
				c->state = VD_OPEN;
				c->peer_buf_alloc = h.buf_alloc;
				c->peer_fwd_cnt = h.fwd_cnt;
				vd_send(d, c, VD_OP_RESPONSE, 0, NULL, 0);
				return;
			}
		}
		/* Refuse, as a guest kernel would (§5.10.6.5). */
		struct vd_conn tmp = { .lport = h.dst_port,
				       .pport = h.src_port };
		vd_send(d, &tmp, VD_OP_RST, 0, NULL, 0);
		return;
	}
	c->peer_buf_alloc = h.buf_alloc;
	c->peer_fwd_cnt = h.fwd_cnt;
	switch (h.op) {
	case VD_OP_RESPONSE:
		if (c->state == VD_CONNECTING)
			c->state = VD_OPEN;
		else
			vd_violation(d, "RESPONSE on an open connection");
		break;
	case VD_OP_RST:
		c->got_rst = true;
		c->state = VD_CLOSED;
		break;
	case VD_OP_SHUTDOWN:
		c->peer_shut |= h.flags;
		break;
	case VD_OP_RW:
		if (c->state != VD_OPEN) {
			vd_violation(d, "RW on a connection not open");
			break;
		}
		if (c->peer_shut & 2) {
			vd_violation(d, "RW after SHUTDOWN(SEND)");
			break;
		}
		/* §5.10.6.3: never more than our free space. */
		if ((uint64_t)c->held + h.len > c->buf_alloc) {
			snprintf(why, sizeof(why),
				 "device exceeded credit: held %u + %u > %u",
				 c->held, h.len, c->buf_alloc);
			vd_violation(d, why);
		}
		if (!d->nosum)
			c->rx_sum = vd_fnv(c->rx_sum, buf + VD_HDR, h.len);
		if (d->sink)
			memcpy(d->sink, buf + VD_HDR,
			       h.len < d->sink_len ? h.len : d->sink_len);
		if (c->cap && c->cap_len + h.len <= c->cap_size) {
			memcpy(c->cap + c->cap_len, buf + VD_HDR, h.len);
			c->cap_len += h.len;
		}
		c->rx_bytes += h.len;
		c->held += h.len;
		if (c->consume && !c->pending && d->npend < VD_MAX_CONNS) {
			c->pending = true;
			d->pend[d->npend++] = c;
		}
		break;
	case VD_OP_CREDIT_UPDATE:
		c->credit_updates_rx++;
		break;
	case VD_OP_CREDIT_REQUEST:
		c->credit_requests_rx++;
		vd_send(d, c, VD_OP_CREDIT_UPDATE, 0, NULL, 0);
		break;
	default:
		vd_violation(d, "unexpected op from the device");
		break;
	}
}

/* Take every used element.  Returns the number taken or -errno. */
static inline int vd_poll(struct vdrv *d)
{
	uint16_t id;
	uint32_t len;
	int rc, n = 0;

	while ((rc = devtest_poll_used(d->t, VD_Q_TX, &id, &len)) == 1) {
		int slot = d->tx_of_head[id];

		d->tx_busy[slot] = false;
		d->tx_free++;
		n++;
	}
	if (rc < 0) {
		vd_violation(d, devtest_error(d->t));
		return rc;
	}
	while ((rc = devtest_poll_used(d->t, VD_Q_RX, &id, &len)) == 1) {
		int i = d->rx_of_head[id];

		vd_rx_packet(d, devtest_gpa(d->t, d->rx_gpa[i], VD_RX_BUF_LEN),
			     len);
		vd_post_rx(d, i);
		n++;
	}
	if (rc < 0) {
		vd_violation(d, devtest_error(d->t));
		return rc;
	}
	/* The application reads what this batch delivered (recv() calls of
	 * up to 64 KiB), which may send CREDIT_UPDATEs. */
	while (d->npend) {
		struct vd_conn *c = d->pend[--d->npend];

		c->pending = false;
		if (c->state != VD_OPEN) {
			/* Reset in the same batch: no updates any more. */
			c->fwd_cnt += c->held;
			c->held = 0;
		}
		while (c->held && c->consume)
			vd_consume(d, c, c->held < VD_MAX_PKT ? c->held
							      : VD_MAX_PKT);
	}
	while ((rc = devtest_poll_used(d->t, VD_Q_EVENT, &id, &len)) == 1) {
		uint32_t ev;

		memcpy(&ev, devtest_gpa(d->t, d->ev_gpa, 4), 4);
		if (len == 4 && ev == 0)
			d->events++;
		else
			vd_violation(d, "bad event");
		vd_post_event(d);
		n++;
	}
	if (d->rx_kick_pending) {
		d->rx_kick_pending = false;
		devtest_kick_if_needed(d->t, VD_Q_RX);
	}
	return rc < 0 ? rc : n;
}

/* Guest-initiated connect to host port `port`: the REQUEST is sent. */
static inline struct vd_conn *vd_connect(struct vdrv *d, uint32_t port)
{
	struct vd_conn *c = vd_alloc(d, d->next_port++, port);

	if (!c)
		return NULL;
	c->state = VD_CONNECTING;
	if (vd_send(d, c, VD_OP_REQUEST, 0, NULL, 0)) {
		vd_release(c);
		return NULL;
	}
	return c;
}

/* Pump until cond or timeout; true if cond became true. */
#define VD_WAIT(d, cond, ms)                                              \
	({                                                                \
		struct timespec ts0_, ts1_;                               \
		bool ok_ = false;                                         \
		clock_gettime(CLOCK_MONOTONIC, &ts0_);                    \
		for (;;) {                                                \
			vd_poll(d);                                       \
			if (cond) {                                       \
				ok_ = true;                               \
				break;                                    \
			}                                                 \
			clock_gettime(CLOCK_MONOTONIC, &ts1_);            \
			if ((ts1_.tv_sec - ts0_.tv_sec) * 1000 +          \
				    (ts1_.tv_nsec - ts0_.tv_nsec) / 1000000 > \
			    (ms))                                         \
				break;                                    \
			vd_pump(d, 1);                                    \
		}                                                         \
		ok_;                                                      \
	})

/*
 * Send up to len bytes of data within the device's credit (packets of at
 * most 64 KiB).  Returns the bytes queued (0 when out of credit).
 */
static inline uint32_t vd_send_data(struct vdrv *d, struct vd_conn *c,
				    const uint8_t *p, uint32_t len)
{
	uint32_t done = 0;

	while (done < len) {
		uint32_t n = vd_tx_credit(c);

		if (!n)
			break;
		if (n > len - done)
			n = len - done;
		if (n > VD_MAX_PKT)
			n = VD_MAX_PKT;
		if (vd_send(d, c, VD_OP_RW, 0, p + done, n))
			break;
		done += n;
	}
	return done;
}

#endif
