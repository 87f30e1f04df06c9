/* A small MessagePack reader and writer for factline plugins in C: payloads, state and read-model
 * rows cross the boundary as named MessagePack (maps keyed by field name).
 *
 * The reader never reads past its buffer and never allocates: strings are views into it. Every
 * read returns false on a type mismatch or truncated input and leaves the reader where it was,
 * so the caller turns it into a failure that names the event. The writer grows a heap buffer
 * with realloc; `mp_writer.failed` records an allocation failure. */
#ifndef FACTLINE_MSGPACK_H
#define FACTLINE_MSGPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A view into a buffer: not NUL-terminated. */
typedef struct {
  const uint8_t *ptr;
  size_t len;
} mp_str;

typedef struct {
  const uint8_t *pos;
  const uint8_t *end;
} mp_reader;

mp_reader mp_reader_new(const uint8_t *data, size_t len);
bool mp_read_nil(mp_reader *r);
bool mp_read_uint(mp_reader *r, uint64_t *out);
bool mp_read_str(mp_reader *r, mp_str *out);
bool mp_read_map(mp_reader *r, uint32_t *entries);
/* Skips one value of any type (nesting is bounded, so hostile input cannot exhaust the stack). */
bool mp_skip(mp_reader *r);
/* Whether the whole buffer is one value. */
bool mp_at_end(const mp_reader *r);

/* In the map `data` holds, positions `value` at the value of `key`; false when no such key is
 * found before the end of the map or a malformed entry. The value itself is read by the caller. */
bool mp_find(const uint8_t *data, size_t len, const char *key, mp_reader *value);

bool mp_str_eq(mp_str s, const char *text);

typedef struct {
  uint8_t *data;
  size_t len;
  size_t cap;
  bool failed;
} mp_writer;

void mp_write_nil(mp_writer *w);
void mp_write_uint(mp_writer *w, uint64_t value);
void mp_write_str(mp_writer *w, const uint8_t *ptr, size_t len);
void mp_write_cstr(mp_writer *w, const char *text);
void mp_write_map(mp_writer *w, uint32_t entries);
void mp_writer_free(mp_writer *w);

#endif
