/*
 * node_invite.c - invites: the signed, checksummed text one person gives
 * another to become friends (layout in node.h).  Pure functions: the time is
 * an argument, nothing is read or written but the caller's buffers.
 *
 * Parsing is strict and in a fixed order, so each refusal has one clear
 * reason: prefix, base32 alphabet, length, checksum (a typo), version,
 * fields, signature, expiry.  A valid text has exactly one spelling (lower
 * case, zero trailing bits), so a changed bit anywhere is refused.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "node.h"

#define CK_LEN 4
static const char sig_label[] = "roost-invite-v1";
static const char ck_label[] = "roost-invite-ck";
#define PREFIX_LEN (sizeof NODE_INVITE_PREFIX - 1)
/* version, pk, name length, address count, host count, expiry, signature */
#define BLOB_MIN (1 + DHT_PK_LEN + 1 + 1 + 1 + 8 + DHT_SIG_LEN)

static void checksum(const uint8_t *blob, size_t len, uint8_t out[CK_LEN]) {
  crypto_generichash_state st;
  uint8_t h[32];
  crypto_generichash_init(&st, NULL, 0, sizeof h);
  crypto_generichash_update(&st, (const uint8_t *)ck_label, sizeof ck_label - 1);
  crypto_generichash_update(&st, blob, len);
  crypto_generichash_final(&st, h, sizeof h);
  memcpy(out, h, CK_LEN);
}

/* Ed25519 over label || msg (the label keeps an invite signature from
 * meaning anything else). */
static void sign(uint8_t sig[DHT_SIG_LEN], const uint8_t *msg, size_t len, const dht_identity *id) {
  uint8_t buf[sizeof sig_label - 1 + NODE_INVITE_BLOB_MAX];
  memcpy(buf, sig_label, sizeof sig_label - 1);
  memcpy(buf + sizeof sig_label - 1, msg, len);
  crypto_sign_detached(sig, NULL, buf, sizeof sig_label - 1 + len, id->sk);
}

static bool verify(const uint8_t sig[DHT_SIG_LEN], const uint8_t *msg, size_t len,
                   const uint8_t pk[DHT_PK_LEN]) {
  uint8_t buf[sizeof sig_label - 1 + NODE_INVITE_BLOB_MAX];
  memcpy(buf, sig_label, sizeof sig_label - 1);
  memcpy(buf + sizeof sig_label - 1, msg, len);
  return crypto_sign_verify_detached(sig, buf, sizeof sig_label - 1 + len, pk) == 0;
}

bool node_invite_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n > NODE_INVITE_NAME_MAX)
    return false;
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n; i++)
    if (p[i] < 0x20 || p[i] == 0x7f)
      return false;
  /* valid UTF-8, no C1 controls (U+0080..U+009F) */
  size_t i = 0;
  while (i < n) {
    unsigned c = p[i];
    int more = c < 0x80             ? 0
               : (c & 0xe0) == 0xc0 ? 1
               : (c & 0xf0) == 0xe0 ? 2
               : (c & 0xf8) == 0xf0 ? 3
                                    : -1;
    if (more < 0 || i + (size_t)more >= n)
      return false;
    uint32_t cp = more == 0 ? c : c & (0x3f >> more);
    for (int k = 1; k <= more; k++) {
      if (i + (size_t)k >= n || (p[i + (size_t)k] & 0xc0) != 0x80)
        return false;
      cp = cp << 6 | (p[i + (size_t)k] & 0x3f);
    }
    if ((more == 1 && cp < 0x80) || (more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
      return false;
    i += (size_t)more + 1;
  }
  return true;
}

static size_t put_addr(uint8_t *p, const dht_addr *a) {
  size_t o = 0;
  if (a->family == DHT_AF_INET) {
    p[o++] = 4;
    memcpy(p + o, a->ip, 4);
    o += 4;
  } else if (a->family == DHT_AF_INET6) {
    p[o++] = 6;
    memcpy(p + o, a->ip, 16);
    o += 16;
  } else {
    p[o++] = 0;
    return o;
  }
  p[o++] = (uint8_t)(a->port >> 8);
  p[o++] = (uint8_t)a->port;
  return o;
}

dht_ssize node_invite_wrap(const uint8_t *blob, size_t len, char *out, size_t outlen) {
  if (len > NODE_INVITE_BLOB_MAX - CK_LEN)
    return -1;
  uint8_t raw[NODE_INVITE_BLOB_MAX];
  memcpy(raw, blob, len);
  checksum(blob, len, raw + len);
  size_t n = PREFIX_LEN + node_base32_len(len + CK_LEN);
  if (outlen < n + 1)
    return -1;
  memcpy(out, NODE_INVITE_PREFIX, PREFIX_LEN);
  node_base32_encode(raw, len + CK_LEN, out + PREFIX_LEN);
  return (dht_ssize)n;
}

dht_ssize node_invite_encode(const node_invite *inv, const dht_identity *id, char *out,
                             size_t outlen) {
  if (!node_invite_name_ok(inv->name) || inv->naddrs < 0 || inv->naddrs > NODE_INVITE_MAX_ADDRS ||
      inv->nhosts < 0 || inv->nhosts > STORE_MAX_HOSTS)
    return -1;
  uint8_t b[NODE_INVITE_BLOB_MAX];
  size_t o = 0, nl = strlen(inv->name);
  b[o++] = NODE_INVITE_VERSION;
  memcpy(b + o, id->pk, DHT_PK_LEN);
  o += DHT_PK_LEN;
  b[o++] = (uint8_t)nl;
  memcpy(b + o, inv->name, nl);
  o += nl;
  b[o++] = (uint8_t)inv->naddrs;
  for (int i = 0; i < inv->naddrs; i++) {
    if (inv->addrs[i].family != DHT_AF_INET && inv->addrs[i].family != DHT_AF_INET6)
      return -1;
    o += put_addr(b + o, &inv->addrs[i]);
  }
  b[o++] = (uint8_t)inv->nhosts;
  for (int i = 0; i < inv->nhosts; i++) {
    memcpy(b + o, inv->hosts[i].pk, DHT_PK_LEN);
    o += DHT_PK_LEN;
    o += put_addr(b + o, &inv->hosts[i].addr);
  }
  for (int i = 7; i >= 0; i--)
    b[o++] = (uint8_t)(inv->expires_s >> (8 * i));
  sign(b + o, b, o, id);
  o += DHT_SIG_LEN;
  return node_invite_wrap(b, o, out, outlen);
}

dht_ssize node_invite_unwrap(const char *text, uint8_t *blob, size_t max) {
  while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
    text++;
  size_t len = strlen(text);
  while (len && (text[len - 1] == ' ' || text[len - 1] == '\t' || text[len - 1] == '\n' ||
                 text[len - 1] == '\r'))
    len--;
  if (len < PREFIX_LEN || memcmp(text, NODE_INVITE_PREFIX, PREFIX_LEN) != 0)
    return NODE_INVITE_ERR_PREFIX;
  text += PREFIX_LEN;
  len -= PREFIX_LEN;
  for (size_t i = 0; i < len; i++)
    if (!((text[i] >= 'a' && text[i] <= 'z') || (text[i] >= '2' && text[i] <= '7')))
      return NODE_INVITE_ERR_BASE32;
  if (len > node_base32_len(NODE_INVITE_BLOB_MAX) || len < node_base32_len(BLOB_MIN + CK_LEN))
    return NODE_INVITE_ERR_LENGTH;
  uint8_t raw[NODE_INVITE_BLOB_MAX];
  dht_ssize n = node_base32_decode(text, len, raw, sizeof raw);
  if (n == -2)
    return NODE_INVITE_ERR_LENGTH;
  if (n < 0)
    return NODE_INVITE_ERR_CHECKSUM; /* non-zero trailing bits: a changed character */
  if ((size_t)n < BLOB_MIN + CK_LEN)
    return NODE_INVITE_ERR_LENGTH;
  size_t bl = (size_t)n - CK_LEN;
  uint8_t ck[CK_LEN];
  checksum(raw, bl, ck);
  if (memcmp(ck, raw + bl, CK_LEN) != 0)
    return NODE_INVITE_ERR_CHECKSUM;
  if (bl > max)
    return NODE_INVITE_ERR_LENGTH;
  memcpy(blob, raw, bl);
  return (dht_ssize)bl;
}

/* Reads an address at b[*o] (family 0 allowed only when allow_none).
 * 0, NODE_INVITE_ERR_LENGTH or NODE_INVITE_ERR_FORMAT. */
static int get_addr(const uint8_t *b, size_t len, size_t *o, dht_addr *a, bool allow_none) {
  memset(a, 0, sizeof *a);
  if (*o + 1 > len)
    return NODE_INVITE_ERR_LENGTH;
  uint8_t fam = b[(*o)++];
  size_t ipl;
  if (fam == 4) {
    a->family = DHT_AF_INET;
    ipl = 4;
  } else if (fam == 6) {
    a->family = DHT_AF_INET6;
    ipl = 16;
  } else if (fam == 0 && allow_none) {
    a->family = DHT_AF_NONE;
    return 0;
  } else {
    return NODE_INVITE_ERR_FORMAT;
  }
  if (*o + ipl + 2 > len)
    return NODE_INVITE_ERR_LENGTH;
  memcpy(a->ip, b + *o, ipl);
  *o += ipl;
  a->port = (uint16_t)(b[*o] << 8 | b[*o + 1]);
  *o += 2;
  if (a->port == 0)
    return NODE_INVITE_ERR_FORMAT;
  return 0;
}

static int refuse(int code, char *err, size_t errlen, const char *msg) {
  snprintf(err, errlen, "%s", msg);
  return code;
}

int node_invite_decode(const char *text, uint64_t now_s, node_invite *out, char *err,
                       size_t errlen) {
  uint8_t b[NODE_INVITE_BLOB_MAX];
  dht_ssize n = node_invite_unwrap(text, b, sizeof b);
  switch (n) {
  case NODE_INVITE_ERR_PREFIX:
    return refuse((int)n, err, errlen, "not an invite: it must start with 'roost-invite:'");
  case NODE_INVITE_ERR_BASE32:
    return refuse((int)n, err, errlen,
                  "the invite has a character that cannot be in one (only a-z and 2-7 after "
                  "'roost-invite:'): was it changed while copying?");
  case NODE_INVITE_ERR_LENGTH:
    return refuse((int)n, err, errlen,
                  "the invite has the wrong length: was it cut or joined with other text?");
  case NODE_INVITE_ERR_CHECKSUM:
    return refuse((int)n, err, errlen,
                  "the invite has a typo (its checksum does not match): copy it again");
  default:
    break;
  }
  size_t len = (size_t)n, o = 0;
  memset(out, 0, sizeof *out);
  out->version = b[o++];
  if (out->version != NODE_INVITE_VERSION) {
    snprintf(err, errlen,
             "the invite has version %d, which this roost does not know (it knows %d): "
             "update roost",
             out->version, NODE_INVITE_VERSION);
    return NODE_INVITE_ERR_VERSION;
  }
  /* the signature is over everything but itself: find where it starts */
  if (len < BLOB_MIN)
    return refuse(NODE_INVITE_ERR_LENGTH, err, errlen, "the invite is too short");
  size_t signed_len = len - DHT_SIG_LEN;
  memcpy(out->pk, b + o, DHT_PK_LEN);
  o += DHT_PK_LEN;
  size_t nl = b[o++];
  if (nl > NODE_INVITE_NAME_MAX || o + nl > signed_len)
    return refuse(NODE_INVITE_ERR_LENGTH, err, errlen, "the invite's name does not fit");
  memcpy(out->name, b + o, nl);
  out->name[nl] = 0;
  o += nl;
  if (!node_invite_name_ok(out->name))
    return refuse(NODE_INVITE_ERR_FORMAT, err, errlen, "the invite's name is not printable UTF-8");
  if (o + 1 > signed_len)
    return refuse(NODE_INVITE_ERR_LENGTH, err, errlen, "the invite is too short");
  out->naddrs = b[o++];
  if (out->naddrs > NODE_INVITE_MAX_ADDRS)
    return refuse(NODE_INVITE_ERR_FORMAT, err, errlen, "the invite lists too many addresses");
  for (int i = 0; i < out->naddrs; i++) {
    int rv = get_addr(b, signed_len, &o, &out->addrs[i], false);
    if (rv)
      return refuse(rv, err, errlen, "the invite has a malformed address");
  }
  if (o + 1 > signed_len)
    return refuse(NODE_INVITE_ERR_LENGTH, err, errlen, "the invite is too short");
  out->nhosts = b[o++];
  if (out->nhosts > STORE_MAX_HOSTS)
    return refuse(NODE_INVITE_ERR_FORMAT, err, errlen, "the invite lists too many hosts");
  for (int i = 0; i < out->nhosts; i++) {
    if (o + DHT_PK_LEN > signed_len)
      return refuse(NODE_INVITE_ERR_LENGTH, err, errlen, "the invite is too short");
    memcpy(out->hosts[i].pk, b + o, DHT_PK_LEN);
    o += DHT_PK_LEN;
    int rv = get_addr(b, signed_len, &o, &out->hosts[i].addr, true);
    if (rv)
      return refuse(rv, err, errlen, "the invite has a malformed host address");
  }
  if (o + 8 != signed_len)
    return refuse(NODE_INVITE_ERR_LENGTH, err, errlen,
                  "the invite's fields do not add up to its length");
  for (int i = 0; i < 8; i++)
    out->expires_s = out->expires_s << 8 | b[o++];
  if (!verify(b + signed_len, b, signed_len, out->pk))
    return refuse(NODE_INVITE_ERR_SIGNATURE, err, errlen,
                  "the invite's signature does not match its key: it was altered or forged");
  if (now_s >= out->expires_s) {
    char when[64];
    time_t t = out->expires_s > (uint64_t)INT64_MAX ? (time_t)INT64_MAX : (time_t)out->expires_s;
    struct tm tm;
    if (gmtime_r(&t, &tm))
      strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    else
      snprintf(when, sizeof when, "unix time %llu", (unsigned long long)out->expires_s);
    snprintf(err, errlen, "the invite expired at %s: ask for a new one (roost invite)", when);
    return NODE_INVITE_ERR_EXPIRED;
  }
  return 0;
}
