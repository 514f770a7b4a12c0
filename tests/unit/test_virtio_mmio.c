// SPDX-License-Identifier: MIT
/*
 * Unit tests for core/virtio_mmio.c and core/device.c: the register file,
 * status machine and feature negotiation (VIRTIO 1.2 §2.1, §3.1.1, §4.2.2,
 * §4.2.3), driven through vmmio_access like a vCPU would, with an in-test
 * fake device ops table over fake guest RAM (not through the loader).
 */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "device.h"
#include "evloop.h"
#include "gmem.h"
#include "virtio_mmio.h"
#include "virtq.h"

#define RAM_GPA 0x100000ULL
#define RAM_SIZE 0x10000ULL
#define DESC_GPA (RAM_GPA + 0x0000)
#define AVAIL_GPA (RAM_GPA + 0x1000)
#define USED_GPA (RAM_GPA + 0x2000)
#define BUF_GPA (RAM_GPA + 0x4000)
#define QSIZE 8

#define F_VERSION_1 (1ULL << VIRTIO_F_VERSION_1)
#define F_DEV_A (1ULL << 0) /* device-specific bits of the fake */
#define F_DEV_B (1ULL << 5)

/* ---- fake device ------------------------------------------------------ */

struct fake {
	const struct smvmm_host_services *svc;
	struct smvmm_host *h;
	uint64_t features;
	int set_features_rc;
	int set_features_calls;
	uint64_t got_features;
	int activate_rc;
	int activate_calls;
	int reset_calls;
	int notify_calls[4];
	int notify_before_activate;
	uint8_t cfg[16];
	int cfg_reads, cfg_writes;
	int config_rc;
	/* what queue_notify found on the ring */
	int chains;
	int pop_rc;
	uint32_t last_out_len, last_in_len;
	uint8_t first_byte;
	/* fd watch */
	int fd_calls;
	int fd_lock_busy; /* the device lock was held in the callback */
	int unwatch_in_cb;
};

/* What create() reports; tests change it before device_create. */
static struct smvmm_device_info tmpl;
static uint64_t tmpl_features;
static bool tmpl_config_error;
static struct fake *g_fake;

static int fake_create(const struct smvmm_host_services *svc,
		       struct smvmm_host *h, struct smvmm_device_info *info,
		       void **dev)
{
	struct fake *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->svc = svc;
	f->h = h;
	f->features = tmpl_features;
	for (int i = 0; i < 16; i++)
		f->cfg[i] = (uint8_t)(0xc0 + i);
	if (tmpl_config_error)
		svc->config_error(h, "mode", "must be fast or slow, not '%s'",
				  svc->config_get(h, "mode"));
	*info = tmpl;
	*dev = f;
	g_fake = f;
	return 0;
}

static void fake_destroy(void *dev)
{
	if (g_fake == dev)
		g_fake = NULL;
	free(dev);
}

static uint64_t fake_get_features(void *dev)
{
	return ((struct fake *)dev)->features;
}

static int fake_set_features(void *dev, uint64_t features)
{
	struct fake *f = dev;

	f->set_features_calls++;
	f->got_features = features;
	return f->set_features_rc;
}

static int fake_config_read(void *dev, uint32_t offset, void *data,
			    uint32_t len)
{
	struct fake *f = dev;

	f->cfg_reads++;
	ck_assert_uint_le(offset + len, sizeof(f->cfg));
	if (f->config_rc)
		return f->config_rc;
	memcpy(data, f->cfg + offset, len);
	return 0;
}

static int fake_config_write(void *dev, uint32_t offset, const void *data,
			     uint32_t len)
{
	struct fake *f = dev;

	f->cfg_writes++;
	ck_assert_uint_le(offset + len, sizeof(f->cfg));
	memcpy(f->cfg + offset, data, len);
	return 0;
}

static int fake_activate(void *dev)
{
	struct fake *f = dev;

	f->activate_calls++;
	return f->activate_rc;
}

static void fake_queue_notify(void *dev, uint16_t q)
{
	struct fake *f = dev;
	struct smvmm_chain *c;
	int rc;

	if (!f->activate_calls)
		f->notify_before_activate++;
	ck_assert_uint_lt(q, 4);
	f->notify_calls[q]++;
	while ((rc = f->svc->vq_pop(f->h, q, &c)) == 1) {
		f->chains++;
		f->last_out_len = c->out_len;
		f->last_in_len = c->in_len;
		if (c->n_out)
			f->first_byte = *(uint8_t *)c->iov[0].iov_base;
		for (uint32_t i = c->n_out; i < c->n_out + c->n_in; i++)
			memset(c->iov[i].iov_base, 0x5a, c->iov[i].iov_len);
		ck_assert_int_eq(f->svc->vq_push(f->h, c, c->in_len), 0);
	}
	f->pop_rc = rc;
	f->svc->vq_notify(f->h, q);
}

static void fake_reset(void *dev)
{
	struct fake *f = dev;

	f->reset_calls++;
}

static const struct smvmm_device_ops fake_ops = {
	.struct_size = sizeof(struct smvmm_device_ops),
	.create = fake_create,
	.destroy = fake_destroy,
	.get_features = fake_get_features,
	.set_features = fake_set_features,
	.config_read = fake_config_read,
	.config_write = fake_config_write,
	.activate = fake_activate,
	.queue_notify = fake_queue_notify,
	.reset = fake_reset,
};

/* ---- fixture ---------------------------------------------------------- */

static uint8_t *ram;
static struct gmem mem;
static struct smvmm_host host;
static struct vmmio t;
static int irqs;
static uint64_t ioevent_assigned, ioevent_removed;
static struct device_kv kvs[] = { { "mode", "warp", 7 } };

static void irq_cb(void *opaque)
{
	ck_assert_ptr_eq(opaque, &t);
	irqs++;
}

static void ioevent_cb(void *opaque, uint16_t q, bool assign)
{
	ck_assert_ptr_eq(opaque, &host);
	if (assign)
		ioevent_assigned |= 1ULL << q;
	else
		ioevent_removed |= 1ULL << q;
}

static void default_tmpl(void)
{
	tmpl = (struct smvmm_device_info){
		.device_id = 4,
		.vendor_id = 0,
		.num_queues = 2,
		.queue_size_max = 16,
		.config_size = 12,
	};
	tmpl_features = F_VERSION_1 | F_DEV_A | F_DEV_B |
			(1ULL << VIRTIO_F_EVENT_IDX);
	tmpl_config_error = false;
}

static void setup(void)
{
	char err[256] = "";

	ram = aligned_alloc(4096, RAM_SIZE);
	ck_assert_ptr_nonnull(ram);
	memset(ram, 0, RAM_SIZE);
	gmem_init(&mem);
	ck_assert_int_ge(gmem_add_mapping(&mem, RAM_GPA, RAM_SIZE, ram, -1, 0),
			 0);
	default_tmpl();
	irqs = 0;
	ioevent_assigned = ioevent_removed = 0;
	device_host_init(&host, "fake0", "test.ini", 3, kvs, 1, &mem, NULL);
	ck_assert_msg(device_create(&host, &fake_ops, err, sizeof(err)) == 0,
		      "%s", err);
	vmmio_init(&t, &host, irq_cb, &t, ioevent_cb, &host);
}

static void teardown(void)
{
	vmmio_destroy(&t);
	device_destroy(&host);
	gmem_destroy(&mem);
	free(ram);
}

static uint32_t rd(uint64_t off)
{
	uint8_t b[4] = { 0xee, 0xee, 0xee, 0xee };
	uint32_t v;

	vmmio_access(&t, off, b, 4, false);
	memcpy(&v, b, 4);
	return le32toh(v);
}

static void wr(uint64_t off, uint32_t v)
{
	uint32_t le = htole32(v);

	vmmio_access(&t, off, (uint8_t *)&le, 4, true);
}

static uint32_t status(void)
{
	return rd(VIRTIO_MMIO_STATUS);
}

static uint64_t device_features_reg(void)
{
	uint64_t f;

	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	f = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	f |= (uint64_t)rd(VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	return f;
}

static void write_driver_features(uint64_t f)
{
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
}

/* §3.1.1 steps 1-6; returns the status read back after FEATURES_OK. */
static uint32_t negotiate(uint64_t driver_features)
{
	wr(VIRTIO_MMIO_STATUS, 0);
	ck_assert_uint_eq(status(), 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	write_driver_features(driver_features);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE |
				       VIRTIO_STATUS_DRIVER |
				       VIRTIO_STATUS_FEATURES_OK);
	return status();
}

static void put_addr(uint32_t lo_reg, uint64_t a)
{
	wr(lo_reg, (uint32_t)a);
	wr(lo_reg + 4, (uint32_t)(a >> 32));
}

/* §4.2.3.2 virtqueue configuration for queue q; returns QueueReady. */
static uint32_t setup_queue(uint32_t q, uint32_t num, uint64_t desc,
			    uint64_t avail, uint64_t used)
{
	wr(VIRTIO_MMIO_QUEUE_SEL, q);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	ck_assert_uint_ne(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, num);
	put_addr(VIRTIO_MMIO_QUEUE_DESC_LOW, desc);
	put_addr(VIRTIO_MMIO_QUEUE_DRIVER_LOW, avail);
	put_addr(VIRTIO_MMIO_QUEUE_DEVICE_LOW, used);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	return rd(VIRTIO_MMIO_QUEUE_READY);
}

#define ST_FEAT (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | \
		 VIRTIO_STATUS_FEATURES_OK)
#define ST_LIVE (ST_FEAT | VIRTIO_STATUS_DRIVER_OK)

/* Full init of queue 0 (QSIZE entries at DESC/AVAIL/USED_GPA). */
static void full_init(uint64_t features)
{
	ck_assert_uint_eq(negotiate(features), ST_FEAT);
	ck_assert_uint_eq(setup_queue(0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA),
			  1);
	wr(VIRTIO_MMIO_STATUS, ST_LIVE);
	ck_assert_uint_eq(status(), ST_LIVE);
}

static void *gpa(uint64_t a)
{
	return ram + (a - RAM_GPA);
}

/* Post one 2-descriptor chain (16 readable + 32 writable bytes). */
static void post_chain(uint16_t slot_idx, uint16_t head)
{
	struct virtq_desc *d = gpa(DESC_GPA);
	uint16_t *avail = gpa(AVAIL_GPA);
	uint16_t next = (uint16_t)((head + 1) % QSIZE);

	d[head] = (struct virtq_desc){ .addr = BUF_GPA + head * 0x100,
				       .len = 16,
				       .flags = VIRTQ_DESC_F_NEXT,
				       .next = next };
	d[next] = (struct virtq_desc){ .addr = BUF_GPA + head * 0x100 + 0x80,
				       .len = 32,
				       .flags = VIRTQ_DESC_F_WRITE };
	*(uint8_t *)gpa(BUF_GPA + head * 0x100) = (uint8_t)(0x70 + head);
	avail[2 + slot_idx % QSIZE] = head;
	__atomic_store_n(&avail[1], (uint16_t)(slot_idx + 1), __ATOMIC_RELEASE);
}

/* ---- tests ------------------------------------------------------------ */

START_TEST(ids)
{
	ck_assert_uint_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_VERSION), 2);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_ID), 4);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_DEFAULT_VENDOR);
	/* "SMVM" in guest memory order */
	ck_assert_uint_eq(VIRTIO_MMIO_DEFAULT_VENDOR & 0xff, 'S');
	host.info.vendor_id = 0x1af4;
	ck_assert_uint_eq(rd(VIRTIO_MMIO_VENDOR_ID), 0x1af4);
	/* No shared memory regions: length -1 (§4.2.2). */
	wr(VIRTIO_MMIO_SHM_SEL, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffff);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_SHM_LEN_HIGH), 0xffffffff);
	/* Read-only registers ignore writes. */
	wr(VIRTIO_MMIO_MAGIC_VALUE, 0);
	wr(VIRTIO_MMIO_VERSION, 1);
	wr(VIRTIO_MMIO_DEVICE_ID, 9);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_VERSION), 2);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_ID), 4);
	/* Unknown offsets and write-only registers read 0. */
	ck_assert_uint_eq(rd(0x018), 0);
	ck_assert_uint_eq(rd(0x0c0), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NOTIFY), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_ACK), 0);
	wr(0x0f0, 0xffffffff); /* unknown: ignored */
	ck_assert_uint_eq(status(), 0);
}
END_TEST

START_TEST(device_features_sel)
{
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES),
			  (uint32_t)tmpl_features);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 1); /* bit 32 */
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0xffffffff);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0);
	ck_assert_uint_eq(device_features_reg(), tmpl_features);
}
END_TEST

START_TEST(negotiation_ok)
{
	uint64_t f = F_VERSION_1 | F_DEV_B;

	ck_assert_uint_eq(negotiate(f), ST_FEAT);
	ck_assert_int_eq(g_fake->set_features_calls, 1);
	ck_assert_uint_eq(g_fake->got_features, f);
	ck_assert_uint_eq(host.features, f);
	/* After FEATURES_OK, DriverFeatures is frozen (§3.1.1). */
	write_driver_features(F_VERSION_1 | F_DEV_A);
	ck_assert_uint_eq(t.driver_features, f);
	/* DriverFeaturesSel > 1 writes are ignored, not wrapped. */
	wr(VIRTIO_MMIO_STATUS, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 2);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
	ck_assert_uint_eq(t.driver_features, 0);
}
END_TEST

START_TEST(negotiation_not_subset)
{
	/* Bit 3 is not offered. */
	ck_assert_uint_eq(negotiate(F_VERSION_1 | (1ULL << 3)),
			  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	ck_assert_int_eq(g_fake->set_features_calls, 0);
	/* High word, bit 40, not offered either. */
	ck_assert_uint_eq(negotiate(F_VERSION_1 | (1ULL << 40)),
			  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	ck_assert_int_eq(g_fake->set_features_calls, 0);
	ck_assert_uint_eq(host.features, 0);
}
END_TEST

START_TEST(negotiation_needs_version_1)
{
	ck_assert_uint_eq(negotiate(F_DEV_A),
			  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	ck_assert_int_eq(g_fake->set_features_calls, 0);
	/* DRIVER_OK without FEATURES_OK is ignored, no activate. */
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				       VIRTIO_STATUS_DRIVER_OK);
	ck_assert_uint_eq(status(),
			  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	ck_assert_int_eq(g_fake->activate_calls, 0);
}
END_TEST

START_TEST(negotiation_refused_by_plugin)
{
	g_fake->set_features_rc = -ENOTSUP;
	ck_assert_uint_eq(negotiate(F_VERSION_1 | F_DEV_A),
			  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	ck_assert_int_eq(g_fake->set_features_calls, 1);
	ck_assert_uint_eq(host.features, 0);
	/* The driver may retry with fewer features (§3.1.1 step 6). */
	g_fake->set_features_rc = 0;
	ck_assert_uint_eq(negotiate(F_VERSION_1), ST_FEAT);
	ck_assert_uint_eq(host.features, F_VERSION_1);
}
END_TEST

START_TEST(driver_features_only_in_driver_state)
{
	/* Before DRIVER: ignored. */
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	write_driver_features(F_VERSION_1);
	ck_assert_uint_eq(t.driver_features, 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	write_driver_features(F_VERSION_1);
	ck_assert_uint_eq(t.driver_features, F_VERSION_1);
}
END_TEST

START_TEST(status_rules)
{
	/* DRIVER without ACKNOWLEDGE, FEATURES_OK without DRIVER: ignored. */
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_DRIVER);
	ck_assert_uint_eq(status(), 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE |
				       VIRTIO_STATUS_FEATURES_OK);
	ck_assert_uint_eq(status(), VIRTIO_STATUS_ACKNOWLEDGE);
	ck_assert_int_eq(g_fake->set_features_calls, 0);
	/* All of 1-3 in one write works in order. */
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	write_driver_features(F_VERSION_1);
	/* The driver cannot clear bits, nor set NEEDS_RESET or reserved. */
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_NEEDS_RESET |
				       0x30);
	ck_assert_uint_eq(status(),
			  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	/* FAILED sticks and blocks further progress until reset. */
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				       VIRTIO_STATUS_FAILED);
	ck_assert_uint_eq(status(), VIRTIO_STATUS_ACKNOWLEDGE |
					    VIRTIO_STATUS_DRIVER |
					    VIRTIO_STATUS_FAILED);
	wr(VIRTIO_MMIO_STATUS, ST_FEAT | VIRTIO_STATUS_FAILED);
	ck_assert(!(status() & VIRTIO_STATUS_FEATURES_OK));
	ck_assert_int_eq(g_fake->set_features_calls, 0);
	wr(VIRTIO_MMIO_STATUS, 0);
	ck_assert_uint_eq(status(), 0);
	ck_assert_uint_eq(negotiate(F_VERSION_1), ST_FEAT);
}
END_TEST

START_TEST(full_init_and_kick)
{
	uint8_t *in;

	/* §3.1.1: reset, ACK, DRIVER, read features, write subset, FEATURES_OK,
	 * re-read status, queue setup (§4.2.3.2), DRIVER_OK. */
	wr(VIRTIO_MMIO_STATUS, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_VERSION), 2);
	ck_assert_uint_ne(rd(VIRTIO_MMIO_DEVICE_ID), 0);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	ck_assert(device_features_reg() & F_VERSION_1);
	write_driver_features(F_VERSION_1 | F_DEV_A);
	wr(VIRTIO_MMIO_STATUS, ST_FEAT);
	ck_assert_uint_eq(status(), ST_FEAT);
	/* Queue 0: QueueNumMax is the plugin's queue_size_max. */
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 16);
	ck_assert_uint_eq(setup_queue(0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA),
			  1);
	ck_assert(host.q[0].vq.ready);
	ck_assert_uint_eq(host.q[0].vq.size, QSIZE);
	ck_assert_uint_eq(host.q[0].vq.desc_gpa, DESC_GPA);
	ck_assert_uint_eq(host.q[0].vq.avail_gpa, AVAIL_GPA);
	ck_assert_uint_eq(host.q[0].vq.used_gpa, USED_GPA);
	ck_assert_int_eq(g_fake->activate_calls, 0);
	ck_assert_uint_eq(ioevent_assigned, 0);
	wr(VIRTIO_MMIO_STATUS, ST_LIVE);
	ck_assert_uint_eq(status(), ST_LIVE);
	ck_assert_int_eq(g_fake->activate_calls, 1);
	/* Only the ready queue gets an ioeventfd. */
	ck_assert_uint_eq(ioevent_assigned, 1);

	/* A kick reaches queue_notify, which pops, pushes and notifies. */
	post_chain(0, 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_int_eq(g_fake->notify_calls[0], 1);
	ck_assert_int_eq(g_fake->notify_before_activate, 0);
	ck_assert_int_eq(g_fake->chains, 1);
	ck_assert_int_eq(g_fake->pop_rc, 0);
	ck_assert_uint_eq(g_fake->last_out_len, 16);
	ck_assert_uint_eq(g_fake->last_in_len, 32);
	ck_assert_uint_eq(g_fake->first_byte, 0x70);
	in = gpa(BUF_GPA + 0x80);
	ck_assert_uint_eq(in[0], 0x5a);
	ck_assert_uint_eq(in[31], 0x5a);
	/* Used ring: idx 1, element {head 0, len 32}. */
	ck_assert_uint_eq(*(uint16_t *)gpa(USED_GPA + 2), 1);
	ck_assert_uint_eq(*(uint32_t *)gpa(USED_GPA + 4), 0);
	ck_assert_uint_eq(*(uint32_t *)gpa(USED_GPA + 8), 32);
	/* Used buffer notification: InterruptStatus bit 0 and one irq. */
	ck_assert_int_eq(irqs, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS),
			  VIRTIO_MMIO_INT_VRING);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);

	/* A kick for queue 1, which is not ready, does not reach the plugin. */
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	ck_assert_int_eq(g_fake->notify_calls[1], 0);
	/* Nor do out-of-range kicks. */
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 2);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0x10000);
	vmmio_queue_notify(&t, 7);
	ck_assert_int_eq(g_fake->notify_calls[0], 1);
	ck_assert_int_eq(g_fake->notify_calls[1], 0);

	/* The I/O-thread path works the same. */
	post_chain(1, 2);
	vmmio_queue_notify(&t, 0);
	ck_assert_int_eq(g_fake->notify_calls[0], 2);
	ck_assert_int_eq(g_fake->chains, 2);
	ck_assert_uint_eq(g_fake->first_byte, 0x72);
}
END_TEST

START_TEST(kick_before_driver_ok_delivered_at_activate)
{
	ck_assert_uint_eq(negotiate(F_VERSION_1), ST_FEAT);
	ck_assert_uint_eq(setup_queue(0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA),
			  1);
	post_chain(0, 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_int_eq(g_fake->notify_calls[0], 0);
	wr(VIRTIO_MMIO_STATUS, ST_LIVE);
	ck_assert_int_eq(g_fake->activate_calls, 1);
	ck_assert_int_eq(g_fake->notify_calls[0], 1);
	ck_assert_int_eq(g_fake->notify_before_activate, 0);
	ck_assert_int_eq(g_fake->chains, 1);
}
END_TEST

/* The vCPU thread of the DRIVER_OK write, for the race test below. */
static void *write_driver_ok(void *arg)
{
	(void)arg;
	wr(VIRTIO_MMIO_STATUS, ST_LIVE);
	return NULL;
}

/*
 * A kick that reaches vmmio_queue_notify after DRIVER_OK is in Status but
 * before activate() ran (an ioeventfd kick written before DRIVER_OK that
 * the I/O thread only handles now) must not be lost: the driver will not
 * kick again for buffers it already made available.  The test holds the
 * device lock to stop the DRIVER_OK write in that window, then kicks as the
 * I/O thread would (same thread: the lock is recursive).
 */
START_TEST(kick_racing_driver_ok_not_lost)
{
	pthread_t vcpu;

	ck_assert_uint_eq(negotiate(F_VERSION_1), ST_FEAT);
	ck_assert_uint_eq(setup_queue(0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA),
			  1);
	post_chain(0, 0);
	pthread_mutex_lock(&host.lock);
	ck_assert_int_eq(pthread_create(&vcpu, NULL, write_driver_ok, NULL), 0);
	while (!(__atomic_load_n(&t.status, __ATOMIC_ACQUIRE) &
		 VIRTIO_STATUS_DRIVER_OK))
		usleep(1000);
	/* DRIVER_OK is set; activate() waits for the device lock. */
	vmmio_queue_notify(&t, 0);
	ck_assert_int_eq(g_fake->activate_calls, 0);
	pthread_mutex_unlock(&host.lock);
	pthread_join(vcpu, NULL);
	ck_assert_int_eq(g_fake->activate_calls, 1);
	ck_assert_int_eq(g_fake->notify_before_activate, 0);
	ck_assert_int_eq(g_fake->notify_calls[0], 1);
	ck_assert_int_eq(g_fake->chains, 1);
}
END_TEST

START_TEST(interrupt_status_ack_and_config_generation)
{
	uint32_t gen0 = rd(VIRTIO_MMIO_CONFIG_GENERATION);

	full_init(F_VERSION_1);
	g_fake->svc->config_changed(g_fake->h);
	ck_assert_int_eq(irqs, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS),
			  VIRTIO_MMIO_INT_CONFIG);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_CONFIG_GENERATION), gen0 + 1);
	/* Used buffer notification on top: both bits. */
	post_chain(0, 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_int_eq(irqs, 2);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS),
			  VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
	/* ACK clears only the bits written. */
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS),
			  VIRTIO_MMIO_INT_VRING);
	/* InterruptStatus is read-only. */
	wr(VIRTIO_MMIO_INTERRUPT_STATUS, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS),
			  VIRTIO_MMIO_INT_VRING);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, 0xffffffff);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	/* ConfigGeneration is read-only too. */
	wr(VIRTIO_MMIO_CONFIG_GENERATION, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_CONFIG_GENERATION), gen0 + 1);
}
END_TEST

START_TEST(no_interrupt_flag_suppresses)
{
	uint16_t *avail = gpa(AVAIL_GPA);

	full_init(F_VERSION_1); /* no EVENT_IDX: the flag is honoured */
	avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
	post_chain(0, 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_int_eq(g_fake->chains, 1);
	ck_assert_int_eq(irqs, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}
END_TEST

START_TEST(queue_regs_locked_when_ready_and_after_driver_ok)
{
	ck_assert_uint_eq(negotiate(F_VERSION_1), ST_FEAT);
	ck_assert_uint_eq(setup_queue(0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA),
			  1);
	/* Queue 0 is ready: its registers are frozen. */
	wr(VIRTIO_MMIO_QUEUE_NUM, 4);
	put_addr(VIRTIO_MMIO_QUEUE_DESC_LOW, RAM_GPA + 0x8000);
	put_addr(VIRTIO_MMIO_QUEUE_DRIVER_LOW, RAM_GPA + 0x9000);
	put_addr(VIRTIO_MMIO_QUEUE_DEVICE_LOW, RAM_GPA + 0xa000);
	ck_assert_uint_eq(t.qregs[0].num, QSIZE);
	ck_assert_uint_eq(t.qregs[0].desc, DESC_GPA);
	ck_assert_uint_eq(t.qregs[0].driver, AVAIL_GPA);
	ck_assert_uint_eq(t.qregs[0].device, USED_GPA);
	ck_assert_uint_eq(host.q[0].vq.size, QSIZE);

	/* QueueReady=0 before DRIVER_OK unsets it (registers kept)... */
	wr(VIRTIO_MMIO_QUEUE_READY, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	ck_assert(!host.q[0].vq.ready);
	ck_assert_uint_eq(t.qregs[0].num, QSIZE);
	/* ...and then the registers are writable again. */
	wr(VIRTIO_MMIO_QUEUE_NUM, 4);
	ck_assert_uint_eq(t.qregs[0].num, 4);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 1);
	ck_assert_uint_eq(host.q[0].vq.size, 4);

	/* After DRIVER_OK even a queue that is not ready is frozen. */
	wr(VIRTIO_MMIO_STATUS, ST_LIVE);
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	wr(VIRTIO_MMIO_QUEUE_NUM, 8);
	put_addr(VIRTIO_MMIO_QUEUE_DESC_LOW, RAM_GPA + 0x8000);
	ck_assert_uint_eq(t.qregs[1].num, 0);
	ck_assert_uint_eq(t.qregs[1].desc, 0);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	ck_assert(!host.q[1].vq.ready);
	/* And a ready queue cannot be stopped (no VIRTIO_F_RING_RESET). */
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_READY, 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 1);
	ck_assert_uint_eq(status(), ST_LIVE);
}
END_TEST

START_TEST(queue_ready_needs_features_ok)
{
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, QSIZE);
	put_addr(VIRTIO_MMIO_QUEUE_DESC_LOW, DESC_GPA);
	put_addr(VIRTIO_MMIO_QUEUE_DRIVER_LOW, AVAIL_GPA);
	put_addr(VIRTIO_MMIO_QUEUE_DEVICE_LOW, USED_GPA);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	ck_assert(!(status() & VIRTIO_STATUS_NEEDS_RESET));
	/* Values other than 0/1 are ignored. */
	write_driver_features(F_VERSION_1);
	wr(VIRTIO_MMIO_STATUS, ST_FEAT);
	wr(VIRTIO_MMIO_QUEUE_READY, 2);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 1);
}
END_TEST

START_TEST(bad_queue_sel)
{
	static const uint32_t sels[] = { 2, 63, 64, 0xffff, 0xffffffff };

	ck_assert_uint_eq(negotiate(F_VERSION_1), ST_FEAT);
	for (size_t i = 0; i < sizeof(sels) / sizeof(sels[0]); i++) {
		wr(VIRTIO_MMIO_QUEUE_SEL, sels[i]);
		ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
		ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
		wr(VIRTIO_MMIO_QUEUE_NUM, QSIZE);
		put_addr(VIRTIO_MMIO_QUEUE_DESC_LOW, DESC_GPA);
		put_addr(VIRTIO_MMIO_QUEUE_DRIVER_LOW, AVAIL_GPA);
		put_addr(VIRTIO_MMIO_QUEUE_DEVICE_LOW, USED_GPA);
		wr(VIRTIO_MMIO_QUEUE_READY, 1);
		ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	}
	/* Nothing leaked into a real queue. */
	for (unsigned int q = 0; q < SMVMM_MAX_QUEUES; q++) {
		ck_assert_uint_eq(t.qregs[q].num, 0);
		ck_assert_uint_eq(t.qregs[q].desc, 0);
		ck_assert(!host.q[q].vq.ready);
	}
	ck_assert_uint_eq(status(), ST_FEAT);
	/* The last valid queue still works. */
	ck_assert_uint_eq(setup_queue(1, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA),
			  1);
}
END_TEST

static void cfg_rd(uint32_t off, void *buf, uint32_t len)
{
	memset(buf, 0xee, len);
	vmmio_access(&t, VIRTIO_MMIO_CONFIG + off, buf, len, false);
}

START_TEST(config_space)
{
	uint8_t b[8];
	uint64_t v8;
	uint32_t v4;

	/* In range: 1, 2, 4 and 8 bytes. */
	cfg_rd(0, b, 1);
	ck_assert_uint_eq(b[0], 0xc0);
	cfg_rd(2, b, 2);
	ck_assert_uint_eq(b[0], 0xc2);
	ck_assert_uint_eq(b[1], 0xc3);
	cfg_rd(8, &v4, 4); /* last word: 8 + 4 == config_size */
	ck_assert_uint_eq(v4, 0xcbcac9c8);
	cfg_rd(0, &v8, 8);
	ck_assert_uint_eq(v8, 0xc7c6c5c4c3c2c1c0ULL);
	ck_assert_int_eq(g_fake->cfg_reads, 4);

	/* Out of range or odd size: reads 0, plugin not called. */
	cfg_rd(12, &v4, 4);
	ck_assert_uint_eq(v4, 0);
	cfg_rd(9, &v4, 4); /* straddles the end */
	ck_assert_uint_eq(v4, 0);
	cfg_rd(8, &v8, 8);
	ck_assert_uint_eq(v8, 0);
	cfg_rd(0xfc, &v4, 4); /* end of the window */
	ck_assert_uint_eq(v4, 0);
	cfg_rd(0, b, 3);
	ck_assert_uint_eq(b[0] | b[1] | b[2], 0);
	cfg_rd(0, b, 0);
	ck_assert_int_eq(g_fake->cfg_reads, 4);

	/* Writes: in range reach the plugin, the rest is dropped. */
	v4 = 0x11223344;
	vmmio_access(&t, VIRTIO_MMIO_CONFIG + 4, (uint8_t *)&v4, 4, true);
	ck_assert_int_eq(g_fake->cfg_writes, 1);
	ck_assert_uint_eq(g_fake->cfg[4], 0x44);
	vmmio_access(&t, VIRTIO_MMIO_CONFIG + 10, (uint8_t *)&v4, 4, true);
	vmmio_access(&t, VIRTIO_MMIO_CONFIG + 0, (uint8_t *)&v4, 3, true);
	ck_assert_int_eq(g_fake->cfg_writes, 1);
	ck_assert_uint_eq(g_fake->cfg[10], 0xca);

	/* A plugin error reads as zeros. */
	g_fake->config_rc = -EIO;
	cfg_rd(0, &v4, 4);
	ck_assert_uint_eq(v4, 0);
}
END_TEST

START_TEST(misaligned_register_access)
{
	uint8_t b[8];
	uint16_t v2 = VIRTIO_STATUS_ACKNOWLEDGE;

	memset(b, 0xee, sizeof(b));
	vmmio_access(&t, VIRTIO_MMIO_MAGIC_VALUE, b, 2, false);
	ck_assert_uint_eq(b[0] | b[1], 0);
	ck_assert_uint_eq(b[2], 0xee);
	memset(b, 0xee, sizeof(b));
	vmmio_access(&t, VIRTIO_MMIO_MAGIC_VALUE + 2, b, 4, false);
	ck_assert_uint_eq(b[0] | b[1] | b[2] | b[3], 0);
	memset(b, 0xee, sizeof(b));
	vmmio_access(&t, VIRTIO_MMIO_MAGIC_VALUE, b, 8, false);
	for (int i = 0; i < 8; i++)
		ck_assert_uint_eq(b[i], 0);
	memset(b, 0xee, sizeof(b));
	vmmio_access(&t, VIRTIO_MMIO_MAGIC_VALUE, b, 1, false);
	ck_assert_uint_eq(b[0], 0);
	/* Narrow or misaligned writes to Status are ignored. */
	vmmio_access(&t, VIRTIO_MMIO_STATUS, (uint8_t *)&v2, 2, true);
	vmmio_access(&t, VIRTIO_MMIO_STATUS, (uint8_t *)&v2, 1, true);
	vmmio_access(&t, VIRTIO_MMIO_STATUS + 1, (uint8_t *)&v2, 1, true);
	memset(b, 0, sizeof(b));
	b[0] = VIRTIO_STATUS_ACKNOWLEDGE;
	vmmio_access(&t, VIRTIO_MMIO_STATUS + 2, b, 4, true);
	ck_assert_uint_eq(status(), 0);
	/* The 4-byte aligned one works. */
	wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	ck_assert_uint_eq(status(), VIRTIO_STATUS_ACKNOWLEDGE);
}
END_TEST

START_TEST(reset_clears_everything)
{
	int resets;

	full_init(F_VERSION_1 | F_DEV_A);
	resets = g_fake->reset_calls;
	post_chain(0, 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_ne(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_QUEUE_SEL, 1);
	ck_assert_uint_eq(ioevent_removed, 0);

	wr(VIRTIO_MMIO_STATUS, 0);
	ck_assert_int_eq(g_fake->reset_calls, resets + 1);
	ck_assert_uint_eq(status(), 0);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	ck_assert_uint_eq(ioevent_removed, 1);
	ck_assert_uint_eq(t.ioevent_mask, 0);
	ck_assert_uint_eq(t.device_features_sel, 0);
	ck_assert_uint_eq(t.driver_features_sel, 0);
	ck_assert_uint_eq(t.driver_features, 0);
	ck_assert_uint_eq(t.queue_sel, 0);
	ck_assert(!t.activated);
	for (unsigned int q = 0; q < SMVMM_MAX_QUEUES; q++) {
		ck_assert_uint_eq(t.qregs[q].num, 0);
		ck_assert_uint_eq(t.qregs[q].desc, 0);
		ck_assert_uint_eq(t.qregs[q].driver, 0);
		ck_assert_uint_eq(t.qregs[q].device, 0);
	}
	ck_assert_uint_eq(host.features, 0);
	ck_assert(!host.q[0].vq.ready);
	ck_assert_uint_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	/* DeviceFeaturesSel back to 0: the low word is visible. */
	ck_assert_uint_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES),
			  (uint32_t)tmpl_features);
	/* Kicks after reset go nowhere. */
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_int_eq(g_fake->notify_calls[0], 1);

	/* And the device can be brought up again from scratch. */
	memset(ram, 0, RAM_SIZE);
	full_init(F_VERSION_1);
	ck_assert_int_eq(g_fake->activate_calls, 2);
	post_chain(0, 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_int_eq(g_fake->chains, 2);
}
END_TEST

START_TEST(needs_reset_on_bad_queue_setup)
{
	ck_assert_uint_eq(negotiate(F_VERSION_1), ST_FEAT);
	/* Descriptor table not 16-byte aligned (§2.7). */
	ck_assert_uint_eq(setup_queue(0, QSIZE, DESC_GPA + 8, AVAIL_GPA,
				      USED_GPA), 0);
	ck_assert(status() & VIRTIO_STATUS_NEEDS_RESET);
	ck_assert(host.q[0].vq.broken);
	/* No DRIVER_OK yet: no config interrupt. */
	ck_assert_int_eq(irqs, 0);
	/* DRIVER_OK now: not activated, config interrupt (§2.1.2). */
	wr(VIRTIO_MMIO_STATUS, ST_LIVE);
	ck_assert_int_eq(g_fake->activate_calls, 0);
	ck_assert_uint_eq(status(), ST_LIVE | VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_int_eq(irqs, 1);
	ck_assert(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	/* Reset recovers. */
	wr(VIRTIO_MMIO_STATUS, 0);
	ck_assert_uint_eq(status(), 0);
	ck_assert(!host.q[0].vq.broken);
	full_init(F_VERSION_1);
	ck_assert_int_eq(g_fake->activate_calls, 1);
}
END_TEST

START_TEST(needs_reset_other_bad_setups)
{
	/* Size not a power of two. */
	ck_assert_uint_eq(negotiate(F_VERSION_1), ST_FEAT);
	ck_assert_uint_eq(setup_queue(0, 6, DESC_GPA, AVAIL_GPA, USED_GPA), 0);
	ck_assert(status() & VIRTIO_STATUS_NEEDS_RESET);
	/* Above QueueNumMax, even beyond 16 bits. */
	ck_assert_uint_eq(negotiate(F_VERSION_1), ST_FEAT);
	ck_assert_uint_eq(setup_queue(0, 0x10008, DESC_GPA, AVAIL_GPA,
				      USED_GPA), 0);
	ck_assert(status() & VIRTIO_STATUS_NEEDS_RESET);
	/* Used ring outside guest RAM. */
	ck_assert_uint_eq(negotiate(F_VERSION_1), ST_FEAT);
	ck_assert_uint_eq(setup_queue(1, QSIZE, DESC_GPA, AVAIL_GPA,
				      RAM_GPA + RAM_SIZE - 8), 0);
	ck_assert(status() & VIRTIO_STATUS_NEEDS_RESET);
	wr(VIRTIO_MMIO_STATUS, 0);
	ck_assert_uint_eq(status(), 0);
}
END_TEST

START_TEST(needs_reset_on_broken_ring)
{
	uint16_t *avail = gpa(AVAIL_GPA);

	full_init(F_VERSION_1);
	/* Head index >= queue size: the queue breaks on pop. */
	avail[2] = QSIZE + 3;
	__atomic_store_n(&avail[1], 1, __ATOMIC_RELEASE);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_int_lt(g_fake->pop_rc, 0);
	ck_assert_int_eq(g_fake->chains, 0);
	ck_assert_uint_eq(status(), ST_LIVE | VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_int_eq(irqs, 1); /* config interrupt, once */
	ck_assert_uint_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS),
			  VIRTIO_MMIO_INT_CONFIG);
	/* The queue is broken: no more kicks reach the plugin, no more irqs. */
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_int_eq(g_fake->notify_calls[0], 1);
	ck_assert_int_eq(irqs, 1);
	/* The plugin popping again gets an error, no second interrupt. */
	{
		struct smvmm_chain *c = (void *)1;

		ck_assert_int_lt(g_fake->svc->vq_pop(&host, 0, &c), 0);
		ck_assert_ptr_null(c);
	}
	ck_assert_int_eq(irqs, 1);
}
END_TEST

START_TEST(activate_failure_needs_reset)
{
	g_fake->activate_rc = -EIO;
	ck_assert_uint_eq(negotiate(F_VERSION_1), ST_FEAT);
	ck_assert_uint_eq(setup_queue(0, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA),
			  1);
	wr(VIRTIO_MMIO_STATUS, ST_LIVE);
	ck_assert_int_eq(g_fake->activate_calls, 1);
	ck_assert_uint_eq(status(), ST_LIVE | VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_int_eq(irqs, 1);
	ck_assert_uint_eq(ioevent_assigned, 0);
	post_chain(0, 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	ck_assert_int_eq(g_fake->notify_calls[0], 0);
}
END_TEST

START_TEST(needs_reset_service_logs_once)
{
	full_init(F_VERSION_1);
	g_fake->svc->needs_reset(&host, "disk went away");
	g_fake->svc->needs_reset(&host, "again");
	ck_assert_uint_eq(status(), ST_LIVE | VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_int_eq(irqs, 1);
	wr(VIRTIO_MMIO_STATUS, 0);
	full_init(F_VERSION_1);
	/* Re-armed by the reset. */
	g_fake->svc->needs_reset(&host, "third");
	ck_assert_int_eq(irqs, 2);
}
END_TEST

/* ---- device_create validation and services ---------------------------- */

static void fd_cb(void *dev, int fd, uint32_t events);

static int try_create(char *err, size_t len)
{
	struct smvmm_host h2;
	int rc;

	device_host_init(&h2, "bad0", "test.ini", 3, kvs, 1, &mem, NULL);
	rc = device_create(&h2, &fake_ops, err, len);
	if (rc == 0)
		ck_assert_ptr_nonnull(h2.ops);
	else
		ck_assert_ptr_null(h2.ops);
	device_destroy(&h2);
	return rc;
}

START_TEST(create_validates_info)
{
	char err[256];
	struct fake *keep = g_fake;

	ck_assert_int_eq(try_create(err, sizeof(err)), 0);
	tmpl.num_queues = 0;
	ck_assert_int_eq(try_create(err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "bad0"));
	ck_assert_ptr_nonnull(strstr(err, "queues"));
	tmpl.num_queues = SMVMM_MAX_QUEUES + 1;
	ck_assert_int_eq(try_create(err, sizeof(err)), -EINVAL);
	tmpl.num_queues = SMVMM_MAX_QUEUES;
	ck_assert_int_eq(try_create(err, sizeof(err)), 0);
	tmpl.num_queues = 1;
	tmpl.queue_size_max = 0;
	ck_assert_int_eq(try_create(err, sizeof(err)), -EINVAL);
	tmpl.queue_size_max = 24;
	ck_assert_int_eq(try_create(err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "power of two"));
	tmpl.queue_size_max = 65535;
	ck_assert_int_eq(try_create(err, sizeof(err)), -EINVAL);
	tmpl.queue_size_max = 32768;
	ck_assert_int_eq(try_create(err, sizeof(err)), 0);
	tmpl.config_size = 257;
	ck_assert_int_eq(try_create(err, sizeof(err)), -EINVAL);
	tmpl.config_size = 256;
	ck_assert_int_eq(try_create(err, sizeof(err)), 0);
	tmpl.device_id = 0;
	ck_assert_int_eq(try_create(err, sizeof(err)), -EINVAL);
	tmpl.device_id = 4;
	tmpl_features = F_DEV_A;
	ck_assert_int_eq(try_create(err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "VIRTIO_F_VERSION_1"));
	tmpl_features = F_VERSION_1 | (1ULL << VIRTIO_F_RING_PACKED);
	ck_assert_int_eq(try_create(err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "PACKED"));
	tmpl_features = F_VERSION_1;
	ck_assert_int_eq(try_create(err, sizeof(err)), 0);
	g_fake = keep;
}
END_TEST

START_TEST(create_missing_op)
{
	struct smvmm_device_ops ops = fake_ops;
	struct smvmm_host h2;
	char err[256];

	ops.queue_notify = NULL;
	device_host_init(&h2, "bad1", "test.ini", 3, NULL, 0, &mem, NULL);
	ck_assert_int_eq(device_create(&h2, &ops, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "queue_notify"));
	device_destroy(&h2);
}
END_TEST

START_TEST(config_get_and_error)
{
	struct smvmm_host h2;
	char err[640];
	struct fake *keep = g_fake;

	ck_assert_str_eq(g_fake->svc->config_get(&host, "mode"), "warp");
	ck_assert_ptr_null(g_fake->svc->config_get(&host, "speed"));

	/* config_error with create() returning 0 still fails, and the
	 * first config_error line is what device_create reports. */
	tmpl_config_error = true;
	device_host_init(&h2, "bad2", "dir/test.ini", 3, kvs, 1, &mem, NULL);
	ck_assert_int_eq(device_create(&h2, &fake_ops, err, sizeof(err)),
			 -EINVAL);
	ck_assert(h2.config_failed);
	device_destroy(&h2);
	ck_assert_msg(strcmp(err, "dir/test.ini:7: [device.bad2] mode: must be "
				  "fast or slow, not 'warp'") == 0,
		      "got: %s", err);
	g_fake = keep;
}
END_TEST

START_TEST(services_bad_args)
{
	struct smvmm_chain *c = (void *)1;
	int fd = eventfd(0, EFD_CLOEXEC);

	full_init(F_VERSION_1);
	ck_assert_int_eq(g_fake->svc->vq_pop(&host, 2, &c), -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_int_eq(g_fake->svc->vq_pop(&host, 0, &c), 0); /* empty */
	ck_assert_int_eq(g_fake->svc->vq_push(&host, NULL, 0), -EINVAL);
	g_fake->svc->vq_notify(&host, 9);
	ck_assert_int_eq(irqs, 0);
	/* gpa_to_hva is bounds-checked over the whole length. */
	ck_assert_ptr_eq(g_fake->svc->gpa_to_hva(&host, RAM_GPA, 16), ram);
	ck_assert_ptr_null(g_fake->svc->gpa_to_hva(&host, RAM_GPA + RAM_SIZE - 8,
						   16));
	ck_assert_ptr_null(g_fake->svc->gpa_to_hva(&host, UINT64_MAX - 4, 16));
	/* No event loop: fd watches are not supported. */
	ck_assert_int_eq(g_fake->svc->watch_fd(&host, fd, SMVMM_FD_IN,
					       fd_cb),
			 -ENOSYS);
	ck_assert_int_eq(g_fake->svc->unwatch_fd(&host, fd), -ENOSYS);
	close(fd);
}
END_TEST

/* ---- fd watches through the services, with a real event loop ---------- */

static struct smvmm_host *lock_probe_host;

static void *trylock_thread(void *arg)
{
	(void)arg;
	if (pthread_mutex_trylock(&lock_probe_host->lock) == 0) {
		pthread_mutex_unlock(&lock_probe_host->lock);
		return (void *)0;
	}
	return (void *)1;
}

static void fd_cb(void *dev, int fd, uint32_t events)
{
	struct fake *f = dev;
	pthread_t th;
	void *busy;
	uint64_t v;

	ck_assert(events & SMVMM_FD_IN);
	f->fd_calls++;
	/* The device lock is held around the callback (plugin.h). */
	ck_assert_int_eq(pthread_create(&th, NULL, trylock_thread, NULL), 0);
	pthread_join(th, &busy);
	if (busy)
		f->fd_lock_busy++;
	if (f->unwatch_in_cb)
		ck_assert_int_eq(f->svc->unwatch_fd(f->h, fd), 0);
	else
		(void)!read(fd, &v, sizeof(v));
}

START_TEST(watch_fd_services)
{
	struct evloop loop;
	struct smvmm_host h2;
	struct fake *f;
	char err[256];
	uint64_t one = 1;
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	ck_assert_int_eq(evloop_init(&loop), 0);
	device_host_init(&h2, "w0", "test.ini", 3, NULL, 0, &mem, &loop);
	ck_assert_int_eq(device_create(&h2, &fake_ops, err, sizeof(err)), 0);
	f = h2.dev;
	lock_probe_host = &h2;

	ck_assert_int_eq(f->svc->watch_fd(&h2, -1, SMVMM_FD_IN, fd_cb), -EBADF);
	ck_assert_int_eq(f->svc->watch_fd(&h2, fd, 0x100, fd_cb), -EINVAL);
	ck_assert_int_eq(f->svc->watch_fd(&h2, fd, SMVMM_FD_IN, NULL), -EINVAL);
	ck_assert_int_eq(f->svc->unwatch_fd(&h2, fd), -ENOENT);
	ck_assert_int_eq(f->svc->watch_fd(&h2, fd, SMVMM_FD_IN, fd_cb), 0);
	/* Watching again replaces (still one entry). */
	ck_assert_int_eq(f->svc->watch_fd(&h2, fd, SMVMM_FD_IN, fd_cb), 0);
	ck_assert_uint_eq(h2.nwatches, 1);

	ck_assert_int_eq(write(fd, &one, sizeof(one)), sizeof(one));
	ck_assert_int_eq(evloop_run_once(&loop, 1000), 1);
	ck_assert_int_eq(f->fd_calls, 1);
	ck_assert_int_eq(f->fd_lock_busy, 1);

	/* Unwatch from inside the callback: it never runs again. */
	f->unwatch_in_cb = 1;
	ck_assert_int_eq(write(fd, &one, sizeof(one)), sizeof(one));
	ck_assert_int_eq(evloop_run_once(&loop, 1000), 1);
	ck_assert_int_eq(f->fd_calls, 2);
	ck_assert_uint_eq(h2.nwatches, 0);
	ck_assert_int_eq(evloop_run_once(&loop, 0), 0);
	ck_assert_int_eq(f->fd_calls, 2);

	/* Unwatch from an op (device lock held, as in reset()). */
	f->unwatch_in_cb = 0;
	ck_assert_int_eq(f->svc->watch_fd(&h2, fd, SMVMM_FD_IN, fd_cb), 0);
	pthread_mutex_lock(&h2.lock);
	ck_assert_int_eq(f->svc->unwatch_fd(&h2, fd), 0);
	pthread_mutex_unlock(&h2.lock);
	ck_assert_int_eq(evloop_run_once(&loop, 0), 0);
	ck_assert_int_eq(f->fd_calls, 2);

	/* device_destroy removes what the plugin left behind. */
	ck_assert_int_eq(f->svc->watch_fd(&h2, fd, SMVMM_FD_IN, fd_cb), 0);
	device_destroy(&h2);
	ck_assert_int_eq(evloop_unwatch(&loop, fd), -ENOENT);
	evloop_destroy(&loop);
	close(fd);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("virtio_mmio");
	TCase *tc = tcase_create("transport");
	TCase *td = tcase_create("device");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, ids);
	tcase_add_test(tc, device_features_sel);
	tcase_add_test(tc, negotiation_ok);
	tcase_add_test(tc, negotiation_not_subset);
	tcase_add_test(tc, negotiation_needs_version_1);
	tcase_add_test(tc, negotiation_refused_by_plugin);
	tcase_add_test(tc, driver_features_only_in_driver_state);
	tcase_add_test(tc, status_rules);
	tcase_add_test(tc, full_init_and_kick);
	tcase_add_test(tc, kick_before_driver_ok_delivered_at_activate);
	tcase_add_test(tc, kick_racing_driver_ok_not_lost);
	tcase_add_test(tc, interrupt_status_ack_and_config_generation);
	tcase_add_test(tc, no_interrupt_flag_suppresses);
	tcase_add_test(tc, queue_regs_locked_when_ready_and_after_driver_ok);
	tcase_add_test(tc, queue_ready_needs_features_ok);
	tcase_add_test(tc, bad_queue_sel);
	tcase_add_test(tc, config_space);
	tcase_add_test(tc, misaligned_register_access);
	tcase_add_test(tc, reset_clears_everything);
	tcase_add_test(tc, needs_reset_on_bad_queue_setup);
	tcase_add_test(tc, needs_reset_other_bad_setups);
	tcase_add_test(tc, needs_reset_on_broken_ring);
	tcase_add_test(tc, activate_failure_needs_reset);
	tcase_add_test(tc, needs_reset_service_logs_once);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(td, setup, teardown);
	tcase_add_test(td, create_validates_info);
	tcase_add_test(td, create_missing_op);
	tcase_add_test(td, config_get_and_error);
	tcase_add_test(td, services_bad_args);
	tcase_add_test(td, watch_fd_services);
	suite_add_tcase(s, td);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
