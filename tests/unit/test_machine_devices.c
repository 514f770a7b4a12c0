// SPDX-License-Identifier: MIT
/*
 * machine_load_devices (core/machine.c): the device-only INI of
 * `smvmm vhost-user`.  Same syntax and [device.<id>] rules as a machine
 * file, but no other section, and at least one device.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine.h"

static char path[PATH_MAX];

static void setup(void)
{
	char t[] = "/tmp/smvmm-devices-XXXXXX";
	int fd = mkstemp(t);

	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(path, sizeof(path), "%s", t);
}

static void teardown(void)
{
	unlink(path);
}

static void write_ini(const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
}

/* Load `text`, expect failure with a message that contains every string
 * in `want` (NULL-terminated) and starts with the file name. */
static void load_fails(const char *text, int line, const char *want)
{
	struct smvmm_machine m;
	char err[1024], prefix[PATH_MAX + 16];

	write_ini(text);
	memset(err, 0, sizeof(err));
	ck_assert_int_eq(machine_load_devices(path, &m, err, sizeof(err)),
			 -EINVAL);
	if (line)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", path);
	ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
		      "message '%s' does not start with '%s'", err, prefix);
	ck_assert_msg(strstr(err, want), "message '%s' lacks '%s'", err, want);
	/* *m is zeroed on error: machine_free is harmless */
	ck_assert_uint_eq(m.ndev, 0);
	ck_assert_ptr_null(m.path);
	machine_free(&m);
}

START_TEST(test_one_device)
{
	struct smvmm_machine m;
	char err[1024];

	write_ini("; a device file\n"
		  "[device.disk0]\n"
		  "type = virtio-blk\n"
		  "path = /var/lib/disk.img   ; inline comment\n"
		  "readonly = on\n");
	ck_assert_int_eq(machine_load_devices(path, &m, err, sizeof(err)), 0);
	ck_assert_uint_eq(m.ndev, 1);
	ck_assert_str_eq(m.dev[0].id, "disk0");
	ck_assert_str_eq(m.dev[0].type, "virtio-blk");
	ck_assert_int_eq(m.dev[0].line, 2);
	ck_assert_uint_eq(m.dev[0].nkv, 2);
	ck_assert_str_eq(m.dev[0].kv[0].key, "path");
	ck_assert_str_eq(m.dev[0].kv[0].value, "/var/lib/disk.img");
	ck_assert_int_eq(m.dev[0].kv[0].line, 4);
	ck_assert_str_eq(m.dev[0].kv[1].key, "readonly");
	ck_assert_uint_eq(m.dev[0].mmio_base, 0);
	ck_assert_int_eq(m.dev[0].irq, -1);
	/* no [boot] needed, and the machine defaults are harmless */
	ck_assert_ptr_null(m.kernel);
	ck_assert_ptr_null(m.plugin_dir);
	ck_assert_str_eq(m.path, path);
	machine_free(&m);
}
END_TEST

START_TEST(test_several_devices_and_core_keys)
{
	struct smvmm_machine m;
	char err[1024];

	write_ini("[device.a]\ntype = virtio-rng\n"
		  "[device.b]\ntype = virtio-vsock\nguest_cid = 3\n"
		  "mmio_base = 0xd0001000\nirq = 7\n");
	ck_assert_int_eq(machine_load_devices(path, &m, err, sizeof(err)), 0);
	ck_assert_uint_eq(m.ndev, 2);
	ck_assert_str_eq(m.dev[1].id, "b");
	ck_assert_uint_eq(m.dev[1].mmio_base, 0xd0001000);
	ck_assert_int_eq(m.dev[1].irq, 7);
	ck_assert_uint_eq(m.dev[1].nkv, 1);
	machine_free(&m);
}
END_TEST

START_TEST(test_machine_sections_refused)
{
	load_fails("[machine]\nmemory = 256M\n", 1,
		   "[machine]: not allowed in a device file");
	load_fails("[device.x]\ntype = virtio-rng\n[boot]\nkernel = k\n", 3,
		   "[boot]: not allowed in a device file");
	load_fails("[console]\nserial = none\n[device.x]\ntype = t\n", 1,
		   "[console]: not allowed");
	load_fails("[devices.x]\ntype = t\n", 1,
		   "unknown section (a device file has only [device.<id>]");
}
END_TEST

START_TEST(test_device_rules_kept)
{
	load_fails("", 0, "no [device.<id>] section");
	load_fails("; only a comment\n", 0, "no [device.<id>] section");
	load_fails("[device.x]\npath = /a\n", 1, "missing type");
	load_fails("[device.x]\ntype = a\n[device.x]\ntype = b\n", 3,
		   "duplicate device id 'x'");
	load_fails("[device.bad!id]\ntype = a\n", 1, "device id");
	load_fails("[device.x]\ntype = a\ntype = b\n", 3, "duplicate key");
	load_fails("[device.x]\ntype = a\nmmio_base = 0x1000\n", 3,
		   "outside the virtio-mmio window");
	load_fails("[device.x]\ntype = a\nirq = 2\n", 3, "5..23");
	load_fails("type = a\n", 1, "key before the first [section]");
	load_fails("[device.x]\ntype = a\nthis is not ini\n", 3,
		   "syntax error");
}
END_TEST

START_TEST(test_missing_file)
{
	struct smvmm_machine m;
	char err[1024];

	ck_assert_int_eq(machine_load_devices("/nonexistent/dev.ini", &m, err,
					      sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/dev.ini"));
	machine_free(&m);
}
END_TEST

/* A machine file is still a machine file: machine_load is unchanged. */
START_TEST(test_machine_load_unchanged)
{
	struct smvmm_machine m;
	char err[1024];

	write_ini("[device.x]\ntype = virtio-rng\n");
	ck_assert_int_eq(machine_load(path, &m, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "no [boot] section"));
	machine_free(&m);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("machine_load_devices");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_one_device);
	tcase_add_test(tc, test_several_devices_and_core_keys);
	tcase_add_test(tc, test_machine_sections_refused);
	tcase_add_test(tc, test_device_rules_kept);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_machine_load_unchanged);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
