/* NATS JetStream access for tierbus: the connection, idempotent provisioning of the tier streams,
 * the dead-letter and command streams and the per-tier durable pull consumers, publishing with
 * Nats-Msg-Id, and the consumer fetch loop primitive. A library layer: it returns statuses and
 * never logs. cnats errors are wrapped with their text (natsStatus_GetText, jsErrCode). */
#ifndef TB_BUS_BUS_H
#define TB_BUS_BUS_H

#include <nats/nats.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/auth.h"
#include "config/config.h"
#include "tierbus.h"

typedef struct tb_bus tb_bus_t;

/* Connects once to |url| with |auth|'s credentials and TLS (borrowed, copied; NULL = none, for
 * servers that ask for none: the test harness's and the bench's). TB_ERR_UNAVAILABLE (detail
 * names the URL and cnats' text) when no server answers; the caller decides whether to retry.
 * TB_ERR_AUTH when the server refused the credentials or the TLS handshake failed: retrying does
 * not help. Once connected, cnats reconnects forever in the background, with the same
 * credentials, buffering publishes, so a server restart mid-run loses nothing that was
 * acknowledged. Caller frees with tb_bus_destroy(). Commands connect through tb_cli_connect(),
 * which resolves |auth| with tb_bus_auth_resolve(). */
tb_status tb_bus_connect_auth(tb_bus_t **out, const char *url, const char *name,
                              const tb_bus_auth_t *auth);
/* tb_bus_connect_auth() without credentials. */
tb_status tb_bus_connect(tb_bus_t **out, const char *url, const char *name);

/* Drains nothing: closes the connection and frees. Accepts NULL. */
void tb_bus_destroy(tb_bus_t *bus);

/* Borrowed handles for the layers that need cnats directly (dispatch). */
natsConnection *tb_bus_conn(tb_bus_t *bus);
jsCtx *tb_bus_js(tb_bus_t *bus);

/* Writes the stream name of |tier_name|'s |domain| ("TB_CRITICAL_CRM") into |buf|. Every
 * (tier, domain) has a stream of its own over tb.evt.<tier>.<domain>.>, read by one unfiltered
 * consumer: that lets a worker serve some domains only without filtered consumers, which
 * nats-server 2.9 serves at a fraction of the speed on a stream whose subjects interleave. */
void tb_bus_stream_name(const tb_config_t *cfg, const char *tier_name, const char *domain,
                        char *buf, size_t cap);
/* Writes the durable consumer name of a tier's domain ("tb-critical-crm"), the one consumer of
 * that (tier, domain)'s stream. */
void tb_bus_consumer_name(const char *tier_name, const char *domain, char *buf, size_t cap);
/* Name of the dead-letter stream ("TB_DLQ") and the command stream ("TB_CMD"). */
void tb_bus_dlq_stream(const tb_config_t *cfg, char *buf, size_t cap);
void tb_bus_cmd_stream(const tb_config_t *cfg, char *buf, size_t cap);

/* Creates every stream and consumer the config describes (cfg->domains must be set), or updates
 * them to match: one stream and one consumer per (tier, domain). Only configured domains have a
 * stream, so a publish to an unknown domain fails at once instead of sitting where no consumer
 * reads. A tier stream of the older one-stream-per-tier layout ("TB_HIGH") is refused with
 * TB_ERR_INVALID and a detail saying how to retire it. Safe to run any number of times and from
 * several processes at once. */
/* Writes to |buf| what to add to the message of a failed stream or bucket creation: a note on
 * the config's replicas when above 1 (the usual cause: a single server, or a cluster with fewer
 * JetStream servers), else "". Returns |buf|. */
const char *tb_bus_replicas_note(const tb_config_t *cfg, char *buf, size_t cap);

/* Sets |opts|' servers from |url|: one URL, or a cluster's servers separated by commas
 * (natsOptions_SetURL takes one URL only; a list given to it never connects). NATS_INVALID_ARG
 * for a list with no server in it. */
natsStatus tb_bus_set_servers(natsOptions *opts, const char *url);

/* 1 when a JetStream request failed because its stream or consumer does not exist. */
int tb_bus_js_missing(natsStatus s, jsErrCode jerr);

/* For start-up: waits up to a minute while JetStream cannot answer for |stream| yet (no answer in
 * time, or "temporarily unavailable" while a cluster elects its leaders after losing a node), so
 * that a process started then does not fail on the first request. Returns as soon as the server
 * answers, whatever the answer (the stream may not exist); the caller's own request reports
 * what is wrong. Not for threads that must stop promptly. */
void tb_bus_await_stream(tb_bus_t *bus, const char *stream);

/* The deployment's key-value buckets, by suffix (<stream_prefix>_<suffix>); tb_bus_provision
 * creates them, or scales them, with the streams. */
#define TB_BUS_KV_DEPLOYMENT "DEPLOYMENT"
#define TB_BUS_KV_LEASES "LEASES"

/* Opens the deployment's key-value bucket <stream_prefix>_<suffix> (one of TB_BUS_KV_*), creating
 * it when missing and |create| (history 1, file storage, the streams' replica count, the bucket's
 * description). TB_ERR_NOT_FOUND when it is missing and not created; otherwise tb__nats_fail()'s
 * status, naming the bucket and the replica count. Caller frees *out with kvStore_Destroy(). */
tb_status tb_bus_kv_open(kvStore **out, tb_bus_t *bus, const tb_config_t *cfg, const char *suffix,
                         int create);

/* Creates or updates every tier, dead-letter and command stream, every tier consumer and the
 * deployment's key-value buckets, to the config (`replicas` included: a deployment made with one
 * copy is converted; the server copies the data in the background, see tb_bus_copies_behind). */
tb_status tb_bus_provision(tb_bus_t *bus, const tb_config_t *cfg);

/* Finds the first stream or consumer of the deployment (tier, dead-letter, command, the key-value
 * buckets that exist) that does not yet hold cfg->replicas current copies: configured for another
 * count, copies still being placed, a copy offline or catching up, no leader or no answer. *behind
 * gets 1 then, and |why| (may be NULL) its name and the reason, e.g. "TB_HIGH_CRM: copy on n2
 * catching up (lag 1200)"; 0 when all are current. It stops at the first, so that a caller
 * polling it is not held by one slow answer per stream. A missing stream or consumer is behind. */
tb_status tb_bus_copies_behind(tb_bus_t *bus, const tb_config_t *cfg, int *behind, char *why,
                               size_t cap);

/* Publishes |data| to |subject| with Nats-Msg-Id |msg_id| and waits for the stream's ack.
 * *seq receives the stream sequence, *duplicate 1 when the stream already had this id (both may
 * be NULL). Extra headers: |hdrs| is a NULL-terminated key, value, key, value... list or NULL. */
tb_status tb_bus_publish(tb_bus_t *bus, const char *subject, const char *msg_id, const void *data,
                         size_t len, const char *const *hdrs, uint64_t *seq, int *duplicate);

/* One message of tb_bus_publish_many and tb_bus_publish_batch: what to send (borrowed) and,
 * after the call, its outcome. */
typedef struct tb_pub_item {
  const char *subject, *msg_id;
  const void *data;
  size_t len;
  const char *const *hdrs; /* as for tb_bus_publish, or NULL */
  tb_status st;            /* out: TB_OK when the stream has it */
  int duplicate;           /* out: the stream already had this id */
  int sends;               /* out (tb_bus_publish_batch): times it was sent, the first included */
  char err[256];           /* out: why, when st is not TB_OK */
} tb_pub_item_t;

/* Publishes every item (Nats-Msg-Id as tb_bus_publish) without waiting between them, then
 * collects the stream acks: one round trip for the batch instead of one per message. Each item
 * gets its own outcome; one not acked within |timeout_ms| is TB_ERR_TIMEOUT, one no stream
 * takes is TB_ERR_UNAVAILABLE. Returns TB_OK when all were acked, else the first failure. */
tb_status tb_bus_publish_many(tb_bus_t *bus, tb_pub_item_t *items, int n, int64_t timeout_ms);

/* How tb_bus_publish_batch sends a message again whose ack did not come. Fill it with
 * tb_pub_retry_init(), then change what differs. */
typedef struct tb_pub_retry {
  /* A publish not acked within this is taken for lost (its ack went down with a server, or the
   * message never reached one) and sent again under the same Nats-Msg-Id. */
  int64_t ack_wait_ms;
  int max_sends;          /* sends of one message at most, the first included */
  int64_t backoff_ms;     /* pause before the first round of resends; doubles each round */
  int64_t backoff_max_ms; /* ... up to this */
  /* No ack at all for this long: the server is gone for good. Nothing more is sent, and what
   * has no ack yet fails. Bounds the whole call when no server comes back. */
  int64_t give_up_ms;
} tb_pub_retry_t;

/* The policy: the ack wait and the give-up time from |cfg| (publish_ack_wait, publish_give_up),
 * 10 sends, 250 ms backoff doubling to 4 s. */
void tb_pub_retry_init(tb_pub_retry_t *r, const tb_config_t *cfg);

/* What a tb_bus_publish_batch came to. Every item is counted in exactly one of stored,
 * duplicates and failed. */
typedef struct tb_pub_report {
  int64_t stored;     /* acked as a new message of the stream */
  int64_t duplicates; /* acked as a duplicate: the stream already had its id */
  int64_t failed;     /* no ack after every send, or refused by the server */
  int64_t resent;     /* items sent more than once: a send of theirs had no ack */
  /* Duplicates acked on a resend: most likely stored by an earlier send whose ack was lost
   * (or already in the stream before the call; the server cannot tell them apart). */
  int64_t resent_duplicates;
  int rounds; /* passes over the items: 1 when every first send was acked */
} tb_pub_report_t;

/* Publishes every item asynchronously (at most 4,096 awaiting their ack), each with its own ack
 * wait, and sends again, under its Nats-Msg-Id, every one whose ack did not come, in rounds
 * with backoff, as |retry| says, while the server comes back: acks lost with a server killed
 * under the publisher never come, and the stream's duplicate window makes the resent copies of
 * stored messages duplicates, so each id is stored once. An item without msg_id is sent once
 * (a resend could store it twice). Each item gets its own outcome (st, duplicate, sends, err)
 * and |report| (may be NULL) the counts. A send refused as the connection breaks counts as a
 * send without an ack (it may have gone out). Not sent again: a message refused by the stream (a
 * JetStream error), one that no stream takes while the connection never dropped
 * (TB_ERR_UNAVAILABLE: not provisioned), and one cnats refuses for a reason no server changes
 * (too large, a bad subject, the connection closed for good). Returns TB_OK when every item is
 * stored or a duplicate, else the status and detail of the first that failed (TB_ERR_TIMEOUT when
 * its acks never came). */
tb_status tb_bus_publish_batch(tb_bus_t *bus, tb_pub_item_t *items, int n,
                               const tb_pub_retry_t *retry, tb_pub_report_t *report);

/* Queues an asynchronous publish (same headers). Errors reported by the server later are counted
 * and their ids kept; tb_bus_publish_wait() reports them. */
tb_status tb_bus_publish_async(tb_bus_t *bus, const char *subject, const char *msg_id,
                               const void *data, size_t len);

/* Waits until every queued async publish is acknowledged (or |timeout_ms| passes). *failed gets
 * the number that the server refused or that timed out since the last call. */
tb_status tb_bus_publish_wait(tb_bus_t *bus, int64_t timeout_ms, int64_t *failed);

/* A tier's durable pull subscription. */
typedef struct tb_consumer tb_consumer_t;

/* Binds to the durable consumer of |tier_name|'s |domain| (provisioned beforehand). Caller frees
 * with tb_consumer_close(). */
tb_status tb_consumer_open(tb_consumer_t **out, tb_bus_t *bus, const tb_config_t *cfg,
                           const char *tier_name, const char *domain);
void tb_consumer_close(tb_consumer_t *c);

/* Creates durable pull consumer |durable| on |stream| (explicit ack, deliver all, unlimited
 * deliveries, AckWait |ack_wait_ms|, only subjects matching |filter|; NULL = the whole stream),
 * or updates it to match, then binds to it like tb_consumer_open(). For consumers that belong to
 * no tier (the simulator's on TB_CMD); any number of processes may share the durable. Fails
 * with the cnats text (TB_ERR_NATS, TB_ERR_UNAVAILABLE) when the stream does not exist or the
 * server refuses. Caller frees with tb_consumer_close(). */
tb_status tb_consumer_open_stream(tb_consumer_t **out, tb_bus_t *bus, const char *stream,
                                  const char *durable, const char *filter, int64_t ack_wait_ms);

/* Takes up to |max| delivered messages (|max| = the free slots; |out| holds at least |max|) and
 * sets *n. Returns as soon as at least one is there, with whatever else already arrived, up to
 * |max|; TB_ERR_TIMEOUT when nothing arrived within |wait_ms|. Nothing delivered is ever
 * dropped: what exceeds |max| waits for the next call. The caller owns the messages and settles
 * each with tb_bus_ack/nak/term, then natsMsg_Destroy(). */
tb_status tb_consumer_fetch(tb_consumer_t *c, natsMsg **out, int max, int *n, int64_t wait_ms);

/* Messages the open pull request of |c| may still deliver (0 when none is open or it expired). */
int tb_consumer_outstanding(const tb_consumer_t *c);

/* Gives back everything this consumer was sent and not handed out by tb_consumer_fetch(): naks
 * (no delay) what is queued here, then what the open pull request still delivers, waiting at
 * most until that request expires (2 s). A stopping worker calls it so that what it fetched and
 * never started goes to other workers at once, not after AckWait. */
void tb_consumer_release(tb_consumer_t *c);

/* The JetStream ack protocol for a delivered message: done, retry (after |delay_ms|), give up
 * for good, or "still working" (resets AckWait). Fire-and-forget: a lost ack costs a redelivery,
 * which the processed record absorbs. */
tb_status tb_bus_ack(tb_bus_t *bus, natsMsg *m);
tb_status tb_bus_nak(tb_bus_t *bus, natsMsg *m, int64_t delay_ms);
tb_status tb_bus_term(tb_bus_t *bus, natsMsg *m);
tb_status tb_bus_in_progress(tb_bus_t *bus, natsMsg *m);

/* Consumer figures for stats: messages not yet delivered and delivered-but-unacked, of one
 * domain's consumer, or summed over every domain of the tier when |domain| is NULL. */
tb_status tb_consumer_pending(tb_bus_t *bus, const tb_config_t *cfg, const char *tier_name,
                              const char *domain, uint64_t *pending, uint64_t *ack_pending,
                              uint64_t *redelivered);

/* The durable consumer of |tier_name|'s |domain|: its stream name into |stream| (|cap| bytes) and
 * its ack floor, the highest stream sequence up to which every message was acked. */
tb_status tb_consumer_ack_floor(tb_bus_t *bus, const tb_config_t *cfg, const char *tier_name,
                                const char *domain, char *stream, size_t cap, uint64_t *floor);

/* Copies |msg|'s data and headers to the dead-letter stream on |dlq_subject| with the
 * Tb-Dlq-* headers (reason class, reason, where it came from: |stream|, |seq|, deliveries and
 * subject), and waits for the stream ack; *dlq_seq (may be NULL) gets its DLQ sequence. The id is
 * "dlq:" + |msg_id|, whole, so that a retried dead-lettering is deduplicated. Does not ack the
 * original: the caller terminates it after this returns TB_OK. */
tb_status tb_bus_dead_letter(tb_bus_t *bus, natsMsg *msg, const char *dlq_subject,
                             const char *msg_id, const char *reason_class, const char *reason,
                             const char *stream, uint64_t seq, uint64_t deliveries,
                             uint64_t *dlq_seq);

/* Deletes message |dlq_seq| of the dead-letter stream (`dlq purge`). One already gone is not an
 * error. */
tb_status tb_bus_dlq_delete(tb_bus_t *bus, const tb_config_t *cfg, uint64_t dlq_seq);

/* Wraps a cnats failure: TB_ERR_UNAVAILABLE for connection-class statuses, TB_ERR_TIMEOUT for
 * timeouts, TB_ERR_NATS otherwise, with "|what|: <cnats text> (js error N)". */
tb_status tb__nats_fail(natsStatus s, jsErrCode jerr, const char *what);

#endif
