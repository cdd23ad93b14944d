#include <stdlib.h>
#include <unistd.h>

#include "ev.h"
#include "tap.h"

struct state {
	struct ev_loop *loop;
	int ticks;
	int reads;
	int hooks;
	int wfd;
};

static int64_t
tick(void *data)
{
	struct state *st = data;

	if (++st->ticks == 3) {
		if (write(st->wfd, "x", 1) != 1)
			abort();
		return EV_TIMER_STOP;
	}
	return 5;
}

static void
on_read(int fd, void *data)
{
	struct state *st = data;
	char c;

	if (read(fd, &c, 1) == 1)
		st->reads++;
	ev_fd_del(st->loop, fd);
	ev_stop(st->loop);
}

static void
hook(void *data)
{
	((struct state *)data)->hooks++;
}

/* A hook with 1000 slices of work and nothing else to wake the loop: with
 * ev_no_sleep they follow each other at once. */
static int slices_left;

static void
slicer(void *data)
{
	struct ev_loop *loop = data;

	if (--slices_left > 0)
		ev_no_sleep(loop);
	else
		ev_stop(loop);
}

static int64_t
stop_after(void *data)
{
	ev_stop(data);
	return EV_TIMER_STOP;
}

static int64_t
never(void *data)
{
	(void)data;
	abort();
}

int
main(void)
{
	struct state st = { 0 };
	int fds[2];
	struct ev_timer *t;

	if (pipe(fds) == -1)
		return 1;
	st.loop = ev_create();
	st.wfd = fds[1];
	tap_ok(st.loop != NULL, "loop created");
	tap_ok(ev_fd_add(st.loop, fds[0], on_read, NULL, &st) == 0, "fd added");
	tap_ok(ev_fd_add(st.loop, fds[0], on_read, NULL, &st) == -1, "fd added twice refused");
	tap_ok(ev_timer_add(st.loop, 1, tick, &st) != NULL, "timer added");
	t = ev_timer_add(st.loop, 1, never, &st);
	ev_timer_del(st.loop, t);
	tap_ok(ev_hook_add(st.loop, hook, &st) == 0, "hook added");
	tap_ok(ev_run(st.loop) == 0, "loop ran");
	tap_ok(st.ticks == 3, "timer repeated until it stopped (%d)", st.ticks);
	tap_ok(st.reads == 1, "read callback ran");
	tap_ok(st.hooks >= 3, "before-sleep hook ran each iteration (%d)", st.hooks);
	ev_destroy(st.loop);

	st.loop = ev_create();
	slices_left = 1000;
	{
		int64_t t0 = ev_clock_us();

		/* A far timer: blocking even once would take 10 s. */
		ev_timer_add(st.loop, 10000, never, &st);
		ev_hook_add(st.loop, slicer, st.loop);
		ev_run(st.loop);
		tap_ok(slices_left == 0 && ev_clock_us() - t0 < 5000000,
		    "ev_no_sleep: 1000 slices of a hook's work without blocking (%lld us)",
		    (long long)(ev_clock_us() - t0));
	}
	ev_destroy(st.loop);

	/* Read interest off: data waits in the pipe until it is on again. */
	st.loop = ev_create();
	st.reads = 0;
	if (write(fds[1], "y", 1) != 1)
		abort();
	ev_fd_add(st.loop, fds[0], on_read, NULL, &st);
	tap_ok(ev_fd_want_read(st.loop, fds[0], false) == 0, "read interest off");
	ev_timer_add(st.loop, 30, stop_after, st.loop);
	ev_run(st.loop);
	tap_ok(st.reads == 0, "no read callback while the interest is off");
	tap_ok(ev_fd_want_read(st.loop, fds[0], true) == 0 && ev_run(st.loop) == 0 &&
	    st.reads == 1, "the waiting data is read once it is on again");
	tap_ok(ev_fd_want_read(st.loop, fds[0], true) == -1, "an fd the loop lacks: -1");
	ev_destroy(st.loop);
	ev_destroy(NULL);
	close(fds[0]);
	close(fds[1]);
	return tap_done();
}
