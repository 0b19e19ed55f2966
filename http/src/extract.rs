//! Extractors that fail with [`ApiError`], so malformed bodies, paths,
//! query strings and headers get our JSON error format, never axum's plain
//! text rejections.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use tidefeed_engine::{Precondition, Seq};

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON request body: `Content-Type: application/json` (or `+json`),
/// at most `max_body_bytes`, parsed into `T`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Json<T>, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(request, state.options().max_body_bytes).await?;
        parse(&bytes).map(Json)
    }
}

/// A JSON body that may be absent (an empty body).
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<OptionalJson<T>, ApiError> {
        let json = is_json(request.headers());
        let bytes = read_body(request, state.options().max_body_bytes).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(None));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse(&bytes).map(|value| OptionalJson(Some(value)))
    }
}

/// Parses a body: first as JSON refusing duplicate object keys at any
/// depth (plain parsing would keep the last one silently), then into `T`.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let invalid = |error: serde_json::Error| ApiError::InvalidJson(error.to_string());
    let UniqueKeys(value) = serde_json::from_slice(bytes).map_err(invalid)?;
    check_integer_literals(bytes).map_err(ApiError::InvalidJson)?;
    T::deserialize(value).map_err(invalid)
}

/// Refuses integer literals beyond the 64-bit range (below -2^63 or above
/// 2^64 - 1): a JSON parser turns them into doubles and loses digits, so
/// a json column would store a different number than the one sent. Runs
/// on a body that parsed, so strings and numbers are well formed.
fn check_integer_literals(bytes: &[u8]) -> Result<(), String> {
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let is_integer = !matches!(bytes.get(i), Some(b'.' | b'e' | b'E'));
            let literal = std::str::from_utf8(&bytes[start..i]).unwrap_or_default();
            if is_integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                return Err(format!(
                    "the integer {literal} is outside the 64-bit range and would lose digits; send it as a string, or as a float if rounding is fine"
                ));
            }
            // Skip the rest of a float literal.
            while i < bytes.len()
                && matches!(bytes[i], b'.' | b'e' | b'E' | b'+' | b'-' | b'0'..=b'9')
            {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    Ok(())
}

/// A JSON value whose objects have no duplicate keys.
struct UniqueKeys(serde_json::Value);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<UniqueKeys, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<serde_json::Value, E> {
        serde_json::Number::from_f64(v)
            .map(serde_json::Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<serde_json::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<serde_json::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            let UniqueKeys(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads the whole body, refusing it past `limit` bytes: at once when its
/// declared length says so, otherwise as soon as it grows past the limit.
async fn read_body(request: Request, limit: usize) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(error) => Err(ApiError::InvalidJson(format!(
            "the request body could not be read: {error}"
        ))),
    }
}

/// Path parameters, percent-decoded. Parameters that are not UTF-8 are
/// rejected by name: `table` as a bad table name, `key` as a bad key.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Path<T>, ApiError> {
        use axum::extract::path::ErrorKind;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => Err(match error.kind() {
                ErrorKind::InvalidUtf8InPathParam { key } if key == "table" => {
                    ApiError::BadTableName {
                        table: "<not UTF-8>".into(),
                    }
                }
                ErrorKind::InvalidUtf8InPathParam { key } if key == "key" => {
                    ApiError::BadKey("the key in the path is not UTF-8 once percent-decoded".into())
                }
                _ => ApiError::BadPath(error.body_text()),
            }),
            Err(other) => Err(ApiError::Internal(other.body_text())),
        }
    }
}

/// A query string deserialized into `T`; unknown parameters are refused
/// where `T` says so (`deny_unknown_fields`).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Query<T>, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| ApiError::BadQuery(rejection.body_text()))
    }
}

/// The `If-Match` header: the ETag (`"<seq>"`) a write expects the row to
/// have. Absent: the write is unconditional.
pub struct IfMatch(pub Option<Precondition>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    /// `If-Match: "<seq>"` (the row's ETag) or `If-Match: *` (any current
    /// row), and `If-None-Match: *` (no row: insert only). At most one of
    /// them, with one value.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<IfMatch, ApiError> {
        let if_match = single_header(parts, axum::http::header::IF_MATCH, "If-Match")?;
        let if_none_match =
            single_header(parts, axum::http::header::IF_NONE_MATCH, "If-None-Match")?;
        match (if_match, if_none_match) {
            (None, None) => Ok(IfMatch(None)),
            (Some(_), Some(_)) => Err(ApiError::BadHeader {
                header: "If-None-Match",
                message: "give If-Match or If-None-Match, not both".to_owned(),
            }),
            (Some(text), None) => parse_etag(&text)
                .map(|precondition| IfMatch(Some(precondition)))
                .map_err(|message| ApiError::BadHeader {
                    header: "If-Match",
                    message: message.to_owned(),
                }),
            (None, Some(text)) if text == "*" => Ok(IfMatch(Some(Precondition::Absent))),
            (None, Some(_)) => Err(ApiError::BadHeader {
                header: "If-None-Match",
                message: "only \"*\" (insert only if the row does not exist) is supported"
                    .to_owned(),
            }),
        }
    }
}

/// The one value of `name`, trimmed; an error if it is given twice or is
/// not ASCII.
fn single_header(
    parts: &Parts,
    name: axum::http::HeaderName,
    label: &'static str,
) -> Result<Option<String>, ApiError> {
    let mut values = parts.headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = |message: &str| ApiError::BadHeader {
        header: label,
        message: message.to_owned(),
    };
    if values.next().is_some() {
        return Err(bad("give it once, with one value"));
    }
    let text = value.to_str().map_err(|_| bad("not ASCII"))?.trim();
    Ok(Some(text.to_owned()))
}

/// Parses `If-Match`: a strong ETag `"<seq>"`, or `*` for any current row.
fn parse_etag(text: &str) -> Result<Precondition, &'static str> {
    if text == "*" {
        return Ok(Precondition::Exists);
    }
    if text.starts_with("W/") {
        return Err("a weak ETag never matches; give the row's ETag, \"<seq>\"");
    }
    text.strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|seq| seq.parse::<Seq>().ok())
        .map(Precondition::Version)
        .ok_or("expected one ETag of the form \"<seq>\", or *")
}

/// The `ETag` header value of a row version.
pub fn etag(seq: Seq) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_str(&format!("\"{seq}\"")).expect("digits and quotes")
}

/// The `Last-Event-ID` header an SSE client sends when it reconnects.
pub struct LastEventId(pub Option<Seq>);

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<LastEventId, ApiError> {
        let Some(value) = parts.headers.get("last-event-id") else {
            return Ok(LastEventId(None));
        };
        let text = value
            .to_str()
            .map_err(|_| ApiError::BadHeader {
                header: "Last-Event-ID",
                message: "not ASCII, so not an event id (a seq)".to_owned(),
            })?
            .trim();
        if text.is_empty() {
            // EventSource sends an empty id when the last event had none.
            return Ok(LastEventId(None));
        }
        text.parse::<Seq>()
            .map(|seq| LastEventId(Some(seq)))
            .map_err(|_| ApiError::BadHeader {
                header: "Last-Event-ID",
                message: format!("{text:?} is not an event id (a seq)"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_and_integers_beyond_64_bits_are_refused() {
        let ok: serde_json::Value = parse(br#"{"a": 1, "b": {"c": [1, {"d": 2}]}}"#).unwrap();
        assert_eq!(ok["b"]["c"][1]["d"], 2);
        for body in [
            &br#"{"a": 1, "a": 2}"#[..],
            br#"{"row": {"id": 1, "id": 2}}"#,
            br#"[{"x": null, "x": null}]"#,
        ] {
            let err = parse::<serde_json::Value>(body).unwrap_err();
            assert!(
                matches!(&err, ApiError::InvalidJson(m) if m.contains("appears twice")),
                "{err:?}"
            );
        }
        // Integers beyond 64 bits would become doubles: refused, inside
        // strings they are text.
        for body in [
            &b"123456789012345678901234567890"[..],
            br#"{"j": [1, -9223372036854775809]}"#,
            br#"{"j": 18446744073709551616}"#,
        ] {
            let err = parse::<serde_json::Value>(body).unwrap_err();
            assert!(
                matches!(&err, ApiError::InvalidJson(m) if m.contains("64-bit")),
                "{err:?}"
            );
        }
        for body in [
            &br#"{"j": 18446744073709551615, "k": -9223372036854775808}"#[..],
            br#"{"s": "123456789012345678901234567890", "e": "\"99999999999999999999"}"#,
            br#"{"f": 1.5e300, "g": 123456789012345678901234567890.5, "h": -0}"#,
        ] {
            assert!(
                parse::<serde_json::Value>(body).is_ok(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Exact floats survive the extra pass.
        let f: serde_json::Value = parse(b"219.48196289526754").unwrap();
        assert_eq!(f.as_f64(), Some(219.48196289526754));
    }

    #[test]
    fn etags_are_strong_quoted_seqs() {
        assert_eq!(parse_etag("\"42\""), Ok(Precondition::Version(42)));
        assert!(parse_etag("42").is_err());
        assert!(parse_etag("W/\"42\"").is_err());
        assert_eq!(parse_etag("*"), Ok(Precondition::Exists));
        assert!(parse_etag("\"-1\"").is_err());
        assert_eq!(etag(7), "\"7\"");
    }

    #[test]
    fn json_content_types_are_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        for (value, expected) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            headers.insert(CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_json(&headers), expected, "{value}");
        }
    }
}
