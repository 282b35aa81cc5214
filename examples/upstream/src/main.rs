//! `weir-upstream --listen ADDR --name NAME [--jwt-secret SECRET]`: the demo and benchmark upstream; with a
//! secret, `GET /verify` is the native HS256 verifier behind nginx's `auth_request` in the benchmark.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut listen = "127.0.0.1:9001".to_owned();
    let mut name = "demo".to_owned();
    let mut verifier = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--name", Some(v)) => name = v,
            ("--jwt-secret", Some(v)) => verifier = Some(weir_upstream::Verifier::hs256(&v)),
            _ => {
                eprintln!(
                    "usage: weir-upstream [--listen 127.0.0.1:9001] [--name demo] [--jwt-secret SECRET]"
                );
                std::process::exit(2);
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .unwrap_or_else(|e| {
            eprintln!("weir-upstream: cannot listen on {listen}: {e}");
            std::process::exit(1);
        });
    println!(
        "upstream {name} listening on http://{}",
        listener.local_addr().expect("bound")
    );
    weir_upstream::serve_with(listener, &name, verifier).await;
}
