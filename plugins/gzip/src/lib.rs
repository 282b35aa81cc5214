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
use std::cell::RefCell;
use std::rc::Rc;
use types::MediaRange;
use weir_sdk::{Action, ConfigError, Hooks, Plugin, Request, Response, Result, Transform, context};

/// Where `on_request` leaves the coding it negotiated for `on_response`, which may run on another instance.
const CHOICE: &str = "gzip.coding";

#[derive(serde::Deserialize)]
#[serde(from = "Config")]
struct Gzip {
    config: Config,
    ranges: Vec<MediaRange>,
    /// zlib's ~300 KiB of state, kept across the bodies this instance compresses: a finished body's
    /// encoder gives it back here.
    spare_gzip: Rc<RefCell<Option<Box<Compress>>>>,
}

impl From<Config> for Gzip {
    fn from(config: Config) -> Self {
        Gzip {
            config,
            ranges: Vec::new(),
            spare_gzip: Rc::default(),
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
    fn on_request(&self, req: &mut Request) -> Result<Action> {
        let choice = negotiate::choose(&req.header_all("accept-encoding"), &self.config.encodings);
        if let Some(encoding) = choice {
            context::set(CHOICE, encoding.token())?;
        }
        Ok(Action::Continue)
    }

    fn on_response(&self, req: &Request, resp: &mut Response) -> Result<()> {
        let choice = context::get(CHOICE).and_then(|token| Encoding::from_token(&token));
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
            req.method() == "HEAD",
            choice,
            &self.ranges,
            self.config.min_length,
        );
        if decision != Decision::Never
            && let Some(vary) = decide::vary(&resp.header_all("vary"))
        {
            resp.set_header("vary", vary)?;
        }
        // No transform: the body streams untouched, with its length.
        let Decision::Compress(encoding) = decision else {
            return Ok(());
        };
        resp.set_header("content-encoding", encoding.token())?;
        if let Some(weak) = resp.header("etag").as_deref().and_then(decide::weak_etag) {
            resp.set_header("etag", weak)?;
        }
        // Byte ranges of the compressed body cannot be served; the host drops `Content-Length`.
        resp.remove_header("accept-ranges")?;
        let encoder = Encoder::start(
            encoding,
            self.spare_gzip.borrow_mut().take(),
            self.config.level,
            self.config.br_level,
        );
        resp.transform_body(Compressing {
            encoder: Some(encoder),
            spare_gzip: self.spare_gzip.clone(),
        });
        Ok(())
    }
}

/// One response body being compressed.
struct Compressing {
    encoder: Option<Encoder>,
    spare_gzip: Rc<RefCell<Option<Box<Compress>>>>,
}

impl Transform for Compressing {
    fn chunk(&mut self, chunk: Vec<u8>, end: bool) -> Result<Vec<u8>> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(chunk);
        };
        if !end {
            return Ok(encoder.push(&chunk));
        }
        let Some(encoder) = self.encoder.take() else {
            return Ok(chunk);
        };
        let (rest, gzip) = encoder.finish(&chunk);
        if gzip.is_some() {
            *self.spare_gzip.borrow_mut() = gzip;
        }
        Ok(rest)
    }
}

weir_sdk::export!(Gzip);
