// SPDX-License-Identifier: MIT
/*
 * sandbox.c: the jail ([sandbox], sandbox.h, docs/sandbox.md).
 *
 * Why the work is split in two (sandbox_prepare / sandbox_enter):
 *
 *   - unshare(2) moves only the calling thread into the new namespaces, and
 *     PR_SET_NO_NEW_PRIVS is per thread; threads inherit both from their
 *     creator.  virtio-blk starts worker threads while the VM is set up, so
 *     both are done at start-up, single-threaded, and every thread of the
 *     VMM is in the namespaces with no_new_privs.  None of them hinders the
 *     set-up: the new mount namespace is a (private) copy of the host's,
 *     Unix sockets bound by path work across network namespaces, and
 *     /dev/kvm does not care.
 *   - a new PID namespace takes a fork: unshare(CLONE_NEWPID) puts only
 *     the children into it.  Forking is only safe before threads exist.
 *   - the root directory (pivot_root) and the credentials change once
 *     everything the VM needs is open.  pivot_root moves the root of every
 *     task in the mount namespace; setgroups/setresgid/setresuid are
 *     broadcast to every thread by glibc.
 *
 * The jail's root: an empty, read-only tmpfs holding the [sandbox] chroot
 * directory at its own host path (a bind mount, nosuid, nodev, noexec), so
 * that a path under that directory means the same file inside and outside
 * the jail: vsock's guest-initiated connections to "<uds_path>_<port>"
 * (connect(2) at run time) work unchanged when uds_path is inside it.
 * Firecracker's jailer makes the directory itself the root; it opens its
 * files after the chroot, smvmm opens them before.
 */
#define _GNU_SOURCE
#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "loader.h"

/* Process-wide: there is one jail per process. */
static struct {
	bool prepared;   /* sandbox_prepare set the jail up in this process */
	bool entered;
	bool pid_ns;     /* we are PID 1 of a new PID namespace */
	int sync_fd;     /* to the supervisor: one byte once jailed; -1 */
} st = { .sync_fd = -1 };

static void __attribute__((format(printf, 3, 4)))
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* "<file>:<line>: [sandbox] <key>" or "--uid", for messages. */
#define WHERE_LEN (PATH_MAX + 64)
static const char *where_line(const struct smvmm_machine *m, const char *key,
			      int line, char *buf)
{
	return machine_where(m, key, (struct machine_origin){ .line = line },
			     buf, WHERE_LEN);
}

static const char *ns_list(unsigned int ns, char *buf, size_t len)
{
	static const char *const names[] = { "mount", "pid", "net", "ipc",
					     "uts" };
	size_t o = 0;

	buf[0] = '\0';
	for (unsigned int i = 0; i < 5; i++)
		if (ns & (1u << i))
			o += (size_t)snprintf(buf + o, len - o, "%s%s",
					      o ? "," : "", names[i]);
	if (!o)
		snprintf(buf, len, "none");
	return buf;
}

/* ---- cgroup v2 ------------------------------------------------------- */

/* Read a small cgroup file whole (NUL-terminated); -errno. */
static int read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	close(fd);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}

/* One write(2) of `v`, as the cgroup interface wants it (and as `echo v >
 * file` does: O_TRUNC is ignored by cgroupfs); -errno. */
static int write_small(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	size_t n = strlen(v);
	ssize_t w;

	if (fd < 0)
		return -errno;
	w = write(fd, v, n);
	if (w < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	if (close(fd) < 0)
		return -errno;
	return (size_t)w == n ? 0 : -EIO;
}

/* Is the word `w` in the blank-separated list `list`? */
static bool has_word(const char *list, const char *w)
{
	size_t n = strlen(w);

	for (const char *p = list; (p = strstr(p, w)); p += n)
		if ((p == list || p[-1] == ' ' || p[-1] == '+') &&
		    (p[n] == '\0' || p[n] == ' ' || p[n] == '\n'))
			return true;
	return false;
}

static bool is_cgroup2(const char *path)
{
	struct statfs fs;

	return statfs(path, &fs) == 0 &&
	       (unsigned long)fs.f_type == (unsigned long)CGROUP2_SUPER_MAGIC;
}

/* The root of the cgroup2 hierarchy `path` is in (the topmost directory
 * still on cgroup2), into buf; -ENOENT when nothing is cgroup2. */
static int find_cgroup_root(const char *path, char *buf, size_t len)
{
	char p[PATH_MAX];
	struct stat sb;
	bool found = false;

	snprintf(p, sizeof(p), "%s", path);
	for (;;) {
		char *slash;

		if (stat(p, &sb) == 0 && is_cgroup2(p)) {
			snprintf(buf, len, "%s", p);
			found = true;
		} else if (found) {
			return 0;
		}
		slash = strrchr(p, '/');
		if (!slash || slash == p)
			break;
		*slash = '\0';
	}
	return found ? 0 : -ENOENT;
}

int sandbox_cgroup_setup(const struct smvmm_machine *m, const char *root,
			 char *err, size_t errlen)
{
	const struct machine_sandbox *sb = &m->sandbox;
	char where[WHERE_LEN], rootbuf[PATH_MAX], dir[PATH_MAX];
	char file[PATH_MAX + 32], list[512];
	char names[MACHINE_SANDBOX_MAX_LIMITS][16];
	const char *ctrl[MACHINE_SANDBOX_MAX_LIMITS];
	const char *ctrl_key[MACHINE_SANDBOX_MAX_LIMITS];
	int ctrl_line[MACHINE_SANDBOX_MAX_LIMITS];
	unsigned int nctrl = 0;
	size_t rlen;
	int rc;

	if (!sb->cgroup)
		return 0;
	if (!root) {
		if (find_cgroup_root(sb->cgroup, rootbuf, sizeof(rootbuf))) {
			set_err(err, errlen, "%s: %s is not in a cgroup v2 "
				"hierarchy",
				where_line(m, "cgroup", sb->cgroup_line, where),
				sb->cgroup);
			return -ENOENT;
		}
		root = rootbuf;
	}
	rlen = strlen(root);
	if (strncmp(sb->cgroup, root, rlen) || sb->cgroup[rlen] != '/') {
		set_err(err, errlen, "%s: %s is not below the cgroup root %s",
			where_line(m, "cgroup", sb->cgroup_line, where),
			sb->cgroup, root);
		return -EINVAL;
	}

	/* The controllers the limits need: "memory" of memory.max. */
	for (unsigned int i = 0; i < sb->nlimit; i++) {
		const char *f = sb->limit[i].file;
		size_t n = strcspn(f, ".");
		bool dup = false;

		for (unsigned int j = 0; j < nctrl; j++)
			if (strlen(ctrl[j]) == n && !strncmp(ctrl[j], f, n))
				dup = true;
		if (dup || n >= sizeof(names[0]))
			continue;
		memcpy(names[nctrl], f, n);
		names[nctrl][n] = '\0';
		ctrl[nctrl] = names[nctrl];
		ctrl_key[nctrl] = sb->limit[i].key;
		ctrl_line[nctrl] = sb->limit[i].line;
		nctrl++;
	}

	/*
	 * Walk from the root down to the cgroup: create what is missing, and
	 * in every directory above the cgroup enable the controllers for its
	 * children (cgroup-v2.rst "Enabling and Disabling": a controller is
	 * available to a cgroup only if its parent enables it).
	 */
	snprintf(dir, sizeof(dir), "%s", root);
	for (const char *p = sb->cgroup + rlen; *p;) {
		const char *e;
		size_t n;

		for (unsigned int i = 0; i < nctrl; i++) {
			char sub[512];

			snprintf(file, sizeof(file), "%s/cgroup.subtree_control",
				 dir);
			rc = read_small(file, sub, sizeof(sub));
			if (rc) {
				set_err(err, errlen, "%s: cannot read %s: %s",
					where_line(m, ctrl_key[i],
						   ctrl_line[i], where),
					file, strerror(-rc));
				return rc;
			}
			if (has_word(sub, ctrl[i]))
				continue;
			snprintf(file, sizeof(file), "%s/cgroup.controllers",
				 dir);
			rc = read_small(file, list, sizeof(list));
			if (rc == 0 && !has_word(list, ctrl[i])) {
				set_err(err, errlen, "%s: the %s controller is "
					"not available in %s (its "
					"cgroup.controllers: %s)",
					where_line(m, ctrl_key[i], ctrl_line[i],
						   where),
					ctrl[i], dir, list[0] ? list : "none");
				return -EOPNOTSUPP;
			}
			snprintf(file, sizeof(file), "%s/cgroup.subtree_control",
				 dir);
			snprintf(sub, sizeof(sub), "+%s", ctrl[i]);
			rc = write_small(file, sub);
			if (rc) {
				set_err(err, errlen, "%s: cannot enable the %s "
					"controller in %s: %s%s",
					where_line(m, ctrl_key[i], ctrl_line[i],
						   where),
					ctrl[i], file, strerror(-rc),
					rc == -EBUSY ?
					" (a cgroup with processes of its own "
					"cannot give controllers to its "
					"children: cgroup v2's no internal "
					"process rule)" : "");
				return rc;
			}
		}

		while (*p == '/')
			p++;
		e = p + strcspn(p, "/");
		n = strlen(dir);
		if (n + 1 + (size_t)(e - p) >= sizeof(dir))
			return -ENAMETOOLONG;
		snprintf(dir + n, sizeof(dir) - n, "/%.*s", (int)(e - p), p);
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			rc = -errno;
			set_err(err, errlen, "%s: cannot create the cgroup %s: "
				"%s",
				where_line(m, "cgroup", sb->cgroup_line, where),
				dir, strerror(errno));
			return rc;
		}
		p = e;
	}

	for (unsigned int i = 0; i < sb->nlimit; i++) {
		const struct machine_cg_limit *l = &sb->limit[i];

		snprintf(file, sizeof(file), "%s/%s", sb->cgroup, l->file);
		rc = write_small(file, l->value);
		if (rc) {
			set_err(err, errlen, "%s: cannot write '%s' to %s: %s",
				where_line(m, l->key, l->line, where), l->value,
				file, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

/* Move this process (every thread) into the cgroup. */
static int cgroup_join(const struct smvmm_machine *m, char *err,
		       size_t errlen)
{
	const struct machine_sandbox *sb = &m->sandbox;
	char where[WHERE_LEN], file[PATH_MAX + 32], pid[24];
	int rc;

	snprintf(file, sizeof(file), "%s/cgroup.procs", sb->cgroup);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	rc = write_small(file, pid);
	if (rc)
		set_err(err, errlen, "%s: cannot move into the cgroup (%s): %s",
			where_line(m, "cgroup", sb->cgroup_line, where), file,
			strerror(-rc));
	return rc;
}

/* ---- credentials ------------------------------------------------------ */

/* Drop to uid/gid, no supplementary groups.  glibc applies each call to
 * every thread of the process. */
static int drop_ids(const struct smvmm_machine *m, char *err, size_t errlen)
{
	const struct machine_sandbox *sb = &m->sandbox;
	char where[WHERE_LEN];

	if (setgroups(0, NULL) < 0) {
		set_err(err, errlen, "%s: setgroups (drop the supplementary "
			"groups): %s",
			machine_where(m, "user", sb->user_at, where,
				      sizeof(where)),
			strerror(errno));
		return -errno;
	}
	if (setresgid(sb->gid, sb->gid, sb->gid) < 0) {
		set_err(err, errlen, "%s: setresgid(%u): %s",
			machine_where(m, sb->group ? "group" : "user",
				      sb->group ? sb->group_at : sb->user_at,
				      where, sizeof(where)),
			sb->gid, strerror(errno));
		return -errno;
	}
	if (setresuid(sb->uid, sb->uid, sb->uid) < 0) {
		set_err(err, errlen, "%s: setresuid(%u): %s",
			machine_where(m, "user", sb->user_at, where,
				      sizeof(where)),
			sb->uid, strerror(errno));
		return -errno;
	}
	return 0;
}

/*
 * After the drop, on this thread: none of the ways back to root works, the
 * ids are the ones asked for, no capability is left, no_new_privs is set.
 * Raw system calls, so that nothing is broadcast to the other threads.
 */
static int verify_dropped(const struct smvmm_machine *m, char *err,
			  size_t errlen)
{
	const struct machine_sandbox *sb = &m->sandbox;
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct cap[_LINUX_CAPABILITY_U32S_3];
	uid_t r, e, s;
	gid_t gr, ge, gs;
	const char *what = NULL;

	if (syscall(SYS_setresuid, 0, 0, 0) == 0)
		what = "setresuid(0, 0, 0) succeeded";
	else if (syscall(SYS_setuid, 0) == 0)
		what = "setuid(0) succeeded";
	else if (syscall(SYS_setresgid, 0, 0, 0) == 0)
		what = "setresgid(0, 0, 0) succeeded";
	else if (syscall(SYS_setgroups, 0, NULL) == 0)
		what = "setgroups() succeeded";
	else if (getresuid(&r, &e, &s) || r != sb->uid || e != sb->uid ||
		 s != sb->uid)
		what = "the uids are not the jail's";
	else if (getresgid(&gr, &ge, &gs) || gr != sb->gid || ge != sb->gid ||
		 gs != sb->gid)
		what = "the gids are not the jail's";
	else if (getgroups(0, NULL) != 0)
		what = "supplementary groups are left";
	else if (syscall(SYS_capget, &hdr, cap) < 0)
		what = "capget failed";
	else if (cap[0].effective | cap[0].permitted | cap[0].inheritable |
		 cap[1].effective | cap[1].permitted | cap[1].inheritable)
		what = "capabilities are left";
	else if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		what = "no_new_privs is not set";
	if (what) {
		set_err(err, errlen, "the privilege drop did not hold: %s; not "
			"starting the guest", what);
		return -EPERM;
	}
	return 0;
}

/* ---- the root directory ------------------------------------------------ */

/*
 * No directory may stay open across the pivot: an fd of a host directory
 * leads out of any chroot (openat, fchdir).  smvmm keeps none; one
 * inherited from whoever started it is refused.
 */
static int check_no_dir_fds(const struct smvmm_machine *m, char *err,
			    size_t errlen)
{
	const struct machine_sandbox *sb = &m->sandbox;
	char where[WHERE_LEN];
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int rc = 0;

	if (!d) {
		set_err(err, errlen, "%s: /proc/self/fd: %s (needed to check "
			"that no directory stays open into the jail)",
			machine_where(m, "chroot", sb->chroot_at, where,
				      sizeof(where)),
			strerror(errno));
		return -errno;
	}
	while ((de = readdir(d))) {
		char link[64], target[PATH_MAX] = "?";
		struct stat sbuf;
		char *end;
		long fd = strtol(de->d_name, &end, 10);
		ssize_t n;

		if (*end || end == de->d_name || fd == dirfd(d))
			continue;
		if (fstat((int)fd, &sbuf) < 0 || !S_ISDIR(sbuf.st_mode))
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%ld", fd);
		n = readlink(link, target, sizeof(target) - 1);
		if (n >= 0)
			target[n] = '\0';
		set_err(err, errlen, "%s: fd %ld is an open directory (%s), "
			"which would lead out of the jail; smvmm keeps none "
			"open, so whoever started it passed it in: close it",
			machine_where(m, "chroot", sb->chroot_at, where,
				      sizeof(where)),
			fd, target);
		rc = -EBADF;
		break;
	}
	closedir(d);
	return rc;
}

/* mkdir -p of `rel` (absolute, as inside the jail) below `base`. */
static int mkdir_below(const char *base, const char *rel)
{
	char p[PATH_MAX];
	size_t n = strlen(base);

	if (n + strlen(rel) >= sizeof(p))
		return -ENAMETOOLONG;
	memcpy(p, base, n + 1);
	for (const char *s = rel; *s;) {
		const char *e;

		while (*s == '/')
			s++;
		if (!*s)
			break;
		e = s + strcspn(s, "/");
		snprintf(p + n, sizeof(p) - n, "/%.*s", (int)(e - s), s);
		n = strlen(p);
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return -errno;
		s = e;
	}
	return 0;
}

/* Is `a` a path prefix of `b` (a == b, or b is below a)? */
static bool path_prefix(const char *a, const char *b)
{
	size_t n = strlen(a);

	return !strncmp(a, b, n) && (b[n] == '\0' || b[n] == '/');
}

/*
 * pivot_root into: an empty tmpfs (read-only once built) holding the jail
 * directory at its own path (and at the path as written, when that went
 * through a symlink).  The mount namespace is ours and private
 * (sandbox_prepare), so the host sees none of it.
 */
static int enter_root(const struct smvmm_machine *m, char *err, size_t errlen)
{
	const struct machine_sandbox *sb = &m->sandbox;
	const char *R = sb->chroot;
	const char *alias = sb->chroot_alias;
	struct mount_attr attr = {
		.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
			    MOUNT_ATTR_NOEXEC,
	};
	char where[WHERE_LEN], at[PATH_MAX];
	const char *step;
	int tree = -1, rc;

	machine_where(m, "chroot", sb->chroot_at, where, sizeof(where));
	if (alias && (path_prefix(alias, R) || path_prefix(R, alias)))
		alias = NULL; /* would nest: the real path alone */
	if (strlen(R) * 2 + 2 >= sizeof(at) ||
	    (alias && strlen(R) + strlen(alias) + 2 >= sizeof(at))) {
		set_err(err, errlen, "%s: %s: path too long for the jail",
			where, R);
		return -ENAMETOOLONG;
	}

	step = "open_tree";
	tree = open_tree(AT_FDCWD, R, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
				     AT_RECURSIVE);
	if (tree < 0)
		goto fail;
	step = "mount_setattr nosuid,nodev,noexec";
	if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
			  sizeof(attr)) < 0)
		goto fail;
	step = "mount the jail's root tmpfs";
	if (mount("smvmm-jail", R, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "mode=0755,size=64k,nr_inodes=1024") < 0)
		goto fail;
	step = "mkdir in the jail's root";
	rc = mkdir_below(R, R);
	if (!rc && alias)
		rc = mkdir_below(R, alias);
	if (rc) {
		errno = -rc;
		goto fail;
	}
	snprintf(at, sizeof(at), "%s%s", R, R);
	step = "move_mount the jail directory";
	if (move_mount(tree, "", AT_FDCWD, at, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		goto fail;
	close(tree);
	tree = -1;
	if (alias) {
		char at2[PATH_MAX];

		step = "bind the jail directory at its alias";
		snprintf(at2, sizeof(at2), "%s%s", R, alias);
		tree = open_tree(AT_FDCWD, at, OPEN_TREE_CLONE |
						OPEN_TREE_CLOEXEC |
						AT_RECURSIVE);
		if (tree < 0 || move_mount(tree, "", AT_FDCWD, at2,
					   MOVE_MOUNT_F_EMPTY_PATH) < 0)
			goto fail;
		close(tree);
		tree = -1;
	}
	step = "remount the jail's root read-only";
	if (mount(NULL, R, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID |
				 MS_NODEV | MS_NOEXEC, NULL) < 0)
		goto fail;
	/* The pivot_root(".", ".") of pivot_root(2): the old root ends up on
	 * top of the new one, and is detached. */
	step = "chdir";
	if (chdir(R) < 0)
		goto fail;
	step = "pivot_root";
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		goto fail;
	step = "detach the old root";
	if (umount2(".", MNT_DETACH) < 0)
		goto fail;
	step = "chdir /";
	if (chdir("/") < 0)
		goto fail;
	return 0;

fail:
	rc = -errno;
	set_err(err, errlen, "%s: %s (%s): %s", where, R, step,
		strerror(errno));
	if (tree >= 0)
		close(tree);
	return rc;
}

/* ---- the supervisor (PID namespace) ------------------------------------ */

static const int term_sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

/*
 * The parent of the jailed VMM: forwards termination signals, drops its own
 * privileges once the child is jailed (until then it may have to signal a
 * root process), restores the terminal if the child could not, and returns
 * the child's exit status.
 */
static int supervise(const struct smvmm_machine *m, pid_t child, int sync_fd,
		     const sigset_t *set, const struct termios *tio,
		     bool tio_saved)
{
	int sfd = signalfd(-1, set, SFD_CLOEXEC);
	int ws = 0, status;

	if (chdir("/") < 0) {
		/* pivot_root moves a root or cwd at the old root only */
	}
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = sync_fd, .events = POLLIN },
		};
		pid_t w;

		if (sfd < 0) {
			/* no signalfd: just wait */
			if (waitpid(child, &ws, 0) == child)
				break;
			if (errno != EINTR)
				break;
			continue;
		}
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents) {
			char b;
			ssize_t n = read(sync_fd, &b, 1);

			if (n == 1) {
				char e[WHERE_LEN + 128];

				if (drop_ids(m, e, sizeof(e)))
					fprintf(stderr, "smvmm: supervisor: "
						"%s\n", e);
			}
			if (n >= 0 || errno != EINTR) {
				close(sync_fd);
				sync_fd = -1;
			}
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo != SIGCHLD) {
				(void)kill(child, (int)si.ssi_signo);
				continue;
			}
			w = waitpid(child, &ws, WNOHANG);
			if (w == child)
				break;
		}
	}
	if (sfd >= 0)
		close(sfd);
	if (sync_fd >= 0)
		close(sync_fd);
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, tio);
	if (WIFEXITED(ws)) {
		status = WEXITSTATUS(ws);
	} else if (WIFSIGNALED(ws)) {
		status = 128 + WTERMSIG(ws);
		fprintf(stderr, "smvmm: the jailed VMM (pid %d) was killed by "
			"signal %s%s\n", (int)child, strsignal(WTERMSIG(ws)),
			WTERMSIG(ws) == SIGKILL && m->sandbox.cgroup ?
			" (the cgroup's memory.events counts OOM kills)" : "");
	} else {
		status = 1;
	}
	return status;
}

/*
 * RLIMIT_FSIZE, once set up: guest RAM is a memfd whose ftruncate the limit
 * would refuse, so it applies to the running VM only.  Soft and hard: a
 * compromised VMM cannot raise it again.  SIGXFSZ ignored: a write past it
 * fails with EFBIG (the serial console drops and counts the bytes,
 * virtio-blk answers VIRTIO_BLK_S_IOERR) instead of killing the VMM.
 */
static int set_fsize_limit(const struct smvmm_machine *m, char *err,
			   size_t errlen)
{
	const struct machine_sandbox *sb = &m->sandbox;
	struct rlimit rl = { .rlim_cur = sb->fsize_limit,
			     .rlim_max = sb->fsize_limit };
	char where[WHERE_LEN];

	signal(SIGXFSZ, SIG_IGN);
	if (setrlimit(RLIMIT_FSIZE, &rl) < 0) {
		int e = errno;
		struct rlimit cur = { 0, 0 };
		char hard[32] = "unknown";

		if (getrlimit(RLIMIT_FSIZE, &cur) == 0)
			snprintf(hard, sizeof(hard), "%llu",
				 (unsigned long long)cur.rlim_max);
		set_err(err, errlen, "%s: setrlimit(RLIMIT_FSIZE, %" PRIu64
			"): %s (the hard limit of whoever started smvmm is %s)",
			where_line(m, "fsize_limit", sb->fsize_limit_line,
				   where),
			sb->fsize_limit, strerror(e), hard);
		return -e;
	}
	return 0;
}

/* ---- the two steps ------------------------------------------------------ */

int sandbox_prepare(const struct smvmm_machine *m, int *status, char *err,
		    size_t errlen)
{
	const struct machine_sandbox *sb = &m->sandbox;
	char where[WHERE_LEN], nsbuf[64];
	int flags = 0;

	if (!sb->jail)
		return 0;
	if (st.prepared) {
		set_err(err, errlen, "the jail is already set up");
		return -EBUSY;
	}
	if (geteuid() != 0) {
		set_err(err, errlen, "%s: the jail is set up as root, and smvmm "
			"runs as uid %u: start it as root (it drops to uid %u), "
			"or leave out [sandbox] user/--uid and the other jail "
			"keys to run as this user without a jail",
			machine_where(m, "user", sb->user_at, where,
				      sizeof(where)),
			(unsigned int)geteuid(), sb->uid);
		return -EPERM;
	}
	if (sb->cgroup) {
		int rc = sandbox_cgroup_setup(m, NULL, err, errlen);

		if (rc)
			return rc;
	}
	/* Inherited by every thread and child from here on; it only
	 * matters for execve, which smvmm never calls. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		set_err(err, errlen, "%s: PR_SET_NO_NEW_PRIVS: %s",
			machine_where(m, "user", sb->user_at, where,
				      sizeof(where)),
			strerror(errno));
		return -errno;
	}
	/* Plugins are looked for next to the binary: remember where that
	 * is while /proc/self/exe still says it right (see loader.h). */
	(void)loader_exe_dir();
	if (sb->namespaces & MACHINE_NS_MOUNT)
		flags |= CLONE_NEWNS;
	if (sb->namespaces & MACHINE_NS_PID)
		flags |= CLONE_NEWPID;
	if (sb->namespaces & MACHINE_NS_NET)
		flags |= CLONE_NEWNET;
	if (sb->namespaces & MACHINE_NS_IPC)
		flags |= CLONE_NEWIPC;
	if (sb->namespaces & MACHINE_NS_UTS)
		flags |= CLONE_NEWUTS;
	if (flags && unshare(flags) < 0) {
		set_err(err, errlen, "%s: unshare(%s): %s",
			where_line(m, "namespaces", sb->namespaces_line, where),
			ns_list(sb->namespaces, nsbuf, sizeof(nsbuf)),
			strerror(errno));
		return -errno;
	}
	/* Nothing mounted for the jail may reach the host's mount table. */
	if ((flags & CLONE_NEWNS) &&
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		set_err(err, errlen, "%s: make the new mount namespace "
			"private: %s",
			where_line(m, "namespaces", sb->namespaces_line, where),
			strerror(errno));
		return -errno;
	}
	if (flags & CLONE_NEWPID) {
		sigset_t set, old;
		struct termios tio;
		bool tio_saved = isatty(STDIN_FILENO) &&
				 tcgetattr(STDIN_FILENO, &tio) == 0;
		int p[2];
		pid_t pid;

		if (pipe2(p, O_CLOEXEC) < 0) {
			set_err(err, errlen, "pipe: %s", strerror(errno));
			return -errno;
		}
		/* Blocked before the fork: no SIGCHLD or SIGTERM is lost
		 * between the fork and the supervisor's signalfd. */
		sigemptyset(&set);
		for (size_t i = 0; i < sizeof(term_sigs) / sizeof(*term_sigs);
		     i++)
			sigaddset(&set, term_sigs[i]);
		sigaddset(&set, SIGCHLD);
		sigprocmask(SIG_BLOCK, &set, &old);
		fflush(stdout);
		fflush(stderr);
		pid = fork();
		if (pid < 0) {
			int e = errno;

			sigprocmask(SIG_SETMASK, &old, NULL);
			close(p[0]);
			close(p[1]);
			set_err(err, errlen, "%s: fork into the new PID "
				"namespace: %s",
				where_line(m, "namespaces", sb->namespaces_line,
					   where),
				strerror(e));
			return -e;
		}
		if (pid > 0) {
			close(p[1]);
			*status = supervise(m, pid, p[0], &set, &tio,
					    tio_saved);
			return 1;
		}
		/* The child: PID 1 of the new namespace.  If the supervisor
		 * dies, so do we (reset by the credential change, set again
		 * in sandbox_enter). */
		sigprocmask(SIG_SETMASK, &old, NULL);
		close(p[0]);
		st.sync_fd = p[1];
		st.pid_ns = true;
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	}
	if (sb->cgroup) {
		int rc = cgroup_join(m, err, errlen);

		if (rc)
			return rc;
	}
	st.prepared = true;
	return 0;
}

int sandbox_enter(const struct smvmm_machine *m, char *err, size_t errlen)
{
	const struct machine_sandbox *sb = &m->sandbox;
	int rc;

	if (sb->fsize_limit && !st.entered) {
		rc = set_fsize_limit(m, err, errlen);
		if (rc)
			return rc;
	}
	if (!sb->jail)
		return 0;
	if (!st.prepared) {
		set_err(err, errlen, "the jail was not prepared "
			"(sandbox_prepare) before sandbox_enter; not starting "
			"the guest");
		return -EPERM;
	}
	if (st.entered)
		return 0;
	if (sb->chroot) {
		rc = check_no_dir_fds(m, err, errlen);
		if (!rc)
			rc = enter_root(m, err, errlen);
		if (rc)
			return rc;
	}
	rc = drop_ids(m, err, errlen);
	if (rc)
		return rc;
	/* Set since sandbox_prepare; again, for this thread, to be sure. */
	(void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (st.pid_ns)
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	rc = verify_dropped(m, err, errlen);
	if (rc)
		return rc;
	st.entered = true;
	if (st.sync_fd >= 0) {
		ssize_t n;

		do
			n = write(st.sync_fd, "j", 1);
		while (n < 0 && errno == EINTR);
		close(st.sync_fd);
		st.sync_fd = -1;
	}
	return 0;
}

void sandbox_describe(const struct smvmm_machine *m, FILE *f)
{
	const struct machine_sandbox *sb = &m->sandbox;
	char nsbuf[64];

	if (!sb->jail && !sb->fsize_limit)
		return;
	fprintf(f, "sandbox:\n");
	if (sb->jail) {
		fprintf(f, "  user:       uid %u gid %u (%s%s%s), no "
			"supplementary groups, no_new_privs\n",
			sb->uid, sb->gid, sb->user, sb->group ? ":" : "",
			sb->group ? sb->group : "");
		fprintf(f, "  namespaces: %s%s\n",
			ns_list(sb->namespaces, nsbuf, sizeof(nsbuf)),
			sb->namespaces & MACHINE_NS_PID ?
			" (the VMM runs as PID 1 of its namespace, under a "
			"supervisor)" : "");
		if (sb->chroot) {
			fprintf(f, "  root:       pivot_root: an empty "
				"read-only tmpfs with %s at its own path\n",
				sb->chroot);
			if (sb->chroot_alias)
				fprintf(f, "              and at %s (as "
					"written)\n", sb->chroot_alias);
		}
		if (sb->cgroup) {
			fprintf(f, "  cgroup:     %s", sb->cgroup);
			for (unsigned int i = 0; i < sb->nlimit; i++)
				fprintf(f, "%s%s=%s", i ? ", " : " (",
					sb->limit[i].file, sb->limit[i].value);
			fprintf(f, "%s\n", sb->nlimit ? ")" : "");
		}
	}
	if (sb->fsize_limit)
		fprintf(f, "  fsize:      RLIMIT_FSIZE %" PRIu64 " bytes\n",
			sb->fsize_limit);
}
