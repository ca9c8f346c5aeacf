/* Wire codec: packing and decoding of the tierbus envelope and its event payload, and the JSON
 * <-> protobuf mapping done by reflection over the protobuf-c descriptors (jansson parses and
 * prints the JSON; this file only walks the descriptors). */
#include "codec/codec.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

/* ---------------------------------------------------------------------------------------------
 * Error context: the event (or message) being mapped and the path of the field at hand, so that
 * a detail reads "CLIENT_CREATED: field 'results[2].fields[email]': expected a string, got
 * number".
 * ------------------------------------------------------------------------------------------- */

typedef struct jctx {
  const char *what; /* event name (from JSON) or message full name (to JSON) */
  char path[256];
  size_t len;
} jctx_t;

static size_t path_push(jctx_t *cx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(jctx_t *cx, const char *fmt, ...) {
  size_t saved = cx->len;
  if (cx->len < sizeof cx->path - 1) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cx->path + cx->len, sizeof cx->path - cx->len, fmt, ap);
    va_end(ap);
    if (n > 0) cx->len += (size_t)n;
    if (cx->len > sizeof cx->path - 1) cx->len = sizeof cx->path - 1;
  }
  return saved;
}

static size_t path_field(jctx_t *cx, const char *name) {
  return cx->len ? path_push(cx, ".%s", name) : path_push(cx, "%s", name);
}

static void path_pop(jctx_t *cx, size_t saved) {
  cx->len = saved;
  cx->path[saved] = '\0';
}

static tb_status jfail(const jctx_t *cx, tb_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static tb_status jfail(const jctx_t *cx, tb_status s, const char *fmt, ...) {
  char msg[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (cx->len) return tb__fail(s, "%s: field '%s': %s", cx->what, cx->path, msg);
  return tb__fail(s, "%s: %s", cx->what, msg);
}

static const char *jtype(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "object";
  case JSON_ARRAY:
    return "array";
  case JSON_STRING:
    return "string";
  case JSON_INTEGER:
  case JSON_REAL:
    return "number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "boolean";
  case JSON_NULL:
    return "null";
  }
  return "?";
}

static const char *ptype(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT32:
    return "int32";
  case PROTOBUF_C_TYPE_SINT32:
    return "sint32";
  case PROTOBUF_C_TYPE_SFIXED32:
    return "sfixed32";
  case PROTOBUF_C_TYPE_INT64:
    return "int64";
  case PROTOBUF_C_TYPE_SINT64:
    return "sint64";
  case PROTOBUF_C_TYPE_SFIXED64:
    return "sfixed64";
  case PROTOBUF_C_TYPE_UINT32:
    return "uint32";
  case PROTOBUF_C_TYPE_FIXED32:
    return "fixed32";
  case PROTOBUF_C_TYPE_UINT64:
    return "uint64";
  case PROTOBUF_C_TYPE_FIXED64:
    return "fixed64";
  case PROTOBUF_C_TYPE_FLOAT:
    return "float";
  case PROTOBUF_C_TYPE_DOUBLE:
    return "double";
  case PROTOBUF_C_TYPE_BOOL:
    return "bool";
  case PROTOBUF_C_TYPE_ENUM:
    return "enum";
  case PROTOBUF_C_TYPE_STRING:
    return "string";
  case PROTOBUF_C_TYPE_BYTES:
    return "bytes";
  case PROTOBUF_C_TYPE_MESSAGE:
    return "message";
  }
  return "?";
}

/* ---------------------------------------------------------------------------------------------
 * Descriptor helpers
 * ------------------------------------------------------------------------------------------- */

/* True if |key| is the lowerCamelCase JSON name of proto field |name| (protobuf's rule: drop each
 * '_' and upper-case the letter after it). */
static bool json_name_matches(const char *key, const char *name) {
  bool upper = false;
  for (; *name; name++) {
    if (*name == '_') {
      upper = true;
      continue;
    }
    char want = upper && *name >= 'a' && *name <= 'z' ? (char)(*name - 'a' + 'A') : *name;
    upper = false;
    if (*key++ != want) return false;
  }
  return *key == '\0';
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d,
                                                  const char *key) {
  const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field_by_name(d, key);
  if (fd) return fd;
  for (unsigned i = 0; i < d->n_fields; i++)
    if (json_name_matches(key, d->fields[i].name)) return &d->fields[i];
  return NULL;
}

/* protobuf-c has no map flag: protoc lowers `map<K,V> foo_bar` to `repeated FooBarEntry foo_bar`
 * with an entry message of fields key = 1 and value = 2, and that shape is what we recognise. */
static bool is_map_field(const ProtobufCFieldDescriptor *fd) {
  if (fd->label != PROTOBUF_C_LABEL_REPEATED || fd->type != PROTOBUF_C_TYPE_MESSAGE) return false;
  const ProtobufCMessageDescriptor *e = fd->descriptor;
  if (e->n_fields != 2 || e->fields[0].id != 1 || strcmp(e->fields[0].name, "key") != 0 ||
      e->fields[1].id != 2 || strcmp(e->fields[1].name, "value") != 0)
    return false;
  const char *s = e->short_name;
  bool upper = true;
  for (const char *p = fd->name; *p; p++) {
    if (*p == '_') {
      upper = true;
      continue;
    }
    char want = upper && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
    upper = false;
    if (*s++ != want) return false;
  }
  return strcmp(s, "Entry") == 0;
}

static size_t elem_size(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
  case PROTOBUF_C_TYPE_FLOAT:
  case PROTOBUF_C_TYPE_ENUM:
    return 4;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
  case PROTOBUF_C_TYPE_DOUBLE:
    return 8;
  case PROTOBUF_C_TYPE_BOOL:
    return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING:
    return sizeof(char *);
  case PROTOBUF_C_TYPE_BYTES:
    return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_MESSAGE:
    return sizeof(ProtobufCMessage *);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * base64 (RFC 4648), the JSON form of bytes fields
 * ------------------------------------------------------------------------------------------- */

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62; /* '-' and '_': the URL-safe alphabet, as protobuf accepts */
  if (c == '/' || c == '_') return 63;
  return -1;
}

/* Decodes |n| characters; padding is optional. Returns 0, -1 for invalid input, -2 for no
 * memory. On success the caller frees *out with free(). */
static int b64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len) {
  size_t pad = 0;
  while (n > 0 && s[n - 1] == '=' && pad < 2) {
    n--;
    pad++;
  }
  if ((pad && (n + pad) % 4 != 0) || n % 4 == 1) return -1;
  size_t len = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) return -2;
  uint32_t acc = 0;
  int bits = 0;
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64_value((unsigned char)s[i]);
    if (v < 0) {
      free(buf);
      return -1;
    }
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      buf[j++] = (uint8_t)(acc >> bits);
    }
  }
  *out = buf;
  *out_len = j;
  return 0;
}

/* Returns a malloc'd NUL-terminated encoding (with padding), or NULL for no memory. */
static char *b64_encode(const uint8_t *data, size_t len) {
  char *out = malloc((len + 2) / 3 * 4 + 1);
  if (!out) return NULL;
  size_t j = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)data[i] << 16;
    if (i + 1 < len) v |= (uint32_t)data[i + 1] << 8;
    if (i + 2 < len) v |= data[i + 2];
    out[j++] = b64_chars[(v >> 18) & 63];
    out[j++] = b64_chars[(v >> 12) & 63];
    out[j++] = i + 1 < len ? b64_chars[(v >> 6) & 63] : '=';
    out[j++] = i + 2 < len ? b64_chars[v & 63] : '=';
  }
  out[j] = '\0';
  return out;
}

/* ---------------------------------------------------------------------------------------------
 * JSON -> protobuf
 * ------------------------------------------------------------------------------------------- */

static tb_status fill_message(jctx_t *cx, ProtobufCMessage *msg, json_t *obj);
static tb_status set_field(jctx_t *cx, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *fd,
                           json_t *val);

/* Strict decimal parse of a whole string; *erange is set when the digits overflow int64. */
static bool parse_i64(const char *s, int64_t *out, bool *erange) {
  *erange = false;
  const char *digits = s[0] == '-' ? s + 1 : s;
  if (*digits < '0' || *digits > '9') return false;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (*end != '\0') return false;
  if (errno == ERANGE) {
    *erange = true;
    return false;
  }
  *out = v;
  return true;
}

/* Reads a signed integer of protobuf type |t| within [lo, hi] from a JSON integer, an integral
 * JSON real (1e3) or a decimal string (protobuf's JSON mapping accepts both forms). */
static tb_status get_signed(jctx_t *cx, json_t *v, ProtobufCType t, int64_t lo, int64_t hi,
                            int64_t *out) {
  char shown[64];
  int64_t x;
  if (json_is_integer(v)) {
    x = json_integer_value(v);
    snprintf(shown, sizeof shown, "%" PRId64, x);
  } else if (json_is_real(v)) {
    double d = json_real_value(v);
    if (d != floor(d))
      return jfail(cx, TB_ERR_JSON, "expected an integer (%s), got %.17g", ptype(t), d);
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
      return jfail(cx, TB_ERR_JSON, "value %.17g out of range for %s", d, ptype(t));
    x = (int64_t)d;
    snprintf(shown, sizeof shown, "%.17g", d);
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    bool erange;
    if (!parse_i64(s, &x, &erange)) {
      if (erange) return jfail(cx, TB_ERR_JSON, "value %s out of range for %s", s, ptype(t));
      return jfail(cx, TB_ERR_JSON, "'%s' is not a decimal integer (%s)", s, ptype(t));
    }
    snprintf(shown, sizeof shown, "%s", s);
  } else {
    return jfail(cx, TB_ERR_JSON, "expected an integer (%s), got %s", ptype(t), jtype(v));
  }
  if (x < lo || x > hi)
    return jfail(cx, TB_ERR_JSON, "value %s out of range for %s", shown, ptype(t));
  *out = x;
  return TB_OK;
}

/* Unsigned counterpart of get_signed(); a uint64 above INT64_MAX can only come as a string,
 * because JSON integers are parsed into int64. */
static tb_status get_unsigned(jctx_t *cx, json_t *v, ProtobufCType t, uint64_t hi, uint64_t *out) {
  char shown[64];
  uint64_t x;
  if (json_is_integer(v)) {
    json_int_t i = json_integer_value(v);
    if (i < 0)
      return jfail(cx, TB_ERR_JSON, "value %" PRId64 " out of range for %s", (int64_t)i, ptype(t));
    x = (uint64_t)i;
    snprintf(shown, sizeof shown, "%" PRIu64, x);
  } else if (json_is_real(v)) {
    double d = json_real_value(v);
    if (d != floor(d))
      return jfail(cx, TB_ERR_JSON, "expected an integer (%s), got %.17g", ptype(t), d);
    if (!(d >= 0 && d < 18446744073709551616.0))
      return jfail(cx, TB_ERR_JSON, "value %.17g out of range for %s", d, ptype(t));
    x = (uint64_t)d;
    snprintf(shown, sizeof shown, "%.17g", d);
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    if (s[0] == '-') {
      int64_t neg;
      bool erange;
      if (!parse_i64(s, &neg, &erange) && !erange)
        return jfail(cx, TB_ERR_JSON, "'%s' is not a decimal integer (%s)", s, ptype(t));
      if (erange || neg != 0)
        return jfail(cx, TB_ERR_JSON, "value %s out of range for %s", s, ptype(t));
      x = 0;
    } else {
      if (*s < '0' || *s > '9')
        return jfail(cx, TB_ERR_JSON, "'%s' is not a decimal integer (%s)", s, ptype(t));
      char *end;
      errno = 0;
      unsigned long long u = strtoull(s, &end, 10);
      if (*end != '\0')
        return jfail(cx, TB_ERR_JSON, "'%s' is not a decimal integer (%s)", s, ptype(t));
      if (errno == ERANGE)
        return jfail(cx, TB_ERR_JSON, "value %s out of range for %s", s, ptype(t));
      x = u;
    }
    snprintf(shown, sizeof shown, "%s", s);
  } else {
    return jfail(cx, TB_ERR_JSON, "expected an integer (%s), got %s", ptype(t), jtype(v));
  }
  if (x > hi) return jfail(cx, TB_ERR_JSON, "value %s out of range for %s", shown, ptype(t));
  *out = x;
  return TB_OK;
}

/* float and double: JSON numbers, or the strings "NaN", "Infinity", "-Infinity" and decimal
 * strings as in protobuf's JSON mapping. */
static tb_status get_double(jctx_t *cx, json_t *v, ProtobufCType t, double *out) {
  double d;
  if (json_is_number(v)) {
    d = json_number_value(v);
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    if (strcmp(s, "NaN") == 0) {
      d = NAN;
    } else if (strcmp(s, "Infinity") == 0) {
      d = INFINITY;
    } else if (strcmp(s, "-Infinity") == 0) {
      d = -INFINITY;
    } else {
      /* strtod also takes "inf", "nan" and hex; only plain decimal text is a JSON number. */
      const char *p = s[0] == '-' ? s + 1 : s;
      if (!((*p >= '0' && *p <= '9') || *p == '.') || strpbrk(s, "xXnN"))
        return jfail(cx, TB_ERR_JSON, "'%s' is not a number (%s)", s, ptype(t));
      char *end;
      errno = 0;
      d = strtod(s, &end);
      if (*end != '\0') return jfail(cx, TB_ERR_JSON, "'%s' is not a number (%s)", s, ptype(t));
      if (errno == ERANGE && isinf(d))
        return jfail(cx, TB_ERR_JSON, "value %s out of range for %s", s, ptype(t));
    }
  } else {
    return jfail(cx, TB_ERR_JSON, "expected a number (%s), got %s", ptype(t), jtype(v));
  }
  if (t == PROTOBUF_C_TYPE_FLOAT && isfinite(d) && fabs(d) > FLT_MAX)
    return jfail(cx, TB_ERR_JSON, "value %.17g out of range for float", d);
  *out = d;
  return TB_OK;
}

static tb_status get_enum(jctx_t *cx, const ProtobufCFieldDescriptor *fd, json_t *v, int *out) {
  const ProtobufCEnumDescriptor *ed = fd->descriptor;
  const ProtobufCEnumValue *ev;
  if (json_is_string(v)) {
    ev = protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(v));
    if (!ev) {
      char names[256] = "";
      size_t used = 0;
      for (unsigned i = 0; i < ed->n_values && used < sizeof names; i++) {
        int n =
            snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", ed->values[i].name);
        if (n > 0) used += (size_t)n;
      }
      return jfail(cx, TB_ERR_JSON, "unknown value '%s' for enum %s (one of: %s)",
                   json_string_value(v), ed->name, names);
    }
  } else if (json_is_number(v)) {
    int64_t x;
    tb_status rc = get_signed(cx, v, PROTOBUF_C_TYPE_INT32, INT32_MIN, INT32_MAX, &x);
    if (rc != TB_OK) return rc;
    ev = protobuf_c_enum_descriptor_get_value(ed, (int)x);
    if (!ev) return jfail(cx, TB_ERR_JSON, "%" PRId64 " is not a value of enum %s", x, ed->name);
  } else {
    return jfail(cx, TB_ERR_JSON, "expected an enum name or number (%s), got %s", ed->name,
                 jtype(v));
  }
  *out = ev->value;
  return TB_OK;
}

/* Stores one JSON value into |slot|, the C storage of a singular field or of one element of a
 * repeated field. Anything allocated is stored in |slot| at once, so that freeing the enclosing
 * message also frees a partly filled value. */
static tb_status set_value(jctx_t *cx, const ProtobufCFieldDescriptor *fd, void *slot, json_t *v) {
  tb_status rc = TB_OK;
  int64_t i64;
  uint64_t u64;
  double d;
  switch (fd->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    if ((rc = get_signed(cx, v, fd->type, INT32_MIN, INT32_MAX, &i64)) == TB_OK)
      *(int32_t *)slot = (int32_t)i64;
    return rc;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    if ((rc = get_signed(cx, v, fd->type, INT64_MIN, INT64_MAX, &i64)) == TB_OK)
      *(int64_t *)slot = i64;
    return rc;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    if ((rc = get_unsigned(cx, v, fd->type, UINT32_MAX, &u64)) == TB_OK)
      *(uint32_t *)slot = (uint32_t)u64;
    return rc;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    if ((rc = get_unsigned(cx, v, fd->type, UINT64_MAX, &u64)) == TB_OK) *(uint64_t *)slot = u64;
    return rc;
  case PROTOBUF_C_TYPE_FLOAT:
    if ((rc = get_double(cx, v, fd->type, &d)) == TB_OK) *(float *)slot = (float)d;
    return rc;
  case PROTOBUF_C_TYPE_DOUBLE:
    if ((rc = get_double(cx, v, fd->type, &d)) == TB_OK) *(double *)slot = d;
    return rc;
  case PROTOBUF_C_TYPE_BOOL:
    if (!json_is_boolean(v))
      return jfail(cx, TB_ERR_JSON, "expected true or false, got %s", jtype(v));
    *(protobuf_c_boolean *)slot = json_is_true(v);
    return TB_OK;
  case PROTOBUF_C_TYPE_ENUM:
    return get_enum(cx, fd, v, (int *)slot);
  case PROTOBUF_C_TYPE_STRING: {
    if (!json_is_string(v)) return jfail(cx, TB_ERR_JSON, "expected a string, got %s", jtype(v));
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (strlen(s) != n) return jfail(cx, TB_ERR_JSON, "string contains a NUL character");
    char *copy = malloc(n + 1);
    if (!copy) return jfail(cx, TB_ERR_NOMEM, "copying %zu bytes", n);
    memcpy(copy, s, n + 1);
    *(char **)slot = copy;
    return TB_OK;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    if (!json_is_string(v))
      return jfail(cx, TB_ERR_JSON, "expected a base64 string (bytes), got %s", jtype(v));
    ProtobufCBinaryData *bd = slot;
    int r = b64_decode(json_string_value(v), json_string_length(v), &bd->data, &bd->len);
    if (r == -2) return jfail(cx, TB_ERR_NOMEM, "decoding base64");
    if (r != 0) return jfail(cx, TB_ERR_JSON, "invalid base64 (bytes)");
    return TB_OK;
  }
  case PROTOBUF_C_TYPE_MESSAGE: {
    const ProtobufCMessageDescriptor *sd = fd->descriptor;
    if (!json_is_object(v))
      return jfail(cx, TB_ERR_JSON, "expected an object (%s), got %s", sd->name, jtype(v));
    ProtobufCMessage *sub = malloc(sd->sizeof_message);
    if (!sub) return jfail(cx, TB_ERR_NOMEM, "allocating %s", sd->name);
    sd->message_init(sub);
    *(ProtobufCMessage **)slot = sub;
    return fill_message(cx, sub, v);
  }
  }
  return jfail(cx, TB_ERR_JSON, "unsupported field type %d", (int)fd->type);
}

/* Sets a non-repeated field, keeping protobuf-c's presence bookkeeping (oneof case, has_ flag of
 * proto3 `optional` scalars) in step so that pack and free see the value. */
static tb_status set_singular(jctx_t *cx, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *fd,
                              json_t *val) {
  char *base = (char *)msg;
  if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
    uint32_t *which = (uint32_t *)(base + fd->quantifier_offset);
    if (*which != 0 && *which != fd->id) {
      const ProtobufCFieldDescriptor *other =
          protobuf_c_message_descriptor_get_field(msg->descriptor, *which);
      return jfail(cx, TB_ERR_JSON, "'%s' of the same oneof is set already",
                   other ? other->name : "?");
    }
    *which = fd->id;
  } else if (fd->label == PROTOBUF_C_LABEL_OPTIONAL && fd->type != PROTOBUF_C_TYPE_STRING &&
             fd->type != PROTOBUF_C_TYPE_MESSAGE) {
    *(protobuf_c_boolean *)(base + fd->quantifier_offset) = 1;
  }
  return set_value(cx, fd, base + fd->offset, val);
}

/* A map field: a JSON object whose keys become the entries' keys (parsed as the key type) and
 * whose values the entries' values. */
static tb_status set_map(jctx_t *cx, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *fd,
                         json_t *val) {
  if (!json_is_object(val))
    return jfail(cx, TB_ERR_JSON, "expected an object (map), got %s", jtype(val));
  size_t n = json_object_size(val);
  if (n == 0) return TB_OK;
  const ProtobufCMessageDescriptor *ed = fd->descriptor;
  ProtobufCMessage **arr = calloc(n, sizeof *arr);
  if (!arr) return jfail(cx, TB_ERR_NOMEM, "allocating %zu map entries", n);
  *(ProtobufCMessage ***)((char *)msg + fd->offset) = arr;
  *(size_t *)((char *)msg + fd->quantifier_offset) = n;

  size_t i = 0;
  const char *key;
  json_t *v;
  json_object_foreach(val, key, v) {
    size_t saved = path_push(cx, "[%s]", key);
    tb_status rc = TB_OK;
    ProtobufCMessage *e = malloc(ed->sizeof_message);
    if (!e) {
      rc = jfail(cx, TB_ERR_NOMEM, "allocating a map entry");
    } else {
      ed->message_init(e);
      arr[i++] = e;
      const ProtobufCFieldDescriptor *kf = &ed->fields[0];
      if (kf->type == PROTOBUF_C_TYPE_BOOL) {
        if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0)
          rc = jfail(cx, TB_ERR_JSON, "map key must be \"true\" or \"false\"");
        else
          rc = set_singular(cx, e, kf, json_boolean(strcmp(key, "true") == 0));
      } else {
        /* Integer keys go through the same checked parse as decimal strings in values. */
        json_t *k = json_string(key);
        rc = k ? set_singular(cx, e, kf, k) : jfail(cx, TB_ERR_NOMEM, "copying a map key");
        json_decref(k);
      }
      if (rc == TB_OK) {
        if (json_is_null(v))
          rc = jfail(cx, TB_ERR_JSON, "map value must not be null");
        else
          rc = set_singular(cx, e, &ed->fields[1], v);
      }
    }
    path_pop(cx, saved);
    if (rc != TB_OK) return rc;
  }
  return TB_OK;
}

static tb_status set_field(jctx_t *cx, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *fd,
                           json_t *val) {
  if (fd->label != PROTOBUF_C_LABEL_REPEATED) return set_singular(cx, msg, fd, val);
  if (is_map_field(fd)) return set_map(cx, msg, fd, val);
  if (!json_is_array(val)) return jfail(cx, TB_ERR_JSON, "expected an array, got %s", jtype(val));
  size_t n = json_array_size(val);
  if (n == 0) return TB_OK;
  size_t esz = elem_size(fd->type);
  char *arr = calloc(n, esz);
  if (!arr) return jfail(cx, TB_ERR_NOMEM, "allocating %zu elements", n);
  /* The count is set before the elements are filled: protobuf-c's free skips NULL strings and
   * messages, so a failure part way through frees cleanly. */
  *(void **)((char *)msg + fd->offset) = arr;
  *(size_t *)((char *)msg + fd->quantifier_offset) = n;
  for (size_t i = 0; i < n; i++) {
    size_t saved = path_push(cx, "[%zu]", i);
    tb_status rc = set_value(cx, fd, arr + i * esz, json_array_get(val, i));
    path_pop(cx, saved);
    if (rc != TB_OK) return rc;
  }
  return TB_OK;
}

static tb_status fill_message(jctx_t *cx, ProtobufCMessage *msg, json_t *obj) {
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  /* The key that set each field, to refuse {"client_id": .., "clientId": ..}. */
  const char **seen = calloc(d->n_fields ? d->n_fields : 1, sizeof *seen);
  if (!seen) return jfail(cx, TB_ERR_NOMEM, "allocating");
  tb_status rc = TB_OK;
  const char *key;
  json_t *val;
  json_object_foreach(obj, key, val) {
    const ProtobufCFieldDescriptor *fd = find_field(d, key);
    size_t saved = path_field(cx, fd ? fd->name : key);
    if (!fd) {
      char names[512] = "";
      size_t off = 0;
      for (unsigned i = 0; i < d->n_fields && off < sizeof(names); i++)
        off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "",
                                d->fields[i].name);
      rc = tb__fail(TB_ERR_JSON, "%s: unknown field '%s' (fields of %s: %s)", cx->what, cx->path,
                    d->name, d->n_fields ? names : "none");
    } else {
      size_t idx = (size_t)(fd - d->fields);
      if (seen[idx]) {
        rc = jfail(cx, TB_ERR_JSON, "given twice (as '%s' and '%s')", seen[idx], key);
      } else {
        seen[idx] = key;
        /* null means "not set" in protobuf's JSON mapping. */
        if (!json_is_null(val)) rc = set_field(cx, msg, fd, val);
      }
    }
    path_pop(cx, saved);
    if (rc != TB_OK) break;
  }
  free(seen);
  return rc;
}

tb_status tb_codec_payload_from_json(const tb_event_def_t *ev, json_t *obj,
                                     ProtobufCMessage **out) {
  if (!ev || !out) return tb__fail(TB_ERR_INVALID, "tb_codec_payload_from_json: NULL argument");
  if (!ev->descriptor)
    return tb__fail(TB_ERR_INVALID, "%s: event has no message descriptor", ev->name);
  jctx_t cx = {.what = ev->name};
  if (!obj) return jfail(&cx, TB_ERR_JSON, "payload must be a JSON object, got nothing");
  if (!json_is_object(obj))
    return jfail(&cx, TB_ERR_JSON, "payload must be a JSON object, got %s", jtype(obj));
  const ProtobufCMessageDescriptor *d = ev->descriptor;
  ProtobufCMessage *msg = malloc(d->sizeof_message);
  if (!msg) return tb__fail(TB_ERR_NOMEM, "%s: allocating %s", ev->name, d->name);
  d->message_init(msg);
  tb_status rc = fill_message(&cx, msg, obj);
  if (rc != TB_OK) {
    protobuf_c_message_free_unpacked(msg, NULL);
    return rc;
  }
  *out = msg;
  return TB_OK;
}

/* ---------------------------------------------------------------------------------------------
 * protobuf -> JSON
 * ------------------------------------------------------------------------------------------- */

static tb_status message_to_json(jctx_t *cx, const ProtobufCMessage *msg, json_t **out);

/* Strings off the wire are not checked by protobuf-c; jansson must never print invalid UTF-8. */
static bool utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    size_t extra;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      extra = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= n) return false;
    for (size_t k = 1; k <= extra; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    /* Overlong forms, UTF-16 surrogates and values past U+10FFFF are not UTF-8. */
    if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += extra + 1;
  }
  return true;
}

static tb_status value_to_json(jctx_t *cx, const ProtobufCFieldDescriptor *fd, const void *slot,
                               json_t **out) {
  json_t *j = NULL;
  switch (fd->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    j = json_integer(*(const int32_t *)slot);
    break;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    j = json_integer(*(const uint32_t *)slot);
    break;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    j = json_integer(*(const int64_t *)slot);
    break;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: {
    /* jansson integers are int64: larger values are written as decimal strings, which the JSON
     * reader accepts back. */
    uint64_t u = *(const uint64_t *)slot;
    if (u <= INT64_MAX) {
      j = json_integer((json_int_t)u);
    } else {
      char buf[24];
      snprintf(buf, sizeof buf, "%" PRIu64, u);
      j = json_string(buf);
    }
    break;
  }
  case PROTOBUF_C_TYPE_FLOAT:
  case PROTOBUF_C_TYPE_DOUBLE: {
    double d = fd->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)slot : *(const double *)slot;
    if (isnan(d))
      j = json_string("NaN");
    else if (isinf(d))
      j = json_string(d > 0 ? "Infinity" : "-Infinity");
    else
      j = json_real(d);
    break;
  }
  case PROTOBUF_C_TYPE_BOOL:
    j = json_boolean(*(const protobuf_c_boolean *)slot);
    break;
  case PROTOBUF_C_TYPE_ENUM: {
    int v = *(const int *)slot;
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(fd->descriptor, v);
    j = ev ? json_string(ev->name) : json_integer(v);
    break;
  }
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)slot;
    if (!s) s = "";
    size_t n = strlen(s);
    if (!utf8_valid((const unsigned char *)s, n))
      return jfail(cx, TB_ERR_DECODE, "string is not valid UTF-8");
    j = json_stringn_nocheck(s, n);
    break;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    const ProtobufCBinaryData *bd = slot;
    char *b64 = b64_encode(bd->data, bd->len);
    if (b64) j = json_string(b64);
    free(b64);
    break;
  }
  case PROTOBUF_C_TYPE_MESSAGE: {
    const ProtobufCMessage *sub = *(ProtobufCMessage *const *)slot;
    if (!sub) {
      j = json_null();
      break;
    }
    return message_to_json(cx, sub, out);
  }
  }
  if (!j) return jfail(cx, TB_ERR_NOMEM, "building JSON");
  *out = j;
  return TB_OK;
}

/* A map entry's key as the JSON object key. */
static void map_key_text(const ProtobufCMessage *e, char *buf, size_t cap, const char **key) {
  const ProtobufCFieldDescriptor *kf = &e->descriptor->fields[0];
  const char *slot = (const char *)e + kf->offset;
  *key = buf;
  switch (kf->type) {
  case PROTOBUF_C_TYPE_STRING:
    *key = *(char *const *)slot ? *(char *const *)slot : "";
    return;
  case PROTOBUF_C_TYPE_BOOL:
    snprintf(buf, cap, "%s", *(const protobuf_c_boolean *)slot ? "true" : "false");
    return;
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    snprintf(buf, cap, "%" PRId32, *(const int32_t *)slot);
    return;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    snprintf(buf, cap, "%" PRIu32, *(const uint32_t *)slot);
    return;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    snprintf(buf, cap, "%" PRId64, *(const int64_t *)slot);
    return;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)slot);
    return;
  default:
    snprintf(buf, cap, "?");
    return; /* protobuf allows no other key types */
  }
}

static tb_status field_to_json(jctx_t *cx, const ProtobufCMessage *msg,
                               const ProtobufCFieldDescriptor *fd, json_t **out) {
  const char *base = (const char *)msg;
  if (fd->label != PROTOBUF_C_LABEL_REPEATED) return value_to_json(cx, fd, base + fd->offset, out);

  size_t n = *(const size_t *)(base + fd->quantifier_offset);
  const char *arr = *(char *const *)(base + fd->offset);
  tb_status rc = TB_OK;
  if (is_map_field(fd)) {
    json_t *o = json_object();
    if (!o) return jfail(cx, TB_ERR_NOMEM, "building JSON");
    for (size_t i = 0; i < n && rc == TB_OK; i++) {
      const ProtobufCMessage *e = ((ProtobufCMessage *const *)arr)[i];
      if (!e) continue;
      char kbuf[32];
      const char *key;
      map_key_text(e, kbuf, sizeof kbuf, &key);
      size_t saved = path_push(cx, "[%s]", key);
      json_t *v = NULL;
      const ProtobufCFieldDescriptor *vf = &e->descriptor->fields[1];
      rc = value_to_json(cx, vf, (const char *)e + vf->offset, &v);
      if (rc == TB_OK && !utf8_valid((const unsigned char *)key, strlen(key)))
        rc = jfail(cx, TB_ERR_DECODE, "map key is not valid UTF-8");
      if (rc == TB_OK && json_object_set_new(o, key, v) != 0)
        rc = jfail(cx, TB_ERR_NOMEM, "building JSON");
      else if (rc != TB_OK)
        json_decref(v);
      path_pop(cx, saved);
    }
    if (rc != TB_OK) {
      json_decref(o);
      return rc;
    }
    *out = o;
    return TB_OK;
  }

  json_t *a = json_array();
  if (!a) return jfail(cx, TB_ERR_NOMEM, "building JSON");
  size_t esz = elem_size(fd->type);
  for (size_t i = 0; i < n && rc == TB_OK; i++) {
    size_t saved = path_push(cx, "[%zu]", i);
    json_t *v = NULL;
    rc = value_to_json(cx, fd, arr + i * esz, &v);
    if (rc == TB_OK && json_array_append_new(a, v) != 0)
      rc = jfail(cx, TB_ERR_NOMEM, "building JSON");
    path_pop(cx, saved);
  }
  if (rc != TB_OK) {
    json_decref(a);
    return rc;
  }
  *out = a;
  return TB_OK;
}

static tb_status message_to_json(jctx_t *cx, const ProtobufCMessage *msg, json_t **out) {
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  const char *base = (const char *)msg;
  json_t *obj = json_object();
  if (!obj) return jfail(cx, TB_ERR_NOMEM, "building JSON");
  for (unsigned f = 0; f < d->n_fields; f++) {
    const ProtobufCFieldDescriptor *fd = &d->fields[f];
    if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
        *(const uint32_t *)(base + fd->quantifier_offset) != fd->id)
      continue;
    if (fd->label == PROTOBUF_C_LABEL_OPTIONAL && fd->type != PROTOBUF_C_TYPE_STRING &&
        fd->type != PROTOBUF_C_TYPE_MESSAGE &&
        !*(const protobuf_c_boolean *)(base + fd->quantifier_offset))
      continue;
    if (fd->label != PROTOBUF_C_LABEL_REPEATED &&
        (fd->type == PROTOBUF_C_TYPE_MESSAGE || fd->type == PROTOBUF_C_TYPE_STRING) &&
        *(void *const *)(base + fd->offset) == NULL)
      continue;
    size_t saved = path_field(cx, fd->name);
    json_t *v = NULL;
    tb_status rc = field_to_json(cx, msg, fd, &v);
    if (rc == TB_OK && json_object_set_new(obj, fd->name, v) != 0)
      rc = jfail(cx, TB_ERR_NOMEM, "building JSON");
    path_pop(cx, saved);
    if (rc != TB_OK) {
      json_decref(obj);
      return rc;
    }
  }
  *out = obj;
  return TB_OK;
}

tb_status tb_codec_payload_to_json(const ProtobufCMessage *msg, json_t **out) {
  if (!msg || !out) return tb__fail(TB_ERR_INVALID, "tb_codec_payload_to_json: NULL argument");
  jctx_t cx = {.what = msg->descriptor->name};
  return message_to_json(&cx, msg, out);
}

tb_status tb_codec_payload_bytes_to_json(const tb_event_def_t *ev, const uint8_t *data, size_t len,
                                         json_t **out) {
  static const uint8_t empty[1] = {0};
  if (!ev || !out || (!data && len > 0))
    return tb__fail(TB_ERR_INVALID, "tb_codec_payload_bytes_to_json: NULL argument");
  ProtobufCMessage *m = protobuf_c_message_unpack(ev->descriptor, NULL, len, len ? data : empty);
  if (!m)
    return tb__fail(TB_ERR_DECODE, "%s payload (%zu bytes) is not a valid %s", ev->name, len,
                    ev->message);
  tb_status s = tb_codec_payload_to_json(m, out);
  protobuf_c_message_free_unpacked(m, NULL);
  return s;
}

/* ---------------------------------------------------------------------------------------------
 * Wire format
 * ------------------------------------------------------------------------------------------- */

tb_status tb_codec_pack(const ProtobufCMessage *msg, uint8_t **buf, size_t *len) {
  if (!msg || !buf || !len) return tb__fail(TB_ERR_INVALID, "tb_codec_pack: NULL argument");
  size_t n = protobuf_c_message_get_packed_size(msg);
  uint8_t *b = malloc(n ? n : 1); /* an all-default message packs to 0 bytes */
  if (!b) return tb__fail(TB_ERR_NOMEM, "%s: packing %zu bytes", msg->descriptor->name, n);
  size_t w = protobuf_c_message_pack(msg, b);
  if (w != n) {
    free(b);
    return tb__fail(TB_ERR_INVALID, "%s: packed %zu bytes, expected %zu", msg->descriptor->name, w,
                    n);
  }
  *buf = b;
  *len = n;
  return TB_OK;
}

tb_status tb_codec_decode(const tb_catalogue_t *cat, const uint8_t *data, size_t len,
                          tb_decoded_t *out) {
  static const uint8_t empty[1] = {0};
  if (!out) return tb__fail(TB_ERR_INVALID, "tb_codec_decode: out is NULL");
  memset(out, 0, sizeof *out);
  if (!cat || (!data && len > 0)) return tb__fail(TB_ERR_INVALID, "tb_codec_decode: NULL argument");

  Tierbus__V1__Envelope *env = tierbus__v1__envelope__unpack(NULL, len, len ? data : empty);
  if (!env)
    return tb__fail(TB_ERR_DECODE, "message body (%zu bytes) is not a tierbus.v1.Envelope", len);
  if (!env->id || !env->id[0]) {
    tierbus__v1__envelope__free_unpacked(env, NULL);
    return tb__fail(TB_ERR_DECODE, "envelope has an empty id");
  }
  if (!env->type || !env->type[0]) {
    tb_status rc = tb__fail(TB_ERR_DECODE, "envelope %s has an empty type", env->id);
    tierbus__v1__envelope__free_unpacked(env, NULL);
    return rc;
  }
  const tb_event_def_t *def = tb_catalogue_find(cat, env->type);
  if (!def) {
    tb_status rc =
        tb__fail(TB_ERR_UNKNOWN_EVENT, "envelope %s: unknown event type '%s'", env->id, env->type);
    tierbus__v1__envelope__free_unpacked(env, NULL);
    return rc;
  }
  /* Unknown fields are kept, not refused: a newer publisher may add fields before this worker
   * is upgraded. Only bytes that contradict the schema (wrong wire types, truncation) fail. */
  ProtobufCMessage *payload = protobuf_c_message_unpack(
      def->descriptor, NULL, env->payload.len, env->payload.len ? env->payload.data : empty);
  if (!payload) {
    tb_status rc = tb__fail(TB_ERR_DECODE, "envelope %s: %s payload (%zu bytes) is not a valid %s",
                            env->id, def->name, env->payload.len, def->message);
    tierbus__v1__envelope__free_unpacked(env, NULL);
    return rc;
  }
  out->env = env;
  out->def = def;
  out->payload = payload;
  return TB_OK;
}

void tb_decoded_free(tb_decoded_t *d) {
  if (!d) return;
  if (d->payload) protobuf_c_message_free_unpacked(d->payload, NULL);
  if (d->env) tierbus__v1__envelope__free_unpacked(d->env, NULL);
  memset(d, 0, sizeof *d);
}

/* ---------------------------------------------------------------------------------------------
 * Field access
 * ------------------------------------------------------------------------------------------- */

const char *tb_codec_get_string(const ProtobufCMessage *msg, const char *field) {
  if (!msg || !field) return NULL;
  const ProtobufCFieldDescriptor *fd =
      protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, field);
  if (!fd || fd->type != PROTOBUF_C_TYPE_STRING || fd->label == PROTOBUF_C_LABEL_REPEATED)
    return NULL;
  const char *base = (const char *)msg;
  if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
      *(const uint32_t *)(base + fd->quantifier_offset) != fd->id)
    return NULL;
  const char *s = *(char *const *)(base + fd->offset);
  /* proto3 strings have no presence: empty is how "absent" arrives on the wire. */
  return s && s[0] ? s : NULL;
}

const char *tb_codec_missing_field(const tb_event_def_t *ev, const ProtobufCMessage *payload) {
  for (int i = 0; i < ev->n_required; i++)
    if (tb_codec_get_string(payload, ev->required[i]) == NULL) return ev->required[i];
  return NULL;
}

void tb_codec_ordering_key(const tb_decoded_t *d, char *buf, size_t cap) {
  if (!buf || cap == 0) return;
  buf[0] = '\0';
  if (!d || !d->def || !d->def->ordering_key || !d->payload) return;
  const char *v = tb_codec_get_string(d->payload, d->def->ordering_key);
  if (v) snprintf(buf, cap, "%s", v);
}

/* ---------------------------------------------------------------- JSON helpers */

const char *tb_json_kind(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
  case JSON_REAL:
    return "a number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  case JSON_NULL:
    return "null";
  }
  return "?";
}

json_t *tb_json_str_or_null(const char *s) {
  return s ? json_string(s) : json_null();
}

json_t *tb_json_text(const char *text) {
  if (text == NULL) return json_null();
  json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
  return v ? v : json_string(text);
}
