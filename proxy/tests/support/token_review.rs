//! A fake Kubernetes API server answering TokenReviews
//! (`POST /apis/authentication.k8s.io/v1/tokenreviews`) as the real one does: the caller must
//! present its own bearer token; a known token whose audiences meet the requested ones is
//! `authenticated` with that intersection, anything else is not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::Body;
use super::serve::{Received, Server, TestCert, json_response};

#[derive(Default)]
struct Shared {
    /// Token → (username, audiences).
    tokens: Mutex<HashMap<String, (String, Vec<String>)>>,
    /// The bearer the sidecar must present.
    reviewer_token: Mutex<String>,
    reviews: AtomicUsize,
    /// `Authorization` headers seen.
    bearers: Mutex<Vec<String>>,
}

/// The fake API server.
pub struct TokenReviewApi {
    server: Server,
    shared: Arc<Shared>,
    scheme: &'static str,
}

impl TokenReviewApi {
    /// Over HTTPS with `cert`, requiring `reviewer_token` from the sidecar.
    pub async fn start_tls(cert: &TestCert, reviewer_token: &str) -> Self {
        let shared = Arc::new(Shared::default());
        *shared.reviewer_token.lock().unwrap() = reviewer_token.to_owned();
        let s = shared.clone();
        let server = Server::start_tls(cert, move |r| answer(s.clone(), r)).await;
        Self {
            server,
            shared,
            scheme: "https",
        }
    }

    /// `tokenReview.apiServer`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.server.addr)
    }

    /// A projected token of `namespace/name` for `audiences` (a JWT-shaped string, expiring
    /// at `exp`; the fake does not check its signature, the real API server would).
    pub fn issue(&self, namespace: &str, name: &str, audiences: &[&str], exp: i64) -> String {
        use base64::Engine as _;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let username = format!("system:serviceaccount:{namespace}:{name}");
        let token = format!(
            "{}.{}.{}",
            b64(json!({"alg": "RS256", "kid": "k8s"})),
            b64(json!({"sub": username, "aud": audiences, "exp": exp, "jti": unique()})),
            "c2lnbmF0dXJl"
        );
        self.shared.tokens.lock().unwrap().insert(
            token.clone(),
            (
                username,
                audiences.iter().map(|a| (*a).to_owned()).collect(),
            ),
        );
        token
    }

    /// The token is no longer valid (its pod was deleted).
    pub fn revoke(&self, token: &str) {
        self.shared.tokens.lock().unwrap().remove(token);
    }

    /// The bearer the sidecar must present from now on (its token rotated).
    pub fn rotate_reviewer_token(&self, token: &str) {
        *self.shared.reviewer_token.lock().unwrap() = token.to_owned();
    }

    pub fn reviews(&self) -> usize {
        self.shared.reviews.load(Ordering::SeqCst)
    }

    /// Every `Authorization` header the fake received.
    pub fn bearers(&self) -> Vec<String> {
        self.shared.bearers.lock().unwrap().clone()
    }

    pub fn stop(&self) {
        self.server.stop();
    }
}

/// A number no other token of this process has.
fn unique() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

async fn answer(shared: Arc<Shared>, r: Received) -> http::Response<Body> {
    let bearer = r
        .headers
        .get("authorization")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    shared.bearers.lock().unwrap().push(bearer.clone());
    if r.uri.path() != "/apis/authentication.k8s.io/v1/tokenreviews" {
        return json_response(404, r#"{"kind":"Status","code":404}"#);
    }
    let expected = format!("Bearer {}", shared.reviewer_token.lock().unwrap());
    if bearer != expected {
        return json_response(
            401,
            r#"{"kind":"Status","code":401,"reason":"Unauthorized"}"#,
        );
    }
    shared.reviews.fetch_add(1, Ordering::SeqCst);
    let review: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let token = review["spec"]["token"].as_str().unwrap_or("");
    let wanted: Vec<String> = review["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let known = shared.tokens.lock().unwrap().get(token).cloned();
    let status = match known {
        Some((username, audiences)) => {
            let common: Vec<&String> = audiences.iter().filter(|a| wanted.contains(a)).collect();
            if common.is_empty() {
                json!({"authenticated": false, "error": "token audiences is invalid for the target audiences"})
            } else {
                let ns = username.split(':').nth(2).unwrap_or("");
                json!({
                    "authenticated": true,
                    "user": {
                        "username": username,
                        "uid": "uid-1",
                        "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
                    },
                    "audiences": common,
                })
            }
        }
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    let body = json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "spec": {"audiences": wanted},
        "status": status,
    });
    json_response(201, body.to_string())
}
