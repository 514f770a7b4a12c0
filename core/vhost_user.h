/* SPDX-License-Identifier: MIT */
/*
 * `smvmm vhost-user`: serve one device plugin as a vhost-user back-end
 * (QEMU docs/interop/vhost-user.rst, "the spec" below).
 *
 * The plugin runs exactly as inside smvmm: the same loader, the same
 * services table (device.c) and the same virtqueue code (virtq.c).  Only the
 * transport differs:
 *
 *   virtio-mmio (in the VMM)         vhost-user (here)
 *   ------------------------         -----------------------------------------
 *   guest RAM from gmem_add_ram      SET_MEM_TABLE: the front-end's fds are
 *                                    mmap()ed and added with gmem_add_mapping,
 *                                    so every translation is bounds-checked
 *   QueueDesc/Driver/Device (gpa)    SET_VRING_ADDR: front-end virtual
 *                                    addresses, translated through the table
 *                                    (userspace_addr -> guest_phys_addr)
 *   DeviceFeatures/FEATURES_OK       GET_FEATURES / SET_FEATURES
 *   DRIVER_OK -> ops->activate       the first ring that is started (kick
 *                                    fd) and enabled (SET_VRING_ENABLE, or
 *                                    at once without PROTOCOL_FEATURES)
 *   QueueNotify / ioeventfd          the ring's kick eventfd, watched on the
 *                                    event loop -> ops->queue_notify
 *   interrupt (InterruptStatus 1)    write to the ring's call eventfd
 *   config change (InterruptStatus 2) VHOST_USER_SLAVE_CONFIG_CHANGE_MSG on
 *                                    the back-end channel (SLAVE_REQ)
 *   NEEDS_RESET                      write to every ring's err eventfd
 *   Status = 0 -> ops->reset         the last started ring stopped
 *                                    (GET_VRING_BASE), RESET_DEVICE,
 *                                    RESET_OWNER, or the front-end went away
 *
 * Threads: the protocol runs on the caller's thread (vu_server_serve); kicks
 * and plugin fd watches run on the server's event-loop thread; the plugin's
 * own threads may call any service.  The device lock (device.c) serialises
 * plugin ops as in the VMM.
 *
 * The front-end is untrusted: every message is checked (header version, exact
 * payload size per request, ring index, fd count, region bounds against the
 * size of the file behind each fd).  A bad message gets an error reply when
 * the front-end asked for one (REPLY_ACK + need_reply) and the connection is
 * closed otherwise; the server then resets the device and is ready for the
 * next front-end.  Nothing the front-end sends can abort the process.
 *
 * Guest memory faults: a front-end may shrink a memory file after
 * SET_MEM_TABLE (the size check holds only at that moment; seals cannot be
 * required because QEMU's memory-backend-file on tmpfs or hugetlbfs cannot
 * be sealed, and memory-backend-memfd has seal=off).  The first
 * vu_server_new installs a process-wide SIGBUS handler (SA_SIGINFO,
 * SA_ONSTACK) that covers every thread, plugin threads included: a fault
 * inside a mapped guest region replaces that whole region with anonymous
 * zero memory (MAP_FIXED), so the access completes, and flags the server;
 * its serving thread then closes the session (vu_server_serve returns
 * -EPROTO, logged), which resets the device and unmaps everything.  Data
 * written to the region after the fault is lost, as it should be.  Any other
 * SIGBUS goes to the handler installed before, or kills the process as
 * usual.  A caller that installs its own SIGBUS handler after
 * vu_server_new must chain to the previous one.  A plugin that reads or
 * writes guest memory through a system call (pread, getrandom) gets EFAULT
 * instead, and no signal.
 *
 * Not supported (never offered): dirty logging (VHOST_F_LOG_ALL,
 * LOG_SHMFD), IOMMU (VIRTIO_F_ACCESS_PLATFORM, IOTLB), postcopy, inflight
 * I/O tracking (INFLIGHT_SHMFD), in-band notifications, CONFIGURE_MEM_SLOTS,
 * STATUS, packed rings, polling mode (a kick message without an fd).
 */
#ifndef SMVMM_VHOST_USER_H
#define SMVMM_VHOST_USER_H

#include <stddef.h>
#include <stdint.h>

#include <smvmm/plugin.h>

#include "device.h"

/* ---- wire format (the spec, "Message Specification") ------------------ */

/* Header flags: version in bits 0-1, reply bit 2, need_reply bit 3. */
#define VHOST_USER_VERSION 0x1u
#define VHOST_USER_VERSION_MASK 0x3u
#define VHOST_USER_REPLY_MASK (1u << 2)
#define VHOST_USER_NEED_REPLY_MASK (1u << 3)

/* u64 payload of SET_VRING_KICK/CALL/ERR: index in bits 0-7, bit 8 "no fd" */
#define VHOST_USER_VRING_IDX_MASK 0xffull
#define VHOST_USER_VRING_NOFD_MASK (1ull << 8)

/* The feature bit that announces GET/SET_PROTOCOL_FEATURES (virtio's
 * reserved bit 30, never offered by a virtio device itself). */
#define VHOST_USER_F_PROTOCOL_FEATURES 30
/* vhost's dirty-log feature bit: never offered here. */
#define VHOST_F_LOG_ALL 26

/* Protocol feature bits (the spec, "Protocol features"). */
#define VHOST_USER_PROTOCOL_F_MQ 0
#define VHOST_USER_PROTOCOL_F_LOG_SHMFD 1
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_SLAVE_REQ 5
#define VHOST_USER_PROTOCOL_F_CONFIG 9
#define VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD 12
#define VHOST_USER_PROTOCOL_F_RESET_DEVICE 13
#define VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS 14
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15
#define VHOST_USER_PROTOCOL_F_STATUS 16

/* What this back-end offers (CONFIG only when the device has config
 * space). */
#define VHOST_USER_PROTOCOL_FEATURES                                  \
	((1ull << VHOST_USER_PROTOCOL_F_MQ) |                          \
	 (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |                   \
	 (1ull << VHOST_USER_PROTOCOL_F_SLAVE_REQ) |                   \
	 (1ull << VHOST_USER_PROTOCOL_F_CONFIG) |                      \
	 (1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE))

/* Front-end requests (the spec, "Front-end message types"). */
enum vhost_user_request {
	VHOST_USER_GET_FEATURES = 1,
	VHOST_USER_SET_FEATURES = 2,
	VHOST_USER_SET_OWNER = 3,
	VHOST_USER_RESET_OWNER = 4,
	VHOST_USER_SET_MEM_TABLE = 5,
	VHOST_USER_SET_LOG_BASE = 6,
	VHOST_USER_SET_LOG_FD = 7,
	VHOST_USER_SET_VRING_NUM = 8,
	VHOST_USER_SET_VRING_ADDR = 9,
	VHOST_USER_SET_VRING_BASE = 10,
	VHOST_USER_GET_VRING_BASE = 11,
	VHOST_USER_SET_VRING_KICK = 12,
	VHOST_USER_SET_VRING_CALL = 13,
	VHOST_USER_SET_VRING_ERR = 14,
	VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VHOST_USER_GET_QUEUE_NUM = 17,
	VHOST_USER_SET_VRING_ENABLE = 18,
	VHOST_USER_SEND_RARP = 19,
	VHOST_USER_NET_SET_MTU = 20,
	VHOST_USER_SET_SLAVE_REQ_FD = 21,
	VHOST_USER_IOTLB_MSG = 22,
	VHOST_USER_SET_VRING_ENDIAN = 23,
	VHOST_USER_GET_CONFIG = 24,
	VHOST_USER_SET_CONFIG = 25,
	VHOST_USER_RESET_DEVICE = 34,
	VHOST_USER_VRING_KICK = 35,
	VHOST_USER_GET_MAX_MEM_SLOTS = 36,
	VHOST_USER_ADD_MEM_REG = 37,
	VHOST_USER_REM_MEM_REG = 38,
	VHOST_USER_SET_STATUS = 39,
	VHOST_USER_GET_STATUS = 40,
};

/* Back-end requests on the SLAVE_REQ channel. */
#define VHOST_USER_SLAVE_CONFIG_CHANGE_MSG 2

/* Memory regions per SET_MEM_TABLE, and fds per message (the spec: 8). */
#define VHOST_USER_MAX_REGIONS 8
#define VHOST_USER_MAX_FDS 8
/* Device config space carried by GET/SET_CONFIG (virtio-mmio's window). */
#define VHOST_USER_MAX_CONFIG 256
/* Largest payload read: any supported request is far smaller (264 bytes for
 * a full memory table); up to this, unknown requests are read and answered,
 * beyond it the stream cannot be trusted and the connection is closed. */
#define VHOST_USER_MAX_PAYLOAD 4096

struct vhost_user_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size; /* payload bytes after the header */
} __attribute__((packed));

struct vhost_user_vring_state {
	uint32_t index;
	uint32_t num;
} __attribute__((packed));

/* Linux's struct vhost_vring_addr: front-end virtual addresses. */
struct vhost_user_vring_addr {
	uint32_t index;
	uint32_t flags; /* bit 0: VHOST_VRING_F_LOG (not supported) */
	uint64_t desc;
	uint64_t used;
	uint64_t avail;
	uint64_t log;
} __attribute__((packed));

struct vhost_user_region {
	uint64_t gpa;         /* guest address */
	uint64_t size;
	uint64_t uva;         /* front-end (user) address */
	uint64_t mmap_offset; /* where the region starts in its fd */
} __attribute__((packed));

struct vhost_user_memory {
	uint32_t nregions;
	uint32_t padding;
	struct vhost_user_region regions[VHOST_USER_MAX_REGIONS];
} __attribute__((packed));

struct vhost_user_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags; /* 0: writable fields, 1: live migration */
	uint8_t payload[VHOST_USER_MAX_CONFIG];
} __attribute__((packed));

#define VHOST_USER_CONFIG_HDR 12u /* offset, size, flags */

/* ---- the server ------------------------------------------------------- */

struct vu_server;

/*
 * vu_server_new: create the device (ops->create through device_create, with
 * the [device.<id>] keys kv/nkv from `file`, section at `section_line`),
 * start the event-loop thread, and return a server ready for front-ends.
 * id, file and kv must outlive the server.  -EINVAL (bad plugin info, bad
 * keys: err says which), -ENOMEM, -errno of sigaction/eventfd for the
 * SIGBUS guard (above), or create()'s -errno.  err gets one line.  Main
 * thread (the first call installs the process-wide SIGBUS handler).
 */
int vu_server_new(struct vu_server **out, const struct smvmm_device_ops *ops,
		  const char *id, const char *file, int section_line,
		  const struct device_kv *kv, unsigned int nkv, char *err,
		  size_t errlen);

/*
 * vu_server_serve: speak vhost-user on the connected stream socket `conn`
 * (the server takes ownership and closes it) until the front-end closes it,
 * sends something that ends the session, or `stop_fd` (>= 0) becomes
 * readable.  While serving, connections on `listen_fd` (>= 0) are accepted
 * and closed at once: one front-end at a time.  On return the device is
 * reset, guest memory unmapped and every fd of the session closed, so the
 * server can serve the next front-end.
 * Returns 0 when the front-end disconnected, -EPROTO when the server closed
 * the connection because of a bad message or a guest memory fault (SIGBUS
 * on a shrunk memory file; both logged), -EINTR when stop_fd
 * fired, or -errno for a socket error.  One caller at a time.
 * The caller must ignore SIGPIPE (as `smvmm vhost-user` does): a front-end
 * may pass a pipe with no reader as a call fd, and the write to it must fail
 * with EPIPE rather than kill the process.
 */
int vu_server_serve(struct vu_server *s, int conn, int listen_fd,
		    int stop_fd);

/* vu_server_free: stop the loop, destroy the device.  Not while serving. */
void vu_server_free(struct vu_server *s);

/* vu_server_host: the device host (info, features), for callers and tests. */
struct smvmm_host *vu_server_host(struct vu_server *s);

/* vu_server_mapped: guest memory regions currently mapped (tests). */
unsigned int vu_server_mapped(struct vu_server *s);

/*
 * vhost_user_main: the `smvmm vhost-user ...` subcommand; argv[0] is
 * "vhost-user".  Returns the process exit status.  Main thread.
 */
int vhost_user_main(int argc, char **argv);

#endif
