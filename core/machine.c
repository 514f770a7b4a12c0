// SPDX-License-Identifier: MIT
/*
 * The machine description: an INI file parsed with inih, validated key by
 * key.  The file is untrusted input: every error names the file, the line,
 * the section and the key, and nothing in it can crash the parser.
 *
 * How inih is driven
 * ------------------
 * Debian's libinih (r55) is built with INI_HANDLER_LINENO=0 (the handler does
 * not get a line number), INI_MAX_LINE=200 (longer lines are cut and the
 * rest discarded) and no callback for section headers.  So the file is read
 * into memory and handed to ini_parse_stream() through our own reader, which
 * returns exactly one physical line per call.  That gives us:
 *
 *   - the line number: inih processes each line right after reading it, so
 *     the handler runs for the line the reader returned last;
 *   - section headers: the reader sees them, records their line, and checks
 *     the section name before any key of it is parsed;
 *   - long lines: a `key = value` line longer than inih's buffer (a kernel
 *     command line may be 4095 bytes) reaches inih as `key=<token>`, and the
 *     handler swaps the token for the value the reader split off with inih's
 *     own rules (inline comment, whitespace trimming);
 *   - no multi-line values: the reader drops leading whitespace, so an
 *     indented line is an ordinary line, never a continuation of the value
 *     above (which would silently append to it);
 *   - control characters (and NUL) in the file are rejected.
 *
 * Syntax accepted: `[section]`, `key = value` (or `key: value`), comments on
 * their own line starting with ';' or '#', inline comments starting with ';'
 * after whitespace.  Keys and section names are case-sensitive.
 */
#define _GNU_SOURCE /* asprintf, strndup */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <ini.h>

#include "irq.h"
#include "machine.h"
#include "virtio_mmio.h"

/* Whole-file limit: a machine description is a few hundred bytes. */
#define MACHINE_MAX_FILE (1u << 20)
/* Physical line limit (a 4095-byte cmdline plus its key fits). */
#define MACHINE_MAX_LINE 8191
/* Plugin-specific keys per device. */
#define MACHINE_MAX_DEVICE_KEYS 64
/* Linux x86 boot protocol: cmdline_size is at most 4095 + NUL in practice. */
#define MACHINE_MAX_CMDLINE 4095
/* inih copies the section name into a 50-byte buffer (MAX_SECTION). */
#define MACHINE_MAX_SECTION 48
#define MACHINE_MAX_ID 32
#define MACHINE_MAX_NAME 32 /* backend name */
#define MACHINE_MAX_TYPE 64 /* device plugin type */

#define MACHINE_MEM_MIN (16ull << 20)
#define MACHINE_MEM_MAX (1ull << 40)
#define MACHINE_MEM_ALIGN 4096ull
#define MACHINE_DEFAULT_MEM (256ull << 20)

/*
 * The window device mmio_base values must fall in: the top of the 32-bit
 * address space below the IOAPIC (0xfec00000, its default base per the
 * 82093AA datasheet and MP spec 1.4 §3.6.1; the local APIC follows at
 * 0xfee00000), starting at 0xd0000000, the bottom of the classic 32-bit PCI
 * hole.  RAM the core places below 4 GiB stays under this window.
 */
#define MACHINE_MMIO_WIN_START 0xd0000000ull
#define MACHINE_MMIO_WIN_END 0xfebfffffull /* inclusive */
#define MACHINE_MMIO_ALIGN 4096ull

/* Marks a value the reader kept aside (a control char: never in the file). */
#define LONGVAL_MARK '\x1f'

enum section_kind {
	SEC_NONE = 0, /* before the first header */
	SEC_MACHINE,
	SEC_BOOT,
	SEC_CONSOLE,
	SEC_SANDBOX,
	SEC_DEVICE,
	SEC_NR,
};

static const char *const section_names[SEC_NR] = {
	[SEC_MACHINE] = "machine",
	[SEC_BOOT] = "boot",
	[SEC_CONSOLE] = "console",
	[SEC_SANDBOX] = "sandbox",
};

struct parse_ctx;
typedef int (*key_setter)(struct parse_ctx *c, const char *key,
			  const char *value);

struct key_desc {
	enum section_kind sec;
	const char *name;
	key_setter set;
};

struct parse_ctx {
	struct smvmm_machine *m;
	char *err;
	size_t errlen;
	bool failed;
	int fail_line; /* line of the first error, 0 = file-level */

	/* the file, read whole */
	char *buf;
	size_t len, pos;
	int lineno; /* line the reader returned last (1-based) */

	/* current section, as the reader saw its header */
	enum section_kind cur;
	struct machine_device *dev; /* SEC_DEVICE */
	char cur_name[MACHINE_MAX_SECTION + 1];
	int sec_line[SEC_NR];

	int *key_line; /* per entry of key_table: line it was set on, 0 */

	/* values of overlong lines, referenced from the line handed to inih */
	char **longv;
	unsigned int nlongv;

	/* machine_load_devices(): only [device.<id>] sections are allowed */
	bool devices_only;

	/* a --uid/--gid/--chroot value is being set: errors name it */
	const char *cli_opt;
	/* [sandbox] user's primary group, from its passwd entry */
	bool user_has_pw_gid;
	uint32_t user_pw_gid;
};

static int set_vcpus(struct parse_ctx *c, const char *key, const char *v);
static int set_memory(struct parse_ctx *c, const char *key, const char *v);
static int set_backend(struct parse_ctx *c, const char *key, const char *v);
static int set_plugin_dir(struct parse_ctx *c, const char *key, const char *v);
static int set_kernel(struct parse_ctx *c, const char *key, const char *v);
static int set_initrd(struct parse_ctx *c, const char *key, const char *v);
static int set_cmdline(struct parse_ctx *c, const char *key, const char *v);
static int set_protocol(struct parse_ctx *c, const char *key, const char *v);
static int set_serial(struct parse_ctx *c, const char *key, const char *v);
static int set_serial_max_size(struct parse_ctx *c, const char *key,
			       const char *v);
static int set_serial_max_files(struct parse_ctx *c, const char *key,
				const char *v);
static int set_user(struct parse_ctx *c, const char *key, const char *v);
static int set_group(struct parse_ctx *c, const char *key, const char *v);
static int set_chroot(struct parse_ctx *c, const char *key, const char *v);
static int set_namespaces(struct parse_ctx *c, const char *key, const char *v);
static int set_cgroup(struct parse_ctx *c, const char *key, const char *v);
static int set_cg_limit(struct parse_ctx *c, const char *key, const char *v);
static int set_fsize_limit(struct parse_ctx *c, const char *key,
			   const char *v);

static const struct key_desc key_table[] = {
	{ SEC_MACHINE, "vcpus", set_vcpus },
	{ SEC_MACHINE, "memory", set_memory },
	{ SEC_MACHINE, "backend", set_backend },
	{ SEC_MACHINE, "plugin_dir", set_plugin_dir },
	{ SEC_BOOT, "kernel", set_kernel },
	{ SEC_BOOT, "initrd", set_initrd },
	{ SEC_BOOT, "cmdline", set_cmdline },
	{ SEC_BOOT, "protocol", set_protocol },
	{ SEC_CONSOLE, "serial", set_serial },
	{ SEC_CONSOLE, "serial_max_size", set_serial_max_size },
	{ SEC_CONSOLE, "serial_max_files", set_serial_max_files },
	{ SEC_SANDBOX, "user", set_user },
	{ SEC_SANDBOX, "group", set_group },
	{ SEC_SANDBOX, "chroot", set_chroot },
	{ SEC_SANDBOX, "namespaces", set_namespaces },
	{ SEC_SANDBOX, "cgroup", set_cgroup },
	{ SEC_SANDBOX, "memory_max", set_cg_limit },
	{ SEC_SANDBOX, "memory_high", set_cg_limit },
	{ SEC_SANDBOX, "memory_swap_max", set_cg_limit },
	{ SEC_SANDBOX, "cpu_max", set_cg_limit },
	{ SEC_SANDBOX, "cpu_weight", set_cg_limit },
	{ SEC_SANDBOX, "pids_max", set_cg_limit },
	{ SEC_SANDBOX, "cpuset_cpus", set_cg_limit },
	{ SEC_SANDBOX, "cpuset_mems", set_cg_limit },
	{ SEC_SANDBOX, "fsize_limit", set_fsize_limit },
};
#define NR_KEYS (sizeof(key_table) / sizeof(key_table[0]))

/* Keys of [device.<id>] the core itself consumes. */
static const char *const device_core_keys[] = { "type", "mmio_base", "irq" };

/* ---- error messages ---------------------------------------------------- */

/*
 * Record the first error only: "<file>:<line>: [<section>] <key>: <reason>",
 * with the parts that are unknown (line 0, no section, no key) left out.
 */
static int __attribute__((format(printf, 5, 6)))
fail_at(struct parse_ctx *c, int line, const char *section, const char *key,
	const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	if (c->failed)
		return -EINVAL;
	c->failed = true;
	c->fail_line = line;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);

	if (!c->err || !c->errlen)
		return -EINVAL;

	if (c->cli_opt) {
		/* a command-line value: the option is the place to fix */
		snprintf(c->err, c->errlen, "%s: %s", c->cli_opt, reason);
		return -EINVAL;
	}
	char where[64] = "";
	if (line > 0)
		snprintf(where, sizeof(where), ":%d", line);
	if (section && key)
		snprintf(c->err, c->errlen, "%s%s: [%s] %s: %s", c->m->path,
			 where, section, key, reason);
	else if (section)
		snprintf(c->err, c->errlen, "%s%s: [%s]: %s", c->m->path, where,
			 section, reason);
	else if (key)
		snprintf(c->err, c->errlen, "%s%s: %s: %s", c->m->path, where,
			 key, reason);
	else
		snprintf(c->err, c->errlen, "%s%s: %s", c->m->path, where,
			 reason);
	return -EINVAL;
}

/* An error about `key` on the current line of the current section. */
#define fail_key(c, key, ...) \
	fail_at((c), (c)->lineno, (c)->cur_name, (key), __VA_ARGS__)

/* ---- small parsers ------------------------------------------------------ */

/*
 * Unsigned integer, the whole string: decimal, or hex with a 0x prefix when
 * `allow_hex`.  No sign, no whitespace, no octal.  -EINVAL / -ERANGE.
 */
static int parse_u64(const char *s, bool allow_hex, uint64_t *out)
{
	int base = 10;
	const char *d = s;
	char *end;

	if (allow_hex && d[0] == '0' && (d[1] == 'x' || d[1] == 'X')) {
		base = 16;
		d += 2;
	}
	if (!*d)
		return -EINVAL;
	/* strtoull would accept a sign, spaces and a second "0x": check first */
	for (const char *p = d; *p; p++) {
		if (base == 16 ? !isxdigit((unsigned char)*p)
			       : !isdigit((unsigned char)*p))
			return -EINVAL;
	}
	errno = 0;
	unsigned long long v = strtoull(d, &end, base);
	if (errno == ERANGE)
		return -ERANGE;
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/*
 * Sizes: decimal digits, then optionally K, M, G or T (either case), each
 * optionally followed by "iB"; all binary multiples (K = 1024).  "1.5G",
 * "-1", "", "12Q" -> -EINVAL; more than 2^64-1 bytes -> -ERANGE.
 */
int machine_parse_size(const char *s, uint64_t *out)
{
	size_t n = strspn(s, "0123456789");
	const char *suf = s + n;
	unsigned int shift;
	uint64_t v;
	char digits[32];
	int rc;

	switch (*suf) {
	case '\0':
		shift = 0;
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (shift && strcmp(suf + 1, "") && strcmp(suf + 1, "iB"))
		return -EINVAL;
	if (n == 0)
		return -EINVAL;
	/* 2^64 - 1 has 20 digits: without leading zeros, more are too many */
	while (n > 1 && *s == '0') {
		s++;
		n--;
	}
	if (n > 20)
		return -ERANGE;
	memcpy(digits, s, n);
	digits[n] = '\0';
	rc = parse_u64(digits, false, &v);
	if (rc)
		return rc;
	if (v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

/* [A-Za-z0-9_-] plus the characters in `extra`, 1..max bytes. */
static bool name_ok(const char *s, size_t max, const char *extra)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (const char *p = s; *p; p++) {
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' &&
		    !(extra && strchr(extra, *p)))
			return false;
	}
	return true;
}

int machine_join_path(const char *dir, const char *v, char **out)
{
	char *p = NULL;
	int n;

	if (!*v)
		return -EINVAL;
	if (v[0] == '/')
		n = asprintf(&p, "%s", v);
	else
		n = asprintf(&p, "%s/%s", dir, v);
	if (n < 0)
		return -ENOMEM;
	if (n >= PATH_MAX) {
		free(p);
		return -ENAMETOOLONG;
	}
	*out = p;
	return 0;
}

/* `v` relative to the INI file's directory, unless absolute.  malloc'd. */
static int resolve_path(struct parse_ctx *c, const char *key, const char *v,
			char **out)
{
	int rc = machine_join_path(c->m->dir, v, out);

	if (rc == -EINVAL)
		return fail_key(c, key, "empty path");
	if (rc == -ENOMEM)
		return fail_key(c, key, "out of memory");
	if (rc)
		return fail_key(c, key, "path longer than %d bytes",
				PATH_MAX - 1);
	return 0;
}

/* The file must exist, be a regular file and be readable by us now. */
static int check_readable_file(struct parse_ctx *c, const char *key,
			       const char *path)
{
	struct stat st;
	/* O_NONBLOCK: opening a FIFO for reading would wait for a writer. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0)
		return fail_key(c, key, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return fail_key(c, key, "%s: %s", path, strerror(e));
	}
	close(fd);
	if (!S_ISREG(st.st_mode))
		return fail_key(c, key, "%s: not a regular file", path);
	return 0;
}

/* ---- [machine] ---------------------------------------------------------- */

static int set_vcpus(struct parse_ctx *c, const char *key, const char *v)
{
	uint64_t n;

	if (parse_u64(v, false, &n) || n < 1 || n > MACHINE_MAX_VCPUS)
		return fail_key(c, key, "'%s' is not a number in 1..%d", v,
				MACHINE_MAX_VCPUS);
	c->m->vcpus = (uint32_t)n;
	return 0;
}

static int set_memory(struct parse_ctx *c, const char *key, const char *v)
{
	uint64_t n;
	int rc = machine_parse_size(v, &n);

	if (rc == -ERANGE)
		return fail_key(c, key, "'%s' is too large (max 1T)", v);
	if (rc)
		return fail_key(c, key,
				"'%s' is not a size (<n>[K|M|G|T], e.g. 256M)",
				v);
	if (n < MACHINE_MEM_MIN)
		return fail_key(c, key, "'%s' is below the minimum of 16M", v);
	if (n > MACHINE_MEM_MAX)
		return fail_key(c, key, "'%s' is above the maximum of 1T", v);
	if (n % MACHINE_MEM_ALIGN)
		return fail_key(c, key, "'%s' is not a multiple of 4K", v);
	c->m->mem_size = n;
	return 0;
}

static int set_backend(struct parse_ctx *c, const char *key, const char *v)
{
	if (!name_ok(v, MACHINE_MAX_NAME, NULL))
		return fail_key(c, key,
				"'%s' is not a backend name ([A-Za-z0-9_-], "
				"1..%d characters)",
				v, MACHINE_MAX_NAME);
	c->m->backend_line = c->lineno;
	c->m->backend = strdup(v);
	return c->m->backend ? 0 : fail_key(c, key, "out of memory");
}

static int set_plugin_dir(struct parse_ctx *c, const char *key, const char *v)
{
	struct stat st;
	char *p = NULL;
	int rc = resolve_path(c, key, v, &p);

	if (rc)
		return rc;
	if (stat(p, &st) < 0) {
		rc = fail_key(c, key, "%s: %s", p, strerror(errno));
		free(p);
		return rc;
	}
	if (!S_ISDIR(st.st_mode)) {
		rc = fail_key(c, key, "%s: not a directory", p);
		free(p);
		return rc;
	}
	c->m->plugin_dir = p;
	return 0;
}

/* ---- [boot] ------------------------------------------------------------- */

static int set_boot_file(struct parse_ctx *c, const char *key, const char *v,
			 char **dst, int *line)
{
	char *p = NULL;
	int rc = resolve_path(c, key, v, &p);

	if (rc)
		return rc;
	rc = check_readable_file(c, key, p);
	if (rc) {
		free(p);
		return rc;
	}
	*dst = p;
	*line = c->lineno;
	return 0;
}

static int set_kernel(struct parse_ctx *c, const char *key, const char *v)
{
	return set_boot_file(c, key, v, &c->m->kernel, &c->m->kernel_line);
}

static int set_initrd(struct parse_ctx *c, const char *key, const char *v)
{
	return set_boot_file(c, key, v, &c->m->initrd, &c->m->initrd_line);
}

static int set_cmdline(struct parse_ctx *c, const char *key, const char *v)
{
	size_t n = strlen(v);

	if (n > MACHINE_MAX_CMDLINE)
		return fail_key(c, key, "%zu bytes long, the maximum is %d", n,
				MACHINE_MAX_CMDLINE);
	c->m->cmdline = strdup(v);
	return c->m->cmdline ? 0 : fail_key(c, key, "out of memory");
}

static int set_protocol(struct parse_ctx *c, const char *key, const char *v)
{
	if (!strcmp(v, "auto"))
		c->m->protocol = BOOT_PROTO_AUTO;
	else if (!strcmp(v, "linux"))
		c->m->protocol = BOOT_PROTO_LINUX;
	else if (!strcmp(v, "pvh"))
		c->m->protocol = BOOT_PROTO_PVH;
	else
		return fail_key(c, key, "'%s' is not one of auto, linux, pvh",
				v);
	return 0;
}

/* ---- [console] ---------------------------------------------------------- */

/*
 * "stdio" and "none" are keywords; anything else is a file path (resolved
 * like every path; write "./stdio" for a file of that name).  The file is
 * created when the console opens it, so only the string is checked here.
 */
static int set_serial(struct parse_ctx *c, const char *key, const char *v)
{
	if (!strcmp(v, "stdio") || !strcmp(v, "none")) {
		c->m->serial = strdup(v);
		return c->m->serial ? 0 : fail_key(c, key, "out of memory");
	}
	if (!*v)
		return fail_key(c, key,
				"empty value (stdio, none or a file path)");
	return resolve_path(c, key, v, &c->m->serial);
}

static int set_serial_max_size(struct parse_ctx *c, const char *key,
			       const char *v)
{
	uint64_t n;
	int rc = machine_parse_size(v, &n);

	if (rc == -ERANGE || (!rc && n > (1ULL << 40)))
		return fail_key(c, key, "'%s' is above the maximum of 1T", v);
	if (rc)
		return fail_key(c, key,
				"'%s' is not a size (digits and K, M, G or T)",
				v);
	if (n < 4096)
		return fail_key(c, key, "'%s' is below the minimum of 4K", v);
	c->m->serial_max_size = n;
	return 0;
}

static int set_serial_max_files(struct parse_ctx *c, const char *key,
				const char *v)
{
	uint64_t n;

	if (parse_u64(v, false, &n) || n < 1 || n > 100)
		return fail_key(c, key, "'%s' is not a number in 1..100", v);
	c->m->serial_max_files = (unsigned int)n;
	return 0;
}

/* ---- [sandbox] ---------------------------------------------------------- */

/*
 * The origin of the value being set: the current line, or the command-line
 * option.
 */
static struct machine_origin here(const struct parse_ctx *c)
{
	return (struct machine_origin){ .line = c->cli_opt ? 0 : c->lineno,
					.opt = c->cli_opt };
}

/* A numeric uid/gid: digits only, 0..4294967294 ((uid_t)-1 means "none"
 * to the set*id calls).  1: not a number, 0: ok, -ERANGE. */
static int parse_id(const char *v, uint32_t *out)
{
	uint64_t n;

	for (const char *p = v; *p; p++)
		if (!isdigit((unsigned char)*p))
			return 1;
	if (parse_u64(v, false, &n) || n >= UINT32_MAX)
		return -ERANGE;
	*out = (uint32_t)n;
	return 0;
}

static int set_user(struct parse_ctx *c, const char *key, const char *v)
{
	struct machine_sandbox *sb = &c->m->sandbox;
	struct passwd pw, *res = NULL;
	char buf[4096];
	uint32_t uid;
	int rc;

	if (!*v)
		return fail_key(c, key, "empty value (a user name or a "
				"numeric uid)");
	rc = parse_id(v, &uid);
	if (rc < 0)
		return fail_key(c, key, "uid '%s' is out of range "
				"(0..4294967294)", v);
	c->user_has_pw_gid = false;
	if (rc == 0) {
		/* A numeric uid needs no passwd entry (a uid of its own per
		 * VM, as Firecracker's jailer recommends). */
		if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res) {
			c->user_has_pw_gid = true;
			c->user_pw_gid = (uint32_t)res->pw_gid;
		}
	} else {
		int e = getpwnam_r(v, &pw, buf, sizeof(buf), &res);

		if (e)
			return fail_key(c, key, "cannot look up user '%s': %s",
					v, strerror(e));
		if (!res)
			return fail_key(c, key, "unknown user '%s' (not in the "
					"passwd database; a numeric uid needs "
					"no entry)", v);
		uid = (uint32_t)res->pw_uid;
		c->user_has_pw_gid = true;
		c->user_pw_gid = (uint32_t)res->pw_gid;
	}
	if (uid == 0)
		return fail_key(c, key, "'%s' is uid 0 (root): the jail drops "
				"root privileges to another user", v);
	free(sb->user);
	sb->user = strdup(v);
	if (!sb->user)
		return fail_key(c, key, "out of memory");
	sb->uid = uid;
	sb->jail = true;
	sb->user_at = here(c);
	return 0;
}

static int set_group(struct parse_ctx *c, const char *key, const char *v)
{
	struct machine_sandbox *sb = &c->m->sandbox;
	struct group gr, *res = NULL;
	char buf[8192];
	uint32_t gid;
	int rc;

	if (!*v)
		return fail_key(c, key, "empty value (a group name or a "
				"numeric gid)");
	rc = parse_id(v, &gid);
	if (rc < 0)
		return fail_key(c, key, "gid '%s' is out of range "
				"(0..4294967294)", v);
	if (rc) {
		int e = getgrnam_r(v, &gr, buf, sizeof(buf), &res);

		if (e)
			return fail_key(c, key, "cannot look up group '%s': "
					"%s", v, strerror(e));
		if (!res)
			return fail_key(c, key, "unknown group '%s' (not in "
					"the group database; a numeric gid "
					"needs no entry)", v);
		gid = (uint32_t)res->gr_gid;
	}
	if (gid == 0)
		return fail_key(c, key, "'%s' is gid 0 (root): the jail drops "
				"root's group too", v);
	free(sb->group);
	sb->group = strdup(v);
	if (!sb->group)
		return fail_key(c, key, "out of memory");
	sb->gid = gid;
	sb->has_gid = true;
	sb->group_at = here(c);
	return 0;
}

/*
 * `p` (absolute) without "." and ".." components, repeated or trailing
 * slashes: lexically, as the path was written.  malloc'd, NULL if out of
 * memory.
 */
static char *normalize_abs(const char *p)
{
	size_t n = strlen(p);
	char *out = malloc(n + 2);
	size_t o = 0;

	if (!out)
		return NULL;
	while (*p) {
		const char *e;
		size_t len;

		while (*p == '/')
			p++;
		e = p + strcspn(p, "/");
		len = (size_t)(e - p);
		if (len == 0 || (len == 1 && p[0] == '.')) {
			/* nothing */
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--; /* the slash */
		} else {
			out[o++] = '/';
			memcpy(out + o, p, len);
			o += len;
		}
		p = e;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	return out;
}

static int set_chroot(struct parse_ctx *c, const char *key, const char *v)
{
	struct machine_sandbox *sb = &c->m->sandbox;
	char cwd[PATH_MAX], *p = NULL, *real = NULL, *norm = NULL;
	struct stat st;
	int rc;

	if (c->cli_opt) {
		/* a command-line path: relative to the working directory */
		if (!getcwd(cwd, sizeof(cwd)))
			return fail_key(c, key, "getcwd: %s", strerror(errno));
		rc = machine_join_path(cwd, v, &p);
		if (rc == -EINVAL)
			return fail_key(c, key, "empty path");
		if (rc)
			return fail_key(c, key, "%s", strerror(-rc));
	} else {
		rc = resolve_path(c, key, v, &p);
		if (rc)
			return rc;
	}
	if (stat(p, &st) < 0) {
		rc = fail_key(c, key, "%s: %s (the jail directory must exist)",
			      p, strerror(errno));
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		rc = fail_key(c, key, "%s: not a directory", p);
		goto out;
	}
	real = realpath(p, NULL);
	norm = normalize_abs(p);
	if (!real || !norm) {
		rc = fail_key(c, key, "%s: %s", p,
			      real ? "out of memory" : strerror(errno));
		goto out;
	}
	if (!strcmp(real, "/")) {
		rc = fail_key(c, key, "%s is the root directory: the jail "
			      "needs a directory of its own", p);
		goto out;
	}
	free(sb->chroot);
	free(sb->chroot_alias);
	sb->chroot = real;
	sb->chroot_alias = NULL;
	real = NULL;
	if (strcmp(norm, sb->chroot)) {
		sb->chroot_alias = norm;
		norm = NULL;
	}
	sb->chroot_at = here(c);
	rc = 0;
out:
	free(p);
	free(real);
	free(norm);
	return rc;
}

static const struct {
	const char *name;
	unsigned int bit;
} ns_names[] = {
	{ "mount", MACHINE_NS_MOUNT },
	{ "pid", MACHINE_NS_PID },
	{ "net", MACHINE_NS_NET },
	{ "ipc", MACHINE_NS_IPC },
	{ "uts", MACHINE_NS_UTS },
};
#define NR_NS (sizeof(ns_names) / sizeof(ns_names[0]))

/* "mount,pid,net" (blanks around the commas allowed) or "none". */
static int set_namespaces(struct parse_ctx *c, const char *key, const char *v)
{
	unsigned int set = 0;
	const char *p = v;

	if (strcmp(v, "none")) {
		for (;;) {
			const char *e = p + strcspn(p, ","), *s = p, *t = e;
			unsigned int bit = 0;
			size_t n;

			while (s < t && isblank((unsigned char)*s))
				s++;
			while (t > s && isblank((unsigned char)t[-1]))
				t--;
			n = (size_t)(t - s);
			if (n == 0)
				return fail_key(c, key, "'%s' has an empty "
						"entry (a comma-separated list "
						"of mount, pid, net, ipc, uts; "
						"or none)", v);
			for (size_t i = 0; i < NR_NS; i++)
				if (strlen(ns_names[i].name) == n &&
				    !memcmp(ns_names[i].name, s, n))
					bit = ns_names[i].bit;
			if (!bit)
				return fail_key(c, key, "'%.*s' is not a "
						"namespace (a comma-separated "
						"list of mount, pid, net, ipc, "
						"uts; or none)", (int)n, s);
			if (set & bit)
				return fail_key(c, key, "'%.*s' is listed "
						"twice", (int)n, s);
			set |= bit;
			if (!*e)
				break;
			p = e + 1;
		}
	}
	c->m->sandbox.namespaces = set;
	c->m->sandbox.namespaces_line = c->lineno;
	return 0;
}

/*
 * The directory where cgroup2 is mounted, from /proc/self/mounts, for a
 * hint in an error; "" when there is none.
 */
static void cgroup2_mount(char *out, size_t len)
{
	FILE *f = fopen("/proc/self/mounts", "re");
	char dev[256], dir[PATH_MAX], type[64];

	out[0] = '\0';
	if (!f)
		return;
	while (fscanf(f, "%255s %4095s %63s %*[^\n]", dev, dir, type) == 3) {
		if (!strcmp(type, "cgroup2")) {
			snprintf(out, len, "%s", dir);
			break;
		}
	}
	fclose(f);
}

static bool on_cgroup2(const char *path)
{
	struct statfs fs;

	return statfs(path, &fs) == 0 &&
	       (unsigned long)fs.f_type == (unsigned long)CGROUP2_SUPER_MAGIC;
}

/*
 * An absolute directory in a cgroup v2 hierarchy, below its root; it is
 * created when smvmm starts (not by --check).  Only read here.
 */
static int set_cgroup(struct parse_ctx *c, const char *key, const char *v)
{
	struct machine_sandbox *sb = &c->m->sandbox;
	char *p, *anc, mnt[PATH_MAX], hint[PATH_MAX + 64] = "";
	struct stat st;
	int rc = 0;

	if (v[0] != '/')
		return fail_key(c, key, "'%s' is not an absolute path (a cgroup "
				"v2 directory, e.g. /sys/fs/cgroup/smvmm/vm1)",
				v);
	if (strlen(v) >= PATH_MAX - 64)
		return fail_key(c, key, "path longer than %d bytes",
				PATH_MAX - 64);
	for (const char *q = v; *q;) {
		const char *e = q + strcspn(q, "/");
		size_t n = (size_t)(e - q);

		if ((n == 1 && q[0] == '.') ||
		    (n == 2 && q[0] == '.' && q[1] == '.'))
			return fail_key(c, key, "'%s': no '.' or '..' "
					"components, please", v);
		q = *e ? e + 1 : e;
	}
	p = normalize_abs(v);
	anc = p ? strdup(p) : NULL;
	if (!p || !anc) {
		free(p);
		free(anc);
		return fail_key(c, key, "out of memory");
	}
	cgroup2_mount(mnt, sizeof(mnt));
	if (mnt[0])
		snprintf(hint, sizeof(hint), "; cgroup2 is mounted at %s", mnt);
	else
		snprintf(hint, sizeof(hint), "; no cgroup2 file system is "
			 "mounted");
	/* the nearest part of the path that exists */
	while (stat(anc, &st) < 0) {
		char *slash = strrchr(anc, '/');

		if (errno != ENOENT) {
			rc = fail_key(c, key, "%s: %s", anc, strerror(errno));
			goto out;
		}
		if (slash == anc) {
			anc[1] = '\0';
			break;
		}
		*slash = '\0';
	}
	if (!on_cgroup2(anc)) {
		rc = fail_key(c, key, "%s is not in a cgroup v2 hierarchy "
			      "(%s is not a cgroup2 file system%s)",
			      p, anc, hint);
		goto out;
	}
	if (!strcmp(anc, p)) {
		char *parent = strdup(p), *slash;

		if (!parent) {
			rc = fail_key(c, key, "out of memory");
			goto out;
		}
		slash = strrchr(parent, '/');
		if (slash == parent)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (!S_ISDIR(st.st_mode))
			rc = fail_key(c, key, "%s: not a directory", p);
		else if (!on_cgroup2(parent))
			rc = fail_key(c, key, "%s is the root of the cgroup "
				      "hierarchy: name a cgroup below it, "
				      "e.g. %s/smvmm", p,
				      strcmp(p, "/") ? p : "");
		free(parent);
		if (rc)
			goto out;
	}
	free(sb->cgroup);
	sb->cgroup = p;
	p = NULL;
	sb->cgroup_line = c->lineno;
out:
	free(p);
	free(anc);
	return rc;
}

enum cg_kind { CG_SIZE_OR_MAX, CG_SWAP_OR_MAX, CG_CPU_MAX, CG_WEIGHT,
	       CG_COUNT_OR_MAX, CG_LIST };

/* [sandbox] keys that are cgroup v2 interface files (cgroup-v2.rst). */
static const struct {
	const char *key, *file;
	enum cg_kind kind;
} cg_keys[MACHINE_SANDBOX_MAX_LIMITS] = {
	{ "memory_max", "memory.max", CG_SIZE_OR_MAX },
	{ "memory_high", "memory.high", CG_SIZE_OR_MAX },
	{ "memory_swap_max", "memory.swap.max", CG_SWAP_OR_MAX },
	{ "cpu_max", "cpu.max", CG_CPU_MAX },
	{ "cpu_weight", "cpu.weight", CG_WEIGHT },
	{ "pids_max", "pids.max", CG_COUNT_OR_MAX },
	{ "cpuset_cpus", "cpuset.cpus", CG_LIST },
	{ "cpuset_mems", "cpuset.mems", CG_LIST },
};

/* cpuset list syntax: "0-3,8,10-11". */
static bool cpu_list_ok(const char *v)
{
	const char *p = v;

	for (;;) {
		uint64_t lo, hi;
		char num[24];
		size_t n = strspn(p, "0123456789");

		if (n == 0 || n >= sizeof(num))
			return false;
		memcpy(num, p, n);
		num[n] = '\0';
		if (parse_u64(num, false, &lo))
			return false;
		p += n;
		hi = lo;
		if (*p == '-') {
			p++;
			n = strspn(p, "0123456789");
			if (n == 0 || n >= sizeof(num))
				return false;
			memcpy(num, p, n);
			num[n] = '\0';
			if (parse_u64(num, false, &hi) || hi < lo)
				return false;
			p += n;
		}
		if (*p != ',')
			break;
		p++;
	}
	return *p == '\0';
}

static int set_cg_limit(struct parse_ctx *c, const char *key, const char *v)
{
	struct machine_sandbox *sb = &c->m->sandbox;
	struct machine_cg_limit *l;
	char out[64];
	uint64_t n, period;
	unsigned int k;

	for (k = 0; k < MACHINE_SANDBOX_MAX_LIMITS; k++)
		if (!strcmp(cg_keys[k].key, key))
			break;
	if (k == MACHINE_SANDBOX_MAX_LIMITS)
		return fail_key(c, key, "unknown key");
	switch (cg_keys[k].kind) {
	case CG_SIZE_OR_MAX:
	case CG_SWAP_OR_MAX:
		if (!strcmp(v, "max")) {
			snprintf(out, sizeof(out), "max");
			break;
		}
		/* 0 swap is a choice; 0 memory only an OOM kill at once */
		if (machine_parse_size(v, &n) ||
		    (n < 4096 && !(n == 0 && cg_keys[k].kind == CG_SWAP_OR_MAX)))
			return fail_key(c, key, "'%s' is not a size of at "
					"least 4K%s (<n>[K|M|G|T], e.g. 512M) "
					"or max", v,
					cg_keys[k].kind == CG_SWAP_OR_MAX ?
					", or 0" : "");
		snprintf(out, sizeof(out), "%" PRIu64, n);
		break;
	case CG_CPU_MAX: {
		/* "$MAX [$PERIOD]" in microseconds: quota max or 1 ms ..
		 * 2^44-1 us, period 1 ms .. 1 s (the kernel's cpu.max limits) */
		char w[3][24];
		unsigned int nw = 0;
		const char *p = v;
		bool ok = true;

		while (*p && ok) {
			size_t len;

			while (isblank((unsigned char)*p))
				p++;
			if (!*p)
				break;
			len = strcspn(p, " \t");
			if (nw == 2 || len >= sizeof(w[0]))
				ok = false;
			else {
				memcpy(w[nw], p, len);
				w[nw++][len] = '\0';
			}
			p += len;
		}
		if (!ok || nw == 0 ||
		    (strcmp(w[0], "max") &&
		     (parse_u64(w[0], false, &n) || n < 1000 ||
		      n > (1ull << 44) - 1)) ||
		    (nw == 2 && (parse_u64(w[1], false, &period) ||
				 period < 1000 || period > 1000000)))
			return fail_key(c, key, "'%s' is not '<quota> "
					"[<period>]' in microseconds (quota "
					"max or >= 1000, period 1000..1000000; "
					"e.g. 50000 100000 for half a CPU)", v);
		if (nw == 2)
			snprintf(out, sizeof(out), "%s %s", w[0], w[1]);
		else
			snprintf(out, sizeof(out), "%s", w[0]);
		break;
	}
	case CG_WEIGHT:
		if (parse_u64(v, false, &n) || n < 1 || n > 10000)
			return fail_key(c, key, "'%s' is not a number in "
					"1..10000", v);
		snprintf(out, sizeof(out), "%" PRIu64, n);
		break;
	case CG_COUNT_OR_MAX:
		if (!strcmp(v, "max")) {
			snprintf(out, sizeof(out), "max");
			break;
		}
		/* PID_MAX_LIMIT: 4194304 on 64-bit */
		if (parse_u64(v, false, &n) || n < 1 || n > 4194304)
			return fail_key(c, key, "'%s' is not a number in "
					"1..4194304 or max", v);
		snprintf(out, sizeof(out), "%" PRIu64, n);
		break;
	case CG_LIST:
		if (strlen(v) >= sizeof(out) || !cpu_list_ok(v))
			return fail_key(c, key, "'%s' is not a list such as "
					"0-3,6 (at most %zu bytes)", v,
					sizeof(out) - 1);
		snprintf(out, sizeof(out), "%s", v);
		break;
	}
	l = &sb->limit[sb->nlimit];
	l->value = strdup(out);
	if (!l->value)
		return fail_key(c, key, "out of memory");
	l->key = cg_keys[k].key;
	l->file = cg_keys[k].file;
	l->line = c->lineno;
	sb->nlimit++;
	return 0;
}

static int set_fsize_limit(struct parse_ctx *c, const char *key,
			   const char *v)
{
	uint64_t n;
	int rc = machine_parse_size(v, &n);

	if (rc == -ERANGE)
		return fail_key(c, key, "'%s' is too large", v);
	if (rc || n == 0)
		return fail_key(c, key, "'%s' is not a size of at least 1 "
				"byte (<n>[K|M|G|T], e.g. 64M)", v);
	c->m->sandbox.fsize_limit = n;
	c->m->sandbox.fsize_limit_line = c->lineno;
	return 0;
}

const char *machine_where(const struct smvmm_machine *m, const char *key,
			  struct machine_origin at, char *buf, size_t len)
{
	if (at.opt)
		snprintf(buf, len, "%s", at.opt);
	else if (at.line > 0)
		snprintf(buf, len, "%s:%d: [sandbox] %s", m->path, at.line,
			 key);
	else
		snprintf(buf, len, "%s: [sandbox] %s", m->path, key);
	return buf;
}

/* An error about a [sandbox] setting wherever it came from. */
static int __attribute__((format(printf, 4, 5)))
fail_setting(struct parse_ctx *c, const char *key, struct machine_origin at,
	     const char *fmt, ...)
{
	char reason[512], where[PATH_MAX + 64];
	va_list ap;

	if (c->failed)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	c->failed = true;
	c->fail_line = at.line;
	if (c->err && c->errlen)
		snprintf(c->err, c->errlen, "%s: %s",
			 machine_where(c->m, key, at, where, sizeof(where)),
			 reason);
	return -EINVAL;
}

static struct machine_origin at_line(int line)
{
	return (struct machine_origin){ .line = line };
}

/* The rules that span [sandbox] keys, once the file and the command line
 * are both in. */
static int check_sandbox(struct parse_ctx *c)
{
	struct machine_sandbox *sb = &c->m->sandbox;
	static const char need_user[] =
		"needs a user to drop to ([sandbox] user, or --uid): the jail "
		"is set up as root and runs the VM as that user";

	if (!sb->jail) {
		if (sb->group)
			return fail_setting(c, "group", sb->group_at, need_user);
		if (sb->chroot)
			return fail_setting(c, "chroot", sb->chroot_at,
					    need_user);
		if (sb->namespaces_line)
			return fail_setting(c, "namespaces",
					    at_line(sb->namespaces_line),
					    need_user);
		if (sb->cgroup)
			return fail_setting(c, "cgroup",
					    at_line(sb->cgroup_line),
					    need_user);
	}
	if (sb->nlimit && !sb->cgroup)
		return fail_setting(c, sb->limit[0].key,
				    at_line(sb->limit[0].line),
				    "needs [sandbox] cgroup (the cgroup v2 "
				    "directory to write %s in)",
				    sb->limit[0].file);
	if (!sb->jail)
		return 0;
	if (!sb->namespaces_line)
		sb->namespaces = MACHINE_NS_ALL;
	if (!sb->has_gid) {
		if (!c->user_has_pw_gid)
			return fail_setting(c, "user", sb->user_at,
					    "uid %u has no passwd entry to take "
					    "a group from: set [sandbox] group "
					    "(or --gid)", sb->uid);
		if (c->user_pw_gid == 0)
			return fail_setting(c, "user", sb->user_at,
					    "the primary group of '%s' is gid 0 "
					    "(root): set [sandbox] group (or "
					    "--gid)", sb->user);
		sb->gid = c->user_pw_gid;
		sb->has_gid = true;
	}
	if (sb->chroot && !(sb->namespaces & MACHINE_NS_MOUNT))
		return fail_setting(c, "namespaces",
				    at_line(sb->namespaces_line),
				    "a chroot needs the mount namespace (the "
				    "jail is entered with pivot_root in a new "
				    "one): add mount, or drop chroot");
	return 0;
}

static int apply_cli(struct parse_ctx *c, const struct machine_cli *cli)
{
	static const struct {
		const char *opt, *key;
		key_setter set;
		size_t off;
	} opts[] = {
		{ "--uid", "user", set_user, offsetof(struct machine_cli, uid) },
		{ "--gid", "group", set_group,
		  offsetof(struct machine_cli, gid) },
		{ "--chroot", "chroot", set_chroot,
		  offsetof(struct machine_cli, chroot) },
	};

	if (!cli)
		return 0;
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		const char *v =
			*(const char *const *)((const char *)cli + opts[i].off);
		int rc;

		if (!v)
			continue;
		c->cli_opt = opts[i].opt;
		rc = opts[i].set(c, opts[i].key, v);
		c->cli_opt = NULL;
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- [device.<id>] ------------------------------------------------------ */

static int device_key(struct parse_ctx *c, const char *key, const char *v)
{
	struct machine_device *d = c->dev;
	uint64_t n;

	if (!strcmp(key, "type")) {
		if (d->type_line)
			return fail_key(c, key,
					"duplicate key (first set at line %d)",
					d->type_line);
		if (!name_ok(v, MACHINE_MAX_TYPE, ".") || v[0] == '.')
			return fail_key(c, key,
					"'%s' is not a plugin type "
					"([A-Za-z0-9_.-], no leading '.', "
					"1..%d characters)",
					v, MACHINE_MAX_TYPE);
		d->type = strdup(v);
		if (!d->type)
			return fail_key(c, key, "out of memory");
		d->type_line = c->lineno;
		return 0;
	}
	if (!strcmp(key, "mmio_base")) {
		if (d->mmio_base_line)
			return fail_key(c, key,
					"duplicate key (first set at line %d)",
					d->mmio_base_line);
		if (parse_u64(v, true, &n))
			return fail_key(c, key,
					"'%s' is not an address (e.g. "
					"0xd0000000)",
					v);
		if (n % MACHINE_MMIO_ALIGN)
			return fail_key(c, key, "0x%" PRIx64
					" is not 4K aligned", n);
		if (n < MACHINE_MMIO_WIN_START || n > MACHINE_MMIO_WIN_END ||
		    MACHINE_MMIO_WIN_END - n + 1 < VIRTIO_MMIO_SIZE)
			return fail_key(c, key,
					"0x%" PRIx64 " is outside the virtio-mmio"
					" window 0x%llx..0x%llx",
					n, MACHINE_MMIO_WIN_START,
					MACHINE_MMIO_WIN_END);
		d->mmio_base = n;
		d->mmio_base_line = c->lineno;
		return 0;
	}
	if (!strcmp(key, "irq")) {
		if (d->irq_line)
			return fail_key(c, key,
					"duplicate key (first set at line %d)",
					d->irq_line);
		/* IRQs 0..4 are legacy ISA (timer, keyboard, cascade, COM2,
		 * COM1); the IOAPIC has 24 pins. */
		if (parse_u64(v, false, &n) || n < IRQ_PLAN_FIRST_DYNAMIC ||
		    n >= IRQ_PLAN_LINES)
			return fail_key(c, key, "'%s' is not a number in %d..%d",
					v, IRQ_PLAN_FIRST_DYNAMIC,
					IRQ_PLAN_LINES - 1);
		d->irq = (int)n;
		d->irq_line = c->lineno;
		return 0;
	}

	/* a plugin key: kept with its line, checked once the plugin is known */
	if (!*key)
		return fail_key(c, "(empty)", "empty key name");
	for (unsigned int i = 0; i < d->nkv; i++) {
		if (!strcmp(d->kv[i].key, key))
			return fail_key(c, key,
					"duplicate key (first set at line %d)",
					d->kv[i].line);
	}
	if (d->nkv >= MACHINE_MAX_DEVICE_KEYS)
		return fail_key(c, key, "more than %d keys in one device",
				MACHINE_MAX_DEVICE_KEYS);
	struct device_kv *kv = realloc(d->kv, (d->nkv + 1) * sizeof(*kv));
	if (!kv)
		return fail_key(c, key, "out of memory");
	d->kv = kv;
	kv[d->nkv].key = strdup(key);
	kv[d->nkv].value = strdup(v);
	kv[d->nkv].line = c->lineno;
	if (!kv[d->nkv].key || !kv[d->nkv].value) {
		free((char *)kv[d->nkv].key);
		free((char *)kv[d->nkv].value);
		return fail_key(c, key, "out of memory");
	}
	d->nkv++;
	return 0;
}

/* ---- sections ----------------------------------------------------------- */

/* A section header `[name]` on line c->lineno: check it, make it current. */
static int begin_section(struct parse_ctx *c, const char *name)
{
	struct smvmm_machine *m = c->m;

	/* From here on errors name this section. */
	snprintf(c->cur_name, sizeof(c->cur_name), "%s", name);
	c->dev = NULL;
	c->cur = SEC_NONE;

	if (!strncmp(name, "device.", 7) || !strcmp(name, "device")) {
		const char *id = name[6] ? name + 7 : "";
		struct machine_device *d;

		if (!*id)
			return fail_at(c, c->lineno, name, NULL,
				       "a device section needs an id: "
				       "[device.<id>]");
		if (!name_ok(id, MACHINE_MAX_ID, NULL))
			return fail_at(c, c->lineno, name, NULL,
				       "device id '%s' must be 1..%d of "
				       "[A-Za-z0-9_-]",
				       id, MACHINE_MAX_ID);
		for (unsigned int i = 0; i < m->ndev; i++) {
			if (!strcmp(m->dev[i].id, id))
				return fail_at(c, c->lineno, name, NULL,
					       "duplicate device id '%s' "
					       "(first defined at line %d)",
					       id, m->dev[i].line);
		}
		if (m->ndev >= MACHINE_MAX_DEVICES)
			return fail_at(c, c->lineno, name, NULL,
				       "too many devices (max %d)",
				       MACHINE_MAX_DEVICES);
		d = &m->dev[m->ndev];
		memset(d, 0, sizeof(*d));
		d->id = strdup(id);
		if (!d->id)
			return fail_at(c, c->lineno, name, NULL,
				       "out of memory");
		d->line = c->lineno;
		d->irq = -1;
		m->ndev++;
		c->dev = d;
		c->cur = SEC_DEVICE;
		return 0;
	}

	for (int s = SEC_MACHINE; s < SEC_DEVICE; s++) {
		if (strcmp(name, section_names[s]))
			continue;
		if (c->devices_only)
			return fail_at(c, c->lineno, name, NULL,
				       "not allowed in a device file (only "
				       "[device.<id>] sections)");
		if (c->sec_line[s])
			return fail_at(c, c->lineno, name, NULL,
				       "section appears twice (first at line "
				       "%d)",
				       c->sec_line[s]);
		c->sec_line[s] = c->lineno;
		c->cur = (enum section_kind)s;
		return 0;
	}
	if (c->devices_only)
		return fail_at(c, c->lineno, name, NULL,
			       "unknown section (a device file has only "
			       "[device.<id>] sections)");
	return fail_at(c, c->lineno, name, NULL,
		       "unknown section (valid: [machine], [boot], [console], "
		       "[sandbox], [device.<id>])");
}

/* ---- inih callbacks ----------------------------------------------------- */

/*
 * inih's inline comment rule: a ';' preceded by whitespace starts a comment.
 * Returns the first char of `s` in `chars`, the comment start, or the end.
 */
static const char *find_chars_or_comment(const char *s, const char *end,
					 const char *chars)
{
	bool was_space = false;

	for (; s < end; s++) {
		if (chars && strchr(chars, *s))
			break;
		if (was_space && strchr(INI_INLINE_COMMENT_PREFIXES, *s))
			break;
		was_space = isspace((unsigned char)*s);
	}
	return s;
}

static bool is_blank(char ch)
{
	return isspace((unsigned char)ch);
}

/*
 * A `key = value` line too long for inih's line buffer: split it here with
 * inih's rules and hand inih `key=<mark><index>` instead.
 */
static char *reader_long_line(struct parse_ctx *c, char *str, int num,
			      const char *p, const char *end)
{
	const char *sep = find_chars_or_comment(p, end, "=:");
	const char *ke = sep, *v, *ve;
	char **nv;

	if (sep == end || (*sep != '=' && *sep != ':')) {
		/* let inih report it: no separator on this line */
		snprintf(str, (size_t)num, "?\n");
		return str;
	}
	while (ke > p && is_blank(ke[-1]))
		ke--;
	v = sep + 1;
	ve = find_chars_or_comment(v, end, NULL);
	while (v < ve && is_blank(*v))
		v++;
	while (ve > v && is_blank(ve[-1]))
		ve--;
	if ((size_t)(ke - p) + 16 > (size_t)num) {
		fail_at(c, c->lineno, c->cur_name, NULL,
			"key name too long (%zu bytes)", (size_t)(ke - p));
		return NULL;
	}
	nv = realloc(c->longv, (c->nlongv + 1) * sizeof(*nv));
	if (!nv)
		goto err_nomem;
	c->longv = nv;
	c->longv[c->nlongv] = strndup(v, (size_t)(ve - v));
	if (!c->longv[c->nlongv])
		goto err_nomem;
	snprintf(str, (size_t)num, "%.*s=%c%u\n", (int)(ke - p), p,
		 LONGVAL_MARK, c->nlongv);
	c->nlongv++;
	return str;

err_nomem:
	fail_at(c, c->lineno, NULL, NULL, "out of memory");
	return NULL;
}

/* ini_reader: one physical line per call (see the comment at the top). */
static char *reader(char *str, int num, void *stream)
{
	struct parse_ctx *c = stream;
	const char *p, *nl, *end;
	size_t n;

	if (c->failed || c->pos >= c->len || num < 4)
		return NULL;

	p = c->buf + c->pos;
	nl = memchr(p, '\n', c->len - c->pos);
	n = nl ? (size_t)(nl - p) : c->len - c->pos;
	c->pos += n + (nl ? 1 : 0);
	c->lineno++;

	if (n && p[n - 1] == '\r')
		n--;
	if (n > MACHINE_MAX_LINE) {
		fail_at(c, c->lineno, NULL, NULL,
			"line too long (%zu bytes, max %d)", n,
			MACHINE_MAX_LINE);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			fail_at(c, c->lineno, NULL, NULL,
				"control character 0x%02x in column %zu", ch,
				i + 1);
			return NULL;
		}
	}
	end = p + n;
	/* No multi-line values: an indented line stands on its own. */
	while (p < end && is_blank(*p))
		p++;
	while (end > p && is_blank(end[-1]))
		end--;
	n = (size_t)(end - p);

	if (n && *p == '[') {
		/* same rule as inih: up to ']' unless a comment starts first */
		const char *rb = find_chars_or_comment(p + 1, end, "]");
		if (rb < end && *rb == ']') {
			char name[MACHINE_MAX_SECTION + 1];
			size_t sn = (size_t)(rb - (p + 1));

			if (sn > MACHINE_MAX_SECTION) {
				fail_at(c, c->lineno, NULL, NULL,
					"section name longer than %d bytes",
					MACHINE_MAX_SECTION);
				return NULL;
			}
			memcpy(name, p + 1, sn);
			name[sn] = '\0';
			if (begin_section(c, name))
				return NULL;
			/* everything after ']' is ignored, as inih does */
			snprintf(str, (size_t)num, "[%s]\n", name);
			return str;
		}
		/* no ']': inih reports the syntax error */
	}

	if (n + 2 > (size_t)num) {
		if (*p == ';' || *p == '#') {
			snprintf(str, (size_t)num, "\n");
			return str;
		}
		return reader_long_line(c, str, num, p, end);
	}
	memcpy(str, p, n);
	str[n] = '\n';
	str[n + 1] = '\0';
	return str;
}

/* ini_handler: one key = value of the line the reader returned last. */
static int handler(void *user, const char *section, const char *name,
		   const char *value)
{
	struct parse_ctx *c = user;

	(void)section; /* c->cur_name: the reader saw the header */
	if (c->failed)
		return 0;
	if (!name || !value)
		return 0;
	if (value[0] == LONGVAL_MARK) {
		char *e;
		unsigned long i = strtoul(value + 1, &e, 10);
		if (*e || i >= c->nlongv)
			return 0;
		value = c->longv[i];
	}

	switch (c->cur) {
	case SEC_NONE:
		fail_at(c, c->lineno, NULL, name,
			"key before the first [section]");
		return 0;
	case SEC_DEVICE:
		return device_key(c, name, value) == 0;
	default:
		break;
	}

	char known[320] = "";
	size_t kl = 0;
	for (size_t k = 0; k < NR_KEYS; k++) {
		const struct key_desc *kd = &key_table[k];
		if (kd->sec != c->cur)
			continue;
		if (!strcmp(kd->name, name)) {
			if (c->key_line[k]) {
				fail_key(c, name,
					 "duplicate key (first set at line %d)",
					 c->key_line[k]);
				return 0;
			}
			c->key_line[k] = c->lineno;
			return kd->set(c, name, value) == 0;
		}
		if (kl < sizeof(known))
			kl += (size_t)snprintf(known + kl, sizeof(known) - kl,
					       "%s%s", kl ? ", " : "",
					       kd->name);
	}
	fail_key(c, name, "unknown key (known: %s)", known);
	return 0;
}

/* ---- checks after the whole file was read ------------------------------- */

static int check_devices(struct parse_ctx *c)
{
	struct smvmm_machine *m = c->m;
	char sec[MACHINE_MAX_SECTION + 1];

	for (unsigned int i = 0; i < m->ndev; i++) {
		struct machine_device *d = &m->dev[i];

		snprintf(sec, sizeof(sec), "device.%s", d->id);
		if (!d->type)
			return fail_at(c, d->line, sec, NULL,
				       "missing type = <plugin type>");
		for (unsigned int j = 0; j < i; j++) {
			const struct machine_device *o = &m->dev[j];

			if (d->mmio_base && d->mmio_base == o->mmio_base)
				return fail_at(c, d->mmio_base_line, sec,
					       "mmio_base",
					       "0x%" PRIx64 " is also used by "
					       "[device.%s] (line %d)",
					       d->mmio_base, o->id,
					       o->mmio_base_line);
			if (d->irq >= 0 && d->irq == o->irq)
				return fail_at(c, d->irq_line, sec, "irq",
					       "%d is also used by [device.%s] "
					       "(line %d)",
					       d->irq, o->id, o->irq_line);
		}
	}
	return 0;
}

/* Show a line of the file in a syntax error (printable, shortened). */
static void quote_line(const struct parse_ctx *c, int line, char *out,
		       size_t outlen)
{
	const char *p = c->buf, *end = c->buf + c->len;
	size_t n;

	for (int l = 1; l < line && p < end; l++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		p = nl ? nl + 1 : end;
	}
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	n = nl ? (size_t)(nl - p) : (size_t)(end - p);
	while (n && (p[n - 1] == '\r' || is_blank(p[n - 1])))
		n--;
	while (n && is_blank(*p)) {
		p++;
		n--;
	}
	if (n > 60)
		snprintf(out, outlen, "%.57s...", p);
	else
		snprintf(out, outlen, "%.*s", (int)n, p);
}

static int read_file(const char *path, char **buf, size_t *len, char *err,
		     size_t errlen)
{
	struct stat st;
	/* O_NONBLOCK: a FIFO would block the open until a writer comes;
	 * anything but a regular file is refused below anyway. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int rc;

	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		goto err_close;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "%s: not a regular file", path);
		goto err_close;
	}
	(void)fcntl(fd, F_SETFL, 0); /* plain blocking reads from here */
	if (st.st_size > MACHINE_MAX_FILE) {
		rc = -EFBIG;
		snprintf(err, errlen, "%s: larger than %u bytes", path,
			 MACHINE_MAX_FILE);
		goto err_close;
	}
	/* read until EOF, not st_size: the file may change under us */
	size_t cap = (size_t)st.st_size + 1, n = 0;
	char *b = malloc(cap + 1);
	if (!b) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto err_close;
	}
	for (;;) {
		ssize_t r = read(fd, b + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s: %s", path, strerror(-rc));
			goto err_free;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n == cap) {
			if (cap > MACHINE_MAX_FILE) {
				rc = -EFBIG;
				snprintf(err, errlen,
					 "%s: larger than %u bytes", path,
					 MACHINE_MAX_FILE);
				goto err_free;
			}
			char *nb = realloc(b, cap * 2 + 1);
			if (!nb) {
				rc = -ENOMEM;
				snprintf(err, errlen, "%s: out of memory",
					 path);
				goto err_free;
			}
			b = nb;
			cap *= 2;
		}
	}
	b[n] = '\0';
	close(fd);
	*buf = b;
	*len = n;
	return 0;

err_free:
	free(b);
err_close:
	close(fd);
	return rc;
}

/* The directory of `path`, absolute when it can be resolved. */
char *machine_dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *d, *abs;

	if (!slash)
		d = strdup(".");
	else if (slash == path)
		d = strdup("/");
	else
		d = strndup(path, (size_t)(slash - path));
	if (!d)
		return NULL;
	abs = realpath(d, NULL);
	if (abs) {
		free(d);
		return abs;
	}
	return d;
}

static int load(const char *path, const struct machine_cli *cli,
		struct smvmm_machine *m, char *err, size_t errlen,
		bool devices_only)
{
	struct parse_ctx c = { .devices_only = devices_only };
	char dummy[1];
	int rc;

	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	memset(m, 0, sizeof(*m));
	m->path = strdup(path);
	m->dir = machine_dir_of(path);
	if (!m->path || !m->dir) {
		snprintf(err, errlen, "%s: out of memory", path);
		rc = -ENOMEM;
		goto err_free;
	}
	m->vcpus = 1;
	m->mem_size = MACHINE_DEFAULT_MEM;
	m->protocol = BOOT_PROTO_AUTO;

	rc = read_file(path, &c.buf, &c.len, err, errlen);
	if (rc)
		goto err_free;

	c.m = m;
	c.err = err;
	c.errlen = errlen;
	c.key_line = calloc(NR_KEYS, sizeof(*c.key_line));
	if (!c.key_line) {
		snprintf(err, errlen, "%s: out of memory", path);
		rc = -ENOMEM;
		goto err_free;
	}
	/* a UTF-8 byte order mark is allowed at the start, as inih does */
	if (c.len >= 3 && !memcmp(c.buf, "\xef\xbb\xbf", 3))
		c.pos = 3;

	int bad_line = ini_parse_stream(reader, &c, handler, &c);
	/*
	 * inih returns the first line it rejected: our handler's (== our first
	 * error) or a syntax error before it.  The reader stops at our first
	 * error, so a syntax error can only be on an earlier line.
	 */
	if (bad_line > 0 && (!c.failed || bad_line < c.fail_line)) {
		char q[64];

		quote_line(&c, bad_line, q, sizeof(q));
		c.failed = false;
		fail_at(&c, bad_line, NULL, NULL,
			"syntax error: '%s' (expected [section] or key = value)",
			q);
	} else if (bad_line < 0 && !c.failed) {
		fail_at(&c, 0, NULL, NULL, "out of memory");
	}
	if (c.failed) {
		rc = -EINVAL;
		goto err_free;
	}

	rc = check_devices(&c);
	if (rc)
		goto err_free;
	if (!devices_only) {
		rc = apply_cli(&c, cli);
		if (!rc)
			rc = check_sandbox(&c);
		if (rc)
			goto err_free;
	}
	if (devices_only && m->ndev == 0) {
		rc = fail_at(&c, 0, NULL, NULL,
			     "no [device.<id>] section (a device file needs "
			     "one, with type = <plugin type>)");
		goto err_free;
	}
	if (devices_only)
		goto defaults;
	if (!c.sec_line[SEC_BOOT]) {
		rc = fail_at(&c, 0, NULL, NULL,
			     "no [boot] section (it needs kernel = <path>)");
		goto err_free;
	}
	if (!m->kernel) {
		rc = fail_at(&c, c.sec_line[SEC_BOOT], "boot", NULL,
			     "missing kernel = <path>");
		goto err_free;
	}

	/* Rotation needs a file to rotate. */
	for (unsigned int k = 0; k < NR_KEYS; k++) {
		if (key_table[k].sec != SEC_CONSOLE || !c.key_line[k] ||
		    strncmp(key_table[k].name, "serial_max_", 11))
			continue;
		if (!m->serial || !strcmp(m->serial, "stdio") ||
		    !strcmp(m->serial, "none")) {
			rc = fail_at(&c, c.key_line[k], "console",
				     key_table[k].name,
				     "needs serial = <file path> (serial is "
				     "%s)", m->serial ? m->serial : "stdio");
			goto err_free;
		}
	}

defaults:
	if (!m->serial_max_files)
		m->serial_max_files = 1;
	if (!m->backend)
		m->backend = strdup("kvm");
	if (!m->cmdline)
		m->cmdline = strdup("");
	if (!m->serial)
		m->serial = strdup("stdio");
	if (!m->backend || !m->cmdline || !m->serial) {
		snprintf(err, errlen, "%s: out of memory", path);
		rc = -ENOMEM;
		goto err_free;
	}

	for (unsigned int i = 0; i < c.nlongv; i++)
		free(c.longv[i]);
	free(c.longv);
	free(c.key_line);
	free(c.buf);
	return 0;

err_free:
	for (unsigned int i = 0; i < c.nlongv; i++)
		free(c.longv[i]);
	free(c.longv);
	free(c.key_line);
	free(c.buf);
	machine_free(m);
	return rc;
}

int machine_load(const char *path, struct smvmm_machine *m, char *err,
		 size_t errlen)
{
	return load(path, NULL, m, err, errlen, false);
}

int machine_load_cli(const char *path, const struct machine_cli *cli,
		     struct smvmm_machine *m, char *err, size_t errlen)
{
	return load(path, cli, m, err, errlen, false);
}

int machine_load_devices(const char *path, struct smvmm_machine *m, char *err,
			 size_t errlen)
{
	return load(path, NULL, m, err, errlen, true);
}

int machine_check_device_keys(const struct smvmm_machine *m,
			      const struct machine_device *d,
			      const char *const *allowed, char *err,
			      size_t errlen)
{
	for (unsigned int i = 0; i < d->nkv; i++) {
		const char *key = d->kv[i].key;
		bool ok = false;

		for (const char *const *a = allowed; a && *a; a++) {
			if (!strcmp(*a, key)) {
				ok = true;
				break;
			}
		}
		if (ok)
			continue;

		char known[256] = "";
		size_t kl = 0;
		for (size_t k = 0; k < sizeof(device_core_keys) /
					       sizeof(device_core_keys[0]);
		     k++)
			kl += (size_t)snprintf(known + kl, sizeof(known) - kl,
					       "%s%s", kl ? ", " : "",
					       device_core_keys[k]);
		for (const char *const *a = allowed; a && *a; a++) {
			if (kl >= sizeof(known))
				break;
			kl += (size_t)snprintf(known + kl, sizeof(known) - kl,
					       ", %s", *a);
		}
		if (err && errlen)
			snprintf(err, errlen,
				 "%s:%d: [device.%s] %s: unknown key for type "
				 "%s (known: %s)",
				 m->path, d->kv[i].line, d->id, key,
				 d->type ? d->type : "?", known);
		return -EINVAL;
	}
	return 0;
}

void machine_free(struct smvmm_machine *m)
{
	free(m->path);
	free(m->dir);
	free(m->backend);
	free(m->plugin_dir);
	free(m->kernel);
	free(m->initrd);
	free(m->cmdline);
	free(m->serial);
	free(m->sandbox.user);
	free(m->sandbox.group);
	free(m->sandbox.chroot);
	free(m->sandbox.chroot_alias);
	free(m->sandbox.cgroup);
	for (unsigned int i = 0; i < m->sandbox.nlimit; i++)
		free(m->sandbox.limit[i].value);
	for (unsigned int i = 0; i < m->ndev && i < MACHINE_MAX_DEVICES; i++) {
		struct machine_device *d = &m->dev[i];

		free(d->id);
		free(d->type);
		for (unsigned int k = 0; k < d->nkv; k++) {
			free((char *)d->kv[k].key);
			free((char *)d->kv[k].value);
		}
		free(d->kv);
	}
	memset(m, 0, sizeof(*m));
}

int machine_append_cmdline(struct smvmm_machine *m, const char *text,
			   char *err, size_t errlen)
{
	size_t have = m->cmdline ? strlen(m->cmdline) : 0, add = strlen(text);
	size_t n = have + (have && add ? 1 : 0) + add;
	char *cl;

	if (n > MACHINE_MAX_CMDLINE) {
		if (err)
			snprintf(err, errlen,
				 "cmdline with the appended text is %zu bytes long, the maximum is %d",
				 n, MACHINE_MAX_CMDLINE);
		return -E2BIG;
	}
	cl = malloc(n + 1);
	if (!cl) {
		if (err)
			snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memcpy(cl, m->cmdline ? m->cmdline : "", have);
	if (have && add)
		cl[have++] = ' ';
	memcpy(cl + have, text, add + 1);
	free(m->cmdline);
	m->cmdline = cl;
	return 0;
}
