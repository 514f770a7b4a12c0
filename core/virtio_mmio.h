/* SPDX-License-Identifier: MIT */
/*
 * virtio-mmio transport, version 2 register layout (VIRTIO 1.2 §4.2.2).
 *
 * Owns the register file and the device status state machine (§2.1, §3.1.1):
 * ACKNOWLEDGE -> DRIVER -> FEATURES_OK -> DRIVER_OK, FAILED, NEEDS_RESET.
 * Feature negotiation through DeviceFeaturesSel/DriverFeaturesSel; queue
 * registers (QueueNum, QueueDesc*, QueueDriver*, QueueDevice*, QueueReady) are
 * only honoured while the selected queue is not ready and before DRIVER_OK;
 * QueueSel beyond num_queues reads QueueNumMax 0 and ignores writes.
 * Config space at 0x100 goes to the plugin, bounds-checked.
 */
#ifndef SMVMM_VIRTIO_MMIO_H
#define SMVMM_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "device.h"

#define VIRTIO_MMIO_SIZE 0x200 /* register window the bus maps per device */

/* Register offsets (§4.2.2) */
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_SHM_SEL 0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW 0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH 0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW 0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH 0x0bc
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */
/* VendorID when the plugin reports 0: "SMVM" as little-endian bytes. */
#define VIRTIO_MMIO_DEFAULT_VENDOR 0x4d564d53

/* Device status bits (§2.1) */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

#define VIRTIO_MMIO_INT_VRING 1
#define VIRTIO_MMIO_INT_CONFIG 2

struct vmmio_queue_regs {
	uint32_t num;
	uint64_t desc, driver, device;
};

/*
 * Interrupt delivery: the transport calls irq_raise(opaque) after setting
 * InterruptStatus bits (edge: one trigger per raise, e.g. an irqfd write).
 */
typedef void (*vmmio_irq_fn)(void *opaque);

/*
 * Ioeventfd hook: the transport asks its owner to route QueueNotify writes
 * for queue q to an eventfd (assign) for every ready queue once DRIVER_OK is
 * accepted, and to remove them on reset.  May be NULL: notifies then arrive
 * as MMIO writes and are dispatched synchronously via vmmio_queue_notify.
 * An owner may also keep ioeventfds for the VM's lifetime and ignore the
 * hook: vmmio_queue_notify drops kicks for queues that are not live.
 */
typedef void (*vmmio_ioevent_fn)(void *opaque, uint16_t q, bool assign);

struct vmmio {
	struct smvmm_host *host;
	pthread_mutex_t reg_lock;   /* register file: vCPU threads */

	uint32_t status;
	uint32_t device_features_sel, driver_features_sel;
	uint64_t driver_features;
	uint32_t queue_sel;
	uint32_t interrupt_status;  /* atomically updated */
	uint32_t config_generation;
	struct vmmio_queue_regs qregs[SMVMM_MAX_QUEUES];

	vmmio_irq_fn irq_raise;
	void *irq_opaque;
	vmmio_ioevent_fn ioevent;
	void *ioevent_opaque;

	/* Appended. */
	bool activated;             /* ops->activate succeeded (atomic) */
	uint64_t ioevent_mask;      /* queues assigned through `ioevent` */
	uint32_t logged;            /* oddities already logged (atomic) */
	uint64_t early_kicks;       /* QueueNotify before activation: delivered
				       right after activate (h->lock) */
	uint32_t reset_status;      /* atomic: non-zero while a deferred reset
				       runs (reset_defer): what Status reads
				       until it completes, §2.4.2 */
};

/*
 * vmmio_init: attach the transport to an already created device host
 * (device_create done) and install the host's raise/needs-reset hooks.
 * irq and ioevent may be NULL.  The ioevent hook is called with assign=true
 * for every ready queue when DRIVER_OK is accepted (after activate
 * succeeded) and with assign=false for those queues on reset, both on the
 * vCPU thread with the register lock held (it must not access the window).
 * Main thread.
 */
void vmmio_init(struct vmmio *t, struct smvmm_host *h, vmmio_irq_fn irq,
		void *irq_opaque, vmmio_ioevent_fn ioevent, void *ioevent_opaque);

/*
 * vmmio_destroy: release locks and detach the host's hooks (the host no
 * longer raises interrupts through t); does not destroy the device.  No
 * vCPU may access the window any more.  Main thread.
 */
void vmmio_destroy(struct vmmio *t);

/*
 * vmmio_access: an access of `len` bytes (1/2/4, 8 in config space) at
 * `offset` into the register window; reads fill `data` (LE).  Signature
 * matches mmio_handler_fn.  Registers below 0x100 need aligned 32-bit
 * accesses (§4.2.2); config space takes 1/2/4/8-byte accesses with
 * offset+len <= config_size.  Anything else reads as 0 and writes are
 * ignored; each kind of oddity is logged once per device.  Reads of
 * write-only or unknown registers are 0.  SHM registers report no shared
 * memory region (ShmLen and ShmBase read all ones).  vCPU thread.
 */
void vmmio_access(void *t, uint64_t offset, uint8_t *data, uint32_t len,
		  bool is_write);

/*
 * vmmio_queue_notify: deliver a kick for queue q to the plugin (under the
 * device lock), if the device is activated (DRIVER_OK accepted) and the
 * queue is ready and not broken.  A kick for a ready queue that arrives
 * before the device is activated (before DRIVER_OK, or while the DRIVER_OK
 * write is still on its way to activate) is remembered and delivered right
 * after activate succeeds (§3.1.1 says the driver should not send it before
 * DRIVER_OK; losing it would hang the driver); a reset forgets it.  I/O
 * thread (ioeventfd) or vCPU thread (QueueNotify MMIO write).
 */
void vmmio_queue_notify(struct vmmio *t, uint16_t q);

#endif
