/* SPDX-License-Identifier: MIT */
/*
 * devfuzz.h: the driver half of the device fuzzers (fuzz_blk, fuzz_vsock).
 * A small interpreter turns fuzz input into driver actions on a struct
 * devtest (tests/driver/devtest.h): descriptor chains with fuzzer-chosen
 * buffers, lengths, directions and contents (direct, indirect, or raw
 * descriptors with arbitrary addresses/flags/next), kicks, used-ring polls,
 * config space accesses and device resets.  Everything reaches the REAL
 * plugin through the REAL loader, virtio-mmio transport and virtqueue code.
 *
 * Op stream (each op byte % 8):
 *   0,1 chain: queue, flags (bit 0 indirect, bits 1-3 descriptors - 1),
 *       per descriptor: len (2 bytes, % 4097), kind (bit 0 device-writable,
 *       bit 1 region 1, bit 2 raw: addr (4 bytes, low RAM gpa space) and
 *       flags/next bytes follow), then len content bytes for a readable one
 *   2   kick a queue         3 poll every used ring
 *   4   run the device's I/O 5 config access: offset, len code, [value]
 *   6   device reset + full re-init
 *   7   device-specific (the harness's dev_op callback)
 *
 * A used element the device returns for a head not in flight, or with more
 * bytes than the chain's writable space, is a device bug: abort().
 */
#ifndef SMVMM_FUZZ_DEVFUZZ_H
#define SMVMM_FUZZ_DEVFUZZ_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devtest.h"

struct dfz {
	struct devtest *t;
	const uint8_t *p;
	size_t n;
	unsigned int nq;
	uint64_t accept;
};

static inline uint64_t dfz_take(struct dfz *z, unsigned int nb)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < nb && z->n; i++) {
		v |= (uint64_t)*z->p << (8 * i);
		z->p++;
		z->n--;
	}
	return v;
}

static inline void dfz_poll(struct dfz *z)
{
	for (unsigned int q = 0; q < z->nq; q++) {
		int rc;

		while ((rc = devtest_poll_used(z->t, (uint16_t)q, NULL,
					       NULL)) == 1)
			;
		if (rc == -EPROTO) {
			fprintf(stderr, "device bug: %s\n",
				devtest_error(z->t));
			abort();
		}
	}
}

static inline void dfz_chain(struct dfz *z)
{
	uint16_t q = (uint16_t)(dfz_take(z, 1) % z->nq);
	unsigned int fl = (unsigned int)dfz_take(z, 1);
	unsigned int nd = 1 + ((fl >> 1) & 7);

	if (devtest_chain_begin(z->t, q, (fl & 1) ? DEVTEST_CHAIN_INDIRECT : 0))
		return;
	for (unsigned int i = 0; i < nd; i++) {
		uint32_t len = (uint32_t)(dfz_take(z, 2) % 4097);
		unsigned int kind = (unsigned int)dfz_take(z, 1);
		bool wr = kind & 1;
		uint64_t gpa;

		if (kind & 4) {
			uint64_t addr = dfz_take(z, 4);
			uint16_t dfl = (uint16_t)dfz_take(z, 1);
			uint16_t next = (uint16_t)dfz_take(z, 1);

			devtest_chain_add_raw(z->t, addr, len, dfl, next);
			continue;
		}
		gpa = devtest_alloc_in(z->t, (kind >> 1) & 1, len ? len : 1,
				       8);
		if (!gpa)
			gpa = devtest_alloc(z->t, len ? len : 1, 8);
		if (!gpa)
			break;
		if (!wr) {
			uint8_t *h = devtest_gpa(z->t, gpa, len ? len : 1);

			for (uint32_t j = 0; j < len && z->n; j++)
				h[j] = (uint8_t)dfz_take(z, 1);
		}
		if (devtest_chain_add(z->t, gpa, len, wr) < 0)
			break;
	}
	if (devtest_chain_submit(z->t) < 0)
		devtest_chain_abort(z->t);
}

/* Run the op stream; dev_op handles op 7 (may be NULL). */
static inline void dfz_run(struct dfz *z, void (*dev_op)(struct dfz *z))
{
	struct devtest_mark mark = devtest_alloc_mark(z->t);

	while (z->n) {
		unsigned int op = (unsigned int)dfz_take(z, 1);

		switch (op % 8) {
		case 0:
		case 1:
			dfz_chain(z);
			break;
		case 2:
			devtest_kick(z->t, (uint16_t)(dfz_take(z, 1) % z->nq));
			break;
		case 3:
			dfz_poll(z);
			break;
		case 4:
			devtest_run_io(z->t, 0);
			dfz_poll(z);
			break;
		case 5: {
			static const uint32_t lens[4] = { 1, 2, 4, 8 };
			uint32_t off = 0x100 + (uint32_t)dfz_take(z, 1);
			unsigned int c = (unsigned int)dfz_take(z, 1);
			uint64_t v = (c & 4) ? dfz_take(z, 8) : 0;

			devtest_access(z->t, off, &v, lens[c & 3], c & 4);
			break;
		}
		case 6:
			devtest_reset(z->t);
			devtest_alloc_release(z->t, mark);
			if (devtest_init_device(z->t, z->accept))
				return;
			break;
		case 7:
			if (dev_op)
				dev_op(z);
			break;
		}
	}
	devtest_run_io(z->t, 0);
	dfz_poll(z);
}

#endif
