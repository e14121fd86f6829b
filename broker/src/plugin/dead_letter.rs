//! Records a plugin failed on, on their way to the plugin's dead-letter topic.
//!
//! A dead letter is the input record unchanged (timestamp, key, value, headers) plus headers that
//! say what went wrong, so an operator can inspect it and replay it once the plugin is fixed.
//! Nothing a plugin fails on is dropped.

use bytes::Bytes;

use crate::log::NewRecord;

/// Why the record failed: the plugin's per-record message, or the batch failure (trap, timeout,
/// bad output, "plugin disabled").
pub const HEADER_ERROR: &str = "headwater.error";
/// The `name` of the plugin that failed.
pub const HEADER_PLUGIN: &str = "headwater.plugin";
/// The topic the record was in (or was being written to) when the plugin ran.
pub const HEADER_SOURCE_TOPIC: &str = "headwater.source.topic";
/// Its partition, in decimal, when known (upstream plugins).
pub const HEADER_SOURCE_PARTITION: &str = "headwater.source.partition";
/// Its offset, in decimal, when known (upstream plugins).
pub const HEADER_SOURCE_OFFSET: &str = "headwater.source.offset";

/// Where a failed record came from.
pub(crate) struct Origin<'a> {
    pub plugin: &'a str,
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
}

/// The dead letter for `record`.
pub(crate) fn dead_letter(mut record: NewRecord, origin: &Origin<'_>, error: &str) -> NewRecord {
    let text = |s: &str| Some(Bytes::copy_from_slice(s.as_bytes()));
    record.headers.push((HEADER_ERROR.into(), text(error)));
    record
        .headers
        .push((HEADER_PLUGIN.into(), text(origin.plugin)));
    record
        .headers
        .push((HEADER_SOURCE_TOPIC.into(), text(origin.topic)));
    if let Some(p) = origin.partition {
        record
            .headers
            .push((HEADER_SOURCE_PARTITION.into(), text(&p.to_string())));
    }
    if let Some(o) = origin.offset {
        record
            .headers
            .push((HEADER_SOURCE_OFFSET.into(), text(&o.to_string())));
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_record_and_adds_the_story() {
        let record = NewRecord {
            timestamp: 9,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![("mine".into(), None)],
        };
        let origin = Origin {
            plugin: "range",
            topic: "sensors",
            partition: Some(2),
            offset: Some(41),
        };
        let dl = dead_letter(record, &origin, "timed out");
        assert_eq!((dl.timestamp, dl.key.as_deref()), (9, Some(&b"k"[..])));
        let h: Vec<(&str, Option<&[u8]>)> = dl
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref()))
            .collect();
        assert_eq!(
            h,
            vec![
                ("mine", None),
                (HEADER_ERROR, Some(&b"timed out"[..])),
                (HEADER_PLUGIN, Some(&b"range"[..])),
                (HEADER_SOURCE_TOPIC, Some(&b"sensors"[..])),
                (HEADER_SOURCE_PARTITION, Some(&b"2"[..])),
                (HEADER_SOURCE_OFFSET, Some(&b"41"[..])),
            ]
        );
    }
}
