/* SPDX-License-Identifier: MIT */
/*
 * fuzz_mmio: a hostile vCPU against the virtio-mmio register file
 * (core/virtio_mmio.c, VIRTIO 1.2 §4.2.2) and the device core
 * (core/device.c), with the real virtio-rng plugin behind them (loaded by the
 * real loader through the driver model, tests/driver/devtest.h).
 *
 * Input: a sequence of operations, then guest RAM contents.
 *   [0]  number of op bytes (x4) that follow
 *   op byte: bits 0-2 access length - 1 (1..8), bit 3 write,
 *            bits 4-5: 0/1 register access, 2 RAM write, 3 run I/O
 *   register access: offset (2 bytes, & 0x1ff), value (8 bytes if write)
 *   RAM write: gpa offset (2 bytes, into the RAM below), 8 data bytes
 *   the rest: initial contents of guest RAM region 0.
 *
 * Guest RAM (devtest): region 0 [0, 32 KiB), a 16 KiB hole, region 1
 * [48 KiB, 80 KiB).  No invariants beyond the sanitizers and "no abort":
 * anything a guest writes must give a clear error, never a crash.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devtest.h"
#include "virtio_mmio.h"

#define RAM_SIZE (64u << 10)
#define HOLE_SIZE (16u << 10)

static struct devtest_opts opts = {
	.ram_size = RAM_SIZE,
	.hole_size = HOLE_SIZE,
	.plugin_dir = FUZZ_PLUGIN_DIR,
	.id = "fuzz",
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Keep the plugin loaded across inputs: each devtest_new's dlopen is
	 * then a reference count, not a relocation of the whole object. */
	if (!dlopen(FUZZ_PLUGIN_DIR "/smvmm-virtio-rng.so", RTLD_NOW))
		abort();
	return 0;
}

static unsigned long long take(const uint8_t **p, size_t *n, unsigned int nb)
{
	unsigned long long v = 0;

	for (unsigned int i = 0; i < nb && *n; i++) {
		v |= (unsigned long long)**p << (8 * i);
		(*p)++;
		(*n)--;
	}
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *ops, *rest;
	size_t nops, nrest;
	struct devtest *t;
	char err[256];
	uint8_t *r0;

	t = devtest_new("virtio-rng", NULL, &opts, err, sizeof(err));
	if (!t) {
		fprintf(stderr, "devtest_new: %s\n", err);
		abort();
	}
	nops = size ? (size_t)data[0] * 4 : 0;
	if (size)
		size--, data++;
	if (nops > size)
		nops = size;
	ops = data;
	rest = data + nops;
	nrest = size - nops;
	r0 = devtest_gpa(t, 0, RAM_SIZE / 2);
	if (!r0)
		abort();
	memcpy(r0, rest, nrest < RAM_SIZE / 2 ? nrest : RAM_SIZE / 2);

	while (nops) {
		unsigned int op = (unsigned int)take(&ops, &nops, 1);
		uint32_t len = (op & 7) + 1;
		bool wr = op & 8;

		switch ((op >> 4) & 3) {
		case 0:
		case 1: {
			uint32_t off = (uint32_t)take(&ops, &nops, 2) & 0x1ff;
			uint64_t v = wr ? take(&ops, &nops, 8) : 0;

			devtest_access(t, off, &v, len, wr);
			break;
		}
		case 2: {
			uint32_t off = (uint32_t)take(&ops, &nops, 2);
			uint64_t v = take(&ops, &nops, 8);
			uint8_t *p;

			/* region 0 or region 1, never the hole */
			off %= RAM_SIZE - 8;
			if (off >= RAM_SIZE / 2)
				off += HOLE_SIZE;
			p = devtest_gpa(t, off, 8);
			if (p)
				memcpy(p, &v, 8);
			break;
		}
		case 3:
			devtest_run_io(t, 0);
			break;
		}
	}
	devtest_free(t);
	return 0;
}
