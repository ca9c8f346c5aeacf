/* NATS credentials and TLS settings, resolved once for every command; the secret of `tierbus
 * dev`. */
#include "bus/auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fs.h"
#include "core/status.h"

/* 256 bits: far beyond guessing over a network, and printable as 64 hex digits, which need no
 * quoting in a shell, a URL or nats-server's config. */
#define SECRET_BYTES 32

void tb_bus_auth_secret_path(const char *data_dir, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/%s", data_dir, TB_AUTH_SECRET_FILE);
}

/* Reads the secret at |path| into |out| (|cap| bytes), trimmed of the trailing newline.
 * TB_ERR_NOT_FOUND (no detail) when there is no file; TB_ERR_IO naming the path when it cannot be
 * read, is empty, or group or others may read it. */
static tb_status read_secret(const char *path, char *out, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return TB_ERR_NOT_FOUND;
  if (fd < 0)
    return tb__fail(TB_ERR_IO, "cannot read the NATS secret %s: %s", path, strerror(errno));
  struct stat sb;
  tb_status st = TB_OK;
  if (fstat(fd, &sb) != 0)
    st = tb__fail(TB_ERR_IO, "cannot stat the NATS secret %s: %s", path, strerror(errno));
  else if (!S_ISREG(sb.st_mode))
    st = tb__fail(TB_ERR_IO, "the NATS secret %s is not a regular file", path);
  else if ((sb.st_mode & 077) != 0)
    st = tb__fail(TB_ERR_IO,
                  "the NATS secret %s may be read by group or others (mode %04o); `chmod 600 %s`, "
                  "or delete it and restart `tierbus dev` for a new one",
                  path, (unsigned)(sb.st_mode & 07777), path);
  ssize_t n = 0;
  if (st == TB_OK) {
    n = read(fd, out, cap - 1);
    if (n < 0)
      st = tb__fail(TB_ERR_IO, "cannot read the NATS secret %s: %s", path, strerror(errno));
  }
  close(fd);
  if (st != TB_OK) return st;
  while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ')) n--;
  out[n] = '\0';
  for (ssize_t i = 0; i < n; i++)
    /* The same characters the config allows for a password (cnats does not escape them). */
    if (out[i] <= ' ' || out[i] > '~' || out[i] == '"' || out[i] == '\\')
      return tb__fail(TB_ERR_IO,
                      "the NATS secret %s holds a space, a control character, '\"' or '\\' (at "
                      "byte %zd); delete it and restart `tierbus dev` for a new one",
                      path, i + 1);
  if (n == 0)
    return tb__fail(
        TB_ERR_IO, "the NATS secret %s is empty; delete it and restart `tierbus dev` for a new one",
        path);
  return TB_OK;
}

/* Generates a secret into |path| (mode 0600) and |out|. Written under a temporary name and
 * linked into place, so that a reader never sees half a secret and two dev processes starting at
 * once on one data directory agree on the one that was linked first. */
static tb_status create_secret(const char *path, char *out, size_t cap) {
  unsigned char raw[SECRET_BYTES];
  size_t got = 0;
  while (got < sizeof(raw)) {
    ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return tb__fail(TB_ERR_IO, "getrandom for the NATS secret: %s", strerror(errno));
    got += (size_t)n;
  }
  char hex[2 * SECRET_BYTES + 2];
  for (size_t i = 0; i < sizeof(raw); i++) snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  explicit_bzero(raw, sizeof(raw));
  hex[2 * SECRET_BYTES] = '\n';
  hex[2 * SECRET_BYTES + 1] = '\0';

  char tmp[PATH_MAX + 64];
  snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
  tb_mkdirs(path, 0);
  unlink(tmp); /* a leftover of a dev killed right here */
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  tb_status st = TB_OK;
  if (fd < 0) {
    st = tb__fail(TB_ERR_IO, "cannot create the NATS secret %s: %s", tmp, strerror(errno));
  } else {
    size_t len = strlen(hex);
    /* The umask can only narrow 0600; fchmod makes the mode exact whatever it is. */
    if (fchmod(fd, 0600) != 0 || write(fd, hex, len) != (ssize_t)len || fsync(fd) != 0)
      st = tb__fail(TB_ERR_IO, "cannot write the NATS secret %s: %s", tmp, strerror(errno));
    close(fd);
    if (st == TB_OK && link(tmp, path) != 0) {
      if (errno == EEXIST)
        st = TB_ERR_NOT_FOUND; /* another process made one first: use that one */
      else
        st = tb__fail(TB_ERR_IO, "cannot create the NATS secret %s: %s", path, strerror(errno));
    }
    unlink(tmp);
  }
  if (st == TB_ERR_NOT_FOUND)
    st = read_secret(path, out, cap);
  else if (st == TB_OK)
    snprintf(out, cap, "%.*s", 2 * SECRET_BYTES, hex);
  explicit_bzero(hex, sizeof(hex));
  return st;
}

/* The host of the first server in |url| ("nats://u:p@host:4222,nats://b:4222" -> "host") into
 * |buf|; "" when there is none. */
static void first_host(const char *url, char *buf, size_t cap) {
  buf[0] = '\0';
  size_t len = strcspn(url, ",");
  char one[TB_URL_MAX];
  snprintf(one, sizeof(one), "%.*s", (int)len, url);
  char *p = one;
  while (*p == ' ') p++;
  char *scheme = strstr(p, "://");
  if (scheme != NULL) p = scheme + 3;
  p[strcspn(p, "/")] = '\0';
  char *at = strrchr(p, '@');
  if (at != NULL) p = at + 1;
  if (*p == '[') { /* [::1]:4222 */
    char *end = strchr(p, ']');
    if (end == NULL) return;
    *end = '\0';
    p++;
  } else {
    p[strcspn(p, ":")] = '\0';
  }
  snprintf(buf, cap, "%s", p);
}

static int is_ip(const char *host) {
  unsigned char addr[16];
  return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

tb_status tb_bus_auth_resolve(const tb_config_t *cfg, int create, tb_bus_auth_t *out) {
  tb_bus_auth_t a;
  memset(&a, 0, sizeof(a));
  if (cfg->nats_creds[0] != '\0') {
    a.kind = TB_AUTH_CREDS;
    snprintf(a.creds, sizeof(a.creds), "%s", cfg->nats_creds);
    snprintf(a.source, sizeof(a.source), "nats_creds (%s)", cfg->nats_creds);
  } else if (cfg->nats_token[0] != '\0') {
    a.kind = TB_AUTH_TOKEN;
    snprintf(a.secret, sizeof(a.secret), "%s", cfg->nats_token);
    snprintf(a.source, sizeof(a.source), "nats_token");
  } else if (cfg->nats_user[0] != '\0') {
    a.kind = TB_AUTH_PASSWORD;
    snprintf(a.user, sizeof(a.user), "%s", cfg->nats_user);
    snprintf(a.secret, sizeof(a.secret), "%s", cfg->nats_password);
    snprintf(a.source, sizeof(a.source), "nats_user/nats_password (user %s)", cfg->nats_user);
  } else {
    char path[PATH_MAX + 32];
    tb_bus_auth_secret_path(cfg->data_dir, path, sizeof(path));
    tb_status st = read_secret(path, a.secret, sizeof(a.secret));
    if (st == TB_ERR_NOT_FOUND && create) st = create_secret(path, a.secret, sizeof(a.secret));
    if (st == TB_OK) {
      a.kind = TB_AUTH_PASSWORD;
      snprintf(a.user, sizeof(a.user), "%s", TB_AUTH_DEV_USER);
      snprintf(a.source, sizeof(a.source), "the secret in %s (user %s)", path, TB_AUTH_DEV_USER);
    } else if (st == TB_ERR_NOT_FOUND) {
      snprintf(a.source, sizeof(a.source),
               "none (no nats_user/nats_password, nats_token or nats_creds is set, and there is "
               "no %s)",
               path);
    } else {
      explicit_bzero(&a, sizeof(a));
      return st;
    }
  }
  a.tls = cfg->nats_tls_ca[0] != '\0' || cfg->nats_tls_cert[0] != '\0' ||
          strncasecmp(cfg->nats_url, "tls://", 6) == 0;
  snprintf(a.tls_ca, sizeof(a.tls_ca), "%s", cfg->nats_tls_ca);
  snprintf(a.tls_cert, sizeof(a.tls_cert), "%s", cfg->nats_tls_cert);
  snprintf(a.tls_key, sizeof(a.tls_key), "%s", cfg->nats_tls_key);
  /* cnats checks the certificate's name only when told which (it was not built with
   * NATS_FORCE_HOST_VERIFICATION), and OpenSSL's name check matches DNS names, not IP
   * addresses: a URL naming an IP is checked against the CA only, unless a name is set. */
  if (cfg->nats_tls_hostname[0] != '\0') {
    snprintf(a.tls_hostname, sizeof(a.tls_hostname), "%s", cfg->nats_tls_hostname);
  } else {
    char host[256];
    first_host(cfg->nats_url, host, sizeof(host));
    if (host[0] != '\0' && !is_ip(host))
      snprintf(a.tls_hostname, sizeof(a.tls_hostname), "%s", host);
  }
  *out = a;
  explicit_bzero(&a, sizeof(a));
  return TB_OK;
}
