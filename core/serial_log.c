// SPDX-License-Identifier: MIT
/* The console's output file with size-based rotation (serial_log.h). */
#define _GNU_SOURCE
#include "serial_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct serial_log {
	int dirfd;       /* O_PATH of the file's directory */
	int fd;          /* current file, O_APPEND; -1 after a failure */
	char *name;      /* last path component */
	char *path;      /* as given, for messages */
	uint64_t max_size, size;
	unsigned int max_files;
	bool err_logged;
};

#define OPEN_FLAGS (O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW)

int serial_log_open(struct serial_log **out, const char *path,
		    uint64_t max_size, unsigned int max_files, char *err,
		    size_t errlen)
{
	struct serial_log *l = calloc(1, sizeof(*l));
	const char *slash = strrchr(path, '/');
	char *dir = NULL;
	struct stat st;
	int ret;

	*out = NULL;
	if (!l)
		goto nomem;
	l->dirfd = l->fd = -1;
	l->max_size = max_size;
	l->max_files = max_files ? max_files : 1;
	l->path = strdup(path);
	if (slash)
		dir = strndup(path, (size_t)(slash - path) + (slash == path));
	else
		dir = strdup(".");
	l->name = strdup(slash ? slash + 1 : path);
	if (!l->path || !dir || !l->name)
		goto nomem;
	if (!*l->name || strlen(l->name) + 4 > NAME_MAX) {
		snprintf(err, errlen, "%s: not a file name%s", path,
			 *l->name ? " (too long to rotate)" : "");
		ret = -EINVAL;
		goto fail;
	}
	l->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (l->dirfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	l->fd = openat(l->dirfd, l->name, OPEN_FLAGS | O_NONBLOCK, 0644);
	if (l->fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	/* A FIFO or a terminal is fine without a limit; rotation needs a
	 * regular file. */
	if (fstat(l->fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (max_size && !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file (serial_max_size "
			 "rotates files)", path);
		ret = -EINVAL;
		goto fail;
	}
	if (S_ISREG(st.st_mode)) {
		/* Writes to a regular file never block: back to blocking. */
		(void)fcntl(l->fd, F_SETFL, O_APPEND);
		l->size = (uint64_t)st.st_size;
	}
	free(dir);
	*out = l;
	return 0;

nomem:
	snprintf(err, errlen, "%s: out of memory", path);
	ret = -ENOMEM;
fail:
	free(dir);
	serial_log_close(l);
	return ret;
}

int serial_log_fd(const struct serial_log *l)
{
	return l->fd;
}

uint64_t serial_log_size(const struct serial_log *l)
{
	return l->size;
}

uint64_t serial_log_max_size(const struct serial_log *l)
{
	return l->max_size;
}

int serial_log_rotate(void *opaque)
{
	struct serial_log *l = opaque;
	char from[NAME_MAX + 1], to[NAME_MAX + 1];
	int flags = OPEN_FLAGS;
	int e;

	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	l->size = 0;
	if (l->max_files == 1) {
		flags |= O_TRUNC;
	} else {
		for (unsigned int i = l->max_files - 1; i >= 1; i--) {
			snprintf(to, sizeof(to), "%s.%u", l->name, i);
			if (i == 1)
				snprintf(from, sizeof(from), "%s", l->name);
			else
				snprintf(from, sizeof(from), "%s.%u", l->name,
					 i - 1);
			if (renameat(l->dirfd, from, l->dirfd, to) < 0 &&
			    errno != ENOENT)
				goto fail;
		}
	}
	l->fd = openat(l->dirfd, l->name, flags, 0644);
	if (l->fd < 0)
		goto fail;
	return l->fd;

fail:
	e = errno;
	if (!l->err_logged) {
		l->err_logged = true;
		fprintf(stderr, "smvmm: [console] serial: rotating %s: %s; "
			"console output is dropped\n", l->path, strerror(e));
	}
	if (l->fd < 0)
		l->fd = openat(l->dirfd, l->name, OPEN_FLAGS | O_TRUNC, 0644);
	return l->fd >= 0 ? l->fd : -e;
}

void serial_log_close(struct serial_log *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	if (l->dirfd >= 0)
		close(l->dirfd);
	free(l->name);
	free(l->path);
	free(l);
}
