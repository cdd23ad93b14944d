/*
 * labtraffic: traffic generator and checker for the uplinkd lab.
 *
 *   labtraffic server --tcp PORT --udp PORT [--report FILE]
 *   labtraffic short  --to IP:PORT --count N [--concurrency C]
 *                     [--src-from IP --src-count K] [--timeout S] [--log FILE]
 *   labtraffic long   --to IP:PORT --conns N --udp-flows M --udp-port P
 *                     --rate R (--duration S | --until-file F) [--log FILE]
 *                     [--stats FILE]
 *   common: [--deadline S] [--id-base N]
 *
 * One process, one epoll loop, non-blocking sockets, no threads.  Every
 * mode is bounded: counts by its arguments, time by --deadline (a soft
 * stop that still reports) and by alarm(deadline + 5), which kills the
 * process if the loop itself ever hangs.
 *
 * Wire format: every record is 16 bytes, big-endian
 *
 *    0               4               8                              16
 *   +---------------+---------------+-------------------------------+
 *   | magic         | id            | seq                           |
 *   +---------------+---------------+-------------------------------+
 *   magic "LTR1" on TCP, "LTU1" on UDP; id names the connection or UDP
 *   flow (client side --id-base + index); seq counts from 0.
 *
 * TCP: the client writes records, the server echoes every byte back and
 * checks that seq continues without holes.  UDP: one datagram is one
 * record; the server keys flows by id, so it notices when a flow's source
 * address or port changes (what a failover must never do) and echoes each
 * datagram to the address it came from.
 *
 * The server's report is the authority for "which source IP:port reached
 * the server": one line per TCP connection and per UDP flow,
 *
 *   tcp id=3 peer=198.51.100.10:40001 first_peer=198.51.100.10:40001
 *       first=1700000000.123 last=1700000001.456 records=10 gaps=0
 *       max_gap_ms=100.2 reset=no peer_changes=0 state=eof bad=0
 *
 * (on one line) preceded by a "# labtraffic server ..." summary line.  It
 * is written (atomically, via FILE.tmp and rename) on SIGUSR1 and at exit;
 * SIGTERM and SIGINT make the server exit.  Without --report it goes to
 * stdout.  id is "-" for a TCP connection that never sent a record.
 *
 * Drill windows (long with --stats FILE): SIGUSR2 starts a new window
 * (every connection's window gap back to 0), SIGUSR1 writes FILE
 * (atomically, via FILE.tmp and rename): a "# labtraffic long ..." summary
 * line (broken_in_window counts the connections that broke since the
 * window began), then per TCP connection and UDP flow
 *
 *   tcp id=3 local=10.0.0.100:40001 state=intact sent=52 echoed=52
 *       max_gap_ms=100.3 win_gap_ms=812.5
 *
 * where win_gap_ms is the longest time between two echoes that ended in
 * the window, or the stall still going on (TCP: records unanswered since
 * the last echo; UDP: up to the last send).  Without --stats both signals
 * are ignored.
 *
 * Exit codes: 0 ok, 1 a check failed (connections failed or broke, or
 * the deadline hit first), 2 usage or setup error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define REC_LEN		16
#define TCP_MAGIC	0x4c545231u	/* "LTR1" */
#define UDP_MAGIC	0x4c545531u	/* "LTU1" */
#define NO_ID		UINT32_MAX
#define MAX_EVENTS	256
#define ECHO_BUF	4096		/* server echo buffer per connection */
#define IO_BATCH	256		/* accepts/datagrams per wake-up */
#define MAX_COUNT	10000000u	/* short: connections per run */
#define MAX_CONC	20000u
#define MAX_LONG	50000u		/* long: TCP connections or UDP flows */
#define DEF_ENTRIES	200000u		/* server: report lines kept */
#define MAX_ENTRIES	5000000u
#define MAX_UDP_FLOWS	65536u

/* Tags for epoll data: every object on the loop starts with one. */
enum kind { K_LISTEN, K_UDP, K_SIGNAL, K_TIMER, K_SRV_CONN, K_SHORT, K_LONG_TCP, K_LONG_UDP };

struct tag {
	enum kind	 kind;
};

static const char *progname = "labtraffic";

__attribute__((format(printf, 1, 2), noreturn)) static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

__attribute__((format(printf, 1, 2))) static void
warnx_(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int64_t
now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t
mono_ns(void)
{
	return now_ns(CLOCK_MONOTONIC);
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
put64(uint8_t *p, uint64_t v)
{
	put32(p, v >> 32);
	put32(p + 4, (uint32_t)v);
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void
rec_make(uint8_t *r, uint32_t magic, uint32_t id, uint64_t seq)
{
	put32(r, magic);
	put32(r + 4, id);
	put64(r + 8, seq);
}

static uint64_t
parse_num(const char *s, uint64_t min, uint64_t max, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end != '\0' || s[0] == '-' || v < min || v > max)
		die("%s: '%s' is not a number in [%" PRIu64 ", %" PRIu64 "]", what, s, min, max);
	return v;
}

static double
parse_secs(const char *s, double min, double max, const char *what)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !(v >= min && v <= max))
		die("%s: '%s' is not a number of seconds in [%g, %g]", what, s, min, max);
	return v;
}

static struct in_addr
parse_ip(const char *s, const char *what)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		die("%s: '%s' is not an IPv4 address", what, s);
	return a;
}

static struct sockaddr_in
parse_hostport(const char *s, const char *what)
{
	struct sockaddr_in sin;
	char host[INET_ADDRSTRLEN];
	const char *colon = strrchr(s, ':');
	size_t len;

	if (colon == NULL || (len = (size_t)(colon - s)) == 0 || len >= sizeof(host))
		die("%s: '%s' is not IP:PORT", what, s);
	memcpy(host, s, len);
	host[len] = '\0';
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr = parse_ip(host, what);
	sin.sin_port = htons((uint16_t)parse_num(colon + 1, 1, 65535, what));
	return sin;
}

/* "ip:port" into a caller buffer of at least 22 bytes. */
static const char *
fmt_sin(const struct sockaddr_in *sin, char *buf, size_t len)
{
	char ip[INET_ADDRSTRLEN];

	if (sin->sin_family != AF_INET ||
	    inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip)) == NULL)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%s:%u", ip, ntohs(sin->sin_port));
	return buf;
}

static bool
sin_equal(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
	return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

/* Many connections need many descriptors: take what the hard limit allows. */
static rlim_t
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur;
}

static void
ep_add(int ep, int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = { .events = events, .data.ptr = ptr };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
		die("epoll_ctl add: %s", strerror(errno));
}

static void
ep_mod(int ep, int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = { .events = events, .data.ptr = ptr };

	if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0)
		die("epoll_ctl mod: %s", strerror(errno));
}

/* Soft deadline in the loop, hard one from the kernel if the loop hangs. */
static int64_t
arm_deadline(double secs)
{
	alarm((unsigned)secs + 5);
	return mono_ns() + (int64_t)(secs * 1e9);
}

static int
epoll_wait_until(int ep, struct epoll_event *evs, int64_t until_ns, int max_ms)
{
	int64_t left = (until_ns - mono_ns()) / 1000000;
	int ms = left < 0 ? 0 : left > max_ms ? max_ms : (int)left + 1;
	int n = epoll_wait(ep, evs, MAX_EVENTS, ms);

	if (n < 0 && errno != EINTR)
		die("epoll_wait: %s", strerror(errno));
	return n < 0 ? 0 : n;
}

/* ------------------------------------------------------------------ */
/* server                                                               */
/* ------------------------------------------------------------------ */

enum entry_state { ST_OPEN, ST_EOF, ST_RESET, ST_ERROR };
static const char *const state_names[] = { "open", "eof", "reset", "error" };

/* One report line: a TCP connection or a UDP flow. */
struct entry {
	char		 proto;		/* 't' or 'u' */
	uint8_t		 state;		/* enum entry_state */
	uint32_t	 id;
	struct sockaddr_in first_peer, peer;
	int64_t		 first_real, last_real;
	int64_t		 last_mono, max_gap;
	uint64_t	 records, gaps, next_seq, bad;
	uint32_t	 peer_changes;
};

struct srv_conn {
	struct tag	 tag;
	struct srv_conn	*prev, *next;	/* open connections, freed at exit */
	int		 fd;
	size_t		 entry;		/* SIZE_MAX: beyond --max-entries */
	uint8_t		 part[REC_LEN];
	size_t		 partlen;
	uint8_t		 out[ECHO_BUF];
	size_t		 outlen;
	uint32_t	 events;	/* what epoll watches now */
};

struct server {
	int		 ep;
	int		 lfd, ufd, sfd;
	struct tag	 ltag, utag, stag;
	struct entry	*entries;
	size_t		 nentries, capentries, maxentries;
	struct srv_conn	*conns;
	uint32_t	*flowmap;	/* UDP id -> entry index + 1, open addressing */
	size_t		 flowmask, nflows;
	uint64_t	 accepted, untracked, open_conns, max_open;
	uint64_t	 udp_bad, udp_untracked;
	bool		 listen_paused;
	const char	*report;
};

static size_t
srv_entry_new(struct server *s, char proto, uint32_t id, const struct sockaddr_in *peer)
{
	struct entry *e;

	if (s->nentries == s->maxentries) {
		s->untracked++;
		return SIZE_MAX;
	}
	if (s->nentries == s->capentries) {
		size_t cap = s->capentries ? s->capentries * 2 : 1024;
		struct entry *n;

		if (cap > s->maxentries)
			cap = s->maxentries;
		if ((n = realloc(s->entries, cap * sizeof(*n))) == NULL) {
			s->untracked++;
			return SIZE_MAX;
		}
		s->entries = n;
		s->capentries = cap;
	}
	e = &s->entries[s->nentries];
	memset(e, 0, sizeof(*e));
	e->proto = proto;
	e->id = id;
	e->first_peer = e->peer = *peer;
	e->first_real = e->last_real = now_ns(CLOCK_REALTIME);
	e->last_mono = mono_ns();
	e->state = ST_OPEN;
	return s->nentries++;
}

/* Counts one record of an entry: continuity, timing. */
static void
entry_record(struct entry *e, uint64_t seq)
{
	int64_t now = mono_ns();

	if (e->records > 0 && now - e->last_mono > e->max_gap)
		e->max_gap = now - e->last_mono;
	e->last_mono = now;
	e->last_real = now_ns(CLOCK_REALTIME);
	e->records++;
	if (seq > e->next_seq)
		e->gaps += seq - e->next_seq;
	else if (seq < e->next_seq)
		e->bad++;	/* duplicate or reordered */
	if (seq >= e->next_seq)
		e->next_seq = seq + 1;
}

static void
srv_write_report(struct server *s)
{
	char tmp[4096], a[32], b[32];
	FILE *f;
	size_t i;

	if (s->report) {
		if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", s->report) >= sizeof(tmp)) {
			warnx_("report path too long");
			return;
		}
		if ((f = fopen(tmp, "w")) == NULL) {
			warnx_("%s: %s", tmp, strerror(errno));
			return;
		}
	} else
		f = stdout;
	fprintf(f, "# labtraffic server entries=%zu accepted=%" PRIu64 " open=%" PRIu64
	    " untracked=%" PRIu64 " udp_flows=%zu udp_bad=%" PRIu64 "\n",
	    s->nentries, s->accepted, s->open_conns, s->untracked, s->nflows, s->udp_bad);
	for (i = 0; i < s->nentries; i++) {
		const struct entry *e = &s->entries[i];
		char id[16];

		if (e->id == NO_ID)
			snprintf(id, sizeof(id), "-");
		else
			snprintf(id, sizeof(id), "%" PRIu32, e->id);
		fprintf(f, "%s id=%s peer=%s first_peer=%s first=%.3f last=%.3f records=%" PRIu64
		    " gaps=%" PRIu64 " max_gap_ms=%.1f reset=%s peer_changes=%" PRIu32
		    " state=%s bad=%" PRIu64 "\n",
		    e->proto == 't' ? "tcp" : "udp", id,
		    fmt_sin(&e->peer, a, sizeof(a)), fmt_sin(&e->first_peer, b, sizeof(b)),
		    e->first_real / 1e9, e->last_real / 1e9, e->records, e->gaps,
		    e->max_gap / 1e6, e->state == ST_RESET ? "yes" : "no", e->peer_changes,
		    state_names[e->state], e->bad);
	}
	if (f == stdout) {
		fflush(f);
		return;
	}
	if (fclose(f) != 0 || rename(tmp, s->report) != 0)
		warnx_("%s: %s", s->report, strerror(errno));
}

static void
srv_conn_close(struct server *s, struct srv_conn *c, enum entry_state st)
{
	if (c->entry != SIZE_MAX)
		s->entries[c->entry].state = st;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);
	free(c);
	s->open_conns--;
	if (s->listen_paused) {
		s->listen_paused = false;
		ep_mod(s->ep, s->lfd, EPOLLIN, &s->ltag);
	}
}

static void
srv_accept(struct server *s)
{
	int i;

	for (i = 0; i < IO_BATCH; i++) {
		struct sockaddr_in peer;
		socklen_t plen = sizeof(peer);
		struct srv_conn *c;
		int fd;

		if (s->open_conns >= s->max_open) {
			/* Resumed by srv_conn_close(). */
			s->listen_paused = true;
			ep_mod(s->ep, s->lfd, 0, &s->ltag);
			return;
		}
		fd = accept4(s->lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				warnx_("accept: %s", strerror(errno));
			return;
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		c->tag.kind = K_SRV_CONN;
		c->fd = fd;
		c->events = EPOLLIN;
		c->entry = srv_entry_new(s, 't', NO_ID, &peer);
		c->next = s->conns;
		if (s->conns)
			s->conns->prev = c;
		s->conns = c;
		s->accepted++;
		s->open_conns++;
		ep_add(s->ep, fd, EPOLLIN, c);
	}
}

static void
srv_tcp_records(struct server *s, struct srv_conn *c, const uint8_t *p, size_t n)
{
	struct entry *e = c->entry == SIZE_MAX ? NULL : &s->entries[c->entry];

	while (n > 0) {
		size_t take = REC_LEN - c->partlen;

		if (take > n)
			take = n;
		memcpy(c->part + c->partlen, p, take);
		c->partlen += take;
		p += take;
		n -= take;
		if (c->partlen < REC_LEN)
			break;
		c->partlen = 0;
		if (e == NULL)
			continue;
		if (get32(c->part) != TCP_MAGIC) {
			e->bad++;
			continue;
		}
		if (e->id == NO_ID)
			e->id = get32(c->part + 4);
		else if (e->id != get32(c->part + 4)) {
			e->bad++;
			continue;
		}
		entry_record(e, get64(c->part + 8));
	}
}

/* Sends what is buffered; returns -1 when the connection is dead. */
static int
srv_flush(struct srv_conn *c)
{
	while (c->outlen > 0) {
		ssize_t w = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		memmove(c->out, c->out + w, c->outlen - (size_t)w);
		c->outlen -= (size_t)w;
	}
	return 0;
}

/*
 * Reads at most what the echo buffer can take, so a client that does not
 * read its echoes is throttled by TCP instead of growing our memory.
 */
static void
srv_conn_io(struct server *s, struct srv_conn *c, uint32_t events)
{
	uint32_t want;

	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		while (c->outlen < sizeof(c->out)) {
			ssize_t r = recv(c->fd, c->out + c->outlen, sizeof(c->out) - c->outlen, 0);

			if (r == 0) {
				srv_conn_close(s, c, ST_EOF);
				return;
			}
			if (r < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					break;
				srv_conn_close(s, c, errno == ECONNRESET ? ST_RESET : ST_ERROR);
				return;
			}
			srv_tcp_records(s, c, c->out + c->outlen, (size_t)r);
			c->outlen += (size_t)r;
			if (srv_flush(c) != 0) {
				srv_conn_close(s, c, errno == ECONNRESET || errno == EPIPE ?
				    ST_RESET : ST_ERROR);
				return;
			}
		}
	}
	if ((events & EPOLLOUT) && srv_flush(c) != 0) {
		srv_conn_close(s, c, errno == ECONNRESET || errno == EPIPE ? ST_RESET : ST_ERROR);
		return;
	}
	want = (c->outlen < sizeof(c->out) ? EPOLLIN : 0) | (c->outlen > 0 ? EPOLLOUT : 0);
	if (want != c->events) {
		c->events = want;
		ep_mod(s->ep, c->fd, want, c);
	}
}

static size_t
srv_flow_find(struct server *s, uint32_t id, bool *isnew, const struct sockaddr_in *peer)
{
	size_t h = (id * 2654435761u) & s->flowmask, i;

	*isnew = false;
	for (i = 0; i <= s->flowmask; i++, h = (h + 1) & s->flowmask) {
		uint32_t v = s->flowmap[h];

		if (v == 0) {
			size_t e;

			if (s->nflows >= MAX_UDP_FLOWS ||
			    (e = srv_entry_new(s, 'u', id, peer)) == SIZE_MAX)
				return SIZE_MAX;
			s->flowmap[h] = (uint32_t)e + 1;
			s->nflows++;
			*isnew = true;
			return e;
		}
		if (s->entries[v - 1].id == id)
			return v - 1;
	}
	return SIZE_MAX;
}

/*
 * The echo must leave from the address the datagram was sent to: a socket
 * bound to 0.0.0.0 would otherwise answer from the route's preferred
 * source, which the client's conntrack entry (and connected socket) do not
 * match.  IP_PKTINFO gives us that address.
 */
static void
srv_udp(struct server *s)
{
	int i;

	for (i = 0; i < IO_BATCH; i++) {
		uint8_t buf[64];
		union {
			char		buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
			struct cmsghdr	align;
		} ctl;
		struct sockaddr_in peer;
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr msg = {
			.msg_name = &peer, .msg_namelen = sizeof(peer),
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
		};
		struct cmsghdr *cm;
		struct entry *e;
		bool isnew;
		size_t idx;
		ssize_t r;

		r = recvmsg(s->ufd, &msg, 0);
		if (r < 0) {
			if (errno != EAGAIN && errno != EINTR)
				warnx_("udp recv: %s", strerror(errno));
			return;
		}
		if (r != REC_LEN || get32(buf) != UDP_MAGIC) {
			s->udp_bad++;
			continue;
		}
		idx = srv_flow_find(s, get32(buf + 4), &isnew, &peer);
		if (idx == SIZE_MAX)
			s->udp_untracked++;
		else {
			e = &s->entries[idx];
			if (!isnew && !sin_equal(&e->peer, &peer)) {
				e->peer_changes++;
				e->peer = peer;
			}
			entry_record(e, get64(buf + 8));
		}
		/* Reuse the received control data: ipi_spec_dst sets our source. */
		for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm))
			if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
				struct in_pktinfo *pi = (struct in_pktinfo *)CMSG_DATA(cm);

				pi->ipi_spec_dst = pi->ipi_addr;
				pi->ipi_ifindex = 0;
			}
		iov.iov_len = REC_LEN;
		/* Lost echoes are the client's business: UDP. */
		(void)sendmsg(s->ufd, &msg, MSG_DONTWAIT);
	}
}

static int
srv_listen(int type, uint16_t port)
{
	struct sockaddr_in sin;
	int fd, one = 1;

	if ((fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		die("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
		die("bind %s port %u: %s", type == SOCK_STREAM ? "tcp" : "udp", port, strerror(errno));
	if (type == SOCK_DGRAM && setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) != 0)
		die("IP_PKTINFO: %s", strerror(errno));
	if (type == SOCK_STREAM && listen(fd, 4096) != 0)
		die("listen: %s", strerror(errno));
	return fd;
}

static int
run_server(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tcp", required_argument, NULL, 't' },
		{ "udp", required_argument, NULL, 'u' },
		{ "report", required_argument, NULL, 'r' },
		{ "deadline", required_argument, NULL, 'd' },
		{ "max-entries", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 }
	};
	struct server s;
	struct epoll_event evs[MAX_EVENTS];
	sigset_t mask;
	uint16_t tport = 0, uport = 0;
	double deadline = 3600;
	int64_t until;
	rlim_t nofile;
	int opt, rc = 0;
	bool done = false;

	memset(&s, 0, sizeof(s));
	s.lfd = s.ufd = -1;
	s.maxentries = DEF_ENTRIES;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 't': tport = (uint16_t)parse_num(optarg, 1, 65535, "--tcp"); break;
		case 'u': uport = (uint16_t)parse_num(optarg, 1, 65535, "--udp"); break;
		case 'r': s.report = optarg; break;
		case 'd': deadline = parse_secs(optarg, 0.1, 7 * 86400, "--deadline"); break;
		case 'm': s.maxentries = parse_num(optarg, 1, MAX_ENTRIES, "--max-entries"); break;
		default: return 2;
		}
	}
	if (optind != argc || (tport == 0 && uport == 0))
		die("server: need --tcp PORT and/or --udp PORT");

	nofile = raise_nofile();
	s.max_open = nofile > 128 ? nofile - 64 : 64;
	s.flowmask = 2 * MAX_UDP_FLOWS - 1;
	if ((s.flowmap = calloc(s.flowmask + 1, sizeof(*s.flowmap))) == NULL)
		die("out of memory");
	if ((s.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1: %s", strerror(errno));

	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	if ((s.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
		die("signalfd: %s", strerror(errno));
	s.stag.kind = K_SIGNAL;
	ep_add(s.ep, s.sfd, EPOLLIN, &s.stag);
	if (tport) {
		s.lfd = srv_listen(SOCK_STREAM, tport);
		s.ltag.kind = K_LISTEN;
		ep_add(s.ep, s.lfd, EPOLLIN, &s.ltag);
	}
	if (uport) {
		s.ufd = srv_listen(SOCK_DGRAM, uport);
		s.utag.kind = K_UDP;
		ep_add(s.ep, s.ufd, EPOLLIN, &s.utag);
	}
	until = arm_deadline(deadline);

	while (!done) {
		int i, n = epoll_wait_until(s.ep, evs, until, 1000);

		if (mono_ns() >= until) {
			warnx_("server: deadline reached");
			rc = 1;
			break;
		}
		for (i = 0; i < n; i++) {
			struct tag *t = evs[i].data.ptr;

			switch (t->kind) {
			case K_LISTEN:
				srv_accept(&s);
				break;
			case K_UDP:
				srv_udp(&s);
				break;
			case K_SRV_CONN:
				srv_conn_io(&s, (struct srv_conn *)t, evs[i].events);
				break;
			case K_SIGNAL: {
				struct signalfd_siginfo si;

				while (read(s.sfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGUSR1)
						srv_write_report(&s);
					else
						done = true;
				}
				break;
			}
			default:
				break;
			}
		}
	}
	/* Connections still open stay "open" in the report. */
	srv_write_report(&s);
	while (s.conns) {
		struct srv_conn *c = s.conns;

		s.conns = c->next;
		close(c->fd);
		free(c);
	}
	free(s.entries);
	free(s.flowmap);
	return rc;
}

/* ------------------------------------------------------------------ */
/* clients: common                                                      */
/* ------------------------------------------------------------------ */

struct client_opts {
	struct sockaddr_in to;
	bool		 have_to;
	struct in_addr	 src_from;
	uint32_t	 src_count;	/* 0: let the kernel choose */
	uint32_t	 id_base;
	double		 timeout;	/* connect/echo timeout per connection */
	double		 deadline;
	const char	*log;
};

/*
 * A non-blocking TCP socket bound to the idx-th source address (round
 * robin) and connecting.  IP_BIND_ADDRESS_NO_PORT leaves the port choice to
 * connect(), so many sources share the ephemeral range by 4-tuple.
 */
static int
client_connect(const struct client_opts *o, uint64_t idx, int type)
{
	int fd, one = 1;

	if ((fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	if (o->src_count > 0) {
		struct sockaddr_in src;

		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl(ntohl(o->src_from.s_addr) + (uint32_t)(idx % o->src_count));
		if (type == SOCK_STREAM)
			setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
			int e = errno;

			close(fd);
			errno = e;
			return -1;
		}
	}
	if (type == SOCK_STREAM)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&o->to, sizeof(o->to)) != 0 &&
	    errno != EINPROGRESS) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static const char *
local_name(int fd, char *buf, size_t len)
{
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);

	memset(&sin, 0, sizeof(sin));
	if (getsockname(fd, (struct sockaddr *)&sin, &slen) != 0)
		sin.sin_family = AF_UNSPEC;
	return fmt_sin(&sin, buf, len);
}

static int
sock_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		return errno;
	return err;
}

static FILE *
open_log(const char *path)
{
	FILE *f;

	if (path == NULL)
		return NULL;
	if ((f = fopen(path, "w")) == NULL)
		die("%s: %s", path, strerror(errno));
	return f;
}

/* Options shared by short and long; returns false for an unknown one. */
static bool
client_opt(struct client_opts *o, int opt)
{
	switch (opt) {
	case 'T':
		o->to = parse_hostport(optarg, "--to");
		o->have_to = true;
		return true;
	case 'F': o->src_from = parse_ip(optarg, "--src-from"); return true;
	case 'K': o->src_count = (uint32_t)parse_num(optarg, 1, 65536, "--src-count"); return true;
	case 'I': o->id_base = (uint32_t)parse_num(optarg, 0, UINT32_MAX - MAX_COUNT, "--id-base"); return true;
	case 'W': o->timeout = parse_secs(optarg, 0.01, 3600, "--timeout"); return true;
	case 'D': o->deadline = parse_secs(optarg, 0.1, 7 * 86400, "--deadline"); return true;
	case 'L': o->log = optarg; return true;
	default: return false;
	}
}

#define CLIENT_LONGOPTS \
	{ "to", required_argument, NULL, 'T' }, \
	{ "src-from", required_argument, NULL, 'F' }, \
	{ "src-count", required_argument, NULL, 'K' }, \
	{ "id-base", required_argument, NULL, 'I' }, \
	{ "timeout", required_argument, NULL, 'W' }, \
	{ "deadline", required_argument, NULL, 'D' }, \
	{ "log", required_argument, NULL, 'L' }

/* ------------------------------------------------------------------ */
/* short: many short TCP connections                                    */
/* ------------------------------------------------------------------ */

enum short_phase { SP_FREE, SP_CONNECTING, SP_SENDING, SP_READING };

struct short_conn {
	struct tag	 tag;
	int		 fd;
	enum short_phase phase;
	uint32_t	 idx;
	int64_t		 start, expire;
	uint8_t		 rec[REC_LEN], echo[REC_LEN];
	size_t		 sent, got;
	char		 local[32];
};

struct short_run {
	const struct client_opts *o;
	int		 ep;
	FILE		*log;
	uint32_t	*lat_us;	/* connect latency of the successful ones */
	uint64_t	 ok, failed, nlat;
	uint64_t	 fail_connect, fail_timeout, fail_eof, fail_mismatch;
};

static void
short_finish(struct short_run *r, struct short_conn *c, const char *why, int err)
{
	if (why == NULL)
		r->ok++;
	else
		r->failed++;
	if (r->log)
		fprintf(r->log, "id=%" PRIu32 " local=%s result=%s%s%s\n", r->o->id_base + c->idx,
		    c->local[0] ? c->local : "-", why ? why : "ok",
		    err ? ":" : "", err ? strerror(err) : "");
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->phase = SP_FREE;
}

static void
short_start(struct short_run *r, struct short_conn *c, uint32_t idx)
{
	memset(c->local, 0, sizeof(c->local));
	c->idx = idx;
	c->sent = c->got = 0;
	c->start = mono_ns();
	c->expire = c->start + (int64_t)(r->o->timeout * 1e9);
	rec_make(c->rec, TCP_MAGIC, r->o->id_base + idx, 0);
	c->fd = client_connect(r->o, idx, SOCK_STREAM);
	if (c->fd < 0) {
		int e = errno;

		r->fail_connect++;
		short_finish(r, c, "connect", e);
		return;
	}
	c->phase = SP_CONNECTING;
	ep_add(r->ep, c->fd, EPOLLOUT, c);
}

static void
short_io(struct short_run *r, struct short_conn *c)
{
	if (c->phase == SP_CONNECTING) {
		int err = sock_error(c->fd);

		if (err) {
			r->fail_connect++;
			short_finish(r, c, "connect", err);
			return;
		}
		r->lat_us[r->nlat++] = (uint32_t)((mono_ns() - c->start) / 1000);
		local_name(c->fd, c->local, sizeof(c->local));
		c->phase = SP_SENDING;
	}
	if (c->phase == SP_SENDING) {
		while (c->sent < REC_LEN) {
			ssize_t w = send(c->fd, c->rec + c->sent, REC_LEN - c->sent, MSG_NOSIGNAL);

			if (w < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					return;
				r->fail_eof++;
				short_finish(r, c, "send", errno);
				return;
			}
			c->sent += (size_t)w;
		}
		c->phase = SP_READING;
		ep_mod(r->ep, c->fd, EPOLLIN, c);
		return;
	}
	while (c->got < REC_LEN) {
		ssize_t n = recv(c->fd, c->echo + c->got, REC_LEN - c->got, 0);

		if (n == 0) {
			r->fail_eof++;
			short_finish(r, c, "eof", 0);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			r->fail_eof++;
			short_finish(r, c, "recv", errno);
			return;
		}
		c->got += (size_t)n;
	}
	if (memcmp(c->rec, c->echo, REC_LEN) != 0) {
		r->fail_mismatch++;
		short_finish(r, c, "mismatch", 0);
		return;
	}
	short_finish(r, c, NULL, 0);
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static uint32_t
percentile(const uint32_t *v, uint64_t n, double p)
{
	uint64_t i;

	if (n == 0)
		return 0;
	i = (uint64_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

static int
run_short(int argc, char **argv)
{
	static const struct option opts[] = {
		CLIENT_LONGOPTS,
		{ "count", required_argument, NULL, 'n' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 }
	};
	struct client_opts o = { .timeout = 5, .deadline = 0 };
	struct short_run r;
	struct short_conn *slots;
	struct epoll_event evs[MAX_EVENTS];
	uint64_t count = 0, conc = 16, started = 0, i;
	int64_t t0, until, elapsed;
	bool hit_deadline = false;
	int opt;

	memset(&r, 0, sizeof(r));
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (client_opt(&o, opt))
			continue;
		switch (opt) {
		case 'n': count = parse_num(optarg, 1, MAX_COUNT, "--count"); break;
		case 'c': conc = parse_num(optarg, 1, MAX_CONC, "--concurrency"); break;
		default: return 2;
		}
	}
	if (optind != argc || !o.have_to || count == 0)
		die("short: need --to IP:PORT and --count N");
	if (o.src_count && o.src_from.s_addr == 0)
		die("short: --src-count needs --src-from");
	if (o.deadline == 0)
		o.deadline = 300;
	if (conc > count)
		conc = count;
	if (raise_nofile() < conc + 64)
		die("short: --concurrency %" PRIu64 " exceeds the descriptor limit", conc);

	r.o = &o;
	r.log = open_log(o.log);
	if ((r.lat_us = calloc(count, sizeof(*r.lat_us))) == NULL ||
	    (slots = calloc(conc, sizeof(*slots))) == NULL)
		die("out of memory");
	if ((r.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1: %s", strerror(errno));
	for (i = 0; i < conc; i++) {
		slots[i].tag.kind = K_SHORT;
		slots[i].fd = -1;
	}
	signal(SIGPIPE, SIG_IGN);
	until = arm_deadline(o.deadline);
	t0 = mono_ns();

	while (r.ok + r.failed < count) {
		int64_t now;
		int n, k;

		for (i = 0; i < conc && started < count; i++)
			if (slots[i].phase == SP_FREE)
				short_start(&r, &slots[i], (uint32_t)started++);
		if (r.ok + r.failed >= count)
			break;
		n = epoll_wait_until(r.ep, evs, until, 50);
		for (k = 0; k < n; k++)
			short_io(&r, (struct short_conn *)evs[k].data.ptr);
		now = mono_ns();
		if (now >= until) {
			hit_deadline = true;
			break;
		}
		for (i = 0; i < conc; i++)
			if (slots[i].phase != SP_FREE && now >= slots[i].expire) {
				r.fail_timeout++;
				short_finish(&r, &slots[i], "timeout", 0);
			}
	}
	elapsed = mono_ns() - t0;
	for (i = 0; i < conc; i++)
		if (slots[i].phase != SP_FREE) {
			r.fail_timeout++;
			short_finish(&r, &slots[i], "deadline", 0);
		}

	qsort(r.lat_us, r.nlat, sizeof(*r.lat_us), cmp_u32);
	printf("short: count=%" PRIu64 " ok=%" PRIu64 " failed=%" PRIu64
	    " (connect=%" PRIu64 " timeout=%" PRIu64 " eof=%" PRIu64 " mismatch=%" PRIu64 ")"
	    " not_started=%" PRIu64 " elapsed_s=%.3f rate=%.1f conn/s"
	    " connect_p50_us=%" PRIu32 " connect_p99_us=%" PRIu32 "%s\n",
	    count, r.ok, r.failed, r.fail_connect, r.fail_timeout, r.fail_eof, r.fail_mismatch,
	    count - started, elapsed / 1e9, elapsed > 0 ? (double)r.ok * 1e9 / (double)elapsed : 0.0,
	    percentile(r.lat_us, r.nlat, 0.50), percentile(r.lat_us, r.nlat, 0.99),
	    hit_deadline ? " deadline=hit" : "");
	if (r.log && fclose(r.log) != 0)
		warnx_("%s: %s", o.log, strerror(errno));
	free(slots);
	free(r.lat_us);
	return r.ok == count ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* long: long-lived TCP connections and UDP flows                       */
/* ------------------------------------------------------------------ */

enum long_state { LS_CONNECTING, LS_UP, LS_BROKEN };

struct long_conn {
	struct tag	 tag;		/* K_LONG_TCP or K_LONG_UDP */
	int		 fd;
	enum long_state	 state;
	uint32_t	 id;
	uint64_t	 due, sent, echoed;	/* records scheduled, written, echoed */
	size_t		 wofs;			/* bytes of record `sent` written */
	uint8_t		 part[REC_LEN];
	size_t		 partlen;
	int64_t		 last_echo, max_gap, last_send;
	int64_t		 win_gap, broke_at;	/* drill window (--stats) */
	bool		 want_out;
	const char	*why;
	char		 local[32];
};

struct long_run {
	int		 ep;
	uint64_t	 udp_errors;
};

static void
long_break(struct long_conn *c, const char *why)
{
	if (c->state == LS_BROKEN)
		return;
	c->state = LS_BROKEN;
	c->why = why;
	c->broke_at = mono_ns();
	close(c->fd);
	c->fd = -1;
}

static void
long_echo(struct long_conn *c, const uint8_t *rec, uint32_t magic)
{
	int64_t now = mono_ns();

	if (get32(rec) != magic || get32(rec + 4) != c->id) {
		if (c->tag.kind == K_LONG_TCP)
			long_break(c, "mismatch");
		return;
	}
	if (c->tag.kind == K_LONG_TCP && get64(rec + 8) != c->echoed) {
		long_break(c, "mismatch");
		return;
	}
	if (now - c->last_echo > c->max_gap)
		c->max_gap = now - c->last_echo;
	if (now - c->last_echo > c->win_gap)
		c->win_gap = now - c->last_echo;
	c->last_echo = now;
	c->echoed++;
}

static void
long_tcp_flush(struct long_run *r, struct long_conn *c)
{
	bool want;

	while (c->state == LS_UP && c->sent < c->due) {
		uint8_t rec[REC_LEN];
		ssize_t w;

		rec_make(rec, TCP_MAGIC, c->id, c->sent);
		w = send(c->fd, rec + c->wofs, REC_LEN - c->wofs, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			long_break(c, errno == ECONNRESET || errno == EPIPE ? "reset" : "error");
			return;
		}
		c->wofs += (size_t)w;
		if (c->wofs == REC_LEN) {
			c->wofs = 0;
			c->sent++;
		}
	}
	if (c->state != LS_UP)
		return;
	want = c->sent < c->due;
	if (want != c->want_out) {
		c->want_out = want;
		ep_mod(r->ep, c->fd, EPOLLIN | (want ? EPOLLOUT : 0), c);
	}
}

static void
long_tcp_io(struct long_run *r, struct long_conn *c, uint32_t events)
{
	uint8_t buf[4096];
	int i;

	if (c->state == LS_CONNECTING) {
		int err = sock_error(c->fd);

		if (err) {
			long_break(c, "connect");
			return;
		}
		c->state = LS_UP;
		local_name(c->fd, c->local, sizeof(c->local));
		c->want_out = false;
		ep_mod(r->ep, c->fd, EPOLLIN, c);
		return;
	}
	if (c->state != LS_UP)
		return;
	/* Bounded: the rest waits for the next wake-up (level-triggered). */
	for (i = 0; i < 16 && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)); i++) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
		size_t k;

		if (n == 0) {
			long_break(c, "eof");
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			long_break(c, errno == ECONNRESET ? "reset" : "error");
			return;
		}
		for (k = 0; k < (size_t)n && c->state == LS_UP; k++) {
			c->part[c->partlen++] = buf[k];
			if (c->partlen == REC_LEN) {
				c->partlen = 0;
				long_echo(c, c->part, TCP_MAGIC);
			}
		}
		if (c->state != LS_UP)
			return;
	}
	if (events & EPOLLOUT)
		long_tcp_flush(r, c);
}

static void
long_udp_io(struct long_run *r, struct long_conn *c)
{
	int i;

	for (i = 0; i < IO_BATCH; i++) {
		uint8_t buf[64];
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

		if (n < 0) {
			/* ICMP errors surface here on a connected socket: count, go on. */
			if (errno != EAGAIN && errno != EINTR)
				r->udp_errors++;
			if (errno == EAGAIN)
				return;
			continue;
		}
		if (n == REC_LEN)
			long_echo(c, buf, UDP_MAGIC);
	}
}

static void
long_tick(struct long_run *r, struct long_conn *c)
{
	if (c->state != LS_UP)
		return;
	if (c->due == 0)
		c->last_echo = mono_ns();	/* gaps count from the first send */
	c->due++;
	if (c->tag.kind == K_LONG_TCP) {
		long_tcp_flush(r, c);
		return;
	}
	{
		uint8_t rec[REC_LEN];

		rec_make(rec, UDP_MAGIC, c->id, c->sent);
		if (send(c->fd, rec, REC_LEN, MSG_DONTWAIT) == REC_LEN) {
			c->sent++;
			c->last_send = mono_ns();
		}
		else
			r->udp_errors++;
	}
}

/* The stall of a connection still going on at `now` (0 if none). */
static int64_t
long_pending_gap(const struct long_conn *c, int64_t now)
{
	if (c->echoed >= c->sent)
		return 0;
	if (c->tag.kind == K_LONG_TCP)
		return c->state == LS_UP ? now - c->last_echo : 0;
	return c->last_send - c->last_echo;
}

/* --stats: the drill window's figures, per connection (see the top). */
static void
long_write_stats(const char *path, const struct long_conn *conns, uint64_t total,
    int64_t win_start)
{
	char tmp[4096];
	uint64_t i, intact = 0, broken = 0, broken_win = 0;
	int64_t now = mono_ns();
	FILE *f;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		warnx_("stats path too long");
		return;
	}
	if ((f = fopen(tmp, "w")) == NULL) {
		warnx_("%s: %s", tmp, strerror(errno));
		return;
	}
	for (i = 0; i < total; i++) {
		const struct long_conn *c = &conns[i];

		if (c->tag.kind != K_LONG_TCP)
			continue;
		if (c->state == LS_BROKEN) {
			broken++;
			broken_win += c->broke_at >= win_start;
		} else
			intact++;
	}
	fprintf(f, "# labtraffic long conns=%" PRIu64 " intact=%" PRIu64 " broken=%" PRIu64
	    " broken_in_window=%" PRIu64 " window_s=%.3f\n", intact + broken, intact, broken,
	    broken_win, (now - win_start) / 1e9);
	for (i = 0; i < total; i++) {
		const struct long_conn *c = &conns[i];
		int64_t win = c->win_gap, pend = long_pending_gap(c, now);

		if (pend > win)
			win = pend;
		fprintf(f, "%s id=%" PRIu32 " local=%s state=%s%s%s sent=%" PRIu64 " echoed=%" PRIu64
		    " max_gap_ms=%.1f win_gap_ms=%.1f\n", c->tag.kind == K_LONG_TCP ? "tcp" : "udp",
		    c->id, c->local[0] ? c->local : "-",
		    c->state == LS_BROKEN ? "broken" : "intact", c->why ? ":" : "",
		    c->why ? c->why : "", c->sent, c->echoed, c->max_gap / 1e6, win / 1e6);
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		warnx_("%s: %s", path, strerror(errno));
}

/* SIGUSR2: a new window; SIGUSR1: write the stats (only with --stats). */
static void
long_signals(int sfd, const char *stats, struct long_conn *conns, uint64_t total,
    int64_t *win_start)
{
	struct signalfd_siginfo si;
	uint64_t i;

	while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
		if (stats == NULL)
			continue;
		if (si.ssi_signo == SIGUSR2) {
			*win_start = mono_ns();
			for (i = 0; i < total; i++)
				conns[i].win_gap = 0;
		} else
			long_write_stats(stats, conns, total, *win_start);
	}
}

static int
run_long(int argc, char **argv)
{
	static const struct option opts[] = {
		CLIENT_LONGOPTS,
		{ "conns", required_argument, NULL, 'n' },
		{ "udp-flows", required_argument, NULL, 'm' },
		{ "udp-port", required_argument, NULL, 'p' },
		{ "rate", required_argument, NULL, 'R' },
		{ "duration", required_argument, NULL, 'd' },
		{ "until-file", required_argument, NULL, 'U' },
		{ "grace", required_argument, NULL, 'G' },
		{ "stats", required_argument, NULL, 'X' },
		{ NULL, 0, NULL, 0 }
	};
	struct client_opts o = { .timeout = 5, .deadline = 0 };
	struct tag stag = { .kind = K_SIGNAL };
	const char *stats = NULL;
	int64_t win_start;
	sigset_t mask;
	int sfd;
	struct long_run r;
	struct long_conn *conns;
	struct epoll_event evs[MAX_EVENTS];
	struct itimerspec its;
	struct tag ttag = { .kind = K_TIMER };
	struct sockaddr_in uto;
	const char *until_file = NULL;
	uint64_t nconns = 0, nflows = 0, total, i, intact = 0, broken = 0;
	uint64_t udp_sent = 0, udp_echoed = 0;
	uint16_t uport = 0;
	double rate = 10, duration = 0, grace = 2;
	int64_t until, t_conn_end, t_stop = 0, t_grace = 0, max_gap = 0, udp_max_gap = 0, now;
	int opt, tfd, rc;
	bool stopping = false, hit_deadline = false;
	FILE *log;

	memset(&r, 0, sizeof(r));
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (client_opt(&o, opt))
			continue;
		switch (opt) {
		case 'n': nconns = parse_num(optarg, 0, MAX_LONG, "--conns"); break;
		case 'm': nflows = parse_num(optarg, 0, MAX_LONG, "--udp-flows"); break;
		case 'p': uport = (uint16_t)parse_num(optarg, 1, 65535, "--udp-port"); break;
		case 'R': rate = parse_secs(optarg, 0.1, 10000, "--rate"); break;
		case 'd': duration = parse_secs(optarg, 0.1, 7 * 86400, "--duration"); break;
		case 'U': until_file = optarg; break;
		case 'G': grace = parse_secs(optarg, 0, 60, "--grace"); break;
		case 'X': stats = optarg; break;
		default: return 2;
		}
	}
	if (optind != argc || !o.have_to || nconns + nflows == 0)
		die("long: need --to IP:PORT and --conns N and/or --udp-flows M");
	if (nflows > 0 && uport == 0)
		die("long: --udp-flows needs --udp-port");
	if (duration == 0 && until_file == NULL)
		die("long: need --duration S or --until-file F");
	if (o.src_count && o.src_from.s_addr == 0)
		die("long: --src-count needs --src-from");
	if (o.deadline == 0)
		o.deadline = duration > 0 ? duration + o.timeout + grace + 30 : 3600;
	total = nconns + nflows;
	if (raise_nofile() < total + 64)
		die("long: %" PRIu64 " sockets exceed the descriptor limit", total);

	log = open_log(o.log);
	if ((conns = calloc(total, sizeof(*conns))) == NULL)
		die("out of memory");
	if ((r.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	until = arm_deadline(o.deadline);
	/* The drill window's signals; without --stats they are ignored. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	if ((sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
		die("signalfd: %s", strerror(errno));
	ep_add(r.ep, sfd, EPOLLIN, &stag);
	win_start = mono_ns();

	uto = o.to;
	uto.sin_port = htons(uport);
	for (i = 0; i < total; i++) {
		struct long_conn *c = &conns[i];
		bool tcp = i < nconns;
		struct client_opts uo = o;

		c->tag.kind = tcp ? K_LONG_TCP : K_LONG_UDP;
		c->id = o.id_base + (uint32_t)(tcp ? i : i - nconns);
		if (!tcp)
			uo.to = uto;
		c->fd = client_connect(&uo, i, tcp ? SOCK_STREAM : SOCK_DGRAM);
		if (c->fd < 0) {
			c->state = LS_BROKEN;
			c->why = "connect";
			continue;
		}
		if (tcp) {
			c->state = LS_CONNECTING;
			ep_add(r.ep, c->fd, EPOLLOUT, c);
		} else {
			c->state = LS_UP;
			local_name(c->fd, c->local, sizeof(c->local));
			ep_add(r.ep, c->fd, EPOLLIN, c);
		}
	}

	/* Phase 1: every TCP connection established, or given up. */
	t_conn_end = mono_ns() + (int64_t)(o.timeout * 1e9);
	for (;;) {
		uint64_t pending = 0;
		int n, k;

		for (i = 0; i < nconns; i++)
			pending += conns[i].state == LS_CONNECTING;
		if (pending == 0 || mono_ns() >= t_conn_end)
			break;
		n = epoll_wait_until(r.ep, evs, t_conn_end, 100);
		for (k = 0; k < n; k++) {
			struct long_conn *c = evs[k].data.ptr;

			if (c->tag.kind == K_SIGNAL)
				long_signals(sfd, stats, conns, total, &win_start);
			else if (c->tag.kind == K_LONG_TCP)
				long_tcp_io(&r, c, evs[k].events);
			else
				long_udp_io(&r, c);
		}
	}
	for (i = 0; i < nconns; i++)
		if (conns[i].state == LS_CONNECTING)
			long_break(&conns[i], "connect-timeout");

	/* Phase 2: a record per connection and flow every 1/rate s. */
	if ((tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
		die("timerfd_create: %s", strerror(errno));
	memset(&its, 0, sizeof(its));
	its.it_interval.tv_sec = (time_t)(1 / rate);
	its.it_interval.tv_nsec = (long)((1 / rate - (double)its.it_interval.tv_sec) * 1e9);
	its.it_value.tv_nsec = 1;	/* first tick at once */
	if (timerfd_settime(tfd, 0, &its, NULL) != 0)
		die("timerfd_settime: %s", strerror(errno));
	ep_add(r.ep, tfd, EPOLLIN, &ttag);
	t_stop = duration > 0 ? mono_ns() + (int64_t)(duration * 1e9) : INT64_MAX;

	/* Phase 3 (stopping): no new records; wait up to --grace for the echoes. */
	for (;;) {
		int n, k;

		n = epoll_wait_until(r.ep, evs, stopping ? t_grace : until, 100);
		for (k = 0; k < n; k++) {
			struct tag *t = evs[k].data.ptr;

			if (t->kind == K_TIMER) {
				uint64_t ticks;

				if (read(tfd, &ticks, sizeof(ticks)) != sizeof(ticks) || stopping)
					continue;
				/* Missed ticks are not made up: rate is an upper bound. */
				for (i = 0; i < total; i++)
					long_tick(&r, &conns[i]);
				if (until_file != NULL && access(until_file, F_OK) == 0)
					t_stop = 0;
			} else if (t->kind == K_SIGNAL)
				long_signals(sfd, stats, conns, total, &win_start);
			else if (t->kind == K_LONG_TCP)
				long_tcp_io(&r, (struct long_conn *)t, evs[k].events);
			else
				long_udp_io(&r, (struct long_conn *)t);
		}
		now = mono_ns();
		if (now >= until) {
			hit_deadline = true;
			break;
		}
		if (!stopping && now >= t_stop) {
			stopping = true;
			t_grace = now + (int64_t)(grace * 1e9);
		}
		if (stopping) {
			bool all = true;

			for (i = 0; i < total && all; i++)
				if (conns[i].state == LS_UP && conns[i].echoed < conns[i].sent)
					all = false;
			if (all || now >= t_grace)
				break;
		}
	}

	/*
	 * Report.  A TCP connection still waiting for echoes has been stalled
	 * since its last one.  A UDP flow may just have lost its last datagram,
	 * so it counts only up to its last send (a flow that died still shows).
	 */
	now = mono_ns();
	for (i = 0; i < total; i++) {
		struct long_conn *c = &conns[i];
		bool tcp = c->tag.kind == K_LONG_TCP;

		if (tcp && c->state == LS_UP && c->echoed < c->sent &&
		    now - c->last_echo > c->max_gap)
			c->max_gap = now - c->last_echo;
		if (!tcp && c->echoed < c->sent && c->last_send - c->last_echo > c->max_gap)
			c->max_gap = c->last_send - c->last_echo;
		if (tcp) {
			if (c->state == LS_UP)
				intact++;
			else
				broken++;
			if (c->max_gap > max_gap)
				max_gap = c->max_gap;
		} else {
			udp_sent += c->sent;
			udp_echoed += c->echoed;
			if (c->max_gap > udp_max_gap)
				udp_max_gap = c->max_gap;
		}
		fprintf(log ? log : stdout, "%s id=%" PRIu32 " local=%s state=%s%s%s sent=%" PRIu64
		    " echoed=%" PRIu64 " max_gap_ms=%.1f\n", tcp ? "tcp" : "udp", c->id,
		    c->local[0] ? c->local : "-", c->state == LS_BROKEN ? "broken" : "intact",
		    c->why ? ":" : "", c->why ? c->why : "", c->sent, c->echoed, c->max_gap / 1e6);
		if (c->fd >= 0) {
			if (tcp)
				shutdown(c->fd, SHUT_WR);
			close(c->fd);
		}
	}
	printf("long: conns=%" PRIu64 " intact=%" PRIu64 " broken=%" PRIu64 " max_gap_ms=%.1f"
	    " udp_flows=%" PRIu64 " udp_sent=%" PRIu64 " udp_echoed=%" PRIu64
	    " udp_max_gap_ms=%.1f udp_errors=%" PRIu64 "%s\n",
	    nconns, intact, broken, max_gap / 1e6, nflows, udp_sent, udp_echoed,
	    udp_max_gap / 1e6, r.udp_errors, hit_deadline ? " deadline=hit" : "");
	if (log && fclose(log) != 0)
		warnx_("%s: %s", o.log, strerror(errno));
	rc = broken > 0 || hit_deadline ? 1 : 0;
	close(tfd);
	close(sfd);
	free(conns);
	return rc;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: labtraffic server --tcp PORT --udp PORT [--report FILE] [--max-entries N]\n"
	    "       labtraffic short --to IP:PORT --count N [--concurrency C]\n"
	    "                  [--src-from IP --src-count K] [--timeout S] [--log FILE]\n"
	    "       labtraffic long --to IP:PORT --conns N --udp-flows M --udp-port P\n"
	    "                  --rate R (--duration S | --until-file F) [--grace S]\n"
	    "                  [--src-from IP --src-count K] [--timeout S] [--log FILE]\n"
	    "                  [--stats FILE]\n"
	    "       every mode: [--deadline S]; clients: [--id-base N]\n");
}

int
main(int argc, char **argv)
{
	const char *mode;

	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage();
		return argc < 2 ? 2 : 0;
	}
	mode = argv[1];
	/* getopt_long starts at argv[1]: the mode plays argv[0]. */
	argc--;
	argv++;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(mode, "server") == 0)
		return run_server(argc, argv);
	if (strcmp(mode, "short") == 0)
		return run_short(argc, argv);
	if (strcmp(mode, "long") == 0)
		return run_long(argc, argv);
	usage();
	return 2;
}
