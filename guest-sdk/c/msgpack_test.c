/* Tests of msgpack.c, run natively by scripts/test: cc msgpack_test.c msgpack.c && ./a.out */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msgpack.h"

static int failures;
#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      fprintf(stderr, "msgpack_test.c:%d: %s\n", __LINE__, #cond); \
      failures++;                                                    \
    }                                                                \
  } while (0)

static void uints_round_trip_at_every_width(void) {
  const uint64_t values[] = {0, 127, 128, 255, 256, 65535, 65536, 4294967295u,
                             4294967296u, UINT64_MAX};
  const size_t sizes[] = {1, 1, 2, 2, 3, 3, 5, 5, 9, 9};
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    mp_writer w = {0};
    mp_write_uint(&w, values[i]);
    CHECK(!w.failed && w.len == sizes[i]);
    mp_reader r = mp_reader_new(w.data, w.len);
    uint64_t v = 0;
    CHECK(mp_read_uint(&r, &v) && v == values[i] && mp_at_end(&r));
    /* Every truncation is refused and leaves the reader where it was. */
    for (size_t n = 0; n < w.len; n++) {
      mp_reader cut = mp_reader_new(w.data, n);
      CHECK(!mp_read_uint(&cut, &v) && cut.pos == w.data);
      cut = mp_reader_new(w.data, n);
      CHECK(!mp_skip(&cut));
    }
    mp_writer_free(&w);
  }
}

static void signed_ints_are_read_when_not_negative(void) {
  const uint8_t int8_five[] = {0xd0, 0x05}, int8_minus_one[] = {0xd0, 0xff};
  const uint8_t int64_big[] = {0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  const uint8_t fixint_negative[] = {0xff}, nil[] = {0xc0};
  uint64_t v;
  mp_reader r = mp_reader_new(int8_five, 2);
  CHECK(mp_read_uint(&r, &v) && v == 5);
  r = mp_reader_new(int64_big, 9);
  CHECK(mp_read_uint(&r, &v) && v == INT64_MAX);
  r = mp_reader_new(int8_minus_one, 2);
  CHECK(!mp_read_uint(&r, &v));
  r = mp_reader_new(fixint_negative, 1);
  CHECK(!mp_read_uint(&r, &v));
  r = mp_reader_new(nil, 1);
  CHECK(!mp_read_uint(&r, &v) && mp_read_nil(&r) && mp_at_end(&r));
}

static void strings_round_trip_at_every_width(void) {
  const size_t lengths[] = {0, 31, 32, 255, 256, 65535, 65536};
  const size_t heads[] = {1, 1, 2, 2, 3, 3, 5};
  char *text = malloc(65536);
  memset(text, 'x', 65536);
  for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
    mp_writer w = {0};
    mp_write_str(&w, (const uint8_t *)text, lengths[i]);
    CHECK(!w.failed && w.len == heads[i] + lengths[i]);
    mp_reader r = mp_reader_new(w.data, w.len);
    mp_str s;
    CHECK(mp_read_str(&r, &s) && s.len == lengths[i] && mp_at_end(&r));
    mp_reader cut = mp_reader_new(w.data, w.len - 1);
    CHECK(!mp_read_str(&cut, &s) && !mp_skip(&cut));
    mp_writer_free(&w);
  }
  free(text);
}

static void find_skips_other_fields_of_any_type(void) {
  /* {"a": [1, {"x": nil}, 2.5, bin(2), ext], "b": "yes"}, with a float64 and a fixext 1. */
  const uint8_t map[] = {0x82, 0xa1, 'a', 0x95, 0x01, 0x81, 0xa1, 'x', 0xc0,
                         0xcb, 0x40, 0x04, 0, 0, 0, 0, 0, 0, 0xc4, 0x02, 0xaa, 0xbb,
                         0xd4, 0x01, 0x00, 0xa1, 'b', 0xa3, 'y', 'e', 's'};
  mp_reader r;
  mp_str s;
  CHECK(mp_find(map, sizeof map, "b", &r) && mp_read_str(&r, &s) && mp_str_eq(s, "yes"));
  CHECK(!mp_find(map, sizeof map, "c", &r));
  /* Truncated inside `a`: `b` is never reached; inside `b`'s value: found, but does not read. */
  CHECK(!mp_find(map, 20, "b", &r));
  CHECK(mp_find(map, sizeof map - 1, "b", &r) && !mp_read_str(&r, &s));
  const uint8_t not_a_map[] = {0x91, 0x01};
  CHECK(!mp_find(not_a_map, sizeof not_a_map, "a", &r));
}

static void deep_nesting_is_refused_not_recursed(void) {
  uint8_t deep[1000];
  memset(deep, 0x91, sizeof deep); /* [[[[...]]]] */
  deep[sizeof deep - 1] = 0x01;
  mp_reader r = mp_reader_new(deep, sizeof deep);
  CHECK(!mp_skip(&r) && r.pos == deep);
  /* A count far beyond the input fails at once instead of looping. */
  const uint8_t huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
  r = mp_reader_new(huge, sizeof huge);
  CHECK(!mp_skip(&r));
}

static void a_written_map_reads_back(void) {
  mp_writer w = {0};
  mp_write_map(&w, 2);
  mp_write_cstr(&w, "status");
  mp_write_cstr(&w, "paid");
  mp_write_cstr(&w, "updated_at");
  mp_write_uint(&w, 1700000000000u);
  mp_reader r;
  mp_str s;
  uint64_t v;
  CHECK(mp_find(w.data, w.len, "status", &r) && mp_read_str(&r, &s) && mp_str_eq(s, "paid"));
  CHECK(mp_find(w.data, w.len, "updated_at", &r) && mp_read_uint(&r, &v) && v == 1700000000000u);
  mp_writer_free(&w);
  mp_writer big = {0};
  mp_write_map(&big, 70000);
  CHECK(big.len == 5 && big.data[0] == 0xdf);
  mp_writer_free(&big);
}

int main(void) {
  uints_round_trip_at_every_width();
  signed_ints_are_read_when_not_negative();
  strings_round_trip_at_every_width();
  find_skips_other_fields_of_any_type();
  deep_nesting_is_refused_not_recursed();
  a_written_map_reads_back();
  if (failures) {
    fprintf(stderr, "msgpack_test: %d failed\n", failures);
    return 1;
  }
  printf("msgpack_test: ok\n");
  return 0;
}
