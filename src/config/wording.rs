//! serde's messages (`invalid type: integer `30`, expected a string`,
//! `unknown field`) in plain words, each with how to fix it.

/// The plain message for serde's `message` about `key`.
pub fn structural(key: &str, message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, known) = rest.split_once('`').unwrap_or((rest, ""));
        return unknown_key(field, &backticked(known));
    }
    if let Some((found, expected)) =
        message.strip_prefix("invalid type: ").and_then(|rest| rest.rsplit_once(", expected "))
    {
        return wrong_type(key, found, expected);
    }
    message.to_string()
}

/// The last name in a key path: `leeway` of `issuers[0].leeway`, `scopes`
/// of `routes[1].scopes[2]`.
pub fn key_name(key: &str) -> &str {
    let key = without_index(key);
    key.rsplit('.').next().unwrap_or(key)
}

/// `key` without trailing list indexes: `routes[1].scopes` of `routes[1].scopes[2]`.
pub fn without_index(mut key: &str) -> &str {
    while let Some(open) = key.strip_suffix(']').and_then(|k| k.rfind('[')) {
        key = &key[..open];
    }
    key
}

/// Every `word` between backticks in `text`.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

fn unknown_key(field: &str, known: &[&str]) -> String {
    if known.is_empty() {
        return "unknown key: this table takes no keys — remove it".to_string();
    }
    let field = field.to_ascii_lowercase();
    let closest = known.iter().map(|k| (edit_distance(&field, k), *k)).min();
    // `timeout` in [server] could be any of four: name them all.
    let containing: Vec<&str> = known.iter().copied().filter(|k| k.contains(&*field)).collect();
    match (closest, containing.as_slice()) {
        (Some((distance, k)), _) if distance <= 2 => format!("unknown key — did you mean `{k}`?"),
        (_, [k]) => format!("unknown key — did you mean `{k}`?"),
        (_, [_, _, ..]) => format!("unknown key — did you mean one of `{}`?", containing.join("`, `")),
        _ => format!("unknown key — the keys allowed here are {}", known.join(", ")),
    }
}

/// What a key of this name holds, as a user would write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Duration,
    Address,
    Text,
    Number,
    /// A number that may have a fraction (`sample_ratio = 0.25`).
    Fraction,
    Boolean,
    List,
    Table,
}

fn kind(name: &str, expected: &str) -> Option<Kind> {
    match expected {
        "a string" if is_duration(name) => Some(Kind::Duration),
        "a string" if name.ends_with("listen") => Some(Kind::Address),
        "a string" => Some(Kind::Text),
        "i64" | "u64" | "usize" | "u32" => Some(Kind::Number),
        "f64" => Some(Kind::Fraction),
        "a boolean" => Some(Kind::Boolean),
        "a sequence" => Some(Kind::List),
        e if e == "a map" || e.starts_with("struct ") => Some(Kind::Table),
        _ => None,
    }
}

/// Durations are strings in the file ("30s"); these are their key names.
pub fn is_duration(name: &str) -> bool {
    ["timeout", "interval", "grace", "leeway", "lifetime", "max_age", "ttl"].iter().any(|end| name.ends_with(end))
}

fn wrong_type(key: &str, found: &str, expected: &str) -> String {
    let name = key_name(key);
    let Some(kind) = kind(name, expected) else {
        return format!("expected {expected}, found {}", found_words(found));
    };
    let wanted = match kind {
        Kind::Duration => "a duration such as \"30s\"",
        Kind::Address => "an address such as \"127.0.0.1:8080\"",
        Kind::Text => "a string in quotes",
        Kind::Number => "a whole number such as 100",
        Kind::Fraction => "a number such as 0.5",
        Kind::Boolean => "true or false",
        Kind::List => "a list such as [\"a\", \"b\"]",
        Kind::Table => "a table",
    };
    let value = found_value(found);
    let fix = match (kind, value) {
        (Kind::Duration, Some(Value::Number(n))) => format!("write {name} = \"{n}s\" (units: ms, s, m, h)"),
        (Kind::Address, Some(Value::Number(n))) if name == "admin_listen" => {
            format!("write {name} = \"127.0.0.1:{n}\"")
        }
        (Kind::Address, Some(Value::Number(n))) => format!("write {name} = \"0.0.0.0:{n}\""),
        (Kind::Text, Some(Value::Number(n))) => format!("write {name} = \"{n}\""),
        (Kind::Number, Some(Value::Text(t))) if t.parse::<i64>().is_ok() => {
            format!("write {name} = {t} without quotes")
        }
        (Kind::Fraction, Some(Value::Text(t))) if t.parse::<f64>().is_ok() => {
            format!("write {name} = {t} without quotes")
        }
        (Kind::Boolean, Some(Value::Text(t))) if t == "true" || t == "false" => {
            format!("write {name} = {t} without quotes")
        }
        (Kind::List, Some(Value::Text(t))) => format!("write {name} = [\"{t}\"]"),
        (Kind::Table, _) => format!("write it as a table with its keys, [{}]", key.split('[').next().unwrap_or(key)),
        _ => format!("write {name} as {wanted}"),
    };
    format!("expected {wanted}, found {} — {fix}", found_words(found))
}

enum Value<'a> {
    Number(&'a str),
    Text(&'a str),
}

/// The value serde quoted in its `Unexpected` (`integer `30``, `string "x"`).
fn found_value(found: &str) -> Option<Value<'_>> {
    if let Some(n) = found.strip_prefix("integer `").or_else(|| found.strip_prefix("floating point `")) {
        return Some(Value::Number(n.trim_end_matches('`')));
    }
    let text = found.strip_prefix("string \"")?.strip_suffix('"')?;
    Some(Value::Text(text))
}

fn found_words(found: &str) -> String {
    match found_value(found) {
        Some(Value::Number(n)) => format!("the number {n}"),
        Some(Value::Text(t)) => format!("the string {t:?}"),
        None => match found {
            "sequence" => "a list".to_string(),
            "map" => "a table".to_string(),
            "boolean `true`" => "true".to_string(),
            "boolean `false`" => "false".to_string(),
            other => other.replace('`', ""),
        },
    }
}

/// Levenshtein distance, for "did you mean": config keys are short.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_wording_becomes_plain_words_with_a_fix() {
        let cases = [
            (
                "issuers[0].leeway",
                "invalid type: integer `30`, expected a string",
                "expected a duration such as \"30s\", found the number 30 — write leeway = \"30s\" (units: ms, s, m, h)",
            ),
            (
                "server.max_connections",
                "invalid type: string \"30\", expected i64",
                "expected a whole number such as 100, found the string \"30\" — write max_connections = 30 without quotes",
            ),
            (
                "issuers[0].audiences",
                "invalid type: string \"api\", expected a sequence",
                "expected a list such as [\"a\", \"b\"], found the string \"api\" — write audiences = [\"api\"]",
            ),
            (
                "server.listen",
                "invalid type: integer `8080`, expected a string",
                "expected an address such as \"127.0.0.1:8080\", found the number 8080 — write listen = \"0.0.0.0:8080\"",
            ),
            (
                "upstream.preserve_host",
                "invalid type: string \"true\", expected a boolean",
                "expected true or false, found the string \"true\" — write preserve_host = true without quotes",
            ),
        ];
        for (key, serde, plain) in cases {
            assert_eq!(structural(key, serde), plain, "{key}");
        }
    }

    #[test]
    fn names_of_list_items_and_nested_tables() {
        assert_eq!(key_name("routes[1].scopes[2]"), "scopes");
        assert_eq!(key_name("issuers[0]"), "issuers");
        assert_eq!(
            structural("routes[1].scopes[1]", "invalid type: integer `1`, expected a string"),
            "expected a string in quotes, found the number 1 — write scopes = \"1\""
        );
        assert_eq!(
            structural("server.tls", "invalid type: string \"x\", expected struct RawServerTls"),
            "expected a table, found the string \"x\" — write it as a table with its keys, [server.tls]"
        );
    }

    #[test]
    fn unknown_keys_suggest_the_closest() {
        let serde = "unknown field `timout`, expected one of `url`, `connect_timeout`, `timeout`";
        assert_eq!(structural("upstream.timout", serde), "unknown key — did you mean `timeout`?");
        let serde = "unknown field `retries`, expected one of `url`, `timeout`";
        assert_eq!(structural("upstream.retries", serde), "unknown key — the keys allowed here are url, timeout");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
