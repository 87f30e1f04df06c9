//! MessagePack as factline plugins speak it.
//!
//! Every value crosses the boundary as *named* MessagePack (structs are maps keyed by field name),
//! so guests written in Python or JavaScript read the same bytes by field name. Events and
//! commands are serde enums whose variant names are the type strings: `order.created` travels as
//! the type string plus the variant's content as the payload.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer as _, Visitor};
use serde::{Serialize, forward_to_deserialize_any};
use serde_json::Value;

/// MessagePack `nil`: the payload of a unit variant.
pub const NIL: &[u8] = &[0xc0];
const EMPTY_MAP: &[u8] = &[0x80];
const EMPTY_ARRAY: &[u8] = &[0x90];

/// A value that does not fit the expected shape; the message names what and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(String);

impl CodecError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

/// Encodes `value` as named MessagePack.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    rmp_serde::to_vec_named(value).map_err(|e| CodecError(format!("cannot encode: {e}")))
}

/// Decodes named (or compact) MessagePack.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    rmp_serde::from_slice(bytes).map_err(|e| CodecError(explain::<T>(e, || msgpack_to_json(bytes))))
}

/// rmp-serde reports some type errors as a bare marker ("wrong msgpack marker FixStr(1)"); on
/// that error path only, decode again through JSON for serde's wording ("invalid type: string
/// \"x\", expected u32").
fn explain<T: DeserializeOwned>(
    error: rmp_serde::decode::Error,
    as_json: impl FnOnce() -> Result<Value, CodecError>,
) -> String {
    if !error.to_string().contains("marker") {
        return error.to_string();
    }
    match as_json() {
        Ok(json) => match serde_json::from_value::<T>(json) {
            Err(better) => better.to_string(),
            Ok(_) => error.to_string(),
        },
        Err(e) => e.to_string(),
    }
}

/// Splits an enum value into its type string (the variant name) and payload bytes.
/// A unit variant has the payload `nil`.
pub fn encode_variant<T: Serialize + ?Sized>(value: &T) -> Result<(String, Vec<u8>), CodecError> {
    let bytes = encode(value)?;
    // rmp-serde writes a unit variant as its name and any other variant as `{name: content}`.
    if let Ok((name, rest)) = rmp::decode::read_str_from_slice(&bytes)
        && rest.is_empty()
    {
        return Ok((name.to_owned(), NIL.to_vec()));
    }
    let mut rest = &bytes[..];
    if let Ok(1) = rmp::decode::read_map_len(&mut rest)
        && let Ok((name, payload)) = rmp::decode::read_str_from_slice(rest)
    {
        return Ok((name.to_owned(), payload.to_vec()));
    }
    Err(CodecError(format!(
        "`{}` must be an enum whose variant names are the type strings",
        std::any::type_name::<T>()
    )))
}

/// Rebuilds an enum value from a type string and payload.
///
/// `Ok(None)`: the enum has no variant of that name (not handled here, skip it).
/// `Err`: the variant exists but the payload does not fit it.
pub fn decode_variant<T: DeserializeOwned>(
    type_name: &str,
    payload: &[u8],
) -> Result<Option<T>, CodecError> {
    decode_variant_among::<T>(variant_names_of::<T>()?, type_name, payload)
}

/// The variant names of `T`, or an error naming `T` when it is not an externally tagged enum.
pub fn variant_names_of<T: DeserializeOwned>() -> Result<&'static [&'static str], CodecError> {
    variant_names::<T>().ok_or_else(|| {
        CodecError(format!(
            "`{}` must be an enum whose variant names are the type strings",
            std::any::type_name::<T>()
        ))
    })
}

/// [`decode_variant`] with the names already known: loops over a batch look them up once,
/// since finding them costs a (failing) deserialization.
pub fn decode_variant_among<T: DeserializeOwned>(
    names: &[&str],
    type_name: &str,
    payload: &[u8],
) -> Result<Option<T>, CodecError> {
    if !names.contains(&type_name) {
        return Ok(None);
    }
    T::deserialize(VariantDeserializer { type_name, payload })
        .map(Some)
        .map_err(|e| {
            let as_json = || Ok(serde_json::json!({ type_name: msgpack_to_json(payload)? }));
            CodecError(format!(
                "invalid payload for `{type_name}`: {}",
                explain::<T>(e, as_json)
            ))
        })
}

/// The (serialized) variant names of an enum, or `None` if `T` is not an externally tagged enum.
pub fn variant_names<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let captured = Cell::new(None);
    // Deserializing from the capture always fails; it only records what the derive asked for.
    let _ = T::deserialize(VariantCapture(&captured));
    captured.get()
}

/// Decodes MessagePack into JSON, for comparisons and display. Integers of any width become JSON
/// integers; binary becomes an array of bytes; non-string map keys are written as JSON text.
pub fn msgpack_to_json(bytes: &[u8]) -> Result<Value, CodecError> {
    let mut rest = bytes;
    let value = rmpv::decode::read_value(&mut rest)
        .map_err(|e| CodecError(format!("not MessagePack: {e}")))?;
    if !rest.is_empty() {
        return Err(CodecError(format!(
            "{} trailing bytes after the MessagePack value",
            rest.len()
        )));
    }
    to_json(value)
}

/// Encodes JSON as named MessagePack (integers in their smallest MessagePack form).
pub fn json_to_msgpack(value: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("a JSON value always encodes as MessagePack")
}

fn to_json(value: rmpv::Value) -> Result<Value, CodecError> {
    use rmpv::Value as M;
    let float = |f: f64| {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| CodecError(format!("{f} has no JSON representation")))
    };
    Ok(match value {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => u.into(),
            (None, Some(s)) => s.into(),
            (None, None) => unreachable!("a MessagePack integer fits u64 or i64"),
        },
        M::F32(f) => float(f64::from(f))?,
        M::F64(f) => float(f)?,
        M::String(s) => match s.into_str() {
            Some(s) => Value::String(s),
            None => return Err(CodecError("a string is not valid UTF-8".into())),
        },
        M::Binary(bytes) => bytes.into_iter().map(Value::from).collect(),
        M::Array(items) => items.into_iter().map(to_json).collect::<Result<_, _>>()?,
        M::Map(entries) => {
            let mut object = serde_json::Map::new();
            for (key, value) in entries {
                let key = match key {
                    M::String(s) if s.is_str() => s.into_str().unwrap_or_default(),
                    other => to_json(other)?.to_string(),
                };
                object.insert(key, to_json(value)?);
            }
            Value::Object(object)
        }
        M::Ext(tag, _) => {
            return Err(CodecError(format!(
                "MessagePack extension type {tag} has no JSON form"
            )));
        }
    })
}

/// Feeds `(type string, payload)` to a derived enum `Deserialize`.
struct VariantDeserializer<'de> {
    type_name: &'de str,
    payload: &'de [u8],
}

impl<'de> de::Deserializer<'de> for VariantDeserializer<'de> {
    type Error = rmp_serde::decode::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("events and commands must be enums"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl<'de> de::EnumAccess<'de> for VariantDeserializer<'de> {
    type Error = rmp_serde::decode::Error;
    type Variant = Payload<'de>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Payload<'de>), Self::Error> {
        let name = de::value::BorrowedStrDeserializer::<Self::Error>::new(self.type_name);
        Ok((seed.deserialize(name)?, Payload(self.payload)))
    }
}

struct Payload<'de>(&'de [u8]);

impl<'de> Payload<'de> {
    /// An absent payload (no bytes or `nil`) reads as `instead`, so `{}`-commands may be sent bare.
    fn or(&self, instead: &'static [u8]) -> &'de [u8] {
        if self.0.is_empty() || self.0 == NIL {
            instead
        } else {
            self.0
        }
    }
}

impl<'de> de::VariantAccess<'de> for Payload<'de> {
    type Error = rmp_serde::decode::Error;

    // Whatever a producer put in a unit variant's payload is ignored: consumers decode only what
    // they need, and a field added later must not break them.
    fn unit_variant(self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        seed.deserialize(&mut rmp_serde::Deserializer::from_read_ref(self.or(NIL)))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        rmp_serde::Deserializer::from_read_ref(self.or(EMPTY_ARRAY)).deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        rmp_serde::Deserializer::from_read_ref(self.or(EMPTY_MAP))
            .deserialize_struct("", fields, visitor)
    }
}

/// A deserializer that records the `variants` a derived enum `Deserialize` announces, then stops.
struct VariantCapture<'a>(&'a Cell<Option<&'static [&'static str]>>);

impl<'de> de::Deserializer<'de> for VariantCapture<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not an enum"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.set(Some(variants));
        Err(de::Error::custom("variants captured"))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Line {
        sku: String,
        qty: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Event {
        #[serde(rename = "t.created")]
        Created { id: String, lines: Vec<Line> },
        #[serde(rename = "t.renamed")]
        Renamed(Line),
        #[serde(rename = "t.pair")]
        Pair(u8, String),
        #[serde(rename = "t.closed")]
        Closed,
        #[serde(rename = "t.touched")]
        Touched {},
    }

    fn parts(event: &Event) -> (String, Value) {
        let (name, payload) = encode_variant(event).unwrap();
        (name, msgpack_to_json(&payload).unwrap())
    }

    #[test]
    fn every_variant_shape_round_trips_through_type_and_payload() {
        let events = [
            Event::Created {
                id: "A".into(),
                lines: vec![Line {
                    sku: "x".into(),
                    qty: 2,
                }],
            },
            Event::Renamed(Line {
                sku: "y".into(),
                qty: 1,
            }),
            Event::Pair(7, "z".into()),
            Event::Closed,
            Event::Touched {},
        ];
        for event in events {
            let (name, payload) = encode_variant(&event).unwrap();
            assert_eq!(
                decode_variant::<Event>(&name, &payload).unwrap(),
                Some(event)
            );
        }
    }

    #[test]
    fn payloads_are_named_maps_and_unit_variants_are_nil() {
        let created = Event::Created {
            id: "A".into(),
            lines: vec![Line {
                sku: "x".into(),
                qty: 2,
            }],
        };
        assert_eq!(
            parts(&created),
            (
                "t.created".into(),
                json!({"id": "A", "lines": [{"sku": "x", "qty": 2}]})
            )
        );
        assert_eq!(
            parts(&Event::Renamed(Line {
                sku: "y".into(),
                qty: 1
            }))
            .1,
            json!({"sku": "y", "qty": 1})
        );
        assert_eq!(parts(&Event::Closed), ("t.closed".into(), Value::Null));
        assert_eq!(parts(&Event::Touched {}), ("t.touched".into(), json!({})));
    }

    #[test]
    fn variant_names_are_captured_from_the_derive() {
        assert_eq!(
            variant_names::<Event>().unwrap(),
            ["t.created", "t.renamed", "t.pair", "t.closed", "t.touched"]
        );
        assert_eq!(variant_names::<Line>(), None);
        assert_eq!(variant_names::<String>(), None);
    }

    #[test]
    fn unknown_type_is_skipped_not_failed() {
        assert_eq!(
            decode_variant::<Event>("t.unknown", b"garbage").unwrap(),
            None
        );
    }

    #[test]
    fn malformed_payload_of_known_type_names_the_type_and_the_error() {
        let payload = json_to_msgpack(&json!({"id": 5}));
        let err = decode_variant::<Event>("t.created", &payload)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`t.created`"), "{err}");
        assert!(err.contains("invalid type"), "{err}");
        let payload = json_to_msgpack(&json!({"sku": "y", "qty": "two"}));
        let err = decode_variant::<Event>("t.renamed", &payload)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid payload for `t.renamed`: invalid type: string \"two\", expected u32"
        );
        let missing = json_to_msgpack(&json!({"id": "A"}));
        let err = decode_variant::<Event>("t.created", &missing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `lines`"), "{err}");
    }

    #[test]
    fn absent_payloads_read_as_empty_and_unit_payloads_are_ignored() {
        assert_eq!(
            decode_variant::<Event>("t.touched", &[]).unwrap(),
            Some(Event::Touched {})
        );
        assert_eq!(
            decode_variant::<Event>("t.touched", NIL).unwrap(),
            Some(Event::Touched {})
        );
        let extra = json_to_msgpack(&json!({"reason": "later field"}));
        assert_eq!(
            decode_variant::<Event>("t.closed", &extra).unwrap(),
            Some(Event::Closed)
        );
    }

    #[test]
    fn extra_fields_in_a_payload_are_ignored() {
        let payload = json_to_msgpack(&json!({"sku": "y", "qty": 1, "note": "new"}));
        assert_eq!(
            decode_variant::<Event>("t.renamed", &payload).unwrap(),
            Some(Event::Renamed(Line {
                sku: "y".into(),
                qty: 1
            }))
        );
    }

    #[test]
    fn non_enums_are_refused() {
        assert!(
            encode_variant(&Line {
                sku: "x".into(),
                qty: 1
            })
            .is_err()
        );
        assert!(decode_variant::<Line>("x", NIL).is_err());
    }

    #[test]
    fn integers_compare_by_value_whatever_their_width() {
        // 4000 as u16, u64 and i64 MessagePack encodings.
        for bytes in [
            &[0xcd, 0x0f, 0xa0][..],
            &[0xcf, 0, 0, 0, 0, 0, 0, 0x0f, 0xa0],
            &[0xd3, 0, 0, 0, 0, 0, 0, 0x0f, 0xa0],
        ] {
            assert_eq!(msgpack_to_json(bytes).unwrap(), json!(4000));
        }
        assert_eq!(msgpack_to_json(&[0xd0, 0xfb]).unwrap(), json!(-5));
    }

    #[test]
    fn json_and_msgpack_convert_both_ways() {
        let value = json!({"a": [1, -2, 2.5, true, null, "s"], "b": {"c": u64::MAX}});
        assert_eq!(msgpack_to_json(&json_to_msgpack(&value)).unwrap(), value);
        assert!(msgpack_to_json(&[0x92, 0x01]).is_err(), "truncated array");
        assert!(msgpack_to_json(&[0x01, 0x02]).is_err(), "trailing bytes");
    }
}
