/* SPDX-License-Identifier: MIT */
/*
 * The I/O thread: one epoll loop that runs ioeventfd kicks, plugin fd watches
 * and timers.  Callbacks run on the loop thread, one at a time.
 */
#ifndef SMVMM_EVLOOP_H
#define SMVMM_EVLOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef void (*evloop_cb)(void *opaque, int fd, uint32_t events);

struct evloop_watch;

struct evloop {
	int epfd;
	int wake_fd;            /* eventfd: stop / wake the loop */
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;   /* guards the watch list */
	struct evloop_watch *watches;
	uint64_t generation;    /* bumps on unwatch: stale events are dropped */
};

/* evloop_init: create epoll + wake eventfd.  -errno. */
int evloop_init(struct evloop *l);

/*
 * evloop_watch: call cb(opaque, fd, events) when fd has any of `events`
 * (EPOLLIN etc.), level-triggered.  Re-watching an fd replaces the entry.
 * `owner` groups watches for evloop_unwatch_owner.  Any thread.
 */
int evloop_watch(struct evloop *l, int fd, uint32_t events, evloop_cb cb,
		 void *opaque, const void *owner);

/*
 * evloop_unwatch: remove the watch on fd.  When called from another thread
 * than the loop's, waits until a callback for fd that is running has
 * returned; no callback for fd runs after it returns.  -ENOENT.
 */
int evloop_unwatch(struct evloop *l, int fd);

/* evloop_unwatch_owner: remove every watch registered with `owner`. */
void evloop_unwatch_owner(struct evloop *l, const void *owner);

/* evloop_start: run the loop on a new thread.  -errno. */
int evloop_start(struct evloop *l);

/* evloop_run_once: wait up to timeout_ms and dispatch (tests, no thread). */
int evloop_run_once(struct evloop *l, int timeout_ms);

/* evloop_stop: stop and join the thread (no-op if not started). */
void evloop_stop(struct evloop *l);

/* evloop_destroy: close fds and free watches; the loop must be stopped. */
void evloop_destroy(struct evloop *l);

/* evloop_in_loop_thread: true on the loop thread. */
bool evloop_in_loop_thread(const struct evloop *l);

#endif
