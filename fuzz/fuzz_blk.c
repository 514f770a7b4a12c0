/* SPDX-License-Identifier: MIT */
/*
 * fuzz_blk: hostile virtio-blk requests (VIRTIO 1.2 §5.2.6) against the real
 * plugins/virtio-blk through the driver model: request headers, data and
 * status descriptors of any shape, direct or indirect, GET_ID, DISCARD and
 * WRITE_ZEROES segments, flushes, config space, resets.  See devfuzz.h for
 * the op stream; byte 0 picks the features to accept.
 *
 * The image is a sparse 1 MiB temporary file (2048 sectors) shared by all
 * inputs.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include "devfuzz.h"

static char img[64];
static char kv_path[96];

static void cleanup(void)
{
	unlink(img);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int fd;

	(void)argc;
	(void)argv;
	if (!dlopen(FUZZ_PLUGIN_DIR "/smvmm-virtio-blk.so", RTLD_NOW))
		abort();
	snprintf(img, sizeof(img), "/tmp/fuzz_blk.XXXXXX");
	fd = mkstemp(img);
	if (fd < 0 || ftruncate(fd, 1 << 20))
		abort();
	close(fd);
	atexit(cleanup);
	snprintf(kv_path, sizeof(kv_path), "path=%s", img);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *kv[] = { kv_path, "iothreads=1", "discard=on", "serial=fz",
			     "queues=2", "queue_size=16", NULL };
	struct devtest_opts opts = {
		.ram_size = 1u << 20,
		.hole_size = 64u << 10,
		.plugin_dir = FUZZ_PLUGIN_DIR,
		.id = "fuzz",
	};
	struct dfz z = { .p = data, .n = size };
	unsigned int f;
	char err[512];

	f = (unsigned int)dfz_take(&z, 1);
	z.accept = DEVTEST_FEATURES_ALL;
	if (f & 1)
		z.accept &= ~(1ull << 28); /* INDIRECT_DESC */
	if (f & 2)
		z.accept &= ~(1ull << 29); /* EVENT_IDX */
	if (f & 4)
		z.accept &= ~((1ull << 13) | (1ull << 14)); /* DISCARD, WZ */
	if (f & 8)
		z.accept &= ~(1ull << 9); /* FLUSH */
	if (f & 16)
		z.accept &= ~(1ull << 12); /* MQ */
	z.t = devtest_new("virtio-blk", kv, &opts, err, sizeof(err));
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
	dfz_run(&z, NULL);
	devtest_free(z.t);
	return 0;
}
