//! JSON decoding that accepts what the Go reference accepts.
//!
//! Go's `encoding/json` matches object keys to struct fields case-insensitively, treats
//! `null` as "leave the zero value" and ignores unknown keys; configs in the wild rely on
//! all three (the cni.dev docs themselves write `selinuxcontext`). serde matches exactly,
//! so every config and result is decoded through [`from_value`], which wraps
//! `serde_json::Value` in a deserializer that renames keys to the field names serde asks
//! for. Types decoded this way must not use `#[serde(flatten)]` or untagged enums: those
//! buffer their input and never see the field list.

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde_json::{Map, Value};

/// A decoding failure, naming where in the document it happened (`ipam.ranges[0][1].gateway`).
#[derive(Debug, thiserror::Error)]
#[error("{}{error}", if path == "." { String::new() } else { format!("{path}: ") })]
pub struct JsonError {
    pub path: String,
    pub error: serde_json::Error,
}

impl From<serde_json::Error> for JsonError {
    fn from(error: serde_json::Error) -> Self {
        JsonError {
            path: ".".to_string(),
            error,
        }
    }
}

/// Decodes `T` from a JSON value with Go's key matching.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, JsonError> {
    serde_path_to_error::deserialize(GoValue(value)).map_err(|e| JsonError {
        path: e.path().to_string(),
        error: e.into_inner(),
    })
}

struct GoValue(Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for GoValue {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

fn visit_object<'de, V: Visitor<'de>>(
    map: Map<String, Value>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut access = MapDeserializer::new(map.into_iter().map(|(k, v)| (k, GoValue(v))));
    let value = visitor.visit_map(&mut access)?;
    access.end()?;
    Ok(value)
}

/// Renames keys that match a field case-insensitively and drops `null` members.
/// A key spelled exactly as the field wins over a case variant of it.
fn canonical_keys(map: Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        if fields.contains(&key.as_str()) {
            out.insert(key, value);
        } else if let Some(field) = fields.iter().find(|f| f.eq_ignore_ascii_case(&key)) {
            out.entry(*field).or_insert(value);
        } else {
            out.insert(key, value);
        }
    }
    out
}

impl<'de> Deserializer<'de> for GoValue {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visit_object(map, visitor),
            Value::Array(items) => {
                let mut access = SeqDeserializer::new(items.into_iter().map(GoValue));
                let value = visitor.visit_seq(&mut access)?;
                access.end()?;
                Ok(value)
            }
            scalar => scalar.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visit_object(canonical_keys(map, fields), visitor),
            other => GoValue(other).deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, Debug, Default, PartialEq)]
    #[serde(default)]
    struct Inner {
        #[serde(rename = "rangeStart")]
        range_start: String,
    }

    #[derive(Deserialize, Debug, Default, PartialEq)]
    #[serde(default)]
    struct Outer {
        #[serde(rename = "cniVersion")]
        cni_version: String,
        #[serde(rename = "ipMasq")]
        ip_masq: bool,
        ranges: Vec<Vec<Inner>>,
        mtu: Option<u32>,
    }

    #[test]
    fn matches_keys_case_insensitively_at_every_depth() {
        let outer: Outer = from_value(json!({
            "CNIVERSION": "1.0.0",
            "ipmasq": true,
            "Ranges": [[{"RANGESTART": "10.0.0.5"}]],
            "unknown": 1
        }))
        .expect("decodes");
        assert_eq!(outer.cni_version, "1.0.0");
        assert!(outer.ip_masq);
        assert_eq!(outer.ranges[0][0].range_start, "10.0.0.5");
    }

    #[test]
    fn exact_key_wins_and_null_means_default() {
        let outer: Outer = from_value(
            json!({"cniversion": "0.3.0", "cniVersion": "1.0.0", "ipMasq": null, "mtu": null}),
        )
        .expect("decodes");
        assert_eq!(outer.cni_version, "1.0.0");
        assert!(!outer.ip_masq);
        assert_eq!(outer.mtu, None);
    }

    #[test]
    fn wrong_types_are_errors_not_panics() {
        assert!(from_value::<Outer>(json!({"ipMasq": "true"})).is_err());
        let err = from_value::<Outer>(json!({"ranges": [[{"rangeStart": 5}]]})).expect_err("bad");
        assert!(
            err.to_string().starts_with("ranges[0][0].rangeStart: "),
            "{err}"
        );
        assert!(from_value::<Outer>(json!([1, 2])).is_err());
    }
}
