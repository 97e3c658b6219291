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
    from_ref(&value)
}

/// [`from_value`] without taking the value: nothing of it is copied but what `T` keeps, so
/// a config is decoded as many times as a plugin needs at no more memory than once.
pub fn from_ref<T: DeserializeOwned>(value: &Value) -> Result<T, JsonError> {
    serde_path_to_error::deserialize(GoValue(value)).map_err(|e| JsonError {
        path: e.path().to_string(),
        error: e.into_inner(),
    })
}

#[derive(Clone, Copy)]
struct GoValue<'de>(&'de Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for GoValue<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

fn visit_object<'de, V: Visitor<'de>>(
    entries: impl Iterator<Item = (&'de str, &'de Value)>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut access = MapDeserializer::new(entries.map(|(k, v)| (k, GoValue(v))));
    let value = visitor.visit_map(&mut access)?;
    access.end()?;
    Ok(value)
}

/// Renames keys that match a field case-insensitively and drops `null` members.
/// A key spelled exactly as the field wins over a case variant of it.
fn canonical_keys<'de>(
    map: &'de Map<String, Value>,
    fields: &'static [&'static str],
) -> Vec<(&'de str, &'de Value)> {
    let mut out: Vec<(&'de str, &'de Value)> = Vec::with_capacity(map.len());
    // Where each field went in `out`: only field names can meet twice.
    let mut placed: Vec<(&'static str, usize)> = Vec::new();
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        let field = match fields.iter().find(|f| **f == key) {
            Some(exact) => Some((*exact, true)),
            None => fields
                .iter()
                .find(|f| f.eq_ignore_ascii_case(key))
                .map(|variant| (*variant, false)),
        };
        match field {
            None => out.push((key, value)),
            Some((name, exact)) => match placed.iter().find(|(n, _)| *n == name) {
                Some(&(_, at)) if exact => out[at].1 = value,
                Some(_) => {}
                None => {
                    placed.push((name, out.len()));
                    out.push((name, value));
                }
            },
        }
    }
    out
}

impl<'de> Deserializer<'de> for GoValue<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => visit_object(map.iter().map(|(k, v)| (k.as_str(), v)), visitor),
            Value::Array(items) => {
                let mut access = SeqDeserializer::new(items.iter().map(GoValue));
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
            Value::Object(map) => visit_object(canonical_keys(map, fields).into_iter(), visitor),
            _ => self.deserialize_any(visitor),
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

    /// A key no field asks for is skipped without walking it: configs carry large sections
    /// (another plugin's, a runtime's) that a plugin never reads.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
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
