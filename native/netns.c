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
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>
#include <node_api.h>

struct request {
  const char *netns_path;
  int port;
  int fd;      /* result */
  int err;     /* errno of the failed step, 0 on success */
  const char *step;
};

static void *bind_in_netns(void *arg) {
  struct request *req = arg;
  int ns = open(req->netns_path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) { req->err = errno; req->step = "open netns"; return NULL; }
  if (setns(ns, CLONE_NEWNET) != 0) { req->err = errno; req->step = "setns"; close(ns); return NULL; }
  close(ns);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) { req->err = errno; req->step = "socket"; return NULL; }
  int on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, sizeof on) != 0) { req->err = errno; req->step = "SO_BROADCAST"; close(fd); return NULL; }
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)req->port);
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  /* No SO_REUSEADDR: a second server on the port in one namespace is a bug that must fail. */
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { req->err = errno; req->step = "bind"; close(fd); return NULL; }
  req->fd = fd;
  return NULL;
}

struct netns_request {
  const char *path;
  int err;
  const char *step;
};

static void *create_netns(void *arg) {
  struct netns_request *req = arg;
  if (unshare(CLONE_NEWNET) != 0) { req->err = errno; req->step = "unshare"; return NULL; }
  if (mount("/proc/thread-self/ns/net", req->path, "none", MS_BIND, NULL) != 0) { req->err = errno; req->step = "bind mount"; return NULL; }
  /* Loopback up, as a namespace made for a pod has it. */
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) { req->err = errno; req->step = "socket"; return NULL; }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) { req->err = errno; req->step = "get lo flags"; close(fd); return NULL; }
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) { req->err = errno; req->step = "set lo up"; close(fd); return NULL; }
  close(fd);
  return NULL;
}

static napi_value throw_errno(napi_env env, int err, const char *step) {
  char message[256];
  napi_value code, msg, error;
  snprintf(message, sizeof message, "%s: %s", step, strerror(err));
  napi_create_string_utf8(env, err == ENOENT ? "ENOENT" : err == EADDRINUSE ? "EADDRINUSE" : err == EACCES ? "EACCES" : err == EPERM ? "EPERM" : err == EINVAL ? "EINVAL" : "EOTHER", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &error);
  napi_throw(env, error);
  return NULL;
}

/* Reads a path argument (non-empty, no NUL, < 4096 bytes) into `path`; throws and returns 0 otherwise. */
static int path_arg(napi_env env, napi_value value, char *path, size_t size) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, path, size, &len) != napi_ok || len == 0 || len >= size - 1 || strlen(path) != len) {
    napi_throw_type_error(env, NULL, "path must be a non-empty string without NUL, shorter than 4096 bytes");
    return 0;
  }
  return 1;
}

/* udp4SocketInNetns(netnsPath: string, port: number): number (the fd) */
static napi_value udp4_socket_in_netns(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2) {
    napi_throw_type_error(env, NULL, "udp4SocketInNetns(netnsPath, port)");
    return NULL;
  }
  char path[4097];
  if (!path_arg(env, argv[0], path, sizeof path)) return NULL;
  int32_t port = 0;
  if (napi_get_value_int32(env, argv[1], &port) != napi_ok || port < 1 || port > 65535) {
    napi_throw_range_error(env, NULL, "port must be in 1..65535");
    return NULL;
  }
  struct request req = { path, port, -1, 0, NULL };
  pthread_t thread;
  int rc = pthread_create(&thread, NULL, bind_in_netns, &req);
  if (rc != 0) return throw_errno(env, rc, "pthread_create");
  pthread_join(thread, NULL);
  if (req.err != 0) return throw_errno(env, req.err, req.step);
  napi_value result;
  napi_create_int32(env, req.fd, &result);
  return result;
}

/* createNetns(path: string): undefined */
static napi_value create_netns_fn(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char path[4097];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1) {
    napi_throw_type_error(env, NULL, "createNetns(path)");
    return NULL;
  }
  if (!path_arg(env, argv[0], path, sizeof path)) return NULL;
  struct netns_request req = { path, 0, NULL };
  pthread_t thread;
  int rc = pthread_create(&thread, NULL, create_netns, &req);
  if (rc != 0) return throw_errno(env, rc, "pthread_create");
  pthread_join(thread, NULL);
  if (req.err != 0) return throw_errno(env, req.err, req.step);
  return NULL;
}

/* removeNetns(path: string): undefined. Lazy detach: a running QEMU may still hold the namespace. */
static napi_value remove_netns_fn(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char path[4097];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1) {
    napi_throw_type_error(env, NULL, "removeNetns(path)");
    return NULL;
  }
  if (!path_arg(env, argv[0], path, sizeof path)) return NULL;
  /* EINVAL: not a mount point (a half-made namespace file); ENOENT: already gone. */
  if (umount2(path, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) return throw_errno(env, errno, "unmount");
  if (unlink(path) != 0 && errno != ENOENT) return throw_errno(env, errno, "unlink");
  return NULL;
}

static void export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  napi_set_named_property(env, exports, name, fn);
}

NAPI_MODULE_INIT() {
  export_fn(env, exports, "udp4SocketInNetns", udp4_socket_in_netns);
  export_fn(env, exports, "createNetns", create_netns_fn);
  export_fn(env, exports, "removeNetns", remove_netns_fn);
  return exports;
}
