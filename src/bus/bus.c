/* JetStream connection, provisioning, publishing and fetching. */
#include "bus/bus.h"

#include <ctype.h>
#include <jansson.h>
#include <pthread.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/util.h"
#include "core/status.h"

#define FAILED_IDS_MAX 64

struct tb_bus {
  natsConnection *nc; /* sends at once: pull requests, publishes */
  jsCtx *js;
  /* Acks, naks and in-progress replies, opened with the first of them: left to cnats' flusher,
   * which gathers what arrives within a millisecond into one write. Acks are off the latency
   * path (the commit is what makes a message done), and one send() per ack was 9% of a worker's
   * CPU at full speed (issue 9). NULL until then, or when it could not be opened (|nc| then
   * carries the acks). */
  natsConnection *ack_nc;
  int ack_tried;
  char url[TB_URL_MAX], name[64];
  tb_bus_auth_t auth; /* the ack connection authenticates like |nc| */
  /* Async publish failures, filled by the cnats callback thread; also guards ack_nc's opening. */
  pthread_mutex_t mu;
  int64_t async_failed;
};

/* A tier's pull consumer, driven by hand rather than through natsSubscription_Fetch: cnats 3.4
 * loses messages that arrive for a fetch it has already given up on (tests/bus shows it), and a
 * long-poll there waits for the whole batch. Here one pull request is open at a time, asking for
 * no more than the free slots; the server pushes each message into our inbox the moment it
 * exists, and whatever arrives is kept until taken. */
struct tb_consumer {
  tb_bus_t *bus;
  natsSubscription *sub; /* core subscription on |inbox| */
  char inbox[128];
  char next_subject[256]; /* $JS.API.CONSUMER.MSG.NEXT.<stream>.<durable> */
  int remaining;          /* messages the open request may still deliver; 0 = none open */
  int64_t deadline_us;    /* monotonic: past this the open request is presumed lost */
};

/* How long a pull request stays open at the server; an idle tier renews it this often. */
#define PULL_EXPIRES_MS 2000

tb_status tb__nats_fail(natsStatus s, jsErrCode jerr, const char *what) {
  tb_status st = TB_ERR_NATS;
  if (s == NATS_TIMEOUT)
    st = TB_ERR_TIMEOUT;
  else if (s == NATS_NO_SERVER || s == NATS_CONNECTION_CLOSED || s == NATS_NOT_YET_CONNECTED ||
           s == NATS_CONNECTION_DISCONNECTED || s == NATS_STALE_CONNECTION ||
           s == NATS_NO_RESPONDERS)
    st = TB_ERR_UNAVAILABLE;
  /* Refused credentials and failed TLS handshakes do not mend by retrying: callers tell them
   * from an absent server by this status. */
  else if (s == NATS_CONNECTION_AUTH_FAILED || s == NATS_SSL_ERROR || s == NATS_NOT_PERMITTED)
    st = TB_ERR_AUTH;
  const char *last = nats_GetLastError(NULL);
  if (jerr != 0)
    return tb__fail(st, "%s: %s (js error %d%s%s)", what, natsStatus_GetText(s), (int)jerr,
                    last && *last ? ": " : "", last ? last : "");
  return tb__fail(st, "%s: %s%s%s", what, natsStatus_GetText(s), last && *last ? ": " : "",
                  last && *last ? last : "");
}

static void on_async_error(jsCtx *js, jsPubAckErr *pae, void *closure) {
  tb_bus_t *bus = closure;
  pthread_mutex_lock(&bus->mu);
  bus->async_failed++;
  pthread_mutex_unlock(&bus->mu);
}

/* A credentials or TLS file that cnats could not use: the option that named it and OpenSSL's or
 * cnats' reason. */
static tb_status file_fail(natsStatus s, const char *key, const char *path) {
  const char *last = nats_GetLastError(NULL);
  return tb__fail(TB_ERR_CONFIG, "%s: cannot use '%s': %s%s%s", key, path, natsStatus_GetText(s),
                  last && *last ? ": " : "", last && *last ? last : "");
}

/* Sets |auth|'s credentials and TLS on |opts|. cnats loads the TLS files here, so a file that is
 * not PEM fails now: TB_ERR_CONFIG naming the option, not a connection error. */
static tb_status set_auth(natsOptions *opts, const tb_bus_auth_t *auth) {
  natsStatus s = NATS_OK;
  if (auth->kind == TB_AUTH_PASSWORD) s = natsOptions_SetUserInfo(opts, auth->user, auth->secret);
  if (auth->kind == TB_AUTH_TOKEN) s = natsOptions_SetToken(opts, auth->secret);
  if (auth->kind == TB_AUTH_CREDS &&
      (s = natsOptions_SetUserCredentialsFromFiles(opts, auth->creds, NULL)) != NATS_OK)
    return file_fail(s, "nats_creds", auth->creds);
  if (s == NATS_OK && auth->tls) s = natsOptions_SetSecure(opts, true);
  if (s != NATS_OK) return tb__nats_fail(s, 0, "NATS options");
  if (auth->tls_ca[0] != '\0' &&
      (s = natsOptions_LoadCATrustedCertificates(opts, auth->tls_ca)) != NATS_OK)
    return file_fail(s, "nats_tls_ca", auth->tls_ca);
  if (auth->tls_cert[0] != '\0' &&
      (s = natsOptions_LoadCertificatesChain(opts, auth->tls_cert, auth->tls_key)) != NATS_OK)
    return file_fail(s, "nats_tls_cert/nats_tls_key", auth->tls_cert);
  if (auth->tls && auth->tls_hostname[0] != '\0' &&
      (s = natsOptions_SetExpectedHostname(opts, auth->tls_hostname)) != NATS_OK)
    return tb__nats_fail(s, 0, "nats_tls_hostname");
  return TB_OK;
}

natsStatus tb_bus_set_servers(natsOptions *opts, const char *url) {
  if (strchr(url, ',') == NULL) return natsOptions_SetURL(opts, url);
  char copy[TB_URL_MAX], *save = NULL;
  const char *servers[TB_URL_MAX / 8];
  int n = 0;
  snprintf(copy, sizeof(copy), "%s", url);
  for (char *tok = strtok_r(copy, ", ", &save); tok != NULL && n < (int)TB_COUNTOF(servers);
       tok = strtok_r(NULL, ", ", &save))
    servers[n++] = tok;
  return n > 0 ? natsOptions_SetServers(opts, servers, n) : NATS_INVALID_ARG;
}

/* Connects to |url| as |name| with |auth|. |send_asap| writes each message from the calling
 * thread; without it cnats' flusher thread writes them, up to a millisecond later, many in one
 * send. TB_ERR_CONFIG from set_auth(); otherwise tb__nats_fail()'s status of the connect. */
static tb_status open_conn(natsConnection **nc, const char *url, const char *name,
                           const tb_bus_auth_t *auth, int send_asap) {
  natsOptions *opts = NULL;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = tb_bus_set_servers(opts, url);
  if (s == NATS_OK) s = natsOptions_SetName(opts, name);
  tb_status st = s == NATS_OK ? set_auth(opts, auth) : TB_OK;
  /* Keep reconnecting for as long as the process lives: a server restart must not end a worker. */
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 250);
  if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(opts, 64 * 1024 * 1024);
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 2000);
  if (s == NATS_OK && send_asap) s = natsOptions_SetSendAsap(opts, true);
  /* Async subscriptions (the max-deliveries advisories, one per consumer) share cnats' delivery
   * pool instead of a thread each. */
  if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(opts, true);
  if (s == NATS_OK && st == TB_OK) s = natsConnection_Connect(nc, opts);
  natsOptions_Destroy(opts);
  if (st == TB_OK && s != NATS_OK) {
    char what[TB_URL_MAX + 32];
    snprintf(what, sizeof(what), "connect to %s", url);
    st = tb__nats_fail(s, 0, what);
  }
  return st;
}

tb_status tb_bus_connect(tb_bus_t **out, const char *url, const char *name) {
  return tb_bus_connect_auth(out, url, name, NULL);
}

tb_status tb_bus_connect_auth(tb_bus_t **out, const char *url, const char *name,
                              const tb_bus_auth_t *auth) {
  tb_bus_t *bus = calloc(1, sizeof(*bus));
  if (bus == NULL) return tb__fail(TB_ERR_NOMEM, "bus");
  pthread_mutex_init(&bus->mu, NULL);
  snprintf(bus->url, sizeof(bus->url), "%s", url);
  snprintf(bus->name, sizeof(bus->name), "%s-acks", name);
  if (auth != NULL) bus->auth = *auth; /* else calloc's zero: TB_AUTH_NONE, no TLS */
  /* Pull requests and publishes are on the critical path (the executor may hold lower work for
   * a delivery): written at once, not a flusher's millisecond later. */
  tb_status st = open_conn(&bus->nc, url, name, &bus->auth, 1);
  if (st != TB_OK) {
    explicit_bzero(&bus->auth, sizeof(bus->auth));
    pthread_mutex_destroy(&bus->mu);
    free(bus);
    /* Whatever cnats calls it, a connect that fails means no server to talk to; the detail
     * tb__nats_fail recorded stays as it is. */
    return st == TB_ERR_NATS ? TB_ERR_UNAVAILABLE : st;
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 10000;
  jo.PublishAsync.MaxPending = 4096;
  jo.PublishAsync.StallWait = 2000;
  jo.PublishAsync.ErrHandler = on_async_error;
  jo.PublishAsync.ErrHandlerClosure = bus;
  natsStatus s = natsConnection_JetStream(&bus->js, bus->nc, &jo);
  if (s != NATS_OK) {
    st = tb__nats_fail(s, 0, "JetStream context");
    natsConnection_Destroy(bus->nc);
    explicit_bzero(&bus->auth, sizeof(bus->auth));
    pthread_mutex_destroy(&bus->mu);
    free(bus);
    return st;
  }
  *out = bus;
  return TB_OK;
}

void tb_bus_destroy(tb_bus_t *bus) {
  if (bus == NULL) return;
  jsCtx_Destroy(bus->js);
  /* The last acks may still sit in the flusher's buffer: a lost ack costs a redelivery (absorbed
   * by the processed record), but a clean stop should not cause one. */
  if (bus->ack_nc != NULL) natsConnection_FlushTimeout(bus->ack_nc, 2000);
  natsConnection_Destroy(bus->ack_nc);
  natsConnection_Destroy(bus->nc);
  pthread_mutex_destroy(&bus->mu);
  explicit_bzero(&bus->auth, sizeof(bus->auth));
  free(bus);
}

natsConnection *tb_bus_conn(tb_bus_t *bus) {
  return bus->nc;
}
jsCtx *tb_bus_js(tb_bus_t *bus) {
  return bus->js;
}

/* ---------------------------------------------------------------- names */

static void upper_copy(char *dst, size_t cap, const char *src) {
  size_t i = 0;
  for (; src[i] && i + 1 < cap; i++) dst[i] = (char)toupper((unsigned char)src[i]);
  dst[i] = '\0';
}

void tb_bus_stream_name(const tb_config_t *cfg, const char *tier_name, const char *domain,
                        char *buf, size_t cap) {
  char up[TB_NAME_MAX], dom[TB_NAME_MAX];
  upper_copy(up, sizeof(up), tier_name);
  upper_copy(dom, sizeof(dom), domain);
  if (snprintf(buf, cap, "%s_%s_%s", cfg->stream_prefix, up, dom) >= (int)cap) buf[cap - 1] = '\0';
}

void tb_bus_consumer_name(const char *tier_name, const char *domain, char *buf, size_t cap) {
  snprintf(buf, cap, "tb-%s-%s", tier_name, domain);
}

void tb_bus_dlq_stream(const tb_config_t *cfg, char *buf, size_t cap) {
  snprintf(buf, cap, "%s_DLQ", cfg->stream_prefix);
}

void tb_bus_cmd_stream(const tb_config_t *cfg, char *buf, size_t cap) {
  snprintf(buf, cap, "%s_CMD", cfg->stream_prefix);
}

/* ---------------------------------------------------------------- provisioning */

const char *tb_bus_replicas_note(const tb_config_t *cfg, char *buf, size_t cap) {
  if (cfg->replicas > 1)
    snprintf(buf, cap,
             " with replicas %d (config): that needs a NATS cluster of at least %d JetStream "
             "servers, and the server could not place them",
             cfg->replicas, cfg->replicas);
  else if (cap > 0)
    buf[0] = '\0';
  return buf;
}

int tb_bus_js_missing(natsStatus s, jsErrCode jerr) {
  return s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr || jerr == JSConsumerNotFoundErr;
}

/* How long start-up asks again when JetStream cannot answer yet (ask_again): on a cluster that
 * just lost a node, each stream's and consumer's group elects a new leader within seconds, and a
 * worker started meanwhile should wait for it, not give up. */
#define ANSWER_WAIT_MS 60000

/* 1 when |s| and |jerr| say JetStream could not answer yet (no answer in time, or "JetStream
 * system temporarily unavailable" while the cluster elects its meta leader) and the monotonic
 * |until_us| is still ahead: sleeps half a second first, so that the caller asks again. */
static int ask_again(natsStatus s, jsErrCode jerr, int64_t until_us) {
  if ((s != NATS_TIMEOUT && jerr != JSClusterNotAvailErr) || tb_mono_us() >= until_us) return 0;
  tb_sleep_us(500000);
  return 1;
}

void tb_bus_await_stream(tb_bus_t *bus, const char *stream) {
  natsStatus s;
  jsErrCode jerr = 0;
  int64_t until = tb_mono_us() + ANSWER_WAIT_MS * 1000;
  do {
    jsStreamInfo *si = NULL;
    jerr = 0;
    s = js_GetStreamInfo(&si, bus->js, stream, NULL, &jerr);
    jsStreamInfo_Destroy(si);
  } while (ask_again(s, jerr, until));
}

/* The deployment's key-value buckets: one table for their creation, scaling and checks. */
static const struct {
  const char *suffix, *description;
} kv_buckets[] = {
    {TB_BUS_KV_DEPLOYMENT, "tierbus: the deployment these streams belong to"},
    {TB_BUS_KV_LEASES, "tierbus: leases (one holder at a time per duty)"},
};

tb_status tb_bus_kv_open(kvStore **out, tb_bus_t *bus, const tb_config_t *cfg, const char *suffix,
                         int create) {
  const char *description = NULL;
  for (size_t i = 0; i < TB_COUNTOF(kv_buckets); i++)
    if (strcmp(kv_buckets[i].suffix, suffix) == 0) description = kv_buckets[i].description;
  char bucket[64];
  snprintf(bucket, sizeof(bucket), "%s_%s", cfg->stream_prefix, suffix);
  natsStatus s = js_KeyValue(out, bus->js, bucket);
  if (s == NATS_NOT_FOUND && create) {
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = bucket;
    kc.Description = description;
    kc.History = 1;
    kc.StorageType = js_FileStorage;
    kc.Replicas = cfg->replicas > 0 ? cfg->replicas : 1; /* as many copies as the streams */
    s = js_CreateKeyValue(out, bus->js, &kc);
  }
  if (s == NATS_NOT_FOUND) return TB_ERR_NOT_FOUND;
  if (s != NATS_OK) {
    char what[384], note[160];
    snprintf(what, sizeof(what), "open key-value bucket %s%s", bucket,
             s == NATS_TIMEOUT ? "" : tb_bus_replicas_note(cfg, note, sizeof(note)));
    return tb__nats_fail(s, 0, what);
  }
  return TB_OK;
}

/* Adds the stream, or updates it when it exists, so that a changed config (duplicate window, max
 * age) reaches streams created by an older run. */
static tb_status ensure_stream(tb_bus_t *bus, const tb_config_t *cfg, const tb_tier_config_t *t,
                               const char *name, const char **subjects, int n_subjects) {
  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  sc.Name = name;
  sc.Subjects = subjects;
  sc.SubjectsLen = n_subjects;
  sc.Storage = js_FileStorage;
  sc.Retention = js_LimitsPolicy; /* history stays for replay; consumers track their own place */
  sc.Duplicates = cfg->duplicate_window_ms * 1000000;
  sc.MaxAge = cfg->stream_max_age_ms * 1000000;
  /* A tier's own retention (NULL |t|: the DLQ and command streams keep the deployment's). */
  if (t != NULL && t->max_age_ms > 0) sc.MaxAge = t->max_age_ms * 1000000;
  if (t != NULL && t->max_bytes > 0) sc.MaxBytes = t->max_bytes;
  if (t != NULL && t->max_msgs > 0) sc.MaxMsgs = t->max_msgs;
  sc.MaxMsgSize = (int32_t)(cfg->max_payload_bytes + 4096); /* envelope + headers overhead */
  sc.AllowDirect = true;
  /* Consumers take the stream's count (their Replicas left 0). A single server refuses more than
   * one copy, and a cluster more copies than it has JetStream servers: the server says which. */
  sc.Replicas = cfg->replicas > 0 ? cfg->replicas : 1;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_AddStream(&si, bus->js, &sc, NULL, &jerr);
  if (s != NATS_OK && jerr == JSStreamNameExistErr) {
    jerr = 0;
    s = js_UpdateStream(&si, bus->js, &sc, NULL, &jerr);
  }
  jsStreamInfo_Destroy(si);
  if (s != NATS_OK) {
    char what[384], note[160];
    snprintf(what, sizeof(what), "create stream %s%s", name,
             tb_bus_replicas_note(cfg, note, sizeof(note)));
    return tb__nats_fail(s, jerr, what);
  }
  return TB_OK;
}

/* What starts the description of every consumer tierbus creates: the mark by which it knows its
 * own. Other services may add consumers to tierbus's streams (subscribing per tier is part of the
 * contract, see the catalogue), and tierbus never changes or deletes one it did not make. */
#define OWNER_MARK "tierbus:"

static int same_text(const char *a, const char *b) {
  return strcmp(a ? a : "", b ? b : "") == 0;
}

/* 1 if the consumer described by |ci| is tierbus's: it carries the mark, or it is a pull consumer
 * without description, with explicit acks and tierbus's filter (|filter|, NULL = none), under one
 * of tierbus's names, as tierbus made them before the mark existed (the caller only asks about
 * its own names). */
static int consumer_is_ours(const jsConsumerInfo *ci, const char *filter) {
  const jsConsumerConfig *c = ci->Config;
  if (c == NULL) return 0;
  if (c->Description != NULL && strncmp(c->Description, OWNER_MARK, strlen(OWNER_MARK)) == 0)
    return 1;
  return same_text(c->Description, NULL) && same_text(c->DeliverSubject, NULL) &&
         same_text(c->FilterSubject, filter) && c->AckPolicy == js_AckExplicit;
}

/* 1 when the settings tierbus gives its consumers differ between |have| and |want|. */
static int consumer_differs(const jsConsumerConfig *have, const jsConsumerConfig *want) {
  return !same_text(have->Description, want->Description) || have->AckPolicy != want->AckPolicy ||
         have->DeliverPolicy != want->DeliverPolicy || have->AckWait != want->AckWait ||
         have->MaxDeliver != want->MaxDeliver || have->MaxAckPending != want->MaxAckPending ||
         have->MaxWaiting != want->MaxWaiting ||
         !same_text(have->FilterSubject, want->FilterSubject);
}

/* Adds durable |cc->Durable| on |stream|, or updates it when it exists and differs, so that a
 * changed config (AckWait, MaxDeliver) reaches consumers created by an older run. One that is
 * already as asked is left alone: an update right after its stream's replica change raced with
 * the server's own remapping of the stream's consumers (nats-server 2.9), and left some with one
 * copy while the stream had three. |what| describes the consumer after the owner mark ("tier
 * high, domain crm"). A consumer of that name that is not tierbus's is left as it is:
 * TB_ERR_INVALID says whose it seems to be. */
static tb_status add_or_update_consumer(tb_bus_t *bus, const char *stream, jsConsumerConfig *cc,
                                        const char *what) {
  char desc[256];
  snprintf(desc, sizeof(desc), "%s %s; made by tierbus init, changed only by it", OWNER_MARK, what);
  cc->Description = desc;
  jsConsumerInfo *ci = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetConsumerInfo(&ci, bus->js, stream, cc->Durable, NULL, &jerr);
  if (s == NATS_OK) {
    int ours = consumer_is_ours(ci, cc->FilterSubject);
    int same = ours && ci->Config != NULL && !consumer_differs(ci->Config, cc);
    char theirs[160];
    snprintf(theirs, sizeof(theirs), "%s",
             ci->Config && ci->Config->Description ? ci->Config->Description : "");
    jsConsumerInfo_Destroy(ci);
    ci = NULL;
    if (same) return TB_OK;
    if (!ours)
      return tb__fail(TB_ERR_INVALID,
                      "consumer %s on stream %s exists and is not tierbus's (description '%s'): "
                      "tierbus never changes a consumer it did not make; give yours another "
                      "name, or delete it (nats consumer rm %s %s) if it is a leftover",
                      cc->Durable, stream, theirs, stream, cc->Durable);
    s = js_UpdateConsumer(&ci, bus->js, stream, cc, NULL, &jerr);
  } else {
    jerr = 0;
    s = js_AddConsumer(&ci, bus->js, stream, cc, NULL, &jerr);
  }
  jsConsumerInfo_Destroy(ci);
  if (s != NATS_OK) {
    char msg[160];
    snprintf(msg, sizeof(msg), "create consumer %s on %s", cc->Durable, stream);
    return tb__nats_fail(s, jerr, msg);
  }
  return TB_OK;
}

/* Refuses a tier stream of the layouts before issue 9 (one stream per tier, "TB_HIGH", over every
 * domain's subjects): its subjects overlap the per-domain streams, and its undelivered messages
 * would be stranded by a silent switch. */
static tb_status refuse_tier_stream(tb_bus_t *bus, const tb_config_t *cfg, const char *tier) {
  char up[TB_NAME_MAX], old[64];
  upper_copy(up, sizeof(up), tier);
  snprintf(old, sizeof(old), "%s_%s", cfg->stream_prefix, up);
  jsStreamInfo *si = NULL;
  if (js_GetStreamInfo(&si, bus->js, old, NULL, NULL) != NATS_OK) return TB_OK;
  uint64_t msgs = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  return tb__fail(TB_ERR_INVALID,
                  "stream %s is of the one-stream-per-tier layout (%llu messages); this version "
                  "keeps one stream per tier and domain (%s_<DOMAIN>). Drain it with the previous "
                  "version's workers, delete it (nats stream rm %s), then run `tierbus init` again",
                  old, (unsigned long long)msgs, old, old);
}

/* The stream of one (tier, domain) and its one durable consumer, which takes the whole stream.
 * No filter subject: nats-server 2.9 recounts a filtered consumer's pending messages by scanning
 * its stream's blocks on every delivery, and with the domains interleaved in one stream that
 * scan took 60% of the server's CPU and a quarter of the throughput (issue 9's profile). */
static tb_status ensure_consumer(tb_bus_t *bus, const tb_config_t *cfg, const tb_tier_config_t *t,
                                 const char *domain) {
  char stream[64], durable[64], subject[160];
  tb_bus_stream_name(cfg, t->name, domain, stream, sizeof(stream));
  tb_bus_consumer_name(t->name, domain, durable, sizeof(durable));
  snprintf(subject, sizeof(subject), "tb.evt.%s.%s.>", t->name, domain);
  const char *subj[] = {subject};
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = durable;
  cc.AckPolicy = js_AckExplicit;
  cc.DeliverPolicy = js_DeliverAll;
  /* The heartbeat window, not the handler timeout: a worker that dies holding a message
   * releases it after this, and a live one renews it with in-progress acks (dispatch.c). */
  cc.AckWait = tb_config_ack_wait_ms(cfg, (int)(t - cfg->tiers)) * 1000000;
  cc.MaxDeliver = t->max_deliver;
  /* A worker process holds at most max(concurrency, prefetch) messages of the tier ready, plus
   * its open batch (commit_batch_max): 384 with the shipped config, so 4096 leaves room for about
   * ten processes sharing the consumer. */
  cc.MaxAckPending = t->concurrency * 64 > 4096 ? t->concurrency * 64 : 4096;
  cc.MaxWaiting = 512;
  char what[128];
  snprintf(what, sizeof(what), "tier %s, domain %s", t->name, domain);
  /* An existing stream's consumer is brought up to date before the stream: when the stream's
   * update changes its replica count, the server then remaps its consumers with nothing after it
   * to race with. */
  jsStreamInfo *si = NULL;
  int exists = js_GetStreamInfo(&si, bus->js, stream, NULL, NULL) == NATS_OK;
  jsStreamInfo_Destroy(si);
  tb_status st = exists ? add_or_update_consumer(bus, stream, &cc, what) : TB_OK;
  if (st == TB_OK) st = ensure_stream(bus, cfg, t, stream, subj, 1);
  if (st == TB_OK && !exists) st = add_or_update_consumer(bus, stream, &cc, what);
  return st;
}

/* Creates tier |t|'s streams and consumers, one of each per domain. */
static tb_status ensure_tier(tb_bus_t *bus, const tb_config_t *cfg, const tb_tier_config_t *t) {
  tb_status st = refuse_tier_stream(bus, cfg, t->name);
  for (int d = 0; d < cfg->n_domains && st == TB_OK; d++)
    st = ensure_consumer(bus, cfg, t, cfg->domains[d]);
  return st;
}

/* Creates the bucket <prefix>_<suffix> with cfg->replicas copies, or gives an existing one's
 * stream that count. Made here, with the streams, rather than by the first worker that needs it:
 * an R3 bucket cannot be placed while one node of three is down, and a lease bucket left to the
 * scheduler's first pass was then never made. */
static tb_status ensure_bucket(tb_bus_t *bus, const tb_config_t *cfg, const char *suffix) {
  char stream[96];
  snprintf(stream, sizeof(stream), "KV_%s_%s", cfg->stream_prefix, suffix);
  int64_t want = cfg->replicas > 0 ? cfg->replicas : 1;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetStreamInfo(&si, bus->js, stream, NULL, &jerr);
  if (tb_bus_js_missing(s, jerr)) {
    kvStore *kv = NULL;
    tb_status st = tb_bus_kv_open(&kv, bus, cfg, suffix, 1);
    kvStore_Destroy(kv);
    return st;
  }
  if (s == NATS_OK && si->Config->Replicas != want) {
    si->Config->Replicas = want;
    jsStreamInfo *updated = NULL;
    s = js_UpdateStream(&updated, bus->js, si->Config, NULL, &jerr);
    jsStreamInfo_Destroy(updated);
  }
  jsStreamInfo_Destroy(si);
  if (s != NATS_OK) {
    char what[384], note[160];
    snprintf(what, sizeof(what), "scale key-value bucket stream %s%s", stream,
             tb_bus_replicas_note(cfg, note, sizeof(note)));
    return tb__nats_fail(s, jerr, what);
  }
  return TB_OK;
}

tb_status tb_bus_provision(tb_bus_t *bus, const tb_config_t *cfg) {
  if (cfg->n_domains < 1)
    return tb__fail(TB_ERR_INVALID, "provision: no domains (tb_config_set_domains not called)");
  char name[64];
  tb_status st = TB_OK;
  for (int i = 0; i < cfg->n_tiers && st == TB_OK; i++) st = ensure_tier(bus, cfg, &cfg->tiers[i]);
  if (st == TB_OK) {
    const char *subj[] = {"tb.dlq.>"};
    tb_bus_dlq_stream(cfg, name, sizeof(name));
    st = ensure_stream(bus, cfg, NULL, name, subj, 1);
  }
  if (st == TB_OK) {
    const char *subj[] = {"tb.cmd.>"};
    tb_bus_cmd_stream(cfg, name, sizeof(name));
    st = ensure_stream(bus, cfg, NULL, name, subj, 1);
  }
  for (size_t i = 0; i < TB_COUNTOF(kv_buckets) && st == TB_OK; i++)
    st = ensure_bucket(bus, cfg, kv_buckets[i].suffix);
  return st;
}

/* 1 when |ci| (a stream's or consumer's cluster info; |configured| its configured count, 0 for a
 * consumer that takes its stream's) shows |want| current copies; else 0 with the reason in
 * |why|. A single server reports no cluster info: one copy is all it has. */
static int copies_current(const jsClusterInfo *ci, int64_t configured, int64_t want, char *why,
                          size_t cap) {
  if (configured != 0 && configured != want) {
    snprintf(why, cap, "configured for %lld copies", (long long)configured);
    return 0;
  }
  if (want <= 1) return 1;
  if (ci == NULL || ci->Leader == NULL || ci->Leader[0] == '\0') {
    snprintf(why, cap, "no leader yet");
    return 0;
  }
  if (ci->ReplicasLen < want - 1) {
    snprintf(why, cap, "%d of %lld copies placed", ci->ReplicasLen + 1, (long long)want);
    return 0;
  }
  for (int i = 0; i < ci->ReplicasLen; i++) {
    const jsPeerInfo *p = ci->Replicas[i];
    if (p->Offline || !p->Current) {
      snprintf(why, cap, "copy on %s %s (lag %llu)", p->Name,
               p->Offline ? "offline" : "catching up", (unsigned long long)p->Lag);
      return 0;
    }
  }
  return 1;
}

/* Sets *behind, with the name and reason in |why|, unless |name|'s copies are current. |consumer|
 * NULL: the stream |name|; else that consumer of stream |name|. A missing one is behind unless
 * |optional| (a key-value bucket not made yet). A server that does not answer in time (an election
 * under way) is behind; any other failure is returned. */
static tb_status check_copies(tb_bus_t *bus, const tb_config_t *cfg, const char *name,
                              const char *consumer, int optional, int *behind, char *why,
                              size_t cap) {
  int64_t want = cfg->replicas > 0 ? cfg->replicas : 1;
  char reason[192] = "";
  jsErrCode jerr = 0;
  natsStatus s;
  int ok = 0;
  if (consumer == NULL) {
    jsStreamInfo *si = NULL;
    s = js_GetStreamInfo(&si, bus->js, name, NULL, &jerr);
    if (s == NATS_OK)
      ok = copies_current(si->Cluster, si->Config->Replicas, want, reason, sizeof(reason));
    jsStreamInfo_Destroy(si);
  } else {
    jsConsumerInfo *ci = NULL;
    s = js_GetConsumerInfo(&ci, bus->js, name, consumer, NULL, &jerr);
    if (s == NATS_OK)
      ok = copies_current(ci->Cluster, ci->Config->Replicas, want, reason, sizeof(reason));
    jsConsumerInfo_Destroy(ci);
  }
  if (s == NATS_OK) {
    if (ok) return TB_OK;
  } else if (tb_bus_js_missing(s, jerr)) {
    if (optional) return TB_OK;
    snprintf(reason, sizeof(reason), "missing (run tierbus init)");
  } else if (s == NATS_TIMEOUT) {
    snprintf(reason, sizeof(reason), "no answer (an election under way?)");
  } else {
    char what[192];
    snprintf(what, sizeof(what), "copies of %s%s%s", name, consumer ? " consumer " : "",
             consumer ? consumer : "");
    return tb__nats_fail(s, jerr, what);
  }
  if (why != NULL)
    snprintf(why, cap, "%s%s%s: %s", name, consumer ? " consumer " : "", consumer ? consumer : "",
             reason);
  *behind = 1;
  return TB_OK;
}

tb_status tb_bus_copies_behind(tb_bus_t *bus, const tb_config_t *cfg, int *behind, char *why,
                               size_t cap) {
  *behind = 0;
  if (why != NULL && cap > 0) why[0] = '\0';
  char name[96], durable[64];
  tb_status st = TB_OK;
  for (int i = 0; i < cfg->n_tiers && st == TB_OK && !*behind; i++)
    for (int d = 0; d < cfg->n_domains && st == TB_OK && !*behind; d++) {
      tb_bus_stream_name(cfg, cfg->tiers[i].name, cfg->domains[d], name, sizeof(name));
      tb_bus_consumer_name(cfg->tiers[i].name, cfg->domains[d], durable, sizeof(durable));
      st = check_copies(bus, cfg, name, NULL, 0, behind, why, cap);
      if (st == TB_OK && !*behind) st = check_copies(bus, cfg, name, durable, 0, behind, why, cap);
    }
  if (st == TB_OK && !*behind) {
    tb_bus_dlq_stream(cfg, name, sizeof(name));
    st = check_copies(bus, cfg, name, NULL, 0, behind, why, cap);
  }
  if (st == TB_OK && !*behind) {
    tb_bus_cmd_stream(cfg, name, sizeof(name));
    st = check_copies(bus, cfg, name, NULL, 0, behind, why, cap);
  }
  for (size_t i = 0; i < TB_COUNTOF(kv_buckets) && st == TB_OK && !*behind; i++) {
    snprintf(name, sizeof(name), "KV_%s_%s", cfg->stream_prefix, kv_buckets[i].suffix);
    st = check_copies(bus, cfg, name, NULL, 1, behind, why, cap);
  }
  return st;
}

/* ---------------------------------------------------------------- publish */

static tb_status build_msg(natsMsg **out, const char *subject, const char *reply,
                           const char *msg_id, const void *data, size_t len,
                           const char *const *hdrs) {
  natsMsg *m = NULL;
  natsStatus s = natsMsg_Create(&m, subject, reply, data, (int)len);
  if (s == NATS_OK && msg_id != NULL) s = natsMsgHeader_Set(m, "Nats-Msg-Id", msg_id);
  for (int i = 0; hdrs != NULL && hdrs[i] != NULL && s == NATS_OK; i += 2)
    s = natsMsgHeader_Set(m, hdrs[i], hdrs[i + 1]);
  if (s != NATS_OK) {
    natsMsg_Destroy(m);
    return tb__nats_fail(s, 0, "build message");
  }
  *out = m;
  return TB_OK;
}

tb_status tb_bus_publish(tb_bus_t *bus, const char *subject, const char *msg_id, const void *data,
                         size_t len, const char *const *hdrs, uint64_t *seq, int *duplicate) {
  natsMsg *m = NULL;
  tb_status st = build_msg(&m, subject, NULL, msg_id, data, len, hdrs);
  if (st != TB_OK) return st;
  jsPubAck *pa = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_PublishMsg(&pa, bus->js, m, NULL, &jerr);
  natsMsg_Destroy(m);
  if (s != NATS_OK) {
    char what[256];
    snprintf(what, sizeof(what), "publish to %s", subject);
    return tb__nats_fail(s, jerr, what);
  }
  if (seq) *seq = pa->Sequence;
  if (duplicate) *duplicate = pa->Duplicate;
  jsPubAck_Destroy(pa);
  return TB_OK;
}

tb_status tb_bus_publish_async(tb_bus_t *bus, const char *subject, const char *msg_id,
                               const void *data, size_t len) {
  natsMsg *m = NULL;
  tb_status st = build_msg(&m, subject, NULL, msg_id, data, len, NULL);
  if (st != TB_OK) return st;
  natsStatus s = js_PublishMsgAsync(bus->js, &m, NULL); /* takes ownership on success */
  if (s != NATS_OK) {
    natsMsg_Destroy(m);
    char what[256];
    snprintf(what, sizeof(what), "async publish to %s", subject);
    return tb__nats_fail(s, 0, what);
  }
  return TB_OK;
}

tb_status tb_bus_publish_wait(tb_bus_t *bus, int64_t timeout_ms, int64_t *failed) {
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = timeout_ms;
  natsStatus s = js_PublishAsyncComplete(bus->js, &po);
  pthread_mutex_lock(&bus->mu);
  if (failed) *failed = bus->async_failed;
  bus->async_failed = 0;
  pthread_mutex_unlock(&bus->mu);
  if (s != NATS_OK) return tb__nats_fail(s, 0, "wait for publish acks");
  return TB_OK;
}

/* The outcome of one pipelined publish from its reply: a stream ack, an error the stream sent,
 * or a status message (no stream takes the subject). */
static void read_ack(natsMsg *reply, tb_pub_item_t *it) {
  const char *code = NULL;
  if (natsMsg_GetDataLength(reply) == 0 && natsMsgHeader_Get(reply, "Status", &code) == NATS_OK) {
    it->st = strcmp(code, "503") == 0 ? TB_ERR_UNAVAILABLE : TB_ERR_NATS;
    snprintf(it->err, sizeof(it->err), "publish to %s: %s", it->subject,
             it->st == TB_ERR_UNAVAILABLE ? "no stream takes this subject (no responders)" : code);
    return;
  }
  json_error_t je;
  json_t *j = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, &je);
  json_t *e = json_object_get(j, "error");
  if (j == NULL || e != NULL) {
    it->st = TB_ERR_NATS;
    snprintf(it->err, sizeof(it->err), "publish to %s: %s", it->subject,
             e ? json_string_value(json_object_get(e, "description")) : je.text);
  } else {
    it->st = TB_OK;
    it->duplicate = json_is_true(json_object_get(j, "duplicate"));
  }
  json_decref(j);
}

tb_status tb_bus_publish_many(tb_bus_t *bus, tb_pub_item_t *items, int n, int64_t timeout_ms) {
  for (int i = 0; i < n; i++) {
    items[i].st = TB_ERR_TIMEOUT;
    items[i].duplicate = 0;
    snprintf(items[i].err, sizeof(items[i].err), "publish to %s: no stream ack within %lld ms",
             items[i].subject, (long long)timeout_ms);
  }
  natsInbox *inbox = NULL;
  natsSubscription *sub = NULL;
  char prefix[128], wildcard[140];
  natsStatus s = natsInbox_Create(&inbox);
  if (s == NATS_OK) {
    snprintf(prefix, sizeof(prefix), "%s", inbox);
    snprintf(wildcard, sizeof(wildcard), "%s.*", prefix);
    natsInbox_Destroy(inbox);
    s = natsConnection_SubscribeSync(&sub, bus->nc, wildcard);
  }
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(sub, -1, -1);
  if (s != NATS_OK) {
    natsSubscription_Destroy(sub);
    return tb__nats_fail(s, 0, "subscribe to the publish acks");
  }
  int waiting = 0;
  for (int i = 0; i < n; i++) {
    char reply[160];
    snprintf(reply, sizeof(reply), "%s.%d", prefix, i);
    natsMsg *m = NULL;
    tb_status st = build_msg(&m, items[i].subject, reply, items[i].msg_id, items[i].data,
                             items[i].len, items[i].hdrs);
    if (st == TB_OK) {
      natsStatus ps = natsConnection_PublishMsg(bus->nc, m);
      if (ps != NATS_OK) st = tb__nats_fail(ps, 0, "publish");
    }
    natsMsg_Destroy(m);
    if (st != TB_OK) {
      items[i].st = st;
      snprintf(items[i].err, sizeof(items[i].err), "%s", tb_errdetail());
    } else {
      waiting++;
    }
  }
  int64_t deadline = tb_mono_us() + timeout_ms * 1000;
  while (waiting > 0) {
    int64_t left_ms = (deadline - tb_mono_us()) / 1000;
    natsMsg *r = NULL;
    if (left_ms <= 0 || natsSubscription_NextMsg(&r, sub, left_ms) != NATS_OK) break;
    const char *dot = strrchr(natsMsg_GetSubject(r), '.');
    int i = dot ? atoi(dot + 1) : -1;
    if (i >= 0 && i < n && items[i].st == TB_ERR_TIMEOUT) {
      read_ack(r, &items[i]);
      waiting--;
    }
    natsMsg_Destroy(r);
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  for (int i = 0; i < n; i++)
    if (items[i].st != TB_OK) return tb__fail(items[i].st, "%s", items[i].err);
  return TB_OK;
}

/* ---------------------------------------------------------------- batch publish with resends */

void tb_pub_retry_init(tb_pub_retry_t *r, const tb_config_t *cfg) {
  r->ack_wait_ms = cfg->publish_ack_wait_ms;
  /* With a 5 s ack wait, ten sends outlast a server restart by far; the give-up time ends the
   * call sooner when no server answers at all. */
  r->max_sends = 10;
  r->backoff_ms = 250;
  r->backoff_max_ms = 4000;
  r->give_up_ms = cfg->publish_give_up_ms;
}

/* Most publishes of a batch awaiting their ack at once; cnats stalls the next publish beyond. */
#define BATCH_MAX_PENDING 4096

/* Where an item of a batch stands. */
enum { B_SEND, B_FLIGHT, B_LOST, B_DONE };

/* The messages cnats holds for a batch, by address: its ack callback hands the message back, and
 * the item it belongs to is found here. An address is unique while cnats holds the message, and
 * its entry is removed before the message is destroyed. An item has one message in flight at a
 * time, so each item owns one entry; the entries are kept in a POSIX search tree (tsearch). */
typedef struct flight_entry {
  const natsMsg *msg;
  int item;
} flight_entry_t;

static int by_msg(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)((const flight_entry_t *)a)->msg;
  uintptr_t y = (uintptr_t)((const flight_entry_t *)b)->msg;
  return x < y ? -1 : x > y;
}

/* One tb_bus_publish_batch call, shared with cnats' ack callback thread. */
typedef struct batch {
  pthread_mutex_t mu;
  tb_pub_item_t *items;
  unsigned char *state;    /* B_*, under mu */
  natsStatus *why;         /* the last send's failure, under mu; NATS_OK while none */
  flight_entry_t *entries; /* one per item */
  void *flight;            /* tsearch root over the entries in flight, under mu */
  int64_t heard_us; /* monotonic, under mu: the call's start, then the server's last answer */
} batch_t;

/* Records |m| as item |i|'s message in flight. -1 when memory ran out. Called with b->mu held. */
static int flight_put(batch_t *b, const natsMsg *m, int i) {
  b->entries[i] = (flight_entry_t){.msg = m, .item = i};
  return tsearch(&b->entries[i], &b->flight, by_msg) != NULL ? 0 : -1;
}

/* Removes |m| and returns its item, or -1 when it is not in flight. Called with b->mu held. */
static int flight_take(batch_t *b, const natsMsg *m) {
  flight_entry_t key = {.msg = m};
  flight_entry_t **found = tfind(&key, &b->flight, by_msg);
  if (found == NULL) return -1;
  int i = (*found)->item;
  tdelete(&key, &b->flight, by_msg);
  return i;
}

/* cnats' ack callback (its reply subscription's thread): settles the item of |msg|, or marks it
 * lost when its ack wait ran out or no stream answered. A JetStream error is the stream refusing
 * the message: sending it again would be refused again. Destroys |msg|. */
static void on_batch_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  (void)js;
  batch_t *b = closure;
  pthread_mutex_lock(&b->mu);
  int i = flight_take(b, msg);
  if (i >= 0) {
    tb_pub_item_t *it = &b->items[i];
    natsStatus s = pa != NULL ? NATS_OK : pae != NULL ? pae->Err : NATS_ERR;
    int refused = s == NATS_ERR && pae != NULL && pae->ErrCode != 0;
    b->why[i] = s;
    if (s == NATS_OK || refused) b->heard_us = tb_mono_us();
    if (s == NATS_OK) {
      it->st = TB_OK;
      it->duplicate = pa->Duplicate;
      b->state[i] = B_DONE;
    } else if (refused) {
      it->st = TB_ERR_NATS;
      snprintf(it->err, sizeof(it->err), "publish to %s: %s (js error %d)", it->subject,
               pae->ErrText ? pae->ErrText : natsStatus_GetText(s), (int)pae->ErrCode);
      b->state[i] = B_DONE;
    } else {
      b->state[i] = B_LOST;
    }
  }
  pthread_mutex_unlock(&b->mu);
  natsMsg_Destroy(msg);
}

/* 1 when the server has not answered for |give_up_ms|. */
static int batch_gone(batch_t *b, int64_t give_up_ms) {
  pthread_mutex_lock(&b->mu);
  int gone = tb_mono_us() - b->heard_us > give_up_ms * 1000;
  pthread_mutex_unlock(&b->mu);
  return gone;
}

/* Hands item |i|, built as |m| (taken), to cnats: in flight from here until on_batch_ack.
 * Returns NATS_OK, or the refusal: NATS_TIMEOUT when cnats stalled it (BATCH_MAX_PENDING await
 * their ack; it was not sent and is still to send), anything else with the item lost, since it
 * may have gone out before the connection broke (cnats cannot tell), so it counts as a send. */
static natsStatus send_item(batch_t *b, jsCtx *js, jsPubOptions *po, int i, natsMsg *m) {
  tb_pub_item_t *it = &b->items[i];
  pthread_mutex_lock(&b->mu);
  /* Registered before the publish: its ack may come before js_PublishMsgAsync returns. */
  int put = flight_put(b, m, i);
  if (put == 0) {
    b->state[i] = B_FLIGHT;
    it->sends++;
  }
  pthread_mutex_unlock(&b->mu);
  if (put != 0) {
    natsMsg_Destroy(m);
    return NATS_NO_MEMORY;
  }
  const natsMsg *key = m;
  natsStatus s = js_PublishMsgAsync(js, &m, po); /* clears |m| once cnats owns it */
  if (s != NATS_OK) {
    pthread_mutex_lock(&b->mu);
    flight_take(b, key);
    b->why[i] = s;
    b->state[i] = s == NATS_TIMEOUT ? B_SEND : B_LOST;
    it->sends -= s == NATS_TIMEOUT;
    pthread_mutex_unlock(&b->mu);
    natsMsg_Destroy(m);
  }
  return s;
}

/* Waits until cnats holds none of the batch's messages: each was acked or its ack wait ran out,
 * and on_batch_ack has run for it. Messages still held well past their ack wait (not expected:
 * cnats times each out) are taken back as lost, so that none is left unaccounted for. */
static void batch_drain(batch_t *b, jsCtx *js, int64_t ack_wait_ms) {
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = ack_wait_ms + 2000;
  if (js_PublishAsyncComplete(js, &po) == NATS_OK) return;
  natsMsgList left = {0};
  if (js_PublishAsyncGetPendingList(&left, js) == NATS_OK) {
    pthread_mutex_lock(&b->mu);
    for (int k = 0; k < left.Count; k++) {
      int i = flight_take(b, left.Msgs[k]);
      if (i >= 0) {
        b->state[i] = B_LOST;
        b->why[i] = NATS_TIMEOUT;
      }
    }
    pthread_mutex_unlock(&b->mu);
    natsMsgList_Destroy(&left);
  }
  /* A callback that took its message before may still be running; it only takes the batch's
   * lock, so it ends at once. |b| must outlive it: no bound here. */
  po.MaxWait = 1000;
  while (js_PublishAsyncComplete(js, &po) != NATS_OK) {
  }
}

/* Reconnections of |nc| so far (0 when unknown). */
static uint64_t reconnects(natsConnection *nc) {
  natsStatistics *stats = NULL;
  uint64_t n = 0;
  if (natsStatistics_Create(&stats) == NATS_OK && natsConnection_GetStats(nc, stats) == NATS_OK)
    natsStatistics_GetCounts(stats, NULL, NULL, NULL, NULL, &n);
  natsStatistics_Destroy(stats);
  return n;
}

/* After round |round|: each item not settled is sent again, or fails with the reason. Called with
 * mu held. Returns how many go again. */
static int batch_decide(batch_t *b, int n, const tb_pub_retry_t *retry, int round, int gone,
                        int reconnected) {
  int again = 0;
  for (int i = 0; i < n; i++) {
    if (b->state[i] != B_LOST && b->state[i] != B_SEND) continue;
    tb_pub_item_t *it = &b->items[i];
    natsStatus s = b->why[i];
    char why[160];
    if (s == NATS_NO_RESPONDERS && !reconnected) {
      /* The connection never dropped, so no server was restarting: nothing takes the subject. */
      it->st = TB_ERR_UNAVAILABLE;
      snprintf(why, sizeof(why), "no stream takes this subject (no responders)");
    } else if (gone) {
      it->st = TB_ERR_UNAVAILABLE;
      int whole = retry->give_up_ms % 1000 == 0;
      snprintf(why, sizeof(why), "no answer from the server for %lld %s; %s",
               (long long)(whole ? retry->give_up_ms / 1000 : retry->give_up_ms),
               whole ? "s" : "ms", it->sends ? "no ack" : "not sent");
    } else if (it->sends >= retry->max_sends || (it->msg_id == NULL && it->sends > 0) ||
               round >= 2 * retry->max_sends) {
      /* The last bound holds when sends themselves keep failing (the connection refusing them
       * while the server answers others): every round ends, whatever the cause. */
      it->st = TB_ERR_TIMEOUT;
      snprintf(why, sizeof(why), "no ack within %lld ms, %d %s%s", (long long)retry->ack_wait_ms,
               it->sends, it->sends == 1 ? "send" : "sends",
               it->msg_id == NULL ? " (no Nats-Msg-Id: a resend could store it twice)" : "");
    } else {
      b->state[i] = B_SEND;
      again++;
      continue;
    }
    /* A timeout says no more than the reason; anything else is named. */
    int named = s != NATS_OK && s != NATS_TIMEOUT && s != NATS_NO_RESPONDERS;
    snprintf(it->err, sizeof(it->err), "publish to %s: %s%s%s", it->subject, why,
             named ? " (last: " : "", named ? natsStatus_GetText(s) : "");
    if (named) strncat(it->err, ")", sizeof(it->err) - strlen(it->err) - 1);
    b->state[i] = B_DONE;
  }
  return again;
}

/* 1 when a send refused with |s| would be refused again whatever the server does: the message
 * or the connection is wrong, not the network. */
static int final_send_error(natsStatus s) {
  return s == NATS_INVALID_ARG || s == NATS_INVALID_SUBJECT || s == NATS_MAX_PAYLOAD ||
         s == NATS_NO_MEMORY || s == NATS_NOT_PERMITTED || s == NATS_CONNECTION_CLOSED ||
         s == NATS_ILLEGAL_STATE;
}

/* Marks item |i| failed for good with |st| and the current error detail. */
static void batch_fail(batch_t *b, int i, tb_status st) {
  pthread_mutex_lock(&b->mu);
  b->items[i].st = st;
  snprintf(b->items[i].err, sizeof(b->items[i].err), "%s", tb_errdetail());
  b->state[i] = B_DONE;
  pthread_mutex_unlock(&b->mu);
}

/* One round: sends every item still to send, unless the server is gone. A send that cnats
 * stalls is tried again at once: the acks or their ack waits free a slot. One that fails while
 * the connection breaks or is away (an I/O error, disconnected, the reconnect buffer full) is
 * lost like a send without an ack, and goes again next round. */
static void batch_round(batch_t *b, jsCtx *js, jsPubOptions *po, int n,
                        const tb_pub_retry_t *retry) {
  for (int i = 0; i < n; i++) {
    pthread_mutex_lock(&b->mu);
    int todo = b->state[i] == B_SEND;
    pthread_mutex_unlock(&b->mu);
    if (!todo) continue;
    if (batch_gone(b, retry->give_up_ms)) return;
    const tb_pub_item_t *it = &b->items[i];
    natsStatus s = NATS_OK; /* stays so when the message cannot be built (then failed) */
    do {
      natsMsg *m = NULL;
      tb_status st = build_msg(&m, it->subject, NULL, it->msg_id, it->data, it->len, it->hdrs);
      if (st != TB_OK) {
        batch_fail(b, i, st);
        break;
      }
      s = send_item(b, js, po, i, m);
    } while (s == NATS_TIMEOUT && !batch_gone(b, retry->give_up_ms));
    if (s != NATS_OK && s != NATS_TIMEOUT && final_send_error(s)) {
      char what[300];
      snprintf(what, sizeof(what), "publish to %s", it->subject);
      batch_fail(b, i, tb__nats_fail(s, 0, what));
    }
  }
}

tb_status tb_bus_publish_batch(tb_bus_t *bus, tb_pub_item_t *items, int n,
                               const tb_pub_retry_t *retry, tb_pub_report_t *report) {
  tb_pub_report_t rep = {0};
  if (report != NULL) *report = rep;
  for (int i = 0; i < n; i++) {
    items[i].st = TB_ERR_TIMEOUT;
    items[i].duplicate = 0;
    items[i].sends = 0;
    snprintf(items[i].err, sizeof(items[i].err), "publish to %s: not sent", items[i].subject);
  }
  if (n <= 0) return TB_OK;
  batch_t b = {.items = items};
  b.state = calloc((size_t)n, sizeof(*b.state)); /* B_SEND is 0 */
  b.why = calloc((size_t)n, sizeof(*b.why));     /* NATS_OK is 0 */
  b.entries = calloc((size_t)n, sizeof(*b.entries));
  if (b.state == NULL || b.why == NULL || b.entries == NULL) {
    free(b.state);
    free(b.why);
    free(b.entries);
    return tb__fail(TB_ERR_NOMEM, "publish batch of %d", n);
  }
  pthread_mutex_init(&b.mu, NULL);
  /* A context of its own: the acks of this batch, and only those, come to on_batch_ack. */
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 10000;
  jo.PublishAsync.MaxPending = BATCH_MAX_PENDING;
  /* A stalled publish waits for a slot; every message in flight is settled within its ack wait. */
  jo.PublishAsync.StallWait = retry->ack_wait_ms + 1000;
  jo.PublishAsync.AckHandler = on_batch_ack;
  jo.PublishAsync.AckHandlerClosure = &b;
  jsCtx *js = NULL;
  natsStatus s = natsConnection_JetStream(&js, bus->nc, &jo);
  tb_status st = s == NATS_OK ? TB_OK : tb__nats_fail(s, 0, "JetStream context for a batch");
  if (st == TB_OK) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = retry->ack_wait_ms; /* cnats times out each message's ack: on_batch_ack */
    uint64_t reconnects_before = reconnects(bus->nc);
    int64_t backoff_ms = retry->backoff_ms;
    b.heard_us = tb_mono_us();
    for (;;) {
      rep.rounds++;
      batch_round(&b, js, &po, n, retry);
      batch_drain(&b, js, retry->ack_wait_ms);
      int gone = batch_gone(&b, retry->give_up_ms);
      int reconnected = reconnects(bus->nc) > reconnects_before ||
                        natsConnection_Status(bus->nc) != NATS_CONN_STATUS_CONNECTED;
      pthread_mutex_lock(&b.mu);
      int again = batch_decide(&b, n, retry, rep.rounds, gone, reconnected);
      int64_t left_ms = retry->give_up_ms - (tb_mono_us() - b.heard_us) / 1000;
      pthread_mutex_unlock(&b.mu);
      if (again == 0) break;
      /* The server is coming back: give it a moment, more each round, never past giving up. */
      tb_sleep_us((backoff_ms < left_ms ? backoff_ms : left_ms > 0 ? left_ms : 0) * 1000);
      backoff_ms = backoff_ms * 2 < retry->backoff_max_ms ? backoff_ms * 2 : retry->backoff_max_ms;
    }
    jsCtx_Destroy(js);
  }
  int first_failed = -1;
  for (int i = 0; i < n; i++) {
    rep.resent += items[i].sends > 1;
    if (items[i].st != TB_OK) {
      rep.failed++;
      if (first_failed < 0) first_failed = i;
    } else if (items[i].duplicate) {
      rep.duplicates++;
      rep.resent_duplicates += items[i].sends > 1;
    } else {
      rep.stored++;
    }
  }
  pthread_mutex_destroy(&b.mu);
  while (b.flight != NULL) /* empty after batch_drain; a node's first field is its entry */
    tdelete(*(flight_entry_t **)b.flight, &b.flight, by_msg);
  free(b.entries);
  free(b.state);
  free(b.why);
  if (report != NULL) *report = rep;
  if (st != TB_OK) return st;
  if (first_failed >= 0) return tb__fail(items[first_failed].st, "%s", items[first_failed].err);
  return TB_OK;
}

/* ---------------------------------------------------------------- consume */

/* Binds to durable |durable| on |stream|, which must exist; |hint| ends the error detail when it
 * does not (how to create it). */
static tb_status bind_consumer(tb_consumer_t **out, tb_bus_t *bus, const char *stream,
                               const char *durable, const char *hint) {
  /* Fail now, with a clear word, if the consumer was never provisioned. */
  natsStatus s;
  jsErrCode jerr = 0;
  int64_t until = tb_mono_us() + ANSWER_WAIT_MS * 1000;
  do {
    jsConsumerInfo *ci = NULL;
    jerr = 0;
    s = js_GetConsumerInfo(&ci, bus->js, stream, durable, NULL, &jerr);
    jsConsumerInfo_Destroy(ci);
  } while (ask_again(s, jerr, until));
  if (s != NATS_OK) {
    char what[200];
    snprintf(what, sizeof(what), "consumer %s on stream %s%s", durable, stream,
             tb_bus_js_missing(s, jerr) ? hint : "");
    return tb__nats_fail(s, jerr, what);
  }
  tb_consumer_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return tb__fail(TB_ERR_NOMEM, "consumer");
  c->bus = bus;
  snprintf(c->next_subject, sizeof(c->next_subject), "$JS.API.CONSUMER.MSG.NEXT.%s.%s", stream,
           durable);
  natsInbox *inbox = NULL;
  s = natsInbox_Create(&inbox);
  if (s == NATS_OK) {
    snprintf(c->inbox, sizeof(c->inbox), "%s", inbox);
    natsInbox_Destroy(inbox);
    s = natsConnection_SubscribeSync(&c->sub, bus->nc, c->inbox);
  }
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(c->sub, -1, -1);
  if (s != NATS_OK) {
    natsSubscription_Destroy(c->sub);
    free(c);
    return tb__nats_fail(s, 0, "subscribe to the pull inbox");
  }
  *out = c;
  return TB_OK;
}

tb_status tb_consumer_open(tb_consumer_t **out, tb_bus_t *bus, const tb_config_t *cfg,
                           const char *tier_name, const char *domain) {
  char stream[64], durable[64];
  tb_bus_stream_name(cfg, tier_name, domain, stream, sizeof(stream));
  tb_bus_consumer_name(tier_name, domain, durable, sizeof(durable));
  return bind_consumer(out, bus, stream, durable, " (run `tierbus init`)");
}

tb_status tb_consumer_open_stream(tb_consumer_t **out, tb_bus_t *bus, const char *stream,
                                  const char *durable, const char *filter, int64_t ack_wait_ms) {
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = durable;
  cc.AckPolicy = js_AckExplicit;
  cc.DeliverPolicy = js_DeliverAll;
  cc.AckWait = ack_wait_ms * 1000000;
  cc.FilterSubject = filter;
  cc.MaxAckPending = 1000;
  cc.MaxWaiting = 512;
  char what[160];
  snprintf(what, sizeof(what), "stream %s, subjects %s", stream, filter ? filter : ">");
  tb_status st = add_or_update_consumer(bus, stream, &cc, what);
  if (st != TB_OK) return st;
  return bind_consumer(out, bus, stream, durable, "");
}

void tb_consumer_close(tb_consumer_t *c) {
  if (c == NULL) return;
  /* Messages still queued here were never handed out: unacked, the server redelivers them. */
  natsSubscription_Unsubscribe(c->sub);
  natsSubscription_Destroy(c->sub);
  free(c);
}

static tb_status send_pull(tb_consumer_t *c, int batch) {
  char req[128];
  snprintf(req, sizeof(req), "{\"batch\":%d,\"expires\":%lld}", batch,
           (long long)PULL_EXPIRES_MS * 1000000LL);
  natsStatus s = natsConnection_PublishRequestString(c->bus->nc, c->next_subject, c->inbox, req);
  if (s != NATS_OK) return tb__nats_fail(s, 0, "pull request");
  c->remaining = batch;
  c->deadline_us = tb_mono_us() + (PULL_EXPIRES_MS + 500) * 1000LL;
  return TB_OK;
}

int tb_consumer_outstanding(const tb_consumer_t *c) {
  return c->remaining > 0 && tb_mono_us() <= c->deadline_us ? c->remaining : 0;
}

/* 1 if |m| is a status message from the server (no data, a Status header) rather than an event. */
static int is_status(natsMsg *m) {
  const char *st = NULL;
  return natsMsg_GetDataLength(m) == 0 && natsMsgHeader_Get(m, "Status", &st) == NATS_OK;
}

tb_status tb_consumer_fetch(tb_consumer_t *c, natsMsg **out, int max, int *n, int64_t wait_ms) {
  *n = 0;
  if (max <= 0) return TB_ERR_TIMEOUT;
  int64_t deadline = tb_mono_us() + wait_ms * 1000;
  for (;;) {
    if (c->remaining <= 0 || tb_mono_us() > c->deadline_us) {
      tb_status st = send_pull(c, max);
      if (st != TB_OK) return st;
    }
    int64_t left_ms = *n > 0 ? 0 : (deadline - tb_mono_us()) / 1000;
    natsMsg *m = NULL;
    natsStatus s = natsSubscription_NextMsg(&m, c->sub, left_ms > 0 ? left_ms : 0);
    if (s == NATS_TIMEOUT) break;
    if (s != NATS_OK) return *n > 0 ? TB_OK : tb__nats_fail(s, 0, "fetch");
    if (is_status(m)) {
      /* 404/408/409 end the open request (100 is a heartbeat); ask again on the next turn. */
      const char *code = NULL;
      natsMsgHeader_Get(m, "Status", &code);
      if (code == NULL || strcmp(code, "100") != 0) c->remaining = 0;
      natsMsg_Destroy(m);
      if (*n == 0 && tb_mono_us() >= deadline) break;
      continue;
    }
    out[(*n)++] = m;
    c->remaining--;
    if (*n >= max) break;
  }
  return *n > 0 ? TB_OK : TB_ERR_TIMEOUT;
}

/* Acks go straight to the message's reply subject: the JetStream ack protocol is a plain
 * publish, and these messages come from a core subscription. */
static tb_status reply(tb_bus_t *bus, natsMsg *m, const char *body) {
  const char *to = natsMsg_GetReply(m);
  if (to == NULL || *to == '\0') return tb__fail(TB_ERR_INVALID, "message has no ack subject");
  pthread_mutex_lock(&bus->mu);
  if (!bus->ack_tried) {
    bus->ack_tried = 1;
    if (open_conn(&bus->ack_nc, bus->url, bus->name, &bus->auth, 0) != TB_OK) bus->ack_nc = NULL;
  }
  natsConnection *nc = bus->ack_nc ? bus->ack_nc : bus->nc;
  pthread_mutex_unlock(&bus->mu);
  natsStatus s = natsConnection_PublishString(nc, to, body);
  return s == NATS_OK ? TB_OK : tb__nats_fail(s, 0, "ack");
}

tb_status tb_bus_ack(tb_bus_t *bus, natsMsg *m) {
  return reply(bus, m, "+ACK");
}
tb_status tb_bus_in_progress(tb_bus_t *bus, natsMsg *m) {
  return reply(bus, m, "+WPI");
}
tb_status tb_bus_term(tb_bus_t *bus, natsMsg *m) {
  return reply(bus, m, "+TERM");
}

tb_status tb_bus_nak(tb_bus_t *bus, natsMsg *m, int64_t delay_ms) {
  if (delay_ms <= 0) return reply(bus, m, "-NAK");
  char body[64];
  snprintf(body, sizeof(body), "-NAK {\"delay\":%lld}", (long long)delay_ms * 1000000LL);
  return reply(bus, m, body);
}

void tb_consumer_release(tb_consumer_t *c) {
  for (;;) {
    /* Whatever is queued, then whatever the open request still brings until it ends (a status
     * message) or its expiry passes: a message sent to an inbox nobody reads any more would wait
     * out its AckWait before anyone else got it. */
    int64_t left_ms = c->remaining > 0 ? (c->deadline_us - tb_mono_us()) / 1000 : 0;
    natsMsg *m = NULL;
    if (natsSubscription_NextMsg(&m, c->sub, left_ms > 0 ? left_ms : 0) != NATS_OK) break;
    if (is_status(m)) {
      const char *code = NULL;
      natsMsgHeader_Get(m, "Status", &code);
      if (code == NULL || strcmp(code, "100") != 0) c->remaining = 0;
    } else {
      tb_bus_nak(c->bus, m, 0);
      c->remaining--;
    }
    natsMsg_Destroy(m);
  }
  c->remaining = 0;
}

/* The info of the durable consumer of |tier_name|'s |domain|, whose stream name goes to |stream|
 * (|cap| bytes). Caller frees *ci with jsConsumerInfo_Destroy(). */
static tb_status tier_consumer_info(tb_bus_t *bus, const tb_config_t *cfg, const char *tier_name,
                                    const char *domain, char *stream, size_t cap,
                                    jsConsumerInfo **ci) {
  char durable[64];
  tb_bus_stream_name(cfg, tier_name, domain, stream, cap);
  tb_bus_consumer_name(tier_name, domain, durable, sizeof(durable));
  jsErrCode jerr = 0;
  natsStatus s = js_GetConsumerInfo(ci, bus->js, stream, durable, NULL, &jerr);
  if (s == NATS_OK) return TB_OK;
  char what[160];
  snprintf(what, sizeof(what), "consumer info %s on %s", durable, stream);
  return tb__nats_fail(s, jerr, what);
}

tb_status tb_consumer_ack_floor(tb_bus_t *bus, const tb_config_t *cfg, const char *tier_name,
                                const char *domain, char *stream, size_t cap, uint64_t *floor) {
  jsConsumerInfo *ci = NULL;
  tb_status st = tier_consumer_info(bus, cfg, tier_name, domain, stream, cap, &ci);
  if (st != TB_OK) return st;
  *floor = ci->AckFloor.Stream;
  jsConsumerInfo_Destroy(ci);
  return TB_OK;
}

tb_status tb_consumer_pending(tb_bus_t *bus, const tb_config_t *cfg, const char *tier_name,
                              const char *domain, uint64_t *pending, uint64_t *ack_pending,
                              uint64_t *redelivered) {
  *pending = *ack_pending = *redelivered = 0;
  if (domain == NULL) {
    for (int d = 0; d < cfg->n_domains; d++) {
      uint64_t p, a, r;
      tb_status st = tb_consumer_pending(bus, cfg, tier_name, cfg->domains[d], &p, &a, &r);
      if (st != TB_OK) return st;
      *pending += p;
      *ack_pending += a;
      *redelivered += r;
    }
    return TB_OK;
  }
  char stream[64];
  jsConsumerInfo *ci = NULL;
  tb_status st = tier_consumer_info(bus, cfg, tier_name, domain, stream, sizeof(stream), &ci);
  if (st != TB_OK) return st;
  *pending = ci->NumPending;
  *ack_pending = (uint64_t)ci->NumAckPending;
  *redelivered = (uint64_t)ci->NumRedelivered;
  jsConsumerInfo_Destroy(ci);
  return TB_OK;
}

/* ---------------------------------------------------------------- dead letters */

/* The headers a dead letter carries besides the original's: its own Nats-Msg-Id and the Tb-Dlq-*
 * set. An original header of one of these names is not copied (a publisher cannot forge them). */
static int dlq_own_header(const char *key) {
  return strcasecmp(key, "Nats-Msg-Id") == 0 || strncasecmp(key, "Tb-Dlq-", 7) == 0;
}

tb_status tb_bus_dead_letter(tb_bus_t *bus, natsMsg *msg, const char *dlq_subject,
                             const char *msg_id, const char *reason_class, const char *reason,
                             const char *stream, uint64_t seq, uint64_t deliveries,
                             uint64_t *dlq_seq) {
  char seqbuf[32], delbuf[32];
  snprintf(seqbuf, sizeof(seqbuf), "%llu", (unsigned long long)seq);
  snprintf(delbuf, sizeof(delbuf), "%llu", (unsigned long long)deliveries);
  /* Heap copies: an id or a reason is never cut to fit a buffer (two long ids sharing a prefix
   * would collide in the DLQ stream's dedupe). A header value cannot hold a line break. */
  size_t id_len = strlen(msg_id);
  char *dlq_id = malloc(id_len + 5), *why = strdup(reason ? reason : "");
  const char **keys = NULL;
  int n_keys = 0;
  natsMsgHeader_Keys(msg, &keys, &n_keys); /* none (or no headers at all) leaves n_keys 0 */
  const char **hdrs = calloc((size_t)(2 * n_keys + 13), sizeof(*hdrs));
  if (dlq_id == NULL || why == NULL || hdrs == NULL) {
    free(dlq_id);
    free(why);
    free(hdrs);
    free((void *)keys);
    return tb__fail(TB_ERR_NOMEM, "dead letter %s", msg_id);
  }
  memcpy(dlq_id, "dlq:", 4);
  memcpy(dlq_id + 4, msg_id, id_len + 1);
  for (char *p = why; *p; p++)
    if (*p == '\r' || *p == '\n') *p = ' ';
  const char *subject = natsMsg_GetSubject(msg);
  int n = 0;
  const char *own[] = {"Tb-Dlq-Reason",     why,    "Tb-Dlq-Class",   reason_class,
                       "Tb-Dlq-Stream",     stream, "Tb-Dlq-Seq",     seqbuf,
                       "Tb-Dlq-Deliveries", delbuf, "Tb-Dlq-Subject", subject ? subject : ""};
  for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) hdrs[n++] = own[i];
  /* The original headers, first value of each (the JetStream headers a publisher sets are
   * single-valued; every value is kept in the dead_letters row). */
  for (int i = 0; i < n_keys; i++) {
    const char *v = NULL;
    if (dlq_own_header(keys[i]) || natsMsgHeader_Get(msg, keys[i], &v) != NATS_OK) continue;
    hdrs[n++] = keys[i];
    hdrs[n++] = v ? v : "";
  }
  hdrs[n] = NULL;
  int dup = 0;
  tb_status st = tb_bus_publish(bus, dlq_subject, dlq_id, natsMsg_GetData(msg),
                                (size_t)natsMsg_GetDataLength(msg), hdrs, dlq_seq, &dup);
  free(dlq_id);
  free(why);
  free(hdrs);
  free((void *)keys);
  return st;
}

tb_status tb_bus_dlq_delete(tb_bus_t *bus, const tb_config_t *cfg, uint64_t dlq_seq) {
  char stream[64];
  tb_bus_dlq_stream(cfg, stream, sizeof(stream));
  jsErrCode jerr = 0;
  natsStatus s = js_DeleteMsg(bus->js, stream, dlq_seq, NULL, &jerr);
  if (s == NATS_OK || jerr == JSSequenceNotFoundErr || jerr == JSNoMessageFoundErr) return TB_OK;
  char what[96];
  snprintf(what, sizeof(what), "delete %s seq %llu", stream, (unsigned long long)dlq_seq);
  return tb__nats_fail(s, jerr, what);
}
