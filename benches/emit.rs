//! What `stele-client` costs the caller, and how fast one client delivers.
//!
//! 1. Caller-side cost of `emit` (ns per event), on a current-thread runtime so
//!    the sender task cannot run during the timed loop (this is the cost the
//!    calling thread pays, not the sender's), beside a baseline: the same boxed
//!    event pushed on a bare `tokio::sync::mpsc` channel with `try_send`.
//!    Measured for a pre-built event and for building the event in the loop.
//! 2. Events/s delivered by one client to the real ingest handler (validate,
//!    canonicalise, hash; in-memory sink instead of Kinesis) over loopback
//!    HTTP, gzip on and off: from the first `emit` to `flush` returning. The
//!    client and the server share the machine's cores.
//!
//! Run: `cargo bench -p stele --bench emit` (release profile).
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_client::{Actor, Client, Emitted, Event, Resource};
use stele_ingest::{Ingest, IngestConfig, MemorySink};

const EMIT_EVENTS: usize = 200_000;
const DELIVER_EVENTS: usize = 100_000;
const ROUNDS: usize = 5;

fn event(n: usize) -> Event {
    Event::audit("document.update")
        .actor(Actor::user(format!("user-{}", n % 997)).ip("192.0.2.7"))
        .resource(Resource::new("document", format!("doc-{n}")))
        .metadata("request_id", format!("req-{n}"))
        .metadata("plan", "enterprise")
        .correlation_id(format!("corr-{}", n / 3))
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn best(mut f: impl FnMut() -> Duration) -> Duration {
    (0..ROUNDS).map(|_| f()).min().unwrap_or_default()
}

fn per_event(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

fn quiet_client(capacity: usize) -> Client {
    Client::builder("http://127.0.0.1:9")
        .token("bench")
        .service("bench")
        .queue_capacity(capacity)
        .max_batch_age(Duration::from_secs(3600))
        .build()
        .expect("client")
}

fn caller_cost() {
    let baseline = best(|| {
        let rt = current_thread();
        let _guard = rt.enter();
        let (tx, rx) = tokio::sync::mpsc::channel::<Box<Event>>(EMIT_EVENTS);
        let events: Vec<Event> = (0..EMIT_EVENTS).map(event).collect();
        let t = Instant::now();
        for e in events {
            let _ = black_box(tx.try_send(Box::new(e)));
        }
        let d = t.elapsed();
        drop(rx);
        d
    });
    let emit = best(|| {
        let rt = current_thread();
        let _guard = rt.enter();
        let client = quiet_client(EMIT_EVENTS);
        let events: Vec<Event> = (0..EMIT_EVENTS).map(event).collect();
        let t = Instant::now();
        for e in events {
            assert_eq!(black_box(client.emit(e)), Emitted::Queued);
        }
        t.elapsed()
    });
    let build_and_emit = best(|| {
        let rt = current_thread();
        let _guard = rt.enter();
        let client = quiet_client(EMIT_EVENTS);
        let t = Instant::now();
        for n in 0..EMIT_EVENTS {
            black_box(client.emit(event(n)));
        }
        t.elapsed()
    });
    println!("caller-side cost, {EMIT_EVENTS} events, best of {ROUNDS} (current-thread runtime):");
    println!(
        "  baseline  mpsc try_send(Box<Event>)     {:>8.1} ns/event",
        per_event(baseline, EMIT_EVENTS)
    );
    println!(
        "  emit(pre-built event)                   {:>8.1} ns/event",
        per_event(emit, EMIT_EVENTS)
    );
    println!(
        "  build event + emit                      {:>8.1} ns/event",
        per_event(build_and_emit, EMIT_EVENTS)
    );
}

async fn deliver(gzip: bool) -> (Duration, u64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ingest = Arc::new(Ingest::new(IngestConfig::new("bench"), MemorySink::new()));
    let tenants = Arc::new(HashMap::from([("bench-token".to_string(), "bench".to_string())]));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(stele::local::api_gateway::serve(
        listener,
        ingest.clone(),
        tenants,
        async {
            let _ = stop_rx.await;
        },
    ));
    let client = Client::builder(format!("http://{addr}"))
        .token("bench-token")
        .service("bench")
        .queue_capacity(DELIVER_EVENTS)
        .gzip(gzip)
        .flush_timeout(Duration::from_secs(600))
        .build()
        .expect("client");
    let events: Vec<Event> = (0..DELIVER_EVENTS).map(event).collect();
    let t = Instant::now();
    for e in events {
        client.emit(e);
    }
    client.flush().await.expect("flush");
    let d = t.elapsed();
    let stats = client.stats();
    assert_eq!(stats.sent, DELIVER_EVENTS as u64, "{stats:?}");
    assert_eq!(ingest.sink().records().len(), DELIVER_EVENTS);
    let _ = stop_tx.send(());
    let _ = server.await;
    (d, stats.sent)
}

fn delivery() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("delivered by one client to the ingest handler (in-memory sink), {DELIVER_EVENTS} events, loopback HTTP:");
    for gzip in [true, false] {
        let mut best_rate = 0.0f64;
        for _ in 0..3 {
            let (d, sent) = rt.block_on(deliver(gzip));
            best_rate = best_rate.max(sent as f64 / d.as_secs_f64());
        }
        println!(
            "  gzip {:<5}                              {:>8.0} events/s (best of 3)",
            gzip, best_rate
        );
    }
}

fn main() {
    caller_cost();
    delivery();
}
