/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vhost_user: a hostile front-end against the vhost-user back-end
 * (core/vhost_user.c, QEMU docs/interop/vhost-user.rst) serving the real
 * virtio-rng plugin, or the real virtio-blk plugin (1 MiB sparse image).
 *
 * The messages are written to one end of a socketpair (fds attached with
 * SCM_RIGHTS), the write side is shut down, and vu_server_serve() runs the
 * whole session on the other end until end of stream, as `smvmm vhost-user`
 * does for a real front-end.  A thread drains the replies.
 *
 * Input: [0..1] length L of the message area (bit 15: serve virtio-blk
 * instead of virtio-rng), L bytes of messages, then the
 * contents of the guest RAM memfd (64 KiB).  A message:
 *   request (1), flags (1: bits 0-3 header flags, bits 4-5 fd count,
 *   bit 6 raw 32-bit request follows), [request hi 3 bytes], size (2),
 *   fd kinds (1 if fd count > 0: 2 bits each: the RAM memfd, an eventfd
 *   that is already signalled, a pipe, /dev/null), then `size` payload
 *   bytes (zero-padded when the input runs out).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loader.h"
#include "vhost_user.h"

#define RAM_SIZE (64u << 10)

static struct smvmm_plugin plugin, blk_plugin;
static char img[64], kv_path[96];
static struct device_kv blk_kv[2];

static void cleanup(void)
{
	unlink(img);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[512];
	int fd;

	(void)argc;
	(void)argv;
	/* As `smvmm vhost-user` (vhost_user_cli.c) does: a call/err fd that is
	 * a pipe without a reader must give EPIPE, not kill the back-end. */
	signal(SIGPIPE, SIG_IGN);
	if (loader_open(FUZZ_PLUGIN_DIR "/smvmm-virtio-rng.so",
			SMVMM_PLUGIN_DEVICE, &plugin, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	if (loader_open(FUZZ_PLUGIN_DIR "/smvmm-virtio-blk.so",
			SMVMM_PLUGIN_DEVICE, &blk_plugin, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	snprintf(img, sizeof(img), "/tmp/fuzz_vu_blk.XXXXXX");
	fd = mkstemp(img);
	if (fd < 0 || ftruncate(fd, 1 << 20))
		abort();
	close(fd);
	atexit(cleanup);
	snprintf(kv_path, sizeof(kv_path), "%s", img);
	blk_kv[0] = (struct device_kv){ "path", kv_path, 2 };
	blk_kv[1] = (struct device_kv){ "iothreads", "1", 3 };
	return 0;
}

static void *drain(void *arg)
{
	int fd = *(int *)arg;
	char buf[4096];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

static int take(const uint8_t **p, size_t *n, unsigned int nb)
{
	int v = 0;

	for (unsigned int i = 0; i < nb && *n; i++) {
		v |= (int)**p << (8 * i);
		(*p)++;
		(*n)--;
	}
	return v;
}

static int make_fd(unsigned int kind, int ramfd)
{
	int p[2];

	switch (kind & 3) {
	case 0:
		return dup(ramfd);
	case 1:
		return eventfd(1, EFD_CLOEXEC);
	case 2:
		if (pipe2(p, O_CLOEXEC))
			return -1;
		close(p[0]);
		return p[1];
	default:
		return open("/dev/null", O_RDWR | O_CLOEXEC);
	}
}

/* Send one message; false when the socket is full (stop sending). */
static bool send_msg(int sock, const void *buf, size_t len, const int *fds,
		     unsigned int nfds)
{
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { (void *)buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	size_t off = 0;

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
	while (off < len) {
		ssize_t n;

		iov.iov_base = (uint8_t *)buf + off;
		iov.iov_len = len - off;
		n = sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n <= 0)
			return false;
		off += (size_t)n;
		mh.msg_control = NULL;
		mh.msg_controllen = 0;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t msg[12 + 65536];
	const uint8_t *p = data;
	size_t n = size, mlen;
	struct vu_server *s;
	pthread_t th;
	char err[512];
	int sv[2], ramfd, bufsz = 1 << 20;
	bool use_blk;

	mlen = (size_t)take(&p, &n, 2);
	use_blk = mlen & 0x8000;
	mlen &= 0x7fff;
	if (mlen > n)
		mlen = n;

	ramfd = memfd_create("fuzz-ram", MFD_CLOEXEC);
	if (ramfd < 0 || ftruncate(ramfd, RAM_SIZE))
		abort();
	if (n > mlen) {
		size_t rl = n - mlen < RAM_SIZE ? n - mlen : RAM_SIZE;

		if (pwrite(ramfd, p + mlen, rl, 0) != (ssize_t)rl)
			abort();
	}
	n = mlen;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
	while (n) {
		unsigned int req = (unsigned int)take(&p, &n, 1);
		unsigned int fl = (unsigned int)take(&p, &n, 1);
		unsigned int nfds = (fl >> 4) & 3, kinds = 0;
		uint32_t psize, hdr[3];
		int fds[4];
		bool ok;

		if (fl & 0x40)
			req |= (unsigned int)take(&p, &n, 3) << 8;
		psize = (uint32_t)take(&p, &n, 2);
		if (fl & 0x80)
			psize |= (uint32_t)take(&p, &n, 2) << 16;
		if (nfds)
			kinds = (unsigned int)take(&p, &n, 1);
		hdr[0] = req;
		hdr[1] = fl & 0xf;
		hdr[2] = psize;
		memcpy(msg, hdr, 12);
		/* The server closes the session on payloads over its
		 * limit: send only what it will read. */
		if (psize > VHOST_USER_MAX_PAYLOAD)
			psize = 0;
		memset(msg + 12, 0, psize);
		for (uint32_t i = 0; i < psize && n; i++)
			msg[12 + i] = (uint8_t)take(&p, &n, 1);
		for (unsigned int i = 0; i < nfds; i++)
			fds[i] = make_fd(kinds >> (2 * i), ramfd);
		ok = true;
		for (unsigned int i = 0; i < nfds; i++)
			if (fds[i] < 0)
				ok = false;
		if (ok)
			ok = send_msg(sv[0], msg, 12 + psize, fds, nfds);
		for (unsigned int i = 0; i < nfds; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		if (!ok)
			break;
	}
	shutdown(sv[0], SHUT_WR);

	if (use_blk ? vu_server_new(&s, &blk_plugin.dev_ops, "fuzz", "fuzz", 1,
				    blk_kv, 2, err, sizeof(err))
		    : vu_server_new(&s, &plugin.dev_ops, "fuzz", "fuzz", 1, NULL,
				    0, err, sizeof(err))) {
		fprintf(stderr, "vu_server_new: %s\n", err);
		abort();
	}
	if (pthread_create(&th, NULL, drain, &sv[0]))
		abort();
	(void)vu_server_serve(s, sv[1], -1, -1);
	shutdown(sv[0], SHUT_RD);
	pthread_join(th, NULL);
	vu_server_free(s);
	close(sv[0]);
	close(ramfd);
	return 0;
}
