/* SPDX-License-Identifier: MIT */
/*
 * The machine description: an INI file read with inih.
 *
 *   [machine]  vcpus = 1..64 (default 1); memory = <size> (default 256M,
 *              16M..1T, a multiple of 4K); backend = <name> (default kvm,
 *              [A-Za-z0-9_-]{1,32}); plugin_dir = <dir> (optional, must
 *              exist)
 *   [boot]     kernel = <path> (required), initrd = <path>, cmdline = <text>
 *              (at most 4095 bytes), protocol = auto|linux|pvh
 *   [console]  (optional) serial = stdio (default) | none | <file path>;
 *              serial_max_size = <size> (file only; 4K..1T; default:
 *              unlimited): when the file reaches it, it is rotated;
 *              serial_max_files = 1..100 (default 1; file only): files
 *              kept, the current one included, as Docker's json-file
 *              max-size / max-file: <file> is renamed <file>.1 (.1 to .2
 *              and so on, the oldest dropped); with 1 the file is emptied
 *              and written from the start again
 *   [device.<id>]  <id> is [A-Za-z0-9_-]{1,32}, unique; at most 32 devices.
 *              type = <plugin type> (required; [A-Za-z0-9_.-]{1,64}, no
 *              leading '.'); mmio_base = <addr> (optional, decimal or 0x hex,
 *              4 KiB aligned, inside the virtio-mmio window
 *              0xd0000000..0xfebfffff: above low RAM, below the IOAPIC at
 *              0xfec00000); irq = 5..23 (optional; IOAPIC pins, 0..4 are
 *              legacy ISA); any other key is handed to the plugin, which
 *              lists the keys it accepts (checked by
 *              machine_check_device_keys after loading).  No two devices
 *              may share an mmio_base or an irq.
 *
 * Sizes: decimal digits with an optional K, M, G or T suffix (either case,
 * optionally followed by "iB"); all binary multiples (1K = 1024).
 *
 * Syntax: `[section]`, `key = value` (or `key: value`); whole-line comments
 * start with ';' or '#'; an inline comment starts with ';' after a blank.
 * Values are taken literally (no quoting, no escapes).  Keys and section
 * names are case-sensitive.  A key may appear once per
 * section and a section once per file.  Leading blanks are ignored: there
 * are no multi-line values.  Lines up to 8191 bytes, files up to 1 MiB, no
 * control characters; CRLF line ends and a UTF-8 BOM are accepted.
 *
 * kernel and initrd must be readable regular files at load time.  Relative
 * paths (plugin_dir, kernel, initrd, serial) are resolved against the INI
 * file's directory, made absolute.  Every error is one line:
 * "<file>:<line>: [<section>] <key>: <reason>" ("<file>:<line>: [<section>]:
 * <reason>" for section-level errors, "<file>: <reason>" for file-level ones
 * such as a missing [boot] section).
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
	int backend_line;       /* 0 when defaulted */
	char *plugin_dir;       /* resolved, or NULL */

	char *kernel;           /* resolved path */
	int kernel_line;
	char *initrd;           /* resolved path or NULL */
	int initrd_line;
	char *cmdline;          /* default "" */
	enum boot_protocol protocol;

	char *serial;           /* "stdio" (default), "none" or a file path */
	uint64_t serial_max_size;  /* bytes, 0 = unlimited */
	unsigned int serial_max_files; /* 1 (default) .. 100 */

	struct machine_device dev[MACHINE_MAX_DEVICES];
	unsigned int ndev;

	bool check_only;        /* set by the caller: devices are created for
				   --check/--dump-acpi only (check_only
				   service); not read from the file */
};

/*
 * machine_load: parse and validate `path`.  Checks: unknown sections and
 * keys (typos), bad numbers and units, vcpus range, memory range, missing
 * [boot] kernel, kernel/initrd not readable, duplicate device ids, bad ids
 * (only [A-Za-z0-9_-]), missing type, duplicate keys, mmio_base alignment
 * and window, irq range, two devices with the same mmio_base or irq.
 * Returns 0, or -EINVAL (bad contents), -errno when the file itself cannot
 * be read (-ENOENT, -EACCES, ...), -EFBIG, -ENOMEM; the one-line message is
 * in err (err may be NULL).  On error *m is left zeroed (machine_free on it
 * is harmless).  Main thread (no global state; reentrant).
 */
int machine_load(const char *path, struct smvmm_machine *m, char *err,
		 size_t errlen);

/*
 * machine_load_devices: parse a device file: the same syntax and the same
 * [device.<id>] rules as machine_load (type required, ids unique, core keys
 * mmio_base/irq validated, plugin keys kept for the plugin), but any other
 * section ([machine], [boot], [console] or unknown) is an error naming its
 * line, and at least one device is required.  For `smvmm vhost-user`, which
 * serves a device without a machine.  The [machine] fields of *m get their
 * defaults (plugin_dir NULL).  Same return values and error format as
 * machine_load.  Main thread.
 */
int machine_load_devices(const char *path, struct smvmm_machine *m, char *err,
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

/*
 * machine_parse_size: "256M", "1G", "4096", "64K", "1T", "2GiB" -> bytes.
 * -EINVAL for anything else ("", "1.5G", "-1", "12Q", "1MB"); -ERANGE when
 * the value exceeds 2^64 - 1 bytes.  *out is written only on success.
 */
int machine_parse_size(const char *s, uint64_t *out);

/*
 * machine_dir_of: the directory of `path`, absolute when it can be resolved
 * (realpath), malloc'd; NULL when out of memory.
 * machine_join_path: `v` relative to `dir` unless absolute, malloc'd in
 * *out; -EINVAL (empty), -ENAMETOOLONG (>= PATH_MAX), -ENOMEM.  These are
 * the rules for [boot] kernel/initrd and, through the config_path service,
 * for plugin path keys.
 */
char *machine_dir_of(const char *path);
int machine_join_path(const char *dir, const char *v, char **out);

/* machine_free: free everything; *m zeroed.  Safe on a zeroed *m. */
void machine_free(struct smvmm_machine *m);

/*
 * machine_append_cmdline: append `text` to m->cmdline after one space (none
 * when the cmdline is empty), as QEMU's -append adds to a machine's
 * command line.  The result obeys [boot] cmdline's limit (4095 bytes).
 * Returns 0, -E2BIG (message in err: the byte counts), -ENOMEM.  Main thread.
 */
int machine_append_cmdline(struct smvmm_machine *m, const char *text,
			   char *err, size_t errlen);

#endif
