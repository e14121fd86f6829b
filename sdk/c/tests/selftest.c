/*
 * The C SDK's own tests, run inside the broker's real plugin host by tests/tests/c_plugin.rs.
 *
 * hw_init runs checks of the CBOR reader and writer, the batch reader (with the indefinite lengths
 * and extra trailing elements the broker never writes but ABI.md allows), the config lookups and
 * the allocator, and refuses its config with the lines of the failed checks; so "the module
 * loads" means "every check passed".
 *
 * hw_process is driven by each record's `action` header (argument in the `arg` header), so the
 * Rust test can reach every output path through the host: keep, value, tombstone, route, error,
 * fail, describe, add-header, dup, hog; a record without an action is dropped.
 *
 * Config: the keys below with these values (what the Rust test passes):
 *   text = "hé", int = -5, float = 2.5, whole = 3, flag = true, nested = { list = [1, 2] }
 */
#define HEADWATER_IMPLEMENTATION
#include "headwater.h"

static hw_buf failures;
static uint32_t checks, failed;

static void check(bool ok, const char *what, int line)
{
    checks++;
    if (ok) return;
    failed++;
    if (failures.len) hw_buf_put_str(&failures, "; ");
    hw_buf_put_str(&failures, "line ");
    hw_buf_put_i64(&failures, line);
    hw_buf_put_str(&failures, ": ");
    hw_buf_put_str(&failures, what);
}

#define CHECK(cond) check((cond), #cond, __LINE__)

static hw_cbor over(const uint8_t *bytes, size_t len)
{
    hw_cbor c;
    hw_cbor_init(&c, bytes, len);
    return c;
}

static hw_cbor_type peek(hw_cbor c)
{
    return hw_cbor_peek(&c);
}

#define OVER(...) over((const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

static bool bytes_are(const hw_buf *b, const uint8_t *want, size_t len)
{
    return b->len == len && memcmp(b->data, want, len) == 0;
}

#define BYTES_ARE(buf, ...)                                                                    \
    bytes_are((buf), (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

static bool str_is(hw_slice s, const char *want)
{
    return hw_slice_eq_str(s, want);
}

static void reader_scalars(void)
{
    uint64_t u = 0;
    int64_t i = 0;
    double d = 0;
    bool b = false;
    hw_cbor c;

    c = OVER(0x17);
    CHECK(hw_cbor_read_uint(&c, &u) && u == 23 && hw_cbor_at_end(&c));
    c = OVER(0x18, 0x18);
    CHECK(hw_cbor_read_uint(&c, &u) && u == 24);
    c = OVER(0x19, 0x01, 0x00);
    CHECK(hw_cbor_read_uint(&c, &u) && u == 256);
    c = OVER(0x1a, 0x00, 0x01, 0x00, 0x00);
    CHECK(hw_cbor_read_uint(&c, &u) && u == 65536);
    c = OVER(0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    CHECK(hw_cbor_read_uint(&c, &u) && u == UINT64_MAX);
    c = OVER(0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    CHECK(!hw_cbor_read_int(&c, &i) && str_is(hw_str(c.error), "integer out of range"));
    c = OVER(0x20);
    CHECK(hw_cbor_read_int(&c, &i) && i == -1);
    c = OVER(0x38, 0x63);
    CHECK(hw_cbor_read_int(&c, &i) && i == -100);
    c = OVER(0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    CHECK(hw_cbor_read_int(&c, &i) && i == INT64_MIN);
    c = OVER(0x3b, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00);
    CHECK(!hw_cbor_read_int(&c, &i));
    /* A non-shortest encoding is still valid CBOR. */
    c = OVER(0x1b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05);
    CHECK(hw_cbor_read_int(&c, &i) && i == 5);

    c = OVER(0xf9, 0x3c, 0x00);
    CHECK(hw_cbor_read_float(&c, &d) && d == 1.0);
    c = OVER(0xf9, 0xc0, 0x00);
    CHECK(hw_cbor_read_float(&c, &d) && d == -2.0);
    c = OVER(0xf9, 0x7b, 0xff);
    CHECK(hw_cbor_read_float(&c, &d) && d == 65504.0);
    c = OVER(0xf9, 0x00, 0x01);
    CHECK(hw_cbor_read_float(&c, &d) && d == 1.0 / 16777216.0);
    c = OVER(0xf9, 0x7c, 0x00);
    CHECK(hw_cbor_read_float(&c, &d) && d > 1e308);
    c = OVER(0xf9, 0x7e, 0x00);
    CHECK(hw_cbor_read_float(&c, &d) && d != d);
    c = OVER(0xfa, 0x47, 0xc3, 0x50, 0x00);
    CHECK(hw_cbor_read_float(&c, &d) && d == 100000.0);
    c = OVER(0xfb, 0x3f, 0xf1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a);
    CHECK(hw_cbor_read_float(&c, &d) && d == 1.1);
    c = OVER(0x38, 0x27);
    CHECK(hw_cbor_read_number(&c, &d) && d == -40.0);
    c = OVER(0x38, 0x27);
    CHECK(!hw_cbor_read_float(&c, &d));

    c = OVER(0xf4, 0xf5, 0xf6);
    CHECK(hw_cbor_read_bool(&c, &b) && !b && hw_cbor_read_bool(&c, &b) && b);
    CHECK(hw_cbor_read_null(&c) && hw_cbor_at_end(&c));
    CHECK(hw_cbor_peek(&c) == HW_CBOR_END);

    CHECK(peek(OVER(0xf7)) == HW_CBOR_UNDEFINED);
    CHECK(peek(OVER(0xf0)) == HW_CBOR_SIMPLE);
    CHECK(peek(OVER(0xff)) == HW_CBOR_BREAK);
    CHECK(peek(OVER(0xc1, 0x00)) == HW_CBOR_TAG);
    CHECK(peek(OVER(0x1c)) == HW_CBOR_INVALID);
    CHECK(peek(OVER(0x1f)) == HW_CBOR_INVALID);
    CHECK(peek(OVER(0x9f, 0xff)) == HW_CBOR_ARRAY);

    /* Errors are sticky and name the offset. */
    c = OVER(0x01, 0x61, 0xf6);
    CHECK(hw_cbor_read_uint(&c, &u) && !hw_cbor_read_null(&c));
    CHECK(str_is(hw_str(c.error), "expected null") && c.error_at == 1);
    c.pos += 2;
    CHECK(!hw_cbor_read_null(&c));
    c = OVER(0x19, 0x01);
    CHECK(!hw_cbor_read_uint(&c, &u) && str_is(hw_str(c.error), "unexpected end of input"));
    c = OVER(0x1c);
    CHECK(!hw_cbor_skip(&c));
}

static void reader_strings(void)
{
    hw_slice s = {0};
    hw_cbor c;

    c = OVER(0x63, 'a', 'b', 'c');
    CHECK(hw_cbor_read_text(&c, &s) && str_is(s, "abc") && s.ptr == c.start + 1);
    c = OVER(0x60);
    CHECK(hw_cbor_read_text(&c, &s) && s.ptr && s.len == 0);
    /* Several chunks are joined in scratch memory... */
    c = OVER(0x7f, 0x61, 'a', 0x62, 'b', 'c', 0xff, 0x01);
    CHECK(hw_cbor_read_text(&c, &s) && str_is(s, "abc") && c.pos == c.start + 7);
    CHECK(s.ptr < c.start || s.ptr >= c.end);
    /* ... one chunk is used in place, and no chunk is a present empty string. */
    c = OVER(0x7f, 0x63, 'a', 'b', 'c', 0xff);
    CHECK(hw_cbor_read_text(&c, &s) && str_is(s, "abc") && s.ptr == c.start + 2);
    c = OVER(0x7f, 0xff);
    CHECK(hw_cbor_read_text(&c, &s) && s.ptr && s.len == 0 && hw_cbor_at_end(&c));
    c = OVER(0x5f, 0x41, 0x01, 0x42, 0x02, 0x03, 0xff);
    CHECK(hw_cbor_read_bytes(&c, &s) && s.len == 3 && s.ptr[0] == 1 && s.ptr[2] == 3);
    c = OVER(0xf6);
    CHECK(hw_cbor_read_opt_bytes(&c, &s) && hw_slice_is_null(s));

    c = OVER(0x7f, 0x41, 'a', 0xff);
    CHECK(!hw_cbor_read_text(&c, &s) && str_is(hw_str(c.error), "a string chunk of another type"));
    c = OVER(0x7f, 0x7f, 0xff, 0xff);
    CHECK(!hw_cbor_read_text(&c, &s));
    c = OVER(0x7f, 0x61, 'a');
    CHECK(!hw_cbor_read_text(&c, &s));
    c = OVER(0x63, 'a');
    CHECK(!hw_cbor_read_text(&c, &s) && str_is(hw_str(c.error), "string longer than the input"));
    c = OVER(0x5a, 0xff, 0xff, 0xff, 0xf0, 0x00);
    CHECK(!hw_cbor_read_bytes(&c, &s));
    c = OVER(0x41, 0x00);
    CHECK(!hw_cbor_read_text(&c, &s) && str_is(hw_str(c.error), "expected text"));
    CHECK(c.pos == c.start); /* a type mismatch does not consume the item */
}

static void reader_containers(void)
{
    hw_seq seq;
    uint64_t u = 0, sum = 0;
    hw_slice k = {0};
    hw_cbor c;

    c = OVER(0x9f, 0x01, 0x02, 0xff, 0x03);
    CHECK(hw_cbor_read_array(&c, &seq));
    while (hw_cbor_next(&c, &seq) && hw_cbor_read_uint(&c, &u)) sum += u;
    CHECK(sum == 3 && hw_cbor_ok(&c) && !hw_cbor_next(&c, &seq));
    CHECK(hw_cbor_read_uint(&c, &u) && u == 3 && hw_cbor_at_end(&c));

    c = OVER(0xbf, 0x61, 'k', 0x05, 0xff);
    CHECK(hw_cbor_read_map(&c, &seq) && hw_cbor_next(&c, &seq) && hw_cbor_read_text(&c, &k));
    CHECK(str_is(k, "k") && hw_cbor_read_uint(&c, &u) && u == 5);
    CHECK(!hw_cbor_next(&c, &seq) && hw_cbor_at_end(&c));

    c = OVER(0x9f, 0x01);
    CHECK(hw_cbor_read_array(&c, &seq) && hw_cbor_next(&c, &seq) && hw_cbor_skip(&c));
    CHECK(!hw_cbor_next(&c, &seq) && !hw_cbor_ok(&c));

    /* Skipping: every kind of item, and nesting up to the limit but not beyond. */
    c = OVER(0x83, 0xa1, 0x61, 'k', 0x9f, 0xf5, 0xff, 0xc1, 0x1a, 0, 0, 0, 0, 0x7f, 0x61, 'x', 0xff,
             0xf8, 0x20);
    CHECK(hw_cbor_skip(&c) && hw_cbor_skip(&c) && hw_cbor_at_end(&c));
    uint8_t deep[64];
    for (int n = 0; n < 64; n++) deep[n] = 0x81;
    deep[63] = 0x00;
    c = over(deep + 64 - 1 - HW_CBOR_MAX_DEPTH, HW_CBOR_MAX_DEPTH + 1);
    CHECK(hw_cbor_skip(&c) && hw_cbor_at_end(&c));
    c = over(deep, sizeof deep);
    CHECK(!hw_cbor_skip(&c) && str_is(hw_str(c.error), "nested too deeply"));
    c = OVER(0xff);
    CHECK(!hw_cbor_skip(&c) && str_is(hw_str(c.error), "unexpected break"));
}

static void writer(void)
{
    hw_buf b = {0};
    const int64_t ints[] = {0, 23, 24, 255, 256, 65536, 4294967296ll, -1, -24, -25, INT64_MIN};
    for (size_t n = 0; n < sizeof ints / sizeof ints[0]; n++) hw_cbor_put_int(&b, ints[n]);
    CHECK(BYTES_ARE(&b, 0x00, 0x17, 0x18, 0x18, 0x18, 0xff, 0x19, 0x01, 0x00, 0x1a, 0x00, 0x01, 0x00,
                    0x00, 0x1b, 0, 0, 0, 1, 0, 0, 0, 0, 0x20, 0x37, 0x38, 0x18, 0x3b, 0x7f, 0xff,
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff));
    hw_cbor c = over(b.data, b.len);
    int64_t got = 0;
    bool all = true;
    for (size_t n = 0; n < sizeof ints / sizeof ints[0]; n++)
        all = all && hw_cbor_read_int(&c, &got) && got == ints[n];
    CHECK(all && hw_cbor_at_end(&c));

    hw_buf_clear(&b);
    hw_cbor_put_float(&b, 1.5);
    hw_cbor_put_array(&b, 2);
    hw_cbor_put_map(&b, 24);
    hw_cbor_put_bool(&b, true);
    hw_cbor_put_null(&b);
    hw_cbor_put_bytes(&b, "\x01", 1);
    hw_cbor_put_opt_bytes(&b, hw_null_slice());
    CHECK(BYTES_ARE(&b, 0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x82, 0xb8, 0x18, 0xf5, 0xf6, 0x41, 0x01,
                    0xf6));

    hw_buf_clear(&b);
    hw_cbor_put_text_lossy(&b, "a\xff" "b", 3);
    CHECK(BYTES_ARE(&b, 0x65, 'a', 0xef, 0xbf, 0xbd, 'b'));
    hw_buf_clear(&b);
    hw_cbor_put_text_lossy(&b, "\xc3\xa9", 2); /* é is valid: unchanged */
    CHECK(BYTES_ARE(&b, 0x62, 0xc3, 0xa9));
    hw_buf_clear(&b);
    hw_cbor_put_text_lossy(&b, "\xed\xa0\x80", 3); /* a surrogate is not UTF-8 */
    CHECK(b.len == 10 && b.data[0] == 0x69);

    hw_buf_clear(&b);
    hw_buf_put_i64(&b, INT64_MIN);
    hw_buf_put_byte(&b, ' ');
    hw_buf_put_u64(&b, 0);
    CHECK(str_is(hw_buf_slice(&b), "-9223372036854775808 0"));
    hw_buf_free(&b);
}

/* A batch with every indefinite-length form and extra elements (the broker writes neither):
 * [_ [_ [_ (_ "t1", "2"), 3, 42, 1700000000000, null, (_ h'6869', h'21'),
 *         [_ ["a", h'78'], [_ "b", null, 1]], 0],
 *       ["u", null, null, 5, h'', null, []] ],
 *    null ] */
static const uint8_t odd_batch[] = {
    0x9f,
    0x9f,
    0x9f, 0x7f, 0x62, 't', '1', 0x61, '2', 0xff, 0x03, 0x18, 0x2a,
    0x1b, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00,
    0xf6, 0x5f, 0x42, 'h', 'i', 0x41, '!', 0xff,
    0x9f, 0x82, 0x61, 'a', 0x41, 'x', 0x9f, 0x61, 'b', 0xf6, 0x01, 0xff, 0xff,
    0x00, 0xff,
    0x87, 0x61, 'u', 0xf6, 0xf6, 0x05, 0x40, 0xf6, 0x80,
    0xff,
    0xf6,
    0xff,
};

static void batch_reader(void)
{
    hw_batch batch;
    hw_record r;
    hw_header h;
    hw_header_iter it;
    hw_slice v = {0};
    hw_cbor c = over(odd_batch, sizeof odd_batch);

    CHECK(hw__batch_open(&batch, &c));
    CHECK(hw_batch_count(&batch) == 2);
    CHECK(hw_batch_next(&batch, &r));
    CHECK(r.index == 0 && str_is(r.topic, "t12"));
    CHECK(r.has_partition && r.partition == 3 && r.has_offset && r.offset == 42);
    CHECK(r.timestamp == 1700000000000ll && hw_slice_is_null(r.key) && str_is(r.value, "hi!"));
    CHECK(r.header_count == 2);
    hw_headers_begin(&r, &it);
    CHECK(hw_headers_next(&it, &h) && str_is(h.name, "a") && str_is(h.value, "x"));
    CHECK(hw_headers_next(&it, &h) && str_is(h.name, "b") && hw_slice_is_null(h.value));
    CHECK(!hw_headers_next(&it, &h));
    CHECK(hw_record_header(&r, "b", &v) && hw_slice_is_null(v));
    CHECK(!hw_record_header(&r, "zz", &v));

    /* Kept as is: the headers are copied as encoded, extra element included. */
    hw_output out;
    hw__output_begin(&out);
    hw_output_keep(&out, &r);
    hw_record first = r;

    CHECK(hw_batch_next(&batch, &r));
    CHECK(r.index == 1 && str_is(r.topic, "u") && !r.has_partition && !r.has_offset);
    CHECK(r.timestamp == 5 && r.key.ptr && r.key.len == 0 && hw_slice_is_null(r.value));
    CHECK(r.header_count == 0 && !hw_batch_next(&batch, &r));
    hw_batch_rewind(&batch);
    CHECK(hw_batch_next(&batch, &r) && r.index == 0);

    hw_output_error(&out, &first, "bad \xff");
    uint64_t packed = hw__output_finish(&out);
    const uint8_t *p = (const uint8_t *)(uintptr_t)(uint32_t)(packed >> 32);
    hw_cbor o = over(p, (uint32_t)packed);
    static const uint8_t want[] = {
        0x83, 0x81, 0x85, 0xf6, 0x1b, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, 0xf6, 0x43,
        'h', 'i', '!', 0x82, 0x82, 0x61, 'a', 0x41, 'x', 0x9f, 0x61, 'b', 0xf6, 0x01, 0xff,
        0x81, 0x82, 0x00, 0x67, 'b', 'a', 'd', ' ', 0xef, 0xbf, 0xbd,
        0xf6,
    };
    CHECK(o.end - o.start == sizeof want && memcmp(o.start, want, sizeof want) == 0);

    /* Refusals name the problem and the offset. */
    c = OVER(0x81, 0x81, 0x87, 0x01);
    CHECK(!hw__batch_open(&batch, &c) && str_is(hw_str(c.error), "record topic: expected text"));
    CHECK(c.error_at == 3);
    c = OVER(0x81, 0x81, 0x84, 0x61, 't', 0xf6, 0xf6, 0x00);
    CHECK(!hw__batch_open(&batch, &c) && str_is(hw_str(c.error), "record: missing headers"));
    c = OVER(0x81, 0x80, 0x00);
    CHECK(!hw__batch_open(&batch, &c) && str_is(hw_str(c.error), "trailing bytes after the batch"));
    c = OVER(0xa0);
    CHECK(!hw__batch_open(&batch, &c) && str_is(hw_str(c.error), "expected an array"));
    c = OVER(0x81, 0x81, 0x87, 0x61, 't', 0x1a, 0x80, 0, 0, 0, 0xf6, 0x00, 0xf6, 0xf6, 0x80);
    CHECK(!hw__batch_open(&batch, &c) && str_is(hw_str(c.error), "record partition: out of range"));
    c = OVER(0x80);
    CHECK(!hw__batch_open(&batch, &c) && str_is(hw_str(c.error), "batch: missing records"));
}

/* Every truncation of a valid batch is refused; every one-byte change is refused or still reads
 * in full. Run in the host, an out-of-bounds access or a runaway loop would fail the load. */
static void batch_sweep(void)
{
    hw_batch batch;
    hw_record r;
    hw_header h;
    hw_header_iter it;
    bool truncations_refused = true;
    for (size_t len = 0; len < sizeof odd_batch; len++) {
        hw_cbor c = over(odd_batch, len);
        truncations_refused = truncations_refused && !hw__batch_open(&batch, &c) && c.error_at <= len;
    }
    CHECK(truncations_refused);

    uint8_t copy[sizeof odd_batch];
    bool mutations_consistent = true;
    static const uint8_t values[] = {0x00, 0x17, 0x18, 0x1f, 0x3b, 0x5f, 0x7f, 0x9f, 0xbf, 0xf6, 0xff};
    for (size_t at = 0; at < sizeof odd_batch; at++) {
        for (size_t v = 0; v < sizeof values; v++) {
            memcpy(copy, odd_batch, sizeof copy);
            copy[at] = values[v];
            hw_cbor c = over(copy, sizeof copy);
            if (!hw__batch_open(&batch, &c)) continue;
            uint32_t seen = 0;
            while (hw_batch_next(&batch, &r)) {
                seen++;
                hw_headers_begin(&r, &it);
                for (uint32_t n = 0; n < r.header_count; n++)
                    mutations_consistent = mutations_consistent && hw_headers_next(&it, &h);
            }
            mutations_consistent = mutations_consistent && seen == hw_batch_count(&batch) && !batch.error;
        }
    }
    CHECK(mutations_consistent);
    hw__scratch_free_all();
}

static void output_heads(void)
{
    /* 300 records: the count needs a two-byte head, written in front of the records. */
    hw_output out;
    hw_record r = {0};
    r.value = hw_str("v");
    r.raw_headers = (const uint8_t *)"";
    hw__output_begin(&out);
    for (int n = 0; n < 300; n++) hw_output_keep(&out, &r);
    uint64_t packed = hw__output_finish(&out);
    const uint8_t *p = (const uint8_t *)(uintptr_t)(uint32_t)(packed >> 32);
    CHECK(p[0] == 0x83 && p[1] == 0x99 && p[2] == 0x01 && p[3] == 0x2c && p[4] == 0x85);
    hw_cbor c = over(p, (uint32_t)packed);
    CHECK(hw_cbor_skip(&c) && hw_cbor_at_end(&c));

    hw__output_begin(&out);
    hw_output_keep(&out, &r);
    hw_output_fail(&out, "first");
    hw_output_fail(&out, "second");
    hw_output_keep(&out, &r);
    packed = hw__output_finish(&out);
    p = (const uint8_t *)(uintptr_t)(uint32_t)(packed >> 32);
    static const uint8_t want[] = {0x83, 0x80, 0x80, 0x65, 'f', 'i', 'r', 's', 't'};
    CHECK((uint32_t)packed == sizeof want && memcmp(p, want, sizeof want) == 0);

    /* When the batch allows it, a kept record is its input index: [[7], [], null]. */
    hw__output_begin(&out);
    out.keeps_by_index = true;
    r.index = 7;
    hw_output_keep(&out, &r);
    packed = hw__output_finish(&out);
    p = (const uint8_t *)(uintptr_t)(uint32_t)(packed >> 32);
    static const uint8_t by_index[] = {0x83, 0x81, 0x07, 0x80, 0xf6};
    CHECK((uint32_t)packed == sizeof by_index && memcmp(p, by_index, sizeof by_index) == 0);
}

static void allocator(void)
{
    void *a = hw_malloc(100);
    CHECK(a && ((uintptr_t)a & 7) == 0);
    hw_free(a);
    CHECK(hw_malloc(100) == a);
    hw_free(a);

    size_t pages = __builtin_wasm_memory_size(0);
    uint8_t *big = (uint8_t *)hw_malloc(1 << 20);
    CHECK(big != NULL && __builtin_wasm_memory_size(0) > pages);
    if (big) big[(1 << 20) - 1] = 7;
    size_t grown = __builtin_wasm_memory_size(0);
    hw_free(big);
    void *again = hw_malloc(1 << 20);
    CHECK(again != NULL && __builtin_wasm_memory_size(0) == grown); /* reused, not grown */
    hw_free(again);

    uint8_t *r = (uint8_t *)hw_malloc(10);
    void *blocker = hw_malloc(10);
    for (int n = 0; r && n < 10; n++) r[n] = (uint8_t)n;
    r = (uint8_t *)hw_realloc(r, 5000);
    CHECK(r && r[0] == 0 && r[9] == 9);
    hw_free(r);
    hw_free(blocker);

    uint8_t *z = (uint8_t *)hw_calloc(64, 4);
    bool zero = z != NULL;
    for (int n = 0; z && n < 256; n++) zero = zero && z[n] == 0;
    CHECK(zero);
    hw_free(z);
    CHECK(hw_malloc((size_t)0x80000000u) == NULL);
    CHECK(hw_calloc((size_t)1 << 20, (size_t)1 << 20) == NULL);

    hw_slice dup = hw_slice_dup(hw_str("abc"));
    CHECK(str_is(dup, "abc"));
    hw_free((void *)dup.ptr);

    uint8_t buf[20];
    memset(buf, 'x', sizeof buf);
    memmove(buf + 2, buf, 10);
    memcpy(buf, "0123456789abcdef", 16);
    memmove(buf + 1, buf, 16);
    CHECK(memcmp(buf, "00123456789abcdef", 17) == 0 && buf[17] == 'x');
}

static void slices(void)
{
    CHECK(!hw_slice_starts_with(hw_null_slice(), hw_str("")));
    CHECK(hw_slice_starts_with(hw_str("abc"), hw_str("")));
    CHECK(hw_slice_starts_with(hw_str("abc"), hw_str("ab")));
    CHECK(!hw_slice_starts_with(hw_str("ab"), hw_str("abc")));
    CHECK(hw_slice_eq(hw_null_slice(), hw_null_slice()));
    CHECK(!hw_slice_eq(hw_null_slice(), hw_str("")));
}

/* A config lookup on a copy, so a deliberate failure does not refuse the real config. */
static hw_config probe_of(const hw_config *config)
{
    hw_config probe = *config;
    probe.failed = false;
    probe.message.data = NULL;
    probe.message.len = probe.message.cap = 0;
    probe.message.oom = false;
    return probe;
}

static void config_lookups(hw_config *config)
{
    hw_slice s = {0};
    int64_t i = 0;
    double d = 0;
    bool b = false;
    hw_cbor v;
    hw_seq seq;

    CHECK(hw_config_text(config, "text", &s) && str_is(s, "h\xc3\xa9"));
    CHECK(hw_config_int(config, "int", &i) && i == -5);
    CHECK(hw_config_number(config, "float", &d) && d == 2.5);
    CHECK(hw_config_number(config, "whole", &d) && d == 3.0);
    CHECK(hw_config_bool(config, "flag", &b) && b);
    CHECK(!hw_config_text(config, "absent", &s) && hw_slice_is_null(s) && !hw_config_failed(config));
    CHECK(hw_config_has(config, "nested") && !hw_config_has(config, "list"));
    CHECK(hw_config_get(config, "nested", &v) && hw_cbor_read_map(&v, &seq));
    CHECK(hw_cbor_next(&v, &seq) && hw_cbor_read_text(&v, &s) && str_is(s, "list"));
    hw_seq list;
    CHECK(hw_cbor_read_array(&v, &list) && hw_cbor_next(&v, &list) && hw_cbor_skip(&v));
    CHECK(hw_cbor_next(&v, &list) && hw_cbor_skip(&v) && !hw_cbor_next(&v, &list));
    CHECK(!hw_cbor_next(&v, &seq) && hw_cbor_ok(&v));
    static const char *const all[] = {"text", "int", "float", "whole", "flag", "nested"};
    CHECK(hw_config_deny_unknown(config, all, 6));

    hw_config p = probe_of(config);
    CHECK(!hw_config_int(&p, "text", &i) && hw_config_failed(&p));
    CHECK(str_is(hw_buf_slice(&p.message), "config key `text` must be an integer, found text"));
    CHECK(!hw_config_bool(&p, "int", &b)); /* the first message is kept */
    CHECK(str_is(hw_buf_slice(&p.message), "config key `text` must be an integer, found text"));
    hw_buf_free(&p.message);

    p = probe_of(config);
    CHECK(!hw_config_number(&p, "nested", &d));
    CHECK(str_is(hw_buf_slice(&p.message), "config key `nested` must be a number, found a table"));
    hw_buf_free(&p.message);

    p = probe_of(config);
    CHECK(!hw_config_require_int(&p, "min", &i));
    CHECK(str_is(hw_buf_slice(&p.message), "config key `min` is missing"));
    hw_buf_free(&p.message);

    /* The broker writes the keys in sorted order, so `flag` is the first unknown one. */
    p = probe_of(config);
    static const char *const some[] = {"text", "int"};
    CHECK(!hw_config_deny_unknown(&p, some, 2));
    CHECK(str_is(hw_buf_slice(&p.message), "unknown config key `flag` (known keys: text, int)"));
    hw_buf_free(&p.message);

    p = probe_of(config);
    CHECK(!hw_config_deny_unknown(&p, NULL, 0));
    CHECK(str_is(hw_buf_slice(&p.message), "unknown config key `flag` (this plugin takes no config)"));
    hw_buf_free(&p.message);
}

static bool selftest_init(hw_config *config)
{
    hw_buf_clear(&failures);
    checks = failed = 0;
    reader_scalars();
    reader_strings();
    reader_containers();
    writer();
    batch_reader();
    batch_sweep();
    output_heads();
    allocator();
    slices();
    config_lookups(config);
    if (failed == 0) {
        hw_buf line = {0};
        hw_buf_put_str(&line, "C SDK selftest: all ");
        hw_buf_put_u64(&line, checks);
        hw_buf_put_str(&line, " checks passed");
        hw_log_slice(HW_LOG_INFO, hw_buf_slice(&line));
        hw_buf_free(&line);
        return true;
    }
    hw_buf *m = hw_config_message(config);
    hw_buf_clear(m);
    hw_buf_put_str(m, "C SDK selftest: ");
    hw_buf_put_u64(m, failed);
    hw_buf_put_str(m, " of ");
    hw_buf_put_u64(m, checks);
    hw_buf_put_str(m, " checks failed: ");
    hw_buf_put_slice(m, hw_buf_slice(&failures));
    return false;
}

/* "topic=t partition=p offset=o ts=n key=k headers=name:value,..." ("-" for null). */
static void describe(hw_buf *b, const hw_record *r)
{
    hw_header_iter it;
    hw_header h;
    hw_buf_put_str(b, "topic=");
    hw_buf_put_slice(b, r->topic);
    hw_buf_put_str(b, " partition=");
    if (r->has_partition) hw_buf_put_i64(b, r->partition);
    else hw_buf_put_str(b, "-");
    hw_buf_put_str(b, " offset=");
    if (r->has_offset) hw_buf_put_i64(b, r->offset);
    else hw_buf_put_str(b, "-");
    hw_buf_put_str(b, " ts=");
    hw_buf_put_i64(b, r->timestamp);
    hw_buf_put_str(b, " key=");
    if (r->key.ptr) hw_buf_put_slice(b, r->key);
    else hw_buf_put_str(b, "-");
    hw_buf_put_str(b, " headers=");
    hw_headers_begin(r, &it);
    for (uint32_t n = 0; hw_headers_next(&it, &h); n++) {
        if (n) hw_buf_put_str(b, ",");
        hw_buf_put_slice(b, h.name);
        hw_buf_put_str(b, ":");
        if (h.value.ptr) hw_buf_put_slice(b, h.value);
        else hw_buf_put_str(b, "-");
    }
}

/* Allocates 1 MiB blocks until the memory cap stops it, then frees them: the cap must surface as
 * NULL, not as a trap. */
static uint32_t hog(void)
{
    void *head = NULL;
    uint32_t mib = 0;
    for (;;) {
        void **block = (void **)hw_malloc(1 << 20);
        if (!block) break;
        *block = head;
        head = block;
        mib++;
    }
    while (head) {
        void *next = *(void **)head;
        hw_free(head);
        head = next;
    }
    return mib;
}

static void selftest_process(hw_batch *batch, hw_output *out)
{
    hw_record r;
    hw_slice action, arg;
    static hw_buf text;
    while (hw_batch_next(batch, &r)) {
        hw_record_header(&r, "arg", &arg);
        if (!hw_record_header(&r, "action", &action)) continue;
        if (str_is(action, "keep")) {
            hw_output_keep(out, &r);
        } else if (str_is(action, "value")) {
            hw_output_keep_value(out, &r, arg);
        } else if (str_is(action, "tombstone")) {
            hw_output_keep_value(out, &r, hw_null_slice());
        } else if (str_is(action, "route")) {
            hw_output_route(out, &r, arg);
        } else if (str_is(action, "error")) {
            hw_output_error_at(out, r.index, arg.ptr, arg.len);
        } else if (str_is(action, "fail")) {
            hw_output_fail_n(out, arg.ptr, arg.len);
        } else if (str_is(action, "describe")) {
            hw_buf_clear(&text);
            describe(&text, &r);
            hw_output_keep_value(out, &r, hw_buf_slice(&text));
        } else if (str_is(action, "add-header")) {
            hw_header extra = {hw_str("added"), arg};
            hw_out_record o = hw_out_from(&r);
            o.key = hw_str("new-key");
            o.timestamp = r.timestamp + 1;
            o.headers = &extra;
            o.header_count = 1;
            hw_output_record(out, &o);
        } else if (str_is(action, "dup")) {
            hw_output_keep(out, &r);
            hw_output_keep(out, &r);
        } else if (str_is(action, "hog")) {
            hw_buf_clear(&text);
            hw_buf_put_str(&text, "allocation failed after ");
            hw_buf_put_u64(&text, hog());
            hw_buf_put_str(&text, " MiB");
            hw_output_error_at(out, r.index, text.data, text.len);
        } else {
            hw_output_error(out, &r, "unknown action");
        }
    }
}

HW_PLUGIN(selftest_init, selftest_process);
