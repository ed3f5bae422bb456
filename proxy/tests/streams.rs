//! Event streams: passed through as they arrive, kept alive while the upstream is silent.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::*;

/// Reads the next data frame of a response body (bounded).
async fn next_data(body: &mut hyper::body::Incoming) -> Option<Bytes> {
    loop {
        match within("the next frame", body.frame()).await? {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(data);
                }
            }
            Err(e) => panic!("stream failed: {e}"),
        }
    }
}

#[tokio::test]
async fn an_event_reaches_the_caller_before_the_upstream_ends_the_stream() {
    let (upstream, mut senders) = Upstream::streaming().await;
    let sluice = Sluice::start(&config(upstream.addr, "streaming: {}", "")).await;
    let req = post(&sluice.url("/mcp")).body(body(TOOLS_CALL)).unwrap();
    let response = within("the response head", client().request(req))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut body = response.into_body();
    let mut sender = within("the upstream stream", senders.recv()).await.unwrap();

    sender
        .send_data(Bytes::from_static(b"event: message\ndata: {\"n\":1}\n\n"))
        .await
        .unwrap();
    // The upstream's stream is still open (the sender is alive): the event arrived unbuffered.
    assert_eq!(
        next_data(&mut body).await.unwrap(),
        "event: message\ndata: {\"n\":1}\n\n"
    );
    let gauge = "sluice_open_streams{entry_point=\"main\"}";
    assert_eq!(sluice.metric(gauge).await, Some(1.0));

    sender
        .send_data(Bytes::from_static(b"data: 2\n\n"))
        .await
        .unwrap();
    assert_eq!(next_data(&mut body).await.unwrap(), "data: 2\n\n");
    drop(sender);
    assert_eq!(next_data(&mut body).await, None);
    eventually("the stream gauge to drop", async || {
        sluice.metric(gauge).await == Some(0.0)
    })
    .await;
}

#[tokio::test]
async fn silent_streams_get_keep_alive_comments_only_between_events() {
    let (upstream, mut senders) = Upstream::streaming().await;
    let sluice = Sluice::start(&config(upstream.addr, "streaming:\n  keepAlive: 100ms", "")).await;
    let req = Request::get(sluice.url("/mcp"))
        .header("accept", "text/event-stream")
        .body(Full::default())
        .unwrap();
    let response = within("the response head", client().request(req))
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut sender = within("the upstream stream", senders.recv()).await.unwrap();

    // Silence at the start of the stream: a comment.
    assert_eq!(next_data(&mut body).await.unwrap(), ": keep-alive\n\n");

    // Silence in the middle of an event: no comment until the event is complete.
    sender
        .send_data(Bytes::from_static(b"id: 1\ndata: par"))
        .await
        .unwrap();
    assert_eq!(next_data(&mut body).await.unwrap(), "id: 1\ndata: par");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    sender
        .send_data(Bytes::from_static(b"t\n\n"))
        .await
        .unwrap();
    assert_eq!(next_data(&mut body).await.unwrap(), "t\n\n");
    assert_eq!(next_data(&mut body).await.unwrap(), ": keep-alive\n\n");
    drop(sender);
}

#[tokio::test]
async fn a_reload_that_turns_keep_alive_off_applies_to_new_streams() {
    let (upstream, mut senders) = Upstream::streaming().await;
    let sluice = Sluice::start(&config(upstream.addr, "streaming:\n  keepAlive: 100ms", "")).await;
    sluice.write_config(&config(upstream.addr, "streaming:\n  keepAlive: null", ""));
    let applied = "sluice_config_reloads_total{result=\"applied\"}";
    eventually("the reload", async || {
        sluice.metric(applied).await == Some(1.0)
    })
    .await;

    let req = Request::get(sluice.url("/mcp"))
        .body(Full::default())
        .unwrap();
    let response = within("the response head", client().request(req))
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut sender = within("the upstream stream", senders.recv()).await.unwrap();
    sender
        .send_data(Bytes::from_static(b"data: 1\n\n"))
        .await
        .unwrap();
    assert_eq!(next_data(&mut body).await.unwrap(), "data: 1\n\n");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    sender
        .send_data(Bytes::from_static(b"data: 2\n\n"))
        .await
        .unwrap();
    assert_eq!(
        next_data(&mut body).await.unwrap(),
        "data: 2\n\n",
        "a keep-alive was sent"
    );
    drop(sender);
    assert_eq!(next_data(&mut body).await, None);
}

#[tokio::test]
async fn an_upstream_dying_mid_stream_is_a_broken_stream_for_the_caller() {
    let addr = breaking_off_upstream("data: 1\n\n").await;
    let sluice = Sluice::start(&config(addr, "", "")).await;
    let req = Request::get(sluice.url("/mcp"))
        .body(Full::default())
        .unwrap();
    let response = within("the response head", client().request(req))
        .await
        .unwrap();
    let mut body = response.into_body();
    assert_eq!(next_data(&mut body).await.unwrap(), "data: 1\n\n");
    let end = within("the end of the stream", body.frame()).await;
    assert!(
        matches!(end, Some(Err(_))),
        "the caller must see a broken stream, not a clean end: {end:?}"
    );
    let metric = "sluice_upstream_errors_total{entry_point=\"main\",kind=\"body\"}";
    eventually("the broken body to be counted", async || {
        sluice.metric(metric).await == Some(1.0)
    })
    .await;
}

/// Conduit answers every call as an event stream whose head comes at once: the call's time is
/// the stream's. Its latency is observed when the answer is over, not at the head.
#[tokio::test]
async fn a_streamed_answer_is_timed_to_its_end_not_its_head() {
    const TOOL_TIME: std::time::Duration = std::time::Duration::from_millis(300);
    let (upstream, mut senders) = Upstream::streaming().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;
    let req = post(&sluice.url("/mcp")).body(body(TOOLS_CALL)).unwrap();
    let response = within("the response head", client().request(req))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut sender = within("the upstream stream", senders.recv()).await.unwrap();
    let series = "{entry_point=\"main\",mcp_method=\"tools/call\"}";
    let count = format!("sluice_request_duration_seconds_count{series}");
    assert_eq!(
        sluice.metric(&count).await,
        None,
        "observed at the head, before the answer"
    );

    tokio::time::sleep(TOOL_TIME).await;
    let answer = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":42,\"result\":{}}\n\n";
    sender
        .send_data(Bytes::from_static(answer.as_bytes()))
        .await
        .unwrap();
    drop(sender);
    assert_eq!(next_data(&mut body).await.unwrap(), answer);
    assert_eq!(next_data(&mut body).await, None);
    eventually("the call's latency to be observed", async || {
        sluice.metric(&count).await == Some(1.0)
    })
    .await;
    let took = sluice
        .metric(&format!("sluice_request_duration_seconds_sum{series}"))
        .await
        .unwrap();
    assert!(
        took >= TOOL_TIME.as_secs_f64(),
        "observed {took}s for an answer that took at least {TOOL_TIME:?}"
    );
}
