/*
 * prefix-filter: keeps the records whose value starts with a configured prefix.
 *
 * Config (the `config` table of the `[[plugins]]` entry):
 *   prefix          text, required: the bytes a kept value starts with ("" keeps every value).
 *   strip           boolean, default false: remove the prefix from the values it keeps.
 *   rejected_topic  text, optional: route records that do not match to this topic instead of
 *                   dropping them (it must be a valid topic name; checked at startup).
 * Unknown keys are refused, so a typo is an error at startup rather than a setting ignored.
 *
 * A record with a null value (a Kafka tombstone) has no bytes to match: it is not dropped
 * silently but reported as a per-record error, which the broker sends to the plugin's
 * dead-letter topic with the message in the `headwater.error` header.
 *
 * Build: see README.md next to this file.
 */
#define HEADWATER_IMPLEMENTATION
#include "headwater.h"

/* Slices into the config: the SDK keeps it for the life of the instance. */
static hw_slice prefix;
static bool strip;
static hw_slice rejected_topic;

/* A topic name the broker accepts: [a-zA-Z0-9._-], 1 to 249 characters. */
static bool valid_topic(hw_slice t)
{
    if (t.len == 0 || t.len > 249) return false;
    for (uint32_t i = 0; i < t.len; i++) {
        uint8_t c = t.ptr[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

static bool prefix_init(hw_config *config)
{
    static const char *const known[] = {"prefix", "strip", "rejected_topic"};
    if (!hw_config_deny_unknown(config, known, sizeof known / sizeof known[0])) return false;
    if (!hw_config_require_text(config, "prefix", &prefix)) return false;
    strip = false;
    hw_config_bool(config, "strip", &strip);
    if (hw_config_text(config, "rejected_topic", &rejected_topic) && !valid_topic(rejected_topic)) {
        hw_buf *m = hw_config_message(config);
        hw_buf_put_str(m, "config key `rejected_topic` is not a valid topic name: \"");
        hw_buf_put_slice(m, rejected_topic);
        hw_buf_put_str(m, "\" (use 1 to 249 of a-z A-Z 0-9 . _ -)");
        return false;
    }
    if (hw_config_failed(config)) return false; /* e.g. `strip` was not a boolean */

    hw_buf line = {0};
    hw_buf_put_str(&line, "keeping records whose value starts with \"");
    hw_buf_put_slice(&line, prefix);
    hw_buf_put_str(&line, strip ? "\" (prefix stripped)" : "\"");
    if (rejected_topic.ptr) {
        hw_buf_put_str(&line, "; the others go to ");
        hw_buf_put_slice(&line, rejected_topic);
    }
    hw_log_slice(HW_LOG_INFO, hw_buf_slice(&line));
    hw_buf_free(&line);
    return true;
}

static void prefix_process(hw_batch *batch, hw_output *out)
{
    hw_record r;
    while (hw_batch_next(batch, &r)) {
        if (hw_slice_is_null(r.value)) {
            hw_output_error(out, &r, "value is null (a tombstone): no prefix to match");
        } else if (hw_slice_starts_with(r.value, prefix)) {
            if (strip)
                hw_output_keep_value(out, &r, hw_slice_of(r.value.ptr + prefix.len,
                                                          r.value.len - prefix.len));
            else
                hw_output_keep(out, &r);
        } else if (rejected_topic.ptr) {
            hw_output_route(out, &r, rejected_topic);
        }
        /* Otherwise dropped: a record is dropped by not writing it. */
    }
}

HW_PLUGIN(prefix_init, prefix_process);
