// SPDX-License-Identifier: MIT
/*
 * virtio-blk driver for the probe (polling).  Not written yet: the device
 * is reported as found but not driven.
 */
#include "probe.h"

void drive_blk(struct vdev *d, int idx)
{
	(void)d;
	(void)idx;
}

bool blk_option(const char *key, size_t klen, const char *val, size_t vlen)
{
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	return false;
}

void blk_summary(int n)
{
	(void)n;
}
