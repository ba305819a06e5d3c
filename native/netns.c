/*
 * vmlet's one piece of native code: the few network-namespace operations netd needs that Node
 * cannot do, so that none of them costs a process.
 *
 * A namespace belongs to a thread, and Node cannot switch one. Each operation that must act inside
 * a namespace runs on a short-lived thread that alone enters (or creates) it and then ends; the
 * process and every other thread stay where they were.
 *   udp4SocketInNetns(path, port) -> fd: a UDP socket bound to 0.0.0.0:port inside the namespace,
 *     broadcast enabled (netd's DHCP server adopts it with dgram's bind({ fd })).
 *   createNetns(path): a new network namespace, loopback up, bind-mounted on the existing file
 *     `path` (what `ip netns add` does, minus the process).
 *   removeNetns(path): detaches the bind mount and removes the file; a missing file is fine.
 *   tcp4SocketInNetns(path) -> fd: an unconnected, non-blocking TCP socket that belongs to the
 *     namespace (a socket keeps the namespace it was made in), for port-forward connections.
 *   udp6SocketOnDevice(path, device, port, group) -> fd: a non-blocking UDP socket bound to
 *     [::]:port and to `device` (SO_BINDTODEVICE) inside the namespace, member of the multicast
 *     `group` on that device (netd's DHCPv6 server: port 547, ff02::1:2). The device index is
 *     looked up inside the namespace, which Node cannot do.
 *   icmp6SocketOnDevice(path, device, destination) -> fd: a blocking raw ICMPv6 socket bound to
 *     `device`, connected to the link-local `destination` on it (ff02::1), hop limit 255 and
 *     receiving nothing: netd's router advertisements are written to it with write(2). The kernel
 *     fills in the ICMPv6 checksum.
 *   udp6Endpoint(fd, onDatagram) -> { send, close }: takes over a UDP socket made by
 *     udp6SocketOnDevice and reads it with recvmsg on a thread of its own, handing each datagram
 *     to onDatagram(err, data, address, port, ifindex) on the JS thread: the source address as
 *     text without a zone, and the arrival device's index in the socket's namespace. Node's dgram
 *     cannot be used for a link-local source: it names the source's scope id with
 *     if_indextoname in netd's own namespace (ENXIO, or the wrong device). send(data, address,
 *     port, ifindex) is one non-blocking sendto with that index as sin6_scope_id; close() wakes
 *     the thread (eventfd), joins it and closes both fds.
 *   sendFd(socketFd, text, fd) -> bytes sent: `text` on the connected unix stream socket with `fd`
 *     as SCM_RIGHTS ancillary data, non-blocking (a warm VM's QMP `add-fd`: QEMU gets an fd vmlet
 *     opened, for a device node it could not open itself). Not namespace work, but the one other
 *     thing Node cannot do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/icmp6.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <net/if.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>
#include <node_api.h>

/* One operation for a helper thread: its inputs, and its result or the step that failed. */
struct op {
  const char *path;
  int port;    /* udp4SocketInNetns, udp6SocketOnDevice */
  const char *device; /* udp6SocketOnDevice, icmp6SocketOnDevice */
  const char *group;  /* udp6SocketOnDevice: multicast group; icmp6SocketOnDevice: destination */
  int fd;      /* result of udp4SocketInNetns */
  int err;     /* errno of the failed step, 0 on success */
  const char *step;
};

/* Records the failed step with errno (read before close can change it), closes `fd` if open. */
static void *failed(struct op *op, const char *step, int fd) {
  op->err = errno;
  op->step = step;
  if (fd >= 0) close(fd);
  return NULL;
}

static void *bind_in_netns(void *arg) {
  struct op *op = arg;
  int ns = open(op->path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) return failed(op, "open netns", -1);
  if (setns(ns, CLONE_NEWNET) != 0) return failed(op, "setns", ns);
  close(ns);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return failed(op, "socket", -1);
  int on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, sizeof on) != 0) return failed(op, "SO_BROADCAST", fd);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)op->port);
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  /* No SO_REUSEADDR: a second server on the port in one namespace is a bug that must fail. */
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return failed(op, "bind", fd);
  op->fd = fd;
  return NULL;
}

static void *tcp_socket_in_netns(void *arg) {
  struct op *op = arg;
  int ns = open(op->path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) return failed(op, "open netns", -1);
  if (setns(ns, CLONE_NEWNET) != 0) return failed(op, "setns", ns);
  close(ns);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return failed(op, "socket", -1);
  op->fd = fd;
  return NULL;
}

/* Enters op->path's namespace on this thread and returns the index of op->device there (0: failed). */
static unsigned enter_and_find_device(struct op *op) {
  int ns = open(op->path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) {
    failed(op, "open netns", -1);
    return 0;
  }
  if (setns(ns, CLONE_NEWNET) != 0) {
    failed(op, "setns", ns);
    return 0;
  }
  close(ns);
  unsigned index = if_nametoindex(op->device);
  if (index == 0) failed(op, "find device", -1);
  return index;
}

static void *udp6_on_device(void *arg) {
  struct op *op = arg;
  unsigned index = enter_and_find_device(op);
  if (index == 0) return NULL;
  struct in6_addr group;
  if (inet_pton(AF_INET6, op->group, &group) != 1) {
    errno = EINVAL;
    return failed(op, "parse group", -1);
  }
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return failed(op, "socket", -1);
  int on = 1;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) != 0) return failed(op, "IPV6_V6ONLY", fd);
  /* Before bind: sockets on the same port bound to different devices do not clash. */
  if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, op->device, (socklen_t)strlen(op->device)) != 0) return failed(op, "SO_BINDTODEVICE", fd);
  struct sockaddr_in6 addr;
  memset(&addr, 0, sizeof addr);
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons((unsigned short)op->port);
  addr.sin6_addr = in6addr_any;
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return failed(op, "bind", fd);
  struct ipv6_mreq mreq;
  mreq.ipv6mr_multiaddr = group;
  mreq.ipv6mr_interface = index;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0) return failed(op, "join group", fd);
  op->fd = fd;
  return NULL;
}

static void *icmp6_on_device(void *arg) {
  struct op *op = arg;
  unsigned index = enter_and_find_device(op);
  if (index == 0) return NULL;
  struct sockaddr_in6 dst;
  memset(&dst, 0, sizeof dst);
  dst.sin6_family = AF_INET6;
  dst.sin6_scope_id = index;
  if (inet_pton(AF_INET6, op->group, &dst.sin6_addr) != 1) {
    errno = EINVAL;
    return failed(op, "parse destination", -1);
  }
  int fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
  if (fd < 0) return failed(op, "socket", -1);
  if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, op->device, (socklen_t)strlen(op->device)) != 0) return failed(op, "SO_BINDTODEVICE", fd);
  /* RFC 4861 §6.1.2: a receiver drops router advertisements whose hop limit is not 255. */
  int hops = 255;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops) != 0) return failed(op, "IPV6_MULTICAST_HOPS", fd);
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof hops) != 0) return failed(op, "IPV6_UNICAST_HOPS", fd);
  int off = 0;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &off, sizeof off) != 0) return failed(op, "IPV6_MULTICAST_LOOP", fd);
  /* Nothing is ever read from it: let no ICMPv6 message queue up. */
  struct icmp6_filter filter;
  ICMP6_FILTER_SETBLOCKALL(&filter);
  if (setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter) != 0) return failed(op, "ICMP6_FILTER", fd);
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) return failed(op, "connect", fd);
  op->fd = fd;
  return NULL;
}

static void *create_netns(void *arg) {
  struct op *op = arg;
  if (unshare(CLONE_NEWNET) != 0) return failed(op, "unshare", -1);
  if (mount("/proc/thread-self/ns/net", op->path, "none", MS_BIND, NULL) != 0) return failed(op, "bind mount", -1);
  /* Loopback up, as a namespace made for a pod has it. */
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return failed(op, "socket", -1);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) return failed(op, "get lo flags", fd);
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) return failed(op, "set lo up", fd);
  close(fd);
  return NULL;
}

/* An Error "step: strerror" with the errno's name in `code`. */
static napi_value errno_error(napi_env env, int err, const char *step) {
  char message[256];
  napi_value code, msg, error;
  snprintf(message, sizeof message, "%s: %s", step, strerror(err));
  const char *name = err == ENOENT ? "ENOENT" : err == EADDRINUSE ? "EADDRINUSE" : err == EACCES ? "EACCES" : err == EPERM ? "EPERM" : err == EINVAL ? "EINVAL"
    : err == ENODEV ? "ENODEV" : err == EAGAIN ? "EAGAIN" : err == EBADF ? "EBADF" : err == ENETUNREACH ? "ENETUNREACH" : err == EMSGSIZE ? "EMSGSIZE" : "EOTHER";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &error);
  return error;
}

static napi_value throw_errno(napi_env env, int err, const char *step) {
  napi_throw(env, errno_error(env, err, step));
  return NULL;
}

/*
 * Reads the call's arguments: a path (non-empty, no NUL, < 4096 bytes) into `path`, then, when
 * `port` is given, a port in 1..65535. Throws and returns 0 on anything else.
 */
static int read_args(napi_env env, napi_callback_info info, const char *usage, char *path, size_t size, int32_t *port) {
  size_t want = port ? 2 : 1;
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != want) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[0], path, size, &len) != napi_ok || len == 0 || len >= size - 1 || strlen(path) != len) {
    napi_throw_type_error(env, NULL, "path must be a non-empty string without NUL, shorter than 4096 bytes");
    return 0;
  }
  if (port && (napi_get_value_int32(env, argv[1], port) != napi_ok || *port < 1 || *port > 65535)) {
    napi_throw_range_error(env, NULL, "port must be in 1..65535");
    return 0;
  }
  return 1;
}

/* Runs `fn(op)` on a new thread and waits for it; throws and returns 0 when it failed. */
static int run_on_thread(napi_env env, void *(*fn)(void *), struct op *op) {
  pthread_t thread;
  int rc = pthread_create(&thread, NULL, fn, op);
  if (rc != 0) {
    throw_errno(env, rc, "pthread_create");
    return 0;
  }
  pthread_join(thread, NULL);
  if (op->err != 0) {
    throw_errno(env, op->err, op->step);
    return 0;
  }
  return 1;
}

/* udp4SocketInNetns(netnsPath: string, port: number): number (the fd) */
static napi_value udp4_socket_in_netns(napi_env env, napi_callback_info info) {
  char path[4097];
  int32_t port = 0;
  if (!read_args(env, info, "udp4SocketInNetns(netnsPath, port)", path, sizeof path, &port)) return NULL;
  struct op op = { path, port, NULL, NULL, -1, 0, NULL };
  if (!run_on_thread(env, bind_in_netns, &op)) return NULL;
  napi_value result;
  napi_create_int32(env, op.fd, &result);
  return result;
}

/* tcp4SocketInNetns(netnsPath: string): number (the fd) */
static napi_value tcp4_socket_in_netns(napi_env env, napi_callback_info info) {
  char path[4097];
  if (!read_args(env, info, "tcp4SocketInNetns(netnsPath)", path, sizeof path, NULL)) return NULL;
  struct op op = { path, 0, NULL, NULL, -1, 0, NULL };
  if (!run_on_thread(env, tcp_socket_in_netns, &op)) return NULL;
  napi_value result;
  napi_create_int32(env, op.fd, &result);
  return result;
}

/* Reads `value` as a string without NUL that fits `out`; throws and returns 0 otherwise. */
static int read_short_string(napi_env env, napi_value value, char *out, size_t size, const char *what) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, out, size, &len) != napi_ok || len == 0 || len >= size - 1 || strlen(out) != len) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  return 1;
}

/* udp6SocketOnDevice(netnsPath, device, port, group): number (the fd) */
static napi_value udp6_socket_on_device(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  char path[4097], device[IFNAMSIZ + 1], group[INET6_ADDRSTRLEN + 1];
  int32_t port = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4) {
    napi_throw_type_error(env, NULL, "udp6SocketOnDevice(netnsPath, device, port, group)");
    return NULL;
  }
  if (!read_short_string(env, argv[0], path, sizeof path, "path must be a non-empty string without NUL, shorter than 4096 bytes")) return NULL;
  if (!read_short_string(env, argv[1], device, sizeof device, "device must be an interface name")) return NULL;
  if (napi_get_value_int32(env, argv[2], &port) != napi_ok || port < 1 || port > 65535) {
    napi_throw_range_error(env, NULL, "port must be in 1..65535");
    return NULL;
  }
  if (!read_short_string(env, argv[3], group, sizeof group, "group must be an IPv6 address")) return NULL;
  struct op op = { path, port, device, group, -1, 0, NULL };
  if (!run_on_thread(env, udp6_on_device, &op)) return NULL;
  napi_value result;
  napi_create_int32(env, op.fd, &result);
  return result;
}

/* icmp6SocketOnDevice(netnsPath, device, destination): number (the fd) */
static napi_value icmp6_socket_on_device(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char path[4097], device[IFNAMSIZ + 1], destination[INET6_ADDRSTRLEN + 1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3) {
    napi_throw_type_error(env, NULL, "icmp6SocketOnDevice(netnsPath, device, destination)");
    return NULL;
  }
  if (!read_short_string(env, argv[0], path, sizeof path, "path must be a non-empty string without NUL, shorter than 4096 bytes")) return NULL;
  if (!read_short_string(env, argv[1], device, sizeof device, "device must be an interface name")) return NULL;
  if (!read_short_string(env, argv[2], destination, sizeof destination, "destination must be an IPv6 address")) return NULL;
  struct op op = { path, 0, device, destination, -1, 0, NULL };
  if (!run_on_thread(env, icmp6_on_device, &op)) return NULL;
  napi_value result;
  napi_create_int32(env, op.fd, &result);
  return result;
}

/* createNetns(path: string): undefined */
static napi_value create_netns_fn(napi_env env, napi_callback_info info) {
  char path[4097];
  if (!read_args(env, info, "createNetns(path)", path, sizeof path, NULL)) return NULL;
  struct op op = { path, 0, NULL, NULL, -1, 0, NULL };
  run_on_thread(env, create_netns, &op);
  return NULL;
}

/* removeNetns(path: string): undefined. Lazy detach: a running QEMU may still hold the namespace. */
static napi_value remove_netns_fn(napi_env env, napi_callback_info info) {
  char path[4097];
  if (!read_args(env, info, "removeNetns(path)", path, sizeof path, NULL)) return NULL;
  /* EINVAL: not a mount point (a half-made namespace file); ENOENT: already gone. */
  if (umount2(path, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) return throw_errno(env, errno, "unmount");
  if (unlink(path) != 0 && errno != ENOENT) return throw_errno(env, errno, "unlink");
  return NULL;
}

/* sendFd(socketFd: number, text: string, fd: number): number (bytes of `text` sent; the caller sends the rest) */
static napi_value send_fd_fn(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t sock = -1, fd = -1;
  char text[4096];
  size_t len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 || napi_get_value_int32(env, argv[0], &sock) != napi_ok ||
      napi_get_value_int32(env, argv[2], &fd) != napi_ok || sock < 0 || fd < 0) {
    napi_throw_type_error(env, NULL, "sendFd(socketFd, text, fd): two fds >= 0 and a string");
    return NULL;
  }
  if (napi_get_value_string_utf8(env, argv[1], text, sizeof text, &len) != napi_ok || len == 0 || len >= sizeof text - 1) {
    napi_throw_type_error(env, NULL, "text must be a non-empty string shorter than 4095 bytes");
    return NULL;
  }
  struct iovec iov = { text, len };
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = { 0 };
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  ssize_t sent;
  do sent = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  if (sent < 0) return throw_errno(env, errno, "sendmsg");
  napi_value result;
  napi_create_int64(env, (int64_t)sent, &result);
  return result;
}

/* udp6Endpoint: a UDP socket read on a thread of its own with recvmsg, written with sendto. */

#define DATAGRAM_MAX 65535
/* Datagrams waiting for the JS thread; more are dropped, as a full socket buffer would drop them. */
#define DELIVERY_QUEUE 256

/* One received datagram, or a receive error, on its way to the JS thread. */
struct datagram {
  int err;
  char address[INET6_ADDRSTRLEN];
  uint16_t port;
  uint32_t ifindex;
  size_t len;
  unsigned char data[];
};

struct endpoint {
  napi_env env;
  int fd;
  int wake; /* eventfd: written by endpoint_stop to end the receive thread */
  pthread_t thread;
  napi_threadsafe_function deliver;
  /* The fields below are touched on the JS thread only. */
  int closed;
  int deliver_alive;
  int refs; /* the JS handle and the threadsafe function; freed when both are gone */
  unsigned char buf[DATAGRAM_MAX];
};

static void endpoint_unref(struct endpoint *ep) {
  if (--ep->refs == 0) free(ep);
}

static void post(struct endpoint *ep, struct datagram *d) {
  if (napi_call_threadsafe_function(ep->deliver, d, napi_tsfn_nonblocking) != napi_ok) free(d);
}

static void post_error(struct endpoint *ep, int err) {
  struct datagram *d = calloc(1, sizeof *d);
  if (!d) return;
  d->err = err;
  post(ep, d);
}

static void *receive_loop(void *arg) {
  struct endpoint *ep = arg;
  struct pollfd fds[2] = { { ep->fd, POLLIN, 0 }, { ep->wake, POLLIN, 0 } };
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      post_error(ep, errno);
      return NULL;
    }
    if (fds[1].revents) return NULL;
    if (!fds[0].revents) continue;
    struct sockaddr_in6 from;
    union { char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))]; struct cmsghdr align; } control;
    struct iovec iov = { ep->buf, sizeof ep->buf };
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    ssize_t n = recvmsg(ep->fd, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      int err = errno;
      post_error(ep, err);
      /* Pending socket errors (an ICMP error) clear on reading; these never do. */
      if (err == EBADF || err == ENOTSOCK || err == EFAULT || err == EINVAL) return NULL;
      continue;
    }
    if (from.sin6_family != AF_INET6 || (msg.msg_flags & MSG_TRUNC)) continue;
    uint32_t ifindex = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
        struct in6_pktinfo info;
        memcpy(&info, CMSG_DATA(c), sizeof info);
        ifindex = info.ipi6_ifindex;
      }
    }
    struct datagram *d = malloc(sizeof *d + (size_t)n);
    if (!d) continue;
    d->err = 0;
    inet_ntop(AF_INET6, &from.sin6_addr, d->address, sizeof d->address);
    d->port = ntohs(from.sin6_port);
    d->ifindex = ifindex;
    d->len = (size_t)n;
    memcpy(d->data, ep->buf, (size_t)n);
    post(ep, d);
  }
}

/* On the JS thread: onDatagram(err, data, address, port, ifindex); nothing once closed. */
static void deliver_js(napi_env env, napi_value callback, void *context, void *data) {
  struct endpoint *ep = context;
  struct datagram *d = data;
  if (env != NULL && !ep->closed) {
    napi_value argv[5], undefined;
    napi_get_undefined(env, &undefined);
    for (int i = 0; i < 5; i++) argv[i] = undefined;
    if (d->err) {
      argv[0] = errno_error(env, d->err, "recvmsg");
    } else {
      void *copy;
      napi_get_null(env, &argv[0]);
      napi_create_buffer_copy(env, d->len, d->data, &copy, &argv[1]);
      napi_create_string_utf8(env, d->address, NAPI_AUTO_LENGTH, &argv[2]);
      napi_create_uint32(env, d->port, &argv[3]);
      napi_create_uint32(env, d->ifindex, &argv[4]);
    }
    napi_call_function(env, undefined, callback, 5, argv, NULL);
  }
  free(d);
}

static void deliver_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct endpoint *ep = data;
  ep->deliver_alive = 0;
  endpoint_unref(ep);
}

static void endpoint_cleanup_hook(void *arg);

/* Ends the receive thread and closes both fds; idempotent. */
static void endpoint_stop(struct endpoint *ep, int from_cleanup_hook) {
  if (ep->closed) return;
  ep->closed = 1;
  uint64_t one = 1;
  ssize_t written;
  do written = write(ep->wake, &one, sizeof one);
  while (written < 0 && errno == EINTR);
  pthread_join(ep->thread, NULL);
  close(ep->fd);
  close(ep->wake);
  if (!from_cleanup_hook) napi_remove_env_cleanup_hook(ep->env, endpoint_cleanup_hook, ep);
  if (ep->deliver_alive) napi_release_threadsafe_function(ep->deliver, napi_tsfn_abort);
}

/* The environment goes away (its threadsafe functions with it) before close(): stop first. */
static void endpoint_cleanup_hook(void *arg) {
  endpoint_stop(arg, 1);
}

static void handle_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct endpoint *ep = data;
  endpoint_stop(ep, 0);
  endpoint_unref(ep);
}

static struct endpoint *endpoint_of(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  void *data = NULL;
  if (napi_get_cb_info(env, info, argc, argv, NULL, &data) != napi_ok || data == NULL) {
    napi_throw_error(env, NULL, "no endpoint");
    return NULL;
  }
  return data;
}

/* send(data: Buffer, address: string, port: number, ifindex: number): number (bytes sent) */
static napi_value endpoint_send(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  struct endpoint *ep = endpoint_of(env, info, &argc, argv);
  if (!ep) return NULL;
  if (ep->closed) return throw_errno(env, EBADF, "send on a closed endpoint");
  bool is_buffer = false;
  void *bytes = NULL;
  size_t len = 0;
  char address[INET6_ADDRSTRLEN + 1];
  int32_t port = 0;
  uint32_t ifindex = 0;
  if (argc != 4 || napi_is_buffer(env, argv[0], &is_buffer) != napi_ok || !is_buffer || napi_get_buffer_info(env, argv[0], &bytes, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "send(data: Buffer, address, port, ifindex)");
    return NULL;
  }
  if (!read_short_string(env, argv[1], address, sizeof address, "address must be an IPv6 address")) return NULL;
  if (napi_get_value_int32(env, argv[2], &port) != napi_ok || port < 1 || port > 65535) {
    napi_throw_range_error(env, NULL, "port must be in 1..65535");
    return NULL;
  }
  if (napi_get_value_uint32(env, argv[3], &ifindex) != napi_ok) {
    napi_throw_type_error(env, NULL, "ifindex must be a number");
    return NULL;
  }
  struct sockaddr_in6 to;
  memset(&to, 0, sizeof to);
  to.sin6_family = AF_INET6;
  to.sin6_port = htons((unsigned short)port);
  to.sin6_scope_id = ifindex;
  if (inet_pton(AF_INET6, address, &to.sin6_addr) != 1) {
    napi_throw_type_error(env, NULL, "address must be an IPv6 address without a zone");
    return NULL;
  }
  ssize_t sent;
  do sent = sendto(ep->fd, bytes, len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&to, sizeof to);
  while (sent < 0 && errno == EINTR);
  if (sent < 0) return throw_errno(env, errno, "sendto");
  napi_value result;
  napi_create_int64(env, (int64_t)sent, &result);
  return result;
}

/* close(): undefined */
static napi_value endpoint_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  struct endpoint *ep = endpoint_of(env, info, &argc, NULL);
  if (ep) endpoint_stop(ep, 0);
  return NULL;
}

/*
 * udp6Endpoint(fd: number, onDatagram: Function): { send, close }. Takes over `fd` when it
 * returns; when it throws, the fd is still the caller's.
 */
static napi_value udp6_endpoint_fn(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1;
  napi_valuetype type = napi_undefined;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_typeof(env, argv[1], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, NULL, "udp6Endpoint(fd >= 0, onDatagram: function)");
    return NULL;
  }
  int on = 1;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on) != 0) return throw_errno(env, errno, "IPV6_RECVPKTINFO");
  struct endpoint *ep = calloc(1, sizeof *ep);
  if (!ep) return throw_errno(env, ENOMEM, "allocate endpoint");
  ep->env = env;
  ep->fd = fd;
  ep->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (ep->wake < 0) {
    int err = errno;
    free(ep);
    return throw_errno(env, err, "eventfd");
  }
  napi_value name;
  napi_create_string_utf8(env, "vmlet udp6Endpoint", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, DELIVERY_QUEUE, 1, ep, deliver_finalize, ep, deliver_js, &ep->deliver) != napi_ok) {
    close(ep->wake);
    free(ep);
    napi_throw_error(env, NULL, "cannot create the delivery of udp6Endpoint");
    return NULL;
  }
  ep->deliver_alive = 1;
  ep->refs = 1; /* the threadsafe function's, until the handle exists */
  int rc = pthread_create(&ep->thread, NULL, receive_loop, ep);
  if (rc != 0) {
    close(ep->wake);
    napi_release_threadsafe_function(ep->deliver, napi_tsfn_abort); /* its finalizer frees ep */
    return throw_errno(env, rc, "pthread_create");
  }
  napi_add_env_cleanup_hook(env, endpoint_cleanup_hook, ep);
  napi_value handle;
  napi_property_descriptor methods[] = {
    { "send", NULL, endpoint_send, NULL, NULL, NULL, napi_default, ep },
    { "close", NULL, endpoint_close, NULL, NULL, NULL, napi_default, ep },
  };
  napi_create_object(env, &handle);
  napi_define_properties(env, handle, 2, methods);
  ep->refs = 2;
  napi_wrap(env, handle, ep, handle_finalize, NULL, NULL);
  return handle;
}

static void export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  napi_set_named_property(env, exports, name, fn);
}

NAPI_MODULE_INIT() {
  export_fn(env, exports, "udp4SocketInNetns", udp4_socket_in_netns);
  export_fn(env, exports, "createNetns", create_netns_fn);
  export_fn(env, exports, "tcp4SocketInNetns", tcp4_socket_in_netns);
  export_fn(env, exports, "removeNetns", remove_netns_fn);
  export_fn(env, exports, "udp6SocketOnDevice", udp6_socket_on_device);
  export_fn(env, exports, "icmp6SocketOnDevice", icmp6_socket_on_device);
  export_fn(env, exports, "sendFd", send_fd_fn);
  export_fn(env, exports, "udp6Endpoint", udp6_endpoint_fn);
  return exports;
}
