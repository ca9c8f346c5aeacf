/* Packing an envelope by hand, for the tests that publish what a foreign client would (raw NATS
 * messages, malformed or over-long ones among them). Header-only: only those tests link the
 * codec. */
#ifndef TB_TESTS_SUPPORT_ENVELOPE_H
#define TB_TESTS_SUPPORT_ENVELOPE_H

#include <stdint.h>
#include <stdlib.h>

#include "tierbus/v1/envelope.pb-c.h"

/* Packs an envelope from |source| around |payload| (may be NULL). Returns its length; *out, which
 * the caller frees with free(), is NULL when memory ran out. */
static inline size_t tb_h_pack_envelope(const char *id, const char *type, const char *tier,
                                        const char *source, const uint8_t *payload,
                                        size_t payload_len, uint8_t **out) {
  Tierbus__V1__Envelope env = TIERBUS__V1__ENVELOPE__INIT;
  env.id = (char *)id;
  env.type = (char *)type;
  env.tier = (char *)tier;
  env.source = (char *)source;
  env.occurred_at_us = 1700000000000000LL;
  env.payload.data = (uint8_t *)payload;
  env.payload.len = payload_len;
  size_t n = tierbus__v1__envelope__get_packed_size(&env);
  *out = malloc(n);
  if (*out != NULL) tierbus__v1__envelope__pack(&env, *out);
  return n;
}

#endif
