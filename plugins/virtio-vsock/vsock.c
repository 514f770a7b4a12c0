/* SPDX-License-Identifier: MIT */
/*
 * virtio-vsock (VIRTIO 1.2 §5.10) with Firecracker's "hybrid vsock" host side:
 * the guest's AF_VSOCK stream sockets reach host programs through AF_UNIX
 * sockets, with the protocol of Firecracker's docs/vsock.md, so its host
 * clients work unchanged.  See docs/virtio-vsock.md.
 *
 * INI keys ([device.<id>] type = virtio-vsock), both required:
 *   guest_cid = <n>    the guest's context id, 3 .. 0xfffffffe (u32;
 *                      config space holds it as le64, §5.10.4)
 *   uds_path  = <path> the host listening socket (created here; a stale
 *                      socket file is replaced; a socket somebody listens
 *                      on and any other file are refused; relative to the
 *                      INI file; with check_only nothing is created or
 *                      removed)
 *
 * Host-initiated: a host program connects to uds_path and sends
 * "CONNECT <port>\n"; we send OP_REQUEST from a fresh local port (>= 2^30)
 * to the guest's <port> and answer "OK <local port>\n" when the guest sends
 * OP_RESPONSE; OP_RST closes the host socket.  Guest-initiated: OP_REQUEST to
 * CID 2 port P connects to "<uds_path>_<P>"; no listener -> OP_RST.
 *
 * Queues (§5.10.2): 0 rx (device -> driver packets), 1 tx (driver -> device),
 * 2 event (TRANSPORT_RESET, sent after a snapshot restore).
 *
 * Flow control (§5.10.6.3):
 *   - guest -> host: we advertise buf_alloc = VSOCK_CONN_BUF per connection
 *     and fwd_cnt = guest bytes handed to the host socket.  Data the host
 *     socket does not take at once goes into a per-connection ring of that
 *     size.  A guest that sends beyond its credit overflows it: the
 *     connection is reset (the only alternative would be unbounded memory).
 *     CREDIT_UPDATE is sent when the guest's last view of our free space is
 *     below half the buffer and fwd_cnt moved on, and on CREDIT_REQUEST.
 *   - host -> guest: we read from a host socket only while the guest has
 *     credit (peer buf_alloc - (sent - peer fwd_cnt)) and rx buffers; bytes
 *     go straight from the socket into the guest's rx buffers (no host-side
 *     buffer at all).  Without credit the socket is not read (the host
 *     writer blocks on its own socket buffer) and a CREDIT_REQUEST is sent.
 *   So neither side can make the other buffer without limit, and a host peer
 *   that stops reading only stops its own connection.
 *
 * Fairness: a connection reads at most VSOCK_RX_BUDGET bytes per event-loop
 * callback (level-triggered epoll gives the others their turn); the tx queue
 * is served VSOCK_TX_BUDGET packets at a time, then the rest is continued
 * from the event loop through an eventfd.
 *
 * Threads: every op and fd callback runs under the core's per-device lock
 * (plugin.h); reset() runs on a vCPU thread, so it only detaches the
 * connections and lets the I/O thread close them (kick_fd), because
 * watch_fd/unwatch_fd belong to the main and I/O threads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <smvmm/plugin.h>

#define VIRTIO_ID_VSOCK 19
#define VSOCK_QUEUE_SIZE_MAX 256
#define VSOCK_Q_RX 0
#define VSOCK_Q_TX 1
#define VSOCK_Q_EVENT 2
#define VSOCK_NUM_QUEUES 3

#define VSOCK_F_STREAM (1ULL << 0) /* §5.10.3 */
#define VSOCK_F_INDIRECT_DESC (1ULL << 28)
#define VSOCK_F_EVENT_IDX (1ULL << 29)
#define VSOCK_F_VERSION_1 (1ULL << 32)
#define VSOCK_FEATURES (VSOCK_F_VERSION_1 | VSOCK_F_EVENT_IDX | \
			VSOCK_F_INDIRECT_DESC | VSOCK_F_STREAM)

/* §5.10.6 packet header, little-endian, packed: 44 bytes. */
struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
} __attribute__((packed));
#define VSOCK_HDR_LEN 44
_Static_assert(sizeof(struct vsock_hdr) == VSOCK_HDR_LEN, "header size");

#define VSOCK_TYPE_STREAM 1
enum {
	VSOCK_OP_INVALID = 0,
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};
#define VSOCK_SHUTDOWN_RCV 1u
#define VSOCK_SHUTDOWN_SEND 2u
#define VSOCK_EVENT_TRANSPORT_RESET 0u /* §5.10.6.7 */

#define VSOCK_HOST_CID 2ULL
#define VSOCK_CID_ANY 0xffffffffULL

/* Limits (Firecracker's values where it has one). */
#define VSOCK_MAX_CONNS 1023u            /* connections, all states */
#define VSOCK_CONN_BUF (256u * 1024)     /* our buf_alloc per connection */
#define VSOCK_MAX_PKT (64u * 1024)       /* payload per packet, both ways */
#define VSOCK_RX_BUDGET (256u * 1024)    /* bytes per connection callback */
#define VSOCK_SOCK_SNDBUF (256 * 1024)   /* SO_SNDBUF of host sockets */
#define VSOCK_RX_BATCH 4                 /* rx buffers filled by one readv */
#define VSOCK_TX_BUDGET 256u             /* tx packets per run */
#define VSOCK_ORPHAN_RST_MAX 128u        /* RSTs for unknown connections */
#define VSOCK_CONNECT_LINE_MAX 32u       /* "CONNECT 4294967295\n" + slack */
#define VSOCK_CONNECT_TIMEOUT_MS 5000u   /* CONNECT line, and guest RESPONSE */
#define VSOCK_SHUTDOWN_TIMEOUT_MS 3000u  /* flush after the guest closed */
#define VSOCK_TICK_MS 100u
#define VSOCK_LOCAL_PORT_BASE (1u << 30) /* host-side ports of host-initiated
					    connections, as Firecracker */
#define VSOCK_LISTEN_BACKLOG 128
#define VSOCK_FD_HASH 2048u              /* connection hash buckets */
#define VSOCK_FD_RESERVE 64u             /* fds left to the rest of the VMM
					    when the connection cap is
					    clamped to RLIMIT_NOFILE */
#define VSOCK_ACCEPT_RETRY_MS 1000u      /* listener paused by EMFILE: retry
					    this often (and whenever one of
					    our connections closes) */

/* Pending control packets of a connection (sent when rx buffers exist). */
#define CTL_REQUEST (1u << 0)
#define CTL_RESPONSE (1u << 1)
#define CTL_SHUTDOWN (1u << 2)
#define CTL_CREDIT_UPDATE (1u << 3)
#define CTL_CREDIT_REQUEST (1u << 4)
#define CTL_RST (1u << 5)

enum conn_state {
	CONN_CONNECT_WAIT,  /* host-initiated: reading "CONNECT <port>\n" */
	CONN_REQUEST_SENT,  /* host-initiated: waiting for OP_RESPONSE */
	CONN_ESTABLISHED,
	CONN_DEAD,          /* host socket closed; an RST is pending */
};

struct conn {
	struct conn *hnext;          /* hash chain */
	struct conn *ctl_next;       /* pending-control FIFO */
	struct conn *wait_next;      /* waiting for rx buffers */
	struct conn *all_prev, *all_next;
	enum conn_state state;
	int fd;                      /* host socket, -1 when closed */
	uint32_t host_port;          /* the host side's vsock port */
	uint32_t guest_port;
	uint32_t watching;           /* SMVMM_FD_* currently watched */
	uint32_t ctl;                /* CTL_* pending */
	uint32_t shut_flags;         /* flags of the pending SHUTDOWN */
	bool in_ctl_list, in_wait_list;
	bool host_initiated;
	bool host_eof;               /* host socket EOF: SHUTDOWN(SEND) sent */
	bool guest_shut_rcv, guest_shut_send;
	bool host_wr_shut;           /* shutdown(SHUT_WR) done */
	bool credit_requested;       /* CREDIT_REQUEST sent, no answer yet */
	uint64_t deadline_ns;        /* 0 = none */

	/* host -> guest */
	uint32_t rx_cnt;             /* payload bytes sent to the guest */
	uint32_t peer_buf_alloc;     /* from the guest's headers */
	uint32_t peer_fwd_cnt;

	/* guest -> host */
	uint32_t fwd_cnt;            /* guest bytes given to the host socket */
	uint32_t last_fwd_sent;      /* fwd_cnt in our last header */
	uint8_t *buf;                /* ring of VSOCK_CONN_BUF + line bytes */
	uint32_t buf_head, buf_len;
	uint32_t buf_ctl_bytes;      /* leading bytes that are not guest data
					(the "OK <port>\n" line) */
	char line[VSOCK_CONNECT_LINE_MAX];
	uint32_t line_len;
};
#define VSOCK_BUF_CAP (VSOCK_CONN_BUF + VSOCK_CONNECT_LINE_MAX)

struct orphan_rst {
	uint32_t host_port, guest_port;
};

struct vsock {
	const struct smvmm_host_services *svc;
	struct smvmm_host *h;

	uint64_t guest_cid;
	char uds_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	dev_t listen_dev;
	ino_t listen_ino;
	bool listen_paused;          /* accept ran out of fds: not watched */
	bool accept_err_logged;      /* once per episode (until EAGAIN) */
	uint64_t listen_retry_ns;    /* paused: re-arm at this time */
	unsigned int max_conns;      /* VSOCK_MAX_CONNS or RLIMIT_NOFILE's */
	int kick_fd;                 /* eventfd: deferred work */
	int timer_fd;
	bool timer_armed;

	bool active;
	bool broken;                 /* a queue broke: NEEDS_RESET */
	bool rx_starved;             /* rx queue empty the last time */
	bool tx_more;                /* tx budget spent, continue later */
	bool event_pending;          /* TRANSPORT_RESET to send */
	bool warned_rx_chain, warned_tx_hdr, warned_cid, warned_type;
	bool warned_op;

	/* Popped rx chains not used yet (a stack; the top is used first). */
	struct smvmm_chain *rx_spare[VSOCK_RX_BATCH];
	unsigned int rx_nspare;

	struct conn *hash[VSOCK_FD_HASH];
	struct conn *all;            /* every live connection */
	struct conn *zombies;        /* detached by reset; closed by kick */
	unsigned int nconns;
	struct conn **by_fd;         /* fd -> connection (live or zombie) */
	unsigned int by_fd_size;

	struct conn *ctl_head, *ctl_tail;
	struct conn *wait_head;
	struct orphan_rst orphans[VSOCK_ORPHAN_RST_MAX];
	unsigned int orphan_head, orphan_len;
	unsigned int rx_pushed;      /* pushed since the last vq_notify */

	uint32_t next_local_port;
	uint64_t stat_orphans_dropped;
};

static void conn_fd_cb(void *dev, int fd, uint32_t events);
static bool conn_update_watch(struct vsock *v, struct conn *c);
static void rx_run(struct vsock *v);
static void listen_cb(void *dev, int fd, uint32_t events);
static void timer_arm(struct vsock *v);

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- configuration --------------------------------------------------- */

static int parse_config(struct vsock *v)
{
	const char *cid = v->svc->config_get(v->h, "guest_cid");
	/* Relative to the INI file (hosts before config_path: as given). */
	const char *path = SMVMM_SVC_HAS(v->svc, config_path)
				   ? v->svc->config_path(v->h, "uds_path")
				   : v->svc->config_get(v->h, "uds_path");
	unsigned long long n;
	char *end;
	size_t len;

	if (!cid) {
		v->svc->config_error(v->h, "guest_cid",
				     "required (a number >= 3)");
		return -EINVAL;
	}
	while (*cid == ' ' || *cid == '\t')
		cid++;
	errno = 0;
	n = strtoull(cid, &end, 0);
	while (*end == ' ' || *end == '\t')
		end++;
	if (*cid < '0' || *cid > '9' || errno || *end) {
		v->svc->config_error(v->h, "guest_cid", "not a number: \"%s\"",
				     cid);
		return -EINVAL;
	}
	/* 0, 1 and 2 are the hypervisor, local and host CIDs; 0xffffffff is
	 * VMADDR_CID_ANY; the field is 64-bit but CIDs are u32 in practice
	 * (Linux's sockaddr_vm, Firecracker). */
	if (n < 3 || n >= VSOCK_CID_ANY) {
		v->svc->config_error(v->h, "guest_cid",
				     "%llu out of range (3 .. 4294967294)", n);
		return -EINVAL;
	}
	v->guest_cid = n;

	if (!path || !*path) {
		v->svc->config_error(v->h, "uds_path",
				     "required (the host socket path)");
		return -EINVAL;
	}
	len = strlen(path);
	/* "<uds_path>_<port>" (11 more bytes) must fit sun_path too. */
	if (len + 11 >= sizeof(v->uds_path)) {
		v->svc->config_error(v->h, "uds_path",
				     "too long (%zu bytes; at most %zu, so that "
				     "\"<uds_path>_<port>\" fits a Unix socket "
				     "address)", len,
				     sizeof(v->uds_path) - 12);
		return -EINVAL;
	}
	memcpy(v->uds_path, path, len + 1);
	return 0;
}

/*
 * Is somebody listening on the socket file at uds_path?  1 yes (connect
 * succeeded, or the backlog is full), 0 no (a stale file: ECONNREFUSED, or
 * it vanished), -errno when we cannot tell.  Only connects: the file is not
 * touched (the check_only rule holds).
 */
static int socket_in_use(struct vsock *v)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, ret;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memcpy(sa.sun_path, v->uds_path, strlen(v->uds_path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		ret = 1;
	else if (errno == EAGAIN || errno == EINPROGRESS)
		ret = 1; /* a listener whose backlog is full */
	else if (errno == ECONNREFUSED || errno == ENOENT)
		ret = 0;
	else
		ret = -errno;
	close(fd);
	return ret;
}

/*
 * What is at uds_path may be replaced?  0: nothing there, or a stale
 * socket (removed unless check_only).  A socket somebody listens on (the
 * uds_path of another running VM) and anything that is not a socket are
 * refused, naming the key.
 */
static int uds_path_free(struct vsock *v, bool check_only)
{
	struct stat st;
	int ret;

	if (lstat(v->uds_path, &st) < 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		v->svc->config_error(v->h, "uds_path",
				     "%s exists and is not a socket; "
				     "refusing to replace it", v->uds_path);
		return -EEXIST;
	}
	ret = socket_in_use(v);
	if (ret == 1) {
		v->svc->config_error(v->h, "uds_path",
				     "\"%s\" is in use by another process "
				     "(something accepts connections on it); "
				     "refusing to replace it", v->uds_path);
		return -EADDRINUSE;
	}
	if (ret < 0) {
		v->svc->config_error(v->h, "uds_path",
				     "cannot tell whether \"%s\" is in use: "
				     "%s; refusing to replace it", v->uds_path,
				     strerror(-ret));
		return ret;
	}
	if (check_only)
		return 0; /* stale: the real start will replace it */
	/* A stale socket of an earlier run (nobody can bind to it again
	 * while it exists). */
	if (unlink(v->uds_path) < 0 && errno != ENOENT) {
		ret = -errno;
		v->svc->config_error(v->h, "uds_path",
				     "cannot remove the stale socket %s: %s",
				     v->uds_path, strerror(errno));
		return ret;
	}
	return 0;
}

static int make_listener(struct vsock *v)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, ret;

	ret = uds_path_free(v, false);
	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		v->svc->log(v->h, SMVMM_LOG_ERROR, "socket: %s",
			    strerror(errno));
		return ret;
	}
	memcpy(sa.sun_path, v->uds_path, strlen(v->uds_path) + 1);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, VSOCK_LISTEN_BACKLOG) < 0) {
		ret = -errno;
		v->svc->config_error(v->h, "uds_path", "cannot listen on %s: %s",
				     v->uds_path, strerror(errno));
		goto err_close;
	}
	if (stat(v->uds_path, &st) == 0) {
		v->listen_dev = st.st_dev;
		v->listen_ino = st.st_ino;
	}
	v->listen_fd = fd;
	return 0;

err_close:
	close(fd);
	return ret;
}

/* ---- connection table ------------------------------------------------ */

static unsigned int conn_hash(uint32_t host_port, uint32_t guest_port)
{
	uint32_t x = host_port * 0x9e3779b1u ^ guest_port * 0x85ebca6bu;

	return (x ^ (x >> 15)) % VSOCK_FD_HASH;
}

static struct conn *conn_find(struct vsock *v, uint32_t host_port,
			      uint32_t guest_port)
{
	struct conn *c = v->hash[conn_hash(host_port, guest_port)];

	while (c && (c->host_port != host_port || c->guest_port != guest_port))
		c = c->hnext;
	return c;
}

static int fd_table_set(struct vsock *v, int fd, struct conn *c)
{
	if ((unsigned int)fd >= v->by_fd_size) {
		unsigned int n = v->by_fd_size ? v->by_fd_size : 64;
		struct conn **t;

		while (n <= (unsigned int)fd)
			n *= 2;
		t = realloc(v->by_fd, n * sizeof(*t));
		if (!t)
			return -ENOMEM;
		memset(t + v->by_fd_size, 0,
		       (n - v->by_fd_size) * sizeof(*t));
		v->by_fd = t;
		v->by_fd_size = n;
	}
	v->by_fd[fd] = c;
	return 0;
}

static struct conn *conn_new(struct vsock *v, int fd, uint32_t host_port,
			     uint32_t guest_port, enum conn_state st)
{
	struct conn *c = calloc(1, sizeof(*c));
	unsigned int b;

	if (!c)
		return NULL;
	if (fd_table_set(v, fd, c)) {
		free(c);
		return NULL;
	}
	c->fd = fd;
	c->state = st;
	c->host_port = host_port;
	c->guest_port = guest_port;
	if (st != CONN_CONNECT_WAIT) {
		b = conn_hash(host_port, guest_port);
		c->hnext = v->hash[b];
		v->hash[b] = c;
	}
	c->all_next = v->all;
	if (v->all)
		v->all->all_prev = c;
	v->all = c;
	v->nconns++;
	return c;
}

static void conn_hash_add(struct vsock *v, struct conn *c)
{
	unsigned int b = conn_hash(c->host_port, c->guest_port);

	c->hnext = v->hash[b];
	v->hash[b] = c;
}

static void conn_hash_del(struct vsock *v, struct conn *c)
{
	struct conn **pp = &v->hash[conn_hash(c->host_port, c->guest_port)];

	while (*pp && *pp != c)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = c->hnext;
	c->hnext = NULL;
}

static void conn_close_fd(struct vsock *v, struct conn *c)
{
	if (c->fd < 0)
		return;
	if (c->watching)
		v->svc->unwatch_fd(v->h, c->fd);
	c->watching = 0;
	if ((unsigned int)c->fd < v->by_fd_size)
		v->by_fd[c->fd] = NULL;
	close(c->fd);
	c->fd = -1;
	if (v->listen_paused) {
		/* An fd is free again: accept the waiting host clients. */
		if (v->svc->watch_fd(v->h, v->listen_fd, SMVMM_FD_IN,
				     listen_cb) == 0)
			v->listen_paused = false;
	}
}

static void list_del_ctl(struct vsock *v, struct conn *c)
{
	struct conn **pp = &v->ctl_head, *prev = NULL;

	if (!c->in_ctl_list)
		return;
	while (*pp && *pp != c) {
		prev = *pp;
		pp = &(*pp)->ctl_next;
	}
	if (*pp)
		*pp = c->ctl_next;
	if (v->ctl_tail == c)
		v->ctl_tail = prev;
	c->ctl_next = NULL;
	c->in_ctl_list = false;
}

static void list_del_wait(struct vsock *v, struct conn *c)
{
	struct conn **pp = &v->wait_head;

	if (!c->in_wait_list)
		return;
	while (*pp && *pp != c)
		pp = &(*pp)->wait_next;
	if (*pp)
		*pp = c->wait_next;
	c->wait_next = NULL;
	c->in_wait_list = false;
}

/* Forget a live connection completely (its RST, if any, was sent). */
static void conn_free(struct vsock *v, struct conn *c)
{
	conn_close_fd(v, c);
	if (c->state != CONN_CONNECT_WAIT)
		conn_hash_del(v, c);
	list_del_ctl(v, c);
	list_del_wait(v, c);
	if (c->all_prev)
		c->all_prev->all_next = c->all_next;
	else
		v->all = c->all_next;
	if (c->all_next)
		c->all_next->all_prev = c->all_prev;
	v->nconns--;
	free(c->buf);
	free(c);
}

static void ctl_queue(struct vsock *v, struct conn *c, uint32_t what)
{
	c->ctl |= what;
	if (c->in_ctl_list)
		return;
	c->in_ctl_list = true;
	c->ctl_next = NULL;
	if (v->ctl_tail)
		v->ctl_tail->ctl_next = c;
	else
		v->ctl_head = c;
	v->ctl_tail = c;
}

/*
 * conn_kill: close the host socket now; with `rst`, tell the guest (OP_RST,
 * §5.10.6.5) and free the connection once that is sent.
 */
static void conn_kill(struct vsock *v, struct conn *c, bool rst)
{
	conn_close_fd(v, c);
	list_del_wait(v, c);
	c->deadline_ns = 0;
	if (!rst || c->state == CONN_CONNECT_WAIT || (c->ctl & CTL_REQUEST)) {
		/* The guest never heard of it: nothing to reset. */
		conn_free(v, c);
		return;
	}
	c->state = CONN_DEAD;
	c->ctl = 0;
	ctl_queue(v, c, CTL_RST);
}

/* An RST for a packet that matches no connection (bounded queue). */
static void orphan_rst(struct vsock *v, uint32_t host_port,
		       uint32_t guest_port)
{
	struct orphan_rst *o;

	if (v->orphan_len == VSOCK_ORPHAN_RST_MAX) {
		v->stat_orphans_dropped++;
		return;
	}
	o = &v->orphans[(v->orphan_head + v->orphan_len) %
			VSOCK_ORPHAN_RST_MAX];
	o->host_port = host_port;
	o->guest_port = guest_port;
	v->orphan_len++;
}

/* ---- timers ------------------------------------------------------------ */

static void timer_arm(struct vsock *v)
{
	struct itimerspec its = {
		.it_value.tv_nsec = VSOCK_TICK_MS * 1000000L,
		.it_interval.tv_nsec = VSOCK_TICK_MS * 1000000L,
	};

	if (v->timer_armed)
		return;
	if (timerfd_settime(v->timer_fd, 0, &its, NULL) == 0)
		v->timer_armed = true;
}

static void conn_set_deadline(struct vsock *v, struct conn *c,
			      unsigned int ms)
{
	c->deadline_ns = now_ns() + (uint64_t)ms * 1000000ULL;
	timer_arm(v);
}

static void timer_cb(void *dev, int fd, uint32_t events)
{
	struct vsock *v = dev;
	uint64_t ticks, now = now_ns();
	struct conn *c, *next;
	bool any = false;

	(void)events;
	while (read(fd, &ticks, sizeof(ticks)) < 0 && errno == EINTR)
		;
	for (c = v->all; c; c = next) {
		next = c->all_next;
		if (!c->deadline_ns)
			continue;
		if (c->deadline_ns > now) {
			any = true;
			continue;
		}
		v->svc->log(v->h, SMVMM_LOG_DEBUG,
			    "connection %" PRIu32 ":%" PRIu32 " timed out "
			    "(state %d)", c->host_port, c->guest_port,
			    (int)c->state);
		conn_kill(v, c, true);
	}
	if (v->listen_paused) {
		if (now >= v->listen_retry_ns &&
		    v->svc->watch_fd(v->h, v->listen_fd, SMVMM_FD_IN,
				     listen_cb) == 0)
			v->listen_paused = false;
		else
			any = true; /* keep ticking until re-armed */
	}
	if (!any) {
		struct itimerspec its = { 0 };

		timerfd_settime(v->timer_fd, 0, &its, NULL);
		v->timer_armed = false;
	}
	rx_run(v);
}

/* ---- iovec helpers ------------------------------------------------------ */

/* Copy up to len bytes at byte `off` of the chain's readable part. */
static uint32_t chain_read(const struct smvmm_chain *c, uint32_t off,
			   void *dst, uint32_t len)
{
	uint8_t *d = dst;
	uint32_t done = 0;

	for (uint32_t i = 0; i < c->n_out && done < len; i++) {
		size_t l = c->iov[i].iov_len;

		if (off >= l) {
			off -= (uint32_t)l;
			continue;
		}
		l -= off;
		if (l > len - done)
			l = len - done;
		memcpy(d + done, (uint8_t *)c->iov[i].iov_base + off, l);
		done += (uint32_t)l;
		off = 0;
	}
	return done;
}

/* Copy len bytes to byte `off` of the chain's writable part. */
static uint32_t chain_write(const struct smvmm_chain *c, uint32_t off,
			    const void *src, uint32_t len)
{
	const uint8_t *s = src;
	uint32_t done = 0;

	for (uint32_t i = c->n_out; i < c->n_out + c->n_in && done < len;
	     i++) {
		size_t l = c->iov[i].iov_len;

		if (off >= l) {
			off -= (uint32_t)l;
			continue;
		}
		l -= off;
		if (l > len - done)
			l = len - done;
		memcpy((uint8_t *)c->iov[i].iov_base + off, s + done, l);
		done += (uint32_t)l;
		off = 0;
	}
	return done;
}

#define VSOCK_IOV_MAX 64

/*
 * Describe `len` bytes at byte `off` of a part of the chain (readable:
 * segments [0, n_out), writable: [n_out, n_out + n_in)) as at most `max`
 * iovecs.  Returns the count; *got gets the bytes covered (less than len if
 * the segments run out or `max` is reached).
 */
static int chain_iov(const struct smvmm_chain *c, bool writable, uint32_t off,
		     uint32_t len, struct iovec *iov, int max, uint32_t *got)
{
	uint32_t first = writable ? c->n_out : 0;
	uint32_t end = writable ? c->n_out + c->n_in : c->n_out;
	uint32_t done = 0;
	int n = 0;

	for (uint32_t i = first; i < end && done < len && n < max; i++) {
		size_t l = c->iov[i].iov_len;

		if (off >= l) {
			off -= (uint32_t)l;
			continue;
		}
		l -= off;
		if (l > len - done)
			l = len - done;
		iov[n].iov_base = (uint8_t *)c->iov[i].iov_base + off;
		iov[n].iov_len = l;
		n++;
		done += (uint32_t)l;
		off = 0;
	}
	*got = done;
	return n;
}

/*
 * Host sockets get a send buffer of VSOCK_SOCK_SNDBUF (the kernel doubles
 * it for its bookkeeping and caps it at net.core.wmem_max), larger than
 * the credit window we give the guest (VSOCK_CONN_BUF): guest -> host data
 * then nearly always goes from guest memory straight into the socket,
 * instead of spilling into the connection's ring (one more copy, one more
 * sendmsg and an EPOLLOUT watch) whenever the default ~208 KiB is full.
 * Still bounded: at most this much in the kernel plus the ring per
 * connection.  Best effort: a failure only costs speed.
 */
static void sock_tune(int fd)
{
	int v = VSOCK_SOCK_SNDBUF;

	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
}

/* writev without SIGPIPE: a host peer that went away is an error return. */
static ssize_t sock_writev(int fd, struct iovec *iov, int n)
{
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };

	return sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* ---- rx: packets to the guest ----------------------------------------- */

static void rx_push(struct vsock *v, struct smvmm_chain *ch, uint32_t len)
{
	int ret = v->svc->vq_push(v->h, ch, len);

	if (ret < 0)
		v->svc->log(v->h, SMVMM_LOG_ERROR, "vq_push: %s",
			    strerror(-ret));
	v->rx_pushed++;
}

static void rx_notify(struct vsock *v)
{
	if (v->rx_pushed) {
		v->rx_pushed = 0;
		v->svc->vq_notify(v->h, VSOCK_Q_RX);
	}
}

/* Keep a popped rx chain for the next rx_get (at most VSOCK_RX_BATCH). */
static void rx_unget(struct vsock *v, struct smvmm_chain *ch)
{
	v->rx_spare[v->rx_nspare++] = ch;
}

/* Never complete a held chain after reset (§2.4); the core forgets
 * in-flight heads.  Chains are single allocations (virtq.h). */
static void rx_spare_drop(struct vsock *v)
{
	while (v->rx_nspare)
		free(v->rx_spare[--v->rx_nspare]);
}

/*
 * rx_get: an rx chain able to hold a header, or NULL (queue empty: the
 * device is "starved" until the driver kicks the rx queue).
 */
static struct smvmm_chain *rx_get(struct vsock *v)
{
	struct smvmm_chain *ch;
	int ret;

	if (!v->active || v->broken)
		return NULL;
	if (v->rx_nspare)
		return v->rx_spare[--v->rx_nspare];
	for (;;) {
		ret = v->svc->vq_pop(v->h, VSOCK_Q_RX, &ch);
		if (ret < 0) {
			v->broken = true; /* the core set NEEDS_RESET */
			return NULL;
		}
		if (ret == 0) {
			v->rx_starved = true;
			return NULL;
		}
		if (ch->in_len >= VSOCK_HDR_LEN)
			return ch;
		/* §5.10.6.1: rx buffers are device-writable and hold at
		 * least a header.  Give it back empty; keep going. */
		if (!v->warned_rx_chain) {
			v->warned_rx_chain = true;
			v->svc->log(v->h, SMVMM_LOG_WARN,
				    "rx buffer with %" PRIu32 " writable bytes "
				    "(< %d) completed empty; further ones are "
				    "not logged", ch->in_len, VSOCK_HDR_LEN);
		}
		rx_push(v, ch, 0);
	}
}

static void hdr_fill(struct vsock *v, struct conn *c, struct vsock_hdr *h,
		     uint16_t op, uint32_t host_port, uint32_t guest_port)
{
	memset(h, 0, sizeof(*h));
	h->src_cid = VSOCK_HOST_CID;
	h->dst_cid = v->guest_cid;
	h->src_port = host_port;
	h->dst_port = guest_port;
	h->type = VSOCK_TYPE_STREAM;
	h->op = op;
	if (c) {
		h->buf_alloc = VSOCK_CONN_BUF;
		h->fwd_cnt = c->fwd_cnt;
		c->last_fwd_sent = c->fwd_cnt;
	}
}

static uint32_t peer_credit(const struct conn *c)
{
	uint32_t in_flight = c->rx_cnt - c->peer_fwd_cnt;

	if (in_flight >= c->peer_buf_alloc)
		return 0;
	return c->peer_buf_alloc - in_flight;
}

/* Send one pending control packet of c; false when no rx buffer. */
static bool ctl_send_one(struct vsock *v, struct conn *c)
{
	struct smvmm_chain *ch;
	struct vsock_hdr h;
	uint32_t bit;
	uint16_t op;

	/* Order matters: REQUEST/RESPONSE open the stream, SHUTDOWN follows
	 * all data sent so far, RST ends everything. */
	if (c->ctl & CTL_RST) {
		bit = CTL_RST;
		op = VSOCK_OP_RST;
	} else if (c->ctl & CTL_REQUEST) {
		bit = CTL_REQUEST;
		op = VSOCK_OP_REQUEST;
	} else if (c->ctl & CTL_RESPONSE) {
		bit = CTL_RESPONSE;
		op = VSOCK_OP_RESPONSE;
	} else if (c->ctl & CTL_CREDIT_UPDATE) {
		bit = CTL_CREDIT_UPDATE;
		op = VSOCK_OP_CREDIT_UPDATE;
	} else if (c->ctl & CTL_CREDIT_REQUEST) {
		bit = CTL_CREDIT_REQUEST;
		op = VSOCK_OP_CREDIT_REQUEST;
	} else {
		bit = CTL_SHUTDOWN;
		op = VSOCK_OP_SHUTDOWN;
	}
	ch = rx_get(v);
	if (!ch)
		return false;
	hdr_fill(v, c, &h, op, c->host_port, c->guest_port);
	if (op == VSOCK_OP_SHUTDOWN)
		h.flags = c->shut_flags;
	chain_write(ch, 0, &h, sizeof(h));
	rx_push(v, ch, sizeof(h));
	c->ctl &= ~bit;
	return true;
}

/*
 * Flush pending control packets (orphan RSTs first, then connections in
 * FIFO order).  Returns false when it ran out of rx buffers.
 */
static bool ctl_flush(struct vsock *v)
{
	while (v->orphan_len) {
		struct orphan_rst *o = &v->orphans[v->orphan_head];
		struct smvmm_chain *ch = rx_get(v);
		struct vsock_hdr h;

		if (!ch)
			return false;
		hdr_fill(v, NULL, &h, VSOCK_OP_RST, o->host_port,
			 o->guest_port);
		chain_write(ch, 0, &h, sizeof(h));
		rx_push(v, ch, sizeof(h));
		v->orphan_head = (v->orphan_head + 1) % VSOCK_ORPHAN_RST_MAX;
		v->orphan_len--;
	}
	while (v->ctl_head) {
		struct conn *c = v->ctl_head;

		while (c->ctl) {
			if (!ctl_send_one(v, c))
				return false;
		}
		v->ctl_head = c->ctl_next;
		if (!v->ctl_head)
			v->ctl_tail = NULL;
		c->ctl_next = NULL;
		c->in_ctl_list = false;
		if (c->state == CONN_DEAD)
			conn_free(v, c); /* its RST is out */
		else
			conn_update_watch(v, c);
	}
	return true;
}

/*
 * Read host data into rx buffers (host -> guest, §5.10.6.3: only within the
 * guest's credit).  Called when the host socket is readable.
 *
 * One readv fills up to VSOCK_RX_BATCH rx buffers (each becomes one packet
 * of at most VSOCK_MAX_PKT): fewer syscalls, and a read shorter than asked
 * means the socket is empty (a stream recvmsg takes all queued bytes up to
 * the size asked), so we stop there instead of a readv that says EAGAIN;
 * the level-triggered watch calls us again when more arrives, or for EOF.
 */
static void conn_rx(struct vsock *v, struct conn *c)
{
	uint32_t budget = VSOCK_RX_BUDGET;

	while (budget && c->state == CONN_ESTABLISHED && !c->host_eof &&
	       !c->guest_shut_rcv && !(c->ctl & (CTL_REQUEST | CTL_RESPONSE |
						 CTL_RST))) {
		struct iovec iov[VSOCK_IOV_MAX];
		struct smvmm_chain *chs[VSOCK_RX_BATCH];
		uint32_t cap[VSOCK_RX_BATCH];
		uint32_t credit = peer_credit(c), total = 0, left;
		int nch = 0, niov = 0;
		ssize_t n;

		if (!credit) {
			/* Ask once; the guest's next CREDIT_UPDATE (or any
			 * packet) re-enables reading. */
			if (!c->credit_requested) {
				c->credit_requested = true;
				ctl_queue(v, c, CTL_CREDIT_REQUEST);
			}
			break;
		}
		if (credit > budget)
			credit = budget;
		while (nch < VSOCK_RX_BATCH && total < credit &&
		       niov < VSOCK_IOV_MAX) {
			struct smvmm_chain *ch = rx_get(v);
			uint32_t want, got;
			int k;

			if (!ch)
				break;
			want = ch->in_len - VSOCK_HDR_LEN;
			if (want > VSOCK_MAX_PKT)
				want = VSOCK_MAX_PKT;
			if (want > credit - total)
				want = credit - total;
			k = chain_iov(ch, true, VSOCK_HDR_LEN, want, iov + niov,
				      VSOCK_IOV_MAX - niov, &got);
			if (!k) {
				/* Only a header fits: no data until the
				 * driver adds bigger buffers (control
				 * packets still use it). */
				rx_unget(v, ch);
				if (!nch)
					v->rx_starved = true;
				break;
			}
			chs[nch] = ch;
			cap[nch++] = got;
			niov += k;
			total += got;
		}
		if (!nch)
			break;
		n = readv(c->fd, iov, niov);
		if (n <= 0) {
			int err = n < 0 ? errno : 0;

			while (nch)
				rx_unget(v, chs[--nch]);
			if (n < 0 && (err == EAGAIN || err == EINTR))
				break;
			if (n < 0) {
				v->svc->log(v->h, SMVMM_LOG_DEBUG,
					    "connection %" PRIu32 ":%" PRIu32
					    ": read: %s", c->host_port,
					    c->guest_port, strerror(err));
				conn_kill(v, c, true);
				return;
			}
			/* The host will send no more: SHUTDOWN(SEND), the
			 * guest may still send (half-close). */
			c->host_eof = true;
			c->shut_flags = VSOCK_SHUTDOWN_SEND;
			ctl_queue(v, c, CTL_SHUTDOWN);
			break;
		}
		left = (uint32_t)n;
		for (int i = 0; i < nch; i++) {
			uint32_t take = left < cap[i] ? left : cap[i];
			struct vsock_hdr h;

			if (!take) {
				/* Unused: back, the first one on top. */
				for (int k = nch - 1; k >= i; k--)
					rx_unget(v, chs[k]);
				break;
			}
			hdr_fill(v, c, &h, VSOCK_OP_RW, c->host_port,
				 c->guest_port);
			h.len = take;
			chain_write(chs[i], 0, &h, sizeof(h));
			rx_push(v, chs[i], VSOCK_HDR_LEN + take);
			c->rx_cnt += take;
			left -= take;
		}
		budget -= (uint32_t)n;
		if ((uint32_t)n < total)
			break; /* the socket is empty */
	}
	if (c->state == CONN_ESTABLISHED && c->host_eof &&
	    c->guest_shut_send && !c->buf_len)
		conn_kill(v, c, true); /* both directions are done */
}

/* ---- guest -> host data ----------------------------------------------- */

static void conn_credit_check(struct vsock *v, struct conn *c)
{
	/* The guest's view of our free space: buf_alloc - (what it sent -
	 * last fwd_cnt it saw).  What it sent is fwd_cnt + buffered. */
	uint32_t sent = c->fwd_cnt + (c->buf_len - c->buf_ctl_bytes);
	uint32_t view = VSOCK_CONN_BUF - (sent - c->last_fwd_sent);

	if (c->fwd_cnt != c->last_fwd_sent && view < VSOCK_CONN_BUF / 2)
		ctl_queue(v, c, CTL_CREDIT_UPDATE);
}

/* Write the ring to the host socket.  0, or -errno for a dead socket. */
static int conn_drain(struct vsock *v, struct conn *c)
{
	while (c->buf_len) {
		struct iovec iov[2];
		uint32_t first = VSOCK_BUF_CAP - c->buf_head, ctl;
		ssize_t n;
		int cnt = 1;

		if (first > c->buf_len)
			first = c->buf_len;
		iov[0].iov_base = c->buf + c->buf_head;
		iov[0].iov_len = first;
		if (first < c->buf_len) {
			iov[1].iov_base = c->buf;
			iov[1].iov_len = c->buf_len - first;
			cnt = 2;
		}
		n = sock_writev(c->fd, iov, cnt);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return -errno;
		}
		c->buf_head = (c->buf_head + (uint32_t)n) % VSOCK_BUF_CAP;
		c->buf_len -= (uint32_t)n;
		ctl = c->buf_ctl_bytes < (uint32_t)n ? c->buf_ctl_bytes
						     : (uint32_t)n;
		c->buf_ctl_bytes -= ctl;
		c->fwd_cnt += (uint32_t)n - ctl;
	}
	conn_credit_check(v, c);
	return 0;
}

/* Append to the ring; false if it does not fit (credit violation). */
static bool buf_append_iov(struct conn *c, const struct iovec *iov, int n,
			   size_t skip)
{
	size_t total = 0;

	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	total -= skip;
	if (total > VSOCK_BUF_CAP - c->buf_len)
		return false;
	if (!c->buf) {
		c->buf = malloc(VSOCK_BUF_CAP);
		if (!c->buf)
			return false;
	}
	for (int i = 0; i < n; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		p += skip;
		l -= skip;
		skip = 0;
		while (l) {
			uint32_t tail = (c->buf_head + c->buf_len) %
					VSOCK_BUF_CAP;
			size_t room = VSOCK_BUF_CAP - tail;

			if (room > l)
				room = l;
			memcpy(c->buf + tail, p, room);
			c->buf_len += (uint32_t)room;
			p += room;
			l -= room;
		}
	}
	return true;
}

/* Host socket done with what the guest sends: SHUT_WR once drained. */
static void conn_maybe_shut_wr(struct conn *c)
{
	if (c->guest_shut_send && !c->buf_len && !c->host_wr_shut &&
	    c->fd >= 0) {
		shutdown(c->fd, SHUT_WR);
		c->host_wr_shut = true;
	}
}

/*
 * A connection is over when the guest will send nothing more (and all of it
 * reached the host) and nothing more flows to the guest (host EOF, or the
 * guest does not receive any more): RST, as Linux and Firecracker do after
 * a full shutdown (§5.10.6.5).
 */
static bool conn_maybe_finish(struct vsock *v, struct conn *c)
{
	if (c->state != CONN_ESTABLISHED || !c->guest_shut_send)
		return false;
	if (c->buf_len) {
		if (c->guest_shut_rcv && !c->deadline_ns)
			conn_set_deadline(v, c, VSOCK_SHUTDOWN_TIMEOUT_MS);
		return false;
	}
	if (!c->host_eof && !c->guest_shut_rcv)
		return false;
	conn_kill(v, c, true);
	return true;
}

/* ---- host socket events ------------------------------------------------- */

/*
 * Watch the host socket for what the connection can do now.  Returns false
 * if watching failed: the connection is then reset (DEAD), except in
 * CONNECT_WAIT where the caller frees it.
 */
static bool conn_update_watch(struct vsock *v, struct conn *c)
{
	uint32_t want = 0;
	int ret;

	if (c->fd < 0)
		return true;
	if (c->state == CONN_CONNECT_WAIT) {
		want |= SMVMM_FD_IN;
	} else if (c->state == CONN_ESTABLISHED && !c->host_eof &&
		   !c->guest_shut_rcv &&
		   !(c->ctl & (CTL_REQUEST | CTL_RESPONSE))) {
		if (v->rx_starved || !v->active) {
			if (!c->in_wait_list) {
				c->in_wait_list = true;
				c->wait_next = v->wait_head;
				v->wait_head = c;
			}
		} else if (peer_credit(c)) {
			want |= SMVMM_FD_IN;
		} else if (!c->credit_requested) {
			/* The guest's last word leaves no credit: ask once
			 * (§5.10.6.3), so a lost update cannot stall us. */
			c->credit_requested = true;
			ctl_queue(v, c, CTL_CREDIT_REQUEST);
		}
	}
	if (c->buf_len)
		want |= SMVMM_FD_OUT;
	if (want == c->watching)
		return true;
	/* No events at all: unwatch, or a level-triggered HUP would spin. */
	if (want)
		ret = v->svc->watch_fd(v->h, c->fd, want, conn_fd_cb);
	else
		ret = v->svc->unwatch_fd(v->h, c->fd);
	if (ret < 0 && want) {
		v->svc->log(v->h, SMVMM_LOG_ERROR, "watch_fd: %s",
			    strerror(-ret));
		if (c->state != CONN_CONNECT_WAIT)
			conn_kill(v, c, true);
		return false;
	}
	c->watching = want;
	return true;
}

static bool parse_port(const char *s, size_t len, uint32_t *port)
{
	uint64_t n = 0;

	if (!len || len > 10)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	if (n > UINT32_MAX)
		return false;
	*port = (uint32_t)n;
	return true;
}

static uint32_t alloc_local_port(struct vsock *v, uint32_t guest_port)
{
	for (;;) {
		uint32_t p = v->next_local_port++;

		if (v->next_local_port == 0 ||
		    v->next_local_port == UINT32_MAX)
			v->next_local_port = VSOCK_LOCAL_PORT_BASE;
		if (p < VSOCK_LOCAL_PORT_BASE || p == UINT32_MAX)
			continue;
		/* At most nconns ports are taken: this terminates. */
		if (!conn_find(v, p, guest_port))
			return p;
	}
}

/*
 * Read "CONNECT <port>\n" byte by byte: reading more could swallow data the
 * client sends right behind the line, and peeking would spin the
 * level-triggered loop on a partial line.
 */
static void conn_read_connect(struct vsock *v, struct conn *c)
{
	while (c->line_len < sizeof(c->line)) {
		char ch;
		ssize_t n = read(c->fd, &ch, 1);
		uint32_t port;

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			conn_kill(v, c, false);
			return;
		}
		if (ch != '\n') {
			c->line[c->line_len++] = ch;
			continue;
		}
		if (c->line_len > 8 && !memcmp(c->line, "CONNECT ", 8) &&
		    parse_port(c->line + 8, c->line_len - 8, &port)) {
			c->guest_port = port;
			c->host_port = alloc_local_port(v, port);
			c->host_initiated = true;
			c->state = CONN_REQUEST_SENT;
			conn_hash_add(v, c);
			c->line_len = 0;
			ctl_queue(v, c, CTL_REQUEST);
			conn_set_deadline(v, c, VSOCK_CONNECT_TIMEOUT_MS);
			conn_update_watch(v, c);
			return;
		}
		break;
	}
	v->svc->log(v->h, SMVMM_LOG_DEBUG,
		    "host connection without a valid \"CONNECT <port>\" line");
	conn_kill(v, c, false);
}

static void zombies_close(struct vsock *v)
{
	while (v->zombies) {
		struct conn *c = v->zombies;

		v->zombies = c->all_next;
		conn_close_fd(v, c);
		free(c->buf);
		free(c);
	}
}

static void conn_fd_cb(void *dev, int fd, uint32_t events)
{
	struct vsock *v = dev;
	struct conn *c;

	if (v->zombies)
		zombies_close(v);
	c = (unsigned int)fd < v->by_fd_size ? v->by_fd[fd] : NULL;
	if (!c || c->fd != fd) {
		/* Nothing of ours (any more): stop the level-triggered
		 * event. */
		if (!c)
			v->svc->unwatch_fd(v->h, fd);
		return;
	}
	if (c->state == CONN_CONNECT_WAIT) {
		conn_read_connect(v, c);
		goto out;
	}
	/* A peer that hung up may report HUP without OUT: the write then
	 * fails and ends the connection instead of spinning. */
	if ((events & (SMVMM_FD_OUT | SMVMM_FD_HUP | SMVMM_FD_ERR)) &&
	    c->buf_len) {
		if (conn_drain(v, c) < 0) {
			conn_kill(v, c, true);
			goto out;
		}
		conn_maybe_shut_wr(c);
		if (conn_maybe_finish(v, c))
			goto out;
	}
	if (events & (SMVMM_FD_IN | SMVMM_FD_HUP | SMVMM_FD_ERR)) {
		if (c->watching & SMVMM_FD_IN)
			conn_rx(v, c);
		else if ((events & SMVMM_FD_ERR) && !c->buf_len)
			conn_kill(v, c, true);
	}
	/* Still alive here (kills with RST keep the structure until the RST
	 * is sent): re-evaluate credit, rx buffers and the ring. */
	conn_update_watch(v, c);
out:
	rx_run(v);
}

static void listen_cb(void *dev, int fd, uint32_t events)
{
	struct vsock *v = dev;

	(void)events;
	for (int i = 0; i < 16; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (cfd < 0) {
			int e = errno;

			if (e == EAGAIN) {
				/* Backlog drained: any fd shortage is over. */
				v->accept_err_logged = false;
				return;
			}
			if (e == EINTR || e == ECONNABORTED)
				continue;
			if (!v->accept_err_logged) {
				v->accept_err_logged = true;
				v->svc->log(v->h, SMVMM_LOG_WARN,
					    "accept on %s: %s; host connections "
					    "wait until one closes%s",
					    v->uds_path, strerror(e),
					    e == EMFILE ? " (RLIMIT_NOFILE)"
							: "");
			}
			/*
			 * The listener stays readable while the client waits
			 * in the backlog: stop watching it (a level-triggered
			 * watch would spin) until a connection of ours closes
			 * or the retry timer fires.
			 */
			if (v->svc->unwatch_fd(v->h, fd) == 0) {
				v->listen_paused = true;
				v->listen_retry_ns =
					now_ns() + VSOCK_ACCEPT_RETRY_MS *
							   1000000ULL;
				timer_arm(v);
			}
			return;
		}
		if (v->nconns >= v->max_conns) {
			v->svc->log(v->h, SMVMM_LOG_DEBUG,
				    "connection limit (%u) reached: host "
				    "connection refused", v->max_conns);
			close(cfd);
			continue;
		}
		sock_tune(cfd);
		c = conn_new(v, cfd, 0, 0, CONN_CONNECT_WAIT);
		if (!c) {
			close(cfd);
			continue;
		}
		conn_set_deadline(v, c, VSOCK_CONNECT_TIMEOUT_MS);
		if (!conn_update_watch(v, c))
			conn_free(v, c);
	}
}

/* ---- tx: packets from the guest --------------------------------------- */

/* Guest-initiated connection to "<uds_path>_<port>" (non-blocking). */
static int host_connect(struct vsock *v, uint32_t port)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, ret;

	/* Fits: parse_config keeps uds_path 11 bytes short of sun_path. */
	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%" PRIu32,
		     v->uds_path, port) >= (int)sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	sock_tune(fd);
	/* A Unix stream connect completes at once or fails (EAGAIN: the
	 * listener's backlog is full; treated as refused). */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

static void tx_request(struct vsock *v, const struct vsock_hdr *h,
		       struct conn *c)
{
	int fd;

	if (c) {
		/* A second REQUEST for a live connection: protocol error. */
		conn_kill(v, c, true);
		return;
	}
	if (v->nconns >= v->max_conns) {
		orphan_rst(v, h->dst_port, h->src_port);
		return;
	}
	fd = host_connect(v, h->dst_port);
	if (fd < 0) {
		v->svc->log(v->h, SMVMM_LOG_DEBUG,
			    "guest connect to port %" PRIu32 ": %s",
			    h->dst_port, strerror(-fd));
		orphan_rst(v, h->dst_port, h->src_port);
		return;
	}
	c = conn_new(v, fd, h->dst_port, h->src_port, CONN_ESTABLISHED);
	if (!c) {
		close(fd);
		orphan_rst(v, h->dst_port, h->src_port);
		return;
	}
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	ctl_queue(v, c, CTL_RESPONSE);
	conn_update_watch(v, c);
}

static void tx_rw(struct vsock *v, struct conn *c, const struct vsock_hdr *h,
		  const struct smvmm_chain *ch)
{
	struct iovec iov[VSOCK_IOV_MAX];
	uint32_t got;
	ssize_t n = 0;
	int niov;

	if (!h->len)
		return;
	if (c->guest_shut_send) {
		/* Data after SHUTDOWN(SEND): the stream is broken. */
		conn_kill(v, c, true);
		return;
	}
	niov = chain_iov(ch, false, VSOCK_HDR_LEN, h->len, iov, VSOCK_IOV_MAX,
			 &got);
	if (got != h->len) {
		/* More than VSOCK_IOV_MAX segments: copy the slow way. */
		uint8_t *tmp = malloc(h->len);
		struct iovec one;

		if (!tmp) {
			conn_kill(v, c, true);
			return;
		}
		chain_read(ch, VSOCK_HDR_LEN, tmp, h->len);
		one.iov_base = tmp;
		one.iov_len = h->len;
		if (!buf_append_iov(c, &one, 1, 0)) {
			free(tmp);
			goto overflow;
		}
		free(tmp);
		goto drain;
	}
	if (c->buf_len) {
		/* Behind older bytes: queue (the OUT watch drains). */
		if (!buf_append_iov(c, iov, niov, 0))
			goto overflow;
		goto drain;
	}
	n = sock_writev(c->fd, iov, niov);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			conn_kill(v, c, true);
			return;
		}
		n = 0;
	}
	c->fwd_cnt += (uint32_t)n;
	if ((uint32_t)n < h->len && !buf_append_iov(c, iov, niov, (size_t)n))
		goto overflow;
	conn_credit_check(v, c);
	return;
drain:
	if (conn_drain(v, c) < 0)
		conn_kill(v, c, true);
	return;
overflow:
	/* §5.10.6.3: the driver must not send more than its credit. */
	v->svc->log(v->h, SMVMM_LOG_DEBUG,
		    "connection %" PRIu32 ":%" PRIu32 ": guest exceeded its "
		    "credit; reset", c->host_port, c->guest_port);
	conn_kill(v, c, true);
}

static void tx_packet(struct vsock *v, const struct smvmm_chain *ch)
{
	struct vsock_hdr h;
	struct conn *c;

	if (ch->out_len < VSOCK_HDR_LEN) {
		if (!v->warned_tx_hdr) {
			v->warned_tx_hdr = true;
			v->svc->log(v->h, SMVMM_LOG_WARN,
				    "tx packet of %" PRIu32 " bytes has no "
				    "header; dropped (further ones not "
				    "logged)", ch->out_len);
		}
		return;
	}
	chain_read(ch, 0, &h, sizeof(h));
	/* §5.10.6.1: the source must be the guest, the destination us. */
	if (h.src_cid != v->guest_cid || h.dst_cid != VSOCK_HOST_CID) {
		if (!v->warned_cid) {
			v->warned_cid = true;
			v->svc->log(v->h, SMVMM_LOG_WARN,
				    "tx packet from CID %" PRIu64 " to CID %"
				    PRIu64 " dropped (guest CID %" PRIu64
				    "; further ones not logged)", h.src_cid,
				    h.dst_cid, v->guest_cid);
		}
		return;
	}
	c = conn_find(v, h.dst_port, h.src_port);
	if (c && c->state == CONN_DEAD)
		return; /* an RST is on its way already */
	if (h.type != VSOCK_TYPE_STREAM) {
		/* Only streams (no SEQPACKET feature): reset. */
		if (!v->warned_type) {
			v->warned_type = true;
			v->svc->log(v->h, SMVMM_LOG_WARN,
				    "packet of socket type %u reset (only "
				    "stream is supported)", h.type);
		}
		if (c)
			conn_kill(v, c, true);
		else if (h.op != VSOCK_OP_RST)
			orphan_rst(v, h.dst_port, h.src_port);
		return;
	}
	if (h.len > VSOCK_MAX_PKT || h.len > ch->out_len - VSOCK_HDR_LEN) {
		/* Malformed (more payload than buffers, or oversized): data
		 * would be lost, so the stream cannot continue. */
		if (!v->warned_tx_hdr) {
			v->warned_tx_hdr = true;
			v->svc->log(v->h, SMVMM_LOG_WARN,
				    "tx packet with len %" PRIu32 " in %"
				    PRIu32 " bytes of buffers (max %u); "
				    "connection reset (further ones not "
				    "logged)", h.len, ch->out_len,
				    VSOCK_MAX_PKT);
		}
		if (c)
			conn_kill(v, c, true);
		else if (h.op != VSOCK_OP_RST)
			orphan_rst(v, h.dst_port, h.src_port);
		return;
	}
	if (c && c->state != CONN_CONNECT_WAIT) {
		/* §5.10.6.3: every header carries the sender's credit. */
		c->peer_buf_alloc = h.buf_alloc;
		c->peer_fwd_cnt = h.fwd_cnt;
		if (peer_credit(c))
			c->credit_requested = false;
	}

	switch (h.op) {
	case VSOCK_OP_REQUEST:
		tx_request(v, &h, c);
		return;
	case VSOCK_OP_RST:
		if (c)
			conn_kill(v, c, false);
		return;
	default:
		break;
	}
	if (!c) {
		/* §5.10.6.5: anything else for an unknown connection. */
		if (h.op >= VSOCK_OP_RESPONSE && h.op <= VSOCK_OP_CREDIT_REQUEST)
			orphan_rst(v, h.dst_port, h.src_port);
		return;
	}
	if (c->state == CONN_REQUEST_SENT) {
		if (h.op != VSOCK_OP_RESPONSE) {
			conn_kill(v, c, true);
			return;
		}
		/* The guest accepted the host's CONNECT. */
		char ok[24];
		int n = snprintf(ok, sizeof(ok), "OK %" PRIu32 "\n",
				 c->host_port);
		struct iovec one = { ok, (size_t)n };

		c->state = CONN_ESTABLISHED;
		c->deadline_ns = 0;
		c->ctl &= ~CTL_REQUEST;
		buf_append_iov(c, &one, 1, 0);
		c->buf_ctl_bytes = (uint32_t)n;
		if (conn_drain(v, c) < 0)
			conn_kill(v, c, true);
		else
			conn_update_watch(v, c);
		return;
	}
	switch (h.op) {
	case VSOCK_OP_RW:
		tx_rw(v, c, &h, ch);
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break; /* credit taken above */
	case VSOCK_OP_CREDIT_REQUEST:
		ctl_queue(v, c, CTL_CREDIT_UPDATE);
		break;
	case VSOCK_OP_SHUTDOWN:
		if (h.flags & VSOCK_SHUTDOWN_RCV)
			c->guest_shut_rcv = true;
		if (h.flags & VSOCK_SHUTDOWN_SEND)
			c->guest_shut_send = true;
		conn_maybe_shut_wr(c);
		break;
	case VSOCK_OP_RESPONSE: /* not expected on an open connection */
	default:
		if (h.op != VSOCK_OP_RESPONSE && !v->warned_op) {
			v->warned_op = true;
			v->svc->log(v->h, SMVMM_LOG_WARN,
				    "unknown op %u; connection reset (further "
				    "ones not logged)", h.op);
		}
		conn_kill(v, c, true);
		return;
	}
	if (c->state == CONN_ESTABLISHED && !conn_maybe_finish(v, c))
		conn_update_watch(v, c);
}

static void kick_later(struct vsock *v)
{
	uint64_t one = 1;

	if (write(v->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		v->svc->log(v->h, SMVMM_LOG_ERROR, "eventfd: %s",
			    strerror(errno));
}

static void tx_run(struct vsock *v)
{
	unsigned int n = 0;

	v->tx_more = false;
	while (v->active && !v->broken) {
		struct smvmm_chain *ch;
		int ret;

		if (n == VSOCK_TX_BUDGET) {
			v->tx_more = true;
			kick_later(v);
			break;
		}
		ret = v->svc->vq_pop(v->h, VSOCK_Q_TX, &ch);
		if (ret < 0) {
			v->broken = true;
			break;
		}
		if (ret == 0)
			break;
		tx_packet(v, ch);
		ret = v->svc->vq_push(v->h, ch, 0);
		if (ret < 0)
			v->svc->log(v->h, SMVMM_LOG_ERROR, "vq_push: %s",
				    strerror(-ret));
		n++;
	}
	if (n)
		v->svc->vq_notify(v->h, VSOCK_Q_TX);
}

/* ---- event queue ------------------------------------------------------- */

static void event_run(struct vsock *v)
{
	struct smvmm_chain *ch;
	uint32_t id = VSOCK_EVENT_TRANSPORT_RESET;
	int ret;

	if (!v->event_pending || !v->active || v->broken)
		return;
	ret = v->svc->vq_pop(v->h, VSOCK_Q_EVENT, &ch);
	if (ret < 0) {
		v->broken = true;
		return;
	}
	if (ret == 0)
		return; /* sent when the driver adds an event buffer */
	if (ch->in_len < sizeof(id)) {
		v->svc->vq_push(v->h, ch, 0);
	} else {
		/* struct virtio_vsock_event { le32 id; } (§5.10.6.7) */
		chain_write(ch, 0, &id, sizeof(id));
		v->svc->vq_push(v->h, ch, sizeof(id));
		v->event_pending = false;
	}
	v->svc->vq_notify(v->h, VSOCK_Q_EVENT);
}

/* ---- the rx pump --------------------------------------------------------- */

/*
 * After anything that may have queued control packets or freed rx buffers:
 * send the control packets, re-enable connections that waited for rx
 * buffers, notify the driver once.
 */
static void rx_run(struct vsock *v)
{
	if (!v->active || v->broken)
		return;
	if (ctl_flush(v) && !v->rx_starved) {
		while (v->wait_head) {
			struct conn *c = v->wait_head;

			v->wait_head = c->wait_next;
			c->wait_next = NULL;
			c->in_wait_list = false;
			conn_update_watch(v, c);
			if (v->rx_starved)
				break;
		}
	}
	rx_notify(v);
}

static void kick_cb(void *dev, int fd, uint32_t events)
{
	struct vsock *v = dev;
	uint64_t val;

	(void)events;
	while (read(fd, &val, sizeof(val)) < 0 && errno == EINTR)
		;
	zombies_close(v);
	if (v->tx_more)
		tx_run(v);
	event_run(v);
	rx_run(v);
}

/* ---- device ops ---------------------------------------------------------- */

static void vsock_queue_notify(void *dev, uint16_t q)
{
	struct vsock *v = dev;

	if (v->zombies)
		zombies_close(v);
	switch (q) {
	case VSOCK_Q_RX:
		/* New rx buffers: resume control packets and readers. */
		v->rx_starved = false;
		break;
	case VSOCK_Q_TX:
		tx_run(v);
		break;
	case VSOCK_Q_EVENT:
		event_run(v);
		break;
	default:
		return;
	}
	rx_run(v);
}

/*
 * Detach every connection (reset, restore): they move to the zombie list
 * and their sockets are closed on the I/O thread (kick_cb or the next
 * callback of any of them), or by destroy.  No packet is sent: after a reset
 * the rings are gone (§2.4).
 */
static void conns_detach_all(struct vsock *v)
{
	struct conn *c, *next;

	for (c = v->all; c; c = next) {
		next = c->all_next;
		c->all_next = v->zombies;
		v->zombies = c;
	}
	v->all = NULL;
	v->nconns = 0;
	memset(v->hash, 0, sizeof(v->hash));
	v->ctl_head = v->ctl_tail = NULL;
	v->wait_head = NULL;
	v->orphan_len = 0;
	v->orphan_head = 0;
}

static void vsock_reset(void *dev)
{
	struct vsock *v = dev;

	v->active = false;
	v->broken = false;
	v->rx_starved = false;
	v->tx_more = false;
	v->rx_pushed = 0;
	rx_spare_drop(v);
	/*
	 * Connections are lost.  Over vhost-user this reset is a ring stop
	 * (GET_VRING_BASE on every ring: QEMU pausing the VM), and the
	 * guest's driver still has its sockets: tell it, once the device runs
	 * again, with TRANSPORT_RESET (§5.10.6.7; Linux then resets every
	 * connection).  After a driver reset (Status 0) the event reaches a
	 * freshly probed driver, which has nothing to drop.
	 */
	if (v->nconns)
		v->event_pending = true;
	conns_detach_all(v);
	if (v->zombies)
		kick_later(v);
}

static int vsock_activate(void *dev)
{
	struct vsock *v = dev;

	v->active = true;
	v->broken = false;
	v->rx_starved = false;
	if (v->event_pending || v->ctl_head || v->zombies)
		kick_later(v); /* deliver on the I/O thread */
	return 0;
}

static uint64_t vsock_get_features(void *dev)
{
	(void)dev;
	return VSOCK_FEATURES;
}

static int vsock_set_features(void *dev, uint64_t features)
{
	(void)dev;
	if (!(features & VSOCK_F_VERSION_1))
		return -ENOTSUP;
	return 0;
}

static int vsock_config_read(void *dev, uint32_t offset, void *data,
			     uint32_t len)
{
	struct vsock *v = dev;
	uint64_t cid = v->guest_cid; /* §5.10.4: le64 guest_cid */

	if (offset >= sizeof(cid) || len > sizeof(cid) - offset) {
		memset(data, 0, len);
		return -EINVAL;
	}
	memcpy(data, (uint8_t *)&cid + offset, len);
	return 0;
}

static int vsock_config_write(void *dev, uint32_t offset, const void *data,
			      uint32_t len)
{
	(void)dev;
	(void)offset;
	(void)data;
	(void)len;
	return -EPERM; /* guest_cid is read-only */
}

/*
 * Snapshot: host sockets cannot be saved, so a snapshot holds only the
 * identity; after restore every connection is gone and the guest is told so
 * with VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (§5.10.6.7; Linux then drops its
 * connections and re-reads guest_cid).  The event is sent as soon as the
 * driver is active (activate(), or now if it is) and has an event buffer.
 */
#define VSOCK_SNAP_MAGIC 0x4b535653u /* "SVSK" */
#define VSOCK_SNAP_VERSION 1u
struct vsock_snap {
	uint32_t magic, version;
	uint64_t guest_cid;
};

static int vsock_snapshot_save(void *dev, void **data, size_t *len)
{
	struct vsock *v = dev;
	struct vsock_snap *s = malloc(sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->magic = VSOCK_SNAP_MAGIC;
	s->version = VSOCK_SNAP_VERSION;
	s->guest_cid = v->guest_cid;
	*data = s;
	*len = sizeof(*s);
	return 0;
}

static int vsock_snapshot_restore(void *dev, const void *data, size_t len)
{
	struct vsock *v = dev;
	struct vsock_snap s;

	if (!data || len != sizeof(s))
		return -EINVAL;
	memcpy(&s, data, sizeof(s));
	if (s.magic != VSOCK_SNAP_MAGIC || s.version != VSOCK_SNAP_VERSION ||
	    s.guest_cid < 3 || s.guest_cid >= VSOCK_CID_ANY)
		return -EINVAL;
	/* The configured guest_cid wins (the restored machine may run next
	 * to the original); the reset event makes the guest re-read it. */
	conns_detach_all(v);
	v->event_pending = true;
	kick_later(v);
	return 0;
}

static void vsock_destroy(void *dev)
{
	struct vsock *v = dev;
	struct stat st;

	/* Closing the connections below must not re-arm a paused listener
	 * (watch_fd after the core dropped our watches). */
	v->listen_paused = false;
	rx_spare_drop(v);
	conns_detach_all(v);
	zombies_close(v);
	if (v->listen_fd >= 0) {
		v->svc->unwatch_fd(v->h, v->listen_fd);
		close(v->listen_fd);
		/* Remove our socket file, not one somebody put there since. */
		if (stat(v->uds_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
		    st.st_dev == v->listen_dev && st.st_ino == v->listen_ino)
			unlink(v->uds_path);
	}
	if (v->timer_fd >= 0) {
		v->svc->unwatch_fd(v->h, v->timer_fd);
		close(v->timer_fd);
	}
	if (v->kick_fd >= 0) {
		v->svc->unwatch_fd(v->h, v->kick_fd);
		close(v->kick_fd);
	}
	free(v->by_fd);
	free(v);
}

/* Open fds of this process now (/proc/self/fd), or 0 if unknown. */
static unsigned int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned int n = 0;

	if (!d)
		return 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n > 3 ? n - 3 : 0; /* ".", ".." and the DIR's own fd */
}

/*
 * Every connection holds one host socket.  smvmm raises RLIMIT_NOFILE to the
 * hard limit at start-up; if VSOCK_MAX_CONNS still does not fit next to the
 * fds open now plus a reserve for the rest of the VMM, clamp the cap and say
 * so (accept's EMFILE is handled too, but a cap refuses cleanly).
 */
static void size_conn_cap(struct vsock *v)
{
	struct rlimit rl;
	uint64_t room, need;

	v->max_conns = VSOCK_MAX_CONNS;
	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY)
		return;
	need = (uint64_t)open_fds() + VSOCK_FD_RESERVE;
	room = rl.rlim_cur > need ? rl.rlim_cur - need : 0;
	if (room >= VSOCK_MAX_CONNS)
		return;
	v->max_conns = room ? (unsigned int)room : 1;
	v->svc->log(v->h, SMVMM_LOG_WARN,
		    "RLIMIT_NOFILE is %llu: at most %u connections instead of "
		    "%u (raise the limit, e.g. ulimit -n %llu)",
		    (unsigned long long)rl.rlim_cur, v->max_conns,
		    VSOCK_MAX_CONNS,
		    (unsigned long long)(need + VSOCK_MAX_CONNS));
}

static int vsock_create(const struct smvmm_host_services *svc,
			struct smvmm_host *h, struct smvmm_device_info *info,
			void **devp)
{
	struct vsock *v;
	int ret;

	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->svc = svc;
	v->h = h;
	v->listen_fd = v->kick_fd = v->timer_fd = -1;
	v->next_local_port = VSOCK_LOCAL_PORT_BASE;

	ret = parse_config(v);
	if (ret)
		goto err;
	size_conn_cap(v);
	v->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	v->timer_fd = timerfd_create(CLOCK_MONOTONIC,
				     TFD_NONBLOCK | TFD_CLOEXEC);
	if (v->kick_fd < 0 || v->timer_fd < 0) {
		ret = -errno;
		svc->log(h, SMVMM_LOG_ERROR, "eventfd/timerfd: %s",
			 strerror(errno));
		goto err;
	}
	if (SMVMM_SVC_HAS(svc, check_only) && svc->check_only(h)) {
		/* --check: validate uds_path, create or remove nothing. */
		ret = uds_path_free(v, true);
		if (ret)
			goto err;
	} else {
		ret = make_listener(v);
		if (ret)
			goto err;
	}
	/* Watched for the device's lifetime (unwatched in destroy). */
	ret = svc->watch_fd(h, v->kick_fd, SMVMM_FD_IN, kick_cb);
	if (!ret)
		ret = svc->watch_fd(h, v->timer_fd, SMVMM_FD_IN, timer_cb);
	if (!ret && v->listen_fd >= 0)
		ret = svc->watch_fd(h, v->listen_fd, SMVMM_FD_IN, listen_cb);
	if (ret) {
		svc->log(h, SMVMM_LOG_ERROR, "watch_fd: %s", strerror(-ret));
		goto err;
	}

	memset(info, 0, sizeof(*info));
	info->device_id = VIRTIO_ID_VSOCK;
	info->num_queues = VSOCK_NUM_QUEUES;
	info->queue_size_max = VSOCK_QUEUE_SIZE_MAX;
	info->config_size = sizeof(uint64_t);
	*devp = v;
	return 0;

err:
	vsock_destroy(v);
	return ret;
}

static const struct smvmm_device_ops vsock_ops = {
	.struct_size = sizeof(struct smvmm_device_ops),
	.create = vsock_create,
	.destroy = vsock_destroy,
	.get_features = vsock_get_features,
	.set_features = vsock_set_features,
	.config_read = vsock_config_read,
	.config_write = vsock_config_write,
	.activate = vsock_activate,
	.queue_notify = vsock_queue_notify,
	.reset = vsock_reset,
	.snapshot_save = vsock_snapshot_save,
	.snapshot_restore = vsock_snapshot_restore,
};

static const char *const vsock_config_keys[] = { "guest_cid", "uds_path",
						 NULL };

SMVMM_PLUGIN_EXPORT const struct smvmm_plugin_desc smvmm_plugin_v1 = {
	.abi_major = SMVMM_PLUGIN_ABI_MAJOR,
	.abi_minor = SMVMM_PLUGIN_ABI_MINOR,
	.struct_size = sizeof(struct smvmm_plugin_desc),
	.kind = SMVMM_PLUGIN_DEVICE,
	.name = "virtio-vsock",
	.version = "1.0",
	.description = "virtio-vsock (VIRTIO 1.2 §5.10), Firecracker-compatible "
		       "hybrid vsock over Unix sockets",
	.config_keys = vsock_config_keys,
	.ops = &vsock_ops,
};
