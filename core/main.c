/* SPDX-License-Identifier: MIT */
/*
 * smvmm: the command line.  The only place that exits the process.
 *
 *   smvmm -c machine.ini                 boot the machine
 *   smvmm --check -c machine.ini         validate, load plugins, print layout
 *   smvmm -c machine.ini --dump-acpi DIR write the guest's ACPI tables
 *   smvmm vhost-user ...                 serve one device plugin over
 *                                        vhost-user (vhost_user.c)
 *   smvmm --help | --version
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
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <smvmm/plugin.h>

#include "machine.h"
#include "sandbox.h"
#include "vhost_user.h"
#include "serial_log.h"
#include "vm.h"

#define ESCAPE_CHAR 0x01 /* Ctrl-A, as QEMU's -nographic */

static struct termios saved_tio;
static bool tio_saved;

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: smvmm -c MACHINE.ini [options]\n"
		"Boot a microVM described by MACHINE.ini.\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE    machine description (INI)\n"
		"      --check          validate FILE, load its plugins, print the\n"
		"                       planned layout (memory map, MMIO bases,\n"
		"                       IRQs) and exit\n"
		"      --append TEXT    append TEXT to [boot] cmdline (after a space)\n"
		"      --dump-acpi DIR  write the ACPI tables the guest would get to\n"
		"                       DIR/<SIG>.dat and exit\n"
		"      --uid USER       jail: set up as root, run the VM as USER\n"
		"                       (name or uid; [sandbox] user)\n"
		"      --gid GROUP      ... and GROUP ([sandbox] group; default:\n"
		"                       USER's primary group)\n"
		"      --chroot DIR     ... with DIR as the jail's only directory\n"
		"                       ([sandbox] chroot; docs/sandbox.md)\n"
		"  -h, --help           this text\n"
		"  -V, --version        print the version and the plugin ABI\n"
		"\n"
		"Console: COM1 is wired to the terminal; press Ctrl-A x to quit,\n"
		"Ctrl-A Ctrl-A to send Ctrl-A.  The serial output can be redirected\n"
		"with [console] serial = stdio|none|<file>.\n"
		"\n"
		"Exit status: 0 guest power-off or reset, 1 start-up or host\n"
		"error, 2 guest crash (triple fault, emulation failure),\n"
		"128+N killed by signal N.\n"
		"Plugins are searched in [machine] plugin_dir, $SMVMM_PLUGIN_PATH,\n"
		"next to the smvmm binary, then %s.\n",
		SMVMM_PLUGIN_INSTALL_DIR_STR);
}

static void restore_terminal(void)
{
	if (tio_saved) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
		tio_saved = false;
	}
}

/* Raw mode so the guest sees every key (Ctrl-C included); undone at exit. */
static void raw_terminal(void)
{
	struct termios tio;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio))
		return;
	tio_saved = true;
	atexit(restore_terminal);
	tio = saved_tio;
	cfmakeraw(&tio);
	tio.c_oflag |= OPOST | ONLCR; /* keep our own messages readable */
	tcsetattr(STDIN_FILENO, TCSANOW, &tio);
}

static int open_serial(const struct smvmm_machine *m, bool *is_stdio,
		       struct serial_log **log)
{
	char err[PATH_MAX + 256];

	*is_stdio = false;
	*log = NULL;
	if (!m->serial || strcmp(m->serial, "stdio") == 0) {
		*is_stdio = true;
		return STDOUT_FILENO;
	}
	if (strcmp(m->serial, "none") == 0)
		return -1;
	/* Never blocks: a FIFO nobody reads is an error (ENXIO), not a
	 * hang. */
	if (serial_log_open(log, m->serial, m->serial_max_size,
			    m->serial_max_files, err, sizeof(err)) < 0) {
		fprintf(stderr, "smvmm: %s: [console] serial: %s\n", m->path,
			err);
		return -2;
	}
	return serial_log_fd(*log);
}

/*
 * The main thread's loop: terminal input to COM1 (with the Ctrl-A escape),
 * termination signals, and the VM's stop eventfd.  Returns the exit status.
 */
static int run_console(struct vm *vm, bool console_in)
{
	sigset_t set;
	int sfd;
	bool escape = false;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0) {
		/* Without it the blocked signals would never be seen: give
		 * them back their default action (terminate) instead. */
		fprintf(stderr, "smvmm: signalfd: %s; signals end smvmm "
			"without a clean stop\n", strerror(errno));
		pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	}

	for (;;) {
		struct pollfd pfd[3] = {
			{.fd = vm_stop_fd(vm), .events = POLLIN},
			{.fd = sfd, .events = POLLIN},
			{.fd = console_in ? STDIN_FILENO : -1, .events = POLLIN},
		};
		uint8_t buf[256], out[256];
		ssize_t n;
		size_t o = 0;

		if (poll(pfd, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			vm_request_stop(vm, VM_EXIT_ERROR, "poll failed");
			break;
		}
		if (pfd[0].revents)
			break;
		if (pfd[1].revents) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				char why[64];

				snprintf(why, sizeof(why), "stopped by signal %s",
					 strsignal((int)si.ssi_signo));
				vm_request_stop(vm, 128 + (int)si.ssi_signo, why);
			}
			break;
		}
		if (!pfd[2].revents)
			continue;
		n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n <= 0) {
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			console_in = false; /* EOF: the guest keeps running */
			continue;
		}
		for (ssize_t i = 0; i < n; i++) {
			uint8_t c = buf[i];

			if (tio_saved && escape) {
				escape = false;
				if (c == 'x' || c == 'X') {
					vm_request_stop(vm, VM_EXIT_OK,
							"stopped from the console "
							"(Ctrl-A x)");
					goto out;
				}
				if (c != ESCAPE_CHAR)
					continue; /* unknown escape: drop */
			} else if (tio_saved && c == ESCAPE_CHAR) {
				escape = true;
				continue;
			}
			out[o++] = c;
		}
		if (o)
			vm_serial_input(vm, out, o);
	}
out:
	if (sfd >= 0)
		close(sfd);
	return vm_finish(vm);
}

/*
 * Once, at start-up: the soft RLIMIT_NOFILE up to the hard limit.  A vsock
 * device alone may hold 1023 host sockets, more than the usual soft limit of
 * 1024 leaves next to the VMM's own fds (smvmm uses poll/epoll, never
 * select, so fds above 1023 are fine).
 */
static void raise_nofile_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check", no_argument, NULL, 'k'},
		{"dump-acpi", required_argument, NULL, 'a'},
		{"append", required_argument, NULL, 'A'},
		{"uid", required_argument, NULL, 'u'},
		{"gid", required_argument, NULL, 'g'},
		{"chroot", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	struct smvmm_machine m;
	struct machine_cli cli = {0};
	const char *config = NULL, *acpi_dir = NULL, *append = NULL;
	bool check = false, is_stdio;
	struct vm *vm = NULL;
	char err[1024];
	sigset_t set, oldset;
	int c, rc, status, serial_fd;
	struct serial_log *slog = NULL;

	raise_nofile_limit();
	if (argc > 1 && strcmp(argv[1], "vhost-user") == 0)
		return vhost_user_main(argc - 1, argv + 1);

	while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'a':
			acpi_dir = optarg;
			break;
		case 'A':
			append = optarg;
			break;
		case 'u':
			cli.uid = optarg;
			break;
		case 'g':
			cli.gid = optarg;
			break;
		case 'r':
			cli.chroot = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("smvmm %s (plugin ABI %d.%d, symbol %s)\n",
			       SMVMM_VERSION, SMVMM_PLUGIN_ABI_MAJOR,
			       SMVMM_PLUGIN_ABI_MINOR, SMVMM_PLUGIN_SYMBOL);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "smvmm: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 1;
	}
	if (!config) {
		fprintf(stderr, "smvmm: no machine description; use -c FILE\n");
		usage(stderr);
		return 1;
	}

	rc = machine_load_cli(config, &cli, &m, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "smvmm: %s\n", err);
		return 1;
	}
	if (append && machine_append_cmdline(&m, append, err, sizeof(err))) {
		fprintf(stderr, "smvmm: --append: %s\n", err);
		machine_free(&m);
		return 1;
	}
	/*
	 * The jail's first half ([sandbox], sandbox.h), while nothing is
	 * loaded or open and no thread exists: rlimits, cgroup, namespaces;
	 * with a PID namespace this process stays behind as the supervisor of
	 * the VMM (its child) and returns its exit status.  --check and
	 * --dump-acpi create nothing, so they do not jail.
	 */
	if (!check && !acpi_dir) {
		rc = sandbox_prepare(&m, &status, err, sizeof(err));
		if (rc) {
			if (rc < 0)
				fprintf(stderr, "smvmm: %s\n", err);
			machine_free(&m);
			return rc < 0 ? 1 : status;
		}
	}
	/*
	 * Termination signals are taken by the main thread's signalfd; block
	 * them before any thread exists so every other thread inherits the
	 * mask: vm_new already runs plugins' create(), which may start worker
	 * threads (virtio-blk does), and the vCPU and I/O threads come later.
	 * A thread with them unblocked would take a SIGTERM itself and die of
	 * its default action, skipping the clean shutdown.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &set, &oldset);

	/* --check and --dump-acpi never run the devices: they must not
	 * touch the file system (check_only service). */
	m.check_only = check || acpi_dir;
	rc = vm_new(&m, &vm, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "smvmm: %s\n", err);
		machine_free(&m);
		return 1;
	}
	if (check || acpi_dir) {
		/* Nothing to shut down cleanly: a signal ends us as usual. */
		pthread_sigmask(SIG_SETMASK, &oldset, NULL);
		status = 0;
		if (check) {
			vm_print_plan(vm, stdout);
			printf("%s: OK\n", config);
		}
		if (acpi_dir) {
			/* One level, like mkdir: the parent must exist. */
			if (mkdir(acpi_dir, 0755) && errno != EEXIST) {
				fprintf(stderr, "smvmm: --dump-acpi: %s: %s\n",
					acpi_dir, strerror(errno));
				vm_free(vm);
				machine_free(&m);
				return 1;
			}
			rc = vm_dump_acpi(vm, acpi_dir, err, sizeof(err));
			if (rc) {
				fprintf(stderr, "smvmm: --dump-acpi: %s\n", err);
				status = 1;
			}
		}
		vm_free(vm);
		machine_free(&m);
		return status;
	}

	serial_fd = open_serial(&m, &is_stdio, &slog);
	if (serial_fd == -2) {
		vm_free(vm);
		machine_free(&m);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);

	if (slog)
		vm_set_serial_log(vm, slog);
	rc = vm_start(vm, serial_fd, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "smvmm: %s\n", err);
		vm_finish(vm);
		status = 1;
	} else {
		if (is_stdio)
			raw_terminal();
		status = run_console(vm, is_stdio);
		restore_terminal();
	}
	vm_free(vm);
	serial_log_close(slog); /* the serial fd, if a file */
	machine_free(&m);
	return status;
}
