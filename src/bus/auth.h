/* How tierbus authenticates to NATS (issue 11, the locked bus): the credentials and TLS settings
 * of every connection, resolved in one place from the config and the data directory, and the
 * secret `tierbus dev` generates for the nats-server it starts. A library layer: statuses, no
 * logging. */
#ifndef TB_BUS_AUTH_H
#define TB_BUS_AUTH_H

#include <limits.h>

#include "config/config.h"
#include "tierbus.h"

/* The user name that goes with the generated secret. */
#define TB_AUTH_DEV_USER "tierbus"
/* The generated secret's file in the data directory: one line, the password of TB_AUTH_DEV_USER,
 * mode 0600. */
#define TB_AUTH_SECRET_FILE "nats-password"

typedef enum tb_auth_kind {
  TB_AUTH_NONE,     /* no credentials: an open server (the test harness's, a bench's) */
  TB_AUTH_PASSWORD, /* user + password: nats_user/nats_password, or the generated secret */
  TB_AUTH_TOKEN,    /* nats_token */
  TB_AUTH_CREDS,    /* nats_creds: a JWT + NKey seed file, for servers in operator mode */
} tb_auth_kind;

/* Everything a connection needs besides its URL. Plain data: copy it freely. */
typedef struct tb_bus_auth {
  tb_auth_kind kind;
  char user[128];
  char secret[256];            /* password or token */
  char creds[PATH_MAX];        /* TB_AUTH_CREDS: the file */
  char source[PATH_MAX + 192]; /* where the credentials came from, for messages */
  int tls;                     /* 1: TLS on every connection */
  char tls_ca[PATH_MAX];       /* "" = the system's CAs */
  char tls_cert[PATH_MAX];     /* "" = no client certificate */
  char tls_key[PATH_MAX];
  char tls_hostname[256]; /* the name the server's certificate must carry; "" = chain only */
} tb_bus_auth_t;

/* Resolves the credentials and TLS settings every command connects with, the same way for all:
 * configured credentials (nats_user/nats_password, nats_token or nats_creds, from the file, the
 * environment or --set) win; else the secret in <data_dir>/nats-password when it exists; else
 * none. With |create| (only `tierbus dev`, which is about to start a server with it) a missing
 * secret is generated: 32 random bytes from getrandom(2), written as hex with mode 0600, so that
 * the server's restarts and every later command find the same one. TLS is on when nats_tls_ca or
 * nats_tls_cert is set or nats_url starts with tls://.
 *
 * TB_ERR_IO naming the path when the secret cannot be read or written, or when group or others
 * may read it (as ssh does with keys: say so rather than use a secret that leaked). |out| is
 * written only on success. cfg is validated beforehand (tb_config_validate). */
tb_status tb_bus_auth_resolve(const tb_config_t *cfg, int create, tb_bus_auth_t *out);

/* Writes the path of the generated secret of |data_dir| into |buf|. */
void tb_bus_auth_secret_path(const char *data_dir, char *buf, size_t cap);

#endif
