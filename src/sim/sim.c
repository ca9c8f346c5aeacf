/* The command simulator: one thread takes commands from the shared durable consumer on the
 * command stream, answers each from the command vocabulary (or a failure rule), and publishes
 * the reply, then for enrichment.submit the provider's enrichment-complete, from a queue ordered
 * by due time, acking each command only after its last publication is acknowledged. */
#include "sim/sim.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/publish.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "core/util.h"

#define MOD "sim"
#define DEFAULT_DURABLE "tb-sim"
#define DEFAULT_MAX_INFLIGHT 256
#define FETCH_MAX 64
#define POLL_MS 250
/* AckWait of the simulator's consumer; a command held longer (latency, enrichment delay) is kept
 * alive with in-progress acks every KEEPALIVE_MS. */
#define ACK_WAIT_MS 30000
#define KEEPALIVE_MS 10000
/* A publication that failed for a transient reason (server away) is tried again this often. */
#define RETRY_MS 1000
/* At stop, commands due within this are still answered; later ones go back to the stream. */
#define STOP_GRACE_MS 2000
/* Envelope ids are at most 127 characters; "reply:" takes 6. */
#define COMMAND_ID_MAX 120

#define EV_REPLY "command-reply"
#define EV_ENRICH "enrichment-complete"

/* ---------------------------------------------------------------- options */

void tb_sim_opts_init(tb_sim_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->durable = DEFAULT_DURABLE;
  o->max_inflight = DEFAULT_MAX_INFLIGHT;
}

/* ---------------------------------------------------------------- the vocabulary */

/* What one action handler works with: the command, its parsed input, and what it answers. */
typedef struct actx {
  const Tierbus__V1__Command *cmd;
  const char *action; /* "service.action" */
  json_t *in;         /* borrowed input object */
  int code;           /* 0 until decided */
  char error[512];
  json_t *result;     /* owned result object */
  json_t *enrichment; /* owned enrichment-complete payload (enrichment.submit) */
  char enrichment_id[64];
} actx_t;

/* FNV-1a over "|salt|:|text|": the simulator's ids must be a pure function of the command so that a
 * redelivery gets the same answer, and the salt keeps the ids of different kinds apart. */
static uint64_t fnv1a(const char *salt, const char *text) {
  uint64_t h = 1469598103934665603ULL;
  for (const char *p = salt; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  h = (h ^ ':') * 1099511628211ULL;
  for (const char *p = text; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  return h;
}

static void make_id(char *buf, size_t cap, const char *kind, const char *command_id) {
  snprintf(buf, cap, "sim-%s-%016llx", kind, (unsigned long long)fnv1a(kind, command_id));
}

static const char *json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "object";
  case JSON_ARRAY:
    return "array";
  case JSON_STRING:
    return "string";
  case JSON_INTEGER:
    return "integer";
  case JSON_REAL:
    return "number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "boolean";
  default:
    return "null";
  }
}

/* Decides a failed answer: |code| with an error that starts with the action's name. Returns -1
 * so that an action handler can `return reject(...)`. */
static int reject(actx_t *a, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int reject(actx_t *a, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = snprintf(a->error, sizeof(a->error), "%s: ", a->action);
  if (n > 0 && (size_t)n < sizeof(a->error))
    vsnprintf(a->error + n, sizeof(a->error) - (size_t)n, fmt, ap);
  va_end(ap);
  a->code = code;
  return -1;
}

/* A non-empty string field of |obj| at |path| (for messages); NULL after a 400 when it is absent,
 * empty or not a string, unless |optional| and absent. */
static const char *get_string(actx_t *a, json_t *obj, const char *path, const char *field,
                              int optional) {
  json_t *v = json_object_get(obj, field);
  if (v == NULL && optional) return NULL;
  if (v == NULL) {
    reject(a, 400, "%s%s is required", path, field);
    return NULL;
  }
  if (!json_is_string(v)) {
    reject(a, 400, "%s%s: expected a string, got %s", path, field, json_type_name(v));
    return NULL;
  }
  if (json_string_length(v) == 0) {
    reject(a, 400, "%s%s must not be empty", path, field);
    return NULL;
  }
  return json_string_value(v);
}

static void set_str(json_t *obj, const char *key, const char *val) {
  json_object_set_new(obj, key, json_string(val));
}

static const char *const email_templates[] = {"welcome", "notification", "reminder", "celebration"};

static int act_email_send(actx_t *a) {
  const char *to = get_string(a, a->in, "", "to", 0);
  if (a->code) return -1;
  if (strchr(to, '@') == NULL) return reject(a, 400, "to: not an email address: '%s'", to);
  const char *tmpl = get_string(a, a->in, "", "template", 0);
  if (a->code) return -1;
  int known = 0;
  for (size_t i = 0; i < TB_COUNTOF(email_templates); i++)
    known |= strcmp(tmpl, email_templates[i]) == 0;
  if (!known)
    return reject(a, 422,
                  "template: unknown template '%s' (known: welcome, notification, reminder, "
                  "celebration)",
                  tmpl);
  get_string(a, a->in, "", "client_id", 1);
  if (!a->code) get_string(a, a->in, "", "subject", 1);
  if (a->code) return -1;
  json_t *vars = json_object_get(a->in, "vars");
  if (vars != NULL && !json_is_object(vars))
    return reject(a, 400, "vars: expected an object, got %s", json_type_name(vars));
  char id[64];
  make_id(id, sizeof(id), "msg", a->cmd->command_id);
  set_str(a->result, "message_id", id);
  return 0;
}

static int act_business_plan(actx_t *a) {
  if (get_string(a, a->in, "", "client_id", 0) == NULL) return -1;
  char id[64];
  make_id(id, sizeof(id), "bp", a->cmd->command_id);
  set_str(a->result, "business_plan_id", id);
  return 0;
}

static int act_deliverable(actx_t *a) {
  if (get_string(a, a->in, "", "client_id", 0) == NULL) return -1;
  json_t *m = json_object_get(a->in, "month");
  json_int_t month = 0;
  if (m == NULL) return reject(a, 400, "month is required");
  if (json_is_integer(m)) {
    month = json_integer_value(m);
  } else if (json_is_string(m)) { /* protobuf's JSON mapping lets integers travel as text */
    char *end = NULL;
    long long v = strtoll(json_string_value(m), &end, 10);
    if (json_string_length(m) == 0 || *end != '\0')
      return reject(a, 400, "month: expected an integer from 1 to 8, got '%s'",
                    json_string_value(m));
    month = (json_int_t)v;
  } else {
    return reject(a, 400, "month: expected an integer from 1 to 8, got %s", json_type_name(m));
  }
  if (month < 1 || month > 8)
    return reject(a, 400, "month: expected an integer from 1 to 8, got %lld", (long long)month);
  char id[64];
  make_id(id, sizeof(id), "dlv", a->cmd->command_id);
  set_str(a->result, "deliverable_id", id);
  json_object_set_new(a->result, "month", json_integer(month));
  return 0;
}

static int act_pdf(actx_t *a) {
  const char *client = get_string(a, a->in, "", "client_id", 0);
  if (!a->code) get_string(a, a->in, "", "document_id", 0);
  if (!a->code) get_string(a, a->in, "", "kind", 0);
  if (a->code) return -1;
  char id[64], path[256];
  make_id(id, sizeof(id), "pdf", a->cmd->command_id);
  snprintf(path, sizeof(path), "sim/pdf/%.120s/%s.pdf", client, id);
  set_str(a->result, "pdf_id", id);
  set_str(a->result, "path", path);
  return 0;
}

static const char *const first_names[16] = {
    "Ada",   "Grace", "Alan",    "Linus",  "Margaret", "Dennis", "Barbara", "Ken",
    "Radia", "Guido", "Frances", "Edsger", "Hedy",     "Donald", "Karen",   "John"};
static const char *const last_names[16] = {
    "Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson",
    "Perlman",  "Rossum", "Allen",  "Dijkstra", "Lamarr",   "Knuth",   "Jones",  "McCarthy"};
static const char *const companies[10] = {
    "Acme Corp",         "Globex",  "Initech",   "Umbrella Labs", "Hooli", "Stark Industries",
    "Wayne Enterprises", "Soylent", "Cyberdyne", "Tyrell"};

/* The provider's enriched fields for one address: a function of the address alone, so that the
 * same subscriber always enriches the same way. */
static json_t *fake_fields(const char *email) {
  uint64_t h = fnv1a("person", email);
  const char *first = first_names[h % 16], *last = last_names[(h >> 8) % 16];
  char url[160];
  int n = snprintf(url, sizeof(url), "https://www.linkedin.com/in/%s-%s-%04x", first, last,
                   (unsigned)((h >> 32) & 0xffff));
  for (int i = 28; i < n && url[i]; i++)
    if (url[i] >= 'A' && url[i] <= 'Z') url[i] = (char)(url[i] - 'A' + 'a');
  json_t *f = json_object();
  set_str(f, "first_name", first);
  set_str(f, "last_name", last);
  set_str(f, "company", companies[(h >> 16) % 10]);
  set_str(f, "linkedin_url", url);
  return f;
}

static int act_enrichment_submit(actx_t *a) {
  if (get_string(a, a->in, "", "batch_id", 0) == NULL) return -1;
  json_t *subs = json_object_get(a->in, "subscribers");
  if (subs == NULL) return reject(a, 400, "subscribers is required");
  if (!json_is_array(subs))
    return reject(a, 400, "subscribers: expected an array, got %s", json_type_name(subs));
  if (json_array_size(subs) > TB_SIM_ENRICH_BATCH_MAX)
    return reject(a, 400, "subscribers: at most %d per batch, got %zu", TB_SIM_ENRICH_BATCH_MAX,
                  json_array_size(subs));
  json_t *results = json_array();
  size_t i;
  json_t *s;
  json_array_foreach(subs, i, s) {
    char path[48];
    snprintf(path, sizeof(path), "subscribers[%zu].", i);
    if (!json_is_object(s)) {
      reject(a, 400, "subscribers[%zu]: expected an object, got %s", i, json_type_name(s));
      break;
    }
    const char *sid = get_string(a, s, path, "subscriber_id", 0);
    const char *email = sid ? get_string(a, s, path, "email", 0) : NULL;
    if (a->code) break;
    json_t *r = json_object();
    set_str(r, "subscriber_id", sid);
    set_str(r, "email", email);
    json_object_set_new(r, "fields", fake_fields(email));
    json_array_append_new(results, r);
  }
  if (a->code) {
    json_decref(results);
    return -1;
  }
  make_id(a->enrichment_id, sizeof(a->enrichment_id), "enr", a->cmd->command_id);
  set_str(a->result, "enrichment_id", a->enrichment_id);
  a->enrichment = json_object();
  set_str(a->enrichment, "enrichment_id", a->enrichment_id);
  set_str(a->enrichment, "workflow_id", a->cmd->workflow_id ? a->cmd->workflow_id : "");
  json_object_set_new(a->enrichment, "status_code", json_integer(200));
  json_object_set_new(a->enrichment, "results", results);
  return 0;
}

/* sms.send (seed 004's shared send_sms): |to| in E.164 form ("+" and 8 to 15 digits) and a
 * message of 1 to 1600 characters (ten concatenated SMS parts). */
static int act_sms_send(actx_t *a) {
  const char *to = get_string(a, a->in, "", "to", 0);
  if (a->code) return -1;
  size_t digits = strspn(to + 1, "0123456789");
  if (to[0] != '+' || digits < 8 || digits > 15 || to[1 + digits] != '\0')
    return reject(a, 400, "to: not an E.164 phone number (+ and 8 to 15 digits): '%s'", to);
  const char *text = get_string(a, a->in, "", "message", 0);
  if (a->code) return -1;
  size_t len = strlen(text);
  if (len > 1600) return reject(a, 400, "message: at most 1600 characters, got %zu", len);
  char id[64];
  make_id(id, sizeof(id), "sms", a->cmd->command_id);
  set_str(a->result, "message_id", id);
  json_object_set_new(a->result, "segments", json_integer((json_int_t)((len + 152) / 153)));
  return 0;
}

/* analytics.update (seed 004's shared update_analytics): adds |value| (a number, default 1) to
 * metric |metric|, with optional string |dimensions|. */
static int act_analytics_update(actx_t *a) {
  const char *metric = get_string(a, a->in, "", "metric", 0);
  if (a->code) return -1;
  json_t *v = json_object_get(a->in, "value");
  if (v != NULL && !json_is_number(v))
    return reject(a, 400, "value: expected a number, got %s", json_type_name(v));
  json_t *dims = json_object_get(a->in, "dimensions");
  if (dims != NULL && !json_is_object(dims))
    return reject(a, 400, "dimensions: expected an object, got %s", json_type_name(dims));
  const char *key;
  json_t *d;
  json_object_foreach(dims, key, d) {
    if (!json_is_string(d))
      return reject(a, 400, "dimensions.%s: expected a string, got %s", key, json_type_name(d));
  }
  char id[64];
  make_id(id, sizeof(id), "anl", a->cmd->command_id);
  set_str(a->result, "update_id", id);
  set_str(a->result, "metric", metric);
  json_object_set_new(a->result, "value", v ? json_deep_copy(v) : json_integer(1));
  return 0;
}

static const struct {
  const char *name;
  int (*fn)(actx_t *a); /* 0, or -1 after reject() */
} actions[] = {
    {"email.send", act_email_send},
    {"ai.generate-business-plan", act_business_plan},
    {"ai.generate-deliverable", act_deliverable},
    {"pdf.generate", act_pdf},
    {"enrichment.submit", act_enrichment_submit},
    {"sms.send", act_sms_send},
    {"analytics.update", act_analytics_update},
};
#define N_ACTIONS TB_COUNTOF(actions)

static void known_actions(char *buf, size_t cap) {
  size_t off = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < N_ACTIONS && off < cap; i++)
    off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", actions[i].name);
}

tb_status tb_sim_parse_fail(const char *spec, tb_sim_fail_t *out) {
  const char *eq = strchr(spec, '=');
  if (eq == NULL || eq == spec)
    return tb__fail(TB_ERR_INVALID, "'%s': expected ACTION=CODE[:N], e.g. enrichment.submit=429:1",
                    spec);
  size_t alen = (size_t)(eq - spec);
  int known = -1;
  for (size_t i = 0; i < N_ACTIONS; i++)
    if (strlen(actions[i].name) == alen && strncmp(spec, actions[i].name, alen) == 0)
      known = (int)i;
  if (known < 0) {
    char list[256];
    known_actions(list, sizeof(list));
    return tb__fail(TB_ERR_INVALID, "'%s': unknown action '%.*s' (the simulator answers %s)", spec,
                    (int)alen, spec, list);
  }
  tb_sim_fail_t f;
  memset(&f, 0, sizeof(f));
  snprintf(f.action, sizeof(f.action), "%s", actions[known].name);
  const char *code = eq + 1, *colon = strchr(code, ':');
  size_t clen = colon ? (size_t)(colon - code) : strlen(code);
  if (clen == 4 && strncmp(code, "drop", 4) == 0) {
    f.code = TB_SIM_DROP;
  } else {
    char buf[16] = "";
    char *end = NULL;
    long v = -1;
    if (clen > 0 && clen < sizeof(buf)) {
      memcpy(buf, code, clen);
      buf[clen] = '\0';
      v = strtol(buf, &end, 10);
      if (*end != '\0') v = -1;
    }
    if (v < 400 || v > 599)
      return tb__fail(TB_ERR_INVALID,
                      "'%s': code must be a status from 400 to 599 or 'drop', got '%.*s'", spec,
                      (int)clen, code);
    f.code = (int)v;
  }
  if (colon != NULL) {
    char *end = NULL;
    long long n = strtoll(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || n < 1 || n > 1000000)
      return tb__fail(TB_ERR_INVALID,
                      "'%s': N (the attempts that fail) must be an integer from 1 to 1000000, got "
                      "'%s'",
                      spec, colon + 1);
    f.attempts = (uint32_t)n;
  }
  *out = f;
  return TB_OK;
}

void tb_sim_answer_free(tb_sim_answer_t *a) {
  free(a->result_json);
  free(a->error);
  json_decref(a->enrichment);
  memset(a, 0, sizeof(*a));
}

/* Fills |out| from a decided context. TB_ERR_NOMEM when the text cannot be made. */
static tb_status settle(actx_t *a, tb_sim_answer_t *out) {
  out->status_code = a->code;
  int ok = a->code >= 200 && a->code < 300;
  out->result_json = ok ? json_dumps(a->result, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
  out->error = strdup(ok ? "" : a->error);
  if (ok && a->enrichment != NULL) {
    out->enrichment = a->enrichment;
    a->enrichment = NULL;
    snprintf(out->enrichment_msg_id, sizeof(out->enrichment_msg_id), "enrich:%s", a->enrichment_id);
  }
  json_decref(a->result);
  json_decref(a->enrichment);
  if (out->result_json == NULL || out->error == NULL) {
    tb_sim_answer_free(out);
    return tb__fail(TB_ERR_NOMEM, "simulator answer");
  }
  return TB_OK;
}

tb_status tb_sim_answer(const tb_sim_opts_t *o, const Tierbus__V1__Command *cmd,
                        tb_sim_answer_t *out) {
  memset(out, 0, sizeof(*out));
  char action[TB_SIM_ACTION_MAX * 2];
  snprintf(action, sizeof(action), "%s.%s", cmd->service ? cmd->service : "",
           cmd->action ? cmd->action : "");
  /* Alerts (tb.cmd.alerts.raise) go to an operator's alerting service and expect no reply:
   * answering one would leave a reply that resumes nothing. */
  if (cmd->service != NULL && strcmp(cmd->service, "alerts") == 0) {
    out->drop = 1;
    return TB_OK;
  }
  actx_t a = {.cmd = cmd, .action = action, .result = json_object()};
  if (a.result == NULL) return tb__fail(TB_ERR_NOMEM, "simulator answer");

  for (int i = 0; i < o->n_fails; i++) {
    const tb_sim_fail_t *f = &o->fails[i];
    if (strcmp(f->action, action) != 0) continue;
    if (f->attempts != 0 && cmd->attempt > f->attempts) break;
    if (f->code == TB_SIM_DROP) {
      json_decref(a.result);
      out->drop = 1;
      return TB_OK;
    }
    a.code = f->code;
    snprintf(a.error, sizeof(a.error), "simulated %d", f->code);
    return settle(&a, out);
  }

  size_t which = N_ACTIONS;
  for (size_t i = 0; i < N_ACTIONS; i++)
    if (strcmp(actions[i].name, action) == 0) which = i;
  if (which == N_ACTIONS) {
    char list[256];
    known_actions(list, sizeof(list));
    reject(&a, 404, "unknown command (the simulator answers %s)", list);
    return settle(&a, out);
  }

  const char *text = cmd->input_json ? cmd->input_json : "";
  json_error_t jerr;
  json_t *in = *text ? json_loads(text, 0, &jerr) : json_object();
  if (in == NULL) {
    reject(&a, 400, "input_json: bad JSON at column %d: %s", jerr.column, jerr.text);
  } else if (!json_is_object(in)) {
    reject(&a, 400, "input_json: expected an object, got %s", json_type_name(in));
  } else {
    a.in = in;
    actions[which].fn(&a);
    if (a.code == 0) a.code = 200;
  }
  json_decref(in);
  return settle(&a, out);
}

/* ---------------------------------------------------------------- the running simulator */

enum { STAGE_REPLY, STAGE_ENRICH };

/* One command between its arrival and its ack. */
typedef struct job {
  natsMsg *msg;              /* the command; acked (or termed, naked) when the job ends */
  Tierbus__V1__Command *cmd; /* unpacked */
  char action[TB_SIM_ACTION_MAX * 2];
  tb_sim_answer_t ans;
  int stage;
  int64_t due_us;     /* monotonic: when the next publication is due */
  int64_t touched_us; /* monotonic: last delivery or in-progress ack, against AckWait */
  const char *tier;   /* reply tier (config's name), NULL = the event's default */
  const char *domain; /* reply domain (borrowed from cmd), NULL = the event's own */
} job_t;

struct tb_sim {
  tb_sim_opts_t o;
  char durable[64];
  tb_consumer_t *cons;
  pthread_t thread;
  atomic_int stop;
  job_t **jobs; /* ordered by due_us */
  int n_jobs;
  int fetch_failing;
  pthread_mutex_t mu; /* guards stats */
  tb_sim_stats_t stats;
};

static void count(tb_sim_t *sim, int64_t *field) {
  pthread_mutex_lock(&sim->mu);
  (*field)++;
  pthread_mutex_unlock(&sim->mu);
}

void tb_sim_get_stats(tb_sim_t *sim, tb_sim_stats_t *out) {
  pthread_mutex_lock(&sim->mu);
  *out = sim->stats;
  pthread_mutex_unlock(&sim->mu);
}

static void job_free(job_t *j) {
  if (j == NULL) return;
  natsMsg_Destroy(j->msg);
  if (j->cmd) tierbus__v1__command__free_unpacked(j->cmd, NULL);
  tb_sim_answer_free(&j->ans);
  free(j);
}

static void push(tb_sim_t *sim, job_t *j) {
  int i = sim->n_jobs;
  while (i > 0 && sim->jobs[i - 1]->due_us > j->due_us) {
    sim->jobs[i] = sim->jobs[i - 1];
    i--;
  }
  sim->jobs[i] = j;
  sim->n_jobs++;
}

static job_t *pop(tb_sim_t *sim) {
  job_t *j = sim->jobs[0];
  memmove(sim->jobs, sim->jobs + 1, (size_t)(sim->n_jobs - 1) * sizeof(*sim->jobs));
  sim->n_jobs--;
  return j;
}

static uint64_t stream_seq(natsMsg *m) {
  jsMsgMetaData *meta = NULL;
  uint64_t seq = 0;
  if (natsMsg_GetMetaData(&meta, m) == NATS_OK) seq = meta->Sequence.Stream;
  jsMsgMetaData_Destroy(meta);
  return seq;
}

/* 1 if |s| can be a JSON string (valid UTF-8): protobuf-c does not check, and every field the
 * simulator echoes goes through JSON on its way out. */
static int utf8_ok(const char *s) {
  json_t *t = json_string(s ? s : "");
  json_decref(t);
  return t != NULL;
}

/* Why |cmd| cannot be answered at all, or NULL. */
static const char *malformed(const Tierbus__V1__Command *cmd) {
  if (cmd->command_id == NULL || *cmd->command_id == '\0') return "command_id is empty";
  if (strlen(cmd->command_id) > COMMAND_ID_MAX) return "command_id is longer than 120 bytes";
  if (!utf8_ok(cmd->command_id) || !utf8_ok(cmd->workflow_id) || !utf8_ok(cmd->correlation_id) ||
      !utf8_ok(cmd->reply_tier) || !utf8_ok(cmd->reply_domain) || !utf8_ok(cmd->service) ||
      !utf8_ok(cmd->action))
    return "a string field is not valid UTF-8";
  return NULL;
}

/* Takes one delivered command: decodes it, decides the answer and queues it, or settles it at
 * once (terminated when malformed, acked when dropped). Takes ownership of |m|. */
static void take(tb_sim_t *sim, natsMsg *m) {
  count(sim, &sim->stats.commands);
  const char *subject = natsMsg_GetSubject(m);
  Tierbus__V1__Command *cmd = tierbus__v1__command__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                                           (const uint8_t *)natsMsg_GetData(m));
  const char *why = cmd == NULL ? "not a tierbus.v1.Command" : malformed(cmd);
  if (why != NULL) {
    TB_LOG(TB_LOG_WARN, MOD, "malformed command on %s (stream seq %llu, %d bytes): %s; terminated",
           subject, (unsigned long long)stream_seq(m), natsMsg_GetDataLength(m), why);
    tb_bus_term(sim->o.bus, m);
    natsMsg_Destroy(m);
    if (cmd) tierbus__v1__command__free_unpacked(cmd, NULL);
    count(sim, &sim->stats.malformed);
    return;
  }

  /* The subject routed the command here: it names the service and action when the body does
   * not. */
  char svc[TB_SIM_ACTION_MAX] = "", act[TB_SIM_ACTION_MAX] = "";
  if (strncmp(subject, "tb.cmd.", 7) == 0) {
    const char *rest = subject + 7, *dot = strchr(rest, '.');
    if (dot != NULL) {
      snprintf(svc, sizeof(svc), "%.*s", (int)(dot - rest), rest);
      snprintf(act, sizeof(act), "%s", dot + 1);
    }
  }
  Tierbus__V1__Command view = *cmd;
  if (cmd->service == NULL || *cmd->service == '\0') view.service = svc;
  if (cmd->action == NULL || *cmd->action == '\0') view.action = act;

  job_t *j = calloc(1, sizeof(*j));
  tb_status st = j ? tb_sim_answer(&sim->o, &view, &j->ans) : TB_ERR_NOMEM;
  if (st != TB_OK) {
    TB_LOG(TB_LOG_ERROR, MOD, "command %s: out of memory; handed back", cmd->command_id);
    tb_bus_nak(sim->o.bus, m, RETRY_MS);
    natsMsg_Destroy(m);
    tierbus__v1__command__free_unpacked(cmd, NULL);
    free(j);
    return;
  }
  j->msg = m;
  j->cmd = cmd;
  snprintf(j->action, sizeof(j->action), "%s.%s", view.service, view.action);
  if (j->ans.drop) {
    TB_LOG(TB_LOG_DEBUG, MOD, "command %s %s attempt %u: dropped (no answer)", cmd->command_id,
           j->action, cmd->attempt);
    tb_bus_ack(sim->o.bus, m);
    count(sim, &sim->stats.dropped);
    job_free(j);
    return;
  }
  TB_LOG(TB_LOG_DEBUG, MOD, "command %s %s attempt %u workflow %s: %d%s%s", cmd->command_id,
         j->action, cmd->attempt, cmd->workflow_id, j->ans.status_code, *j->ans.error ? " " : "",
         j->ans.error);
  if (cmd->reply_tier && *cmd->reply_tier) {
    int t = tb_config_tier_index(sim->o.cfg, cmd->reply_tier);
    if (t >= 0)
      j->tier = sim->o.cfg->tiers[t].name;
    else
      TB_LOG(TB_LOG_WARN, MOD,
             "command %s: reply_tier '%s' is not a configured tier; replying on "
             "the event's default tier",
             cmd->command_id, cmd->reply_tier);
  }
  if (cmd->reply_domain && *cmd->reply_domain) {
    if (tb_config_domain_index(sim->o.cfg, cmd->reply_domain) >= 0)
      j->domain = cmd->reply_domain;
    else
      TB_LOG(TB_LOG_WARN, MOD,
             "command %s: reply_domain '%s' is not a catalogue domain; replying on the event's "
             "own domain",
             cmd->command_id, cmd->reply_domain);
  }
  int64_t now = tb_mono_us();
  j->stage = STAGE_REPLY;
  j->due_us = now + sim->o.latency_ms * 1000;
  j->touched_us = now;
  push(sim, j);
}

/* Encodes one event for |j| into |p| (caller frees with tb_prepared_free on success). */
static tb_status prepare(tb_sim_t *sim, job_t *j, const char *event, json_t *payload,
                         const char *id, tb_prepared_t *p) {
  tb_publish_req_t req = {
      .event = event,
      .payload = payload,
      .tier = j->tier,
      /* Only the reply follows the workflow's domain; other events keep their own. */
      .domain = strcmp(event, EV_REPLY) == 0 ? j->domain : NULL,
      .id = id,
      .correlation_id =
          j->cmd->correlation_id && *j->cmd->correlation_id ? j->cmd->correlation_id : NULL,
      .workflow_id = j->cmd->workflow_id && *j->cmd->workflow_id ? j->cmd->workflow_id : NULL,
      .source = "tierbus-sim",
  };
  return tb_publish_prepare(sim->o.cfg, sim->o.cat, &req, p);
}

/* Encodes |j|'s due publication: its reply, or (stage STAGE_ENRICH) its enrichment-complete. */
static tb_status prepare_due(tb_sim_t *sim, job_t *j, tb_prepared_t *p) {
  if (j->stage == STAGE_ENRICH)
    return prepare(sim, j, EV_ENRICH, j->ans.enrichment, j->ans.enrichment_msg_id, p);
  char id[160];
  snprintf(id, sizeof(id), "reply:%s", j->cmd->command_id);
  json_t *payload = json_object();
  set_str(payload, "command_id", j->cmd->command_id);
  set_str(payload, "workflow_id", j->cmd->workflow_id ? j->cmd->workflow_id : "");
  json_object_set_new(payload, "status_code", json_integer(j->ans.status_code));
  set_str(payload, "result_json", j->ans.result_json);
  set_str(payload, "error", j->ans.error);
  tb_status st = prepare(sim, j, EV_REPLY, payload, id, p);
  json_decref(payload);
  return st;
}

/* 1 for the failures that no retry can fix: the event itself is wrong. */
static int permanent(tb_status st) {
  return st == TB_ERR_JSON || st == TB_ERR_INVALID || st == TB_ERR_TOO_LARGE ||
         st == TB_ERR_UNKNOWN_EVENT || st == TB_ERR_NOMEM;
}

/* Moves |j| on after its due publication ended with |st| (with the detail set on failure).
 * Returns 1 when the job is finished (its command settled), 0 when it goes back in the queue
 * (next stage, or a retry). While |draining|, a transient failure hands the command back to the
 * stream instead of waiting to retry. */
static int advance(tb_sim_t *sim, job_t *j, tb_status st, int draining) {
  int enrich = j->stage == STAGE_ENRICH;
  int64_t now = tb_mono_us();
  if (st == TB_OK) {
    if (enrich) {
      count(sim, &sim->stats.enrichments);
      TB_LOG(TB_LOG_DEBUG, MOD, "command %s: published %s %s", j->cmd->command_id, EV_ENRICH,
             j->ans.enrichment_msg_id);
    } else {
      count(sim, &sim->stats.replies);
      if (j->ans.status_code < 200 || j->ans.status_code >= 300) count(sim, &sim->stats.failures);
      if (j->ans.enrichment != NULL) {
        j->stage = STAGE_ENRICH;
        j->due_us = now + sim->o.enrich_delay_ms * 1000;
        return 0;
      }
    }
    /* Acked only now: a crash before this redelivers the command, and the deterministic ids let
     * the stream drop what was already published. */
    tb_bus_ack(sim->o.bus, j->msg);
    return 1;
  }
  if (permanent(st)) {
    TB_LOG(TB_LOG_ERROR, MOD, "command %s %s: cannot publish %s: %s; terminated",
           j->cmd->command_id, j->action, enrich ? EV_ENRICH : EV_REPLY, tb_errdetail());
    tb_bus_term(sim->o.bus, j->msg);
    return 1;
  }
  if (draining) {
    tb_bus_nak(sim->o.bus, j->msg, 0);
    return 1;
  }
  TB_LOG(TB_LOG_WARN, MOD, "command %s: publishing %s failed (%s); retrying in %d ms",
         j->cmd->command_id, enrich ? EV_ENRICH : EV_REPLY, tb_errdetail(), RETRY_MS);
  j->due_us = now + RETRY_MS * 1000LL;
  return 0;
}

/* How long a round of publications waits for the stream's acks. */
#define ACK_TIMEOUT_MS 5000
/* The most publications of one round. */
#define ROUND_MAX 64

/* Publishes what is due in rounds: every due job's next publication goes out without waiting
 * between them, and the round's acks are collected together (tb_bus_publish_many), instead of
 * one round trip per publication, which capped the simulator's answers at the server's round
 * trip and woke this thread twice per command. A job's own publications keep their order: its
 * enrichment-complete is due only once its reply was acked, in a later round. */
static void run_due(tb_sim_t *sim, int draining) {
  while (sim->n_jobs > 0 && sim->jobs[0]->due_us <= tb_mono_us()) {
    job_t *due[ROUND_MAX];
    tb_prepared_t prep[ROUND_MAX];
    tb_status st[ROUND_MAX];
    char err[ROUND_MAX][256];
    tb_pub_item_t items[ROUND_MAX];
    int slot[ROUND_MAX], n = 0, k = 0;
    int64_t now = tb_mono_us();
    while (n < ROUND_MAX && sim->n_jobs > 0 && sim->jobs[0]->due_us <= now) due[n++] = pop(sim);
    for (int i = 0; i < n; i++) {
      slot[i] = -1;
      st[i] = prepare_due(sim, due[i], &prep[i]);
      if (st[i] != TB_OK) {
        snprintf(err[i], sizeof(err[i]), "%s", tb_errdetail());
        continue;
      }
      items[k] = (tb_pub_item_t){.subject = prep[i].subject,
                                 .msg_id = prep[i].id,
                                 .data = prep[i].buf,
                                 .len = prep[i].len};
      slot[i] = k++;
    }
    if (k > 0) tb_bus_publish_many(sim->o.bus, items, k, ACK_TIMEOUT_MS);
    for (int i = 0; i < n; i++) {
      if (slot[i] >= 0) {
        st[i] = items[slot[i]].st;
        snprintf(err[i], sizeof(err[i]), "%s", items[slot[i]].err);
        tb_prepared_free(&prep[i]);
      }
      if (st[i] != TB_OK) tb__fail(st[i], "%s", err[i]); /* the detail advance() logs */
      if (advance(sim, due[i], st[i], draining))
        job_free(due[i]);
      else
        push(sim, due[i]);
    }
  }
}

/* Keeps the commands that wait out a long latency from being redelivered to another simulator. */
static void keep_alive(tb_sim_t *sim) {
  int64_t now = tb_mono_us();
  for (int i = 0; i < sim->n_jobs; i++) {
    job_t *j = sim->jobs[i];
    if (now - j->touched_us >= KEEPALIVE_MS * 1000LL) {
      tb_bus_in_progress(sim->o.bus, j->msg);
      j->touched_us = now;
    }
  }
}

static void *run(void *arg) {
  tb_sim_t *sim = arg;
  natsMsg *batch[FETCH_MAX];
  while (!atomic_load(&sim->stop)) {
    run_due(sim, 0);
    keep_alive(sim);
    int64_t wait_ms = POLL_MS;
    if (sim->n_jobs > 0) {
      int64_t until = (sim->jobs[0]->due_us - tb_mono_us() + 999) / 1000;
      wait_ms = until < 0 ? 0 : until < POLL_MS ? until : POLL_MS;
    }
    int room = sim->o.max_inflight - sim->n_jobs;
    if (room > FETCH_MAX) room = FETCH_MAX;
    if (room <= 0) {
      tb_sleep_us(wait_ms > 0 ? wait_ms * 1000 : 1000);
      continue;
    }
    int n = 0;
    tb_status st = tb_consumer_fetch(sim->cons, batch, room, &n, wait_ms);
    if (st == TB_OK) {
      if (sim->fetch_failing) TB_LOG(TB_LOG_INFO, MOD, "taking commands again");
      sim->fetch_failing = 0;
      for (int i = 0; i < n; i++) take(sim, batch[i]);
    } else if (st != TB_ERR_TIMEOUT) {
      if (!sim->fetch_failing)
        TB_LOG(TB_LOG_WARN, MOD, "cannot take commands: %s; retrying", tb_errdetail());
      sim->fetch_failing = 1;
      tb_sleep_us(POLL_MS * 1000LL);
    }
  }
  /* Stopping: answer what is due soon, hand the rest back unanswered. */
  int64_t grace_end = tb_mono_us() + STOP_GRACE_MS * 1000LL;
  while (sim->n_jobs > 0 && sim->jobs[0]->due_us <= grace_end) {
    tb_sleep_us(sim->jobs[0]->due_us - tb_mono_us());
    run_due(sim, 1);
  }
  for (int i = 0; i < sim->n_jobs; i++) {
    tb_bus_nak(sim->o.bus, sim->jobs[i]->msg, 0);
    job_free(sim->jobs[i]);
  }
  sim->n_jobs = 0;
  return NULL;
}

tb_status tb_sim_start(tb_sim_t **out, const tb_sim_opts_t *o) {
  if (o->bus == NULL || o->cfg == NULL || o->cat == NULL)
    return tb__fail(TB_ERR_INVALID, "sim: bus, config and catalogue are required");
  if (o->latency_ms < 0 || o->enrich_delay_ms < 0)
    return tb__fail(TB_ERR_INVALID, "sim: latency and enrich delay must not be negative");
  if (o->max_inflight < 1 || o->max_inflight > 100000)
    return tb__fail(TB_ERR_INVALID, "sim: max_inflight must be from 1 to 100000, got %d",
                    o->max_inflight);
  if (o->n_fails < 0 || o->n_fails > TB_SIM_MAX_FAILS)
    return tb__fail(TB_ERR_INVALID, "sim: at most %d failure rules, got %d", TB_SIM_MAX_FAILS,
                    o->n_fails);
  const char *durable = o->durable && *o->durable ? o->durable : DEFAULT_DURABLE;
  if (!tb_nats_token_valid(durable) || strlen(durable) >= 64)
    return tb__fail(TB_ERR_INVALID, "sim: bad consumer name '%s'", durable);
  if (tb_catalogue_find(o->cat, EV_REPLY) == NULL || tb_catalogue_find(o->cat, EV_ENRICH) == NULL)
    return tb__fail(TB_ERR_CONFIG, "sim: the catalogue lacks the %s or %s event", EV_REPLY,
                    EV_ENRICH);

  tb_sim_t *sim = calloc(1, sizeof(*sim));
  if (sim == NULL) return tb__fail(TB_ERR_NOMEM, "sim");
  sim->o = *o;
  snprintf(sim->durable, sizeof(sim->durable), "%s", durable);
  sim->o.durable = sim->durable;
  sim->jobs = calloc((size_t)o->max_inflight, sizeof(*sim->jobs));
  if (sim->jobs == NULL) {
    free(sim);
    return tb__fail(TB_ERR_NOMEM, "sim: job queue of %d", o->max_inflight);
  }
  pthread_mutex_init(&sim->mu, NULL);
  char stream[64];
  tb_bus_cmd_stream(o->cfg, stream, sizeof(stream));
  tb_status st =
      tb_consumer_open_stream(&sim->cons, o->bus, stream, sim->durable, "tb.cmd.>", ACK_WAIT_MS);
  int rc = st == TB_OK ? pthread_create(&sim->thread, NULL, run, sim) : 0;
  if (rc != 0) {
    tb_consumer_close(sim->cons);
    st = tb__fail(TB_ERR_NOMEM, "sim: cannot start its thread: pthread_create: %s", strerror(rc));
  }
  if (st != TB_OK) {
    pthread_mutex_destroy(&sim->mu);
    free(sim->jobs);
    free(sim);
    return st;
  }
  *out = sim;
  return TB_OK;
}

void tb_sim_stop(tb_sim_t *sim, tb_sim_stats_t *final) {
  if (sim == NULL) return;
  atomic_store(&sim->stop, 1);
  pthread_join(sim->thread, NULL);
  if (final != NULL) *final = sim->stats;
  tb_consumer_close(sim->cons);
  pthread_mutex_destroy(&sim->mu);
  free(sim->jobs);
  free(sim);
}
