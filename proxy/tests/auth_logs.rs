//! No token or key is ever logged: the binary at its most verbose level, fed good and bad
//! credentials in every mode that handles secrets, and its whole output searched for them.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::process::Stdio;

use support::conduit::Conduit;
use support::issuer::{Issuer, SigningKey};
use support::phabricator::Phabricator;
use support::*;
use tokio::io::AsyncBufReadExt as _;

const GOOD_TOKEN: &str = "api-goodsecretgoodsecretgoodsecr";
const BAD_TOKEN: &str = "api-badsecret2badsecret2badsecre";
const MALFORMED_TOKEN: &str = "api-MALFORMEDsecret";
const API_KEY: &str = "apikeysecret-0123456789";
const WRONG_KEY: &str = "wrongkeysecret-0123456789";
const BOT_TOKEN: &str = "api-botsecretbotsecretbotsecretb";
const OAUTH_BEARER: &str = "oauth-bearersecret";
const OAUTH_REFUSED: &str = "oauth-refusedsecret";
const SIDECAR_SECRETS: [&str; 8] = [
    "goodsecret",
    "badsecret",
    "MALFORMEDsecret",
    "apikeysecret",
    "wrongkeysecret",
    "botsecret",
    "bearersecret",
    "refusedsecret",
];

/// Runs the binary on `config` with every log line of stdout and stderr collected.
struct Binary {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    all: Vec<String>,
}

impl Binary {
    fn spawn(config: &std::path::Path) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
            .arg("--config")
            .arg(config)
            .arg("--reload-interval")
            .arg("100ms")
            .env("RUST_LOG", "trace")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        for mut stream in [Box::new(out) as Box<dyn LinesStream>, Box::new(err)] {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(line) = stream.next().await {
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            child,
            lines,
            all: Vec::new(),
        }
    }

    /// The `local` address of the first line starting with `message`.
    async fn address(&mut self, message: &str) -> String {
        within(&format!("log line {message:?}"), async {
            loop {
                let Some(line) = self.lines.recv().await else {
                    panic!("the proxy exited:\n{}", self.all.join("\n"));
                };
                self.all.push(line.clone());
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if json["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
                {
                    return json["local"].as_str().unwrap().to_owned();
                }
            }
        })
        .await
    }

    /// Stops the binary with SIGTERM (a graceful exit writes out every queued log line; they
    /// are written in batches) and returns every line it wrote, read to the end of its output.
    async fn finish(&mut self) -> String {
        let pid = self.child.id().unwrap().to_string();
        let term = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(term.success());
        let _ = within("the proxy to exit", self.child.wait()).await;
        within("the end of its output", async {
            while let Some(line) = self.lines.recv().await {
                self.all.push(line);
            }
        })
        .await;
        self.all.join("\n")
    }
}

trait LinesStream: Send {
    fn next(&mut self) -> std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send + '_>>;
}

impl<R: tokio::io::AsyncBufRead + Unpin + Send> LinesStream for tokio::io::Lines<R> {
    fn next(&mut self) -> std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send + '_>> {
        Box::pin(async move { self.next_line().await.ok().flatten() })
    }
}

#[tokio::test]
async fn no_credential_reaches_the_logs() {
    let conduit = Conduit::start().await;
    conduit.issue(OAUTH_BEARER, "alice");
    conduit.also_header_tokens();
    let phab = Phabricator::start().await;
    phab.user(GOOD_TOKEN, "alice");
    let issuer = Issuer::start().await;
    let key = SigningKey::p256("k");
    issuer.publish(&key);
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("client"), API_KEY).unwrap();
    std::fs::write(keys.join("short"), "shortsecret").unwrap();
    std::fs::write(dir.path().join("bot"), BOT_TOKEN).unwrap();
    let entry_points = [
        "  - name: phab",
        "    listen: 127.0.0.1:0",
        "    auth:",
        "      mode: phabricatorToken",
        "      verify: {}",
        "  - name: keys",
        "    listen: 127.0.0.1:0",
        "    auth:",
        "      mode: apiKey",
        &format!("      keysDir: {}", keys.display()),
        "    upstreamToken:",
        &format!("      file: {}", dir.path().join("bot").display()),
        "  - name: jwt",
        "    listen: 127.0.0.1:0",
        "    auth:",
        "      mode: jwt",
        &format!("      issuer: {}", issuer.url()),
        "      audiences: [sluice]",
        "      algorithms: [ES256]",
        "  - name: oauth",
        "    listen: 127.0.0.1:0",
        "    auth:",
        "      mode: oauth",
    ]
    .join("\n");
    let config = format!(
        "upstream:\n  url: http://{}\nadmin:\n  listen: 127.0.0.1:0\nlog:\n  format: json\n{}\nentryPoints:\n{entry_points}\n",
        conduit.upstream.addr,
        phab.config(""),
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let mut binary = Binary::spawn(&path);
    let mut addr = std::collections::HashMap::new();
    for name in ["phab", "keys", "jwt", "oauth"] {
        let local = binary
            .address(&format!("listening for entry point {name}"))
            .await;
        addr.insert(name, local);
    }
    let send_to = async |entry: &str, headers: &[(&str, &str)]| {
        let mut req = post(&format!("http://{}/mcp", addr[entry]));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        send(req.body(body(TOOLS_CALL)).unwrap()).await.status
    };

    assert_eq!(
        send_to("phab", &[("x-phabricator-token", GOOD_TOKEN)]).await,
        200
    );
    // Phabricator quotes this one back in error_info.
    assert_eq!(
        send_to("phab", &[("x-phabricator-token", BAD_TOKEN)]).await,
        401
    );
    assert_eq!(
        send_to("phab", &[("x-phabricator-token", MALFORMED_TOKEN)]).await,
        401
    );
    assert_eq!(send_to("keys", &[("x-api-key", API_KEY)]).await, 200);
    let bearer = format!("Bearer {API_KEY}");
    assert_eq!(send_to("keys", &[("authorization", &bearer)]).await, 200);
    assert_eq!(send_to("keys", &[("x-api-key", WRONG_KEY)]).await, 401);
    let claims = serde_json::json!({"iss": issuer.url(), "aud": "sluice", "sub": "jwt-user", "exp": support::issuer::now() + 60});
    let jwt = key.sign("ES256", &claims);
    assert_eq!(
        send_to("jwt", &[("authorization", &format!("Bearer {jwt}"))]).await,
        200
    );
    // A subject with a line separator and a right-to-left override: the audit line names it
    // escaped, so it can neither split the line nor reverse how it reads.
    let sneaky = serde_json::json!({"iss": issuer.url(), "aud": "sluice", "sub": "eve\u{2028}\u{202e}nimda", "exp": support::issuer::now() + 60});
    let sneaky = key.sign("ES256", &sneaky);
    assert_eq!(
        send_to("jwt", &[("authorization", &format!("Bearer {sneaky}"))]).await,
        200
    );
    let forged = format!("{jwt}x");
    assert_eq!(
        send_to("jwt", &[("authorization", &format!("Bearer {forged}"))]).await,
        401
    );
    let oauth_bearer = format!("Bearer {OAUTH_BEARER}");
    assert_eq!(
        send_to("oauth", &[("authorization", &oauth_bearer)]).await,
        200
    );
    assert_eq!(
        send_to("oauth", &[("authorization", &oauth_bearer)]).await,
        200
    );
    // Conduit refuses this one: the refusal is logged, the token is not.
    let refused = format!("Bearer {OAUTH_REFUSED}");
    assert_eq!(send_to("oauth", &[("authorization", &refused)]).await, 401);

    let text = binary.finish().await;
    assert!(
        text.contains("caller refused"),
        "no refusal was logged:\n{text}"
    );
    assert!(
        text.contains("shorter than 16"),
        "the short key was not reported:\n{text}"
    );
    assert!(
        text.contains(r#""identity":"eve\u2028\u202enimda""#),
        "the subject is not in the audit line, escaped:\n{text}"
    );
    assert!(!text.contains('\u{2028}') && !text.contains('\u{202e}'));
    for secret in SIDECAR_SECRETS
        .iter()
        .chain(&["shortsecret", jwt.as_str(), sneaky.as_str()])
    {
        assert!(
            !text.contains(secret),
            "{secret} was logged:\n{}",
            text.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
