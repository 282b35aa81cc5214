//! `weir-upstream [--listen ADDR] [--name NAME] [--mode MODE] [--api-key KEY] [--jwt-secret SECRET]`: the
//! upstream of the demo, the benchmark and every example. `--mode` chooses what it serves (see the table in
//! `lib.rs`); an ERP mode needs `--api-key`, the `X-API-Key` it requires. With a secret, `GET /verify` (in
//! `echo` mode) is the native HS256 verifier behind nginx's `auth_request` in the benchmark.

use weir_upstream::{Mode, Options};

const USAGE: &str = "usage: weir-upstream [--listen 127.0.0.1:9001] [--name demo] \
    [--mode echo|mirror|shard|spa|erp-transactions|erp-inventory] [--api-key KEY] [--jwt-secret SECRET]";

fn usage(problem: &str) -> ! {
    eprintln!("weir-upstream: {problem}\n{USAGE}");
    std::process::exit(2);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut listen = "127.0.0.1:9001".to_owned();
    let mut options = Options::echo("demo");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--name", Some(v)) => options.name = v,
            ("--mode", Some(v)) => options.mode = v.parse().unwrap_or_else(|e: String| usage(&e)),
            ("--api-key", Some(v)) => options.api_key = Some(v),
            ("--jwt-secret", Some(v)) => {
                options.verifier = Some(weir_upstream::Verifier::hs256(&v))
            }
            _ => usage(&format!("unexpected argument `{arg}`")),
        }
    }
    // A service that needs a key and has none would refuse everything: refused at the start instead.
    if matches!(options.mode, Mode::Erp(_)) && options.api_key.as_deref().unwrap_or("").is_empty() {
        usage("an ERP mode needs --api-key");
    }
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .unwrap_or_else(|e| {
            eprintln!("weir-upstream: cannot listen on {listen}: {e}");
            std::process::exit(1);
        });
    println!(
        "upstream {} listening on http://{}",
        options.name,
        listener.local_addr().expect("bound")
    );
    weir_upstream::serve_options(listener, options).await;
}
