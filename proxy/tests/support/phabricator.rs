//! A fake Phabricator Conduit API speaking the real wire format: `POST /api/<method>`, a
//! form-encoded body carrying `api.token` (header-token mode) or `access_token` (OAuth),
//! always HTTP 200 with `{"result": …, "error_code": …, "error_info": …}`. It knows
//! `user.whoami`; tokens it was not told about get `ERR-INVALID-AUTH`. It can be made slow,
//! held (answers wait until released), failing with another error code, or stopped (down), and
//! it counts and records every call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use super::Body;
use super::serve::{Received, Server, TestCert, json_response};

/// A `user.whoami` call as the fake saw it.
#[derive(Clone, Debug)]
pub struct Call {
    pub path: String,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// The form fields, decoded.
    pub form: HashMap<String, String>,
}

#[derive(Default)]
struct Behaviour {
    /// Token → user name.
    users: HashMap<String, String>,
    delay: Duration,
    /// Answer every call with this error code.
    error_code: Option<String>,
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    calls: AtomicUsize,
    received: Mutex<Vec<Call>>,
    /// `false` holds answers until it turns `true`.
    open: watch::Sender<bool>,
}

/// The fake Phabricator.
pub struct Phabricator {
    server: Server,
    shared: Arc<Shared>,
    scheme: &'static str,
}

impl Phabricator {
    /// Over plain HTTP.
    pub async fn start() -> Self {
        let shared = Self::shared();
        let s = shared.clone();
        let server = Server::start(move |r| answer(s.clone(), r)).await;
        Self {
            server,
            shared,
            scheme: "http",
        }
    }

    /// Over HTTPS with `cert`.
    pub async fn start_tls(cert: &TestCert) -> Self {
        let shared = Self::shared();
        let s = shared.clone();
        let server = Server::start_tls(cert, move |r| answer(s.clone(), r)).await;
        Self {
            server,
            shared,
            scheme: "https",
        }
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            behaviour: Mutex::default(),
            calls: AtomicUsize::new(0),
            received: Mutex::default(),
            open: watch::channel(true).0,
        })
    }

    /// `phabricator.url` for the sidecar config: `http://127.0.0.1:<port>/api/`.
    pub fn api_url(&self) -> String {
        format!("{}://{}/api/", self.scheme, self.server.addr)
    }

    /// The top-level `phabricator:` block of a sidecar config, with `extra` lines.
    pub fn config(&self, extra: &str) -> String {
        let extra: String = extra.lines().map(|l| format!("  {l}\n")).collect();
        format!("phabricator:\n  url: {}\n{extra}", self.api_url())
    }

    /// `token` is `user`'s from now on.
    pub fn user(&self, token: &str, user: &str) {
        self.shared
            .behaviour
            .lock()
            .unwrap()
            .users
            .insert(token.to_owned(), user.to_owned());
    }

    /// `token` is nobody's from now on.
    pub fn revoke(&self, token: &str) {
        self.shared.behaviour.lock().unwrap().users.remove(token);
    }

    /// Every answer waits `delay` first.
    pub fn slow(&self, delay: Duration) {
        self.shared.behaviour.lock().unwrap().delay = delay;
    }

    /// Every answer is this Conduit error (e.g. `ERR-CONDUIT-CORE`); `None` restores answers.
    pub fn fail_with(&self, code: Option<&str>) {
        self.shared.behaviour.lock().unwrap().error_code = code.map(str::to_owned);
    }

    /// Answers wait until [`Phabricator::release`] (calls are still counted on arrival).
    pub fn hold(&self) {
        self.shared.open.send_replace(false);
    }

    pub fn release(&self) {
        self.shared.open.send_replace(true);
    }

    /// Stops listening: Phabricator is down.
    pub fn stop(&self) {
        self.server.stop();
    }

    /// Calls received so far.
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Every call received so far.
    pub fn received(&self) -> Vec<Call> {
        self.shared.received.lock().unwrap().clone()
    }
}

async fn answer(shared: Arc<Shared>, r: Received) -> http::Response<Body> {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        r.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_owned())
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(&r.body).into_owned().collect();
    shared.received.lock().unwrap().push(Call {
        path: r.uri.path().to_owned(),
        content_type: header("content-type"),
        content_encoding: header("content-encoding"),
        form: form.clone(),
    });
    let mut open = shared.open.subscribe();
    let _ = open.wait_for(|open| *open).await;
    let (delay, user, error_code) = {
        let b = shared.behaviour.lock().unwrap();
        let token = form.get("api.token").or_else(|| form.get("access_token"));
        (
            b.delay,
            token.and_then(|t| b.users.get(t).cloned()),
            b.error_code.clone(),
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let is_post = r.method == http::Method::POST;
    let body = match (is_post, r.uri.path(), error_code, user) {
        (false, ..) => envelope_error("ERR-CONDUIT-CORE", "POST only"),
        (true, "/api/user.whoami", Some(code), _) => envelope_error(&code, "failing on purpose"),
        (true, "/api/user.whoami", None, Some(user)) => json!({
            "result": {
                "phid": format!("PHID-USER-{user}"),
                "userName": user,
                "realName": format!("{user} (fake)"),
                "primaryEmail": format!("{user}@example.com"),
                "roles": ["verified", "approved", "activated"],
            },
            "error_code": null,
            "error_info": null,
        }),
        (true, "/api/user.whoami", None, None) => envelope_error(
            "ERR-INVALID-AUTH",
            // As Phabricator does: the token is quoted back (the sidecar must never log this).
            &format!(
                "API token \"{}\" is invalid.",
                form.get("api.token").map_or("", String::as_str)
            ),
        ),
        (true, path, ..) => envelope_error(
            "ERR-CONDUIT-CALL",
            &format!("Conduit method {path} does not exist."),
        ),
    };
    // Conduit answers 200 whatever happened.
    json_response(200, body.to_string())
}

fn envelope_error(code: &str, info: &str) -> serde_json::Value {
    json!({ "result": null, "error_code": code, "error_info": info })
}
