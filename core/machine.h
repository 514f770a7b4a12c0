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
 *   [sandbox]  (optional) the jail and resource limits (docs/sandbox.md):
 *              user = <name|uid>, group = <name|gid> (default: the user's
 *              primary group), chroot = <dir>, namespaces = <list of
 *              mount,pid,net,ipc,uts> | none (default: all five), cgroup =
 *              <absolute cgroup v2 directory> with memory_max, memory_high,
 *              memory_swap_max, cpu_max, cpu_weight, pids_max, cpuset_cpus,
 *              cpuset_mems (written to memory.max, ...); fsize_limit =
 *              <size> (RLIMIT_FSIZE, no jail needed).  Every jail key needs
 *              user: the jail drops root to it.  See struct
 *              machine_sandbox.
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

/* [sandbox] namespaces (MACHINE_NS_*: CLONE_NEW* to enter at start-up). */
#define MACHINE_NS_MOUNT (1u << 0)
#define MACHINE_NS_PID (1u << 1)
#define MACHINE_NS_NET (1u << 2)
#define MACHINE_NS_IPC (1u << 3)
#define MACHINE_NS_UTS (1u << 4)
#define MACHINE_NS_ALL 0x1fu

#define MACHINE_SANDBOX_MAX_LIMITS 8

/* Where a [sandbox] setting came from: an INI line (> 0), or a command-line
 * option (line 0, `opt` names it: "--uid"). */
struct machine_origin {
	int line;
	const char *opt;
};

/* One cgroup v2 interface file to write, e.g. memory.max = 536870912. */
struct machine_cg_limit {
	const char *key;        /* "memory_max" (static) */
	const char *file;       /* "memory.max" (static) */
	char *value;            /* validated, as written to the file */
	int line;
};

/*
 * [sandbox], validated by machine_load (and --uid/--gid/--chroot through
 * machine_load_cli).  Used by sandbox.c at start-up (sandbox_prepare) and
 * once the VM is set up (sandbox_enter).
 */
struct machine_sandbox {
	bool jail;              /* a user was given: drop privileges */
	uint32_t uid, gid;      /* resolved; never 0 */
	bool has_gid;           /* group given, or the user's passwd entry */
	char *user, *group;     /* as given, for messages (NULL: not given) */
	struct machine_origin user_at, group_at;
	char *chroot;           /* realpath of the jail directory, or NULL */
	char *chroot_alias;     /* the absolute path as given, normalized, when
				   it differs from chroot (a symlink), or NULL */
	struct machine_origin chroot_at;
	unsigned int namespaces; /* MACHINE_NS_*; MACHINE_NS_ALL by default
				   in a jail */
	int namespaces_line;    /* 0: the default */
	char *cgroup;           /* absolute cgroup v2 directory, or NULL */
	int cgroup_line;
	struct machine_cg_limit limit[MACHINE_SANDBOX_MAX_LIMITS];
	unsigned int nlimit;
	uint64_t fsize_limit;   /* bytes; 0 = not set (RLIMIT_FSIZE as it is) */
	int fsize_limit_line;
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

	struct machine_sandbox sandbox;

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
 * The command-line equivalents of [sandbox] user, group and chroot
 * (smvmm --uid/--gid/--chroot); NULL = not given.  A value given here
 * replaces the file's and is validated by the same rules; errors name the
 * option ("--uid: unknown user 'x'").  A relative --chroot is relative to
 * the working directory, as any command-line path.
 */
struct machine_cli {
	const char *uid, *gid, *chroot;
};

/*
 * machine_load_cli: machine_load, with `cli` (may be NULL) applied after
 * the file and before the checks that span keys (a jail key needs a
 * user, ...).  Same return values and errors.  Main thread.
 */
int machine_load_cli(const char *path, const struct machine_cli *cli,
		     struct smvmm_machine *m, char *err, size_t errlen);

/*
 * machine_where: "<file>:<line>: [sandbox] <key>" for a setting from the
 * file, "<opt>" for one from the command line, into buf.  For the errors
 * sandbox.c reports at run time.  Returns buf.
 */
const char *machine_where(const struct smvmm_machine *m, const char *key,
			  struct machine_origin at, char *buf, size_t len);

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
