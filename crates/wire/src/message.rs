use std::ops::Range;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::error::{ErrorCode, ParseError};

/// A JSON-RPC request ID: a string or an integer, never null (LIFE-04).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    /// An integer ID.
    Number(i64),
    /// A string ID.
    String(Arc<str>),
}

impl Id {
    /// The ID as JSON text, ready to splice into a message.
    pub fn to_json(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            // Serialising a str cannot fail.
            Self::String(s) => serde_json::to_string(&**s).unwrap_or_default(),
        }
    }

    fn from_raw(raw: &RawValue) -> Result<Self, ParseError> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<String>(text)
                .map(|s| Self::String(s.into()))
                .map_err(|_| ParseError::Invalid("malformed string id")),
            Some(b'-' | b'0'..=b'9') => text
                .parse::<i64>()
                .map(Self::Number)
                .map_err(|_| ParseError::Invalid("id must be a string or an integer")),
            Some(b'n') => Err(ParseError::Invalid("id must not be null")),
            _ => Err(ParseError::Invalid("id must be a string or an integer")),
        }
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number(n) => s.serialize_i64(*n),
            Self::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Self::from_raw(&raw).map_err(serde::de::Error::custom)
    }
}

/// What a message is. Exactly one applies (LIFE-05).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`: expects a response.
    Request,
    /// Has `method` and no `id`.
    Notification,
    /// Has `id` and `result`.
    Response,
    /// Has `id` and `error`.
    ErrorResponse,
}

/// One parsed JSON-RPC 2.0 message that keeps its original bytes.
#[derive(Debug, Clone)]
pub struct Message {
    raw: Bytes,
    kind: Kind,
    method: Option<Box<str>>,
    id: Option<Id>,
    id_span: Option<Range<usize>>,
    params_span: Option<Range<usize>>,
}

/// A field that may be absent, present or present as `null`; `Option` alone would
/// fold `null` into absence, and `"id": null` must be refused, not ignored.
#[derive(Default)]
struct Slot<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Slot<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|r| Slot(Some(r)))
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    jsonrpc: Slot<'a>,
    #[serde(default, borrow)]
    id: Slot<'a>,
    #[serde(default, borrow)]
    method: Slot<'a>,
    #[serde(default, borrow)]
    params: Slot<'a>,
    #[serde(default, borrow)]
    result: Slot<'a>,
    #[serde(default, borrow)]
    error: Slot<'a>,
}

/// A JSON value read in one pass that fails on an object with a repeated key, at any
/// depth (serde_json's own `Value` keeps the last copy).
struct UniqueValue(serde_json::Value);

impl<'de> Deserialize<'de> for UniqueValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde_json::{Number, Value};
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = UniqueValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value without repeated keys")
            }
            fn visit_bool<E>(self, b: bool) -> Result<UniqueValue, E> {
                Ok(UniqueValue(Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<UniqueValue, E> {
                Ok(UniqueValue(Value::Number(n.into())))
            }
            fn visit_u64<E>(self, n: u64) -> Result<UniqueValue, E> {
                Ok(UniqueValue(Value::Number(n.into())))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<UniqueValue, E> {
                Number::from_f64(n)
                    .map(|n| UniqueValue(Value::Number(n)))
                    .ok_or_else(|| E::custom("a number JSON cannot hold"))
            }
            fn visit_str<E>(self, s: &str) -> Result<UniqueValue, E> {
                Ok(UniqueValue(Value::String(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<UniqueValue, E> {
                Ok(UniqueValue(Value::String(s)))
            }
            fn visit_unit<E>(self) -> Result<UniqueValue, E> {
                Ok(UniqueValue(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<UniqueValue, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(UniqueValue(v)) = seq.next_element()? {
                    items.push(v);
                }
                Ok(UniqueValue(Value::Array(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueValue, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let UniqueValue(v) = map.next_value()?;
                    if out.insert(key, v).is_some() {
                        return Err(serde::de::Error::custom("duplicate key"));
                    }
                }
                Ok(UniqueValue(Value::Object(out)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Deserialises any JSON value and fails on an object with a repeated key, at any
/// depth.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = NoDuplicates;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value without duplicate keys")
            }
            fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<NoDuplicates, A::Error> {
                while seq.next_element::<NoDuplicates>()?.is_some() {}
                Ok(NoDuplicates)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<NoDuplicates, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if !seen.insert(key.into_owned()) {
                        return Err(serde::de::Error::custom("duplicate key"));
                    }
                    map.next_value::<NoDuplicates>()?;
                }
                Ok(NoDuplicates)
            }
        }
        d.deserialize_any(V)
    }
}

fn span_of(input: &[u8], raw: &RawValue) -> Range<usize> {
    // `raw` borrows from `input` (serde_json's borrowed RawValue), so the offset is
    // the distance between the two pointers; computed without `unsafe`.
    let start = (raw.get().as_ptr() as usize).saturating_sub(input.as_ptr() as usize);
    start..start + raw.get().len()
}

impl Message {
    /// Parses one JSON-RPC 2.0 message, keeping `raw` as its bytes.
    ///
    /// Refuses invalid UTF-8 and JSON (TR-12), arrays (TR-06), duplicate keys, a
    /// missing or wrong `jsonrpc`, null or fractional IDs (LIFE-04), and responses
    /// without exactly one of `result` and `error` (LIFE-05).
    pub fn parse(raw: Bytes) -> Result<Self, ParseError> {
        let text = std::str::from_utf8(&raw).map_err(|_| ParseError::NotUtf8)?;
        match text.trim_start().as_bytes().first() {
            Some(b'[') => {
                // Only call it a batch when it is valid JSON; otherwise it is a parse error.
                return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                    Ok(_) => Err(ParseError::Batch),
                    Err(e) => Err(ParseError::Syntax(e.to_string())),
                };
            }
            Some(b'{') => {}
            _ => {
                return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                    Ok(_) => Err(ParseError::NotObject),
                    Err(e) => Err(ParseError::Syntax(e.to_string())),
                };
            }
        }
        let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                ParseError::Syntax(e.to_string())
            } else if e.to_string().starts_with("duplicate field") {
                ParseError::Invalid("duplicate member")
            } else {
                ParseError::Invalid("malformed envelope")
            }
        })?;
        match env.jsonrpc.0.map(RawValue::get) {
            Some("\"2.0\"") => {}
            Some(_) => return Err(ParseError::Invalid("jsonrpc must be \"2.0\"")),
            None => return Err(ParseError::Invalid("missing jsonrpc")),
        }
        let input = raw.as_ref();
        let id_span = env.id.0.map(|r| span_of(input, r));
        let params_span = env.params.0.map(|r| span_of(input, r));
        if let Some(p) = env.params.0 {
            if !matches!(p.get().as_bytes().first(), Some(b'{' | b'[')) {
                return Err(ParseError::Invalid("params must be an object or array"));
            }
            // A duplicated key reads differently to different parsers (first wins or
            // last wins): refuse it anywhere in params, where routing and policy look.
            serde_json::from_str::<NoDuplicates>(p.get())
                .map_err(|_| ParseError::Invalid("duplicate member in params"))?;
        }
        let (kind, method, id) = match env.method.0 {
            Some(m) => {
                let method = serde_json::from_str::<String>(m.get())
                    .map_err(|_| ParseError::Invalid("method must be a string"))?;
                if env.result.0.is_some() || env.error.0.is_some() {
                    return Err(ParseError::Invalid(
                        "a request cannot carry result or error",
                    ));
                }
                match env.id.0 {
                    Some(id) => (Kind::Request, Some(method), Some(Id::from_raw(id)?)),
                    None => (Kind::Notification, Some(method), None),
                }
            }
            None => {
                let id = match env.id.0 {
                    Some(id) => Id::from_raw(id)?,
                    None => return Err(ParseError::Invalid("missing method or id")),
                };
                if params_span.is_some() {
                    return Err(ParseError::Invalid("a response cannot carry params"));
                }
                match (env.result.0, env.error.0) {
                    (Some(_), None) => (Kind::Response, None, Some(id)),
                    (None, Some(_)) => (Kind::ErrorResponse, None, Some(id)),
                    _ => {
                        return Err(ParseError::Invalid(
                            "a response needs exactly one of result and error",
                        ));
                    }
                }
            }
        };
        Ok(Self {
            kind,
            method: method.map(String::into_boxed_str),
            id,
            id_span,
            params_span,
            raw,
        })
    }

    /// What kind of message this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The ID of a request or response.
    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    /// Whether this is a request (expects a response).
    pub fn is_request(&self) -> bool {
        self.kind == Kind::Request
    }

    /// Whether this is a response or an error response.
    pub fn is_response(&self) -> bool {
        matches!(self.kind, Kind::Response | Kind::ErrorResponse)
    }

    /// The original bytes.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The original bytes, consuming the message.
    pub fn into_bytes(self) -> Bytes {
        self.raw
    }

    /// The raw JSON text of `params`, if present.
    pub fn params_raw(&self) -> Option<&str> {
        let span = self.params_span.clone()?;
        std::str::from_utf8(self.raw.get(span)?).ok()
    }

    /// Deserialises `params` into `T`. Absent params deserialise from `{}`.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.params_raw().unwrap_or("{}"))
    }

    /// The whole message as a JSON object, for guards that must rewrite it.
    pub fn to_value(&self) -> Result<serde_json::Map<String, serde_json::Value>, ParseError> {
        serde_json::from_slice(&self.raw).map_err(|e| ParseError::Syntax(e.to_string()))
    }

    /// The whole message as a JSON object, refused when an object anywhere in it
    /// repeats a key: parsers disagree on which copy counts, so what one inspects
    /// need not be what another reads.
    pub fn to_unique_value(
        &self,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ParseError> {
        match serde_json::from_slice::<UniqueValue>(&self.raw) {
            Ok(UniqueValue(serde_json::Value::Object(map))) => Ok(map),
            _ => Err(ParseError::Invalid(
                "a repeated member or an unreadable value",
            )),
        }
    }

    /// The same message with its `id` replaced, spliced into the original bytes so
    /// that nothing else changes (LIFE-04). A message without an ID is returned as is.
    pub fn with_id(&self, id: &Id) -> Self {
        let Some(span) = self.id_span.clone() else {
            return self.clone();
        };
        let new_id = id.to_json();
        let mut out = BytesMut::with_capacity(self.raw.len() + new_id.len());
        out.put_slice(&self.raw[..span.start]);
        out.put_slice(new_id.as_bytes());
        out.put_slice(&self.raw[span.end..]);
        let delta = new_id.len() as isize - span.len() as isize;
        let shift = |r: Range<usize>| -> Range<usize> {
            if r.start > span.start {
                (r.start as isize + delta) as usize..(r.end as isize + delta) as usize
            } else {
                r
            }
        };
        Self {
            raw: out.freeze(),
            kind: self.kind,
            method: self.method.clone(),
            id: Some(id.clone()),
            id_span: Some(span.start..span.start + new_id.len()),
            params_span: self.params_span.clone().map(shift),
        }
    }

    /// The string member `key` of an object `params`, if present.
    pub fn param_str(&self, key: &str) -> Option<String> {
        let (_, value) = self.param_member(key)?;
        serde_json::from_str::<String>(value).ok()
    }

    /// The span (in `raw`) and text of the top-level member `key` of `params`.
    fn param_member(&self, key: &str) -> Option<(Range<usize>, &str)> {
        let span = self.params_span.clone()?;
        let params = std::str::from_utf8(self.raw.get(span.clone())?).ok()?;
        // Values stay raw: only the top level of params is read.
        let members: std::collections::HashMap<std::borrow::Cow<'_, str>, &RawValue> =
            serde_json::from_str(params).ok()?;
        let value = members.get(key)?;
        let offset = (value.get().as_ptr() as usize).checked_sub(params.as_ptr() as usize)?;
        let start = span.start + offset;
        Some((start..start + value.get().len(), value.get()))
    }

    /// The same message with the string member `key` of `params` replaced, spliced
    /// into the original bytes (a namespaced tool name becomes the upstream's own);
    /// `None` when `params` has no such member.
    pub fn with_param_str(&self, key: &str, value: &str) -> Option<Self> {
        let (span, _) = self.param_member(key)?;
        let new = serde_json::to_string(value).ok()?;
        let mut out = BytesMut::with_capacity(self.raw.len() + new.len());
        out.put_slice(&self.raw[..span.start]);
        out.put_slice(new.as_bytes());
        out.put_slice(&self.raw[span.end..]);
        Self::parse(out.freeze()).ok()
    }

    /// Builds a message from a JSON object (a guard's rewrite); it is validated like
    /// any received message.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, ParseError> {
        let bytes = serde_json::to_vec(value).map_err(|e| ParseError::Syntax(e.to_string()))?;
        Self::parse(Bytes::from(bytes))
    }

    /// A request with the given ID, method and params.
    pub fn request(id: &Id, method: &str, params: &impl Serialize) -> Self {
        #[derive(Serialize)]
        struct Out<'a, P> {
            jsonrpc: &'static str,
            id: &'a Id,
            method: &'a str,
            params: &'a P,
        }
        Self::built(&Out {
            jsonrpc: "2.0",
            id,
            method,
            params,
        })
    }

    /// A notification with the given method and params.
    pub fn notification(method: &str, params: &impl Serialize) -> Self {
        #[derive(Serialize)]
        struct Out<'a, P> {
            jsonrpc: &'static str,
            method: &'a str,
            params: &'a P,
        }
        Self::built(&Out {
            jsonrpc: "2.0",
            method,
            params,
        })
    }

    /// A successful response.
    pub fn response(id: &Id, result: &impl Serialize) -> Self {
        #[derive(Serialize)]
        struct Out<'a, R> {
            jsonrpc: &'static str,
            id: &'a Id,
            result: &'a R,
        }
        Self::built(&Out {
            jsonrpc: "2.0",
            id,
            result,
        })
    }

    /// An error response. Without an ID (the request could not be read) the `id`
    /// member is omitted, as MCP 2025-11-25 allows.
    pub fn error(id: Option<&Id>, code: ErrorCode, message: &str) -> Self {
        Self::error_with_data(id, code, message, None)
    }

    /// An error response with a `data` member.
    pub fn error_with_data(
        id: Option<&Id>,
        code: ErrorCode,
        message: &str,
        data: Option<serde_json::Value>,
    ) -> Self {
        #[derive(Serialize)]
        struct ErrorObject<'a> {
            code: i64,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<serde_json::Value>,
        }
        #[derive(Serialize)]
        struct Out<'a> {
            jsonrpc: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a Id>,
            error: ErrorObject<'a>,
        }
        let out = Out {
            jsonrpc: "2.0",
            id,
            error: ErrorObject {
                code: code.code(),
                message,
                data,
            },
        };
        // An error without an ID is not a routable response; keep its bytes without
        // classifying it (it only ever goes to the peer that caused it).
        match id {
            Some(_) => Self::built(&out),
            None => Self {
                raw: Bytes::from(serde_json::to_vec(&out).unwrap_or_default()),
                kind: Kind::ErrorResponse,
                method: None,
                id: None,
                id_span: None,
                params_span: None,
            },
        }
    }

    fn built(value: &impl Serialize) -> Self {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        match Self::parse(Bytes::from(bytes)) {
            Ok(m) => m,
            // Unreachable for the shapes above; degrade to an internal error rather
            // than panic.
            Err(_) => Self::error(None, ErrorCode::InternalError, "internal error"),
        }
    }
}

#[cfg(test)]
mod tests;
