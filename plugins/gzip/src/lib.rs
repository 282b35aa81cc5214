//! Compresses responses with gzip or brotli, as the client's `Accept-Encoding` and the config allow, while
//! they stream: like nginx's gzip module, plus brotli, q-values and `Vary`/`ETag` care.

mod config;
mod decide;
mod encoder;
mod negotiate;
mod types;

use config::{Config, Encoding};
use decide::{Decision, Head};
use encoder::Encoder;
use flate2::Compress;
use types::MediaRange;
use weir_sdk::{Action, ConfigError, Hooks, Plugin, Request, Response, Result};

#[derive(serde::Deserialize)]
#[serde(from = "Config")]
struct Gzip {
    config: Config,
    ranges: Vec<MediaRange>,
    /// This request's negotiated coding, from `on_request`.
    choice: Option<Encoding>,
    head_request: bool,
    /// This response's compressor, from `on_response`, while its body streams.
    encoder: Option<Encoder>,
    /// zlib's state, kept across the requests this pooled instance serves.
    spare_gzip: Option<Box<Compress>>,
}

impl From<Config> for Gzip {
    fn from(config: Config) -> Self {
        Gzip {
            config,
            ranges: Vec::new(),
            choice: None,
            head_request: false,
            encoder: None,
            spare_gzip: None,
        }
    }
}

impl Plugin for Gzip {
    const HOOKS: Hooks = Hooks::RESPONSE_BODY;

    fn init(&mut self) -> core::result::Result<(), ConfigError> {
        self.ranges = self.config.check()?;
        Ok(())
    }

    /// Reads `Accept-Encoding` here rather than in `on_response`: a later plugin may drop it before the
    /// upstream (so that the upstream does not compress), and this plugin still answers the client's.
    fn on_request(&mut self, req: &mut Request) -> Result<Action> {
        self.choice = negotiate::choose(&req.header_all("accept-encoding"), &self.config.encodings);
        self.head_request = req.method() == "HEAD";
        Ok(Action::Continue)
    }

    fn on_response(&mut self, _req: &Request, resp: &mut Response) -> Result<()> {
        // An instance is reused: a body abandoned half-way leaves no compressor behind (the host retires
        // such an instance anyway; this keeps the plugin correct without relying on it).
        self.encoder = None;
        let cache_control = resp.header_all("cache-control");
        let content_type = resp.header("content-type");
        let head = Head {
            status: resp.status(),
            content_type: content_type.as_deref(),
            content_encoding: resp.header("content-encoding").is_some(),
            content_range: resp.header("content-range").is_some(),
            content_length: resp
                .header_str("content-length")
                .and_then(|n| n.trim().parse().ok()),
            cache_control: &cache_control,
        };
        let decision = decide::decide(
            &head,
            self.head_request,
            self.choice,
            &self.ranges,
            self.config.min_length,
        );
        if decision != Decision::Never
            && let Some(vary) = decide::vary(&resp.header_all("vary"))
        {
            resp.set_header("vary", vary)?;
        }
        let Decision::Compress(encoding) = decision else {
            resp.skip_body();
            return Ok(());
        };
        resp.set_header("content-encoding", encoding.token())?;
        if let Some(weak) = resp.header("etag").as_deref().and_then(decide::weak_etag) {
            resp.set_header("etag", weak)?;
        }
        // Byte ranges of the compressed body cannot be served; the host drops `Content-Length`.
        resp.remove_header("accept-ranges")?;
        self.encoder = Some(Encoder::start(
            encoding,
            self.spare_gzip.take(),
            self.config.level,
            self.config.br_level,
        ));
        Ok(())
    }

    fn on_response_body(&mut self, chunk: Vec<u8>, end: bool) -> Result<Vec<u8>> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(chunk);
        };
        if !end {
            return Ok(encoder.push(&chunk));
        }
        let (rest, gzip) = self.encoder.take().expect("checked above").finish(&chunk);
        if gzip.is_some() {
            self.spare_gzip = gzip;
        }
        Ok(rest)
    }
}

weir_sdk::export!(Gzip);
