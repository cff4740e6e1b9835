//! The TOML document as a tree that remembers where everything was written.
//!
//! `toml` parses the text; this module deserialises it into a generic tree
//! whose every value and key carries its byte span (through
//! `toml::Spanned`), so that the schema in `parse.rs` can check types,
//! unknown keys and values itself and name the line of any mistake.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

/// A value and the bytes of the document it was written in.
#[derive(Debug)]
pub(super) struct Item {
    pub span: Range<usize>,
    pub value: Value,
}

/// A TOML value. Dates and times are not used by the configuration and are
/// refused by the parser.
#[derive(Debug)]
pub(super) enum Value {
    String(String),
    Integer(i64),
    /// A floating-point number (no key takes one; only its kind is kept).
    Float,
    /// A boolean (no key takes one yet; only its kind is kept).
    Boolean,
    Array(Vec<Item>),
    Table(Vec<(Key, Item)>),
}

/// A key of a table and where it was written.
#[derive(Debug)]
pub(super) struct Key {
    pub name: String,
    pub span: Range<usize>,
}

impl Value {
    /// The kind of value, as an error message names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float => "a floating-point number",
            Value::Boolean => "a boolean",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// Parses `text` into a tree; the root is a table spanning from offset 0.
pub(super) fn parse(text: &str) -> Result<Item, toml::de::Error> {
    toml::from_str(text)
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        let span = spanned.span();
        Ok(Item {
            span,
            value: spanned.into_inner(),
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Boolean)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Integer)
            .map_err(|_| E::custom("integer too large"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Float)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Item>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let span = key.span();
            let item = map.next_value::<Item>()?;
            entries.push((
                Key {
                    name: key.into_inner(),
                    span,
                },
                item,
            ));
        }
        Ok(Value::Table(entries))
    }
}
