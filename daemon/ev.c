#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "ev.h"

#define EV_MAX_EVENTS 64
#define EV_MAX_HOOKS 16

struct ev_file {
	int fd;
	ev_fd_cb on_read;
	ev_fd_cb on_write;
	void *data;
	bool want_read;
	bool want_write;
	bool dead;
	struct ev_file *next;
};

struct ev_timer {
	int64_t due_ms;
	ev_timer_cb cb;
	void *data;
	bool dead;
	struct ev_timer *next;
};

struct ev_loop {
	int epfd;
	bool stop;
	bool no_sleep;			/* a hook has work left */
	bool reap;			/* something is dead: free it */
	int64_t now_ms;
	struct ev_file *files;
	struct ev_timer *timers;
	struct {
		ev_hook_cb cb;
		void *data;
	} hooks[EV_MAX_HOOKS];
	int nhooks;
};

int64_t
ev_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct ev_loop *
ev_create(void)
{
	struct ev_loop *loop = calloc(1, sizeof(*loop));

	if (loop == NULL)
		return NULL;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd == -1) {
		free(loop);
		return NULL;
	}
	loop->now_ms = ev_clock_us() / 1000;
	return loop;
}

void
ev_destroy(struct ev_loop *loop)
{
	if (loop == NULL)
		return;
	while (loop->files) {
		struct ev_file *f = loop->files;
		loop->files = f->next;
		free(f);
	}
	while (loop->timers) {
		struct ev_timer *t = loop->timers;
		loop->timers = t->next;
		free(t);
	}
	close(loop->epfd);
	free(loop);
}

static struct ev_file *
ev_file_find(struct ev_loop *loop, int fd)
{
	for (struct ev_file *f = loop->files; f; f = f->next)
		if (f->fd == fd && !f->dead)
			return f;
	return NULL;
}

static int
ev_file_ctl(struct ev_loop *loop, struct ev_file *f, int op)
{
	struct epoll_event ee = { 0 };

	ee.events = (f->want_read ? EPOLLIN : 0) | (f->want_write ? EPOLLOUT : 0);
	ee.data.ptr = f;
	return epoll_ctl(loop->epfd, op, f->fd, &ee);
}

int
ev_fd_add(struct ev_loop *loop, int fd, ev_fd_cb on_read, ev_fd_cb on_write,
    void *data)
{
	struct ev_file *f;

	if (ev_file_find(loop, fd) != NULL) {
		errno = EEXIST;
		return -1;
	}
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return -1;
	f->fd = fd;
	f->on_read = on_read;
	f->on_write = on_write;
	f->data = data;
	f->want_read = true;
	if (ev_file_ctl(loop, f, EPOLL_CTL_ADD) == -1) {
		free(f);
		return -1;
	}
	f->next = loop->files;
	loop->files = f;
	return 0;
}

static int
ev_fd_want(struct ev_loop *loop, int fd, bool write, bool want)
{
	struct ev_file *f = ev_file_find(loop, fd);
	bool *on;

	if (f == NULL) {
		errno = ENOENT;
		return -1;
	}
	on = write ? &f->want_write : &f->want_read;
	if (*on == want)
		return 0;
	*on = want;
	return ev_file_ctl(loop, f, EPOLL_CTL_MOD);
}

int
ev_fd_want_write(struct ev_loop *loop, int fd, bool want)
{
	return ev_fd_want(loop, fd, true, want);
}

int
ev_fd_want_read(struct ev_loop *loop, int fd, bool want)
{
	return ev_fd_want(loop, fd, false, want);
}

void
ev_fd_del(struct ev_loop *loop, int fd)
{
	struct ev_file *f = ev_file_find(loop, fd);

	if (f == NULL)
		return;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	/* Freed after the current batch of events: a pending event may still
	 * point at it. */
	f->dead = true;
	loop->reap = true;
}

struct ev_timer *
ev_timer_add(struct ev_loop *loop, int64_t after_ms, ev_timer_cb cb, void *data)
{
	struct ev_timer *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->due_ms = ev_clock_us() / 1000 + after_ms;
	t->cb = cb;
	t->data = data;
	t->next = loop->timers;
	loop->timers = t;
	return t;
}

void
ev_timer_rearm(struct ev_loop *loop, struct ev_timer *t, int64_t after_ms)
{
	(void)loop;
	t->due_ms = ev_clock_us() / 1000 + after_ms;
}

void
ev_timer_del(struct ev_loop *loop, struct ev_timer *t)
{
	if (t != NULL) {
		t->dead = true;
		loop->reap = true;
	}
}

int
ev_hook_add(struct ev_loop *loop, ev_hook_cb cb, void *data)
{
	if (loop->nhooks == EV_MAX_HOOKS) {
		errno = ENOSPC;
		return -1;
	}
	loop->hooks[loop->nhooks].cb = cb;
	loop->hooks[loop->nhooks].data = data;
	loop->nhooks++;
	return 0;
}

void
ev_no_sleep(struct ev_loop *loop)
{
	loop->no_sleep = true;
}

void
ev_hook_del(struct ev_loop *loop, ev_hook_cb cb, void *data)
{
	for (int i = 0; i < loop->nhooks; i++) {
		if (loop->hooks[i].cb == cb && loop->hooks[i].data == data) {
			memmove(&loop->hooks[i], &loop->hooks[i + 1],
			    (size_t)(loop->nhooks - i - 1) * sizeof(loop->hooks[0]));
			loop->nhooks--;
			return;
		}
	}
}

void
ev_stop(struct ev_loop *loop)
{
	loop->stop = true;
}

int64_t
ev_now_ms(struct ev_loop *loop)
{
	return loop->now_ms;
}

static void
ev_reap(struct ev_loop *loop)
{
	struct ev_file **fp = &loop->files;
	struct ev_timer **tp = &loop->timers;

	if (!loop->reap)
		return;
	loop->reap = false;
	while (*fp) {
		if ((*fp)->dead) {
			struct ev_file *f = *fp;
			*fp = f->next;
			free(f);
		} else
			fp = &(*fp)->next;
	}
	while (*tp) {
		if ((*tp)->dead) {
			struct ev_timer *t = *tp;
			*tp = t->next;
			free(t);
		} else
			tp = &(*tp)->next;
	}
}

/* Linear scans: the daemon has a few dozen timers at most. */
static void
ev_run_timers(struct ev_loop *loop)
{
	for (struct ev_timer *t = loop->timers; t; t = t->next) {
		int64_t again;

		if (t->dead || t->due_ms > loop->now_ms)
			continue;
		again = t->cb(t->data);
		if (t->dead)
			continue;
		if (again < 0) {
			t->dead = true;
			loop->reap = true;
		} else if (t->due_ms <= loop->now_ms) /* not rearmed by the callback */
			t->due_ms = loop->now_ms + again;
	}
}

static int
ev_next_timeout(struct ev_loop *loop)
{
	int64_t next = -1, now = ev_clock_us() / 1000;

	for (struct ev_timer *t = loop->timers; t; t = t->next)
		if (!t->dead && (next == -1 || t->due_ms < next))
			next = t->due_ms;
	if (next == -1)
		return -1;
	return next > now ? (int)(next - now) : 0;
}

int
ev_run(struct ev_loop *loop)
{
	struct epoll_event events[EV_MAX_EVENTS];

	loop->stop = false;
	while (!loop->stop) {
		int timeout, n;

		loop->now_ms = ev_clock_us() / 1000;
		ev_run_timers(loop);
		if (loop->stop)
			break;
		loop->no_sleep = false;
		for (int i = 0; i < loop->nhooks; i++)
			loop->hooks[i].cb(loop->hooks[i].data);
		ev_reap(loop);
		if (loop->stop)
			break;
		timeout = loop->no_sleep ? 0 : ev_next_timeout(loop);
		n = epoll_wait(loop->epfd, events, EV_MAX_EVENTS, timeout);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		loop->now_ms = ev_clock_us() / 1000;
		for (int i = 0; i < n; i++) {
			struct ev_file *f = events[i].data.ptr;

			if (!f->dead && (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) &&
			    f->on_read)
				f->on_read(f->fd, f->data);
			if (!f->dead && (events[i].events & EPOLLOUT) && f->on_write)
				f->on_write(f->fd, f->data);
		}
		ev_reap(loop);
	}
	return 0;
}
