//! JSON for token headers and payloads, parsed strictly: an object that
//! names a key twice is refused at any depth. Parsers disagree on which
//! duplicate wins (first or last), so a token that relies on it means
//! different things to the gateway and to a backend reading the payload.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A `serde_json::Value` whose objects have no duplicate keys.
pub struct StrictValue(pub Value);

/// A top-level JSON object without duplicate keys.
pub struct StrictObject(pub Map<String, Value>);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor).map(StrictValue)
    }
}

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(ValueVisitor)? {
            Value::Object(map) => Ok(StrictObject(map)),
            _ => Err(de::Error::custom("expected a JSON object")),
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
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
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let StrictValue(value) = access.next_value()?;
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
        serde_json::from_str::<StrictObject>(text).map(|o| o.0)
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
}
