//! Send a few events to stele and print what the client counted.
//!
//! With `cargo run -- dev` running in another terminal (it listens on
//! 127.0.0.1:8787 and knows the token `dev-token-acme`):
//!
//! ```sh
//! cargo run -p stele-client --example emit
//! STELE_ENDPOINT=https://audit.example.com STELE_TOKEN=… cargo run -p stele-client --example emit
//! ```
use std::time::Duration;

use serde_json::json;
use stele_client::{Actor, Client, Event, Outcome, Resource, SpillConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::var("STELE_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:8787".into());
    let token = std::env::var("STELE_TOKEN").unwrap_or_else(|_| "dev-token-acme".into());
    let client = Client::builder(&endpoint)
        .token(token)
        .service("example")
        .spill(SpillConfig::new(std::env::temp_dir().join("stele-example-spill")))
        .shutdown_timeout(Duration::from_secs(10))
        .build()?;

    // Fire and forget.
    client.emit(Event::login_succeeded("u-42"));
    client.emit(Event::login_failed("u-43").metadata("reason", "bad password"));
    client.emit(
        Event::audit("invoice.void")
            .actor(Actor::user("u-42").display("ada@example.com").ip("192.0.2.7"))
            .resource(Resource::new("invoice", "inv-1001"))
            .outcome(Outcome::Success)
            .changes(json!({ "status": "open" }), json!({ "status": "void" }))
            .correlation_id("req-7f3a"),
    );

    // Confirmed: waits for the API's 202.
    match client
        .emit_sync(Event::api_key_created(Actor::user("u-42"), "key-9"))
        .await
    {
        Ok(receipt) => println!("accepted {} (hash {})", receipt.event_id, receipt.event_hash),
        Err(e) => println!("not confirmed: {e}"),
    }

    // Send what is queued before exiting.
    client.shutdown().await?;
    let stats = client.stats();
    println!(
        "queued {} sent {} retried {} spilled {} dropped {}",
        stats.queued,
        stats.sent,
        stats.retried,
        stats.spilled,
        stats.dropped.total()
    );
    Ok(())
}
