//! JSON for token headers and payloads, parsed strictly: an object that
//! names a key twice is refused at any depth. Parsers disagree on which
//! duplicate wins (first or last), so a token that relies on it means
//! different things to the gateway and to a backend reading the payload.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The default bound on nesting: objects and arrays inside each other.
pub use crate::config::DEFAULT_MAX_JSON_DEPTH as DEFAULT_MAX_DEPTH;

/// Parses a JSON object with no duplicate keys at any depth and at most
/// `max_depth` levels of objects and arrays (the object itself is level 1).
/// serde_json's own limit of 128 levels applies on top.
pub fn parse_object(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Level { depth_left: max_depth }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(de::Error::custom("expected a JSON object")),
    }
}

/// One value, with the nesting still allowed below it.
#[derive(Clone, Copy)]
struct Level {
    depth_left: usize,
}

impl<'de> DeserializeSeed<'de> for Level {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Level {
    /// The level for the values inside a container opened here.
    fn inner<E: de::Error>(self) -> Result<Level, E> {
        match self.depth_left.checked_sub(1) {
            Some(depth_left) => Ok(Level { depth_left }),
            None => Err(E::custom("JSON nested too deeply")),
        }
    }
}

impl<'de> Visitor<'de> for Level {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.inner()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let inner = self.inner()?;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(inner)?;
            if map.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Map<String, Value>, serde_json::Error> {
        parse_object(text.as_bytes(), DEFAULT_MAX_DEPTH)
    }

    #[test]
    fn accepts_ordinary_json_and_refuses_duplicates_at_any_depth() {
        let map = parse(r#"{"a": 1, "b": [true, null, 2.5, "x", {"c": -3}], "d": {"e": "f"}}"#).unwrap();
        assert_eq!(
            Value::Object(map),
            serde_json::json!({"a": 1, "b": [true, null, 2.5, "x", {"c": -3}], "d": {"e": "f"}})
        );
        assert!(parse(r#"{"sub": "user", "sub": "admin"}"#).is_err());
        assert!(parse(r#"{"a": {"role": "x", "role": "y"}}"#).is_err());
        assert!(parse(r#"{"a": [{"k": 1, "k": 2}]}"#).is_err());
        assert!(parse("[1]").is_err());
        assert!(parse(r#"{"big": 18446744073709551615, "neg": -9223372036854775808}"#).is_ok());
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert!(parse_object(nested(3).as_bytes(), 3).is_ok());
        assert!(parse_object(nested(4).as_bytes(), 3).is_err());
        let arrays = format!("{{\"a\":{}1{}}}", "[".repeat(2), "]".repeat(2));
        assert!(parse_object(arrays.as_bytes(), 3).is_ok());
        assert!(parse_object(arrays.as_bytes(), 2).is_err());
        assert!(parse_object(b"{} trailing", 3).is_err());
    }
}
