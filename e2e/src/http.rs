//! A small blocking HTTP client for tests (ureq), set up for looking at a proxy from outside:
//! no environment proxies, redirects returned rather than followed, any status returned as a
//! response rather than an error, every call bounded in time.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::Result;

/// The `Accept` header MCP's Streamable HTTP transport requires on a POST.
pub const MCP_ACCEPT: &str = "application/json, text/event-stream";

/// Largest body the helpers read (a runaway stream must not eat the test's memory).
const BODY_LIMIT: u64 = 64 * 1024 * 1024;

/// An agent whose calls each give up after 30 s.
pub fn agent() -> ureq::Agent {
    agent_with_timeout(Duration::from_secs(30))
}

/// An agent whose calls each give up after `timeout` (connecting, sending and reading included).
pub fn agent_with_timeout(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// A whole response, read into memory.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers in the order received; names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| {
            format!(
                "response body (status {}) is not JSON: {}",
                self.status, self.body
            )
        })
    }

    /// An error with the whole response unless the status is `expected`.
    pub fn expect_status(self, expected: u16) -> Result<Self> {
        if self.status != expected {
            bail!(
                "expected status {expected}, got {}: {:?}\n{}",
                self.status,
                self.headers,
                self.body
            );
        }
        Ok(self)
    }
}

/// `GET url` with extra `headers`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<HttpResponse> {
    let mut request = agent().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    read(url, request.call())
}

/// `POST url` with a JSON body and extra `headers` (add `("accept", MCP_ACCEPT)` for MCP).
pub fn post_json(url: &str, body: &Value, headers: &[(&str, &str)]) -> Result<HttpResponse> {
    let mut request = agent().post(url).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    read(url, request.send(body.to_string()))
}

/// `POST url` with `body` exactly as given (JSON a serialiser would not write, such as `-0`).
pub fn post_raw(url: &str, body: &str, headers: &[(&str, &str)]) -> Result<HttpResponse> {
    let mut request = agent().post(url).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    read(url, request.send(body.to_owned()))
}

fn read(
    url: &str,
    response: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<HttpResponse> {
    let mut response = response.with_context(|| format!("request to {url} failed"))?;
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_vec()
        .with_context(|| format!("failed to read the body from {url}"))?;
    Ok(HttpResponse {
        status: response.status().as_u16(),
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// Answers one request with `reply`, returning the request's head.
    fn one_shot(reply: &'static str) -> (String, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                head.push_str(&line);
            }
            stream.write_all(reply.as_bytes()).unwrap();
            head
        });
        (url, handle)
    }

    #[test]
    fn redirects_and_errors_are_responses() {
        let (url, server) =
            one_shot("HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n");
        let response = get(&url, &[("x-test", "1")]).unwrap();
        assert_eq!(response.status, 302);
        assert_eq!(response.header("location"), Some("/elsewhere"));
        assert!(
            server
                .join()
                .unwrap()
                .to_ascii_lowercase()
                .contains("x-test: 1")
        );

        let (url, _server) = one_shot("HTTP/1.1 503 Busy\r\nContent-Length: 9\r\n\r\n{\"a\":[1]}");
        let response = get(&url, &[]).unwrap();
        assert_eq!(response.json().unwrap()["a"][0], 1);
        assert!(response.expect_status(200).is_err());
    }
}
