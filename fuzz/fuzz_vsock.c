/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vsock: a hostile guest driver AND hostile host peers against the real
 * plugins/virtio-vsock (VIRTIO 1.2 §5.10, Firecracker's hybrid vsock host
 * side) through the driver model.  The guest side is devfuzz.h's op stream
 * (tx packets with any header and payload, rx buffers of any shape); op 7
 * acts as host programs:
 *   sub-op 0: connect to uds_path and send a line ("CONNECT <port>\n" or
 *             anything else, up to 40 bytes)
 *   sub-op 1: write bytes on host connection k
 *   sub-op 2: read what is pending on host connection k
 *   sub-op 3: close host connection k
 *   sub-op 4: accept a guest-initiated connection on "<uds_path>_1024" (a
 *             listener this harness owns) and write bytes to it
 * Byte 0 of the input picks the features to accept.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devfuzz.h"

#define MAX_HOST 8

static char dir[64];
static char sock_path[96], listen_path[112];
static char kv_path[128];
static int listen_fd = -1;
static int host[MAX_HOST];
static unsigned int nhost;

static void cleanup(void)
{
	unlink(sock_path);
	unlink(listen_path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	(void)argc;
	(void)argv;
	if (!dlopen(FUZZ_PLUGIN_DIR "/smvmm-virtio-vsock.so", RTLD_NOW))
		abort();
	snprintf(dir, sizeof(dir), "/tmp/fuzz_vsock.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(sock_path, sizeof(sock_path), "%s/v.sock", dir);
	snprintf(listen_path, sizeof(listen_path), "%s_1024", sock_path);
	snprintf(kv_path, sizeof(kv_path), "uds_path=%s", sock_path);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			   0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", listen_path);
	if (listen_fd < 0 || bind(listen_fd, (void *)&a, sizeof(a)) ||
	    listen(listen_fd, 64))
		abort();
	atexit(cleanup);
	return 0;
}

static int host_add(int fd)
{
	if (nhost == MAX_HOST) {
		close(fd);
		return -1;
	}
	host[nhost++] = fd;
	return 0;
}

static void host_write(struct dfz *z, int fd)
{
	char buf[256];
	size_t len = (size_t)dfz_take(z, 1);

	for (size_t i = 0; i < len; i++)
		buf[i] = (char)dfz_take(z, 1);
	(void)send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void host_op(struct dfz *z)
{
	unsigned int sub = (unsigned int)dfz_take(z, 1);
	unsigned int k = (sub >> 4) % (nhost ? nhost : 1);
	char buf[4096];

	switch (sub % 5) {
	case 0: {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		char line[41];
		size_t len = (size_t)dfz_take(z, 1) % sizeof(line);

		snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
		if (fd < 0)
			abort();
		if (connect(fd, (void *)&a, sizeof(a))) {
			close(fd);
			break;
		}
		for (size_t i = 0; i < len; i++)
			line[i] = (char)dfz_take(z, 1);
		(void)send(fd, line, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		host_add(fd);
		/* Let the plugin accept it and read the line. */
		devtest_run_io(z->t, 0);
		break;
	}
	case 1:
		if (nhost)
			host_write(z, host[k]);
		break;
	case 2:
		if (nhost)
			while (recv(host[k], buf, sizeof(buf), MSG_DONTWAIT) > 0)
				;
		break;
	case 3:
		if (nhost) {
			close(host[k]);
			host[k] = host[--nhost];
		}
		break;
	case 4: {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd >= 0 && !host_add(fd))
			host_write(z, fd);
		break;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *kv[] = { kv_path, "guest_cid=3", NULL };
	struct devtest_opts opts = {
		.ram_size = 1u << 20,
		.hole_size = 64u << 10,
		.queue_size = 16,
		.plugin_dir = FUZZ_PLUGIN_DIR,
		.id = "fuzz",
	};
	struct dfz z = { .p = data, .n = size };
	unsigned int f;
	char err[512];
	int fd;

	f = (unsigned int)dfz_take(&z, 1);
	z.accept = DEVTEST_FEATURES_ALL;
	if (f & 1)
		z.accept &= ~(1ull << 28); /* INDIRECT_DESC */
	if (f & 2)
		z.accept &= ~(1ull << 29); /* EVENT_IDX */
	z.t = devtest_new("virtio-vsock", kv, &opts, err, sizeof(err));
	if (!z.t) {
		fprintf(stderr, "devtest_new: %s\n", err);
		abort();
	}
	if (devtest_init_device(z.t, z.accept)) {
		fprintf(stderr, "init: %s\n", devtest_error(z.t));
		abort();
	}
	z.nq = devtest_num_queues(z.t);
	if (!z.nq)
		abort();
	nhost = 0;
	dfz_run(&z, host_op);
	devtest_free(z.t);
	for (unsigned int i = 0; i < nhost; i++)
		close(host[i]);
	nhost = 0;
	while ((fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
		close(fd);
	return 0;
}
