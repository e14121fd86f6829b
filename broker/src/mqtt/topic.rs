//! MQTT topic names and topic filters (MQTT 3.1.1 §4.7): validation and matching.
//!
//! Pure string functions, shared by publish handling (names), SUBSCRIBE (filters), the route
//! table (filter overlap) and delivery (matching). Levels are separated by `/`; `+` matches
//! exactly one level, `#` (last level only) matches the parent level and everything below it.
//! Topics starting with `$` (like `$SYS/...`) are not matched by a filter whose first level is a
//! wildcard, so `#` subscribers do not see broker-internal topics.

/// Longest topic name or filter: MQTT strings carry a 16-bit length.
pub const MAX_TOPIC_BYTES: usize = 65_535;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is {0} bytes long, more than 65535")]
    TooLong(usize),
    #[error("topic contains U+0000")]
    NullCharacter,
    #[error("topic name {0:?} contains a wildcard ('+' or '#')")]
    WildcardInName(String),
    #[error("topic filter {0:?}: '#' must be the last level and stand alone")]
    MisplacedMultiLevel(String),
    #[error("topic filter {0:?}: '+' must occupy a whole level")]
    MisplacedSingleLevel(String),
    #[error(
        "shared subscription: not $share/{{name}}/{{filter}} with a name free of '/', '+', '#'"
    )]
    BadShare,
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong(s.len()));
    }
    if s.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// A topic name a client may PUBLISH to: non-empty, no wildcards, no U+0000.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    check_common(name)?;
    if name.contains(['+', '#']) {
        return Err(TopicError::WildcardInName(name.to_string()));
    }
    Ok(())
}

/// A topic filter a client may SUBSCRIBE to: `+` only as a whole level, `#` only as the whole
/// last level.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !last) {
            return Err(TopicError::MisplacedMultiLevel(filter.to_string()));
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevel(filter.to_string()));
        }
    }
    Ok(())
}

/// Whether the filter's first level is a wildcard (it then never matches `$` topics).
pub fn starts_with_wildcard(filter: &str) -> bool {
    filter.starts_with('+') || filter.starts_with('#')
}

/// Whether `topic` (a valid name) matches `filter` (a valid filter).
pub fn matches(topic: &str, filter: &str) -> bool {
    if topic.starts_with('$') && starts_with_wildcard(filter) {
        return false;
    }
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match levels.next() {
            Some(level) if f == "+" || f == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

/// Whether some topic name matches both filters (both valid). Used to find the routed log
/// topics a subscription can read from: it may say "yes" only if a common topic exists, and
/// must never say "no" when one does.
pub fn overlap(a: &str, b: &str) -> bool {
    let dollar = |f: &str| f.starts_with('$');
    if (starts_with_wildcard(a) && dollar(b)) || (starts_with_wildcard(b) && dollar(a)) {
        return false;
    }
    let mut left = a.split('/');
    let mut right = b.split('/');
    loop {
        match (left.next(), right.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(x), Some(y)) => {
                if x != "+" && y != "+" && x != y {
                    return false;
                }
            }
        }
    }
}

/// The first level of a topic or filter.
pub fn first_level(topic: &str) -> &str {
    topic.split('/').next().unwrap_or(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_examples() {
        assert!(matches("sport/tennis/player1", "sport/tennis/player1/#"));
        assert!(matches(
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/#"
        ));
        assert!(matches("sport", "sport/#"));
        assert!(matches("sport/tennis", "sport/+"));
        assert!(!matches("sport", "sport/+"));
        assert!(matches("sport/", "sport/+"));
        assert!(matches("/finance", "+/+"));
        assert!(matches("/finance", "/+"));
        assert!(!matches("/finance", "+"));
        assert!(matches("a", "#"));
        assert!(!matches("$SYS/x", "#"));
        assert!(!matches("$SYS/x", "+/x"));
        assert!(matches("$SYS/x", "$SYS/#"));
        assert!(matches("$SYS/x", "$SYS/+"));
        for good in ["#", "+", "+/+", "a/#", "/", "a//b", "+/tennis/#", "$SYS/#"] {
            assert_eq!(validate_filter(good), Ok(()), "{good}");
        }
        for bad in ["", "a#", "a/#/b", "#/", "a+", "+a/b", "a/b+", "x\0"] {
            assert!(validate_filter(bad).is_err(), "{bad:?}");
        }
        assert!(validate_topic_name("a/+").is_err());
        assert!(validate_topic_name("a/#").is_err());
        assert!(validate_topic_name("").is_err());
        assert_eq!(validate_topic_name("a//b/"), Ok(()));
    }

    #[test]
    fn overlap_examples() {
        assert!(overlap("a/#", "a"));
        assert!(overlap("a/+", "+/b"));
        assert!(overlap("#", "x/y/z"));
        assert!(!overlap("a/b", "a/c"));
        assert!(!overlap("a/b", "a/b/c"));
        assert!(!overlap("+/x", "$SYS/x"));
        assert!(overlap("$SYS/#", "$SYS/x"));
    }

    /// An independent, recursive statement of the matching rules, to check [`matches`] against.
    fn reference(topic: &[&str], filter: &[&str], first: bool) -> bool {
        if first && topic.first().is_some_and(|t| t.starts_with('$')) {
            if let Some(&f) = filter.first() {
                if f == "+" || f == "#" {
                    return false;
                }
            }
        }
        match (filter.first(), topic.first()) {
            (Some(&"#"), _) => true,
            (None, None) => true,
            (Some(&f), Some(&t)) if f == "+" || f == t => {
                reference(&topic[1..], &filter[1..], false)
            }
            _ => false,
        }
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("a".to_string()),
            Just("b".to_string()),
            Just("$s".to_string()),
            "[a-c]{1,3}",
        ]
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5)
            .prop_map(|l| l.join("/"))
            .prop_filter("non-empty", |t| !t.is_empty())
    }

    fn filter() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop_oneof![level(), Just("+".to_string())], 1..5),
            any::<bool>(),
        )
            .prop_map(|(mut l, hash)| {
                if hash {
                    l.push("#".to_string());
                }
                l.join("/")
            })
            .prop_filter("non-empty", |f| !f.is_empty())
    }

    /// A topic matching `filter`: wildcards replaced by concrete levels.
    fn witness(filter: &str, fill: &str) -> String {
        let mut out: Vec<&str> = Vec::new();
        for (i, l) in filter.split('/').enumerate() {
            match l {
                "+" if i == 0 => out.push("w"),
                "+" => out.push(fill),
                "#" => {
                    if out.is_empty() {
                        out.push("w");
                    }
                }
                l => out.push(l),
            }
        }
        out.join("/")
    }

    proptest! {
        #[test]
        fn generated_filters_are_valid_and_match_their_witness(f in filter(), fill in "[a-c]{0,2}") {
            prop_assert_eq!(validate_filter(&f), Ok(()));
            let t = witness(&f, &fill);
            prop_assume!(validate_topic_name(&t).is_ok());
            prop_assert!(matches(&t, &f), "{} should match {}", t, f);
        }

        #[test]
        fn matches_agrees_with_reference(t in topic(), f in filter()) {
            let tl: Vec<&str> = t.split('/').collect();
            let fl: Vec<&str> = f.split('/').collect();
            prop_assert_eq!(matches(&t, &f), reference(&tl, &fl, true), "topic {} filter {}", t, f);
        }

        #[test]
        fn a_topic_is_a_filter_matching_itself_only(t in topic(), u in topic()) {
            prop_assert_eq!(validate_filter(&t), Ok(()));
            prop_assert!(matches(&t, &t));
            prop_assert_eq!(matches(&u, &t), u == t);
        }

        #[test]
        fn validation_agrees_with_the_level_rules(s in "[a+#/]{0,8}") {
            let levels: Vec<&str> = s.split('/').collect();
            let n = levels.len();
            let ok = !s.is_empty() && levels.iter().enumerate().all(|(i, l)| {
                (!l.contains('#') || (*l == "#" && i == n - 1)) && (!l.contains('+') || *l == "+")
            });
            prop_assert_eq!(validate_filter(&s).is_ok(), ok, "{}", s);
            prop_assert_eq!(
                validate_topic_name(&s).is_ok(),
                !s.is_empty() && !s.contains('+') && !s.contains('#')
            );
        }

        #[test]
        fn overlap_is_sound_and_symmetric(t in topic(), a in filter(), b in filter()) {
            prop_assert_eq!(overlap(&a, &b), overlap(&b, &a));
            if matches(&t, &a) && matches(&t, &b) {
                prop_assert!(overlap(&a, &b), "{} matches {} and {}", t, a, b);
            }
        }

        #[test]
        fn overlap_has_a_witness(a in filter(), b in filter()) {
            if overlap(&a, &b) {
                // Build a common topic level by level: literals win over wildcards.
                let al: Vec<&str> = a.split('/').collect();
                let bl: Vec<&str> = b.split('/').collect();
                let mut out = Vec::new();
                let mut i = 0;
                loop {
                    match (al.get(i), bl.get(i)) {
                        (Some(&"#"), None) | (None, Some(&"#")) | (None, None) => break,
                        (Some(&"#"), Some(&"#")) => break,
                        (Some(&"#"), Some(_)) | (Some(_), Some(&"#")) => {
                            // The other filter continues: copy its remaining levels.
                            let rest = if al[i] == "#" { &bl[i..] } else { &al[i..] };
                            for l in rest {
                                match *l {
                                    "#" => break,
                                    "+" => out.push("w"),
                                    l => out.push(l),
                                }
                            }
                            break;
                        }
                        (Some(&x), Some(&y)) => out.push(if x == "+" { if y == "+" { "w" } else { y } } else { x }),
                        _ => unreachable!("overlap said yes for unequal lengths"),
                    }
                    i += 1;
                }
                if out.is_empty() {
                    out.push("w");
                }
                let t = out.join("/");
                prop_assert!(matches(&t, &a) && matches(&t, &b), "witness {} for {} and {}", t, a, b);
            }
        }
    }
}
