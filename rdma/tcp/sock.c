/* SPDX-License-Identifier: MIT */
/*
 * sock.c - socket helpers of the `tcp` backend, shared by its server and its client
 * connections: parsing and formatting addresses, socket options, blocking send and receive of
 * whole frames, connect with a timeout, and the constant-time token comparison. Every error is
 * turned into the domain errno of xfer.h here, once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "tcp_i.h"

void kvfs_tcp_format_addr(const struct sockaddr_storage *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	}
}

void kvfs_tcp_set_timeouts(int fd, int rcv_ms, int snd_ms)
{
	struct timeval rtv = {.tv_sec = rcv_ms / 1000, .tv_usec = (rcv_ms % 1000) * 1000};
	struct timeval stv = {.tv_sec = snd_ms / 1000, .tv_usec = (snd_ms % 1000) * 1000};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rtv, sizeof(rtv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &stv, sizeof(stv));
}

/*
 * Options for a data connection (best effort: a failure only costs speed). No explicit
 * SO_SNDBUF / SO_RCVBUF: setting them turns off the kernel's autotuning, which grows the
 * buffers up to tcp_rmem/tcp_wmem's maximum (larger than rmem_max allows explicitly).
 */
void kvfs_tcp_sock_tune(int fd)
{
	int one = 1, idle = 10, intvl = 5, cnt = 3;
	unsigned user_timeout = USER_TIMEOUT_MS;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
}

/* A socket error as the domain errno of xfer.h: the connection broke. */
static int io_error(int err)
{
	if (err == EAGAIN || err == EWOULDBLOCK)
		return -ETIMEDOUT;
	return -EIO;
}

/* Receive exactly @len bytes (blocking). -EIO on EOF or error, -ETIMEDOUT on SO_RCVTIMEO. */
int kvfs_tcp_recv_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, MSG_WAITALL);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n == 0) {
			return -EIO;
		} else if (errno != EINTR) {
			return io_error(errno);
		}
	}
	return 0;
}

/* Receive and drop @len bytes. */
int kvfs_tcp_drain(int fd, uint64_t len)
{
	char scratch[SCRATCH];

	while (len) {
		size_t n = len < sizeof(scratch) ? (size_t)len : sizeof(scratch);
		int r = kvfs_tcp_recv_full(fd, scratch, n);

		if (r < 0)
			return r;
		len -= n;
	}
	return 0;
}

/* Send all of @iov (blocking; @iov is consumed). */
int kvfs_tcp_send_iov(int fd, struct iovec *iov, int n, int flags)
{
	while (n > 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(fd, &mh, flags | MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return io_error(errno);
		}
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

int kvfs_tcp_send_full(int fd, const void *buf, size_t len)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

	return kvfs_tcp_send_iov(fd, &iov, 1, 0);
}

/* Connect @fd with a timeout. Returns 0 or the domain errno for an unreachable peer. */
int kvfs_tcp_connect_timeout(int fd, const struct sockaddr_storage *sa, socklen_t len, int ms)
{
	int flags = fcntl(fd, F_GETFL), err = 0;
	socklen_t elen = sizeof(err);
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -EIO;
	if (connect(fd, (const struct sockaddr *)sa, len) < 0) {
		if (errno != EINPROGRESS)
			err = errno;
		else if (poll(&pfd, 1, ms) == 0)
			err = ETIMEDOUT;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			err = errno;
	}
	if (fcntl(fd, F_SETFL, flags) < 0 && !err)
		err = EIO;
	switch (err) {
	case 0:
		return 0;
	case ETIMEDOUT:
		return -ETIMEDOUT;
	case ECONNREFUSED:
	case ENETUNREACH:
	case EHOSTUNREACH:
		return -EHOSTUNREACH;
	default:
		return -EIO;
	}
}

/* Equal tokens, in time independent of where they differ. */
bool kvfs_tcp_token_equal(const uint8_t *a, uint16_t alen, const uint8_t *b, uint16_t blen)
{
	volatile unsigned diff = alen ^ blen;

	for (unsigned i = 0; i < KVFS_WIRE_TOKEN_MAX; i++)
		diff |= (unsigned)(a[i] ^ b[i]);
	return diff == 0;
}
