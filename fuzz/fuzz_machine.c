/* SPDX-License-Identifier: MIT */
/*
 * fuzz_machine: INI text -> machine_load / machine_load_devices
 * (core/machine.c).  The machine file is untrusted: anything must give 0 or
 * a negative errno with a message, never a crash or a leak.
 *
 * Input: byte 0 bit 0 selects machine_load_devices, the rest is the file.
 * The file is written to a private directory that also holds files "k" and
 * "initrd", so relative kernel/initrd paths resolve (absolute ones such as
 * /bin/true work too).  On success a few cross-field invariants are checked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine.h"

static char dir[64];
static char path[96];

#define CHECK(c)                                                        \
	do {                                                            \
		if (!(c)) {                                             \
			fprintf(stderr, "invariant failed: %s (%s:%d)\n", \
				#c, __FILE__, __LINE__);                \
			abort();                                        \
		}                                                       \
	} while (0)

static void touch(const char *name)
{
	char p[128];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "x", 1) != 1)
		abort();
	close(fd);
}

static void cleanup(void)
{
	char p[128];

	unlink(path);
	snprintf(p, sizeof(p), "%s/k", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/initrd", dir);
	unlink(p);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "/tmp/fuzz_machine.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/m.ini", dir);
	touch("k");
	touch("initrd");
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smvmm_machine m;
	char err[512];
	bool devices;
	int fd, ret;

	if (!size)
		return 0;
	devices = data[0] & 1;
	data++;
	size--;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);

	memset(&m, 0x5a, sizeof(m)); /* machine_load must not need a zeroed *m */
	err[0] = 0;
	if (devices)
		ret = machine_load_devices(path, &m, err, sizeof(err));
	else
		ret = machine_load(path, &m, err, sizeof(err));
	CHECK(ret <= 0);
	if (ret) {
		CHECK(err[0] != 0);
		CHECK(memchr(err, 0, sizeof(err)));
		machine_free(&m);
		return 0;
	}
	CHECK(m.ndev <= MACHINE_MAX_DEVICES);
	if (devices)
		CHECK(m.ndev >= 1);
	else
		CHECK(m.kernel && m.vcpus >= 1 && m.vcpus <= MACHINE_MAX_VCPUS);
	for (unsigned int i = 0; i < m.ndev; i++) {
		CHECK(m.dev[i].id && m.dev[i].type);
		for (unsigned int j = 0; j < i; j++)
			CHECK(strcmp(m.dev[i].id, m.dev[j].id) != 0);
		for (unsigned int k = 0; k < m.dev[i].nkv; k++)
			CHECK(m.dev[i].kv[k].key && m.dev[i].kv[k].value);
	}
	machine_free(&m);
	return 0;
}
