//! Mosquitto ACL files and the checks made with them. No I/O.
//!
//! # File format (Mosquitto's `acl_file`)
//!
//! - `user <name>`: the following `topic` lines belong to that user (the rest of the line,
//!   trimmed, is the name).
//! - `topic [read|write|readwrite|deny] <filter>`: a grant (or denial) for the current user;
//!   lines before any `user` line are for anonymous clients. Without an access word the
//!   access is `readwrite` (and a one-word `topic read` is the topic named "read", as in
//!   Mosquitto).
//! - `pattern [read|write|readwrite|deny] <filter>`: for every client, with a level that is
//!   exactly `%c` standing for its client id and `%u` for its username (whole levels only, as
//!   Mosquitto documents; a pattern with `%u` does not apply to clients without a username).
//! - `#` starts a comment line; blank lines are skipped. Anything else, a bad access word or
//!   an invalid filter stops the broker at startup with the line number.
//!
//! # Semantics (Mosquitto 2.0)
//!
//! Once there is an ACL file, what is not granted is denied, and a matching `deny` wins over
//! any grant. The rules of a client are its user's block (the anonymous block if it has no
//! username; none if its username has no block) plus every pattern. A client whose username or
//! client id contains `+` or `#` gets no pattern grants (it could otherwise widen them), as in
//! Mosquitto. One difference, on the strict side: Mosquitto checks a user's own lines before
//! the patterns, so there a user grant beats a pattern `deny`; here a `deny` from either wins.
//!
//! - PUBLISH (and a will) needs `write` on the topic.
//! - Each message delivered needs `read` on its topic: a `#` subscriber only gets what it
//!   may read.
//! - SUBSCRIBE: Mosquitto 2.0's file ACL accepts every subscription and filters only at
//!   delivery. Headwater filters at delivery the same way, and also refuses (SUBACK failure) a
//!   filter that can never deliver anything: one no `read` grant overlaps, or one a `deny` rule
//!   covers entirely (every topic it matches is denied). So `#` with `topic read sensors/#` is
//!   accepted and delivers only `sensors/...`, as in Mosquitto.
//!
//! Topics starting with `$` are matched by a rule only if the rule's first level is not a
//! wildcard, as for subscriptions.

use std::collections::HashMap;
use std::sync::Arc;

use super::super::topic;

/// What a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn parse(word: &str) -> Option<Access> {
        Some(match word {
            "read" => Access::Read,
            "write" => Access::Write,
            "readwrite" => Access::ReadWrite,
            "deny" => Access::Deny,
            _ => return None,
        })
    }

    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// One level of a rule's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Plus,
    Hash,
    /// `%c` in a pattern.
    ClientId,
    /// `%u` in a pattern.
    Username,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    levels: Vec<Level>,
}

impl Rule {
    fn uses_username(&self) -> bool {
        self.levels.contains(&Level::Username)
    }

    fn first_is_wildcard(&self) -> bool {
        matches!(self.levels.first(), Some(Level::Plus | Level::Hash))
    }
}

/// A malformed line of an ACL file (1-based line number).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// A parsed ACL file. Immutable once loaded; share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct AclFile {
    anonymous: Arc<[Rule]>,
    users: HashMap<String, Arc<[Rule]>>,
    patterns: Arc<[Rule]>,
}

impl AclFile {
    /// Parses a whole file; the first malformed line is the error.
    pub fn parse(text: &str) -> Result<AclFile, LineError> {
        let mut anonymous = Vec::new();
        let mut users: HashMap<String, Vec<Rule>> = HashMap::new();
        let mut patterns = Vec::new();
        let mut user: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |reason: String| LineError { line, reason };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(trimmed);
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err("`user` without a name".into()));
                    }
                    users.entry(rest.to_string()).or_default();
                    user = Some(rest.to_string());
                }
                "topic" | "pattern" => {
                    let pattern = keyword == "pattern";
                    let rule = parse_rule(rest, pattern).map_err(err)?;
                    match (&user, pattern) {
                        (_, true) => patterns.push(rule),
                        (Some(u), false) => users.entry(u.clone()).or_default().push(rule),
                        (None, false) => anonymous.push(rule),
                    }
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword {other:?} (expected user, topic or pattern)"
                    )))
                }
            }
        }
        Ok(AclFile {
            anonymous: anonymous.into(),
            users: users.into_iter().map(|(u, r)| (u, r.into())).collect(),
            patterns: patterns.into(),
        })
    }

    /// The rules of one connection.
    pub fn for_client(&self, client_id: &str, username: Option<&str>) -> ClientAcl {
        let own = match username {
            None => self.anonymous.clone(),
            Some(u) => self.users.get(u).cloned().unwrap_or_else(|| Arc::from([])),
        };
        let dangerous = |s: &str| s.contains(['+', '#']);
        ClientAcl {
            own,
            patterns: self.patterns.clone(),
            client_id: client_id.to_string(),
            username: username.map(str::to_string),
            pattern_grants: !dangerous(client_id) && !username.is_some_and(dangerous),
        }
    }
}

/// The first whitespace-separated word and the trimmed rest.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (s, ""),
    }
}

fn parse_rule(rest: &str, pattern: bool) -> Result<Rule, String> {
    if rest.is_empty() {
        return Err("empty topic".into());
    }
    let (word, after) = split_word(rest);
    let (access, filter) = if after.is_empty() {
        (Access::ReadWrite, word)
    } else {
        let access = Access::parse(word).ok_or_else(|| {
            format!("invalid access {word:?} (expected read, write, readwrite or deny)")
        })?;
        (access, after)
    };
    topic::validate_filter(filter).map_err(|e| format!("invalid ACL topic: {e}"))?;
    let levels = filter
        .split('/')
        .map(|l| match l {
            "+" => Level::Plus,
            "#" => Level::Hash,
            "%c" if pattern => Level::ClientId,
            "%u" if pattern => Level::Username,
            l => Level::Literal(l.to_string()),
        })
        .collect();
    Ok(Rule { access, levels })
}

/// One connection's rules, with its client id and username to fill in patterns.
#[derive(Debug, Clone)]
pub struct ClientAcl {
    /// The user's block (or the anonymous one).
    own: Arc<[Rule]>,
    patterns: Arc<[Rule]>,
    client_id: String,
    username: Option<String>,
    /// False when the client id or username contains a wildcard: patterns only deny then.
    pattern_grants: bool,
}

/// What a check asks for.
#[derive(Clone, Copy)]
enum Ask<'a> {
    Write(&'a str),
    Read(&'a str),
    Subscribe(&'a str),
}

impl ClientAcl {
    pub fn may_publish(&self, topic: &str) -> bool {
        self.check(Ask::Write(topic))
    }

    pub fn may_read(&self, topic: &str) -> bool {
        self.check(Ask::Read(topic))
    }

    /// See the module docs: some read grant overlaps the filter and no deny covers it.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        self.check(Ask::Subscribe(filter))
    }

    /// Whether every topic `filter` matches may be read: a read grant covers it and no deny
    /// overlaps it. Messages sent without the per-message check (retained ones) need this.
    pub fn may_read_all(&self, filter: &str) -> bool {
        let mut granted = false;
        for (rule, grants) in self.rules() {
            if rule.access == Access::Deny {
                if self.overlaps(rule, filter) {
                    return false;
                }
            } else if grants && rule.access.reads() && self.covers(rule, filter) {
                granted = true;
            }
        }
        granted
    }

    /// Every applicable rule, with whether its grants count.
    fn rules(&self) -> impl Iterator<Item = (&Rule, bool)> {
        let has_user = self.username.is_some();
        self.own.iter().map(|r| (r, true)).chain(
            self.patterns
                .iter()
                .filter(move |r| has_user || !r.uses_username())
                .map(|r| (r, self.pattern_grants)),
        )
    }

    fn check(&self, ask: Ask<'_>) -> bool {
        let mut granted = false;
        for (rule, grants) in self.rules() {
            let (hit, allows) = match ask {
                Ask::Write(t) => (self.matches(rule, t), rule.access.writes()),
                Ask::Read(t) => (self.matches(rule, t), rule.access.reads()),
                Ask::Subscribe(f) if rule.access == Access::Deny => (self.covers(rule, f), false),
                Ask::Subscribe(f) => (self.overlaps(rule, f), rule.access.reads()),
            };
            if !hit {
                continue;
            }
            if rule.access == Access::Deny {
                return false;
            }
            granted |= grants && allows;
        }
        granted
    }

    /// A level of a rule against one concrete level: `None` for a wildcard.
    fn literal<'r>(&'r self, level: &'r Level) -> Option<&'r str> {
        match level {
            Level::Literal(s) => Some(s),
            Level::ClientId => Some(&self.client_id),
            // Rules with %u are skipped for clients without a username; this never matches.
            Level::Username => Some(self.username.as_deref().unwrap_or("\0")),
            Level::Plus | Level::Hash => None,
        }
    }

    /// Whether the rule matches a topic name.
    fn matches(&self, rule: &Rule, name: &str) -> bool {
        if name.starts_with('$') && rule.first_is_wildcard() {
            return false;
        }
        let mut levels = name.split('/');
        for l in &rule.levels {
            if *l == Level::Hash {
                return true;
            }
            let Some(t) = levels.next() else {
                return false;
            };
            if let Some(lit) = self.literal(l) {
                if lit != t {
                    return false;
                }
            }
        }
        levels.next().is_none()
    }

    /// Whether every topic the (valid) filter matches is matched by the rule.
    fn covers(&self, rule: &Rule, filter: &str) -> bool {
        if filter.starts_with('$') && rule.first_is_wildcard() {
            return false;
        }
        let sub: Vec<&str> = filter.split('/').collect();
        for (i, l) in rule.levels.iter().enumerate() {
            if *l == Level::Hash {
                return true;
            }
            let Some(&s) = sub.get(i) else {
                return false;
            };
            match self.literal(l) {
                // `+` covers one level of anything, not several.
                None => {
                    if s == "#" {
                        return false;
                    }
                }
                Some(lit) => {
                    if lit != s {
                        return false;
                    }
                }
            }
        }
        sub.len() == rule.levels.len()
    }

    /// Whether some topic matches both the rule and the (valid) filter.
    fn overlaps(&self, rule: &Rule, filter: &str) -> bool {
        let sub_wild = topic::starts_with_wildcard(filter);
        let rule_dollar = matches!(
            rule.levels.first().map(|l| self.literal(l)),
            Some(Some(s)) if s.starts_with('$')
        );
        if (rule.first_is_wildcard() && filter.starts_with('$')) || (sub_wild && rule_dollar) {
            return false;
        }
        let mut sub = filter.split('/');
        let mut levels = rule.levels.iter();
        loop {
            match (levels.next(), sub.next()) {
                (Some(Level::Hash), _) | (_, Some("#")) | (None, None) => return true,
                (None, Some(_)) | (Some(_), None) => return false,
                (Some(l), Some(s)) => {
                    if let Some(lit) = self.literal(l) {
                        if s != "+" && lit != s {
                            return false;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(text: &str) -> AclFile {
        AclFile::parse(text).unwrap()
    }

    #[test]
    fn parses_blocks_access_words_and_comments() {
        let file = acl("# anonymous\n\
             topic read public/#\n\
             \n\
             user alice\n\
             topic sensors/alice/#\n\
             topic write  cmd/+  \n\
             user bob smith\n\
             topic read\n\
             pattern deny secret/%c\n");
        let anon = file.for_client("c", None);
        assert!(anon.may_read("public/x"));
        assert!(!anon.may_publish("public/x"));
        assert!(!anon.may_read("sensors/alice/t"));
        let alice = file.for_client("c", Some("alice"));
        assert!(alice.may_read("sensors/alice/t") && alice.may_publish("sensors/alice/t"));
        assert!(alice.may_publish("cmd/x") && !alice.may_read("cmd/x"));
        assert!(
            !alice.may_read("public/x"),
            "the anonymous block is not alice's"
        );
        // A one-word rule is a topic with readwrite access, as in Mosquitto.
        let bob = file.for_client("c", Some("bob smith"));
        assert!(bob.may_read("read") && bob.may_publish("read"));
        assert!(!file.for_client("c", Some("carol")).may_read("read"));
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, &str)] = &[
            ("topic", "empty topic"),
            ("topic sometimes a/b", "invalid access \"sometimes\""),
            ("topic read a/#/b", "invalid ACL topic"),
            ("topic read a+", "invalid ACL topic"),
            ("user", "without a name"),
            ("allow a/b", "unknown keyword \"allow\""),
            ("pattern", "empty topic"),
        ];
        for (bad, reason) in cases {
            let text = format!("# c\ntopic read ok/#\n{bad}\n");
            let e = AclFile::parse(&text)
                .err()
                .unwrap_or_else(|| panic!("{bad} parsed"));
            assert_eq!(e.line, 3, "{bad}");
            assert!(e.reason.contains(reason), "{bad}: {}", e.reason);
        }
    }

    #[test]
    fn patterns_substitute_whole_levels() {
        let file = acl("pattern readwrite devices/%c/#\n\
             pattern read users/%u/inbox\n\
             pattern write logs/dev_%c\n");
        let c = file.for_client("d1", Some("ann"));
        assert!(c.may_publish("devices/d1/temp") && c.may_read("devices/d1"));
        assert!(!c.may_publish("devices/d2/temp"));
        assert!(c.may_read("users/ann/inbox") && !c.may_read("users/bob/inbox"));
        // `%c` inside a level is literal text.
        assert!(!c.may_publish("logs/dev_d1") && c.may_publish("logs/dev_%c"));
        // No username: %u patterns do not apply; %c ones do.
        let anon = file.for_client("d1", None);
        assert!(!anon.may_read("users//inbox") && anon.may_publish("devices/d1/x"));
        // A client id with '/' never equals one level.
        let slash = file.for_client("a/b", None);
        assert!(!slash.may_publish("devices/a/b/x"));
        // Wildcards in the client id or username: no pattern grants (Mosquitto's rule).
        assert!(!file.for_client("+", None).may_publish("devices/+/x"));
        assert!(!file.for_client("d1", Some("#")).may_publish("devices/d1/x"));
        // `topic` lines do not substitute.
        let t = acl("topic readwrite devices/%c\n").for_client("d1", None);
        assert!(!t.may_publish("devices/d1") && t.may_publish("devices/%c"));
    }

    #[test]
    fn deny_wins_over_grants_in_any_order() {
        let file = acl("user u\n\
             topic readwrite a/#\n\
             topic deny a/secret/#\n\
             topic read b/#\n\
             pattern deny b/%c\n\
             pattern readwrite c/#\n\
             pattern deny c/x\n");
        let c = file.for_client("me", Some("u"));
        assert!(c.may_publish("a/open") && c.may_read("a/open"));
        assert!(!c.may_publish("a/secret") && !c.may_read("a/secret/x"));
        assert!(
            c.may_read("b/other") && !c.may_read("b/me"),
            "pattern deny beats user grant"
        );
        assert!(c.may_read("c/y") && !c.may_read("c/x"));
    }

    #[test]
    fn anything_not_granted_is_denied() {
        let c = acl("topic read x\n").for_client("c", Some("nobody"));
        assert!(!c.may_read("x") && !c.may_publish("x") && !c.may_subscribe("#"));
        assert!(!acl("").for_client("c", None).may_read("a"));
    }

    #[test]
    fn subscriptions_need_an_overlapping_read_grant_and_no_covering_deny() {
        let file = acl("user u\n\
             topic read sensors/#\n\
             topic write cmd/#\n\
             topic deny sensors/secret/#\n\
             topic read $SYS/broker/+\n");
        let c = file.for_client("c", Some("u"));
        for ok in [
            "sensors/#",
            "sensors/+/t",
            "#",
            "+/x",
            "sensors/secretive",
            "$SYS/#",
        ] {
            assert!(c.may_subscribe(ok), "{ok}");
        }
        for no in [
            "cmd/#",
            "other",
            "sensors/secret",
            "sensors/secret/#",
            "sensors/secret/x",
            "$SYS/other",
        ] {
            assert!(!c.may_subscribe(no), "{no}");
        }
        // Wildcard-first filters never see `$` topics, so `#` is not covered by `$SYS` rules.
        assert!(!file.for_client("c", Some("u")).may_subscribe("$other/#"));
        // Retained messages may go out only where everything the filter matches is readable.
        assert!(c.may_read_all("sensors/a/#") && c.may_read_all("sensors/a/+"));
        assert!(!c.may_read_all("sensors/#"), "the deny overlaps");
        assert!(
            !c.may_read_all("sensors/+"),
            "sensors/secret itself is denied"
        );
        assert!(!c.may_read_all("#") && !c.may_read_all("cmd/x"));
    }

    #[test]
    fn sub_matching_rules() {
        let file = acl("topic read a/+/c\ntopic read d/#\ntopic read e\n");
        let c = file.for_client("c", None);
        let covers = |rule: usize, f: &str| c.covers(&c.own[rule], f);
        assert!(covers(0, "a/b/c") && covers(0, "a/+/c"));
        assert!(!covers(0, "a/#") && !covers(0, "a/+/+") && !covers(0, "a/b"));
        assert!(covers(1, "d") && covers(1, "d/#") && covers(1, "d/+/x"));
        assert!(!covers(1, "#") && !covers(1, "+"));
        assert!(covers(2, "e") && !covers(2, "e/#") && !covers(2, "+"));
        let overlaps = |rule: usize, f: &str| c.overlaps(&c.own[rule], f);
        assert!(overlaps(0, "#") && overlaps(0, "+/b/#") && overlaps(0, "a/x/c"));
        assert!(!overlaps(0, "a/b") && !overlaps(0, "b/#"));
        assert!(overlaps(2, "+") && overlaps(2, "e/#") && !overlaps(2, "e/+"));
    }

    /// Rules and filters over a tiny alphabet; `covers`, `overlaps` and `matches` must agree
    /// with each other on every topic.
    mod props {
        use super::*;
        use proptest::prelude::*;

        fn level() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("a".to_string()),
                Just("b".to_string()),
                Just("+".to_string())
            ]
        }

        fn filter() -> impl Strategy<Value = String> {
            (prop::collection::vec(level(), 1..4), any::<bool>()).prop_map(|(mut l, h)| {
                if h {
                    l.push("#".into());
                }
                l.join("/")
            })
        }

        fn name() -> impl Strategy<Value = String> {
            prop::collection::vec(prop_oneof![Just("a"), Just("b")], 1..5).prop_map(|l| l.join("/"))
        }

        proptest! {
            #[test]
            fn covers_and_overlaps_agree_with_matching(r in filter(), f in filter(), t in name()) {
                let c = acl(&format!("topic read {r}\n")).for_client("c", None);
                let rule = &c.own[0];
                let in_filter = topic::matches(&t, &f);
                if c.covers(rule, &f) && in_filter {
                    prop_assert!(c.matches(rule, &t), "{} covers {} but not {}", r, f, t);
                }
                if in_filter && c.matches(rule, &t) {
                    prop_assert!(c.overlaps(rule, &f), "{} and {} share {}", r, f, t);
                }
                prop_assert_eq!(c.matches(rule, &t), topic::matches(&t, &r));
            }

            #[test]
            fn arbitrary_text_never_panics(text in "(?s).{0,300}") {
                if let Ok(file) = AclFile::parse(&text) {
                    let c = file.for_client("c", Some("u"));
                    let _ = (c.may_read("a/b"), c.may_subscribe("#"), c.may_read_all("a/+"));
                }
            }

            #[test]
            fn rule_like_lines_never_panic(text in "((user|topic|pattern)( (read|deny|x))?( [a%cu+#/]{0,6})?\n){0,6}") {
                if let Ok(file) = AclFile::parse(&text) {
                    let c = file.for_client("c", Some("u"));
                    let _ = (c.may_publish("a/b"), c.may_subscribe("+/#"), c.may_read_all("#"));
                }
            }
        }
    }
}
