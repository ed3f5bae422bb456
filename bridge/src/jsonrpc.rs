//! JSON-RPC 2.0 as the bridge needs it: what kind of message a line or a POST body is, the key
//! that pairs a response with its request, and the errors the bridge writes itself.

use serde_json::{Map, Value, json};

/// Error code of a message that is not valid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Error code of a message that is not a JSON-RPC 2.0 message.
pub const INVALID_REQUEST: i64 = -32600;
/// Error code of a request the server could not answer (its process exited, or the bridge is
/// refusing sessions while it backs off).
pub const INTERNAL_ERROR: i64 = -32603;

/// One JSON-RPC message, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A request: it has a method and an id, and wants a response.
    Request { id: Value, method: String },
    /// A notification: a method and no id.
    Notification { method: String },
    /// A response (result or error) to the request with this id.
    Response { id: Value },
}

/// A parsed message: its kind, the whole object, and the bytes it was parsed from (forwarded
/// as they came where they can be, so a message is not reordered or re-encoded on its way).
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: Kind,
    pub object: Map<String, Value>,
    raw: Vec<u8>,
}

/// Why bytes are not one JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Invalid {
    /// Not JSON at all.
    NotJson(String),
    /// JSON, but not a single JSON-RPC 2.0 object (an array is a batch, which MCP's current
    /// revision has dropped and no stdio server is asked to answer here).
    NotJsonRpc(&'static str),
}

impl Invalid {
    /// The JSON-RPC error code for it.
    pub fn code(&self) -> i64 {
        match self {
            Self::NotJson(_) => PARSE_ERROR,
            Self::NotJsonRpc(_) => INVALID_REQUEST,
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotJson(e) => write!(f, "not JSON: {e}"),
            Self::NotJsonRpc(why) => write!(f, "not a JSON-RPC 2.0 message: {why}"),
        }
    }
}

impl Message {
    /// Parses and classifies one message.
    pub fn parse(bytes: &[u8]) -> Result<Self, Invalid> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| Invalid::NotJson(e.to_string()))?;
        let Value::Object(object) = value else {
            return Err(Invalid::NotJsonRpc(if value.is_array() {
                "a batch (an array); send one message at a time"
            } else {
                "not an object"
            }));
        };
        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(Invalid::NotJsonRpc("\"jsonrpc\" is not \"2.0\""));
        }
        let id = object.get("id").filter(|id| is_valid_id(id)).cloned();
        if object.contains_key("id") && id.is_none() {
            return Err(Invalid::NotJsonRpc("\"id\" is not a string or an integer"));
        }
        let kind = match (object.get("method"), id) {
            (Some(Value::String(method)), Some(id)) => Kind::Request {
                id,
                method: method.clone(),
            },
            (Some(Value::String(method)), None) => Kind::Notification {
                method: method.clone(),
            },
            (Some(_), _) => return Err(Invalid::NotJsonRpc("\"method\" is not a string")),
            (None, Some(id)) if object.contains_key("result") || object.contains_key("error") => {
                Kind::Response { id }
            }
            (None, _) => {
                return Err(Invalid::NotJsonRpc(
                    "neither a request, a notification nor a response",
                ));
            }
        };
        Ok(Self {
            kind,
            object,
            raw: bytes.to_vec(),
        })
    }

    /// The message as one line of JSON, without the newline: the bytes it came as, unless they
    /// span lines (pretty-printed JSON); then compacted (serde_json escapes every newline inside
    /// strings, so a stdio server reads it as one message).
    pub fn to_line(&self) -> Vec<u8> {
        if self.raw.iter().any(|&b| b == b'\n' || b == b'\r') {
            serde_json::to_vec(&self.object).unwrap_or_default()
        } else {
            self.raw.clone()
        }
    }

    /// The message with its id (a request's or a response's) and progress token (a request's
    /// `params._meta.progressToken`, a progress notification's `params.progressToken`) set to
    /// these, where it has them; re-encoded.
    pub fn with_ids(mut self, id: Option<&Value>, progress_token: Option<&Value>) -> Self {
        if let Some(id) = id {
            match &mut self.kind {
                Kind::Request { id: own, .. } | Kind::Response { id: own } => {
                    own.clone_from(id);
                    self.object.insert("id".into(), id.clone());
                }
                Kind::Notification { .. } => {}
            }
        }
        if let Some(token) = progress_token {
            let is_request = matches!(self.kind, Kind::Request { .. });
            let params = self.object.get_mut("params").and_then(Value::as_object_mut);
            let holder = match (params, is_request) {
                (Some(params), true) => params.get_mut("_meta").and_then(Value::as_object_mut),
                (params, false) => params,
                (None, true) => None,
            };
            if let Some(holder) = holder.filter(|h| h.contains_key("progressToken")) {
                holder.insert("progressToken".into(), token.clone());
            }
        }
        self.raw = serde_json::to_vec(&self.object).unwrap_or_default();
        self
    }

    /// `params._meta.progressToken` of a request, or `params.progressToken` of a
    /// `notifications/progress`: what ties progress to the request it is about.
    pub fn progress_token(&self) -> Option<&Value> {
        let params = self.object.get("params")?;
        match &self.kind {
            Kind::Request { .. } => params.get("_meta")?.get("progressToken"),
            Kind::Notification { .. } => params.get("progressToken"),
            Kind::Response { .. } => None,
        }
    }
}

/// JSON-RPC ids are strings or numbers; MCP forbids null.
fn is_valid_id(id: &Value) -> bool {
    id.is_string() || id.is_i64() || id.is_u64()
}

/// The key under which a request waits for its response: the id's JSON text, so the string
/// `"1"` and the number `1` are different requests, as they are in JSON-RPC.
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

/// A JSON-RPC error response, as bytes.
pub fn error(id: Option<&Value>, code: i64, message: &str) -> Vec<u8> {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": {"code": code, "message": message},
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Result<Kind, Invalid> {
        Message::parse(text.as_bytes()).map(|m| m.kind)
    }

    #[test]
    fn classifies_requests_notifications_and_responses() {
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#),
            Ok(Kind::Request {
                id: json!(7),
                method: "tools/list".into()
            })
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Kind::Notification {
                method: "notifications/initialized".into()
            })
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Kind::Response { id: json!("a") })
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"x"}}"#),
            Ok(Kind::Response { id: json!("a") })
        );
    }

    #[test]
    fn refuses_what_is_not_one_jsonrpc_message() {
        assert!(matches!(kind("hello"), Err(Invalid::NotJson(_))));
        assert!(matches!(kind("[1]"), Err(Invalid::NotJsonRpc(_))));
        assert!(matches!(
            kind(r#"{"id":1,"method":"x"}"#),
            Err(Invalid::NotJsonRpc(_))
        ));
        assert!(matches!(
            kind(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#),
            Err(Invalid::NotJsonRpc(_))
        ));
        assert!(matches!(
            kind(r#"{"jsonrpc":"2.0","id":1}"#),
            Err(Invalid::NotJsonRpc(_))
        ));
        assert_eq!(kind("hello").map_err(|e| e.code()), Err(PARSE_ERROR));
    }

    #[test]
    fn ids_and_progress_tokens_are_replaced_where_the_message_has_them() {
        let request = Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":1}}}"#,
        )
        .expect("parses")
        .with_ids(Some(&json!("b-7")), Some(&json!("b-7")));
        let line: Value = serde_json::from_slice(&request.to_line()).expect("JSON");
        assert_eq!(line["id"], "b-7");
        assert_eq!(line["params"]["_meta"]["progressToken"], "b-7");
        assert!(matches!(request.kind, Kind::Request { ref id, .. } if id == "b-7"));

        let progress = Message::parse(
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"b-7","progress":1}}"#,
        )
        .expect("parses")
        .with_ids(None, Some(&json!(1)));
        let line: Value = serde_json::from_slice(&progress.to_line()).expect("JSON");
        assert_eq!(line["params"]["progressToken"], 1);

        // A request without a progress token gets none.
        let plain = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
            .expect("parses")
            .with_ids(Some(&json!("b-8")), Some(&json!("b-8")));
        let line: Value = serde_json::from_slice(&plain.to_line()).expect("JSON");
        assert_eq!(
            line,
            json!({"jsonrpc":"2.0","id":"b-8","method":"tools/list"})
        );
    }

    #[test]
    fn string_and_number_ids_are_different_keys() {
        assert_ne!(id_key(&json!("1")), id_key(&json!(1)));
    }

    #[test]
    fn a_one_line_message_goes_on_as_it_came_and_a_pretty_one_compacted() {
        let text = br#"{"jsonrpc":"2.0", "method":"n","params":{"b":1,"a":2}}"#;
        assert_eq!(
            Message::parse(text).expect("parses").to_line(),
            text.to_vec()
        );
        let pretty = b"{\n  \"jsonrpc\": \"2.0\",\n  \"method\": \"n\"\n}";
        let line = Message::parse(pretty).expect("parses").to_line();
        assert_eq!(line, br#"{"jsonrpc":"2.0","method":"n"}"#.to_vec());
    }

    #[test]
    fn a_line_has_no_newline_even_when_a_string_has_one() {
        let message =
            Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"t":"a\nb"}}"#)
                .expect("parses");
        assert!(!message.to_line().contains(&b'\n'));
    }

    #[test]
    fn progress_tokens_of_requests_and_progress_notifications() {
        let request = Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":5}}}"#,
        )
        .expect("parses");
        assert_eq!(request.progress_token(), Some(&json!(5)));
        let progress = Message::parse(
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":5,"progress":1}}"#,
        )
        .expect("parses");
        assert_eq!(progress.progress_token(), Some(&json!(5)));
    }
}
