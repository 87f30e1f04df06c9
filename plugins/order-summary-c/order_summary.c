/* The order-summary projector in C: one row per order, as plugins/order-summary does, built from
 * wit/ with wit-bindgen's C generator (world `projector`; see ./build).
 *
 * The status only climbs RANK (the order and payment topics are read independently, so a payment
 * may come before its order); a payment for an order without a row waits under `pending/<id>`.
 * Rows are named MessagePack maps with the Rust twin's fields. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "msgpack.h"
#include "projector.h"

typedef exports_factline_plugin_projector_handler_event_t event_t;
typedef exports_factline_plugin_projector_handler_failure_t failure_t;

enum status { CREATED, CONFIRMED, PAID, REFUNDED, SHIPPED, CANCELLED, STATUS_COUNT };
static const char *const RANK[STATUS_COUNT] = {"created",  "confirmed", "paid",
                                               "refunded", "shipped",   "cancelled"};

static const char *const EVENT_TYPES[] = {
    "order.created", "order.item-added", "order.placed",    "order.shipped",
    "order.cancelled", "payment.charged", "payment.refunded",
};
#define EVENT_TYPE_COUNT (sizeof EVENT_TYPES / sizeof EVENT_TYPES[0])

/* Order ids and keys are bounded (`pending/` + id), so keys live on the stack. */
#define MAX_KEY 256
#define MAX_KEY_TEXT "256"

typedef struct {
  mp_str order_id;
  mp_str customer_id;
  enum status status;
  uint64_t item_count;
  uint64_t total;
  bool cancelled;
  mp_str cancel_reason;
  uint64_t created_at;
  uint64_t updated_at;
} summary;

typedef struct {
  enum status status;
  uint64_t updated_at;
} pending;

/* What went wrong with the event being projected; becomes the WIT failure. */
static char error[512];

/* Formats `error` from the printf subset `%s` and `%.*s` (libc's printf would pull in stdio,
 * whose cleanup imports WASI, and the component would need the preview1 adapter). */
static bool fail(const char *format, ...) __attribute__((format(printf, 1, 2)));
static bool fail(const char *format, ...) {
  va_list args;
  va_start(args, format);
  size_t n = 0;
  for (const char *f = format; *f && n < sizeof error - 1; f++) {
    const char *piece = f;
    size_t len = 1;
    if (strncmp(f, "%s", 2) == 0) {
      piece = va_arg(args, const char *);
      len = strlen(piece);
      f += 1;
    } else if (strncmp(f, "%.*s", 4) == 0) {
      len = (size_t)va_arg(args, int);
      piece = va_arg(args, const char *);
      f += 3;
    }
    if (len > sizeof error - 1 - n) len = sizeof error - 1 - n;
    memcpy(error + n, piece, len);
    n += len;
  }
  error[n] = '\0';
  va_end(args);
  return false;
}

static bool read_status(mp_reader *r, enum status *out) {
  mp_str s;
  if (!mp_read_str(r, &s)) return false;
  for (int i = 0; i < STATUS_COUNT; i++) {
    if (mp_str_eq(s, RANK[i])) {
      *out = (enum status)i;
      return true;
    }
  }
  return false;
}

static enum status climb(enum status current, enum status to) { return to > current ? to : current; }
static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }
static uint64_t add_sat(uint64_t a, uint64_t b) { return a + b < a ? UINT64_MAX : a + b; }
static uint64_t mul_sat(uint64_t a, uint64_t b) {
  return a != 0 && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}

/* The payload field `key` as a string or an unsigned integer; false names it in `error`. */
static bool payload_str(const event_t *e, const char *key, mp_str *out, const char *type) {
  mp_reader r;
  if (mp_find(e->payload.ptr, e->payload.len, key, &r) && mp_read_str(&r, out)) return true;
  return fail("invalid payload for `%s`: `%s` is missing or not a string", type, key);
}

static bool payload_uint(const event_t *e, const char *key, uint64_t max, uint64_t *out,
                         const char *type) {
  mp_reader r;
  if (mp_find(e->payload.ptr, e->payload.len, key, &r) && mp_read_uint(&r, out) && *out <= max)
    return true;
  return fail("invalid payload for `%s`: `%s` is missing or not an unsigned integer in range",
              type, key);
}

static bool key_of(char *buf, const char *prefix, mp_str id, projector_string_t *key) {
  size_t n = strlen(prefix);
  if (n + id.len > MAX_KEY) return fail("order id too long (over %s bytes)", MAX_KEY_TEXT);
  memcpy(buf, prefix, n);
  memcpy(buf + n, id.ptr, id.len);
  key->ptr = (uint8_t *)buf;
  key->len = n + id.len;
  return true;
}

/* The row under `key` into `row`, its bytes into `bytes` (which `row`'s strings point into). */
static bool get_summary(projector_string_t *key, summary *row, projector_list_u8_t *bytes,
                        bool *found) {
  *found = factline_plugin_read_model_get(key, bytes);
  if (!*found) return true;
  mp_reader r = mp_reader_new(bytes->ptr, bytes->len);
  uint32_t n;
  bool ok = mp_read_map(&r, &n);
  memset(row, 0, sizeof *row);
  for (uint32_t i = 0; ok && i < n; i++) {
    mp_str field;
    ok = mp_read_str(&r, &field);
    if (!ok) break;
    if (mp_str_eq(field, "order_id")) ok = mp_read_str(&r, &row->order_id);
    else if (mp_str_eq(field, "customer_id")) ok = mp_read_str(&r, &row->customer_id);
    else if (mp_str_eq(field, "status")) ok = read_status(&r, &row->status);
    else if (mp_str_eq(field, "item_count")) ok = mp_read_uint(&r, &row->item_count);
    else if (mp_str_eq(field, "total")) ok = mp_read_uint(&r, &row->total);
    else if (mp_str_eq(field, "created_at")) ok = mp_read_uint(&r, &row->created_at);
    else if (mp_str_eq(field, "updated_at")) ok = mp_read_uint(&r, &row->updated_at);
    else if (mp_str_eq(field, "cancel_reason"))
      ok = mp_read_nil(&r) || (row->cancelled = mp_read_str(&r, &row->cancel_reason));
    else ok = mp_skip(&r);
  }
  if (ok) return true;
  projector_list_u8_free(bytes);
  *found = false;
  return fail("the row `%.*s` does not decode as a summary", (int)key->len, (const char *)key->ptr);
}

static bool put_row(projector_string_t *key, mp_writer *w) {
  if (w->failed) {
    mp_writer_free(w);
    return fail("out of memory encoding a row");
  }
  projector_list_u8_t value = {w->data, w->len};
  factline_plugin_read_model_put(key, &value);
  mp_writer_free(w);
  return true;
}

static bool put_summary(projector_string_t *key, const summary *row) {
  mp_writer w = {0};
  mp_write_map(&w, 8);
  mp_write_cstr(&w, "order_id");
  mp_write_str(&w, row->order_id.ptr, row->order_id.len);
  mp_write_cstr(&w, "customer_id");
  mp_write_str(&w, row->customer_id.ptr, row->customer_id.len);
  mp_write_cstr(&w, "status");
  mp_write_cstr(&w, RANK[row->status]);
  mp_write_cstr(&w, "item_count");
  mp_write_uint(&w, row->item_count);
  mp_write_cstr(&w, "total");
  mp_write_uint(&w, row->total);
  mp_write_cstr(&w, "cancel_reason");
  if (row->cancelled) mp_write_str(&w, row->cancel_reason.ptr, row->cancel_reason.len);
  else mp_write_nil(&w);
  mp_write_cstr(&w, "created_at");
  mp_write_uint(&w, row->created_at);
  mp_write_cstr(&w, "updated_at");
  mp_write_uint(&w, row->updated_at);
  return put_row(key, &w);
}

static bool get_pending(projector_string_t *key, pending *p, bool *found) {
  projector_list_u8_t bytes;
  *found = factline_plugin_read_model_get(key, &bytes);
  if (!*found) return true;
  mp_reader r;
  bool ok = mp_find(bytes.ptr, bytes.len, "status", &r) && read_status(&r, &p->status) &&
            mp_find(bytes.ptr, bytes.len, "updated_at", &r) && mp_read_uint(&r, &p->updated_at);
  projector_list_u8_free(&bytes);
  if (ok) return true;
  return fail("the row `%.*s` does not decode as a pending payment", (int)key->len,
              (const char *)key->ptr);
}

static bool put_pending(projector_string_t *key, const pending *p) {
  mp_writer w = {0};
  mp_write_map(&w, 2);
  mp_write_cstr(&w, "status");
  mp_write_cstr(&w, RANK[p->status]);
  mp_write_cstr(&w, "updated_at");
  mp_write_uint(&w, p->updated_at);
  return put_row(key, &w);
}

/* An order's summary row as read: its key, and the bytes its strings point into (free them). */
typedef struct {
  char buf[MAX_KEY];
  projector_string_t key;
  summary row;
  projector_list_u8_t bytes;
  bool found;
} stored_summary;

static bool load_summary(mp_str order_id, stored_summary *s) {
  return key_of(s->buf, "", order_id, &s->key) &&
         get_summary(&s->key, &s->row, &s->bytes, &s->found);
}

/* A payment event: on the order's row, or pending until the row exists. */
static bool payment(const event_t *e, const char *type, enum status status) {
  mp_str order_id;
  if (!payload_str(e, "order_id", &order_id, type)) return false;
  stored_summary s;
  if (!load_summary(order_id, &s)) return false;
  if (s.found) {
    s.row.status = climb(s.row.status, status);
    s.row.updated_at = max_u64(s.row.updated_at, e->occurred_at);
    bool ok = put_summary(&s.key, &s.row);
    projector_list_u8_free(&s.bytes);
    return ok;
  }
  char buf[MAX_KEY];
  projector_string_t key;
  if (!key_of(buf, "pending/", order_id, &key)) return false;
  pending p = {status, e->occurred_at};
  pending old;
  bool found;
  if (!get_pending(&key, &old, &found)) return false;
  if (found) {
    p.status = climb(old.status, status);
    p.updated_at = max_u64(old.updated_at, e->occurred_at);
  }
  return put_pending(&key, &p);
}

/* `order.created`: a new row, taking in a payment that arrived before it. */
static bool created(const event_t *e, mp_str order_id) {
  summary row = {.order_id = order_id, .status = CREATED};
  if (!payload_str(e, "customer_id", &row.customer_id, "order.created")) return false;
  row.created_at = row.updated_at = e->occurred_at;
  char buf[MAX_KEY];
  projector_string_t key;
  if (!key_of(buf, "pending/", order_id, &key)) return false;
  pending p;
  bool found;
  if (!get_pending(&key, &p, &found)) return false;
  if (found) {
    row.status = p.status;
    row.updated_at = max_u64(row.updated_at, p.updated_at);
    factline_plugin_read_model_delete(&key);
  }
  if (!key_of(buf, "", order_id, &key)) return false;
  return put_summary(&key, &row);
}

/* An event of the order's own stream after `order.created`. */
static bool update(const event_t *e, const char *type, mp_str order_id) {
  stored_summary s;
  if (!load_summary(order_id, &s)) return false;
  summary *row = &s.row;
  if (!s.found) {
    /* A stream's events arrive in order, so a missing row means a lost `order.created`. */
    return fail("no summary for `%.*s`: order.created was not seen", (int)order_id.len,
                (const char *)order_id.ptr);
  }
  bool ok = true;
  if (strcmp(type, "order.item-added") == 0) {
    uint64_t quantity, unit_price;
    ok = payload_uint(e, "quantity", UINT32_MAX, &quantity, type) &&
         payload_uint(e, "unit_price", UINT64_MAX, &unit_price, type);
    if (ok) {
      row->item_count = add_sat(row->item_count, quantity);
      row->total = add_sat(row->total, mul_sat(quantity, unit_price));
    }
  } else if (strcmp(type, "order.placed") == 0) {
    ok = payload_uint(e, "total", UINT64_MAX, &row->total, type);
    row->status = climb(row->status, CONFIRMED);
  } else if (strcmp(type, "order.shipped") == 0) {
    row->status = climb(row->status, SHIPPED);
  } else { /* order.cancelled */
    ok = payload_str(e, "reason", &row->cancel_reason, type);
    row->cancelled = true;
    row->status = CANCELLED;
  }
  if (ok) {
    row->updated_at = max_u64(row->updated_at, e->occurred_at);
    ok = put_summary(&s.key, row);
  }
  projector_list_u8_free(&s.bytes);
  return ok;
}

static bool project(const event_t *e) {
  char type[32];
  if (e->event_type.len >= sizeof type) return true; /* not one of ours */
  memcpy(type, e->event_type.ptr, e->event_type.len);
  type[e->event_type.len] = '\0';
  if (strcmp(type, "payment.charged") == 0) return payment(e, type, PAID);
  if (strcmp(type, "payment.refunded") == 0) return payment(e, type, REFUNDED);
  mp_str order_id = {e->stream.ptr, e->stream.len};
  if (order_id.len >= 6 && memcmp(order_id.ptr, "order-", 6) == 0) {
    order_id.ptr += 6;
    order_id.len -= 6;
  }
  if (strcmp(type, "order.created") == 0) return created(e, order_id);
  for (size_t i = 1; i < 5; i++) {
    if (strcmp(type, EVENT_TYPES[i]) == 0) return update(e, type, order_id);
  }
  return true; /* the host delivers only EVENT_TYPES; anything else is skipped */
}

void exports_factline_plugin_projector_handler_event_types(projector_list_string_t *ret) {
  ret->len = EVENT_TYPE_COUNT;
  ret->ptr = calloc(EVENT_TYPE_COUNT, sizeof *ret->ptr);
  if (!ret->ptr) abort();
  for (size_t i = 0; i < EVENT_TYPE_COUNT; i++) projector_string_dup(&ret->ptr[i], EVENT_TYPES[i]);
}

bool exports_factline_plugin_projector_handler_project(
    exports_factline_plugin_projector_handler_list_event_t *events, failure_t *err) {
  bool ok = true;
  size_t i;
  for (i = 0; i < events->len; i++) {
    if (!project(&events->ptr[i])) {
      ok = false;
      break;
    }
  }
  if (!ok) {
    projector_string_dup(&err->message, error);
    err->event_index.is_some = true;
    err->event_index.val = (uint32_t)i;
  }
  exports_factline_plugin_projector_handler_list_event_free(events);
  return ok;
}
