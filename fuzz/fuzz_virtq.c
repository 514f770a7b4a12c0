/* SPDX-License-Identifier: MIT */
/*
 * fuzz_virtq: a hostile driver against the split virtqueue (core/virtq.c,
 * VIRTIO 1.2 §2.7).
 *
 * Input layout:
 *   [0]      queue size log2 (& 15: 1..32768, out-of-range sizes included)
 *   [1]      feature bits: 1 = INDIRECT_DESC, 2 = EVENT_IDX, 4 = RING_PACKED
 *   [2..7]   desc/avail/used gpa, 16 bits each (the RAM below is 0..0x6000)
 *   [8]      max_size log2
 *   [9]      number of op bytes that follow (each op may take more bytes)
 *   ops, then the rest: initial contents of guest RAM (region 0 then 1).
 *
 * Guest RAM: region 0 = [0, 8 KiB), a hole [8 KiB, 16 KiB), region 1 =
 * [16 KiB, 24 KiB), each backed by its own heap buffer so ASan flags any
 * access outside them.  Invariants checked on every popped chain: each iovec
 * lies inside guest RAM (gmem_is_ram on its guest address), out_len/in_len
 * are the iovec sums, n_out + n_in <= size, head < size, and a head is never
 * handed out twice while in flight.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmem.h"
#include "virtq.h"

#define R0_GPA 0x0000u
#define R1_GPA 0x4000u
#define RSIZE 0x2000u
#define MAX_HELD 64

static uint8_t *ram[2];

#define CHECK(c)                                                        \
	do {                                                            \
		if (!(c)) {                                             \
			fprintf(stderr, "invariant failed: %s (%s:%d)\n", \
				#c, __FILE__, __LINE__);                \
			abort();                                        \
		}                                                       \
	} while (0)

/* Guest address of a host pointer into one of the two buffers, or ~0. */
static uint64_t hva_to_gpa(const void *p, size_t len)
{
	const uint8_t *b = p;

	for (int i = 0; i < 2; i++) {
		if (b >= ram[i] && b < ram[i] + RSIZE) {
			CHECK(len <= (size_t)(ram[i] + RSIZE - b));
			return (i ? R1_GPA : R0_GPA) + (uint64_t)(b - ram[i]);
		}
	}
	return ~0ull;
}

struct in {
	const uint8_t *p;
	size_t n;
};

static unsigned int take(struct in *in, unsigned int nbytes)
{
	unsigned int v = 0;

	for (unsigned int i = 0; i < nbytes; i++) {
		v |= (in->n ? *in->p : 0u) << (8 * i);
		if (in->n) {
			in->p++;
			in->n--;
		}
	}
	return v;
}

static void check_chain(const struct gmem *m, const struct virtq *vq,
			const struct smvmm_chain *c,
			struct smvmm_chain **held, unsigned int nheld)
{
	uint64_t out = 0, in = 0;

	CHECK(c->head < vq->size);
	CHECK(c->n_out + c->n_in <= vq->size);
	CHECK(c->queue == vq->index);
	for (uint32_t i = 0; i < c->n_out + c->n_in; i++) {
		uint64_t gpa = hva_to_gpa(c->iov[i].iov_base, c->iov[i].iov_len);

		CHECK(c->iov[i].iov_len > 0);
		CHECK(gpa != ~0ull);
		CHECK(gmem_is_ram(m, gpa, c->iov[i].iov_len));
		if (i < c->n_out)
			out += c->iov[i].iov_len;
		else
			in += c->iov[i].iov_len;
	}
	CHECK(out == c->out_len);
	CHECK(in == c->in_len);
	CHECK(out + in <= UINT32_MAX);
	for (unsigned int i = 0; i < nheld; i++)
		CHECK(held[i]->head != c->head);
}

/* Chains from before a reset or an index restore: virtq_push must refuse
 * (and free) every one of them. */
static void flush_stale(struct virtq *vq, struct smvmm_chain **held,
			unsigned int *nheld)
{
	for (unsigned int i = 0; i < *nheld; i++)
		CHECK(virtq_push(vq, held[i], 0) < 0);
	*nheld = 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	ram[0] = aligned_alloc(4096, RSIZE);
	ram[1] = aligned_alloc(4096, RSIZE);
	if (!ram[0] || !ram[1])
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct smvmm_chain *held[MAX_HELD];
	unsigned int nheld = 0;
	struct gmem m;
	struct virtq vq;
	uint16_t qsize, max_size;
	uint64_t desc, avail, used, features = 1ull << VIRTIO_F_VERSION_1;
	unsigned int fbits, nops;
	struct in ops;
	int ret;

	qsize = (uint16_t)(1u << (take(&in, 1) & 15));
	fbits = take(&in, 1);
	if (fbits & 1)
		features |= 1ull << VIRTIO_F_INDIRECT_DESC;
	if (fbits & 2)
		features |= 1ull << VIRTIO_F_EVENT_IDX;
	if (fbits & 4)
		features |= 1ull << VIRTIO_F_RING_PACKED;
	if (fbits & 8)
		qsize = (uint16_t)(qsize + 1); /* not a power of two */
	desc = take(&in, 2);
	avail = take(&in, 2);
	used = take(&in, 2);
	max_size = (uint16_t)(1u << (take(&in, 1) & 15));
	nops = take(&in, 1);
	if (nops > in.n)
		nops = (unsigned int)in.n;
	ops.p = in.p;
	ops.n = nops;
	in.p += nops;
	in.n -= nops;

	memset(ram[0], 0, RSIZE);
	memset(ram[1], 0, RSIZE);
	for (int i = 0; i < 2 && in.n; i++) {
		size_t n = in.n < RSIZE ? in.n : RSIZE;

		memcpy(ram[i], in.p, n);
		in.p += n;
		in.n -= n;
	}

	gmem_init(&m);
	CHECK(gmem_add_mapping(&m, R0_GPA, RSIZE, ram[0], -1, 0) >= 0);
	CHECK(gmem_add_mapping(&m, R1_GPA, RSIZE, ram[1], -1, 0) >= 0);
	virtq_init(&vq, &m, 3, max_size);
	ret = virtq_setup(&vq, qsize, desc, avail, used, features);
	if (ret) {
		CHECK(!vq.ready);
		goto out;
	}
	CHECK(vq.ready);

	/* At least a few pops even with no ops: the ring contents are input. */
	if (!ops.n) {
		static const uint8_t dflt[] = { 0, 0, 0, 0, 1, 2, 0, 0 };

		ops.p = dflt;
		ops.n = sizeof(dflt);
	}
	while (ops.n) {
		unsigned int op = take(&ops, 1);
		struct smvmm_chain *c = NULL;

		switch (op % 8) {
		case 0: /* pop */
		case 7:
			ret = virtq_pop(&vq, &c);
			CHECK(ret <= 1);
			if (ret == 1) {
				CHECK(c);
				check_chain(&m, &vq, c, held, nheld);
				if (nheld == MAX_HELD) {
					virtq_push(&vq, held[0], 0);
					memmove(held, held + 1,
						(MAX_HELD - 1) * sizeof(*held));
					nheld--;
				}
				held[nheld++] = c;
			} else {
				CHECK(!c);
				if (ret < 0)
					CHECK(vq.broken);
			}
			break;
		case 1: { /* push held chain #k with `written` */
			unsigned int k = take(&ops, 1);
			uint32_t written = take(&ops, 4);

			if (!nheld)
				break;
			k %= nheld;
			c = held[k];
			memmove(held + k, held + k + 1,
				(nheld - k - 1) * sizeof(*held));
			nheld--;
			ret = virtq_push(&vq, c, written);
			CHECK(ret == 0 || vq.broken || !vq.ready);
			break;
		}
		case 2:
			(void)virtq_should_notify(&vq);
			break;
		case 3: { /* the driver writes a byte of RAM */
			unsigned int off = take(&ops, 2) % (2 * RSIZE);
			uint8_t v = (uint8_t)take(&ops, 1);

			ram[off / RSIZE][off % RSIZE] = v;
			break;
		}
		case 4: /* bump avail->idx */
			if (gmem_is_ram(&m, avail + 2, 2)) {
				uint16_t *idx = gmem_hva(&m, avail + 2, 2);

				*idx = (uint16_t)(*idx + 1 + (take(&ops, 1) & 3));
			}
			break;
		case 5: /* reset and set up again: held chains become stale */
			virtq_reset(&vq);
			ret = virtq_setup(&vq, qsize, desc, avail, used,
					  features);
			flush_stale(&vq, held, &nheld);
			if (ret)
				goto out;
			break;
		case 6: { /* restore indices */
			uint16_t la = (uint16_t)take(&ops, 2);
			uint16_t ui = (uint16_t)take(&ops, 2);

			ret = virtq_set_indices(&vq, la, ui);
			if (ret) {
				CHECK(vq.broken || !vq.ready);
				break;
			}
			/* nothing is in flight after a restore: pushes of
			 * older chains must be refused */
			flush_stale(&vq, held, &nheld);
			(void)virtq_has_avail(&vq);
			break;
		}
		}
	}
out:
	/* Push back what is still held (exercises the stale-chain paths). */
	for (unsigned int i = 0; i < nheld; i++)
		virtq_push(&vq, held[i], 0xffffffffu);
	virtq_reset(&vq);
	gmem_destroy(&m);
	return 0;
}
