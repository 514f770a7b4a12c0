// SPDX-License-Identifier: MIT
/*
 * virtio-mmio transport, version 2 (VIRTIO 1.2 §4.2): the register file and
 * the device status state machine (§2.1, §3.1.1).
 *
 * Locking: t->reg_lock serialises register accesses from vCPU threads (the
 * selectors, driver features and queue registers).  Plugin ops run under
 * h->lock, taken inside reg_lock.  Status, InterruptStatus, ConfigGeneration
 * and `activated` are atomics because the host hooks (raise, needs-reset)
 * update them from any thread, possibly with h->lock or a queue lock held,
 * and must not take reg_lock (lock order, see device.c).
 *
 * Status bits are only ever added with an atomic OR and only a write of 0
 * clears them (§2.1.1: the driver MUST NOT clear a status bit), so a
 * NEEDS_RESET set concurrently by an I/O thread is never lost.
 *
 * The guest is hostile: every odd access is ignored (reads give 0) and
 * logged once per device and kind; nothing here aborts.
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "virtio_mmio.h"

#define STATUS_KNOWN                                                    \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |               \
	 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK |            \
	 VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)
/* What the driver may set; NEEDS_RESET is the device's (§2.1). */
#define STATUS_DRIVER_BITS (STATUS_KNOWN & ~VIRTIO_STATUS_NEEDS_RESET)

/* Kinds of oddities, each logged once per device (bits of t->logged). */
enum vmmio_odd {
	ODD_WIDTH,        /* register access not 32-bit aligned */
	ODD_RO_WRITE,     /* write to a read-only register */
	ODD_WO_READ,      /* read of a write-only register */
	ODD_UNKNOWN,      /* unknown offset */
	ODD_QSEL,         /* queue register with QueueSel out of range */
	ODD_QLOCKED,      /* queue register while ready or after DRIVER_OK */
	ODD_QREADY,       /* QueueReady value or state */
	ODD_CONFIG,       /* config access out of range / odd size */
	ODD_CONFIG_ERR,   /* plugin failed a config access */
	ODD_STATUS_BITS,  /* reserved or NEEDS_RESET written by the driver */
	ODD_STATUS_CLEAR, /* driver tried to clear status bits */
	ODD_STATUS_ORDER, /* bits set out of the §3.1.1 order */
	ODD_FAILED,       /* driver set FAILED */
	ODD_AFTER_FAILED, /* status write after FAILED */
	ODD_FEAT_STATE,   /* DriverFeatures outside DRIVER, before FEATURES_OK */
	ODD_FEAT_HIGH,    /* DriverFeatures with DriverFeaturesSel > 1 */
	ODD_FEAT_SUBSET,  /* driver features not offered */
	ODD_FEAT_VERSION, /* VERSION_1 not accepted */
	ODD_FEAT_REFUSED, /* plugin refused the features */
	ODD_NOTIFY_Q,     /* QueueNotify with a bad index */
	ODD_ACTIVATE_NR,  /* DRIVER_OK while NEEDS_RESET */
	ODD_RESETTING,    /* register write while a deferred reset runs */
};

static void odd(struct vmmio *t, enum vmmio_odd kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void odd(struct vmmio *t, enum vmmio_odd kind, const char *fmt, ...)
{
	uint32_t bit = 1u << kind;
	char msg[256];
	va_list ap;

	if (__atomic_fetch_or(&t->logged, bit, __ATOMIC_RELAXED) & bit)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	device_log(t->host, SMVMM_LOG_WARN, "virtio-mmio: %s", msg);
}

static uint32_t status_load(struct vmmio *t)
{
	return __atomic_load_n(&t->status, __ATOMIC_ACQUIRE);
}

static void status_set(struct vmmio *t, uint32_t bits)
{
	__atomic_fetch_or(&t->status, bits, __ATOMIC_ACQ_REL);
}

/* ---- host hooks (any thread, no lock taken) --------------------------- */

static void vmmio_raise(struct smvmm_host *h, uint32_t isr_bits)
{
	struct vmmio *t = __atomic_load_n(&h->transport, __ATOMIC_ACQUIRE);

	if (!t)
		return;
	/*
	 * §2.5.1: ConfigGeneration changes whenever the config space may have
	 * changed; bump it before the interrupt so the driver's re-read sees
	 * the new value.
	 */
	if (isr_bits & VIRTIO_MMIO_INT_CONFIG)
		__atomic_fetch_add(&t->config_generation, 1, __ATOMIC_ACQ_REL);
	__atomic_fetch_or(&t->interrupt_status, isr_bits, __ATOMIC_ACQ_REL);
	if (t->irq_raise)
		t->irq_raise(t->irq_opaque);
}

static void vmmio_set_needs_reset(struct smvmm_host *h)
{
	struct vmmio *t = __atomic_load_n(&h->transport, __ATOMIC_ACQUIRE);
	uint32_t old;

	if (!t)
		return;
	old = __atomic_fetch_or(&t->status, VIRTIO_STATUS_NEEDS_RESET,
				__ATOMIC_ACQ_REL);
	/* §2.1.2: with DRIVER_OK set, NEEDS_RESET comes with a config change
	 * notification. */
	if ((old & VIRTIO_STATUS_DRIVER_OK) &&
	    !(old & VIRTIO_STATUS_NEEDS_RESET))
		vmmio_raise(h, VIRTIO_MMIO_INT_CONFIG);
}

/* The plugin finished a deferred reset (reset_done): Status reads 0. */
static void vmmio_reset_completed(struct smvmm_host *h)
{
	struct vmmio *t = __atomic_load_n(&h->transport, __ATOMIC_ACQUIRE);

	if (t)
		__atomic_store_n(&t->reset_status, 0, __ATOMIC_RELEASE);
}

void vmmio_init(struct vmmio *t, struct smvmm_host *h, vmmio_irq_fn irq,
		void *irq_opaque, vmmio_ioevent_fn ioevent, void *ioevent_opaque)
{
	memset(t, 0, sizeof(*t));
	t->host = h;
	pthread_mutex_init(&t->reg_lock, NULL);
	t->irq_raise = irq;
	t->irq_opaque = irq_opaque;
	t->ioevent = ioevent;
	t->ioevent_opaque = ioevent_opaque;
	h->transport = t;
	h->raise = vmmio_raise;
	h->set_needs_reset = vmmio_set_needs_reset;
	__atomic_store_n(&h->reset_completed, vmmio_reset_completed,
			 __ATOMIC_RELEASE);
}

void vmmio_destroy(struct vmmio *t)
{
	struct smvmm_host *h = t->host;

	/*
	 * No device lock here: callers destroy the transport before or after
	 * device_destroy (which destroys h->lock).  The hooks are cleared with
	 * atomic stores; a hook already running only touches atomics of *t,
	 * whose memory the owner keeps.
	 */
	if (h && __atomic_load_n(&h->transport, __ATOMIC_ACQUIRE) == t) {
		__atomic_store_n(&h->raise, NULL, __ATOMIC_RELEASE);
		__atomic_store_n(&h->set_needs_reset, NULL, __ATOMIC_RELEASE);
		__atomic_store_n(&h->reset_completed, NULL, __ATOMIC_RELEASE);
		__atomic_store_n(&h->transport, NULL, __ATOMIC_RELEASE);
	}
	pthread_mutex_destroy(&t->reg_lock);
	t->host = NULL;
}

/* ---- helpers ---------------------------------------------------------- */

static bool queue_ready(struct smvmm_host *h, uint32_t q)
{
	bool ready;

	pthread_mutex_lock(&h->q[q].lock);
	ready = h->q[q].vq.ready;
	pthread_mutex_unlock(&h->q[q].lock);
	return ready;
}

static uint64_t device_features(struct vmmio *t)
{
	struct smvmm_host *h = t->host;
	uint64_t f;

	pthread_mutex_lock(&h->lock);
	f = h->ops->get_features(h->dev);
	pthread_mutex_unlock(&h->lock);
	return f;
}

static const char *reg_name(uint64_t off)
{
	switch (off) {
	case VIRTIO_MMIO_QUEUE_NUM: return "QueueNum";
	case VIRTIO_MMIO_QUEUE_READY: return "QueueReady";
	case VIRTIO_MMIO_QUEUE_DESC_LOW: return "QueueDescLow";
	case VIRTIO_MMIO_QUEUE_DESC_HIGH: return "QueueDescHigh";
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW: return "QueueDriverLow";
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH: return "QueueDriverHigh";
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW: return "QueueDeviceLow";
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH: return "QueueDeviceHigh";
	default: return "queue register";
	}
}

/*
 * The queue registers of QueueSel, if the driver may change them now
 * (§4.2.2: QueueSel must name an existing queue; §4.2.3.2 / §3.1.1: a queue
 * is configured before it is made ready and before DRIVER_OK).
 */
static struct vmmio_queue_regs *writable_queue(struct vmmio *t, uint64_t off)
{
	struct smvmm_host *h = t->host;
	uint32_t q = t->queue_sel;

	if (q >= h->nr_queues) {
		odd(t, ODD_QSEL,
		    "%s write with QueueSel %u (device has %u queues) ignored",
		    reg_name(off), q, h->nr_queues);
		return NULL;
	}
	if (status_load(t) & VIRTIO_STATUS_DRIVER_OK) {
		odd(t, ODD_QLOCKED,
		    "%s write for queue %u after DRIVER_OK ignored",
		    reg_name(off), q);
		return NULL;
	}
	if (queue_ready(h, q)) {
		odd(t, ODD_QLOCKED,
		    "%s write for queue %u while it is ready ignored",
		    reg_name(off), q);
		return NULL;
	}
	return &t->qregs[q];
}

static void set_lo(uint64_t *v, uint32_t lo)
{
	*v = (*v & ~0xffffffffULL) | lo;
}

static void set_hi(uint64_t *v, uint32_t hi)
{
	*v = (*v & 0xffffffffULL) | ((uint64_t)hi << 32);
}

/* ---- queues ----------------------------------------------------------- */

static void write_queue_ready(struct vmmio *t, uint32_t val)
{
	struct smvmm_host *h = t->host;
	uint32_t q = t->queue_sel;
	struct vmmio_queue_regs *r;
	struct host_queue *hq;
	char why[sizeof(hq->vq.err)];
	int rc;

	if (q >= h->nr_queues) {
		odd(t, ODD_QSEL,
		    "QueueReady write with QueueSel %u (device has %u queues) "
		    "ignored", q, h->nr_queues);
		return;
	}
	if (status_load(t) & VIRTIO_STATUS_DRIVER_OK) {
		/* Stopping a live queue needs VIRTIO_F_RING_RESET (§2.6.1),
		 * which the core does not offer. */
		odd(t, ODD_QLOCKED,
		    "QueueReady write for queue %u after DRIVER_OK ignored", q);
		return;
	}
	if (val > 1) {
		odd(t, ODD_QREADY, "QueueReady value %u ignored (0 or 1)", val);
		return;
	}
	r = &t->qregs[q];
	hq = &h->q[q];
	pthread_mutex_lock(&hq->lock);
	if (val == 0) {
		/*
		 * §4.2.2: the driver writes 0 to stop using the queue.  Before
		 * DRIVER_OK nothing has used it: unset it so its registers can
		 * be written again; they keep their values.
		 */
		if (hq->vq.ready)
			virtq_reset(&hq->vq);
		pthread_mutex_unlock(&hq->lock);
		return;
	}
	if (hq->vq.ready) {
		pthread_mutex_unlock(&hq->lock);
		return;
	}
	if (!(status_load(t) & VIRTIO_STATUS_FEATURES_OK)) {
		/* §3.1.1 step 7 comes after FEATURES_OK: the ring layout
		 * depends on the negotiated EVENT_IDX. */
		pthread_mutex_unlock(&hq->lock);
		odd(t, ODD_QREADY,
		    "QueueReady for queue %u before FEATURES_OK ignored", q);
		return;
	}
	if (r->num > 0xffff) {
		pthread_mutex_unlock(&hq->lock);
		device_needs_reset(h, "queue %u: QueueNum %u above QueueNumMax %u",
				   q, r->num, hq->vq.max_size);
		return;
	}
	rc = virtq_setup(&hq->vq, (uint16_t)r->num, r->desc, r->driver,
			 r->device, h->features);
	/* vq->err names the queue already. */
	if (rc && hq->vq.err[0])
		snprintf(why, sizeof(why), "%s", hq->vq.err);
	else if (rc)
		snprintf(why, sizeof(why), "queue %u: setup failed: %s", q,
			 strerror(-rc));
	pthread_mutex_unlock(&hq->lock);
	if (rc)
		device_needs_reset(h, "%s", why);
}

void vmmio_queue_notify(struct vmmio *t, uint16_t q)
{
	struct smvmm_host *h = t->host;
	bool ok;

	if (q >= h->nr_queues) {
		odd(t, ODD_NOTIFY_Q, "QueueNotify for queue %u (device has %u "
		    "queues) ignored", q, h->nr_queues);
		return;
	}
	pthread_mutex_lock(&h->lock);
	pthread_mutex_lock(&h->q[q].lock);
	ok = h->q[q].vq.ready && !h->q[q].vq.broken;
	pthread_mutex_unlock(&h->q[q].lock);
	if (ok) {
		/*
		 * Not activated yet: remember the kick even when DRIVER_OK is
		 * already in Status.  driver_ok() sets that bit before it takes
		 * h->lock to activate, so a kick the I/O thread handles in
		 * between must be kept for activate to deliver.  If activate
		 * fails, do_reset() forgets it.
		 */
		if (__atomic_load_n(&t->activated, __ATOMIC_ACQUIRE))
			h->ops->queue_notify(h->dev, q);
		else
			t->early_kicks |= 1ULL << q;
	}
	pthread_mutex_unlock(&h->lock);
}

/* ---- status ----------------------------------------------------------- */

static void do_reset(struct vmmio *t)
{
	struct smvmm_host *h = t->host;
	uint32_t old = status_load(t);
	bool deferred;

	/* First make every later kick and raise see a dead device. */
	__atomic_store_n(&t->activated, false, __ATOMIC_RELEASE);
	__atomic_store_n(&t->status, 0, __ATOMIC_RELEASE);
	if (t->ioevent)
		for (uint32_t q = 0; q < SMVMM_MAX_QUEUES; q++)
			if (t->ioevent_mask & (1ULL << q))
				t->ioevent(t->ioevent_opaque, (uint16_t)q,
					   false);
	t->ioevent_mask = 0;
	/* ops->reset stops the plugin's workers, then queues are unset. */
	device_reset(h);
	pthread_mutex_lock(&h->lock);
	t->early_kicks = 0;
	pthread_mutex_unlock(&h->lock);

	/* §2.4, §4.2.2: every register back to its initial value.  The
	 * status is stored again: a worker may have flagged NEEDS_RESET
	 * before ops->reset stopped it.  ConfigGeneration is kept: it only
	 * has to change when config changes (§2.5.1), and going backwards
	 * could hide a change from a read that straddles the reset. */
	t->device_features_sel = 0;
	t->driver_features_sel = 0;
	t->driver_features = 0;
	t->queue_sel = 0;
	memset(t->qregs, 0, sizeof(t->qregs));
	__atomic_store_n(&t->interrupt_status, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&t->status, 0, __ATOMIC_RELEASE);
	/* The plugin could not finish (reset_defer): Status keeps reading
	 * non-zero until reset_done (§2.4.2), checked under the device lock
	 * so a reset_done racing with this is never missed. */
	pthread_mutex_lock(&h->lock);
	deferred = h->reset_deferred;
	if (deferred)
		__atomic_store_n(&t->reset_status,
				 old ? old : VIRTIO_STATUS_ACKNOWLEDGE,
				 __ATOMIC_RELEASE);
	pthread_mutex_unlock(&h->lock);
	if (deferred)
		device_log(h, SMVMM_LOG_WARN,
			   "reset: the device is still finishing work; Status "
			   "reads 0x%x until it is done", old ? old : 1u);
}

/* FEATURES_OK (§3.1.1 step 5, §2.2.1): true if accepted. */
static bool negotiate(struct vmmio *t)
{
	struct smvmm_host *h = t->host;
	uint64_t offered = device_features(t);
	uint64_t drv = t->driver_features;
	int rc;

	if (drv & ~offered) {
		odd(t, ODD_FEAT_SUBSET,
		    "driver accepted features 0x%llx the device does not "
		    "offer (0x%llx): FEATURES_OK refused",
		    (unsigned long long)(drv & ~offered),
		    (unsigned long long)offered);
		return false;
	}
	if (!(drv & (1ULL << VIRTIO_F_VERSION_1))) {
		/* A legacy driver on a version-2 window: §4.2.4 wants
		 * version 1 for that, which the core does not implement. */
		odd(t, ODD_FEAT_VERSION,
		    "driver did not accept VIRTIO_F_VERSION_1: FEATURES_OK "
		    "refused");
		return false;
	}
	pthread_mutex_lock(&h->lock);
	rc = h->ops->set_features(h->dev, drv);
	if (rc == 0)
		h->features = drv;
	pthread_mutex_unlock(&h->lock);
	if (rc) {
		odd(t, ODD_FEAT_REFUSED,
		    "device refused features 0x%llx (%s): FEATURES_OK refused",
		    (unsigned long long)drv, strerror(rc < 0 ? -rc : rc));
		return false;
	}
	return true;
}

/* DRIVER_OK (§3.1.1 step 8). */
static void driver_ok(struct vmmio *t)
{
	struct smvmm_host *h = t->host;
	uint64_t kicks;
	uint32_t old;
	int rc;

	old = __atomic_fetch_or(&t->status, VIRTIO_STATUS_DRIVER_OK,
				__ATOMIC_ACQ_REL);
	if (old & VIRTIO_STATUS_NEEDS_RESET) {
		/* A queue setup failed: do not run the device.  The config
		 * interrupt §2.1.2 asks for goes out now that DRIVER_OK is
		 * set. */
		odd(t, ODD_ACTIVATE_NR,
		    "DRIVER_OK while the device needs reset: not activated");
		vmmio_raise(h, VIRTIO_MMIO_INT_CONFIG);
		return;
	}

	pthread_mutex_lock(&h->lock);
	rc = h->ops->activate(h->dev);
	if (rc == 0) {
		__atomic_store_n(&t->activated, true, __ATOMIC_RELEASE);
		kicks = t->early_kicks;
		t->early_kicks = 0;
		for (uint32_t q = 0; q < h->nr_queues; q++)
			if (kicks & (1ULL << q))
				h->ops->queue_notify(h->dev, (uint16_t)q);
	}
	pthread_mutex_unlock(&h->lock);
	if (rc) {
		device_needs_reset(h, "activate failed: %s",
				   strerror(rc < 0 ? -rc : rc));
		return;
	}
	if (!t->ioevent)
		return;
	for (uint32_t q = 0; q < h->nr_queues; q++)
		if (queue_ready(h, q)) {
			t->ioevent(t->ioevent_opaque, (uint16_t)q, true);
			t->ioevent_mask |= 1ULL << q;
		}
}

static void write_status(struct vmmio *t, uint32_t val)
{
	uint32_t cur = status_load(t), want, add, have;

	if (val == 0) {
		do_reset(t);
		return;
	}
	/* A read-modify-write driver (Linux) echoes NEEDS_RESET back: fine. */
	if (val & ~STATUS_DRIVER_BITS & ~(cur & VIRTIO_STATUS_NEEDS_RESET))
		odd(t, ODD_STATUS_BITS,
		    "Status write 0x%x: bits 0x%x are not the driver's to set, "
		    "ignored", val,
		    val & ~STATUS_DRIVER_BITS & ~(cur & VIRTIO_STATUS_NEEDS_RESET));
	if (cur & ~val & STATUS_DRIVER_BITS)
		odd(t, ODD_STATUS_CLEAR,
		    "Status write 0x%x would clear 0x%x; only a reset clears "
		    "status bits (§2.1.1)", val, cur & ~val & STATUS_DRIVER_BITS);
	want = val & STATUS_DRIVER_BITS;
	add = want & ~cur;
	if (!add)
		return;
	if (cur & VIRTIO_STATUS_FAILED) {
		odd(t, ODD_AFTER_FAILED,
		    "Status write 0x%x after FAILED ignored: the driver must "
		    "reset the device", val);
		return;
	}

	/* Bits in the §3.1.1 order; each needs the previous step. */
	have = cur;
	if (add & VIRTIO_STATUS_ACKNOWLEDGE) {
		status_set(t, VIRTIO_STATUS_ACKNOWLEDGE);
		have |= VIRTIO_STATUS_ACKNOWLEDGE;
	}
	if (add & VIRTIO_STATUS_DRIVER) {
		if (have & VIRTIO_STATUS_ACKNOWLEDGE) {
			status_set(t, VIRTIO_STATUS_DRIVER);
			have |= VIRTIO_STATUS_DRIVER;
		} else {
			odd(t, ODD_STATUS_ORDER,
			    "DRIVER without ACKNOWLEDGE ignored (§3.1.1)");
		}
	}
	if (add & VIRTIO_STATUS_FEATURES_OK) {
		if (!(have & VIRTIO_STATUS_DRIVER)) {
			odd(t, ODD_STATUS_ORDER,
			    "FEATURES_OK without DRIVER ignored (§3.1.1)");
		} else if (negotiate(t)) {
			status_set(t, VIRTIO_STATUS_FEATURES_OK);
			have |= VIRTIO_STATUS_FEATURES_OK;
		}
	}
	if (add & VIRTIO_STATUS_DRIVER_OK) {
		if (have & VIRTIO_STATUS_FEATURES_OK)
			driver_ok(t);
		else
			odd(t, ODD_STATUS_ORDER,
			    "DRIVER_OK without FEATURES_OK ignored (§3.1.1)");
	}
	if (add & VIRTIO_STATUS_FAILED) {
		status_set(t, VIRTIO_STATUS_FAILED);
		odd(t, ODD_FAILED, "driver set FAILED: it gave up on the "
		    "device");
	}
}

/* ---- register file ---------------------------------------------------- */

static uint32_t read_reg(struct vmmio *t, uint64_t off)
{
	struct smvmm_host *h = t->host;
	uint32_t v;

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return 2; /* §4.2.2: modern layout; 1 is legacy */
	case VIRTIO_MMIO_DEVICE_ID:
		return h->info.device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return h->info.vendor_id ? h->info.vendor_id
					 : VIRTIO_MMIO_DEFAULT_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		/* Two 32-bit words; higher selectors have no features. */
		if (t->device_features_sel > 1)
			return 0;
		return (uint32_t)(device_features(t) >>
				  (32 * t->device_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		/* §4.2.2: 0 means the queue is not available. */
		if (t->queue_sel >= h->nr_queues)
			return 0;
		return h->q[t->queue_sel].vq.max_size;
	case VIRTIO_MMIO_QUEUE_READY:
		if (t->queue_sel >= h->nr_queues)
			return 0;
		return queue_ready(h, t->queue_sel);
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return __atomic_load_n(&t->interrupt_status, __ATOMIC_ACQUIRE);
	case VIRTIO_MMIO_STATUS: {
		uint32_t rs = __atomic_load_n(&t->reset_status,
					      __ATOMIC_ACQUIRE);

		return rs ? rs : status_load(t);
	}
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:
		/* §4.2.2: a length of -1 means no such region; we have none. */
		return 0xffffffff;
	case VIRTIO_MMIO_CONFIG_GENERATION:
		/*
		 * Under the device lock: a plugin changes its config and calls
		 * config_changed() inside an op or fd callback, so a driver
		 * never reads the old generation after the new config.
		 */
		pthread_mutex_lock(&h->lock);
		v = __atomic_load_n(&t->config_generation, __ATOMIC_ACQUIRE);
		pthread_mutex_unlock(&h->lock);
		return v;
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
	case VIRTIO_MMIO_DRIVER_FEATURES:
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
	case VIRTIO_MMIO_QUEUE_SEL:
	case VIRTIO_MMIO_QUEUE_NUM:
	case VIRTIO_MMIO_QUEUE_NOTIFY:
	case VIRTIO_MMIO_INTERRUPT_ACK:
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
	case VIRTIO_MMIO_SHM_SEL:
		odd(t, ODD_WO_READ, "read of write-only register 0x%03llx",
		    (unsigned long long)off);
		return 0;
	default:
		odd(t, ODD_UNKNOWN, "read of unknown register 0x%03llx",
		    (unsigned long long)off);
		return 0;
	}
}

/* Returns the queue to kick (QueueNotify) or -1. */
static int write_reg(struct vmmio *t, uint64_t off, uint32_t val)
{
	struct smvmm_host *h = t->host;
	struct vmmio_queue_regs *r;
	uint32_t s;

	if (__atomic_load_n(&t->reset_status, __ATOMIC_ACQUIRE)) {
		/* §2.4.2: the driver waits for Status 0 first. */
		if (off != VIRTIO_MMIO_STATUS || val != 0)
			odd(t, ODD_RESETTING,
			    "register write at 0x%llx while the device is "
			    "still resetting (Status reads non-zero until it "
			    "is done) ignored", (unsigned long long)off);
		return -1;
	}
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		t->device_features_sel = val;
		return -1;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		t->driver_features_sel = val;
		return -1;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		s = status_load(t);
		/* §3.1.1 step 4: between DRIVER and FEATURES_OK only. */
		if (!(s & VIRTIO_STATUS_DRIVER) ||
		    (s & (VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED))) {
			odd(t, ODD_FEAT_STATE,
			    "DriverFeatures write with Status 0x%x ignored", s);
			return -1;
		}
		if (t->driver_features_sel == 0) {
			set_lo(&t->driver_features, val);
		} else if (t->driver_features_sel == 1) {
			set_hi(&t->driver_features, val);
		} else if (val) {
			/* Bits beyond 64 are never offered. */
			odd(t, ODD_FEAT_HIGH,
			    "DriverFeatures 0x%x with DriverFeaturesSel %u "
			    "ignored", val, t->driver_features_sel);
		}
		return -1;
	case VIRTIO_MMIO_QUEUE_SEL:
		t->queue_sel = val;
		return -1;
	case VIRTIO_MMIO_QUEUE_NUM:
		r = writable_queue(t, off);
		if (r)
			r->num = val;
		return -1;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH: {
		uint64_t *addr;

		r = writable_queue(t, off);
		if (!r)
			return -1;
		if (off < VIRTIO_MMIO_QUEUE_DRIVER_LOW)
			addr = &r->desc;
		else if (off < VIRTIO_MMIO_QUEUE_DEVICE_LOW)
			addr = &r->driver;
		else
			addr = &r->device;
		if (off & 4)
			set_hi(addr, val);
		else
			set_lo(addr, val);
		return -1;
	}
	case VIRTIO_MMIO_QUEUE_READY:
		write_queue_ready(t, val);
		return -1;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/* Without VIRTIO_F_NOTIFICATION_DATA (refused by device.c)
		 * the value is the bare queue index (§4.2.2). */
		if (val >= h->nr_queues) {
			odd(t, ODD_NOTIFY_Q, "QueueNotify for queue %u (device "
			    "has %u queues) ignored", val, h->nr_queues);
			return -1;
		}
		return (int)val;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		__atomic_fetch_and(&t->interrupt_status, ~val,
				   __ATOMIC_ACQ_REL);
		return -1;
	case VIRTIO_MMIO_STATUS:
		write_status(t, val);
		return -1;
	case VIRTIO_MMIO_SHM_SEL:
		return -1; /* no regions: every ShmSel reads length -1 */
	case VIRTIO_MMIO_MAGIC_VALUE:
	case VIRTIO_MMIO_VERSION:
	case VIRTIO_MMIO_DEVICE_ID:
	case VIRTIO_MMIO_VENDOR_ID:
	case VIRTIO_MMIO_DEVICE_FEATURES:
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
	case VIRTIO_MMIO_INTERRUPT_STATUS:
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:
	case VIRTIO_MMIO_CONFIG_GENERATION:
		odd(t, ODD_RO_WRITE, "write 0x%x to read-only register 0x%03llx "
		    "ignored", val, (unsigned long long)off);
		return -1;
	default:
		odd(t, ODD_UNKNOWN, "write 0x%x to unknown register 0x%03llx "
		    "ignored", val, (unsigned long long)off);
		return -1;
	}
}

static void config_access(struct vmmio *t, uint64_t off, uint8_t *data,
			  uint32_t len, bool is_write)
{
	struct smvmm_host *h = t->host;
	uint32_t size = h->info.config_size;
	int rc;

	if (!is_write)
		memset(data, 0, len);
	if ((len != 1 && len != 2 && len != 4 && len != 8) || off > size ||
	    len > size - off) {
		odd(t, ODD_CONFIG,
		    "config space %s of %u bytes at 0x%llx (config size %u) "
		    "ignored", is_write ? "write" : "read", len,
		    (unsigned long long)off, size);
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (is_write)
		rc = h->ops->config_write(h->dev, (uint32_t)off, data, len);
	else
		rc = h->ops->config_read(h->dev, (uint32_t)off, data, len);
	pthread_mutex_unlock(&h->lock);
	if (rc) {
		if (!is_write)
			memset(data, 0, len);
		odd(t, ODD_CONFIG_ERR, "config space %s of %u bytes at 0x%llx "
		    "failed: %s", is_write ? "write" : "read", len,
		    (unsigned long long)off, strerror(rc < 0 ? -rc : rc));
	}
}

void vmmio_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
		  bool is_write)
{
	struct vmmio *t = opaque;
	uint32_t v;
	int kick = -1;

	if (offset >= VIRTIO_MMIO_CONFIG) {
		config_access(t, offset - VIRTIO_MMIO_CONFIG, data, len,
			      is_write);
		return;
	}
	/* §4.2.2: registers are 32 bits wide and accessed as such. */
	if (len != 4 || (offset & 3)) {
		if (!is_write)
			memset(data, 0, len);
		odd(t, ODD_WIDTH, "%u-byte %s at register offset 0x%llx "
		    "ignored (32-bit aligned accesses only)", len,
		    is_write ? "write" : "read", (unsigned long long)offset);
		return;
	}
	pthread_mutex_lock(&t->reg_lock);
	if (is_write) {
		memcpy(&v, data, 4);
		kick = write_reg(t, offset, le32toh(v));
	} else {
		v = htole32(read_reg(t, offset));
		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&t->reg_lock);
	/* Outside reg_lock: the plugin's notify may take a while and must not
	 * stall other vCPUs' register accesses. */
	if (kick >= 0)
		vmmio_queue_notify(t, (uint16_t)kick);
}
