//! Load: 1,000 event streams held open for a minute through the sluice-proxy binary, each on a
//! connection of its own, in front of an in-process upstream that sends one event a second.
//! Every stream must get every event, in order, and end cleanly; the sidecar's memory is printed
//! (reported, not asserted: the machine is shared).
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_e2e::procstat::{self, Memory, mib};
use sluice_e2e::proxy_process::ProxyProcess;
use sluice_e2e::sse;
use sluice_e2e::upstream::TestUpstream;

const STREAMS: usize = 1000;
/// Events per stream, one a second: each stream is held for about a minute.
const EVENTS: u64 = 60;
const INTERVAL_MS: u64 = 1000;
/// Streams are opened this far apart (1,000 in 5 s), as clients arrive, not in one burst that
/// overflows the listen backlog.
const OPEN_EVERY: Duration = Duration::from_millis(5);
/// Only stops a hang; the run takes about 65 s.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn a_thousand_event_streams_held_for_a_minute_get_every_event() {
    // Each stream costs this process two sockets (client and upstream side), the proxy two.
    let limit = procstat::raise_fd_limit(3 * STREAMS as u64 + 1024).unwrap();
    assert!(
        limit >= 2 * STREAMS as u64 + 256,
        "the open-files limit ({limit}) is too low for {STREAMS} streams"
    );
    let upstream = TestUpstream::start().unwrap();
    let mut proxy = ProxyProcess::in_front_of(&upstream.url(), "", "").unwrap();
    proxy.wait_ready().unwrap();
    let pid = proxy.process.pid();
    let idle = Memory::of(pid).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let opened = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], proxy.port));
    let path = format!("/stream?events={EVENTS}&interval_ms={INTERVAL_MS}");
    let started = Instant::now();
    let tasks: Vec<_> = (0..STREAMS)
        .map(|i| {
            let (opened, events, path) = (opened.clone(), events.clone(), path.clone());
            runtime.spawn(async move {
                tokio::time::sleep(OPEN_EVERY * i as u32).await;
                let read = sse::read(addr, &path, |id| {
                    if id == 0 {
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                    events.fetch_add(1, Ordering::Relaxed);
                });
                tokio::time::timeout(RUN_TIMEOUT, read).await
            })
        })
        .collect();

    // Memory while every stream is open, sampled until the first streams end.
    let mut at_full_load = None;
    let mut open_gauge = None;
    let mut rss_curve = Vec::new();
    while started.elapsed() < RUN_TIMEOUT && tasks.iter().any(|t| !t.is_finished()) {
        let memory = Memory::of(pid).unwrap();
        rss_curve.push((started.elapsed().as_secs(), memory.rss_kib));
        if at_full_load.is_none() && opened.load(Ordering::Relaxed) == STREAMS as u64 {
            at_full_load = Some(memory);
            open_gauge = proxy
                .metric("sluice_open_streams{entry_point=\"main\"}")
                .unwrap();
        }
        // Often until every stream is open (to catch that moment), then every few seconds.
        std::thread::sleep(if at_full_load.is_none() {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(3)
        });
    }
    let elapsed = started.elapsed();

    let mut failures = Vec::new();
    let mut complete = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        match runtime.block_on(task).unwrap() {
            Err(_) => failures.push(format!("stream {i}: still open after {RUN_TIMEOUT:?}")),
            Ok(Err(e)) => failures.push(format!("stream {i}: did not open: {e:#}")),
            Ok(Ok(outcome)) => {
                let expected: Vec<u64> = (0..EVENTS).collect();
                if let Some(why) = &outcome.broken {
                    failures.push(format!(
                        "stream {i}: broke off after {} events: {why}",
                        outcome.ids.len()
                    ));
                } else if outcome.ids != expected {
                    failures.push(format!("stream {i}: events {:?}", outcome.ids));
                } else {
                    complete += 1;
                }
            }
        }
    }
    let peak = Memory::of(pid).unwrap();
    let full = at_full_load.expect("the streams never were all open at once");
    println!("streams: {STREAMS}, {EVENTS} events each, one every {INTERVAL_MS} ms");
    println!(
        "complete: {complete}, failed: {}, events: {}, took {:.1} s",
        failures.len(),
        events.load(Ordering::Relaxed),
        elapsed.as_secs_f64()
    );
    println!(
        "sluice-proxy RSS: idle {}, all {STREAMS} streams open {}, peak (VmHWM) {}",
        mib(idle.rss_kib),
        mib(full.rss_kib),
        mib(peak.peak_kib)
    );
    println!(
        "RSS curve (s, MiB): {}",
        rss_curve
            .iter()
            .map(|(s, kib)| format!("{s}:{:.1}", *kib as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(complete, STREAMS);
    assert_eq!(
        open_gauge,
        Some(STREAMS as f64),
        "sluice_open_streams at full load"
    );

    // Every stream's place is given back.
    sluice_e2e::wait::wait_until(
        "the open streams to be released",
        Duration::from_secs(30),
        || {
            let streams = proxy.count("sluice_open_streams{entry_point=\"main\"}")?;
            let in_flight = proxy.count("sluice_in_flight_requests{entry_point=\"main\"}")?;
            Ok(if streams == 0.0 && in_flight == 0.0 {
                sluice_e2e::wait::Probe::Ready(())
            } else {
                sluice_e2e::wait::Probe::NotYet(format!("{streams} streams, {in_flight} in flight"))
            })
        },
    )
    .unwrap();
}
