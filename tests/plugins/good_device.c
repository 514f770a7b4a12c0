// SPDX-License-Identifier: MIT
/*
 * Test plugin: a complete, valid ABI 1.0 device plugin (type "good").
 *
 * The other loader test plugins #include this file after overriding one of
 * the TP_* knobs below, so each of them differs from a valid plugin in
 * exactly the one way its loader test is about.
 */
#include <errno.h>
#include <stddef.h>
#include <smvmm/plugin.h>

#ifndef TP_SYMBOL
#define TP_SYMBOL smvmm_plugin_v1 /* the exported descriptor's name */
#endif
#ifndef TP_ABI_MAJOR
#define TP_ABI_MAJOR SMVMM_PLUGIN_ABI_MAJOR
#endif
#ifndef TP_ABI_MINOR
#define TP_ABI_MINOR SMVMM_PLUGIN_ABI_MINOR
#endif
#ifndef TP_DESC_SIZE
#define TP_DESC_SIZE sizeof(struct smvmm_plugin_desc)
#endif
#ifndef TP_KIND
#define TP_KIND SMVMM_PLUGIN_DEVICE
#endif
#ifndef TP_NAME
#define TP_NAME "good"
#endif
#ifndef TP_OPS_SIZE
#define TP_OPS_SIZE sizeof(struct smvmm_device_ops)
#endif
#ifndef TP_OPS
#define TP_OPS (&ops)
#endif
#ifndef TP_QUEUE_NOTIFY
#define TP_QUEUE_NOTIFY t_queue_notify
#endif

static int t_create(const struct smvmm_host_services *svc,
		    struct smvmm_host *h, struct smvmm_device_info *info,
		    void **dev)
{
	(void)svc;
	(void)h;
	(void)info;
	*dev = NULL;
	return -ENOSYS;
}

static void t_destroy(void *dev)
{
	(void)dev;
}

static uint64_t t_get_features(void *dev)
{
	(void)dev;
	return 1ull << 32; /* VIRTIO_F_VERSION_1 */
}

static int t_set_features(void *dev, uint64_t f)
{
	(void)dev;
	(void)f;
	return 0;
}

static int t_config_read(void *dev, uint32_t o, void *d, uint32_t l)
{
	(void)dev;
	(void)o;
	(void)d;
	(void)l;
	return 0;
}

static int t_config_write(void *dev, uint32_t o, const void *d, uint32_t l)
{
	(void)dev;
	(void)o;
	(void)d;
	(void)l;
	return 0;
}

static int t_activate(void *dev)
{
	(void)dev;
	return 0;
}

__attribute__((unused)) static void t_queue_notify(void *dev, uint16_t q)
{
	(void)dev;
	(void)q;
}

static void t_reset(void *dev)
{
	(void)dev;
}

/* Optional ops: set here so a short ops table shows they get zeroed. */
static int t_snapshot_save(void *dev, void **data, size_t *len)
{
	(void)dev;
	(void)data;
	(void)len;
	return -ENOSYS;
}

static int t_snapshot_restore(void *dev, const void *data, size_t len)
{
	(void)dev;
	(void)data;
	(void)len;
	return -ENOSYS;
}

__attribute__((unused)) static const struct smvmm_device_ops ops = {
	.struct_size = TP_OPS_SIZE,
	.create = t_create,
	.destroy = t_destroy,
	.get_features = t_get_features,
	.set_features = t_set_features,
	.config_read = t_config_read,
	.config_write = t_config_write,
	.activate = t_activate,
	.queue_notify = TP_QUEUE_NOTIFY,
	.reset = t_reset,
	.snapshot_save = t_snapshot_save,
	.snapshot_restore = t_snapshot_restore,
};

static const char *const keys[] = { "path", "size", NULL };

SMVMM_PLUGIN_EXPORT const struct smvmm_plugin_desc TP_SYMBOL = {
	.abi_major = TP_ABI_MAJOR,
	.abi_minor = TP_ABI_MINOR,
	.struct_size = TP_DESC_SIZE,
	.kind = TP_KIND,
	.name = TP_NAME,
	.version = "1.2.3",
	.description = "loader test plugin",
	.config_keys = keys,
	.ops = TP_OPS,
};
