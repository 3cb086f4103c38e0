/*
 * test_codec.c - the core message codec of dht_msg.c.  Round trips of every
 * type with every field compared (and the fields a type does not carry left
 * zero); the size budget of a full NODES reply; encoder refusals; and a table
 * of hostile bodies, written by hand so that it does not lean on the encoder,
 * each of which must be DHT_ERR_PROTO (or DHT_ERR_NOTFOUND for a well-formed
 * unknown type).  Every valid body in the table is also cut at every length
 * and given a trailing byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dht_int.h"

/* ---- hand-written bodies ------------------------------------------------ */

/* A body spec: hex byte pairs separated by spaces; "N*XX" is N copies of byte
 * XX; "N*[ ... ]" is N copies of the group (N >= 1, N decimal). */
static const char *spec_parse(const char *s, uint8_t *out, size_t cap, size_t *n) {
  for (;;) {
    while (*s == ' ')
      s++;
    if (*s == '\0' || *s == ']')
      return s;
    char *e;
    unsigned long count = strtoul(s, &e, 10);
    if (*e == '*') {
      s = e + 1;
      assert_true(count >= 1);
    } else {
      count = 1;
    }
    if (*s == '[') {
      const char *end = s;
      for (unsigned long i = 0; i < count; i++)
        end = spec_parse(s + 1, out, cap, n);
      assert_true(*end == ']');
      s = end + 1;
      continue;
    }
    char hex[3] = {s[0], s[0] ? s[1] : '\0', '\0'};
    unsigned long byte = strtoul(hex, &e, 16);
    assert_true(e == hex + 2);
    s += 2;
    assert_true(*n + count <= cap);
    memset(out + *n, (int)byte, count);
    *n += count;
  }
}

static size_t spec(const char *s, uint8_t *out, size_t cap) {
  size_t n = 0;
  const char *end = spec_parse(s, out, cap, &n);
  assert_true(*end == '\0');
  return n;
}

/* Pieces of valid bodies. */
#define TOK " c4 10 16*77 "                     /* token or cookie, 16 B */
#define TGT " c4 20 32*22 "                     /* target or key, 32 B */
#define C4 " c4 26 32*11 0a 00 00 01 1f 90 "    /* contact, 10.0.0.1:8080 */
#define C6 " c4 32 32*12 20 01 13*00 01 1f 91 " /* contact, [2001::1]:8081 */
#define REC " c4 03 aa bb cc "                  /* record, 3 B */

typedef struct body_case {
  const char *name;
  const char *spec;
  int want;
} body_case;

#define OK 0
#define PROTO DHT_ERR_PROTO
#define UNKNOWN DHT_ERR_NOTFOUND

static const body_case bodies[] = {
    /* PING [1, txid, flags] */
    {"ping", "93 01 05 01", OK},
    {"ping txid 2^32-1", "93 01 ce ff ff ff ff 00", OK},
    {"ping array16 header", "dc 00 03 01 05 01", OK},
    {"ping array32 header", "dd 00 00 00 03 01 05 01", OK},
    {"ping non-minimal ints", "93 d0 01 d3 00 00 00 00 00 00 00 05 cd 00 ff", OK},
    {"ping arity 2", "92 01 05", PROTO},
    {"ping arity 4", "94 01 05 01 00", PROTO},
    {"ping arity 2, flags after the array", "92 01 05 01", PROTO},
    {"ping arity 4, bytes for 3", "94 01 05 cc ff", PROTO},
    {"ping flags 256", "93 01 05 cd 01 00", PROTO},
    {"ping flags -1", "93 01 05 ff", PROTO},
    {"ping flags int8 -1", "93 01 05 d0 ff", PROTO},
    {"ping flags nil", "93 01 05 c0", PROTO},
    {"ping flags true", "93 01 05 c3", PROTO},
    {"ping flags float32", "93 01 05 ca 00 00 00 00", PROTO},
    {"ping flags float64", "93 01 05 cb 3f f0 00 00 00 00 00 00", PROTO},
    {"ping flags bin", "93 01 05 c4 01 01", PROTO},
    {"ping txid 2^32", "93 01 cf 00 00 00 01 00 00 00 00 01", PROTO},
    {"ping txid -1", "93 01 ff 01", PROTO},
    {"ping txid str", "93 01 a1 35 01", PROTO},
    {"ping txid nil", "93 01 c0 01", PROTO},
    {"ping type -1", "93 ff 05 01", PROTO},
    {"ping type str", "93 a1 01 05 01", PROTO},
    {"ping type 257", "93 cd 01 01 05 01", PROTO},
    {"ping as fixmap", "81 01 05", PROTO},
    {"ping as map16", "de 00 01 01 05", PROTO},
    {"ping nested in array", "91 93 01 05 01", PROTO},
    {"ping array32 claims 4G", "dd ff ff ff ff 01 05 01", PROTO},
    {"ping array16 claims 64K", "dc ff ff 01 05 01", PROTO},
    {"ping trailing nil", "93 01 05 01 c0", PROTO},
    {"empty body", "", PROTO},
    {"empty array", "90", PROTO},
    {"array of one", "91 01", PROTO},
    {"bare uint", "01", PROTO},
    {"ext", "d4 01 01", PROTO},

    /* PONG [2, txid, seen(bin 6|18), cookie(bin 0|16)] */
    {"pong v4", "94 02 05 c4 06 0a 00 00 01 1f 90 c4 00", OK},
    {"pong v4 cookie", "94 02 05 c4 06 0a 00 00 01 1f 90 c4 10 16*07", OK},
    {"pong v6", "94 02 05 c4 12 20 01 13*00 01 1f 90 c4 10 16*07", OK},
    {"pong seen bin16", "94 02 05 c5 00 06 0a 00 00 01 1f 90 c4 00", OK},
    {"pong arity 2", "92 02 05", PROTO},
    {"pong arity 3 (no cookie field)", "93 02 05 c4 06 0a 00 00 01 1f 90", PROTO},
    {"pong arity 5", "95 02 05 c4 06 0a 00 00 01 1f 90 c4 00 00", PROTO},
    {"pong cookie 15", "94 02 05 c4 06 0a 00 00 01 1f 90 c4 0f 15*07", PROTO},
    {"pong cookie 17", "94 02 05 c4 06 0a 00 00 01 1f 90 c4 11 17*07", PROTO},
    {"pong cookie nil", "94 02 05 c4 06 0a 00 00 01 1f 90 c0", PROTO},
    {"pong seen 0", "94 02 05 c4 00 c4 00", PROTO},
    {"pong seen 5", "94 02 05 c4 05 0a 00 00 01 1f c4 00", PROTO},
    {"pong seen 7", "94 02 05 c4 07 0a 00 00 01 1f 90 00 c4 00", PROTO},
    {"pong seen 17", "94 02 05 c4 11 17*01 c4 00", PROTO},
    {"pong seen 19", "94 02 05 c4 13 19*01 c4 00", PROTO},
    {"pong seen v4 port 0", "94 02 05 c4 06 0a 00 00 01 00 00 c4 00", PROTO},
    {"pong seen v6 port 0", "93 02 05 c4 12 20 01 13*00 01 00 00", PROTO},
    {"pong seen str", "93 02 05 a6 0a 00 00 01 1f 90", PROTO},
    {"pong seen nil", "93 02 05 c0", PROTO},
    {"pong seen uint", "93 02 05 05", PROTO},

    /* FIND_NODE [3, txid, flags, cookie(bin 0|16), target(bin 32), pad(bin)] */
    {"find_node", "96 03 05 01" TOK TGT "c4 00", OK},
    {"find_node no cookie, pad 10", "96 03 05 00 c4 00" TGT "c4 0a 10*00", OK},
    {"find_node pad bin16 non-zero", "96 03 05 00 c4 00" TGT "c5 01 00 256*ff", OK},
    {"find_node pad 1159", "96 03 05 00 c4 00" TGT "c5 04 87 1159*00", OK},
    {"find_node cookie bin32", "96 03 05 01 c6 00 00 00 10 16*77" TGT "c4 00", OK},
    {"find_node target bin16", "96 03 05 01" TOK "c5 00 20 32*22 c4 00", OK},
    {"find_node arity 5", "95 03 05 01" TOK TGT, PROTO},
    {"find_node arity 7", "97 03 05 01" TOK TGT "c4 00 c0", PROTO},
    {"find_node flags 256", "96 03 05 cd 01 00" TOK TGT "c4 00", PROTO},
    {"find_node cookie 1", "96 03 05 01 c4 01 77" TGT "c4 00", PROTO},
    {"find_node cookie 15", "96 03 05 01 c4 0f 15*77" TGT "c4 00", PROTO},
    {"find_node cookie 17", "96 03 05 01 c4 11 17*77" TGT "c4 00", PROTO},
    {"find_node cookie empty str", "96 03 05 01 a0" TGT "c4 00", PROTO},
    {"find_node cookie str", "96 03 05 01 b0 16*77" TGT "c4 00", PROTO},
    {"find_node cookie nil", "96 03 05 01 c0" TGT "c4 00", PROTO},
    {"find_node target 31", "96 03 05 01" TOK "c4 1f 31*22 c4 00", PROTO},
    {"find_node target 33", "96 03 05 01" TOK "c4 21 33*22 c4 00", PROTO},
    {"find_node target 0", "96 03 05 01" TOK "c4 00 c4 00", PROTO},
    {"find_node target str8", "96 03 05 01" TOK "d9 20 32*22 c4 00", PROTO},
    {"find_node target bin32 claims 4G", "96 03 05 01" TOK "c6 ff ff ff ff 32*22 c4 00", PROTO},
    {"find_node pad 1160", "96 03 05 00 c4 00" TGT "c5 04 88 1160*00", PROTO},
    {"find_node pad str", "96 03 05 01" TOK TGT "a0", PROTO},
    {"find_node pad nil", "96 03 05 01" TOK TGT "c0", PROTO},
    {"find_node pad uint", "96 03 05 01" TOK TGT "00", PROTO},
    {"find_node target and cookie swapped", "96 03 05 01" TGT TOK "c4 00", PROTO},

    /* GET [5, txid, flags, cookie(bin 0|16), key(bin 32), pad(bin)] */
    {"get", "96 05 05 01" TOK TGT "c4 03 3*00", OK},
    {"get no cookie", "96 05 05 00 c4 00" TGT "c4 00", OK},
    {"get arity 5", "95 05 05 01" TOK TGT, PROTO},
    {"get arity 7", "97 05 05 01" TOK TGT "c4 00 00", PROTO},
    {"get cookie 15", "96 05 05 01 c4 0f 15*77" TGT "c4 00", PROTO},
    {"get cookie 17", "96 05 05 01 c4 11 17*77" TGT "c4 00", PROTO},
    {"get key 31", "96 05 05 01" TOK "c4 1f 31*22 c4 00", PROTO},
    {"get key 33", "96 05 05 01" TOK "c4 21 33*22 c4 00", PROTO},
    {"get key str", "96 05 05 01" TOK "d9 20 32*22 c4 00", PROTO},
    {"get flags -1", "96 05 05 ff" TOK TGT "c4 00", PROTO},

    /* NODES [4, txid, token(bin 16), contacts(array <= 32 of bin 38|50)] */
    {"nodes empty", "94 04 05" TOK "90", OK},
    {"nodes v4", "94 04 05" TOK "91" C4, OK},
    {"nodes mixed", "94 04 05" TOK "93" C4 C6 C4, OK},
    {"nodes 32 v6", "94 04 05" TOK "dc 00 20 32*[" C6 "]", OK},
    {"nodes contacts array32", "94 04 05" TOK "dd 00 00 00 01" C4, OK},
    {"nodes contact bin16", "94 04 05" TOK "91 c5 00 26 32*11 0a 00 00 01 1f 90", OK},
    {"nodes 33 contacts", "94 04 05" TOK "dc 00 21 33*[" C4 "]", PROTO},
    {"nodes array16 claims 20, has 1", "94 04 05" TOK "dc 00 14" C4, PROTO},
    {"nodes array32 claims 4G", "94 04 05" TOK "dd ff ff ff ff" C4, PROTO},
    {"nodes array16 claims 64K", "94 04 05" TOK "dc ff ff" C4, PROTO},
    {"nodes arity 3", "93 04 05" TOK, PROTO},
    {"nodes arity 5", "95 04 05" TOK "90 90", PROTO},
    {"nodes arity 3, contacts after the array", "93 04 05" TOK "90", PROTO},
    {"nodes token 0", "94 04 05 c4 00 90", PROTO},
    {"nodes token 15", "94 04 05 c4 0f 15*77 90", PROTO},
    {"nodes token 17", "94 04 05 c4 11 17*77 90", PROTO},
    {"nodes token str", "94 04 05 b0 16*77 90", PROTO},
    {"nodes token nil", "94 04 05 c0 90", PROTO},
    {"nodes contacts nil", "94 04 05" TOK "c0", PROTO},
    {"nodes contacts map", "94 04 05" TOK "80", PROTO},
    {"nodes contacts bin", "94 04 05" TOK C4, PROTO},
    {"nodes contact 0", "94 04 05" TOK "91 c4 00", PROTO},
    {"nodes contact 37", "94 04 05" TOK "91 c4 25 32*11 0a 00 00 01 1f", PROTO},
    {"nodes contact 39", "94 04 05" TOK "91 c4 27 32*11 0a 00 00 01 1f 90 00", PROTO},
    {"nodes contact 49", "94 04 05" TOK "91 c4 31 32*12 20 01 13*00 01 1f", PROTO},
    {"nodes contact 51", "94 04 05" TOK "91 c4 33 32*12 20 01 13*00 01 1f 91 00", PROTO},
    {"nodes contact v4 port 0", "94 04 05" TOK "91 c4 26 32*11 0a 00 00 01 00 00", PROTO},
    {"nodes contact v6 port 0", "94 04 05" TOK "91 c4 32 32*12 20 01 13*00 01 00 00", PROTO},
    {"nodes second contact port 0", "94 04 05" TOK "92" C4 "c4 26 32*11 0a 00 00 02 00 00", PROTO},
    {"nodes contact str", "94 04 05" TOK "91 d9 26 32*11 0a 00 00 01 1f 90", PROTO},
    {"nodes contact uint", "94 04 05" TOK "91 05", PROTO},
    {"nodes contact nested array", "94 04 05" TOK "91 91" C4, PROTO},
    {"nodes contact bin32 claims 4G", "94 04 05" TOK "91 c6 ff ff ff ff 32*11 0a 00 00 01 1f 90",
     PROTO},

    /* VALUE [6, txid, token(bin 16), record(bin 1..429), contacts(array)] */
    {"value", "95 06 05" TOK REC "91" C4, OK},
    {"value record 1", "95 06 05" TOK "c4 01 ab 90", OK},
    {"value record 429", "95 06 05" TOK "c5 01 ad 429*ab 90", OK},
    {"value 32 contacts", "95 06 05" TOK REC "dc 00 20 16*[" C4 C6 "]", OK},
    {"value arity 4", "94 06 05" TOK REC, PROTO},
    {"value arity 6", "96 06 05" TOK REC "90 90", PROTO},
    {"value record 0", "95 06 05" TOK "c4 00 90", PROTO},
    {"value record 430", "95 06 05" TOK "c5 01 ae 430*ab 90", PROTO},
    {"value record str", "95 06 05" TOK "a3 aa bb cc 90", PROTO},
    {"value record nil", "95 06 05" TOK "c0 90", PROTO},
    {"value record bin32 claims 4G", "95 06 05" TOK "c6 ff ff ff ff aa bb cc 90", PROTO},
    {"value token 15", "95 06 05 c4 0f 15*77" REC "90", PROTO},
    {"value token 17", "95 06 05 c4 11 17*77" REC "90", PROTO},
    {"value 33 contacts", "95 06 05" TOK REC "dc 00 21 33*[" C4 "]", PROTO},
    {"value contact 51", "95 06 05" TOK REC "91 c4 33 51*11", PROTO},
    {"value contacts before record", "95 06 05" TOK "90" REC, PROTO},

    /* PUT [7, txid, flags, token(bin 16), record(bin 1..429)] */
    {"put", "95 07 05 01" TOK REC, OK},
    {"put record 429", "95 07 05 00" TOK "c5 01 ad 429*ab", OK},
    {"put arity 4", "94 07 05 01" TOK, PROTO},
    {"put arity 6", "96 07 05 01" TOK REC "c0", PROTO},
    {"put flags -1", "95 07 05 ff" TOK REC, PROTO},
    {"put flags 256", "95 07 05 cd 01 00" TOK REC, PROTO},
    {"put token 15", "95 07 05 01 c4 0f 15*77" REC, PROTO},
    {"put token 17", "95 07 05 01 c4 11 17*77" REC, PROTO},
    {"put no token", "95 07 05 01 c4 00" REC, PROTO},
    {"put record 0", "95 07 05 01" TOK "c4 00", PROTO},
    {"put record 430", "95 07 05 01" TOK "c5 01 ae 430*ab", PROTO},
    {"put record str", "95 07 05 01" TOK "a3 aa bb cc", PROTO},

    /* ACK [8, txid, status(uint <= 255)] */
    {"ack", "93 08 05 00", OK},
    {"ack status 255", "93 08 05 cc ff", OK},
    {"ack arity 2", "92 08 05", PROTO},
    {"ack arity 4", "94 08 05 00 00", PROTO},
    {"ack status 256", "93 08 05 cd 01 00", PROTO},
    {"ack status -1", "93 08 05 ff", PROTO},
    {"ack status bin", "93 08 05 c4 01 00", PROTO},
    {"ack status nil", "93 08 05 c0", PROTO},
    {"ack status float", "93 08 05 ca 00 00 00 00", PROTO},

    /* unknown types: well-formed head, ignored by the engine */
    {"type 0x42", "93 42 05 01", UNKNOWN},
    {"type 0x42 arity 2", "92 42 05", UNKNOWN},
    {"type 0x42 mixed elements", "95 42 05 c4 02 aa bb 90 c0", UNKNOWN},
    {"type 0", "92 00 05", UNKNOWN},
    {"type 9", "93 09 05 01", UNKNOWN},
    {"type 0x1f", "92 1f 05", UNKNOWN},
    {"type 255", "92 cc ff 05", UNKNOWN},
    {"type 0x42 arity 1", "91 42", PROTO},
    {"type 0x42 txid 2^32", "93 42 cf 00 00 00 01 00 00 00 00 01", PROTO},
    {"type 0x42 count over bytes", "93 42 05", PROTO},
    {"type 0x42 as map", "82 42 05 01 01", PROTO},
};

#define NBODIES (sizeof bodies / sizeof bodies[0])

/* Decodes a copy of body in a heap block of exactly len bytes, so ASan sees
 * any read past the end. */
static int decode_exact(dht_msg *m, const uint8_t *body, size_t len) {
  uint8_t *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  memcpy(copy, body, len);
  int rc = dht_msg_decode(m, copy, len);
  free(copy);
  return rc;
}

static void test_body_table(void **state) {
  (void)state;
  static uint8_t buf[4096];
  static dht_msg m;
  int valid = 0, malformed = 0, unknown = 0;
  for (size_t i = 0; i < NBODIES; i++) {
    size_t n = spec(bodies[i].spec, buf, sizeof buf);
    int rc = decode_exact(&m, buf, n);
    if (rc != bodies[i].want)
      fail_msg("%s: decode gave %d, want %d", bodies[i].name, rc, bodies[i].want);
    valid += bodies[i].want == OK;
    malformed += bodies[i].want == PROTO;
    unknown += bodies[i].want == UNKNOWN;
  }
  /* the table covers every core type, valid and not */
  assert_true(valid >= 8 && malformed >= 100 && unknown >= 5);
}

/* Every valid body, cut short at every length, and with one byte more. */
static void test_truncated_and_trailing(void **state) {
  (void)state;
  static uint8_t buf[4096];
  static dht_msg m;
  int checked = 0;
  for (size_t i = 0; i < NBODIES; i++) {
    if (bodies[i].want != OK)
      continue;
    size_t n = spec(bodies[i].spec, buf, sizeof buf - 1);
    assert_int_equal(decode_exact(&m, buf, n), 0);
    for (size_t cut = 0; cut < n; cut++) {
      int rc = decode_exact(&m, buf, cut);
      if (rc != PROTO)
        fail_msg("%s cut at %zu of %zu: decode gave %d", bodies[i].name, cut, n, rc);
    }
    static const uint8_t extra[] = {0x00, 0xc0, 0x90, 0xc4};
    for (size_t j = 0; j < sizeof extra; j++) {
      buf[n] = extra[j];
      int rc = decode_exact(&m, buf, n + 1);
      if (rc != PROTO)
        fail_msg("%s + trailing %02x: decode gave %d", bodies[i].name, extra[j], rc);
    }
    checked++;
  }
  assert_true(checked >= 8);
}

static void test_peek(void **state) {
  (void)state;
  static uint8_t buf[4096];
  const struct {
    const char *spec;
    int want;
    uint8_t type;
    uint32_t txid;
  } cases[] = {
      {"93 01 05 01", OK, 1, 5},
      {"92 42 ce ff ff ff ff", OK, 0x42, UINT32_MAX},
      {"94 04 cd 12 34" TOK "90", OK, 4, 0x1234},
      {"9f cc ff 00 13*00", OK, 0xff, 0},
      {"92 01 05 ff ff", OK, 1, 5}, /* peek reads the head only */
      {"", PROTO, 0, 0},
      {"91 01", PROTO, 0, 0},
      {"91 01 05", PROTO, 0, 0}, /* txid outside the array */
      {"90", PROTO, 0, 0},
      {"92 01", PROTO, 0, 0},
      {"82 01 05 01 01", PROTO, 0, 0},
      {"92 cd 01 00 05", PROTO, 0, 0},
      {"92 ff 05", PROTO, 0, 0},
      {"92 01 cf 00 00 00 01 00 00 00 00", PROTO, 0, 0},
      {"92 01 d0 ff", PROTO, 0, 0},
      {"92 01 c0", PROTO, 0, 0},
      {"dd ff ff ff ff 01 05", PROTO, 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = spec(cases[i].spec, buf, sizeof buf);
    uint8_t type = 0xee;
    uint32_t txid = 0xeeeeeeee;
    int rc = dht_msg_peek(buf, n, &type, &txid);
    if (rc != cases[i].want || (rc == 0 && (type != cases[i].type || txid != cases[i].txid)))
      fail_msg("peek \"%s\": rc %d type %u txid %u", cases[i].spec, rc, type, txid);
  }
}

/* ---- round trips --------------------------------------------------------- */

enum {
  F_FLAGS = 1 << 0,
  F_TOKEN = 1 << 1,
  F_TARGET = 1 << 2,
  F_SEEN = 1 << 3,
  F_CONTACTS = 1 << 4,
  F_RECORD = 1 << 5,
  F_PAD = 1 << 6,
  F_STATUS = 1 << 7,
};

/* The fields each type carries (dht_int.h layouts). */
static unsigned fields_of(uint8_t type) {
  switch (type) {
  case DHT_MSG_PING:
    return F_FLAGS;
  case DHT_MSG_PONG:
    return F_SEEN | F_TOKEN;
  case DHT_MSG_FIND_NODE:
  case DHT_MSG_GET:
    return F_FLAGS | F_TOKEN | F_TARGET | F_PAD;
  case DHT_MSG_NODES:
    return F_TOKEN | F_CONTACTS;
  case DHT_MSG_VALUE:
    return F_TOKEN | F_RECORD | F_CONTACTS;
  case DHT_MSG_PUT:
    return F_FLAGS | F_TOKEN | F_RECORD;
  case DHT_MSG_ACK:
    return F_STATUS;
  default:
    fail_msg("no such type %u", type);
    return 0;
  }
}

static uint8_t record_bytes[DHT_RECORD_MAX_LEN];

static dht_addr addr4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
  dht_addr x = {.family = DHT_AF_INET, .ip = {a, b, c, d}, .port = port};
  return x;
}

static dht_addr addr6(uint8_t first, uint8_t last, uint16_t port) {
  dht_addr x = {.family = DHT_AF_INET6, .port = port};
  x.ip[0] = 0x20;
  x.ip[1] = first;
  x.ip[15] = last;
  return x;
}

/* Contact i: a distinct key; IPv6 when (i % v6_every) == 0 (never if 0). */
static void set_contacts(dht_msg *m, int n, int v6_every) {
  m->ncontacts = n;
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < DHT_PK_LEN; j++)
      m->contacts[i].pk[j] = (uint8_t)(i * 37 + j + 1);
    bool v6 = v6_every && i % v6_every == 0;
    m->contacts[i].addr = v6 ? addr6((uint8_t)i, (uint8_t)(i + 1), (uint16_t)(40000 + i))
                             : addr4(10, 0, (uint8_t)i, 1, (uint16_t)(1000 + i));
  }
}

/* A message of type with every field set, whether the type carries it or not. */
static void full_msg(dht_msg *m, uint8_t type) {
  memset(m, 0, sizeof *m);
  for (size_t i = 0; i < sizeof record_bytes; i++)
    record_bytes[i] = (uint8_t)(i * 13 + 5);
  m->type = type;
  m->txid = 0x89abcdef;
  m->flags = DHT_MSGF_SERVER;
  m->token_len = DHT_TOKEN_LEN;
  for (int i = 0; i < DHT_TOKEN_LEN; i++)
    m->token[i] = (uint8_t)(0xc0 + i);
  for (int i = 0; i < DHT_ID_LEN; i++)
    m->target[i] = (uint8_t)(0x40 + i);
  m->seen = addr6(0xdb, 0x99, 4433);
  set_contacts(m, 5, 2);
  m->record = record_bytes;
  m->record_len = 200;
  m->pad_len = 77;
  m->status = DHT_ACK_STALE;
}

static void assert_addr_equal(const dht_addr *a, const dht_addr *b) {
  assert_int_equal(a->family, b->family);
  assert_int_equal(a->port, b->port);
  assert_memory_equal(a->ip, b->ip, sizeof a->ip);
}

/* got must carry want's fields for its type, and zero for the others. */
static void assert_msg(const dht_msg *want, const dht_msg *got) {
  static const uint8_t zero[DHT_ID_LEN];
  unsigned f = fields_of(want->type);
  assert_int_equal(got->type, want->type);
  assert_int_equal(got->txid, want->txid);
  assert_int_equal(got->flags, f & F_FLAGS ? want->flags : 0);
  assert_int_equal(got->status, f & F_STATUS ? want->status : 0);
  if (f & F_TOKEN) {
    assert_int_equal(got->token_len, want->token_len);
    assert_memory_equal(got->token, want->token, want->token_len);
  } else {
    assert_int_equal(got->token_len, 0);
  }
  assert_memory_equal(got->target, f & F_TARGET ? want->target : zero, DHT_ID_LEN);
  if (f & F_SEEN)
    assert_addr_equal(&got->seen, &want->seen);
  else
    assert_int_equal(got->seen.family, DHT_AF_NONE);
  assert_int_equal(got->ncontacts, f & F_CONTACTS ? want->ncontacts : 0);
  for (int i = 0; i < got->ncontacts; i++) {
    assert_memory_equal(got->contacts[i].pk, want->contacts[i].pk, DHT_PK_LEN);
    assert_addr_equal(&got->contacts[i].addr, &want->contacts[i].addr);
  }
  if (f & F_RECORD) {
    assert_int_equal(got->record_len, want->record_len);
    assert_non_null(got->record);
    assert_memory_equal(got->record, want->record, want->record_len);
  } else {
    assert_null(got->record);
    assert_int_equal(got->record_len, 0);
  }
  assert_int_equal(got->pad_len, f & F_PAD ? want->pad_len : 0);
}

/* Encodes in, decodes into out (pre-filled with junk), checks every field,
 * and that the record points into buf (no copy).  Returns the length. */
static dht_ssize roundtrip(const dht_msg *in, dht_msg *out) {
  static uint8_t buf[4096], again[4096];
  dht_ssize n = dht_msg_encode(in, buf, sizeof buf);
  assert_true(n > 0);
  memset(out, 0xa5, sizeof *out);
  assert_int_equal(dht_msg_decode(out, buf, (size_t)n), 0);
  assert_msg(in, out);
  if (out->record)
    assert_true(out->record > buf && out->record + out->record_len <= buf + n);
  /* decode then encode gives the same bytes */
  assert_int_equal(dht_msg_encode(out, again, sizeof again), n);
  assert_memory_equal(again, buf, (size_t)n);
  return n;
}

static void test_roundtrip_every_type(void **state) {
  (void)state;
  static dht_msg in, out;
  for (uint8_t t = DHT_MSG_PING; t <= DHT_MSG_ACK; t++) {
    full_msg(&in, t);
    roundtrip(&in, &out);
  }
}

static void test_roundtrip_edges(void **state) {
  (void)state;
  static dht_msg in, out;

  full_msg(&in, DHT_MSG_PING);
  for (int i = 0; i < 3; i++) {
    static const uint32_t txids[] = {0, 0x7f, UINT32_MAX};
    in.txid = txids[i];
    in.flags = (uint8_t)(i * 127);
    roundtrip(&in, &out);
  }

  full_msg(&in, DHT_MSG_PONG);
  in.seen = addr4(192, 0, 2, 1, 1);
  roundtrip(&in, &out);
  in.seen = addr6(0, 1, 65535);
  roundtrip(&in, &out);

  full_msg(&in, DHT_MSG_FIND_NODE);
  in.token_len = 0; /* no cookie yet */
  in.pad_len = 0;
  roundtrip(&in, &out);
  full_msg(&in, DHT_MSG_GET);
  in.pad_len = 1000;
  roundtrip(&in, &out);

  full_msg(&in, DHT_MSG_NODES);
  for (int n = 0; n <= DHT_K_MAX; n++) {
    set_contacts(&in, n, 3);
    roundtrip(&in, &out);
  }
  set_contacts(&in, DHT_K_MAX, 1); /* all v6 */
  roundtrip(&in, &out);

  full_msg(&in, DHT_MSG_VALUE);
  in.record_len = 1;
  set_contacts(&in, 0, 0);
  roundtrip(&in, &out);
  in.record_len = DHT_RECORD_MAX_LEN;
  set_contacts(&in, 20, 2);
  roundtrip(&in, &out);

  full_msg(&in, DHT_MSG_PUT);
  in.record_len = DHT_RECORD_MAX_LEN;
  in.flags = 0;
  roundtrip(&in, &out);

  full_msg(&in, DHT_MSG_ACK);
  for (int s = 0; s <= 255; s += 51) {
    in.status = (uint8_t)s;
    roundtrip(&in, &out);
  }
}

/* ---- sizes -------------------------------------------------------------- */

static void test_nodes_20_v6_fits(void **state) {
  (void)state;
  static dht_msg in, out;
  static uint8_t buf[DHT_MAX_BODY];
  assert_int_equal(DHT_HDR_LEN + DHT_MAC_LEN, 73);
  full_msg(&in, DHT_MSG_NODES);
  in.txid = UINT32_MAX; /* the widest txid */
  set_contacts(&in, 20, 1);
  dht_ssize n = dht_msg_encode(&in, buf, sizeof buf);
  /* fixarray + type + uint32 txid + token + array16 + 20 x (2 + 50) */
  assert_int_equal(n, 1 + 1 + 5 + 18 + 3 + 20 * 52);
  assert_true(n <= DHT_MAX_BODY);
  assert_true(n + 73 <= DHT_MAX_PKT);
  assert_int_equal(dht_msg_decode(&out, buf, (size_t)n), 0);
  assert_msg(&in, &out);

  /* 32 IPv6 contacts do not fit in a body: the encoder says so */
  set_contacts(&in, DHT_K_MAX, 1);
  assert_int_equal(dht_msg_encode(&in, buf, sizeof buf), DHT_ERR_NOBUF);
}

static void test_contact_size(void **state) {
  (void)state;
  static dht_msg m;
  static uint8_t buf[4096];
  full_msg(&m, DHT_MSG_NODES);
  m.ncontacts = 0;
  dht_ssize base = dht_msg_encode(&m, buf, sizeof buf);
  assert_true(base > 0);
  set_contacts(&m, DHT_K_MAX, 3);
  dht_peer v4 = {.addr = addr4(1, 2, 3, 4, 5)}, v6 = {.addr = addr6(1, 2, 3)};
  assert_int_equal(dht_msg_contact_size(&v4), 2 + DHT_WCONTACT4_LEN);
  assert_int_equal(dht_msg_contact_size(&v6), 2 + DHT_WCONTACT6_LEN);
  size_t sum = 0;
  for (int n = 1; n <= DHT_K_MAX; n++) {
    sum += dht_msg_contact_size(&m.contacts[n - 1]);
    m.ncontacts = n;
    /* the array header grows from fixarray to array16 at 16 contacts */
    size_t want = (size_t)base + sum + (n >= 16 ? 2 : 0);
    assert_int_equal(dht_msg_encode(&m, buf, sizeof buf), want);
  }
}

/* ---- encoder refusals ------------------------------------------------------ */

static void expect_encode(const dht_msg *m, dht_ssize want, const char *what) {
  static uint8_t buf[4096];
  dht_ssize n = dht_msg_encode(m, buf, sizeof buf);
  if (want > 0 ? n <= 0 : n != want)
    fail_msg("%s: encode gave %td", what, n);
}

static void test_encode_inval(void **state) {
  (void)state;
  static dht_msg m;
  static const uint8_t bad_types[] = {0, 9, 0x1f, 0x42, 0xff};
  for (size_t i = 0; i < sizeof bad_types; i++) {
    full_msg(&m, DHT_MSG_PING);
    m.type = bad_types[i];
    expect_encode(&m, DHT_ERR_INVAL, "unknown type");
  }

  for (uint8_t t = DHT_MSG_PING; t <= DHT_MSG_ACK; t++) {
    unsigned f = fields_of(t);
    full_msg(&m, t);
    expect_encode(&m, 1, "baseline");
    if (f & F_TOKEN) {
      static const uint8_t lens[] = {0, 1, 15, 17, 255};
      for (size_t i = 0; i < sizeof lens; i++) {
        full_msg(&m, t);
        m.token_len = lens[i];
        bool cookie = t == DHT_MSG_FIND_NODE || t == DHT_MSG_GET || t == DHT_MSG_PONG;
        expect_encode(&m, cookie && lens[i] == 0 ? 1 : DHT_ERR_INVAL, "token length");
      }
    }
    if (f & F_CONTACTS) {
      full_msg(&m, t);
      m.ncontacts = DHT_K_MAX + 1;
      expect_encode(&m, DHT_ERR_INVAL, "33 contacts");
      m.ncontacts = -1;
      expect_encode(&m, DHT_ERR_INVAL, "-1 contacts");
      full_msg(&m, t);
      m.contacts[3].addr.port = 0;
      expect_encode(&m, DHT_ERR_INVAL, "contact port 0");
      full_msg(&m, t);
      m.contacts[4].addr.family = DHT_AF_NONE;
      expect_encode(&m, DHT_ERR_INVAL, "contact family none");
    }
    if (f & F_RECORD) {
      full_msg(&m, t);
      m.record_len = 0;
      expect_encode(&m, DHT_ERR_INVAL, "record 0");
      m.record_len = DHT_RECORD_MAX_LEN + 1;
      expect_encode(&m, DHT_ERR_INVAL, "record 430");
      full_msg(&m, t);
      m.record = NULL;
      expect_encode(&m, DHT_ERR_INVAL, "record NULL");
    }
    if (f & F_SEEN) {
      full_msg(&m, t);
      m.seen.port = 0;
      expect_encode(&m, DHT_ERR_INVAL, "seen port 0");
      m.seen = addr4(1, 2, 3, 4, 5);
      m.seen.family = 5;
      expect_encode(&m, DHT_ERR_INVAL, "seen family 5");
    }
    if (f & F_PAD) {
      full_msg(&m, t);
      m.pad_len = DHT_MAX_BODY;
      expect_encode(&m, 1, "pad at cap");
      m.pad_len = DHT_MAX_BODY + 1;
      expect_encode(&m, DHT_ERR_INVAL, "pad over cap");
    }
  }
}

/* Every message into every too-small buffer: DHT_ERR_NOBUF, and the byte
 * just past cap untouched. */
static void test_encode_nobuf_every_cap(void **state) {
  (void)state;
  static dht_msg m;
  static uint8_t ref[4096];
  for (uint8_t t = DHT_MSG_PING; t <= DHT_MSG_ACK; t++) {
    full_msg(&m, t);
    dht_ssize n = dht_msg_encode(&m, ref, sizeof ref);
    assert_true(n > 0);
    for (size_t cap = 0; cap <= (size_t)n; cap++) {
      uint8_t *buf = malloc(cap + 1);
      assert_non_null(buf);
      buf[cap] = 0x5a;
      dht_ssize got = dht_msg_encode(&m, buf, cap);
      if (cap < (size_t)n && got != DHT_ERR_NOBUF)
        fail_msg("type %u cap %zu of %td: encode gave %td", t, cap, n, got);
      if (cap == (size_t)n) {
        assert_int_equal(got, n);
        assert_memory_equal(buf, ref, cap);
      }
      assert_int_equal(buf[cap], 0x5a);
      free(buf);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_body_table),
      cmocka_unit_test(test_truncated_and_trailing),
      cmocka_unit_test(test_peek),
      cmocka_unit_test(test_roundtrip_every_type),
      cmocka_unit_test(test_roundtrip_edges),
      cmocka_unit_test(test_nodes_20_v6_fits),
      cmocka_unit_test(test_contact_size),
      cmocka_unit_test(test_encode_inval),
      cmocka_unit_test(test_encode_nobuf_every_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
