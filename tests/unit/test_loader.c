// SPDX-License-Identifier: MIT
/*
 * Unit tests for core/loader.c, against the tiny plugins built from
 * tests/plugins/<name>.c into $SMVMM_BUILD_DIR/testplugins/<name>.so: one plugin
 * per reason the loader rejects a file, plus valid device and backend
 * plugins, and the search order over temporary directories.
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

#include "loader.h"

#define ERRLEN 2048

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

static char tmpdir[PATH_MAX];

static const char *build_dir(void)
{
	const char *d = getenv("SMVMM_BUILD_DIR");

	return d && *d ? d : SMVMM_BUILD_DIR;
}

/* Path of test plugin <name>.so; fails the test if it was not built. */
static void tp_path(const char *name, char *buf, size_t len)
{
	fmt(buf, len, "%s/testplugins/%s.so", build_dir(), name);
	ck_assert_msg(access(buf, R_OK) == 0,
		      "%s missing: build the tp-* targets (cmake --build)",
		      buf);
}

static void setup(void)
{
	strcpy(tmpdir, "/tmp/smvmm-loader-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	unsetenv("SMVMM_PLUGIN_PATH");
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

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* ---- one rejected plugin per loop iteration ----------------------------- */

struct bad_case {
	const char *plugin; /* tests/plugins/<plugin>.c */
	enum smvmm_plugin_kind kind;
	int rc;
	const char *needle[3];
};

static const struct bad_case bad_cases[] = {
	{ "no_symbol", SMVMM_PLUGIN_DEVICE, -ELIBBAD,
	  { "no smvmm_plugin_v1 symbol" } },
	{ "abi_major2", SMVMM_PLUGIN_DEVICE, -EPROTO,
	  { "built for plugin ABI major 2", "this smvmm supports 1" } },
	{ "abi_major_field", SMVMM_PLUGIN_DEVICE, -EPROTO,
	  { "descriptor says ABI major 2" } },
	{ "abi_minor_newer", SMVMM_PLUGIN_DEVICE, -EPROTO,
	  { "plugin needs ABI 1.1, host has 1.0" } },
	{ "desc_tiny", SMVMM_PLUGIN_DEVICE, -EINVAL,
	  { "descriptor struct_size 48 too small", ">= 56" } },
	{ "no_queue_notify", SMVMM_PLUGIN_DEVICE, -EINVAL,
	  { "required device op 'queue_notify' is NULL" } },
	{ "kind_backend", SMVMM_PLUGIN_DEVICE, -EPROTO,
	  { "is a backend plugin, expected a device plugin" } },
	{ "good_device", SMVMM_PLUGIN_BACKEND, -EPROTO,
	  { "is a device plugin, expected a backend plugin" } },
	{ "kind_unknown", SMVMM_PLUGIN_DEVICE, -EPROTO,
	  { "unknown plugin kind 7" } },
	{ "no_name", SMVMM_PLUGIN_DEVICE, -EINVAL,
	  { "descriptor has no name" } },
	{ "null_name", SMVMM_PLUGIN_DEVICE, -EINVAL,
	  { "descriptor has no name" } },
	{ "ops_null", SMVMM_PLUGIN_DEVICE, -EINVAL,
	  { "descriptor has no ops table" } },
	{ "ops_tiny", SMVMM_PLUGIN_DEVICE, -EINVAL,
	  { "device ops struct_size 72 too small", ">= 80" } },
	{ "undef_symbol", SMVMM_PLUGIN_DEVICE, -ELIBBAD,
	  { "cannot load", "smvmm_test_no_such_function" } },
	{ "backend_no_irq_line", SMVMM_PLUGIN_BACKEND, -EINVAL,
	  { "required backend op 'set_irq_line' is NULL" } },
};

START_TEST(test_bad_plugin)
{
	const struct bad_case *tc = &bad_cases[_i];
	struct smvmm_plugin p;
	char path[PATH_MAX], err[ERRLEN], prefix[PATH_MAX + 4];
	int rc;

	tp_path(tc->plugin, path, sizeof(path));
	memset(&p, 0x5a, sizeof(p));
	err[0] = '\0';
	rc = loader_open(path, tc->kind, &p, err, sizeof(err));
	ck_assert_msg(rc == tc->rc, "%s: rc %d, want %d (%s)", tc->plugin, rc,
		      tc->rc, err);
	fmt(prefix, sizeof(prefix), "%s: ", path);
	ck_assert_msg(!strncmp(err, prefix, strlen(prefix)),
		      "%s: message '%s' does not start with the path",
		      tc->plugin, err);
	for (int i = 0; i < 3 && tc->needle[i]; i++)
		ck_assert_msg(strstr(err, tc->needle[i]),
			      "%s: expected '%s' in '%s'", tc->plugin,
			      tc->needle[i], err);
	ck_assert_msg(all_zero(&p, sizeof(p)), "%s: *p not zeroed",
		      tc->plugin);
}
END_TEST

/* The sizes the messages above quote are those of this host's ABI 1.0. */
START_TEST(test_size_constants)
{
	ck_assert_uint_eq(offsetof(struct smvmm_plugin_desc, ops), 48);
	ck_assert_uint_eq(sizeof(struct smvmm_plugin_desc), 56);
	ck_assert_uint_eq(offsetof(struct smvmm_device_ops, reset), 72);
}
END_TEST

START_TEST(test_missing_file)
{
	struct smvmm_plugin p;
	char path[PATH_MAX], err[ERRLEN], want[PATH_MAX + 64];

	fmt(path, sizeof(path), "%s/smvmm-none.so", tmpdir);
	ck_assert_int_eq(loader_open(path, SMVMM_PLUGIN_DEVICE, &p, err,
				     sizeof(err)),
			 -ENOENT);
	fmt(want, sizeof(want), "%s: No such file or directory", path);
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_not_elf)
{
	struct smvmm_plugin p;
	char path[PATH_MAX], err[ERRLEN], want[PATH_MAX + 64];
	FILE *f;

	fmt(path, sizeof(path), "%s/smvmm-x.so", tmpdir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("this is a text file, not a shared object\n", f);
	fclose(f);
	ck_assert_int_eq(loader_open(path, SMVMM_PLUGIN_DEVICE, &p, err,
				     sizeof(err)),
			 -ELIBBAD);
	fmt(want, sizeof(want), "%s: cannot load: ", path);
	ck_assert_msg(!strncmp(err, want, strlen(want)), "%s", err);
	ck_assert_ptr_null(p.handle);
}
END_TEST

/* ---- valid plugins ------------------------------------------------------ */

START_TEST(test_good_device)
{
	struct smvmm_plugin p;
	char path[PATH_MAX], err[ERRLEN] = "";

	tp_path("good_device", path, sizeof(path));
	ck_assert_int_eq(loader_open(path, SMVMM_PLUGIN_DEVICE, &p, err,
				     sizeof(err)),
			 0);
	ck_assert_ptr_nonnull(p.handle);
	ck_assert_str_eq(p.path, path);
	ck_assert_uint_eq(p.desc.abi_major, 1);
	ck_assert_uint_eq(p.desc.kind, SMVMM_PLUGIN_DEVICE);
	ck_assert_str_eq(p.desc.name, "good");
	ck_assert_str_eq(p.desc.version, "1.2.3");
	ck_assert_str_eq(p.desc.config_keys[0], "path");
	ck_assert_str_eq(p.desc.config_keys[1], "size");
	ck_assert_ptr_null(p.desc.config_keys[2]);
	ck_assert_uint_eq(p.dev_ops.struct_size,
			  sizeof(struct smvmm_device_ops));
	ck_assert_ptr_nonnull(p.dev_ops.create);
	ck_assert_ptr_nonnull(p.dev_ops.queue_notify);
	ck_assert_ptr_nonnull(p.dev_ops.snapshot_save);
	ck_assert_ptr_nonnull(p.dev_ops.snapshot_restore);
	ck_assert_uint_eq(p.dev_ops.get_features(NULL), 1ull << 32);
	ck_assert(all_zero(&p.backend_ops, sizeof(p.backend_ops)));

	/* two instances of one plugin: dlopen reference counts */
	struct smvmm_plugin q;
	ck_assert_int_eq(loader_open(path, SMVMM_PLUGIN_DEVICE, &q, err,
				     sizeof(err)),
			 0);
	ck_assert_ptr_eq(q.handle, p.handle);
	loader_close(&q);
	ck_assert_uint_eq(p.dev_ops.get_features(NULL), 1ull << 32);

	loader_close(&p);
	ck_assert(all_zero(&p, sizeof(p)));
	loader_close(&p); /* harmless twice */
}
END_TEST

START_TEST(test_good_backend)
{
	struct smvmm_plugin p;
	char path[PATH_MAX], err[ERRLEN] = "";

	tp_path("good_backend", path, sizeof(path));
	ck_assert_int_eq(loader_open(path, SMVMM_PLUGIN_BACKEND, &p, err,
				     sizeof(err)),
			 0);
	ck_assert_str_eq(p.desc.name, "good");
	ck_assert_ptr_null(p.desc.config_keys);
	ck_assert_ptr_nonnull(p.backend_ops.create_vm);
	ck_assert_ptr_nonnull(p.backend_ops.set_irq_line);
	ck_assert_ptr_null(p.backend_ops.irqfd); /* optional, absent */
	ck_assert(all_zero(&p.dev_ops, sizeof(p.dev_ops)));
	loader_close(&p);
}
END_TEST

/*
 * A plugin whose ops table ends before the optional snapshot ops: accepted,
 * and the host copy has them NULL although the plugin's object (bigger than
 * the struct_size it declares) has them set.
 */
START_TEST(test_old_ops_zero_extended)
{
	struct smvmm_plugin p;
	char path[PATH_MAX], err[ERRLEN] = "";

	tp_path("ops_old", path, sizeof(path));
	ck_assert_int_eq(loader_open(path, SMVMM_PLUGIN_DEVICE, &p, err,
				     sizeof(err)),
			 0);
	ck_assert_uint_eq(p.dev_ops.struct_size,
			  offsetof(struct smvmm_device_ops, snapshot_save));
	ck_assert_ptr_nonnull(p.dev_ops.reset);
	ck_assert_ptr_null(p.dev_ops.snapshot_save);
	ck_assert_ptr_null(p.dev_ops.snapshot_restore);
	const struct smvmm_device_ops *raw = p.desc.ops;
	ck_assert_ptr_nonnull(raw->snapshot_save);
	loader_close(&p);
}
END_TEST

/* ---- file names and the search order ------------------------------------ */

START_TEST(test_file_name)
{
	char buf[64];

	ck_assert_int_eq(loader_file_name("rng", SMVMM_PLUGIN_DEVICE, buf,
					  sizeof(buf)),
			 0);
	ck_assert_str_eq(buf, "smvmm-rng.so");
	ck_assert_int_eq(loader_file_name("kvm", SMVMM_PLUGIN_BACKEND, buf,
					  sizeof(buf)),
			 0);
	ck_assert_str_eq(buf, "smvmm-backend-kvm.so");
	ck_assert_int_eq(loader_file_name("a/b", SMVMM_PLUGIN_DEVICE, buf,
					  sizeof(buf)),
			 -EINVAL);
	ck_assert_int_eq(loader_file_name("", SMVMM_PLUGIN_DEVICE, buf,
					  sizeof(buf)),
			 -EINVAL);
	ck_assert_int_eq(loader_file_name("rng", SMVMM_PLUGIN_DEVICE, buf, 12),
			 -ENAMETOOLONG);
	ck_assert_int_eq(loader_file_name("rng", SMVMM_PLUGIN_DEVICE, buf, 13),
			 0);
}
END_TEST

/* tmpdir/<sub>/, created; returns its path in buf. */
static void mksub(const char *sub, char *buf, size_t len)
{
	fmt(buf, len, "%s/%s", tmpdir, sub);
	ck_assert_int_eq(mkdir(buf, 0755), 0);
}

/* dir/<file> -> the test plugin <target>.so */
static void link_plugin(const char *dir, const char *file, const char *target,
			char *out, size_t outlen)
{
	char t[PATH_MAX];

	tp_path(target, t, sizeof(t));
	fmt(out, outlen, "%s/%s", dir, file);
	ck_assert_int_eq(symlink(t, out), 0);
}

START_TEST(test_search_order)
{
	char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX], envp[3 * PATH_MAX];
	char pa[PATH_MAX + 32], pb[PATH_MAX + 32], pc[PATH_MAX + 32];
	char found[PATH_MAX], err[ERRLEN];
	struct loader_search s;

	mksub("plugin_dir", a, sizeof(a));
	mksub("env", b, sizeof(b));
	mksub("exe", c, sizeof(c));
	link_plugin(a, "smvmm-foo.so", "good_device", pa, sizeof(pa));
	link_plugin(b, "smvmm-foo.so", "good_device", pb, sizeof(pb));
	link_plugin(c, "smvmm-foo.so", "good_device", pc, sizeof(pc));
	/* empty entries and a missing directory are skipped */
	fmt(envp, sizeof(envp), "::%s/nonexistent:%s:", tmpdir, b);
	ck_assert_int_eq(setenv("SMVMM_PLUGIN_PATH", envp, 1), 0);
	s.plugin_dir = a;
	s.exe_dir = c;

	ck_assert_int_eq(loader_find("foo", SMVMM_PLUGIN_DEVICE, &s, found,
				     sizeof(found), err, sizeof(err)),
			 0);
	ck_assert_str_eq(found, pa);

	ck_assert_int_eq(unlink(pa), 0);
	ck_assert_int_eq(loader_find("foo", SMVMM_PLUGIN_DEVICE, &s, found,
				     sizeof(found), err, sizeof(err)),
			 0);
	ck_assert_str_eq(found, pb);

	ck_assert_int_eq(unlink(pb), 0);
	ck_assert_int_eq(loader_find("foo", SMVMM_PLUGIN_DEVICE, &s, found,
				     sizeof(found), err, sizeof(err)),
			 0);
	ck_assert_str_eq(found, pc);

	/* no plugin_dir, no env: straight to exe_dir */
	s.plugin_dir = NULL;
	unsetenv("SMVMM_PLUGIN_PATH");
	ck_assert_int_eq(loader_find("foo", SMVMM_PLUGIN_DEVICE, &s, found,
				     sizeof(found), err, sizeof(err)),
			 0);
	ck_assert_str_eq(found, pc);

	/* a directory with the plugin's name is not a plugin */
	char dir_named[PATH_MAX + 32];
	fmt(dir_named, sizeof(dir_named), "%s/smvmm-foo.so", a);
	ck_assert_int_eq(mkdir(dir_named, 0755), 0);
	s.plugin_dir = a;
	ck_assert_int_eq(loader_find("foo", SMVMM_PLUGIN_DEVICE, &s, found,
				     sizeof(found), err, sizeof(err)),
			 0);
	ck_assert_str_eq(found, pc);

	/* backends use their own file name, found the same way; load it */
	struct smvmm_plugin p;
	char pk[PATH_MAX + 32];
	link_plugin(b, "smvmm-backend-good.so", "good_backend", pk,
		    sizeof(pk));
	ck_assert_int_eq(setenv("SMVMM_PLUGIN_PATH", b, 1), 0);
	ck_assert_int_eq(loader_load("good", SMVMM_PLUGIN_BACKEND, &s, &p, err,
				     sizeof(err)),
			 0);
	ck_assert_str_eq(p.path, pk);
	ck_assert_ptr_nonnull(p.backend_ops.run);
	loader_close(&p);

	/* loader_load passes loader_open's errors through */
	link_plugin(a, "smvmm-bad.so", "no_queue_notify", pk, sizeof(pk));
	ck_assert_int_eq(loader_load("bad", SMVMM_PLUGIN_DEVICE, &s, &p, err,
				     sizeof(err)),
			 -EINVAL);
	ck_assert_msg(strstr(err, "smvmm-bad.so: required device op "
				  "'queue_notify' is NULL"),
		      "%s", err);
}
END_TEST

START_TEST(test_not_found)
{
	char a[PATH_MAX], b1[PATH_MAX], b2[PATH_MAX], c[PATH_MAX];
	char envp[3 * PATH_MAX], found[PATH_MAX], err[ERRLEN];
	struct loader_search s;
	struct smvmm_plugin p;

	mksub("a", a, sizeof(a));
	mksub("b1", b1, sizeof(b1));
	mksub("b2", b2, sizeof(b2));
	mksub("c", c, sizeof(c));
	fmt(envp, sizeof(envp), "%s:%s", b1, b2);
	ck_assert_int_eq(setenv("SMVMM_PLUGIN_PATH", envp, 1), 0);
	s.plugin_dir = a;
	s.exe_dir = c;

	ck_assert_int_eq(loader_find("nope", SMVMM_PLUGIN_DEVICE, &s, found,
				     sizeof(found), err, sizeof(err)),
			 -ENOENT);
	ck_assert_msg(!strncmp(err, "smvmm-nope.so: device plugin not found",
			       38),
		      "%s", err);
	/* every directory tried, in order */
	char *pa = strstr(err, a), *pb1 = strstr(err, b1);
	char *pb2 = strstr(err, b2), *pc = strstr(err, c);
	ck_assert_msg(pa && pb1 && pb2 && pc, "%s", err);
	ck_assert_msg(pa < pb1 && pb1 < pb2 && pb2 < pc, "order: %s", err);

	ck_assert_int_eq(loader_load("nope", SMVMM_PLUGIN_BACKEND, &s, &p, err,
				     sizeof(err)),
			 -ENOENT);
	ck_assert_msg(strstr(err, "smvmm-backend-nope.so: backend plugin not "
				  "found"),
		      "%s", err);
	ck_assert(all_zero(&p, sizeof(p)));

	/* exe_dir NULL: the directory of this test binary is searched */
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	ck_assert_int_gt(n, 0);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	s.exe_dir = NULL;
	unsetenv("SMVMM_PLUGIN_PATH");
	ck_assert_int_eq(loader_find("nope", SMVMM_PLUGIN_DEVICE, &s, found,
				     sizeof(found), err, sizeof(err)),
			 -ENOENT);
	ck_assert_msg(strstr(err, exe), "%s lacks %s", err, exe);

	/* a type with a '/' is refused before any search */
	ck_assert_int_eq(loader_find("../x", SMVMM_PLUGIN_DEVICE, &s, found,
				     sizeof(found), err, sizeof(err)),
			 -EINVAL);
	ck_assert_msg(strstr(err, "not a valid plugin name"), "%s", err);

	/* a tiny err buffer is truncated, not overrun */
	char small[16];
	ck_assert_int_eq(loader_find("nope", SMVMM_PLUGIN_DEVICE, &s, found,
				     sizeof(found), small, sizeof(small)),
			 -ENOENT);
	ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
}
END_TEST

static Suite *loader_suite(void)
{
	Suite *s = suite_create("loader");
	TCase *tc = tcase_create("reject");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_bad_plugin, 0,
			    sizeof(bad_cases) / sizeof(bad_cases[0]));
	tcase_add_test(tc, test_size_constants);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_not_elf);
	suite_add_tcase(s, tc);

	tc = tcase_create("accept");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_good_device);
	tcase_add_test(tc, test_good_backend);
	tcase_add_test(tc, test_old_ops_zero_extended);
	suite_add_tcase(s, tc);

	tc = tcase_create("search");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_file_name);
	tcase_add_test(tc, test_search_order);
	tcase_add_test(tc, test_not_found);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(loader_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
