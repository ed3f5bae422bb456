//! An upstream answer as legacy stream events: every message of a JSON body or an event
//! stream becomes a `message` event; an answer that never came becomes an error for the
//! request's id, so a legacy client never waits forever.

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::body::ResponseBody;
use crate::errors::{Refusal, UpstreamFailure, error_body};
use crate::sse::{self, Splitter};

/// Largest message relayed (a JSON body, or one event).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Largest error body read for the JSON-RPC error in it.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// A JSON-RPC message as a stream event.
pub(super) fn event(json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(json.len() + 24);
    sse::write_message(json, &mut out);
    out.freeze()
}

/// `refusal` as the answer to the request `id`.
pub(super) fn error_event(refusal: &Refusal, id: &RawValue) -> Bytes {
    event(&error_body(refusal.code(), refusal, Some(id)))
}

/// Puts the messages of `response` (the upstream's answer to a message with `reply_id`, or
/// its own event stream) on the session's stream; stops when the stream is gone.
pub(super) async fn relay(
    response: Response<ResponseBody>,
    reply_id: Option<&RawValue>,
    events: &mpsc::Sender<Bytes>,
) {
    let (parts, body) = response.into_parts();
    let mut answered = reply_id.is_none();
    if parts.status.is_success() && sse::is_event_stream(&parts.headers) {
        let Some(answered_in_stream) = relay_stream(body, reply_id, events).await else {
            return;
        };
        answered |= answered_in_stream;
        if let (false, Some(id)) = (answered, reply_id) {
            // The stream ended, or broke off, before the answer.
            let _ = events
                .send(error_event(&Refusal::Upstream(UpstreamFailure::Reset), id))
                .await;
        }
        return;
    }
    let limit = if parts.status.is_success() {
        MAX_MESSAGE_BYTES
    } else {
        MAX_ERROR_BYTES
    };
    let bytes = Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    if parts.status.is_success() {
        for message in messages(&bytes) {
            answered |= answers(message.get().as_bytes(), reply_id);
            if events.send(event(message.get().as_bytes())).await.is_err() {
                return;
            }
        }
    }
    let Some(id) = reply_id else {
        if !parts.status.is_success() {
            tracing::debug!(
                status = parts.status.as_u16(),
                "the upstream refused a legacy session's notification or response"
            );
        }
        return;
    };
    if !answered {
        let _ = events.send(upstream_error(parts.status, &bytes, id)).await;
    }
}

/// Relays an event stream's messages; whether one answered `reply_id`, or `None` when the
/// session's stream is gone.
async fn relay_stream(
    body: ResponseBody,
    reply_id: Option<&RawValue>,
    events: &mpsc::Sender<Bytes>,
) -> Option<bool> {
    let mut body = std::pin::pin!(body);
    let mut splitter = Splitter::new(MAX_MESSAGE_BYTES);
    let mut answered = false;
    let mut complete = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let pushed = splitter.push(&data, &mut BytesMut::new(), |event, _| {
            complete.extend(sse::message_data(event));
        });
        for message in complete.drain(..) {
            answered |= answers(&message, reply_id);
            events.send(event(&message)).await.ok()?;
        }
        if pushed.is_err() {
            tracing::warn!("a legacy session's upstream event is too large to relay");
            break;
        }
    }
    Some(answered)
}

/// The messages of a JSON body: one, or a batch's.
fn messages(body: &[u8]) -> Vec<Box<RawValue>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Vec::new();
    }
    serde_json::from_slice::<Vec<Box<RawValue>>>(body)
        .or_else(|_| serde_json::from_slice::<Box<RawValue>>(body).map(|one| vec![one]))
        .unwrap_or_default()
}

/// Whether `message` is the response to the request `id`.
fn answers(message: &[u8], id: Option<&RawValue>) -> bool {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        method: Option<IgnoredAny>,
    }
    let Some(id) = id else { return false };
    serde_json::from_slice::<Head<'_>>(message)
        .is_ok_and(|h| h.method.is_none() && h.id.is_some_and(|i| i.get() == id.get()))
}

/// The error for `id` when the upstream answered `status` without a response to it: the
/// upstream's own JSON-RPC error where its body holds one, else the status.
fn upstream_error(status: StatusCode, body: &[u8], id: &RawValue) -> Bytes {
    #[derive(Deserialize)]
    struct Body {
        error: Error,
    }
    #[derive(Deserialize)]
    struct Error {
        code: i32,
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(Body { error }) => event(&error_body(error.code, &error.message, Some(id))),
        Err(_) => error_event(&Refusal::UpstreamStatus(status), id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.into()).unwrap()
    }

    #[test]
    fn a_response_answers_its_id_only() {
        let id = raw("7");
        assert!(answers(
            br#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
            Some(&id)
        ));
        assert!(!answers(
            br#"{"jsonrpc":"2.0","id":8,"result":{}}"#,
            Some(&id)
        ));
        // A server request with the same id is no answer.
        assert!(!answers(
            br#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage"}"#,
            Some(&id)
        ));
        assert!(!answers(br#"{"jsonrpc":"2.0","id":7,"result":{}}"#, None));
        assert!(!answers(b"not json", Some(&id)));
    }

    #[test]
    fn json_bodies_hold_one_message_or_a_batch() {
        assert_eq!(messages(br#"{"id":1}"#).len(), 1);
        assert_eq!(messages(br#"[{"id":1},{"id":2}]"#).len(), 2);
        assert!(messages(b"").is_empty());
        assert!(messages(b"<html>").is_empty());
    }

    #[test]
    fn events_carry_each_line_of_the_json_as_data() {
        assert_eq!(
            &event(b"{\n\"id\": 1}")[..],
            b"event: message\ndata: {\ndata: \"id\": 1}\n\n"
        );
    }

    #[test]
    fn upstream_errors_keep_their_code_and_take_the_request_id() {
        let id = raw("\"a\"");
        let e = upstream_error(
            StatusCode::BAD_REQUEST,
            br#"{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,"message":"Bad Request: No valid session ID provided"}}"#,
            &id,
        );
        let text = std::str::from_utf8(&e).unwrap();
        assert!(text.contains(r#""id":"a""#), "{text}");
        assert!(text.contains("No valid session ID provided"), "{text}");
        let e = upstream_error(StatusCode::BAD_GATEWAY, b"<html>", &id);
        let text = std::str::from_utf8(&e).unwrap();
        assert!(text.contains("the upstream answered HTTP 502"), "{text}");
        assert!(text.contains(r#""id":"a""#), "{text}");
    }
}
