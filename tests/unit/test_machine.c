// SPDX-License-Identifier: MIT
/*
 * Unit tests for core/machine.c: the INI machine description.
 *
 * Every test writes its INI file (and a fake kernel/initrd) into a fresh
 * temporary directory.  Each error case checks the return code, that the
 * message starts with "<file>:<line>: " (or "<file>: " for file-level errors)
 * and names the section and key, and that *m was left zeroed.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "machine.h"

#define ERRLEN 1024

/* snprintf that fails the test instead of truncating. */
static void __attribute__((format(printf, 3, 4)))
fmt(char *buf, size_t len, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(buf, len, f, ap);
	va_end(ap);
	ck_assert_msg(n >= 0 && (size_t)n < len, "string too long: %s", buf);
}

static char tmpdir[PATH_MAX]; /* realpath'd */
static char ini[PATH_MAX];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_msg(f, "fopen %s: %s", path, strerror(errno));
	ck_assert_int_eq(fwrite(text, 1, strlen(text), f), strlen(text));
	ck_assert_int_eq(fclose(f), 0);
}

static void write_rel(const char *rel, const char *text)
{
	char p[PATH_MAX];

	fmt(p, sizeof(p), "%s/%s", tmpdir, rel);
	write_file(p, text);
}

static void setup(void)
{
	char t[] = "/tmp/smvmm-machine-XXXXXX";

	ck_assert_ptr_nonnull(mkdtemp(t));
	ck_assert_ptr_nonnull(realpath(t, tmpdir));
	fmt(ini, sizeof(ini), "%s/machine.ini", tmpdir);
	write_rel("bzImage", "not really a kernel");
	write_rel("initrd.img", "not really an initrd");
}

static int rm_one(const char *p, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void teardown(void)
{
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int load_text(const char *text, struct smvmm_machine *m, char *err)
{
	write_file(ini, text);
	err[0] = '\0';
	return machine_load(ini, m, err, ERRLEN);
}

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* ---- error cases, one loop iteration (= one Check test) each ------------ */

struct err_case {
	const char *what;
	const char *text;
	int line; /* 0: file-level error, "<file>: ..." */
	const char *needle[4];
};

#define BOOT "[boot]\nkernel = bzImage\n"

static const struct err_case err_cases[] = {
	{ "unknown section", "[machin]\nvcpus = 2\n" BOOT, 1,
	  { "[machin]: unknown section", "[machine]", "[device.<id>]" } },
	{ "unknown key [machine]", "[machine]\nvcpu = 2\n" BOOT, 2,
	  { "[machine] vcpu: unknown key", "vcpus, memory, backend" } },
	{ "unknown key [boot]", BOOT "kernal = x\n", 3,
	  { "[boot] kernal: unknown key", "kernel, initrd, cmdline" } },
	{ "unknown key [console]", BOOT "[console]\nserail = none\n", 4,
	  { "[console] serail: unknown key", "serial" } },
	{ "duplicate key", "[machine]\nvcpus = 1\n\nvcpus = 2\n" BOOT, 4,
	  { "[machine] vcpus: duplicate key", "line 2" } },
	{ "duplicate type", "[device.a]\ntype = x\ntype = y\n" BOOT, 3,
	  { "[device.a] type: duplicate key", "line 2" } },
	{ "duplicate plugin key", "[device.a]\ntype=x\npath=a\npath=b\n", 4,
	  { "[device.a] path: duplicate key", "line 3" } },
	{ "duplicate irq key", "[device.a]\ntype=x\nirq=5\nirq=6\n", 4,
	  { "[device.a] irq: duplicate key", "line 3" } },
	{ "duplicate section", "[machine]\n" BOOT "[machine]\n", 4,
	  { "[machine]: section appears twice", "line 1" } },
	{ "key before any section", "vcpus = 1\n" BOOT, 1,
	  { "vcpus: key before the first [section]" } },
	{ "syntax error", "[machine]\nvcpus\n" BOOT, 2,
	  { "syntax error", "'vcpus'" } },
	{ "section without ]", "[machine\n" BOOT, 1,
	  { "syntax error", "'[machine'" } },
	{ "control character", "[machine]\nvcpus = 1\x01\n" BOOT, 2,
	  { "control character 0x01" } },
	{ "vcpus 0", "[machine]\nvcpus = 0\n" BOOT, 2,
	  { "[machine] vcpus: '0'", "1..64" } },
	{ "vcpus 65", "[machine]\nvcpus = 65\n" BOOT, 2,
	  { "[machine] vcpus: '65'", "1..64" } },
	{ "vcpus -1", "[machine]\nvcpus = -1\n" BOOT, 2,
	  { "[machine] vcpus: '-1'" } },
	{ "vcpus junk", "[machine]\nvcpus = 2x\n" BOOT, 2,
	  { "[machine] vcpus: '2x'" } },
	{ "vcpus hex", "[machine]\nvcpus = 0x2\n" BOOT, 2,
	  { "[machine] vcpus: '0x2'" } },
	{ "vcpus empty", "[machine]\nvcpus =\n" BOOT, 2,
	  { "[machine] vcpus: ''" } },
	{ "memory bad unit", "[machine]\nmemory = 12Q\n" BOOT, 2,
	  { "[machine] memory: '12Q' is not a size" } },
	{ "memory fraction", "[machine]\nmemory = 1.5G\n" BOOT, 2,
	  { "[machine] memory: '1.5G' is not a size" } },
	{ "memory below 16M", "[machine]\nmemory = 8M\n" BOOT, 2,
	  { "[machine] memory: '8M' is below the minimum of 16M" } },
	{ "memory above 1T", "[machine]\nmemory = 2T\n" BOOT, 2,
	  { "[machine] memory: '2T' is above the maximum of 1T" } },
	{ "memory overflow", "[machine]\nmemory = 99999999999G\n" BOOT, 2,
	  { "[machine] memory: '99999999999G' is too large" } },
	{ "memory not 4K multiple", "[machine]\nmemory = 16777217\n" BOOT, 2,
	  { "[machine] memory: '16777217' is not a multiple of 4K" } },
	{ "backend charset", "[machine]\nbackend = ../kvm\n" BOOT, 2,
	  { "[machine] backend: '../kvm' is not a backend name" } },
	{ "plugin_dir missing", "[machine]\nplugin_dir = nodir\n" BOOT, 2,
	  { "[machine] plugin_dir:", "/nodir: No such file or directory" } },
	{ "plugin_dir not a dir", "[machine]\nplugin_dir = bzImage\n" BOOT, 2,
	  { "[machine] plugin_dir:", "/bzImage: not a directory" } },
	{ "no [boot]", "[machine]\nvcpus = 1\n", 0,
	  { "no [boot] section" } },
	{ "[boot] without kernel", "[machine]\n\n[boot]\ncmdline = x\n", 3,
	  { "[boot]: missing kernel" } },
	{ "kernel missing", "[boot]\nkernel = nope\n", 2,
	  { "[boot] kernel:", "/nope: No such file or directory" } },
	{ "kernel is a directory", "[boot]\nkernel = .\n", 2,
	  { "[boot] kernel:", "not a regular file" } },
	{ "kernel empty", "[boot]\nkernel =\n", 2,
	  { "[boot] kernel: empty path" } },
	{ "initrd missing", BOOT "initrd = /nonexistent/initrd\n", 3,
	  { "[boot] initrd: /nonexistent/initrd: No such file" } },
	{ "protocol", BOOT "protocol = multiboot\n", 3,
	  { "[boot] protocol: 'multiboot' is not one of auto, linux, pvh" } },
	{ "serial empty", BOOT "[console]\nserial =\n", 4,
	  { "[console] serial: empty value" } },
	{ "serial_max_size small", BOOT "[console]\nserial = f\nserial_max_size = 100\n",
	  5, { "[console] serial_max_size: '100' is below the minimum of 4K" } },
	{ "serial_max_size junk", BOOT "[console]\nserial = f\nserial_max_size = 1X\n",
	  5, { "[console] serial_max_size: '1X' is not a size" } },
	{ "serial_max_size big", BOOT "[console]\nserial = f\nserial_max_size = 2T\n",
	  5, { "[console] serial_max_size: '2T' is above the maximum of 1T" } },
	{ "serial_max_files 0", BOOT "[console]\nserial = f\nserial_max_files = 0\n",
	  5, { "[console] serial_max_files: '0' is not a number in 1..100" } },
	{ "serial_max_files 101", BOOT "[console]\nserial = f\nserial_max_files = 101\n",
	  5, { "[console] serial_max_files: '101'" } },
	{ "serial_max_size on stdio", BOOT "[console]\nserial_max_size = 1M\n",
	  4, { "[console] serial_max_size: needs serial = <file path>",
	       "serial is stdio" } },
	{ "serial_max_files on none",
	  BOOT "[console]\nserial_max_files = 3\nserial = none\n", 4,
	  { "[console] serial_max_files: needs serial = <file path>",
	    "serial is none" } },
	{ "device without id", BOOT "[device.]\ntype = x\n", 3,
	  { "[device.]: a device section needs an id" } },
	{ "bare [device]", BOOT "[device]\ntype = x\n", 3,
	  { "[device]: a device section needs an id" } },
	{ "device id charset", BOOT "[device.a/b]\ntype = x\n", 3,
	  { "[device.a/b]: device id 'a/b'", "[A-Za-z0-9_-]" } },
	{ "device id too long",
	  BOOT "[device.abcdefghijklmnopqrstuvwxyz0123456]\ntype = x\n", 3,
	  { "device id 'abcdefghijklmnopqrstuvwxyz0123456'", "1..32" } },
	{ "duplicate device id", "[device.a]\ntype=x\n" BOOT "[device.a]\n",
	  5, { "[device.a]: duplicate device id 'a'", "line 1" } },
	{ "missing type", BOOT "[device.a]\npath = x\n", 3,
	  { "[device.a]: missing type" } },
	{ "type with /", BOOT "[device.a]\ntype = ../evil\n", 4,
	  { "[device.a] type: '../evil' is not a plugin type" } },
	{ "type empty", BOOT "[device.a]\ntype =\n", 4,
	  { "[device.a] type: '' is not a plugin type" } },
	{ "empty plugin key", BOOT "[device.a]\ntype = x\n= 1\n", 5,
	  { "[device.a] (empty): empty key name" } },
	{ "mmio_base junk", BOOT "[device.a]\ntype=x\nmmio_base = 0xzz\n", 5,
	  { "[device.a] mmio_base: '0xzz' is not an address" } },
	{ "mmio_base negative", BOOT "[device.a]\ntype=x\nmmio_base = -1\n",
	  5, { "[device.a] mmio_base: '-1' is not an address" } },
	{ "mmio_base double 0x",
	  BOOT "[device.a]\ntype=x\nmmio_base = 0x0xd0000000\n", 5,
	  { "[device.a] mmio_base: '0x0xd0000000' is not an address" } },
	{ "mmio_base unaligned",
	  BOOT "[device.a]\ntype=x\nmmio_base = 0xd0000200\n", 5,
	  { "[device.a] mmio_base: 0xd0000200 is not 4K aligned" } },
	{ "mmio_base below window",
	  BOOT "[device.a]\ntype=x\nmmio_base = 0x10000000\n", 5,
	  { "[device.a] mmio_base: 0x10000000 is outside",
	    "0xd0000000..0xfebfffff" } },
	{ "mmio_base on the IOAPIC",
	  BOOT "[device.a]\ntype=x\nmmio_base = 0xfec00000\n", 5,
	  { "[device.a] mmio_base: 0xfec00000 is outside" } },
	{ "irq 4", BOOT "[device.a]\ntype=x\nirq = 4\n", 5,
	  { "[device.a] irq: '4' is not a number in 5..23" } },
	{ "irq 24", BOOT "[device.a]\ntype=x\nirq = 24\n", 5,
	  { "[device.a] irq: '24'" } },
	{ "irq junk", BOOT "[device.a]\ntype=x\nirq = five\n", 5,
	  { "[device.a] irq: 'five'" } },
	{ "same mmio_base",
	  BOOT "[device.a]\ntype=x\nmmio_base = 0xd0001000\n"
	       "[device.b]\ntype=y\nmmio_base = 0xd0001000\n",
	  8,
	  { "[device.b] mmio_base: 0xd0001000 is also used by [device.a] "
	    "(line 5)" } },
	{ "same irq",
	  BOOT "[device.a]\ntype=x\nirq = 7\n"
	       "[device.b]\ntype=y\n\nirq = 7\n",
	  9, { "[device.b] irq: 7 is also used by [device.a] (line 5)" } },
	{ "indented line is no continuation",
	  BOOT "cmdline = a\n   b = c\n", 4, { "[boot] b: unknown key" } },
};

START_TEST(test_error_case)
{
	const struct err_case *tc = &err_cases[_i];
	struct smvmm_machine m;
	char err[ERRLEN], prefix[PATH_MAX + 32];
	int rc;

	memset(&m, 0xa5, sizeof(m));
	rc = load_text(tc->text, &m, err);
	ck_assert_msg(rc == -EINVAL, "%s: rc %d, err '%s'", tc->what, rc, err);
	if (tc->line)
		fmt(prefix, sizeof(prefix), "%s:%d: ", ini, tc->line);
	else
		fmt(prefix, sizeof(prefix), "%s: ", ini);
	ck_assert_msg(!strncmp(err, prefix, strlen(prefix)),
		      "%s: expected prefix '%s' in '%s'", tc->what, prefix,
		      err);
	for (int i = 0; i < 4 && tc->needle[i]; i++)
		ck_assert_msg(strstr(err, tc->needle[i]),
			      "%s: expected '%s' in '%s'", tc->what,
			      tc->needle[i], err);
	ck_assert_msg(!strchr(err, '\n'), "one line: '%s'", err);
	ck_assert_msg(all_zero(&m, sizeof(m)), "%s: *m not zeroed",
		      tc->what);
}
END_TEST

/* ---- valid files -------------------------------------------------------- */

START_TEST(test_full_config)
{
	struct smvmm_machine m;
	char err[ERRLEN], want[PATH_MAX + 64];
	char pdir[PATH_MAX];

	fmt(pdir, sizeof(pdir), "%s/plugins", tmpdir);
	ck_assert_int_eq(mkdir(pdir, 0755), 0);
	char *text;
	ck_assert_int_ge(
		asprintf(&text,
			 "; a complete machine\n"
			 "[machine]\n"
			 "vcpus = 4\n"
			 "memory = 1G\n"
			 "backend = kvm\n"
			 "plugin_dir = plugins\n"
			 "\n"
			 "[boot]\n"
			 "kernel = bzImage\n"
			 "initrd = %s/initrd.img\n"
			 "cmdline = console=ttyS0 root=/dev/vda;x ; comment\n"
			 "protocol = pvh\n"
			 "\n"
			 "# hash comment\n"
			 "[console]\n"
			 "serial = out.log\n"
			 "[device.rng0]\n"
			 "type = virtio-rng\n"
			 "mmio_base = 0xd0000000\n"
			 "irq = 5\n"
			 "[device.disk-1]\n"
			 "type = virtio-blk\n"
			 "path = disk.img\n"
			 "readonly = true\n"
			 "[device.vsock_2]\n"
			 "type = vsock\n"
			 "mmio_base = 0xFEBFF000\n"
			 "irq = 23\n",
			 tmpdir),
		0);
	ck_assert_int_eq(load_text(text, &m, err), 0);
	free(text);

	ck_assert_str_eq(m.path, ini);
	ck_assert_str_eq(m.dir, tmpdir);
	ck_assert_uint_eq(m.vcpus, 4);
	ck_assert_uint_eq(m.mem_size, 1ull << 30);
	ck_assert_str_eq(m.backend, "kvm");
	ck_assert_str_eq(m.plugin_dir, pdir);
	fmt(want, sizeof(want), "%s/bzImage", tmpdir);
	ck_assert_str_eq(m.kernel, want);
	ck_assert_int_eq(m.kernel_line, 9);
	fmt(want, sizeof(want), "%s/initrd.img", tmpdir);
	ck_assert_str_eq(m.initrd, want);
	ck_assert_int_eq(m.initrd_line, 10);
	/* inline comment (";" after a blank) cut, the ';' in "vda;x" kept */
	ck_assert_str_eq(m.cmdline, "console=ttyS0 root=/dev/vda;x");
	ck_assert_int_eq(m.protocol, BOOT_PROTO_PVH);
	fmt(want, sizeof(want), "%s/out.log", tmpdir);
	ck_assert_str_eq(m.serial, want);

	ck_assert_uint_eq(m.ndev, 3);
	ck_assert_str_eq(m.dev[0].id, "rng0");
	ck_assert_str_eq(m.dev[0].type, "virtio-rng");
	ck_assert_int_eq(m.dev[0].line, 17);
	ck_assert_int_eq(m.dev[0].type_line, 18);
	ck_assert_uint_eq(m.dev[0].mmio_base, 0xd0000000ull);
	ck_assert_int_eq(m.dev[0].mmio_base_line, 19);
	ck_assert_int_eq(m.dev[0].irq, 5);
	ck_assert_int_eq(m.dev[0].irq_line, 20);
	ck_assert_uint_eq(m.dev[0].nkv, 0);

	const struct machine_device *d = &m.dev[1];
	ck_assert_str_eq(d->id, "disk-1");
	ck_assert_str_eq(d->type, "virtio-blk");
	ck_assert_uint_eq(d->mmio_base, 0);
	ck_assert_int_eq(d->irq, -1);
	ck_assert_uint_eq(d->nkv, 2);
	ck_assert_str_eq(d->kv[0].key, "path");
	ck_assert_str_eq(d->kv[0].value, "disk.img");
	ck_assert_int_eq(d->kv[0].line, 23);
	ck_assert_str_eq(d->kv[1].key, "readonly");
	ck_assert_str_eq(d->kv[1].value, "true");
	ck_assert_int_eq(d->kv[1].line, 24);

	ck_assert_str_eq(m.dev[2].id, "vsock_2");
	ck_assert_uint_eq(m.dev[2].mmio_base, 0xfebff000ull);
	ck_assert_int_eq(m.dev[2].irq, 23);

	/* plugin keys: all known -> 0; one unknown -> named with its line */
	static const char *const blk_keys[] = { "path", "readonly", NULL };
	static const char *const few_keys[] = { "path", NULL };
	ck_assert_int_eq(machine_check_device_keys(&m, d, blk_keys, err,
						   sizeof(err)),
			 0);
	ck_assert_int_eq(machine_check_device_keys(&m, &m.dev[0], NULL, err,
						   sizeof(err)),
			 0);
	ck_assert_int_eq(machine_check_device_keys(&m, d, few_keys, err,
						   sizeof(err)),
			 -EINVAL);
	fmt(want, sizeof(want),
		 "%s:24: [device.disk-1] readonly: unknown key for type "
		 "virtio-blk (known: type, mmio_base, irq, path)",
		 ini);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(machine_check_device_keys(&m, d, NULL, err,
						   sizeof(err)),
			 -EINVAL);
	ck_assert_msg(strstr(err, ":23: [device.disk-1] path: unknown key"),
		      "%s", err);

	machine_free(&m);
	ck_assert(all_zero(&m, sizeof(m)));
	machine_free(&m); /* harmless twice */
}
END_TEST

START_TEST(test_defaults)
{
	struct smvmm_machine m;
	char err[ERRLEN];

	ck_assert_int_eq(load_text("[boot]\nkernel=bzImage\n", &m, err), 0);
	ck_assert_uint_eq(m.vcpus, 1);
	ck_assert_uint_eq(m.mem_size, 256ull << 20);
	ck_assert_str_eq(m.backend, "kvm");
	ck_assert_ptr_null(m.plugin_dir);
	ck_assert_ptr_null(m.initrd);
	ck_assert_int_eq(m.initrd_line, 0);
	ck_assert_str_eq(m.cmdline, "");
	ck_assert_str_eq(m.serial, "stdio");
	ck_assert_uint_eq(m.serial_max_size, 0);
	ck_assert_uint_eq(m.serial_max_files, 1);
	ck_assert_int_eq(m.protocol, BOOT_PROTO_AUTO);
	ck_assert_uint_eq(m.ndev, 0);
	machine_free(&m);
}
END_TEST

/* Paths are relative to the INI file's directory, not the cwd. */
START_TEST(test_relative_paths)
{
	struct smvmm_machine m;
	char err[ERRLEN], sub[PATH_MAX], want[PATH_MAX + 32];

	fmt(sub, sizeof(sub), "%s/sub", tmpdir);
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	write_rel("sub/vmlinux", "k");
	write_rel("sub/vm.ini", "[boot]\n"
				"kernel = vmlinux\n"
				"initrd = ../initrd.img\n"
				"[console]\nserial = logs/com1\n"
				"serial_max_size = 64M\n"
				"serial_max_files = 5\n");

	/* from an unrelated cwd, with a relative INI path */
	ck_assert_int_eq(chdir(tmpdir), 0);
	ck_assert_int_eq(machine_load("sub/vm.ini", &m, err, sizeof(err)), 0);
	ck_assert_str_eq(m.path, "sub/vm.ini");
	ck_assert_str_eq(m.dir, sub);
	fmt(want, sizeof(want), "%s/vmlinux", sub);
	ck_assert_str_eq(m.kernel, want);
	fmt(want, sizeof(want), "%s/../initrd.img", sub);
	ck_assert_str_eq(m.initrd, want);
	ck_assert_uint_eq(m.serial_max_size, 64ull << 20);
	ck_assert_uint_eq(m.serial_max_files, 5);
	fmt(want, sizeof(want), "%s/logs/com1", sub);
	ck_assert_str_eq(m.serial, want);
	machine_free(&m);

	/* the INI in the cwd itself */
	ck_assert_int_eq(chdir(sub), 0);
	ck_assert_int_eq(machine_load("vm.ini", &m, err, sizeof(err)), 0);
	ck_assert_str_eq(m.dir, sub);
	fmt(want, sizeof(want), "%s/vmlinux", sub);
	ck_assert_str_eq(m.kernel, want);
	machine_free(&m);

	/* a kernel relative to the cwd but not to the INI is not found */
	ck_assert_int_eq(chdir(tmpdir), 0);
	write_rel("sub/vm.ini", "[boot]\nkernel = bzImage\n");
	ck_assert_int_eq(machine_load("sub/vm.ini", &m, err, sizeof(err)),
			 -EINVAL);
	fmt(want, sizeof(want),
		 "sub/vm.ini:2: [boot] kernel: %s/bzImage: No such file", sub);
	ck_assert_msg(!strncmp(err, want, strlen(want)), "%s", err);
}
END_TEST

/* A 4095-byte cmdline is longer than inih's line buffer; it must survive. */
START_TEST(test_long_cmdline)
{
	struct smvmm_machine m;
	char err[ERRLEN];
	char *cmd = malloc(4096), *text;

	for (int i = 0; i < 4095; i++)
		cmd[i] = "abcdefgh=/ "[i % 11];
	cmd[4094] = 'z'; /* no trailing blank */
	cmd[4095] = '\0';
	ck_assert_int_ge(asprintf(&text,
				  "[boot]\nkernel = bzImage\ncmdline =   %s  "
				  "  ; trailing comment\n[machine]\nvcpus=2\n",
				  cmd),
			 0);
	ck_assert_int_eq(load_text(text, &m, err), 0);
	ck_assert_str_eq(m.cmdline, cmd);
	ck_assert_uint_eq(m.vcpus, 2); /* line counting continued right */
	machine_free(&m);
	free(text);

	/* 4096 bytes: too long, named with its line */
	ck_assert_int_ge(asprintf(&text,
				  "[boot]\nkernel = bzImage\n\ncmdline = %sx\n",
				  cmd),
			 0);
	ck_assert_int_eq(load_text(text, &m, err), -EINVAL);
	char want[PATH_MAX + 64];
	fmt(want, sizeof(want), "%s:4: [boot] cmdline: 4096 bytes", ini);
	ck_assert_msg(!strncmp(err, want, strlen(want)), "%s", err);
	free(text);

	/* a long comment line is fine; a long line without '=' is not */
	char *junk = malloc(1001);
	memset(junk, 'j', 1000);
	junk[1000] = '\0';
	ck_assert_int_ge(asprintf(&text, "; %s\n[boot]\nkernel = bzImage\n%s\n",
				  junk, junk),
			 0);
	ck_assert_int_eq(load_text(text, &m, err), -EINVAL);
	fmt(want, sizeof(want), "%s:4: syntax error", ini);
	ck_assert_msg(!strncmp(err, want, strlen(want)), "%s", err);
	free(text);
	free(junk);
	free(cmd);
}
END_TEST

/* CRLF line endings, a UTF-8 BOM, "key: value", tabs. */
START_TEST(test_syntax_variants)
{
	struct smvmm_machine m;
	char err[ERRLEN];

	ck_assert_int_eq(load_text("\xef\xbb\xbf[machine]\r\n"
				   "\tvcpus: 3\r\n"
				   "memory = 64MiB ; comment\r\n"
				   "[boot]\r\nkernel = bzImage\r\n",
				   &m, err),
			 0);
	ck_assert_uint_eq(m.vcpus, 3);
	ck_assert_uint_eq(m.mem_size, 64ull << 20);
	ck_assert_int_eq(m.kernel_line, 5);
	machine_free(&m);
}
END_TEST

START_TEST(test_too_many_devices)
{
	struct smvmm_machine m;
	char err[ERRLEN], want[PATH_MAX + 64];
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	fprintf(f, BOOT);
	for (int i = 0; i < MACHINE_MAX_DEVICES; i++)
		fprintf(f, "[device.d%d]\ntype = t\n", i);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(load_text(text, &m, err), 0);
	ck_assert_uint_eq(m.ndev, MACHINE_MAX_DEVICES);
	machine_free(&m);
	free(text);

	f = open_memstream(&text, &len);
	fprintf(f, BOOT);
	for (int i = 0; i <= MACHINE_MAX_DEVICES; i++)
		fprintf(f, "[device.d%d]\ntype = t\n", i);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(load_text(text, &m, err), -EINVAL);
	fmt(want, sizeof(want),
		 "%s:%d: [device.d32]: too many devices (max 32)", ini,
		 3 + 2 * MACHINE_MAX_DEVICES);
	ck_assert_str_eq(err, want);
	free(text);
}
END_TEST

START_TEST(test_file_errors)
{
	struct smvmm_machine m;
	char err[ERRLEN], want[PATH_MAX + 64];

	fmt(want, sizeof(want), "%s/none.ini", tmpdir);
	ck_assert_int_eq(machine_load(want, &m, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "none.ini: No such file or directory"),
		      "%s", err);
	ck_assert(all_zero(&m, sizeof(m)));

	ck_assert_int_eq(machine_load(tmpdir, &m, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "not a regular file"), "%s", err);

	/* a NUL byte in the file */
	FILE *f = fopen(ini, "w");
	ck_assert_ptr_nonnull(f);
	fwrite("[boot]\nkernel = bz\0Image\n", 1, 25, f);
	fclose(f);
	ck_assert_int_eq(machine_load(ini, &m, err, sizeof(err)), -EINVAL);
	fmt(want, sizeof(want), "%s:2: control character 0x00", ini);
	ck_assert_msg(!strncmp(err, want, strlen(want)), "%s", err);

	/* err may be NULL */
	ck_assert_int_eq(machine_load(ini, &m, NULL, 0), -EINVAL);
}
END_TEST

/* ---- machine_parse_size ------------------------------------------------- */

struct size_case {
	const char *s;
	int rc;
	uint64_t v;
};

static const struct size_case size_cases[] = {
	{ "256M", 0, 256ull << 20 },
	{ "1G", 0, 1ull << 30 },
	{ "4096", 0, 4096 },
	{ "64K", 0, 64ull << 10 },
	{ "1T", 0, 1ull << 40 },
	{ "64k", 0, 64ull << 10 },
	{ "2GiB", 0, 2ull << 30 },
	{ "0", 0, 0 },
	{ "0016M", 0, 16ull << 20 },
	{ "18446744073709551615", 0, UINT64_MAX },
	{ "16777215T", 0, 16777215ull << 40 },
	{ "", -EINVAL, 0 },
	{ "12Q", -EINVAL, 0 },
	{ "-1", -EINVAL, 0 },
	{ "+1", -EINVAL, 0 },
	{ " 1", -EINVAL, 0 },
	{ "1 ", -EINVAL, 0 },
	{ "1.5G", -EINVAL, 0 },
	{ "M", -EINVAL, 0 },
	{ "1MB", -EINVAL, 0 },
	{ "1Mi", -EINVAL, 0 },
	{ "1GG", -EINVAL, 0 },
	{ "0x100", -EINVAL, 0 },
	{ "99999999999G", -ERANGE, 0 },
	{ "16777216T", -ERANGE, 0 },
	{ "18446744073709551616", -ERANGE, 0 },
	{ "123456789012345678901234567890123456789K", -ERANGE, 0 },
	{ "123456789012345678901234567890123456789Q", -EINVAL, 0 },
};

START_TEST(test_parse_size)
{
	const struct size_case *tc = &size_cases[_i];
	uint64_t v = 0xdead;
	int rc = machine_parse_size(tc->s, &v);

	ck_assert_msg(rc == tc->rc, "'%s': rc %d, want %d", tc->s, rc, tc->rc);
	if (tc->rc == 0)
		ck_assert_msg(v == tc->v, "'%s': %llu, want %llu", tc->s,
			      (unsigned long long)v,
			      (unsigned long long)tc->v);
	else
		ck_assert_msg(v == 0xdead, "'%s': *out written on error",
			      tc->s);
}
END_TEST

static Suite *machine_suite(void)
{
	Suite *s = suite_create("machine");
	TCase *tc = tcase_create("errors");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_error_case, 0,
			    sizeof(err_cases) / sizeof(err_cases[0]));
	tcase_add_test(tc, test_too_many_devices);
	tcase_add_test(tc, test_file_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("valid");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_full_config);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_relative_paths);
	tcase_add_test(tc, test_long_cmdline);
	tcase_add_test(tc, test_syntax_variants);
	suite_add_tcase(s, tc);

	tc = tcase_create("size");
	tcase_add_loop_test(tc, test_parse_size, 0,
			    sizeof(size_cases) / sizeof(size_cases[0]));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(machine_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
