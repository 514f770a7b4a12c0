// SPDX-License-Identifier: MIT
/*
 * Unit tests for [sandbox]: the keys and their validation (core/machine.c),
 * --uid/--gid/--chroot (machine_load_cli), and the parts of core/sandbox.c
 * that run without root: the cgroup set-up against a plain directory tree,
 * fsize_limit, and the refusals (a jail as non-root, sandbox_enter without
 * sandbox_prepare).  The jail itself (namespaces, pivot_root, the drop) is
 * proved from outside the process by tests/e2e/jail_kvm.sh and
 * jail_linux_kvm.sh, and its errors by tests/e2e/jail_cli.sh.
 *
 * Uses the Debian accounts nobody (65534) and nogroup (65534), which
 * base-passwd always provides.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "machine.h"
#include "sandbox.h"

#define ERRLEN 1024

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

static void read_file(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	ck_assert_msg(f, "fopen %s: %s", path, strerror(errno));
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void setup(void)
{
	char t[] = "/tmp/smvmm-sandbox-XXXXXX", p[PATH_MAX];

	ck_assert_ptr_nonnull(mkdtemp(t));
	ck_assert_ptr_nonnull(realpath(t, tmpdir));
	fmt(ini, sizeof(ini), "%s/machine.ini", tmpdir);
	fmt(p, sizeof(p), "%s/bzImage", tmpdir);
	write_file(p, "not really a kernel");
	fmt(p, sizeof(p), "%s/jail", tmpdir);
	ck_assert_int_eq(mkdir(p, 0755), 0);
	fmt(p, sizeof(p), "%s/afile", tmpdir);
	write_file(p, "x");
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

#define BOOT "[boot]\nkernel = bzImage\n"

static int load_cli(const char *text, const struct machine_cli *cli,
		    struct smvmm_machine *m, char *err)
{
	write_file(ini, text);
	err[0] = '\0';
	return machine_load_cli(ini, cli, m, err, ERRLEN);
}

/* A uid with no passwd entry, for the "numeric id needs no entry" rules. */
#define NO_SUCH_UID "64999"

/* ---- errors: file:line: [sandbox] key: reason ------------------------- */

struct err_case {
	const char *what;
	const char *text;
	int line;
	const char *needle[3];
};

static const struct err_case err_cases[] = {
	{ "unknown key", BOOT "[sandbox]\nusr = nobody\n", 4,
	  { "[sandbox] usr: unknown key (known: user, group, chroot, "
	    "namespaces, cgroup, memory_max", "fsize_limit)" } },
	{ "duplicate key", BOOT "[sandbox]\nuser = nobody\nuser = nobody\n", 5,
	  { "[sandbox] user: duplicate key (first set at line 4)" } },
	{ "section twice", BOOT "[sandbox]\n[sandbox]\n", 4,
	  { "[sandbox]: section appears twice" } },
	{ "empty user", BOOT "[sandbox]\nuser =\n", 4,
	  { "[sandbox] user: empty value" } },
	{ "unknown user", BOOT "[sandbox]\nuser = no-such-user-smvmm\n", 4,
	  { "[sandbox] user: unknown user 'no-such-user-smvmm' (not in the "
	    "passwd database" } },
	{ "user root by name", BOOT "[sandbox]\nuser = root\n", 4,
	  { "[sandbox] user: 'root' is uid 0 (root)" } },
	{ "user 0", BOOT "[sandbox]\nuser = 0\n", 4,
	  { "[sandbox] user: '0' is uid 0" } },
	{ "uid too large", BOOT "[sandbox]\nuser = 4294967295\n", 4,
	  { "[sandbox] user: uid '4294967295' is out of range" } },
	{ "unknown group", BOOT "[sandbox]\nuser = nobody\n"
			   "group = no-such-group-smvmm\n", 5,
	  { "[sandbox] group: unknown group 'no-such-group-smvmm'" } },
	{ "group root", BOOT "[sandbox]\nuser = nobody\ngroup = root\n", 5,
	  { "[sandbox] group: 'root' is gid 0" } },
	{ "chroot missing", BOOT "[sandbox]\nuser = nobody\nchroot = nojail\n",
	  5, { "[sandbox] chroot: ", "/nojail: No such file or directory "
	       "(the jail directory must exist)" } },
	{ "chroot is a file", BOOT "[sandbox]\nuser = nobody\nchroot = afile\n",
	  5, { "[sandbox] chroot: ", "/afile: not a directory" } },
	{ "chroot is /", BOOT "[sandbox]\nuser = nobody\nchroot = /\n", 5,
	  { "[sandbox] chroot: / is the root directory" } },
	{ "namespace unknown", BOOT "[sandbox]\nuser = nobody\n"
			       "namespaces = mount,user\n", 5,
	  { "[sandbox] namespaces: 'user' is not a namespace" } },
	{ "namespace twice", BOOT "[sandbox]\nuser = nobody\n"
			     "namespaces = net, ipc ,net\n", 5,
	  { "[sandbox] namespaces: 'net' is listed twice" } },
	{ "namespace empty entry", BOOT "[sandbox]\nuser = nobody\n"
				   "namespaces = net,,ipc\n", 5,
	  { "[sandbox] namespaces: 'net,,ipc' has an empty entry" } },
	{ "cgroup relative", BOOT "[sandbox]\nuser = nobody\ncgroup = smvmm\n",
	  5, { "[sandbox] cgroup: 'smvmm' is not an absolute path" } },
	{ "cgroup dotdot", BOOT "[sandbox]\nuser = nobody\n"
			   "cgroup = /sys/fs/cgroup/../x\n", 5,
	  { "[sandbox] cgroup: '/sys/fs/cgroup/../x': no '.' or '..'" } },
	{ "cgroup not cgroup2", BOOT "[sandbox]\nuser = nobody\n"
				"cgroup = /proc/smvmm/vm1\n", 5,
	  { "[sandbox] cgroup: /proc/smvmm/vm1 is not in a cgroup v2 "
	    "hierarchy (/proc is not a cgroup2 file system" } },
	{ "memory_max junk", BOOT "[sandbox]\nmemory_max = lots\n", 4,
	  { "[sandbox] memory_max: 'lots' is not a size of at least 4K" } },
	{ "memory_max tiny", BOOT "[sandbox]\nmemory_max = 100\n", 4,
	  { "[sandbox] memory_max: '100' is not a size of at least 4K" } },
	{ "memory_high junk", BOOT "[sandbox]\nmemory_high = -1\n", 4,
	  { "[sandbox] memory_high: '-1'" } },
	{ "cpu_max quota too small", BOOT "[sandbox]\ncpu_max = 999\n", 4,
	  { "[sandbox] cpu_max: '999' is not '<quota> [<period>]'" } },
	{ "cpu_max period too large", BOOT "[sandbox]\ncpu_max = max 2000000\n",
	  4, { "[sandbox] cpu_max: 'max 2000000'" } },
	{ "cpu_max three words", BOOT "[sandbox]\ncpu_max = 1000 1000 1000\n",
	  4, { "[sandbox] cpu_max: '1000 1000 1000'" } },
	{ "cpu_max junk", BOOT "[sandbox]\ncpu_max = half\n", 4,
	  { "[sandbox] cpu_max: 'half'" } },
	{ "cpu_weight 0", BOOT "[sandbox]\ncpu_weight = 0\n", 4,
	  { "[sandbox] cpu_weight: '0' is not a number in 1..10000" } },
	{ "cpu_weight big", BOOT "[sandbox]\ncpu_weight = 10001\n", 4,
	  { "[sandbox] cpu_weight: '10001'" } },
	{ "pids_max 0", BOOT "[sandbox]\npids_max = 0\n", 4,
	  { "[sandbox] pids_max: '0' is not a number in 1..4194304 or max" } },
	{ "cpuset_cpus reversed", BOOT "[sandbox]\ncpuset_cpus = 3-1\n", 4,
	  { "[sandbox] cpuset_cpus: '3-1' is not a list such as 0-3,6" } },
	{ "cpuset_mems junk", BOOT "[sandbox]\ncpuset_mems = 0,\n", 4,
	  { "[sandbox] cpuset_mems: '0,'" } },
	{ "fsize_limit 0", BOOT "[sandbox]\nfsize_limit = 0\n", 4,
	  { "[sandbox] fsize_limit: '0' is not a size of at least 1 byte" } },
	{ "fsize_limit junk", BOOT "[sandbox]\nfsize_limit = 1MB\n", 4,
	  { "[sandbox] fsize_limit: '1MB'" } },
	/* the rules that span keys */
	{ "group without user", BOOT "[sandbox]\ngroup = nogroup\n", 4,
	  { "[sandbox] group: needs a user to drop to ([sandbox] user, or "
	    "--uid)" } },
	{ "chroot without user", BOOT "[sandbox]\nchroot = jail\n", 4,
	  { "[sandbox] chroot: needs a user to drop to" } },
	{ "namespaces without user", BOOT "[sandbox]\nnamespaces = net\n", 4,
	  { "[sandbox] namespaces: needs a user to drop to" } },
	{ "limit without cgroup", BOOT "[sandbox]\nuser = nobody\n\n"
				  "pids_max = 64\n", 6,
	  { "[sandbox] pids_max: needs [sandbox] cgroup (the cgroup v2 "
	    "directory to write pids.max in)" } },
	{ "numeric uid, no entry, no group",
	  BOOT "[sandbox]\nuser = " NO_SUCH_UID "\n", 4,
	  { "[sandbox] user: uid " NO_SUCH_UID " has no passwd entry to take a "
	    "group from: set [sandbox] group (or --gid)" } },
	{ "chroot without the mount namespace",
	  BOOT "[sandbox]\nuser = nobody\nchroot = jail\nnamespaces = pid,net\n",
	  6, { "[sandbox] namespaces: a chroot needs the mount namespace" } },
};

START_TEST(test_error_case)
{
	const struct err_case *tc = &err_cases[_i];
	struct smvmm_machine m;
	char err[ERRLEN], prefix[PATH_MAX + 32];
	int rc;

	memset(&m, 0xa5, sizeof(m));
	rc = load_cli(tc->text, NULL, &m, err);
	ck_assert_msg(rc == -EINVAL, "%s: rc %d, err '%s'", tc->what, rc, err);
	fmt(prefix, sizeof(prefix), "%s:%d: ", ini, tc->line);
	ck_assert_msg(!strncmp(err, prefix, strlen(prefix)),
		      "%s: expected prefix '%s' in '%s'", tc->what, prefix,
		      err);
	for (int i = 0; i < 3 && tc->needle[i]; i++)
		ck_assert_msg(strstr(err, tc->needle[i]),
			      "%s: expected '%s' in '%s'", tc->what,
			      tc->needle[i], err);
	ck_assert_msg(!strchr(err, '\n'), "one line: '%s'", err);
}
END_TEST

/* [sandbox] belongs to a machine: a vhost-user device file refuses it. */
START_TEST(test_device_file_refuses_sandbox)
{
	struct smvmm_machine m;
	char err[ERRLEN];

	write_file(ini, "[device.r]\ntype = virtio-rng\n[sandbox]\n"
			"user = nobody\n");
	ck_assert_int_eq(machine_load_devices(ini, &m, err, sizeof(err)),
			 -EINVAL);
	ck_assert_msg(strstr(err, ":3: [sandbox]: not allowed in a device "
			      "file"), "%s", err);
}
END_TEST

/* ---- valid [sandbox] sections ------------------------------------------ */

START_TEST(test_full_jail)
{
	struct smvmm_machine m;
	char err[ERRLEN], jail[PATH_MAX];
	const struct machine_sandbox *sb = &m.sandbox;

	ck_assert_int_eq(load_cli(BOOT "[sandbox]\nuser = nobody\n"
				  "group = nogroup\nchroot = jail/\n"
				  "namespaces = uts , mount,pid\n"
				  "fsize_limit = 64M\n",
				  NULL, &m, err), 0);
	fmt(jail, sizeof(jail), "%s/jail", tmpdir);
	ck_assert(sb->jail);
	ck_assert_uint_eq(sb->uid, 65534);
	ck_assert_uint_eq(sb->gid, 65534);
	ck_assert_str_eq(sb->user, "nobody");
	ck_assert_str_eq(sb->group, "nogroup");
	ck_assert_int_eq(sb->user_at.line, 4);
	ck_assert_ptr_null(sb->user_at.opt);
	/* relative to the INI file's directory, made real */
	ck_assert_str_eq(sb->chroot, jail);
	ck_assert_ptr_null(sb->chroot_alias);
	ck_assert_uint_eq(sb->namespaces,
			  MACHINE_NS_UTS | MACHINE_NS_MOUNT | MACHINE_NS_PID);
	ck_assert_uint_eq(sb->fsize_limit, 64ull << 20);
	ck_assert_uint_eq(sb->nlimit, 0);
	machine_free(&m);
}
END_TEST

/* A jail with only a user: the user's primary group, all five namespaces. */
START_TEST(test_jail_defaults)
{
	struct smvmm_machine m;
	char err[ERRLEN];

	ck_assert_int_eq(load_cli(BOOT "[sandbox]\nuser = 65534\n", NULL, &m,
				  err), 0);
	ck_assert(m.sandbox.jail);
	ck_assert_uint_eq(m.sandbox.uid, 65534);
	ck_assert_uint_eq(m.sandbox.gid, getpwuid(65534)->pw_gid);
	ck_assert_uint_eq(m.sandbox.namespaces, MACHINE_NS_ALL);
	ck_assert_ptr_null(m.sandbox.chroot);
	machine_free(&m);

	/* no [sandbox], or fsize_limit alone: no jail */
	ck_assert_int_eq(load_cli(BOOT "[sandbox]\nfsize_limit = 4K\n", NULL,
				  &m, err), 0);
	ck_assert(!m.sandbox.jail);
	ck_assert_uint_eq(m.sandbox.namespaces, 0);
	ck_assert_uint_eq(m.sandbox.fsize_limit, 4096);
	machine_free(&m);

	/* numeric ids need no entries; namespaces = none */
	ck_assert_int_eq(load_cli(BOOT "[sandbox]\nuser = " NO_SUCH_UID "\n"
				  "group = 64998\nnamespaces = none\n", NULL,
				  &m, err), 0);
	ck_assert_uint_eq(m.sandbox.uid, 64999);
	ck_assert_uint_eq(m.sandbox.gid, 64998);
	ck_assert_uint_eq(m.sandbox.namespaces, 0);
	machine_free(&m);
}
END_TEST

/* A chroot through a symlink: the real path, and the path as written. */
START_TEST(test_chroot_alias)
{
	struct smvmm_machine m;
	char err[ERRLEN], link[PATH_MAX], jail[PATH_MAX], text[PATH_MAX * 2];

	fmt(jail, sizeof(jail), "%s/jail", tmpdir);
	fmt(link, sizeof(link), "%s/link", tmpdir);
	ck_assert_int_eq(symlink("jail", link), 0);
	fmt(text, sizeof(text),
	    BOOT "[sandbox]\nuser = nobody\nchroot = %s/./link//\n", tmpdir);
	ck_assert_int_eq(load_cli(text, NULL, &m, err), 0);
	ck_assert_str_eq(m.sandbox.chroot, jail);
	ck_assert_str_eq(m.sandbox.chroot_alias, link);
	machine_free(&m);
}
END_TEST

/* cgroup limits: validated, and normalized into what the files take. */
START_TEST(test_cgroup_limits)
{
	struct smvmm_machine m;
	char err[ERRLEN], cgroot[PATH_MAX] = "", text[PATH_MAX * 2];
	FILE *f = fopen("/proc/self/mounts", "r");
	char dev[256], dir[PATH_MAX], type[64];
	static const char *const want[][2] = {
		{ "memory.max", "536870912" },
		{ "memory.high", "max" },
		{ "memory.swap.max", "0" },
		{ "cpu.max", "50000 100000" },
		{ "cpu.weight", "50" },
		{ "pids.max", "64" },
		{ "cpuset.cpus", "0-1,3" },
		{ "cpuset.mems", "0" },
	};

	ck_assert_ptr_nonnull(f);
	while (fscanf(f, "%255s %4095s %63s %*[^\n]", dev, dir, type) == 3)
		if (!strcmp(type, "cgroup2") && !cgroot[0])
			fmt(cgroot, sizeof(cgroot), "%s", dir);
	fclose(f);
	if (!cgroot[0]) {
		/* cgroup = needs a cgroup2 mount to validate against */
		fprintf(stderr, "test_cgroup_limits: no cgroup2 mounted, "
			"checked the refusal only\n");
		ck_assert_int_eq(load_cli(BOOT "[sandbox]\nuser = nobody\n"
					  "cgroup = /sys/fs/cgroup/x\n", NULL,
					  &m, err), -EINVAL);
		ck_assert_msg(strstr(err, "no cgroup2 file system is mounted"),
			      "%s", err);
		return;
	}
	fmt(text, sizeof(text),
	    BOOT "[sandbox]\nuser = nobody\ncgroup = %s/smvmm-unit/vm1/\n"
		 "memory_max = 512M\nmemory_high = max\nmemory_swap_max = 0\n"
		 "cpu_max =  50000   100000\ncpu_weight = 50\npids_max = 64\n"
		 "cpuset_cpus = 0-1,3\ncpuset_mems = 0\n", cgroot);
	ck_assert_msg(load_cli(text, NULL, &m, err) == 0, "%s", err);
	fmt(dir, sizeof(dir), "%s/smvmm-unit/vm1", cgroot);
	ck_assert_str_eq(m.sandbox.cgroup, dir);
	ck_assert_uint_eq(m.sandbox.nlimit, 8);
	for (unsigned int i = 0; i < 8; i++) {
		ck_assert_str_eq(m.sandbox.limit[i].file, want[i][0]);
		ck_assert_str_eq(m.sandbox.limit[i].value, want[i][1]);
		ck_assert_int_eq(m.sandbox.limit[i].line, 6 + (int)i);
	}
	machine_free(&m);

	/* the root of the hierarchy is no cgroup to jail into */
	fmt(text, sizeof(text), BOOT "[sandbox]\nuser = nobody\ncgroup = %s\n",
	    cgroot);
	ck_assert_int_eq(load_cli(text, NULL, &m, err), -EINVAL);
	ck_assert_msg(strstr(err, "is the root of the cgroup hierarchy"), "%s",
		      err);
	/* --check must not create it: validating only reads */
	ck_assert_int_ne(access(dir, F_OK), 0);
}
END_TEST

/* ---- --uid, --gid, --chroot --------------------------------------------- */

START_TEST(test_cli)
{
	struct smvmm_machine m;
	char err[ERRLEN], jail[PATH_MAX], cwd[PATH_MAX];
	struct machine_cli cli = { .uid = "nobody" };
	char where[PATH_MAX + 64];

	/* --uid supplies the user a file with chroot alone lacks */
	ck_assert_msg(load_cli(BOOT "[sandbox]\nchroot = jail\n", &cli, &m,
			       err) == 0, "%s", err);
	ck_assert_uint_eq(m.sandbox.uid, 65534);
	ck_assert_str_eq(m.sandbox.user_at.opt, "--uid");
	ck_assert_str_eq(machine_where(&m, "user", m.sandbox.user_at, where,
				       sizeof(where)), "--uid");
	ck_assert_str_eq(machine_where(&m, "chroot", m.sandbox.chroot_at,
				       where, sizeof(where)),
			 strcat(strcpy(jail, ini), ":4: [sandbox] chroot"));
	machine_free(&m);

	/* the command line wins over the file */
	cli = (struct machine_cli){ .uid = NO_SUCH_UID, .gid = "64998" };
	ck_assert_msg(load_cli(BOOT "[sandbox]\nuser = nobody\n"
			       "group = nogroup\n", &cli, &m, err) == 0,
		      "%s", err);
	ck_assert_uint_eq(m.sandbox.uid, 64999);
	ck_assert_uint_eq(m.sandbox.gid, 64998);
	machine_free(&m);

	/* a relative --chroot is relative to the working directory */
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	ck_assert_int_eq(chdir(tmpdir), 0);
	cli = (struct machine_cli){ .uid = "nobody", .chroot = "jail" };
	ck_assert_int_eq(load_cli(BOOT, &cli, &m, err), 0);
	fmt(jail, sizeof(jail), "%s/jail", tmpdir);
	ck_assert_str_eq(m.sandbox.chroot, jail);
	ck_assert_str_eq(m.sandbox.chroot_at.opt, "--chroot");
	machine_free(&m);
	ck_assert_int_eq(chdir(cwd), 0);

	/* errors name the option */
	cli = (struct machine_cli){ .uid = "no-such-user-smvmm" };
	ck_assert_int_eq(load_cli(BOOT, &cli, &m, err), -EINVAL);
	ck_assert_str_eq(err, "--uid: unknown user 'no-such-user-smvmm' (not "
			 "in the passwd database; a numeric uid needs no "
			 "entry)");
	cli = (struct machine_cli){ .uid = "nobody", .gid = "root" };
	ck_assert_int_eq(load_cli(BOOT, &cli, &m, err), -EINVAL);
	ck_assert_msg(!strncmp(err, "--gid: 'root' is gid 0", 22), "%s", err);
	cli = (struct machine_cli){ .uid = "nobody", .chroot = "/nonexistent-smvmm" };
	ck_assert_int_eq(load_cli(BOOT, &cli, &m, err), -EINVAL);
	ck_assert_str_eq(err, "--chroot: /nonexistent-smvmm: No such file or "
			 "directory (the jail directory must exist)");
	cli = (struct machine_cli){ .chroot = tmpdir };
	ck_assert_int_eq(load_cli(BOOT, &cli, &m, err), -EINVAL);
	ck_assert_msg(!strncmp(err, "--chroot: needs a user to drop to", 33),
		      "%s", err);
	cli = (struct machine_cli){ .uid = NO_SUCH_UID };
	ck_assert_int_eq(load_cli(BOOT, &cli, &m, err), -EINVAL);
	ck_assert_msg(!strncmp(err, "--uid: uid " NO_SUCH_UID " has no passwd "
			       "entry", 35), "%s", err);
}
END_TEST

/* ---- sandbox.c without root ---------------------------------------------- */

static void mkdir_rel(const char *rel)
{
	char p[PATH_MAX];

	fmt(p, sizeof(p), "%s/%s", tmpdir, rel);
	ck_assert_int_eq(mkdir(p, 0755), 0);
}

static void write_rel(const char *rel, const char *text)
{
	char p[PATH_MAX];

	fmt(p, sizeof(p), "%s/%s", tmpdir, rel);
	write_file(p, text);
}

static void read_rel(const char *rel, char *buf, size_t len)
{
	char p[PATH_MAX];

	fmt(p, sizeof(p), "%s/%s", tmpdir, rel);
	read_file(p, buf, len);
}

/* A machine whose sandbox has a cgroup under tmpdir/cg (no cgroup2
 * needed: sandbox_cgroup_setup gets the root). */
static void fake_cgroup_machine(struct smvmm_machine *m, const char *rel)
{
	char p[PATH_MAX];

	memset(m, 0, sizeof(*m));
	m->path = strdup(ini);
	fmt(p, sizeof(p), "%s/cg/%s", tmpdir, rel);
	m->sandbox.cgroup = strdup(p);
	m->sandbox.cgroup_line = 7;
	m->sandbox.jail = true;
}

static void add_limit(struct smvmm_machine *m, const char *key,
		      const char *file, const char *value, int line)
{
	struct machine_cg_limit *l = &m->sandbox.limit[m->sandbox.nlimit++];

	l->key = key;
	l->file = file;
	l->value = strdup(value);
	l->line = line;
}

/* The files a cgroup v2 directory has, as far as the set-up reads them. */
static void fake_cgroup_dir(const char *rel, const char *controllers)
{
	char p[PATH_MAX];

	mkdir_rel(rel);
	fmt(p, sizeof(p), "%s/cgroup.controllers", rel);
	write_rel(p, controllers);
	fmt(p, sizeof(p), "%s/cgroup.subtree_control", rel);
	write_rel(p, "");
}

START_TEST(test_cgroup_setup)
{
	struct smvmm_machine m;
	char err[ERRLEN], root[PATH_MAX], buf[256];

	fake_cgroup_dir("cg", "cpuset cpu io memory pids\n");
	fake_cgroup_dir("cg/smvmm", "cpuset cpu io memory pids\n");
	/* memory already given to smvmm's children: not written again */
	write_rel("cg/smvmm/cgroup.subtree_control", "memory\n");
	fake_cgroup_machine(&m, "smvmm/vm1");
	add_limit(&m, "memory_max", "memory.max", "536870912", 8);
	add_limit(&m, "memory_high", "memory.high", "max", 9);
	add_limit(&m, "pids_max", "pids.max", "64", 10);
	fmt(root, sizeof(root), "%s/cg", tmpdir);
	/* the limit files exist in a real cgroup once it is created */
	ck_assert_int_eq(sandbox_cgroup_setup(&m, root, err, sizeof(err)),
			 -ENOENT);
	ck_assert_msg(strstr(err, ":8: [sandbox] memory_max: cannot write "
			      "'536870912' to "), "%s", err);
	ck_assert_msg(strstr(err, "/cg/smvmm/vm1/memory.max: No such file"),
		      "%s", err);
	/* vm1 was created; with its interface files the set-up completes */
	write_rel("cg/smvmm/vm1/memory.max", "");
	write_rel("cg/smvmm/vm1/memory.high", "");
	write_rel("cg/smvmm/vm1/pids.max", "");
	write_rel("cg/cgroup.subtree_control", "");
	write_rel("cg/smvmm/cgroup.subtree_control", "memory\n");
	ck_assert_msg(sandbox_cgroup_setup(&m, root, err, sizeof(err)) == 0,
		      "%s", err);
	read_rel("cg/smvmm/vm1/memory.max", buf, sizeof(buf));
	ck_assert_str_eq(buf, "536870912");
	read_rel("cg/smvmm/vm1/memory.high", buf, sizeof(buf));
	ck_assert_str_eq(buf, "max");
	read_rel("cg/smvmm/vm1/pids.max", buf, sizeof(buf));
	ck_assert_str_eq(buf, "64");
	/* one write per missing controller (as `echo +pids >`): the fake
	 * file keeps the last one; smvmm's children already had memory */
	read_rel("cg/cgroup.subtree_control", buf, sizeof(buf));
	ck_assert_str_eq(buf, "+pids");
	read_rel("cg/smvmm/cgroup.subtree_control", buf, sizeof(buf));
	ck_assert_str_eq(buf, "+pids");
	machine_free(&m);
}
END_TEST

START_TEST(test_cgroup_setup_errors)
{
	struct smvmm_machine m;
	char err[ERRLEN], root[PATH_MAX];

	fmt(root, sizeof(root), "%s/cg", tmpdir);
	/* a controller the hierarchy does not have (this machine: v1 holds
	 * memory, cgroup2 has only hugetlb) */
	fake_cgroup_dir("cg", "cpu io pids\n");
	fake_cgroup_machine(&m, "vm1");
	add_limit(&m, "pids_max", "pids.max", "64", 9);
	add_limit(&m, "memory_max", "memory.max", "536870912", 11);
	ck_assert_int_eq(sandbox_cgroup_setup(&m, root, err, sizeof(err)),
			 -EOPNOTSUPP);
	ck_assert_msg(strstr(err, ":11: [sandbox] memory_max: the memory "
			      "controller is not available in "), "%s", err);
	ck_assert_msg(strstr(err, "/cg (its cgroup.controllers: cpu io pids)"),
		      "%s", err);
	machine_free(&m);

	/* a cgroup that cannot be created */
	fake_cgroup_machine(&m, "gone/vm1");
	write_rel("cg/gone", "a file where a directory should be");
	ck_assert_int_eq(sandbox_cgroup_setup(&m, root, err, sizeof(err)),
			 -ENOTDIR);
	ck_assert_msg(strstr(err, ":7: [sandbox] cgroup: cannot create the "
			      "cgroup "), "%s", err);
	ck_assert_msg(strstr(err, "/cg/gone/vm1: Not a directory"), "%s", err);
	machine_free(&m);

	/* a path outside the root given */
	fake_cgroup_machine(&m, "vm1");
	ck_assert_int_eq(sandbox_cgroup_setup(&m, "/elsewhere", err,
					      sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "is not below the cgroup root /elsewhere"),
		      "%s", err);
	machine_free(&m);
}
END_TEST

/* fsize_limit: set by sandbox_enter (once guest RAM, a memfd, is sized;
 * not by sandbox_prepare), both limits, and a write past it fails with
 * EFBIG instead of SIGXFSZ killing the process.  (Check runs each test in
 * a child process, so the limit goes with it.) */
START_TEST(test_fsize_limit)
{
	struct smvmm_machine m;
	char err[ERRLEN], p[PATH_MAX], buf[8192];
	struct rlimit rl;
	int status = -1, fd;

	memset(buf, 'x', sizeof(buf));
	ck_assert_int_eq(load_cli(BOOT "[sandbox]\nfsize_limit = 4K\n", NULL,
				  &m, err), 0);
	ck_assert_int_eq(sandbox_prepare(&m, &status, err, sizeof(err)), 0);
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
	ck_assert_uint_eq(rl.rlim_cur, RLIM_INFINITY);
	ck_assert_int_eq(sandbox_enter(&m, err, sizeof(err)), 0);
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
	ck_assert_uint_eq(rl.rlim_cur, 4096);
	ck_assert_uint_eq(rl.rlim_max, 4096);
	fmt(p, sizeof(p), "%s/big", tmpdir);
	fd = open(p, O_WRONLY | O_CREAT, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, buf, sizeof(buf)), 4096); /* short */
	errno = 0;
	ck_assert_int_eq(write(fd, buf, 1), -1);
	ck_assert_int_eq(errno, EFBIG);
	close(fd);
	/* the hard limit cannot be raised again (the VMM's own guard) */
	if (geteuid() != 0) {
		rl.rlim_cur = rl.rlim_max = RLIM_INFINITY;
		ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), -1);
	}
	machine_free(&m);
}
END_TEST

/* A jail is set up as root; as anyone else smvmm says so and stops. */
START_TEST(test_prepare_needs_root)
{
	struct smvmm_machine m;
	char err[ERRLEN];
	int status = -1;

	ck_assert_int_eq(load_cli(BOOT "[sandbox]\nuser = nobody\n", NULL, &m,
				  err), 0);
	if (geteuid() == 0) {
		/* the test process is a child of Check's: drop it for real */
		ck_assert_int_eq(setgroups(0, NULL), 0);
		ck_assert_int_eq(setresgid(65534, 65534, 65534), 0);
		ck_assert_int_eq(setresuid(65534, 65534, 65534), 0);
	}
	ck_assert_int_eq(sandbox_prepare(&m, &status, err, sizeof(err)),
			 -EPERM);
	ck_assert_msg(strstr(err, ":4: [sandbox] user: the jail is set up as "
			      "root, and smvmm runs as uid "), "%s", err);
	ck_assert_int_eq(status, -1);
	machine_free(&m);
}
END_TEST

/* The guest must never run with a jail that was not prepared. */
START_TEST(test_enter_unprepared)
{
	struct smvmm_machine m;
	char err[ERRLEN];

	ck_assert_int_eq(load_cli(BOOT "[sandbox]\nuser = nobody\n", NULL, &m,
				  err), 0);
	ck_assert_int_eq(sandbox_enter(&m, err, sizeof(err)), -EPERM);
	ck_assert_msg(strstr(err, "the jail was not prepared"), "%s", err);
	ck_assert_int_eq(getuid(), getuid()); /* nothing changed */
	machine_free(&m);

	/* without a jail both steps do nothing */
	ck_assert_int_eq(load_cli(BOOT, NULL, &m, err), 0);
	ck_assert_int_eq(sandbox_enter(&m, err, sizeof(err)), 0);
	machine_free(&m);
}
END_TEST

static Suite *sandbox_suite(void)
{
	Suite *s = suite_create("sandbox");
	TCase *tc = tcase_create("errors");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_error_case, 0,
			    sizeof(err_cases) / sizeof(err_cases[0]));
	tcase_add_test(tc, test_device_file_refuses_sandbox);
	suite_add_tcase(s, tc);

	tc = tcase_create("valid");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_full_jail);
	tcase_add_test(tc, test_jail_defaults);
	tcase_add_test(tc, test_chroot_alias);
	tcase_add_test(tc, test_cgroup_limits);
	tcase_add_test(tc, test_cli);
	suite_add_tcase(s, tc);

	tc = tcase_create("runtime");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_cgroup_setup);
	tcase_add_test(tc, test_cgroup_setup_errors);
	tcase_add_test(tc, test_fsize_limit);
	tcase_add_test(tc, test_prepare_needs_root);
	tcase_add_test(tc, test_enter_unprepared);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(sandbox_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
