/* SPDX-License-Identifier: MIT */
/*
 * The machine description: an INI file read with inih.
 *
 *   [machine]  vcpus = 1..64, memory = <n>[K|M|G] (>= 16M), backend = kvm,
 *              plugin_dir = <dir> (optional)
 *   [boot]     kernel = <path> (required), initrd = <path>, cmdline = <text>,
 *              protocol = auto|linux|pvh
 *   [console]  (optional) serial = stdio|none|<file path>
 *   [device.<id>]  type = <plugin type> (required); mmio_base = <addr>
 *              (optional, 4 KiB aligned); irq = <5..23> (optional);
 *              any other key is handed to the plugin, which lists the keys it
 *              accepts (checked by machine_check_device_keys after loading).
 *
 * Relative paths are resolved against the INI file's directory.  Every error
 * is one line: "<file>:<line>: [<section>] <key>: <reason>".
 */
#ifndef SMVMM_MACHINE_H
#define SMVMM_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device.h" /* struct device_kv */

#define MACHINE_MAX_DEVICES 32
#define MACHINE_MAX_VCPUS 64

enum boot_protocol { BOOT_PROTO_AUTO = 0, BOOT_PROTO_LINUX, BOOT_PROTO_PVH };

struct machine_device {
	char *id;               /* <id> of [device.<id>] */
	char *type;             /* type = ... */
	int line;               /* line of the section header */
	int type_line;
	uint64_t mmio_base;     /* 0 = planned by the core */
	int mmio_base_line;
	int irq;                /* -1 = planned by the core */
	int irq_line;
	struct device_kv *kv;   /* plugin-specific keys (key/value strdup'd) */
	unsigned int nkv;
};

struct smvmm_machine {
	char *path;             /* the INI file as given */
	char *dir;              /* its directory, for relative paths */

	uint32_t vcpus;         /* default 1 */
	uint64_t mem_size;      /* bytes, default 256 MiB */
	char *backend;          /* default "kvm" */
	char *plugin_dir;       /* resolved, or NULL */

	char *kernel;           /* resolved path */
	int kernel_line;
	char *initrd;           /* resolved path or NULL */
	int initrd_line;
	char *cmdline;          /* default "" */
	enum boot_protocol protocol;

	char *serial;           /* "stdio" (default), "none" or a file path */

	struct machine_device dev[MACHINE_MAX_DEVICES];
	unsigned int ndev;
};

/*
 * machine_load: parse and validate `path`.  Checks: unknown sections and
 * keys (typos), bad numbers and units, vcpus range, memory range, missing
 * [boot] kernel, kernel/initrd not readable, duplicate device ids, bad ids
 * (only [A-Za-z0-9_-]), missing type, duplicate keys, mmio_base alignment,
 * two devices with the same mmio_base or irq.  0, or -EINVAL with the message
 * in err.  Main thread.
 */
int machine_load(const char *path, struct smvmm_machine *m, char *err,
		 size_t errlen);

/*
 * machine_check_device_keys: every plugin-specific key of `d` must be in the
 * NULL-terminated `allowed` list; else -EINVAL and
 * "<file>:<line>: [device.<id>] <key>: unknown key for type <type> (known: ...)".
 */
int machine_check_device_keys(const struct smvmm_machine *m,
			      const struct machine_device *d,
			      const char *const *allowed, char *err,
			      size_t errlen);

/* machine_parse_size: "256M", "1G", "4096", "64K" -> bytes; -EINVAL/-ERANGE. */
int machine_parse_size(const char *s, uint64_t *out);

/* machine_free: free everything; *m zeroed. */
void machine_free(struct smvmm_machine *m);

#endif
