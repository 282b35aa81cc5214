//! One end-to-end test per example under `examples/`: each starts `examples/NAME/run.sh` and replays every
//! console step of `examples/NAME/README.md` against it (the format is in `support/examples.rs`). The README
//! is the test, so the two cannot drift.

#[path = "support/examples.rs"]
mod readme;
mod support;

/// `test_name: "directory"`, one per example; adding an example is adding its line here.
macro_rules! examples {
    ($($test:ident: $dir:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                readme::replay($dir);
            }
        )*
        const TESTED: &[&str] = &[$($dir),*];
    };
}

examples! {
    erp_gateway: "erp-gateway",
    analytics_proxy: "analytics-proxy",
    token_service: "token-service",
    sharded_backend: "sharded-backend",
    spa: "spa",
}

/// An example whose README has a transcript but no test above would rot unnoticed.
#[test]
fn every_example_with_a_transcript_is_tested() {
    let mut untested = Vec::new();
    for entry in std::fs::read_dir(support::workspace().join("examples")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let has_transcript = std::fs::read_to_string(dir.join("README.md"))
            .is_ok_and(|readme| readme.lines().any(|l| l.trim() == "```console"));
        if has_transcript && !TESTED.contains(&name.as_str()) {
            untested.push(name);
        }
    }
    assert!(
        untested.is_empty(),
        "examples with a README transcript but no test in tests/examples.rs: {untested:?}"
    );
}
