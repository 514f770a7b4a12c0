// SPDX-License-Identifier: MIT
/*
 * virtio-vsock driver for the probe (VIRTIO 1.2 §5.10), polling, through the
 * generic queue library (vq.h).  A minimal guest vsock transport: one
 * connection at a time, stream sockets, credit-based flow control
 * (§5.10.6.3).
 *
 * What it checks, per device:
 *   - feature negotiation (VERSION_1), rx/tx/event queues, DRIVER_OK;
 *   - config space guest_cid (le64) >= 3, == probe.vsock_cid when given;
 *   - probe.vsock_port=P: as a client, connects to the host (CID 2) port P
 *     (smvmm forwards it to "<uds_path>_P"; the e2e test runs a socat echo
 *     there), sends probe.vsock_bytes of a known pattern and checks that
 *     the same bytes come back; FNV-1a checksums are printed;
 *   - probe.vsock_listen=L: as a server, prints "# vsock: listening on port
 *     L", waits (up to 60 s) for a host-initiated connection (the host sends
 *     "CONNECT L" to uds_path), echoes every byte back until the host shuts
 *     its side, and prints the byte count and checksum (the e2e test checks
 *     both and compares the echo with what it sent);
 *   - every packet from the device: CIDs, type, op, len vs the used length,
 *     never more data than our credit allows.
 * Options: probe.vsock=N (expected number of devices), probe.vsock_cid,
 * probe.vsock_port, probe.vsock_listen, probe.vsock_bytes (1 .. 16 MiB,
 * default 65536).  The guest runs at ~1 µs per instruction on our software
 * KVM, so the default transfer is 64 KiB each way; the driver-model unit
 * test moves 16 MiB each way.
 */
#include "vq.h"

#define VS_Q_RX 0
#define VS_Q_TX 1
#define VS_Q_EVENT 2
#define VS_HDR 44
#define VS_PKT 4096u            /* payload per buffer */
#define VS_RX_BUFS 8
#define VS_TX_SLOTS 4
#define VS_QSIZE 16
#define VS_RING (16u * 1024)    /* echo-server buffer = our buf_alloc */

#define OP_REQUEST 1
#define OP_RESPONSE 2
#define OP_RST 3
#define OP_SHUTDOWN 4
#define OP_RW 5
#define OP_CREDIT_UPDATE 6
#define OP_CREDIT_REQUEST 7

struct vs_hdr {
	u64 src_cid, dst_cid;
	u32 src_port, dst_port, len;
	u16 type, op;
	u32 flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

static struct {
	int expect;             /* probe.vsock, -1 = not given */
	u64 cid;                /* 0 = not given */
	u32 port, listen;       /* 0 = not given */
	u32 bytes;
} vopt = { -1, 0, 0, 0, 65536 };

/* One device's driver state. */
struct vs {
	u64 base;
	u64 cid;
	struct gvq rx, tx, ev;
	u8 *rxbuf[VS_RX_BUFS];
	int rx_of_head[GVQ_MAX_SIZE];
	u8 *txbuf[VS_TX_SLOTS];
	bool tx_busy[VS_TX_SLOTS];
	int tx_of_head[GVQ_MAX_SIZE];
	u8 *evbuf;
	bool rx_kick;
	const char *err;        /* first protocol violation */
	/* the connection */
	u32 lport, pport;
	bool open, rst, listening, got_request;
	u32 peer_shut;
	u32 fwd_cnt, fwd_sent;  /* bytes consumed / last advertised */
	u32 peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	u32 buf_alloc;
	/* data */
	u64 rx_total;
	u32 rx_sum;
	u64 mismatch_at;        /* client: first byte that differed + 1 */
	bool verify;            /* client: compare against the pattern */
	u8 *ring;               /* server: bytes to echo */
	u32 ring_head, ring_len;
};

static u8 pattern(u64 i)
{
	return (u8)(i ^ (i >> 8) ^ (i >> 16) ^ 0x5a);
}

static u32 fnv(u32 h, const u8 *p, u32 n)
{
	for (u32 i = 0; i < n; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

static void vs_fail(struct vs *v, const char *why)
{
	if (!v->err)
		v->err = why;
}

static bool post_rx(struct vs *v, int i)
{
	struct gbuf b = { v->rxbuf[i], VS_HDR + VS_PKT, true };
	int head = gvq_add(&v->rx, &b, 1);

	if (head < 0)
		return false;
	v->rx_of_head[head] = i;
	v->rx_kick = true;
	return true;
}

static int tx_slot(struct vs *v)
{
	for (int i = 0; i < VS_TX_SLOTS; i++)
		if (!v->tx_busy[i])
			return i;
	return -1;
}

/* Queue a packet; false if no tx slot is free (poll and retry). */
static bool vs_send(struct vs *v, u16 op, u32 flags, u32 len,
		    const u8 *data)
{
	int s = tx_slot(v), head;
	struct vs_hdr h = {
		.src_cid = v->cid, .dst_cid = 2,
		.src_port = v->lport, .dst_port = v->pport,
		.len = len, .type = 1, .op = op, .flags = flags,
		.buf_alloc = v->buf_alloc, .fwd_cnt = v->fwd_cnt,
	};
	struct gbuf b[2];

	if (s < 0)
		return false;
	memcpy(v->txbuf[s], &h, VS_HDR);
	if (data && len)
		memcpy(v->txbuf[s] + VS_HDR, data, len);
	b[0] = (struct gbuf){ v->txbuf[s], VS_HDR + len, false };
	head = gvq_add(&v->tx, b, 1);
	if (head < 0)
		return false;
	v->tx_busy[s] = true;
	v->tx_of_head[head] = s;
	v->fwd_sent = v->fwd_cnt;
	if (op == OP_RW)
		v->tx_cnt += len;
	gvq_kick(v->base, &v->tx);
	return true;
}

/* Reap tx completions only (safe inside rx processing). */
static void tx_reap(struct vs *v)
{
	u32 id, len;

	while (gvq_poll(&v->tx, &id, &len)) {
		if (id >= GVQ_MAX_SIZE) {
			vs_fail(v, "tx used id not in flight");
			continue;
		}
		v->tx_busy[v->tx_of_head[id]] = false;
	}
}

/* vs_send, waiting for a free tx slot (bounded by the timeout). */
static bool vs_send_wait(struct vs *v, u16 op, u32 flags)
{
	u64 dl = deadline_ms(opts.timeout_ms);

	while (!vs_send(v, op, flags, 0, 0)) {
		if (expired(dl)) {
			vs_fail(v, "no tx slot came back");
			return false;
		}
		tx_reap(v);
	}
	return true;
}

static u32 tx_credit(struct vs *v)
{
	u32 in_flight = v->tx_cnt - v->peer_fwd_cnt;

	return in_flight >= v->peer_buf_alloc ? 0 : v->peer_buf_alloc - in_flight;
}

static void rx_packet(struct vs *v, const u8 *p, u32 used)
{
	struct vs_hdr h;

	if (used < VS_HDR) {
		vs_fail(v, "rx packet shorter than its header");
		return;
	}
	memcpy(&h, p, VS_HDR);
	if (h.src_cid != 2 || h.dst_cid != v->cid || h.type != 1 ||
	    h.len != used - VS_HDR || (h.op != OP_RW && h.len)) {
		vs_fail(v, "bad rx header (cid, type or len)");
		return;
	}
	if (h.op == OP_REQUEST && v->listening && !v->open &&
	    h.dst_port == v->lport) {
		v->pport = h.src_port;
		v->peer_buf_alloc = h.buf_alloc;
		v->peer_fwd_cnt = h.fwd_cnt;
		v->open = true;
		v->got_request = true;
		vs_send_wait(v, OP_RESPONSE, 0);
		return;
	}
	if (h.dst_port != v->lport || h.src_port != v->pport) {
		if (h.op != OP_RST) {
			/* Not ours: refuse, as a guest kernel would. */
			u32 lp = v->lport, pp = v->pport;

			v->lport = h.dst_port;
			v->pport = h.src_port;
			vs_send_wait(v, OP_RST, 0);
			v->lport = lp;
			v->pport = pp;
		}
		return;
	}
	v->peer_buf_alloc = h.buf_alloc;
	v->peer_fwd_cnt = h.fwd_cnt;
	switch (h.op) {
	case OP_RESPONSE:
		v->open = true;
		break;
	case OP_RST:
		v->rst = true;
		v->open = false;
		break;
	case OP_SHUTDOWN:
		v->peer_shut |= h.flags;
		break;
	case OP_RW:
		if (!v->open || (v->peer_shut & 2)) {
			vs_fail(v, "RW on a connection not open");
			break;
		}
		v->rx_sum = fnv(v->rx_sum, p + VS_HDR, h.len);
		if (v->verify) {
			for (u32 i = 0; i < h.len && !v->mismatch_at; i++)
				if (p[VS_HDR + i] != pattern(v->rx_total + i))
					v->mismatch_at = v->rx_total + i + 1;
			v->fwd_cnt += h.len;
		} else if (v->ring) {
			if (h.len > VS_RING - v->ring_len) {
				vs_fail(v, "device exceeded our credit");
				break;
			}
			for (u32 i = 0; i < h.len; i++)
				v->ring[(v->ring_head + v->ring_len + i) %
					VS_RING] = p[VS_HDR + i];
			v->ring_len += h.len;
		}
		v->rx_total += h.len;
		break;
	case OP_CREDIT_UPDATE:
		break;
	case OP_CREDIT_REQUEST:
		vs_send_wait(v, OP_CREDIT_UPDATE, 0);
		break;
	default:
		vs_fail(v, "unexpected op from the device");
		break;
	}
}

/* Take every used element; true if anything happened. */
static bool vs_poll(struct vs *v)
{
	bool any = false;
	u32 id, len;

	if (v->tx.used && *(volatile u16 *)(v->tx.used + 2) != v->tx.last_used)
		any = true;
	tx_reap(v);
	while (gvq_poll(&v->rx, &id, &len)) {
		int i;

		any = true;
		if (id >= GVQ_MAX_SIZE) {
			vs_fail(v, "rx used id not in flight");
			continue;
		}
		i = v->rx_of_head[id];
		if (len > VS_HDR + VS_PKT)
			vs_fail(v, "rx used length above the buffer");
		else
			rx_packet(v, v->rxbuf[i], len);
		post_rx(v, i);
	}
	while (gvq_poll(&v->ev, &id, &len)) {
		struct gbuf b = { v->evbuf, 4, true };

		any = true;
		kprintf("# vsock: event %u\n", get32(v->evbuf));
		gvq_add(&v->ev, &b, 1);
		gvq_kick(v->base, &v->ev);
	}
	if (v->rx_kick) {
		v->rx_kick = false;
		gvq_kick(v->base, &v->rx);
	}
	/* Tell the device about consumed bytes before it runs dry. */
	if (v->open && v->fwd_cnt - v->fwd_sent >= v->buf_alloc / 2)
		vs_send_wait(v, OP_CREDIT_UPDATE, 0);
	return any;
}

static bool vs_setup(struct vs *v, const char *tag)
{
	const char *why = "";
	u64 acc;

	if (!vdev_negotiate(v->base, GVQ_F_VERSION_1, NULL, &acc))
		return tap(false, "%s: features negotiated (VERSION_1)", tag);
	if (!gvq_setup(v->base, &v->rx, VS_Q_RX, VS_QSIZE, &why) ||
	    !gvq_setup(v->base, &v->tx, VS_Q_TX, VS_QSIZE, &why) ||
	    !gvq_setup(v->base, &v->ev, VS_Q_EVENT, 4, &why))
		return tap(false, "%s: rx, tx and event queues # %s", tag, why);
	for (int i = 0; i < VS_RX_BUFS; i++)
		if (!(v->rxbuf[i] = guest_alloc(VS_HDR + VS_PKT, 64)))
			return tap(false, "%s: buffers # arena exhausted", tag);
	for (int i = 0; i < VS_TX_SLOTS; i++)
		if (!(v->txbuf[i] = guest_alloc(VS_HDR + VS_PKT, 64)))
			return tap(false, "%s: buffers # arena exhausted", tag);
	v->evbuf = guest_alloc(8, 8);
	v->ring = NULL;
	if (!v->evbuf)
		return tap(false, "%s: buffers # arena exhausted", tag);
	if (!vdev_driver_ok(v->base))
		return tap(false, "%s: DRIVER_OK accepted", tag);
	for (int i = 0; i < VS_RX_BUFS; i++)
		post_rx(v, i);
	struct gbuf b = { v->evbuf, 4, true };
	gvq_add(&v->ev, &b, 1);
	gvq_kick(v->base, &v->ev);
	vs_poll(v);
	return tap(true, "%s: features 0x%llx, rx/tx/event queues of %u, DRIVER_OK",
		   tag, (unsigned long long)acc, v->rx.size);
}

static void conn_reset_state(struct vs *v)
{
	v->open = v->rst = v->listening = v->got_request = false;
	v->peer_shut = 0;
	v->fwd_cnt = v->fwd_sent = v->tx_cnt = 0;
	v->peer_buf_alloc = v->peer_fwd_cnt = 0;
	v->rx_total = 0;
	v->rx_sum = 2166136261u;
	v->mismatch_at = 0;
	v->ring_head = v->ring_len = 0;
}

/* Client: echo vopt.bytes through host port vopt.port. */
static void vs_client(struct vs *v, const char *tag)
{
	static u8 chunk[VS_PKT];
	u64 sent = 0, n = vopt.bytes;
	u32 tx_sum = 2166136261u;
	u64 dl, t0 = rdtsc();

	conn_reset_state(v);
	v->lport = 40000;
	v->pport = vopt.port;
	v->verify = true;
	v->buf_alloc = 64 * 1024;
	vs_send_wait(v, OP_REQUEST, 0);
	dl = deadline_ms(opts.timeout_ms);
	while (!v->open && !v->rst && !v->err && !expired(dl))
		vs_poll(v);
	if (!tap(v->open, "%s: connect to host port %u (CID 2)%s%s", tag,
		 vopt.port, v->open ? "" : " # ",
		 v->open ? "" : v->rst ? "RST: no host listener at <uds_path>_<port>?"
				       : v->err ? v->err : "timeout"))
		return;
	dl = deadline_ms(opts.timeout_ms);
	while ((sent < n || v->rx_total < n) && !v->rst && !v->err &&
	       !expired(dl)) {
		u32 c = tx_credit(v);

		if (sent < n && c && tx_slot(v) >= 0) {
			u32 len = n - sent < VS_PKT ? (u32)(n - sent) : VS_PKT;

			if (len > c)
				len = c;
			for (u32 i = 0; i < len; i++)
				chunk[i] = pattern(sent + i);
			tx_sum = fnv(tx_sum, chunk, len);
			vs_send(v, OP_RW, 0, len, chunk);
			sent += len;
			dl = deadline_ms(opts.timeout_ms);
		}
		if (vs_poll(v))
			dl = deadline_ms(opts.timeout_ms);
	}
	u64 ms = (rdtsc() - t0) / (tsc_khz ? tsc_khz : 1);
	tap(sent == n && v->rx_total == n && !v->mismatch_at && !v->err &&
		    tx_sum == v->rx_sum,
	    "%s: guest-initiated echo of %llu bytes each way, checksums match # sent %llu, received %llu, fnv tx 0x%08x rx 0x%08x, %llu ms%s%s%s",
	    tag, (unsigned long long)n, (unsigned long long)sent,
	    (unsigned long long)v->rx_total, tx_sum, v->rx_sum,
	    (unsigned long long)ms, v->mismatch_at ? ", data mismatch" : "",
	    v->err ? ", " : "", v->err ? v->err : "");
	/* Close: SHUTDOWN both ways; the device answers with RST. */
	vs_send_wait(v, OP_SHUTDOWN, 3);
	dl = deadline_ms(opts.timeout_ms);
	while (!v->rst && !expired(dl))
		vs_poll(v);
	tap(v->rst, "%s: close (SHUTDOWN) answered with RST", tag);
}

/* Server: accept a host-initiated connection on vopt.listen, echo. */
static void vs_server(struct vs *v, const char *tag)
{
	static u8 chunk[VS_PKT];
	u64 dl;

	conn_reset_state(v);
	v->lport = vopt.listen;
	v->pport = 0xffffffff;
	v->listening = true;
	v->verify = false;
	v->buf_alloc = VS_RING;
	v->ring = guest_alloc(VS_RING, 64);
	if (!tap(v->ring != NULL, "%s: echo buffer", tag))
		return;
	kprintf("# vsock: listening on port %u\n", vopt.listen);
	dl = deadline_ms(60000);
	while (!v->got_request && !v->err && !expired(dl))
		vs_poll(v);
	if (!tap(v->got_request, "%s: host-initiated connection to port %u accepted # from host port %u%s%s",
		 tag, vopt.listen, v->pport, v->err ? ", " : "",
		 v->err ? v->err : ""))
		return;
	dl = deadline_ms(opts.timeout_ms);
	/* Echo until the host shut its sending side and all is sent back. */
	while (!v->rst && !v->err && !expired(dl) &&
	       (!(v->peer_shut & 2) || v->ring_len)) {
		u32 c = tx_credit(v);

		if (v->ring_len && c && tx_slot(v) >= 0) {
			u32 len = v->ring_len < VS_PKT ? v->ring_len : VS_PKT;

			if (len > c)
				len = c;
			for (u32 i = 0; i < len; i++)
				chunk[i] = v->ring[(v->ring_head + i) % VS_RING];
			v->ring_head = (v->ring_head + len) % VS_RING;
			v->ring_len -= len;
			v->fwd_cnt += len;
			vs_send(v, OP_RW, 0, len, chunk);
			dl = deadline_ms(opts.timeout_ms);
		}
		if (vs_poll(v))
			dl = deadline_ms(opts.timeout_ms);
	}
	kprintf("# vsock: server received %llu bytes, fnv 0x%08x\n",
		(unsigned long long)v->rx_total, v->rx_sum);
	tap(!v->err && !v->rst && (v->peer_shut & 2) && !v->ring_len &&
		    v->rx_total == vopt.bytes,
	    "%s: host-initiated echo of %llu bytes # expected %u, fnv 0x%08x%s%s",
	    tag, (unsigned long long)v->rx_total, vopt.bytes, v->rx_sum,
	    v->err ? ", " : "", v->err ? v->err : "");
	vs_send_wait(v, OP_SHUTDOWN, 3);
	dl = deadline_ms(opts.timeout_ms);
	while (!v->rst && !expired(dl))
		vs_poll(v);
	tap(v->rst, "%s: server close answered with RST", tag);
}

void drive_vsock(struct vdev *d, int idx)
{
	static struct vs vsd;
	struct vs *v = &vsd;
	size_t mark = guest_alloc_mark();
	char tag[48];

	(void)d;
	memset(v, 0, sizeof(*v));
	v->base = acpi.dev[idx].base; /* the device virtio.c found */
	snprintf(tag, sizeof(tag), "virtio-vsock@0x%llx",
		 (unsigned long long)v->base);
	if (!vs_setup(v, tag))
		goto out;
	u8 cfg[8];
	vdev_config_read(v->base, 0, cfg, 8);
	v->cid = get64(cfg);
	if (!tap(v->cid >= 3 && v->cid < 0xffffffffull &&
		 (!vopt.cid || v->cid == vopt.cid),
		 "%s: guest_cid %llu%s", tag, (unsigned long long)v->cid,
		 vopt.cid ? " as configured" : ""))
		goto out;
	if (vopt.port)
		vs_client(v, tag);
	if (vopt.listen)
		vs_server(v, tag);
out:
	{
		bool r = vdev_reset(v->base);

		tap(r, "%s: reset after use", tag);
	}
	guest_alloc_release(mark);
}

bool vsock_option(const char *key, size_t klen, const char *val, size_t vlen)
{
	u64 v;
#define VKEY(k) (klen == sizeof(k) - 1 && !strncmp(key, k, klen))
	if (VKEY("vsock")) {
		if (!probe_parse_u64(val, vlen, MAX_VDEVS, &v))
			return false;
		vopt.expect = (int)v;
	} else if (VKEY("vsock_cid")) {
		if (!probe_parse_u64(val, vlen, 0xfffffffeull, &v) || v < 3)
			return false;
		vopt.cid = v;
	} else if (VKEY("vsock_port")) {
		if (!probe_parse_u64(val, vlen, 0xfffffffeull, &v) || !v)
			return false;
		vopt.port = (u32)v;
	} else if (VKEY("vsock_listen")) {
		if (!probe_parse_u64(val, vlen, 0xfffffffeull, &v) || !v)
			return false;
		vopt.listen = (u32)v;
	} else if (VKEY("vsock_bytes")) {
		if (!probe_parse_u64(val, vlen, 16u << 20, &v) || !v)
			return false;
		vopt.bytes = (u32)v;
	} else {
		return false;
	}
#undef VKEY
	return true;
}

void vsock_summary(int n)
{
	if (vopt.expect >= 0)
		tap(n == vopt.expect, "found %d virtio-vsock device(s), expected %d",
		    n, vopt.expect);
}
