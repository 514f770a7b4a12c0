// SPDX-License-Identifier: MIT
/*
 * `smvmm vhost-user`: the command line of the vhost-user back-end.
 *
 *   smvmm vhost-user --socket PATH -c DEVICE.ini [--device ID]
 *                    [--plugin-dir DIR] [--once]
 *   smvmm vhost-user --fd N -c DEVICE.ini ...
 *   smvmm vhost-user --print-capabilities -c DEVICE.ini
 *
 * DEVICE.ini holds [device.<id>] sections only (machine_load_devices); the
 * plugin is found and loaded exactly as by `smvmm -c`.  Follows the spec's
 * "Backend program conventions": --socket-path is accepted for --socket,
 * --fd serves an inherited connected socket, --print-capabilities prints
 * the JSON type, SIGTERM ends the process cleanly (exit 0), a start-up
 * error exits 1 with a message on stderr, the process never daemonizes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "loader.h"
#include "machine.h"
#include "vhost_user.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: smvmm vhost-user --socket PATH -c DEVICE.ini [options]\n"
		"Serve one device plugin as a vhost-user back-end (QEMU's\n"
		"docs/interop/vhost-user.rst) on the Unix socket PATH.\n"
		"\n"
		"Options:\n"
		"  -s, --socket PATH     listen on PATH (also --socket-path); a stale\n"
		"                        socket there is replaced\n"
		"      --fd N            serve the already connected socket N instead\n"
		"                        (exits when the front-end disconnects)\n"
		"  -c, --config FILE     device file: [device.<id>] sections only,\n"
		"                        with the same keys as in a machine file\n"
		"  -d, --device ID       the [device.ID] to serve when FILE has several\n"
		"      --plugin-dir DIR  search DIR for plugins first\n"
		"      --once            exit after the first front-end disconnects\n"
		"      --print-capabilities\n"
		"                        print {\"type\": ...} for the device and exit\n"
		"  -h, --help            this text\n"
		"\n"
		"One front-end at a time; when it disconnects the device is reset and\n"
		"the next one may connect.  SIGTERM/SIGINT end the back-end (exit 0).\n"
		"Plugins are searched in --plugin-dir, $SMVMM_PLUGIN_PATH, next to\n"
		"the smvmm binary, then the install directory.\n");
}

/* The vhost-user.json type of a virtio device id (VIRTIO 1.2 §5). */
static const char *capability_type(uint32_t device_id)
{
	switch (device_id) {
	case 1: return "net";
	case 2: return "block";
	case 4: return "rng";
	case 8: return "scsi";
	case 16: return "gpu";
	case 18: return "input";
	case 19: return "vsock";
	case 26: return "fs";
	case 34: return "i2c";
	case 41: return "gpio";
	default: return NULL;
	}
}

static int listen_on(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(a.sun_path)) {
		fprintf(stderr, "smvmm: vhost-user: %s: socket path longer than "
			"%zu bytes\n", path, sizeof(a.sun_path) - 1);
		return -1;
	}
	memcpy(a.sun_path, path, strlen(path) + 1);
	/* Replace a stale socket (a back-end that was killed), never a file
	 * of another kind. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "smvmm: vhost-user: %s exists and is "
				"not a socket\n", path);
			return -1;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("smvmm: vhost-user: socket");
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(fd, 1) < 0) {
		fprintf(stderr, "smvmm: vhost-user: %s: %s\n", path,
			strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static bool parse_int(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || !*s || *end || v < 0 || v > INT_MAX)
		return false;
	*out = (int)v;
	return true;
}

int vhost_user_main(int argc, char **argv)
{
	enum { O_FD = 256, O_PLUGIN_DIR, O_ONCE, O_CAPS };
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "socket-path", required_argument, NULL, 's' },
		{ "fd", required_argument, NULL, O_FD },
		{ "config", required_argument, NULL, 'c' },
		{ "device", required_argument, NULL, 'd' },
		{ "plugin-dir", required_argument, NULL, O_PLUGIN_DIR },
		{ "once", no_argument, NULL, O_ONCE },
		{ "print-capabilities", no_argument, NULL, O_CAPS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock_path = NULL, *config = NULL, *dev_id = NULL;
	const char *plugin_dir = NULL;
	bool once = false, caps = false;
	int conn_fd = -1, listen_fd = -1, sfd = -1, c, status = 1;
	struct smvmm_machine m = { 0 };
	struct smvmm_plugin plugin = { 0 };
	struct machine_device *d = NULL;
	struct vu_server *srv = NULL;
	struct loader_search search = { 0 };
	char err[1024];
	sigset_t set;

	optind = 1;
	while ((c = getopt_long(argc, argv, "s:c:d:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock_path = optarg;
			break;
		case O_FD:
			if (!parse_int(optarg, &conn_fd)) {
				fprintf(stderr, "smvmm: vhost-user: --fd '%s': "
					"not a file descriptor number\n", optarg);
				return 1;
			}
			break;
		case 'c':
			config = optarg;
			break;
		case 'd':
			dev_id = optarg;
			break;
		case O_PLUGIN_DIR:
			plugin_dir = optarg;
			break;
		case O_ONCE:
			once = true;
			break;
		case O_CAPS:
			caps = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "smvmm: vhost-user: unexpected argument '%s'\n",
			argv[optind]);
		return 1;
	}
	if (!config) {
		fprintf(stderr, "smvmm: vhost-user: -c DEVICE.ini is required "
			"(try --help)\n");
		return 1;
	}
	if (!caps && !sock_path == (conn_fd < 0)) {
		fprintf(stderr, "smvmm: vhost-user: give exactly one of "
			"--socket PATH and --fd N\n");
		return 1;
	}
	if (conn_fd >= 0 && fcntl(conn_fd, F_GETFD) < 0) {
		fprintf(stderr, "smvmm: vhost-user: --fd %d: %s\n", conn_fd,
			strerror(errno));
		return 1;
	}

	if (machine_load_devices(config, &m, err, sizeof(err))) {
		fprintf(stderr, "smvmm: %s\n", err);
		return 1;
	}
	for (unsigned int i = 0; i < m.ndev; i++)
		if (!dev_id || strcmp(m.dev[i].id, dev_id) == 0) {
			if (d && !dev_id) {
				fprintf(stderr, "smvmm: %s: %u devices; choose "
					"one with --device ID\n", m.path, m.ndev);
				goto out;
			}
			d = &m.dev[i];
		}
	if (!d) {
		fprintf(stderr, "smvmm: %s: no [device.%s]\n", m.path, dev_id);
		goto out;
	}
	if (d->mmio_base_line || d->irq_line)
		fprintf(stderr, "smvmm: %s:%d: [device.%s]: mmio_base and irq "
			"have no meaning for vhost-user (the front-end places "
			"the device); ignored\n", m.path, d->line, d->id);

	search.plugin_dir = plugin_dir;
	if (loader_load(d->type, SMVMM_PLUGIN_DEVICE, &search, &plugin, err,
			sizeof(err))) {
		fprintf(stderr, "smvmm: %s:%d: [device.%s] type: %s\n", m.path,
			d->type_line, d->id, err);
		goto out;
	}
	if (machine_check_device_keys(&m, d, plugin.desc.config_keys, err,
				      sizeof(err))) {
		fprintf(stderr, "smvmm: %s\n", err);
		goto out;
	}

	/* Signals are taken with a signalfd: blocked before any thread
	 * exists (the event loop, plugin workers inherit the mask).  A
	 * front-end that closes an eventfd pipe must not kill us: EPIPE. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		perror("smvmm: vhost-user: signalfd");
		goto out;
	}

	if (vu_server_new(&srv, &plugin.dev_ops, d->id, m.path, d->line, d->kv,
			  d->nkv, err, sizeof(err))) {
		fprintf(stderr, "smvmm: %s\n", err);
		goto out;
	}
	if (caps) {
		const char *t = capability_type(vu_server_host(srv)->info.device_id);

		if (!t) {
			fprintf(stderr, "smvmm: vhost-user: device id %u has no "
				"vhost-user.json type\n",
				vu_server_host(srv)->info.device_id);
			goto out;
		}
		printf("{\n  \"type\": \"%s\",\n  \"features\": []\n}\n", t);
		status = 0;
		goto out;
	}

	if (sock_path) {
		listen_fd = listen_on(sock_path);
		if (listen_fd < 0)
			goto out;
	}
	fprintf(stderr, "smvmm: [%s] vhost-user: serving %s (virtio device "
		"id %u, %u queue(s) of up to %u) on %s%s\n", d->id,
		plugin.desc.name, vu_server_host(srv)->info.device_id,
		vu_server_host(srv)->nr_queues,
		vu_server_host(srv)->info.queue_size_max,
		sock_path ? sock_path : "an inherited fd",
		sock_path && !once ? "" : " (one session)");

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = listen_fd, .events = POLLIN },
			{ .fd = sfd, .events = POLLIN },
		};
		int conn = conn_fd, rc;

		if (conn < 0) {
			if (poll(p, 2, -1) < 0) {
				if (errno == EINTR)
					continue;
				perror("smvmm: vhost-user: poll");
				goto out;
			}
			if (p[1].revents) {
				status = 0;
				goto out;
			}
			conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (conn < 0) {
				if (errno == EINTR || errno == ECONNABORTED)
					continue;
				perror("smvmm: vhost-user: accept");
				goto out;
			}
		}
		fprintf(stderr, "smvmm: [%s] vhost-user: front-end connected\n",
			d->id);
		rc = vu_server_serve(srv, conn, listen_fd, sfd);
		conn_fd = -1; /* an inherited socket serves one session */
		if (rc == -EINTR) {
			fprintf(stderr, "smvmm: [%s] vhost-user: stopping\n",
				d->id);
			status = 0;
			goto out;
		}
		fprintf(stderr, "smvmm: [%s] vhost-user: front-end %s; device "
			"reset%s\n", d->id,
			rc == 0 ? "disconnected"
				: rc == -EPROTO ? "dropped after a bad message"
						: strerror(-rc),
			once || !sock_path ? "" : ", waiting for the next one");
		if (once || !sock_path) {
			status = 0;
			goto out;
		}
	}

out:
	vu_server_free(srv);
	if (listen_fd >= 0) {
		close(listen_fd);
		unlink(sock_path);
	}
	if (sfd >= 0)
		close(sfd);
	loader_close(&plugin);
	machine_free(&m);
	return status;
}
