#include "msgpack.h"

#include <stdlib.h>
#include <string.h>

/* Deep enough for any row or payload a plugin reads; deeper input is refused, not recursed. */
#define MP_MAX_DEPTH 32

mp_reader mp_reader_new(const uint8_t *data, size_t len) {
  mp_reader r = {data, data + len};
  return r;
}

/* 64-bit counts, so a 32-bit length plus one cannot wrap around on wasm32. */
static bool take(mp_reader *r, uint64_t n, const uint8_t **out) {
  if ((uint64_t)(r->end - r->pos) < n) return false;
  *out = r->pos;
  r->pos += (size_t)n;
  return true;
}

static uint64_t big_endian(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

/* The marker's big-endian length field of `n` bytes. */
static bool read_len(mp_reader *r, size_t n, uint64_t *out) {
  const uint8_t *p;
  if (!take(r, n, &p)) return false;
  *out = big_endian(p, n);
  return true;
}

bool mp_read_nil(mp_reader *r) {
  if (r->pos < r->end && *r->pos == 0xc0) {
    r->pos++;
    return true;
  }
  return false;
}

/* A marker and its number: either a fix form, `(marker & fix_mask) == fix_tag` with the number in
 * the other bits, or one of the `count` markers from `first`, followed by a big-endian number of
 * 1 << (marker - first + shift) bytes. */
static bool read_head(mp_reader *r, uint8_t fix_mask, uint8_t fix_tag, uint8_t first, uint8_t count,
                      unsigned shift, uint64_t *out) {
  const uint8_t *m;
  if (!take(r, 1, &m)) return false;
  if ((*m & fix_mask) == fix_tag) {
    *out = *m & (uint8_t)~fix_mask;
    return true;
  }
  if (*m < first || *m - first >= count) return false;
  return read_len(r, (size_t)1 << (*m - first + shift), out);
}

/* No fix form: a mask of 0 never yields the tag 1. */
#define NO_FIX 0, 1

bool mp_read_uint(mp_reader *r, uint64_t *out) {
  mp_reader at = *r;
  uint64_t v;
  if (!read_head(&at, 0x80, 0x00, 0xcc, 4, 0, &v)) { /* fixint, uint 8/16/32/64 */
    at = *r;
    /* int 8/16/32/64: accepted when not negative */
    if (!read_head(&at, NO_FIX, 0xd0, 4, 0, &v)) return false;
    size_t n = (size_t)(at.pos - r->pos) - 1;
    if (v >> (8 * n - 1)) return false;
  }
  *out = v;
  *r = at;
  return true;
}

bool mp_read_str(mp_reader *r, mp_str *out) {
  mp_reader at = *r;
  uint64_t len;
  const uint8_t *p;
  /* fixstr, str 8/16/32 */
  if (!read_head(&at, 0xe0, 0xa0, 0xd9, 3, 0, &len) || !take(&at, len, &p)) return false;
  out->ptr = p;
  out->len = (size_t)len;
  *r = at;
  return true;
}

bool mp_read_map(mp_reader *r, uint32_t *entries) {
  mp_reader at = *r;
  uint64_t n;
  if (!read_head(&at, 0xf0, 0x80, 0xde, 2, 1, &n)) return false; /* fixmap, map 16/32 */
  *entries = (uint32_t)n;
  *r = at;
  return true;
}

static bool skip(mp_reader *r, int depth) {
  if (depth > MP_MAX_DEPTH) return false;
  const uint8_t *m, *p;
  if (!take(r, 1, &m)) return false;
  uint8_t b = *m;
  uint64_t n = 0;
  if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) return true;
  if ((b & 0xe0) == 0xa0) return take(r, b & 0x1f, &p);
  if ((b & 0xf0) == 0x80 || (b & 0xf0) == 0x90) {
    n = b & 0x0f;
    if ((b & 0xf0) == 0x80) n *= 2;
  } else {
    switch (b) {
    case 0xcc: case 0xd0: return take(r, 1, &p);
    case 0xcd: case 0xd1: return take(r, 2, &p);
    case 0xca: case 0xce: case 0xd2: return take(r, 4, &p);
    case 0xcb: case 0xcf: case 0xd3: return take(r, 8, &p);
    case 0xd4: return take(r, 2, &p); /* fixext: type byte + data */
    case 0xd5: return take(r, 3, &p);
    case 0xd6: return take(r, 5, &p);
    case 0xd7: return take(r, 9, &p);
    case 0xd8: return take(r, 17, &p);
    case 0xc4: case 0xd9: return read_len(r, 1, &n) && take(r, n, &p);
    case 0xc5: case 0xda: return read_len(r, 2, &n) && take(r, n, &p);
    case 0xc6: case 0xdb: return read_len(r, 4, &n) && take(r, n, &p);
    case 0xc7: return read_len(r, 1, &n) && take(r, n + 1, &p);
    case 0xc8: return read_len(r, 2, &n) && take(r, n + 1, &p);
    case 0xc9: return read_len(r, 4, &n) && take(r, n + 1, &p);
    case 0xdc: if (!read_len(r, 2, &n)) return false; break;
    case 0xdd: if (!read_len(r, 4, &n)) return false; break;
    case 0xde: if (!read_len(r, 2, &n)) return false; n *= 2; break;
    case 0xdf: if (!read_len(r, 4, &n)) return false; n *= 2; break;
    default: return false; /* 0xc1 is never used */
    }
  }
  /* Each element takes at least one byte, so a count beyond the input is truncated input. */
  if (n > (uint64_t)(r->end - r->pos)) return false;
  for (uint64_t i = 0; i < n; i++) {
    if (!skip(r, depth + 1)) return false;
  }
  return true;
}

bool mp_skip(mp_reader *r) {
  mp_reader at = *r;
  if (!skip(&at, 0)) return false;
  *r = at;
  return true;
}

bool mp_at_end(const mp_reader *r) { return r->pos == r->end; }

bool mp_str_eq(mp_str s, const char *text) {
  size_t n = strlen(text);
  return s.len == n && memcmp(s.ptr, text, n) == 0;
}

bool mp_find(const uint8_t *data, size_t len, const char *key, mp_reader *value) {
  mp_reader r = mp_reader_new(data, len);
  uint32_t entries;
  if (!mp_read_map(&r, &entries)) return false;
  for (uint32_t i = 0; i < entries; i++) {
    mp_str k;
    if (!mp_read_str(&r, &k)) return false;
    if (mp_str_eq(k, key)) {
      *value = r;
      return true;
    }
    if (!mp_skip(&r)) return false;
  }
  return false;
}

static void put(mp_writer *w, const uint8_t *bytes, size_t n) {
  if (w->failed) return;
  if (w->cap - w->len < n) {
    size_t cap = w->cap ? w->cap : 64;
    while (cap - w->len < n) cap *= 2;
    uint8_t *data = realloc(w->data, cap);
    if (!data) {
      w->failed = true;
      return;
    }
    w->data = data;
    w->cap = cap;
  }
  memcpy(w->data + w->len, bytes, n);
  w->len += n;
}

/* A marker followed by `n` big-endian bytes of `v`. */
static void put_marked(mp_writer *w, uint8_t marker, uint64_t v, size_t n) {
  uint8_t buf[9];
  buf[0] = marker;
  for (size_t i = 0; i < n; i++) buf[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
  put(w, buf, 1 + n);
}

void mp_write_nil(mp_writer *w) { put_marked(w, 0xc0, 0, 0); }

void mp_write_uint(mp_writer *w, uint64_t v) {
  if (v <= 0x7f) put_marked(w, (uint8_t)v, 0, 0);
  else if (v <= UINT8_MAX) put_marked(w, 0xcc, v, 1);
  else if (v <= UINT16_MAX) put_marked(w, 0xcd, v, 2);
  else if (v <= UINT32_MAX) put_marked(w, 0xce, v, 4);
  else put_marked(w, 0xcf, v, 8);
}

void mp_write_str(mp_writer *w, const uint8_t *ptr, size_t len) {
  if (len <= 31) put_marked(w, (uint8_t)(0xa0 | len), 0, 0);
  else if (len <= UINT8_MAX) put_marked(w, 0xd9, len, 1);
  else if (len <= UINT16_MAX) put_marked(w, 0xda, len, 2);
  else put_marked(w, 0xdb, len, 4);
  put(w, ptr, len);
}

void mp_write_cstr(mp_writer *w, const char *text) {
  mp_write_str(w, (const uint8_t *)text, strlen(text));
}

void mp_write_map(mp_writer *w, uint32_t entries) {
  if (entries <= 15) put_marked(w, (uint8_t)(0x80 | entries), 0, 0);
  else if (entries <= UINT16_MAX) put_marked(w, 0xde, entries, 2);
  else put_marked(w, 0xdf, entries, 4);
}

void mp_writer_free(mp_writer *w) {
  free(w->data);
  w->data = NULL;
  w->len = w->cap = 0;
}
