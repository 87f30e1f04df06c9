//! The encoding of values at a plugin's boundary.
//!
//! Stored payloads and read-model values are MessagePack, and that is what a plugin gets unless
//! its component declares otherwise. Interpreted guests (CPython, QuickJS) decode MessagePack in
//! interpreted code, which costs more than the rest of their work; they decode JSON natively.
//! So a component may carry the custom section [`SECTION`] with the content `json`: the host
//! then hands its projector event payloads and read-model values as JSON and takes read-model
//! values back as JSON, transcoding at the boundary. What is stored stays MessagePack.
//!
//! The transcoding is deterministic and lossless for MessagePack values. JSON has no binary,
//! no extension types and only string keys, so those travel as one-key objects whose key starts
//! with `$`:
//!
//! - binary: `{"$bin": [byte, ...]}`
//! - extension: `{"$ext": [type, [byte, ...]]}`
//! - a map with a non-string key, or with one key that starts with `$`: `{"$map": [[k, v], ...]}`
//!
//! Every other map is a plain object, so an object with exactly one key starting with `$` is
//! always an escape. Integers stay integers (JSON without `.` or exponent), floats are written
//! with one (`1.0`), so a float never comes back as an integer; floats are f64 on the way back.
//! NaN and infinities have no JSON form: such a value is refused, never changed. JSON to the
//! guest is ASCII (non-ASCII as `\u` escapes), so a guest may read it byte for byte.

use std::fmt::Write as _;

use rmpv::Value;

use crate::event::Event;

/// Name of the custom section by which a component declares its boundary encoding.
pub const SECTION: &str = "factline:boundary";

/// Deepest nesting transcoded (as MessagePack decoding allows by default).
const MAX_DEPTH: usize = 1024;

/// How values cross a plugin's boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Boundary {
    /// As stored: MessagePack bytes, unchanged.
    #[default]
    MessagePack,
    /// JSON text (projectors: event payloads and read-model values).
    Json,
}

impl Boundary {
    /// One byte, as the artifact cache records it.
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Boundary::MessagePack => 0,
            Boundary::Json => 1,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Boundary::MessagePack),
            1 => Some(Boundary::Json),
            _ => None,
        }
    }
}

/// The boundary encoding `component` declares (its top-level [`SECTION`]); none: MessagePack.
/// A binary whose sections cannot be walked declares nothing here: compiling it refuses it, with
/// the compiler's own report.
pub fn declared(component: &[u8]) -> Result<Boundary, String> {
    let mut found = None;
    let Ok(sections) = custom_sections(component) else {
        return Ok(Boundary::MessagePack);
    };
    for (name, content) in sections {
        if name != SECTION {
            continue;
        }
        if found.is_some() {
            return Err(format!("the custom section `{SECTION}` appears twice"));
        }
        found = Some(match content {
            b"json" => Boundary::Json,
            b"msgpack" => Boundary::MessagePack,
            other => {
                return Err(format!(
                    "the custom section `{SECTION}` says {:?}; it must be `json` or `msgpack`",
                    String::from_utf8_lossy(&other[..other.len().min(64)])
                ));
            }
        });
    }
    Ok(found.unwrap_or_default())
}

/// The top-level custom sections of a component or module binary (nested modules' are not
/// walked: a declaration belongs to the outermost component). Malformed framing is an error.
fn custom_sections(bytes: &[u8]) -> Result<Vec<(&str, &[u8])>, String> {
    let bad = |what: &str| format!("malformed component binary: {what}");
    let mut rest = bytes
        .get(8..)
        .filter(|_| bytes.starts_with(b"\0asm"))
        .ok_or_else(|| bad("no preamble"))?;
    let mut found = Vec::new();
    while let Some((&id, after)) = rest.split_first() {
        let (size, after) = leb_u32(after).ok_or_else(|| bad("section size"))?;
        let size = size as usize;
        if after.len() < size {
            return Err(bad("section runs past the end"));
        }
        let (section, next) = after.split_at(size);
        if id == 0 {
            let (len, body) = leb_u32(section).ok_or_else(|| bad("custom section name"))?;
            let len = len as usize;
            if body.len() < len {
                return Err(bad("custom section name runs past the section"));
            }
            let (name, content) = body.split_at(len);
            let name = std::str::from_utf8(name).map_err(|_| bad("custom section name"))?;
            found.push((name, content));
        }
        rest = next;
    }
    Ok(found)
}

fn leb_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(value).ok().map(|v| (v, &bytes[i + 1..]));
        }
    }
    None
}

/// Why a value could not be transcoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    #[error("not valid MessagePack: {0}")]
    MessagePack(String),
    #[error("{0} has no JSON form")]
    NoJson(&'static str),
    #[error("not valid JSON at byte {at}: {why}")]
    Json { at: usize, why: String },
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// MessagePack bytes as JSON text (empty stays empty: a payload without a body).
pub fn to_json(msgpack: &[u8]) -> Result<Vec<u8>, TranscodeError> {
    to_json_text(msgpack).map(String::into_bytes)
}

/// [`to_json`] as a string.
pub(crate) fn to_json_text(msgpack: &[u8]) -> Result<String, TranscodeError> {
    let mut out = String::with_capacity(msgpack.len() * 2);
    append_json(&mut out, msgpack)?;
    Ok(out)
}

/// Appends `msgpack` as JSON to `out` (nothing for empty bytes).
fn append_json(out: &mut String, msgpack: &[u8]) -> Result<(), TranscodeError> {
    if msgpack.is_empty() {
        return Ok(());
    }
    let mut rest = msgpack;
    let value = rmpv::decode::read_value_ref(&mut rest)
        .map_err(|e| TranscodeError::MessagePack(e.to_string()))?;
    if !rest.is_empty() {
        return Err(TranscodeError::MessagePack(format!(
            "{} trailing bytes after the value",
            rest.len()
        )));
    }
    write_json(out, &value, 0)
}

/// A batch of events as one JSON array, as a `json-projector` takes it (`wit/factline.wit`):
/// one object per event with the envelope's fields, `payload` as JSON (`null` when empty) and
/// `metadata` as `[[key, value], ...]`. A payload that has no JSON form fails with its index.
pub(crate) fn events_json(events: &[Event]) -> Result<String, (usize, TranscodeError)> {
    let guess: usize = events.iter().map(|e| 320 + 2 * e.payload.len()).sum();
    let mut out = String::with_capacity(guess);
    out.push('[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let id = e.event_id.hyphenated();
        let _ = write!(out, "{{\"event_id\":\"{id}\",\"event_type\":");
        write_string(&mut out, &e.event_type);
        out.push_str(",\"stream\":");
        write_string(&mut out, &e.stream);
        let _ = write!(out, ",\"stream_version\":{},\"topic\":", e.stream_version);
        write_string(&mut out, &e.topic);
        let _ = write!(
            out,
            ",\"partition\":{},\"offset\":{},\"occurred_at\":{},\"correlation_id\":",
            e.partition, e.offset, e.occurred_at
        );
        write_string(&mut out, &e.correlation_id);
        out.push_str(",\"causation_id\":");
        write_string(&mut out, &e.causation_id);
        let _ = write!(out, ",\"schema_version\":{},\"payload\":", e.schema_version);
        if e.payload.is_empty() {
            out.push_str("null");
        } else {
            append_json(&mut out, &e.payload).map_err(|why| (i, why))?;
        }
        out.push_str(",\"metadata\":[");
        for (j, (k, v)) in e.metadata.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push('[');
            write_string(&mut out, k);
            out.push(',');
            write_string(&mut out, v);
            out.push(']');
        }
        out.push_str("]}");
    }
    out.push(']');
    Ok(out)
}

fn write_json(
    out: &mut String,
    value: &rmpv::ValueRef<'_>,
    depth: usize,
) -> Result<(), TranscodeError> {
    use rmpv::ValueRef;
    if depth > MAX_DEPTH {
        return Err(TranscodeError::TooDeep);
    }
    match value {
        ValueRef::Nil => out.push_str("null"),
        ValueRef::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        ValueRef::Integer(i) => {
            // An rmpv integer is an i64 or a u64; both print exactly.
            let _ = match (i.as_u64(), i.as_i64()) {
                (Some(u), _) => write!(out, "{u}"),
                (None, Some(s)) => write!(out, "{s}"),
                (None, None) => unreachable!("an rmpv integer is an i64 or a u64"),
            };
        }
        ValueRef::F32(f) => write_float(out, f64::from(*f))?,
        ValueRef::F64(f) => write_float(out, *f)?,
        ValueRef::String(s) => match s.as_str() {
            Some(s) => write_string(out, s),
            None => return Err(TranscodeError::NoJson("a string that is not UTF-8")),
        },
        ValueRef::Binary(b) => {
            out.push_str("{\"$bin\":");
            write_bytes(out, b);
            out.push('}');
        }
        ValueRef::Ext(ty, data) => {
            let _ = write!(out, "{{\"$ext\":[{ty},");
            write_bytes(out, data);
            out.push_str("]}");
        }
        ValueRef::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item, depth + 1)?;
            }
            out.push(']');
        }
        ValueRef::Map(entries) => {
            let plain = entries.iter().all(|(k, _)| key_str(k).is_some())
                && !(entries.len() == 1
                    && key_str(&entries[0].0).is_some_and(|k| k.starts_with('$')));
            if plain {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, key_str(k).unwrap_or_default());
                    out.push(':');
                    write_json(out, v, depth + 1)?;
                }
                out.push('}');
            } else {
                out.push_str("{\"$map\":[");
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('[');
                    write_json(out, k, depth + 1)?;
                    out.push(',');
                    write_json(out, v, depth + 1)?;
                    out.push(']');
                }
                out.push_str("]}");
            }
        }
    }
    Ok(())
}

fn key_str<'a>(key: &'a rmpv::ValueRef<'_>) -> Option<&'a str> {
    match key {
        rmpv::ValueRef::String(s) => s.as_str(),
        _ => None,
    }
}

fn write_float(out: &mut String, f: f64) -> Result<(), TranscodeError> {
    if !f.is_finite() {
        return Err(TranscodeError::NoJson("a NaN or infinite float"));
    }
    // `{:?}` is the shortest form that reads back as the same f64, and always has a `.` or an
    // exponent (`1.0`, `1e100`), so it reads back as a float.
    let _ = write!(out, "{f:?}");
    Ok(())
}

fn write_bytes(out: &mut String, bytes: &[u8]) {
    out.push('[');
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{b}");
    }
    out.push(']');
}

/// A JSON string in ASCII: `"` `\` and controls escaped, everything past ASCII as `\u` (UTF-16).
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// JSON text as MessagePack bytes, undoing [`to_json`]'s escapes (empty stays empty).
pub fn from_json(json: &[u8]) -> Result<Vec<u8>, TranscodeError> {
    if json.is_empty() {
        return Ok(Vec::new());
    }
    let mut parser = Parser { text: json, at: 0 };
    let value = parser.value(0)?;
    parser.skip_space();
    if parser.at != json.len() {
        return Err(parser.error("trailing characters after the value"));
    }
    let mut out = Vec::with_capacity(json.len());
    rmpv::encode::write_value(&mut out, &value).expect("writing to a Vec cannot fail");
    Ok(out)
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, why: impl Into<String>) -> TranscodeError {
        TranscodeError::Json {
            at: self.at,
            why: why.into(),
        }
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.text.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), TranscodeError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.error(format!("expected `{}`", byte as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, TranscodeError> {
        if depth > MAX_DEPTH {
            return Err(TranscodeError::TooDeep);
        }
        self.skip_space();
        match self.text.get(self.at) {
            None => Err(self.error("unexpected end")),
            Some(b'{') => {
                self.at += 1;
                let mut entries = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.skip_space();
                        let key = self.string()?;
                        self.expect(b':')?;
                        entries.push((Value::from(key), self.value(depth + 1)?));
                        if self.eat(b'}') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                self.unescape(entries)
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if self.eat(b']') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Ok(Value::Array(items))
            }
            Some(b'"') => Ok(Value::from(self.string()?)),
            Some(b't') => self.literal("true", Value::Boolean(true)),
            Some(b'f') => self.literal("false", Value::Boolean(false)),
            Some(b'n') => self.literal("null", Value::Nil),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, TranscodeError> {
        if self.text[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// A number: an integer (i64 or u64, or refused) unless it has a fraction or an exponent.
    fn number(&mut self) -> Result<Value, TranscodeError> {
        let start = self.at;
        let mut float = false;
        while let Some(&b) = self.text.get(self.at) {
            match b {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => float = true,
                _ => break,
            }
            self.at += 1;
        }
        let token = std::str::from_utf8(&self.text[start..self.at]).expect("ASCII");
        let digits = token.strip_prefix('-').unwrap_or(token);
        let int_part = digits.split(['.', 'e', 'E']).next().unwrap_or_default();
        let valid = !int_part.is_empty()
            && int_part.bytes().all(|b| b.is_ascii_digit())
            && (int_part == "0" || !int_part.starts_with('0'));
        if !valid {
            self.at = start;
            return Err(self.error(format!("malformed number {token:?}")));
        }
        if float {
            // Rust's parse rounds correctly (serde_json's default parse may miss by an ulp).
            return match token.parse::<f64>() {
                Ok(f) if f.is_finite() && json_float(digits) => Ok(Value::F64(f)),
                _ => {
                    self.at = start;
                    Err(self.error(format!("malformed or out-of-range number {token:?}")))
                }
            };
        }
        if let Ok(u) = token.parse::<u64>() {
            Ok(Value::from(u))
        } else if let Ok(i) = token.parse::<i64>() {
            Ok(Value::from(i))
        } else {
            self.at = start;
            Err(self.error(format!(
                "integer {token} is outside the 64-bit range MessagePack stores"
            )))
        }
    }

    /// A string token, escapes decoded by serde_json (which also checks them).
    fn string(&mut self) -> Result<String, TranscodeError> {
        if self.text.get(self.at) != Some(&b'"') {
            return Err(self.error("expected a string"));
        }
        let start = self.at;
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            match self.text.get(i) {
                None => return Err(self.error("unterminated string")),
                Some(b'\\') => {
                    escaped = true;
                    i += 2;
                }
                Some(b'"') => break,
                Some(_) => i += 1,
            }
        }
        let token = &self.text[start..=i];
        let s = if escaped {
            serde_json::from_slice::<String>(token).map_err(|e| self.error(e.to_string()))?
        } else {
            std::str::from_utf8(&token[1..token.len() - 1])
                .map_err(|_| self.error("a string that is not UTF-8"))?
                .to_owned()
        };
        if !escaped && token.iter().any(|b| *b < 0x20) {
            return Err(self.error("a control character in a string"));
        }
        self.at = i + 1;
        Ok(s)
    }

    /// An object: a plain map, or (one key starting with `$`) one of [`to_json`]'s escapes.
    fn unescape(&self, mut entries: Vec<(Value, Value)>) -> Result<Value, TranscodeError> {
        let escape =
            entries.len() == 1 && entries[0].0.as_str().is_some_and(|k| k.starts_with('$'));
        if !escape {
            return Ok(Value::Map(entries));
        }
        let (key, value) = entries.pop().expect("one entry");
        let bad = |why: &str| {
            self.error(format!(
                "{why} (an object with one key starting with `$` is an escape: $bin, $ext or $map)"
            ))
        };
        match key.as_str() {
            Some("$bin") => Ok(Value::Binary(
                bytes(&value).ok_or_else(|| bad("`$bin` takes an array of bytes"))?,
            )),
            Some("$ext") => match value {
                Value::Array(parts) if parts.len() == 2 => {
                    let ty = parts[0]
                        .as_i64()
                        .and_then(|t| i8::try_from(t).ok())
                        .ok_or_else(|| bad("`$ext` takes [type (i8), bytes]"))?;
                    let data =
                        bytes(&parts[1]).ok_or_else(|| bad("`$ext` takes [type (i8), bytes]"))?;
                    Ok(Value::Ext(ty, data))
                }
                _ => Err(bad("`$ext` takes [type (i8), bytes]")),
            },
            Some("$map") => match value {
                Value::Array(pairs) => pairs
                    .into_iter()
                    .map(|pair| match pair {
                        Value::Array(mut kv) if kv.len() == 2 => {
                            let v = kv.pop().expect("two");
                            Ok((kv.pop().expect("two"), v))
                        }
                        _ => Err(bad("`$map` takes an array of [key, value] pairs")),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Map),
                _ => Err(bad("`$map` takes an array of [key, value] pairs")),
            },
            _ => Err(bad(&format!(
                "unknown escape {:?}",
                key.as_str().unwrap_or_default()
            ))),
        }
    }
}

/// JSON's grammar for a number with a fraction or an exponent (after the sign):
/// `int[.digits][(e|E)[+|-]digits]`, the integer part already checked.
fn json_float(unsigned: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let fraction_ok = match mantissa.split_once('.') {
        Some((int, fraction)) => digits(int) && digits(fraction),
        None => digits(mantissa),
    };
    fraction_ok && exponent.is_none_or(digits)
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msgpack(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).unwrap();
        out
    }

    /// MessagePack values as the host stores them (f64 floats: f32 comes back widened).
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::Boolean),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
                .prop_map(Value::F64),
            ".*".prop_map(Value::from),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(Value::Binary),
            (any::<i8>(), prop::collection::vec(any::<u8>(), 0..8))
                .prop_map(|(t, d)| Value::Ext(t, d)),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(
                    ("\\$?[a-z]{0,3}".prop_map(Value::from), inner.clone()),
                    0..4
                )
                .prop_map(Value::Map),
                prop::collection::vec((inner.clone(), inner), 0..3).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn msgpack_survives_json_unchanged(v in value()) {
            let bytes = msgpack(&v);
            let json = to_json(&bytes).unwrap();
            prop_assert!(json.is_ascii(), "{}", String::from_utf8_lossy(&json));
            // What a guest's own parser reads is plain JSON.
            serde_json::from_slice::<serde_json::Value>(&json).unwrap();
            prop_assert_eq!(from_json(&json).unwrap(), bytes);
        }
    }

    #[test]
    fn ints_stay_ints_and_floats_stay_floats() {
        let v = Value::Array(vec![
            Value::from(1),
            Value::F64(1.0),
            Value::F32(0.5),
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::F64(1e300),
            Value::F64(-0.0),
        ]);
        let json = to_json(&msgpack(&v)).unwrap();
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            "[1,1.0,0.5,18446744073709551615,-9223372036854775808,1e300,-0.0]"
        );
        let back: Value =
            rmpv::decode::read_value(&mut from_json(&json).unwrap().as_slice()).unwrap();
        let Value::Array(items) = back else { panic!() };
        assert!(items[0].is_u64() && items[1].is_f64() && items[2] == Value::F64(0.5));
    }

    #[test]
    fn what_json_cannot_say_is_escaped() {
        let v = Value::Map(vec![
            (Value::from("b"), Value::Binary(vec![0, 255])),
            (
                Value::from("m"),
                Value::Map(vec![(Value::from(7), Value::from("seven"))]),
            ),
            (
                Value::from("s"),
                Value::Map(vec![(Value::from("$bin"), Value::from(1))]),
            ),
            (Value::from("é"), Value::from("ü😀")),
        ]);
        let json = String::from_utf8(to_json(&msgpack(&v)).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"b":{"$bin":[0,255]},"m":{"$map":[[7,"seven"]]},"s":{"$map":[["$bin",1]]},"\u00e9":"\u00fc\ud83d\ude00"}"#
        );
        assert_eq!(from_json(json.as_bytes()).unwrap(), msgpack(&v));
    }

    #[test]
    fn guest_json_reads_as_the_same_msgpack_a_guest_would_write() {
        let json =
            br#" {"a": [1, -2, 2.5, true, null, "x\u00e9"], "two": {"$bin": [1]}, "k": {}} "#;
        let expected = Value::Map(vec![
            (
                Value::from("a"),
                Value::Array(vec![
                    Value::from(1),
                    Value::from(-2),
                    Value::F64(2.5),
                    Value::Boolean(true),
                    Value::Nil,
                    Value::from("xé"),
                ]),
            ),
            (Value::from("two"), Value::Binary(vec![1])),
            (Value::from("k"), Value::Map(vec![])),
        ]);
        assert_eq!(from_json(json).unwrap(), msgpack(&expected));
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        for (json, why) in [
            (&br#"{"a":1"#[..], "expected `,`"),
            (b"18446744073709551616", "outside the 64-bit range"),
            (b"01", "malformed number"),
            (b"1.", "malformed"),
            (br#"{"$nope":1}"#, "unknown escape"),
            (br#"{"$bin":[256]}"#, "array of bytes"),
            (b"[1] x", "trailing"),
            (b"\"a\x01\"", "control character"),
        ] {
            let e = from_json(json).unwrap_err().to_string();
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(json));
        }
        let nan = msgpack(&Value::F64(f64::NAN));
        assert_eq!(
            to_json(&nan),
            Err(TranscodeError::NoJson("a NaN or infinite float"))
        );
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert_eq!(from_json(deep.as_bytes()), Err(TranscodeError::TooDeep));
    }

    #[test]
    fn the_declaration_is_a_top_level_custom_section() {
        // The preamble of an empty component (`(component)`).
        let component = b"\0asm\x0d\0\x01\0".to_vec();
        assert_eq!(declared(&component), Ok(Boundary::MessagePack));
        let mut with = component.clone();
        let name = SECTION.as_bytes();
        let content = b"json";
        with.push(0);
        with.push((1 + name.len() + content.len()) as u8);
        with.push(name.len() as u8);
        with.extend_from_slice(name);
        with.extend_from_slice(content);
        assert_eq!(declared(&with), Ok(Boundary::Json));
        let mut wrong = component;
        wrong.extend_from_slice(&[0, 1 + name.len() as u8 + 3, name.len() as u8]);
        wrong.extend_from_slice(name);
        wrong.extend_from_slice(b"xml");
        assert!(
            declared(&wrong)
                .unwrap_err()
                .contains("must be `json` or `msgpack`")
        );
        assert_eq!(
            custom_sections(b"\0asm\x0d\0\x01\0\x00\x7f").unwrap_err(),
            "malformed component binary: section runs past the end"
        );
        // Left to the compiler to refuse.
        assert_eq!(declared(b"not wasm at all"), Ok(Boundary::MessagePack));
    }
}
