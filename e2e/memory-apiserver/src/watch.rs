//! Watch streams: newline-delimited WatchEvents (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR) as they happen.
//!
//! Each watch runs in its own task. It sends the initial events (current objects, or the
//! history after the requested resourceVersion), then the live feed, applying the label and
//! field selectors: an object that stops matching is sent as DELETED, one that starts matching
//! as ADDED. With `allowWatchBookmarks`, a BOOKMARK goes out every bookmark interval and just
//! before the stream ends at `timeoutSeconds`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::metadata;
use crate::output::{self, View};
use crate::server::Shared;
use crate::status::ApiError;
use crate::store::{ChangeKind, WatchItem};
use crate::verbs::WatchPlan;

/// The response body of a watch: chunks from the watch's task.
#[derive(Debug)]
pub(crate) struct WatchBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for WatchBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// Starts the task that feeds a watch response.
pub(crate) fn spawn(shared: Arc<Shared>, plan: WatchPlan, bookmark_every: Duration) -> WatchBody {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(run(shared, plan, tx, bookmark_every));
    WatchBody { rx }
}

async fn run(shared: Arc<Shared>, mut plan: WatchPlan, tx: mpsc::Sender<Bytes>, every: Duration) {
    let tkey = plan.ty.key();
    let id = plan.subscription.id;
    let initial = std::mem::take(&mut plan.subscription.initial);
    let live = plan.subscription.rx.take();
    for item in &initial {
        if let Some(line) = encode(&plan, item)
            && tx.send(line).await.is_err()
        {
            shared.lock().detach(&tkey, id);
            return;
        }
    }
    let Some(mut live) = live else {
        return;
    };
    let deadline = tokio::time::sleep(plan.timeout);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            item = live.recv() => {
                // None: the server dropped the watch (closed, or the client fell too far behind).
                let Some(item) = item else { return };
                if let Some(line) = encode(&plan, &item)
                    && tx.send(line).await.is_err()
                {
                    shared.lock().detach(&tkey, id);
                    return;
                }
            }
            () = &mut deadline => {
                let rv = shared.lock().detach(&tkey, id);
                while let Ok(item) = live.try_recv() {
                    if let Some(line) = encode(&plan, &item)
                        && tx.send(line).await.is_err()
                    {
                        return;
                    }
                }
                if let Some(line) = encode(&plan, &WatchItem::Bookmark { rv, initial_end: false }) {
                    let _ = tx.send(line).await;
                }
                return;
            }
            _ = tick.tick(), if plan.bookmarks => shared.lock().bookmark(&tkey, id),
            () = tx.closed() => {
                shared.lock().detach(&tkey, id);
                return;
            }
        }
    }
}

fn matches(plan: &WatchPlan, obj: &Value) -> bool {
    plan.labels.matches(metadata::labels(obj)) && plan.fields.matches(obj)
}

/// One event line, or None if the watch does not see this item.
fn encode(plan: &WatchPlan, item: &WatchItem) -> Option<Bytes> {
    match item {
        WatchItem::Change(c) => {
            let now = matches(plan, &c.new);
            let before = c.old.as_deref().is_some_and(|o| matches(plan, o));
            let event = match c.kind {
                ChangeKind::Added if now => "ADDED",
                ChangeKind::Modified if now && before => "MODIFIED",
                ChangeKind::Modified if now => "ADDED",
                ChangeKind::Modified if before => "DELETED",
                ChangeKind::Deleted if now || before => "DELETED",
                _ => return None,
            };
            let object = match output::transform(&plan.ty, &c.new, plan.view) {
                Some(v) => Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
                None => c.encoded().clone(),
            };
            Some(line(event, &object))
        }
        WatchItem::Bookmark { rv, initial_end } => {
            if !plan.bookmarks {
                return None;
            }
            let (kind, api_version) = match plan.view {
                View::Metadata => (
                    "PartialObjectMetadata".to_string(),
                    "meta.k8s.io/v1".to_string(),
                ),
                View::Full => (plan.ty.kind.clone(), plan.ty.api_version()),
            };
            let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
            if *initial_end && let Some(m) = meta.as_object_mut() {
                m.insert(
                    "annotations".into(),
                    json!({"k8s.io/initial-events-end": "true"}),
                );
            }
            let object = json!({"kind": kind, "apiVersion": api_version, "metadata": meta});
            Some(line("BOOKMARK", &Bytes::from(object.to_string())))
        }
        WatchItem::Gone(message) => {
            let status = ApiError::gone(message.clone()).to_status();
            Some(line("ERROR", &Bytes::from(status.to_string())))
        }
    }
}

fn line(event: &str, object: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(object.len() + 32);
    out.put_slice(b"{\"type\":\"");
    out.put_slice(event.as_bytes());
    out.put_slice(b"\",\"object\":");
    out.put_slice(object);
    out.put_slice(b"}\n");
    out.freeze()
}
