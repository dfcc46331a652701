//! The configuration file as text: every syntax error at once, and where
//! each key was written, so every problem names `FILE:LINE:COL`.

use std::collections::HashMap;

use toml::de::{DeTable, DeValue};

use super::Problem;

/// A place in the file, both 1-based; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// Problems about the file as a whole (a table that is missing).
    pub const START: Position = Position { line: 1, column: 1 };

    fn of(text: &str, offset: usize) -> Position {
        let before = text.get(..offset).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position { line: before.matches('\n').count() + 1, column: before[line_start..].chars().count() + 1 }
    }
}

/// Where each key path (`server.listen`, `issuers[0].audiences[1]`) starts.
#[derive(Debug, Default)]
pub struct KeyPositions(HashMap<String, Position>);

impl KeyPositions {
    /// Indexes `text`, or returns every syntax error in it.
    pub fn index(text: &str) -> Result<KeyPositions, Vec<Problem>> {
        let (table, errors) = DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            let mut problems: Vec<Problem> = errors.iter().map(|error| syntax_problem(error, text)).collect();
            problems.sort_by_key(|p| p.at.map(|at| (at.line, at.column)));
            return Err(problems);
        }
        let mut positions = KeyPositions::default();
        positions.walk_table(text, table.get_ref(), "");
        Ok(positions)
    }

    fn walk_table(&mut self, text: &str, table: &DeTable<'_>, path: &str) {
        for (key, value) in table.iter() {
            let key_path =
                if path.is_empty() { key.get_ref().to_string() } else { format!("{path}.{}", key.get_ref()) };
            self.0.insert(key_path.clone(), Position::of(text, key.span().start));
            self.walk_value(text, value.get_ref(), &key_path);
        }
    }

    fn walk_value(&mut self, text: &str, value: &DeValue<'_>, path: &str) {
        match value {
            DeValue::Table(table) => self.walk_table(text, table, path),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    self.0.insert(item_path.clone(), Position::of(text, item.span().start));
                    self.walk_value(text, item.get_ref(), &item_path);
                }
            }
            _ => {}
        }
    }

    /// The position of `key`, else of the nearest enclosing key written in
    /// the file (a missing key is reported where its table is).
    pub fn find(&self, key: &str) -> Position {
        let mut key = key;
        loop {
            if let Some(position) = self.0.get(key) {
                return *position;
            }
            match key.rfind(['.', '[']) {
                Some(cut) => key = &key[..cut],
                None => return Position::START,
            }
        }
    }
}

/// toml's own message spans several lines with a source excerpt: keep the
/// first line and say where.
fn syntax_problem(error: &toml::de::Error, text: &str) -> Problem {
    let detail = error.message().lines().next().unwrap_or("").trim();
    let mut problem = Problem::new("", format!("invalid TOML: {detail} — see https://toml.io for the syntax"));
    problem.at = error.span().map(|span| Position::of(text, span.start));
    problem
}

/// The first template placeholder (`YOUR_TENANT`, `YOUR_API_AUDIENCE`) in
/// `text`: an upper-case word starting with `YOUR_`.
pub fn placeholder(text: &str) -> Option<&str> {
    let start = text.find("YOUR_")?;
    let rest = &text[start..];
    let end = rest.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// One problem per string value that still holds a placeholder from a template.
pub fn placeholders(table: &mut toml::Table, problems: &mut Vec<Problem>) {
    super::interpolate::each_string(table, "", &mut |path, text| {
        if let Some(word) = placeholder(text) {
            problems.push(Problem::new(
                path,
                format!(
                    "{text:?} still holds the template's placeholder {word} — replace it with your own value \
                     (docs/quickstart-*.md say where each identity provider shows it)"
                ),
            ));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_items_and_missing_keys() {
        let text = "[server]\nlisten = \"x\"\n\n[[issuers]]\naudiences = [\"a\", 5]\n";
        let positions = KeyPositions::index(text).unwrap();
        assert_eq!(positions.find("server.listen"), Position { line: 2, column: 1 });
        assert_eq!(positions.find("issuers[0].audiences[1]"), Position { line: 5, column: 19 });
        assert_eq!(positions.find("issuers[0].issuer").line, 4);
        assert_eq!(positions.find("upstream.url"), Position::START);
    }

    #[test]
    fn every_syntax_error_at_once() {
        let problems = KeyPositions::index("a = 1 2\n[b\nc = 'x\n").unwrap_err();
        assert!(problems.len() >= 2, "{problems:?}");
        assert_eq!(problems[0].at.map(|p| p.line), Some(1));
        assert!(problems.iter().all(|p| p.message.starts_with("invalid TOML: ")), "{problems:?}");
    }

    #[test]
    fn placeholders_are_upper_case_your_words() {
        assert_eq!(placeholder("https://YOUR_TENANT.auth0.com/"), Some("YOUR_TENANT"));
        assert_eq!(placeholder("YOUR_API_AUDIENCE"), Some("YOUR_API_AUDIENCE"));
        assert_eq!(placeholder("https://your_tenant.example/"), None);
        let mut table: toml::Table = toml::from_str("[[issuers]]\naudiences = [\"ok\", \"YOUR_API\"]\n").unwrap();
        let mut problems = Vec::new();
        placeholders(&mut table, &mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "issuers[0].audiences[1]");
    }
}
