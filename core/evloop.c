// SPDX-License-Identifier: MIT
/*
 * The I/O thread: an epoll loop (see evloop.h for the contract).
 *
 * Concurrency design
 * ------------------
 * The watch list is guarded by l->lock.  Each watch carries a unique id (from
 * l->generation) which is what epoll hands back in epoll_event.data, never a
 * pointer: an event for a watch that was removed (or replaced) after
 * epoll_wait returned finds no watch with that id and is dropped, so freeing
 * a watch never races with the dispatcher and a reused fd number never gets
 * an old watch's events.
 *
 * The dispatcher copies cb/opaque/fd under the lock, records the id and owner
 * in running_id/running_owner, drops the lock and runs the callback.  Off the
 * loop thread, unwatch waits on l->idle while running_id is the removed
 * watch, which gives the header's guarantee.  On the loop thread the only
 * callback that can be running is the caller's own, so unwatch never waits
 * there (waiting would deadlock).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "evloop.h"

#define EVLOOP_WAKE_ID 0 /* epoll data of the wake eventfd; watch ids start at 1 */
#define EVLOOP_BATCH 32

#define EVLOOP_EVENTS (EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP | \
		       EPOLLERR | EPOLLHUP)

struct evloop_watch {
	struct evloop_watch *next;
	int fd;
	uint32_t events;
	uint64_t id;
	evloop_cb cb;
	void *opaque;
	const void *owner;
};

bool evloop_in_loop_thread(const struct evloop *l)
{
	if (!__atomic_load_n(&l->has_dispatcher, __ATOMIC_ACQUIRE))
		return false;
	return pthread_equal(__atomic_load_n(&l->dispatcher, __ATOMIC_RELAXED),
			     pthread_self());
}

static void set_dispatcher(struct evloop *l, bool on)
{
	if (on) {
		__atomic_store_n(&l->dispatcher, pthread_self(),
				 __ATOMIC_RELAXED);
		__atomic_store_n(&l->has_dispatcher, true, __ATOMIC_RELEASE);
	} else {
		__atomic_store_n(&l->has_dispatcher, false, __ATOMIC_RELEASE);
	}
}

int evloop_init(struct evloop *l)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EVLOOP_WAKE_ID };
	int rc;

	memset(l, 0, sizeof(*l));
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0)
		return -errno;
	l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wake_fd < 0) {
		rc = -errno;
		goto err_epfd;
	}
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wake_fd, &ev) < 0) {
		rc = -errno;
		goto err_wake;
	}
	rc = -pthread_mutex_init(&l->lock, NULL);
	if (rc)
		goto err_wake;
	rc = -pthread_cond_init(&l->idle, NULL);
	if (rc)
		goto err_lock;
	return 0;

err_lock:
	pthread_mutex_destroy(&l->lock);
err_wake:
	close(l->wake_fd);
err_epfd:
	close(l->epfd);
	l->epfd = l->wake_fd = -1;
	return rc;
}

static struct evloop_watch *find_fd(struct evloop *l, int fd,
				    struct evloop_watch ***link)
{
	struct evloop_watch **pp;

	for (pp = &l->watches; *pp; pp = &(*pp)->next)
		if ((*pp)->fd == fd) {
			if (link)
				*link = pp;
			return *pp;
		}
	return NULL;
}

int evloop_watch(struct evloop *l, int fd, uint32_t events, evloop_cb cb,
		 void *opaque, const void *owner)
{
	struct epoll_event ev;
	struct evloop_watch *w;
	int rc = 0;

	if (fd < 0)
		return -EBADF;
	if (!cb || !(events & EVLOOP_EVENTS))
		return -EINVAL;
	events &= EVLOOP_EVENTS;

	pthread_mutex_lock(&l->lock);
	w = find_fd(l, fd, NULL);
	ev.events = events;
	ev.data.u64 = ++l->generation;
	if (w) {
		/*
		 * Replace: the new id makes events already fetched for the old
		 * callback stale.  If the fd was closed and reopened without an
		 * unwatch, the kernel dropped the old registration: add again.
		 */
		if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 &&
		    (errno != ENOENT ||
		     epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)) {
			rc = -errno;
			goto out;
		}
	} else {
		w = calloc(1, sizeof(*w));
		if (!w) {
			rc = -ENOMEM;
			goto out;
		}
		if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			rc = -errno;
			free(w);
			goto out;
		}
		w->fd = fd;
		w->next = l->watches;
		l->watches = w;
	}
	w->events = events;
	w->id = ev.data.u64;
	w->cb = cb;
	w->opaque = opaque;
	w->owner = owner;
out:
	pthread_mutex_unlock(&l->lock);
	return rc;
}

/* Unlink and free one watch; l->lock held. */
static void remove_watch(struct evloop *l, struct evloop_watch **link)
{
	struct evloop_watch *w = *link;

	*link = w->next;
	/* ENOENT/EBADF: the fd was already closed, the kernel dropped it. */
	(void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	free(w);
}

static int unwatch(struct evloop *l, int fd, bool wait)
{
	struct evloop_watch **link, *w;
	uint64_t id;

	pthread_mutex_lock(&l->lock);
	w = find_fd(l, fd, &link);
	if (!w) {
		pthread_mutex_unlock(&l->lock);
		return -ENOENT;
	}
	id = w->id;
	remove_watch(l, link);
	if (wait && !evloop_in_loop_thread(l))
		while (l->running_id == id)
			pthread_cond_wait(&l->idle, &l->lock);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

int evloop_unwatch(struct evloop *l, int fd)
{
	return unwatch(l, fd, true);
}

int evloop_unwatch_nowait(struct evloop *l, int fd)
{
	return unwatch(l, fd, false);
}

void evloop_unwatch_owner(struct evloop *l, const void *owner)
{
	struct evloop_watch **link;

	pthread_mutex_lock(&l->lock);
	link = &l->watches;
	while (*link) {
		if ((*link)->owner == owner)
			remove_watch(l, link);
		else
			link = &(*link)->next;
	}
	if (!evloop_in_loop_thread(l))
		while (l->running_id && l->running_owner == owner)
			pthread_cond_wait(&l->idle, &l->lock);
	pthread_mutex_unlock(&l->lock);
}

/* Run the callbacks for one epoll_wait batch; returns how many ran. */
static int dispatch(struct evloop *l, struct epoll_event *evs, int n)
{
	int ran = 0;

	for (int i = 0; i < n; i++) {
		uint64_t id = evs[i].data.u64;
		struct evloop_watch *w;
		evloop_cb cb;
		void *opaque;
		int fd;

		if (id == EVLOOP_WAKE_ID) {
			uint64_t v;

			/* Drain; the stop flag is checked by the caller. */
			(void)!read(l->wake_fd, &v, sizeof(v));
			continue;
		}
		pthread_mutex_lock(&l->lock);
		for (w = l->watches; w; w = w->next)
			if (w->id == id)
				break;
		if (!w) {
			/* Unwatched or replaced after epoll_wait: stale. */
			pthread_mutex_unlock(&l->lock);
			continue;
		}
		cb = w->cb;
		opaque = w->opaque;
		fd = w->fd;
		l->running_id = id;
		l->running_owner = w->owner;
		pthread_mutex_unlock(&l->lock);

		cb(opaque, fd, evs[i].events);
		ran++;

		pthread_mutex_lock(&l->lock);
		l->running_id = 0;
		l->running_owner = NULL;
		pthread_cond_broadcast(&l->idle);
		pthread_mutex_unlock(&l->lock);
	}
	return ran;
}

static int wait_and_dispatch(struct evloop *l, int timeout_ms)
{
	struct epoll_event evs[EVLOOP_BATCH];
	int n;

	n = epoll_wait(l->epfd, evs, EVLOOP_BATCH, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	return dispatch(l, evs, n);
}

static void *loop_thread(void *arg)
{
	struct evloop *l = arg;

	set_dispatcher(l, true);
	while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
		int rc = wait_and_dispatch(l, -1);

		/*
		 * epoll_wait only fails for a broken epfd (EBADF/EINVAL): a
		 * programming error that retrying cannot fix; leave the loop
		 * rather than spin.
		 */
		if (rc < 0)
			break;
	}
	set_dispatcher(l, false);
	return NULL;
}

int evloop_start(struct evloop *l)
{
	int rc;

	if (l->running)
		return -EBUSY;
	__atomic_store_n(&l->stop, false, __ATOMIC_RELEASE);
	rc = pthread_create(&l->thread, NULL, loop_thread, l);
	if (rc)
		return -rc;
	l->running = true;
	return 0;
}

int evloop_run_once(struct evloop *l, int timeout_ms)
{
	int rc;

	if (l->running)
		return -EBUSY;
	set_dispatcher(l, true);
	rc = wait_and_dispatch(l, timeout_ms);
	set_dispatcher(l, false);
	return rc;
}

void evloop_stop(struct evloop *l)
{
	uint64_t one = 1;

	if (!l->running)
		return;
	__atomic_store_n(&l->stop, true, __ATOMIC_RELEASE);
	/* An eventfd write only fails when the counter would overflow, which
	 * means a wake-up is pending anyway. */
	(void)!write(l->wake_fd, &one, sizeof(one));
	if (evloop_in_loop_thread(l))
		return; /* cannot join ourselves; the thread exits after us */
	pthread_join(l->thread, NULL);
	l->running = false;
}

void evloop_destroy(struct evloop *l)
{
	struct evloop_watch *w, *next;

	for (w = l->watches; w; w = next) {
		next = w->next;
		free(w);
	}
	l->watches = NULL;
	if (l->wake_fd >= 0)
		close(l->wake_fd);
	if (l->epfd >= 0)
		close(l->epfd);
	l->wake_fd = l->epfd = -1;
	pthread_cond_destroy(&l->idle);
	pthread_mutex_destroy(&l->lock);
}
