/* The event catalogue: parses subjects/catalogue.json (compiled in, or from a file), checks every
 * entry against the generated protobuf descriptors, and answers the per-message lookup of an
 * event by its canonical name. */
#include "codec/catalogue.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/descriptors.h"
#include "core/status.h"

struct tb_catalogue {
  json_t *root;                   /* owns every string the entries point to */
  tb_event_def_t *events;         /* in file order, for tb_catalogue_at() */
  const tb_event_def_t **by_name; /* sorted by name, for bsearch in tb_catalogue_find() */
  size_t n;
};

/* The keys an event entry may carry. Unknown keys are refused so that a typo such as
 * "ordering-key" cannot silently drop a setting. */
static const char *const event_keys[] = {"name",        "message",      "domain",       "token",
                                         "subject",     "default_tier", "ordering_key", "handler",
                                         "description", "required"};

/* ---------------------------------------------------------------------------------------------
 * Descriptor table lookup
 * ------------------------------------------------------------------------------------------- */

const ProtobufCMessageDescriptor *tb__codec_descriptor(const char *full_name) {
  if (!full_name) return NULL;
  for (size_t i = 0; i < tb__codec_n_descriptors; i++) {
    if (strcmp(tb__codec_descriptors[i].desc->name, full_name) == 0)
      return tb__codec_descriptors[i].desc;
  }
  return NULL;
}

bool tb_nats_token_valid(const char *token) {
  if (!token || !*token) return false;
  for (const unsigned char *p = (const unsigned char *)token; *p; p++) {
    /* '.' separates tokens, '*' and '>' are wildcards; whitespace and control characters end a
     * subject in the NATS protocol. */
    if (*p == '.' || *p == '*' || *p == '>' || *p <= ' ' || *p == 0x7f) return false;
  }
  return true;
}

/* ---------------------------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------------------------- */

/* Every failure of a load carries the origin ("catalogue" for the built-in copy, the path for a
 * file) so that a broken file on disk is not mistaken for the compiled-in one. */
static tb_status cat_fail(const char *origin, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static tb_status cat_fail(const char *origin, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (origin) return tb__fail(TB_ERR_CONFIG, "%s: %s", origin, msg);
  return tb__fail(TB_ERR_CONFIG, "%s", msg);
}

/* Reads the required non-empty string |key| of event entry |obj| (index |i|, name |name| when
 * known) into |*out| (borrowed from the JSON tree). */
static tb_status event_string(const char *origin, json_t *obj, size_t i, const char *name,
                              const char *key, const char **out) {
  json_t *v = json_object_get(obj, key);
  if (!json_is_string(v) || json_string_length(v) == 0) {
    if (name)
      return cat_fail(origin, "catalogue event '%s': '%s' must be a non-empty string", name, key);
    return cat_fail(origin, "catalogue events[%zu]: '%s' must be a non-empty string", i, key);
  }
  *out = json_string_value(v);
  return TB_OK;
}

static bool tier_known(json_t *tiers, const char *tier) {
  size_t i;
  json_t *t;
  json_array_foreach(tiers, i, t) {
    if (strcmp(json_string_value(t), tier) == 0) return true;
  }
  return false;
}

static tb_status check_tiers(const char *origin, json_t *tiers) {
  if (!json_is_array(tiers) || json_array_size(tiers) == 0)
    return cat_fail(origin, "catalogue: 'tiers' must be a non-empty array of tier names");
  size_t i;
  json_t *t;
  json_array_foreach(tiers, i, t) {
    if (!json_is_string(t)) return cat_fail(origin, "catalogue: tiers[%zu] must be a string", i);
    const char *name = json_string_value(t);
    if (!tb_nats_token_valid(name))
      return cat_fail(origin, "catalogue: tiers[%zu] '%s' is not a valid NATS subject token", i,
                      name);
    for (size_t j = 0; j < i; j++) {
      if (strcmp(json_string_value(json_array_get(tiers, j)), name) == 0)
        return cat_fail(origin, "catalogue: tier '%s' is listed twice", name);
    }
  }
  return TB_OK;
}

/* Fills ev->required from the optional "required" array: singular string fields of the message
 * that a publisher must set (non-empty). publish refuses an event without one and the engine
 * dead-letters it (missing_field), from this one list. */
static tb_status parse_required(const char *origin, json_t *req, tb_event_def_t *ev) {
  if (req == NULL) return TB_OK;
  if (!json_is_array(req))
    return cat_fail(origin, "catalogue event '%s': required must be an array of field names",
                    ev->name);
  size_t n = json_array_size(req);
  if (n > TB_CATALOGUE_MAX_REQUIRED)
    return cat_fail(origin, "catalogue event '%s': %zu required fields (at most %d)", ev->name, n,
                    TB_CATALOGUE_MAX_REQUIRED);
  for (size_t k = 0; k < n; k++) {
    const char *f = json_string_value(json_array_get(req, k));
    const ProtobufCFieldDescriptor *fd =
        f ? protobuf_c_message_descriptor_get_field_by_name(ev->descriptor, f) : NULL;
    if (fd == NULL || fd->type != PROTOBUF_C_TYPE_STRING || fd->label == PROTOBUF_C_LABEL_REPEATED)
      return cat_fail(origin, "catalogue event '%s': required[%zu] is not a string field of %s",
                      ev->name, k, ev->message);
    ev->required[k] = f;
  }
  ev->n_required = (int)n;
  return TB_OK;
}

/* Fills |ev| from entry |obj| and checks it: the message exists in the generated schemas, the
 * tokens are valid, the subject pattern agrees with domain and token, the default tier exists
 * and the ordering key is a singular string field of the message. */
static tb_status parse_event(const char *origin, json_t *obj, size_t i, json_t *tiers,
                             tb_event_def_t *ev) {
  if (!json_is_object(obj)) return cat_fail(origin, "catalogue events[%zu]: must be an object", i);
  tb_status rc = event_string(origin, obj, i, NULL, "name", &ev->name);
  if (rc != TB_OK) return rc;
  const char *name = ev->name;

  const char *key;
  json_t *val;
  json_object_foreach(obj, key, val) {
    bool known = false;
    for (size_t k = 0; k < sizeof event_keys / sizeof event_keys[0]; k++)
      if (strcmp(key, event_keys[k]) == 0) known = true;
    if (!known) return cat_fail(origin, "catalogue event '%s': unknown key '%s'", name, key);
  }

  const char *description = NULL;
  const char *subject = NULL;
  if ((rc = event_string(origin, obj, i, name, "message", &ev->message)) != TB_OK ||
      (rc = event_string(origin, obj, i, name, "domain", &ev->domain)) != TB_OK ||
      (rc = event_string(origin, obj, i, name, "token", &ev->token)) != TB_OK ||
      (rc = event_string(origin, obj, i, name, "subject", &subject)) != TB_OK ||
      (rc = event_string(origin, obj, i, name, "default_tier", &ev->default_tier)) != TB_OK ||
      (rc = event_string(origin, obj, i, name, "handler", &ev->handler)) != TB_OK ||
      (rc = event_string(origin, obj, i, name, "description", &description)) != TB_OK)
    return rc;

  ev->descriptor = tb__codec_descriptor(ev->message);
  if (!ev->descriptor)
    return cat_fail(origin, "catalogue event '%s': message '%s' is not in schemas", name,
                    ev->message);

  if (!tb_nats_token_valid(ev->domain))
    return cat_fail(origin, "catalogue event '%s': domain '%s' is not a valid NATS subject token",
                    name, ev->domain);
  if (!tb_nats_token_valid(ev->token))
    return cat_fail(origin, "catalogue event '%s': token '%s' is not a valid NATS subject token",
                    name, ev->token);

  char want[512];
  snprintf(want, sizeof want, "tb.evt.{tier}.%s.%s", ev->domain, ev->token);
  if (strcmp(subject, want) != 0)
    return cat_fail(origin, "catalogue event '%s': subject '%s' does not match '%s'", name, subject,
                    want);

  if (!tier_known(tiers, ev->default_tier))
    return cat_fail(origin, "catalogue event '%s': default_tier '%s' is not in 'tiers'", name,
                    ev->default_tier);

  json_t *ok = json_object_get(obj, "ordering_key");
  if (!ok || json_is_null(ok)) {
    ev->ordering_key = NULL;
  } else if (!json_is_string(ok) || json_string_length(ok) == 0) {
    return cat_fail(origin, "catalogue event '%s': ordering_key must be a field name or null",
                    name);
  } else {
    ev->ordering_key = json_string_value(ok);
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(ev->descriptor, ev->ordering_key);
    if (!fd)
      return cat_fail(origin, "catalogue event '%s': ordering_key '%s' is not a field of %s", name,
                      ev->ordering_key, ev->message);
    if (fd->type != PROTOBUF_C_TYPE_STRING || fd->label == PROTOBUF_C_LABEL_REPEATED)
      return cat_fail(origin,
                      "catalogue event '%s': ordering_key '%s' of %s is not a singular string "
                      "field",
                      name, ev->ordering_key, ev->message);
  }
  return parse_required(origin, json_object_get(obj, "required"), ev);
}

static int cmp_def_ptr(const void *a, const void *b) {
  const tb_event_def_t *x = *(const tb_event_def_t *const *)a;
  const tb_event_def_t *y = *(const tb_event_def_t *const *)b;
  return strcmp(x->name, y->name);
}

/* Builds a catalogue from a parsed document. Takes ownership of |root| on every path. */
static tb_status build(json_t *root, const char *origin, tb_catalogue_t **out) {
  tb_status rc = TB_OK;
  tb_catalogue_t *cat = calloc(1, sizeof *cat);
  if (!cat) {
    json_decref(root);
    return tb__fail(TB_ERR_NOMEM, "catalogue: allocating the catalogue");
  }
  cat->root = root;

  if (!json_is_object(root)) {
    rc = cat_fail(origin, "catalogue: top level must be a JSON object");
    goto fail;
  }
  json_t *tiers = json_object_get(root, "tiers");
  if ((rc = check_tiers(origin, tiers)) != TB_OK) goto fail;

  json_t *events = json_object_get(root, "events");
  if (!json_is_array(events) || json_array_size(events) == 0) {
    rc = cat_fail(origin, "catalogue: 'events' must be a non-empty array");
    goto fail;
  }
  size_t n = json_array_size(events);
  cat->events = calloc(n, sizeof *cat->events);
  cat->by_name = calloc(n, sizeof *cat->by_name);
  if (!cat->events || !cat->by_name) {
    rc = tb__fail(TB_ERR_NOMEM, "catalogue: allocating %zu events", n);
    goto fail;
  }
  for (size_t i = 0; i < n; i++) {
    rc = parse_event(origin, json_array_get(events, i), i, tiers, &cat->events[i]);
    if (rc != TB_OK) goto fail;
    /* Two events on one subject could not be told apart by a subscriber filtering on subjects. */
    for (size_t j = 0; j < i; j++) {
      if (strcmp(cat->events[j].domain, cat->events[i].domain) == 0 &&
          strcmp(cat->events[j].token, cat->events[i].token) == 0) {
        rc = cat_fail(origin, "catalogue event '%s': subject '%s.%s' is already used by event '%s'",
                      cat->events[i].name, cat->events[i].domain, cat->events[i].token,
                      cat->events[j].name);
        goto fail;
      }
    }
    cat->by_name[i] = &cat->events[i];
  }
  cat->n = n;

  qsort(cat->by_name, n, sizeof *cat->by_name, cmp_def_ptr);
  for (size_t i = 1; i < n; i++) {
    if (strcmp(cat->by_name[i - 1]->name, cat->by_name[i]->name) == 0) {
      rc = cat_fail(origin, "catalogue: event '%s' is listed twice", cat->by_name[i]->name);
      goto fail;
    }
  }
  *out = cat;
  return TB_OK;

fail:
  tb_catalogue_destroy(cat);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Public interface
 * ------------------------------------------------------------------------------------------- */

tb_status tb_catalogue_load(tb_catalogue_t **out) {
  if (!out) return tb__fail(TB_ERR_INVALID, "tb_catalogue_load: out is NULL");
  json_error_t err;
  json_t *root = json_loadb((const char *)tb__catalogue_json, tb__catalogue_json_len, 0, &err);
  if (!root)
    return tb__fail(TB_ERR_CONFIG, "catalogue (built in):%d:%d: %s", err.line, err.column,
                    err.text);
  return build(root, NULL, out);
}

tb_status tb_catalogue_load_file(tb_catalogue_t **out, const char *path) {
  if (!out || !path) return tb__fail(TB_ERR_INVALID, "tb_catalogue_load_file: NULL argument");
  json_error_t err;
  json_t *root = json_load_file(path, 0, &err);
  if (!root) {
    /* jansson reports an unreadable file with line -1; keep its text, which names the errno. */
    if (err.line < 0) return tb__fail(TB_ERR_IO, "%s: %s", path, err.text);
    return tb__fail(TB_ERR_CONFIG, "%s:%d:%d: %s", path, err.line, err.column, err.text);
  }
  return build(root, path, out);
}

void tb_catalogue_destroy(tb_catalogue_t *cat) {
  if (!cat) return;
  free(cat->by_name);
  free(cat->events);
  json_decref(cat->root);
  free(cat);
}

const tb_event_def_t *tb_catalogue_find(const tb_catalogue_t *cat, const char *name) {
  if (!cat || !name) return NULL;
  size_t lo = 0, hi = cat->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(cat->by_name[mid]->name, name);
    if (c == 0) return cat->by_name[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

size_t tb_catalogue_count(const tb_catalogue_t *cat) {
  return cat ? cat->n : 0;
}

const tb_event_def_t *tb_catalogue_at(const tb_catalogue_t *cat, size_t i) {
  if (!cat || i >= cat->n) return NULL;
  return &cat->events[i];
}

int tb_catalogue_domains(const tb_catalogue_t *cat, const char **out, int max) {
  int n = 0;
  for (size_t i = 0; i < tb_catalogue_count(cat); i++) {
    const char *d = tb_catalogue_at(cat, i)->domain;
    int seen = 0;
    for (size_t j = 0; j < i && !seen; j++) seen = strcmp(tb_catalogue_at(cat, j)->domain, d) == 0;
    if (seen) continue;
    if (n < max) out[n] = d;
    n++;
  }
  return n;
}

tb_status tb_catalogue_subject(const tb_event_def_t *ev, const char *tier, const char *domain,
                               char *buf, size_t cap) {
  if (!ev || !buf) return tb__fail(TB_ERR_INVALID, "tb_catalogue_subject: NULL argument");
  if (domain == NULL) domain = ev->domain;
  if (!tb_nats_token_valid(domain))
    return tb__fail(TB_ERR_INVALID, "event '%s': domain '%s' is not a valid NATS subject token",
                    ev->name, domain);
  /* The tier comes from publishers and config; a '.' or wildcard in it would silently publish
   * to another subject. */
  if (!tb_nats_token_valid(tier))
    return tb__fail(TB_ERR_INVALID, "event '%s': tier '%s' is not a valid NATS subject token",
                    ev->name, tier ? tier : "(null)");
  int n = snprintf(buf, cap, "tb.evt.%s.%s.%s", tier, domain, ev->token);
  if (n < 0 || (size_t)n >= cap) {
    if (cap > 0) buf[0] = '\0';
    return tb__fail(TB_ERR_INVALID, "event '%s': subject needs %d bytes, buffer has %zu", ev->name,
                    n + 1, cap);
  }
  return TB_OK;
}
