//! `${NAME}` substitution from the environment, applied to every string in
//! the parsed TOML tree before it is turned into typed configuration.

use super::Problem;

/// Replaces `${NAME}` in every string of `table`, recording one problem per
/// missing variable or unterminated reference, named by its key path.
pub fn interpolate_table(
    table: &mut toml::Table,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    each_string(table, path, &mut |key_path, s| match interpolate_str(s, lookup) {
        Ok(Some(replaced)) => *s = replaced,
        Ok(None) => {}
        Err(message) => problems.push(Problem::new(key_path, message)),
    });
}

/// Calls `f` with every string in `table` and its key path
/// (`issuers[0].audiences[1]`), in tables and arrays at any depth.
pub fn each_string(table: &mut toml::Table, path: &str, f: &mut dyn FnMut(&str, &mut String)) {
    for (key, value) in table.iter_mut() {
        let key_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        each_string_in(value, &key_path, f);
    }
}

fn each_string_in(value: &mut toml::Value, path: &str, f: &mut dyn FnMut(&str, &mut String)) {
    match value {
        toml::Value::String(s) => f(path, s),
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                each_string_in(item, &format!("{path}[{i}]"), f);
            }
        }
        toml::Value::Table(table) => each_string(table, path, f),
        _ => {}
    }
}

/// `Ok(None)` when the string has no reference, so untouched strings are not copied.
pub fn interpolate_str(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    if !input.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated ${{ in {input:?}"));
        };
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid environment variable name {name:?}"));
        }
        match lookup(name) {
            Some(value) => out.push_str(&value),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TENANT").then(|| "acme".to_string())
    }

    #[test]
    fn replaces_known_variables() {
        assert_eq!(
            interpolate_str("https://${TENANT}.auth0.com/${TENANT}", &env).unwrap(),
            Some("https://acme.auth0.com/acme".into())
        );
        assert_eq!(interpolate_str("plain $ text", &env).unwrap(), None);
    }

    #[test]
    fn missing_or_malformed_references_are_errors() {
        assert!(interpolate_str("${NOPE}", &env).unwrap_err().contains("NOPE is not set"));
        assert!(interpolate_str("${TENANT", &env).unwrap_err().contains("unterminated"));
        assert!(interpolate_str("${a-b}", &env).unwrap_err().contains("invalid"));
    }

    #[test]
    fn table_problems_name_the_key() {
        let mut table: toml::Table = toml::from_str("[upstream]\nurl = \"${NOPE}\"").unwrap();
        let mut problems = Vec::new();
        interpolate_table(&mut table, "", &env, &mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "upstream.url");
    }
}
