//! Weir: a reverse proxy that runs a chain of sandboxed WebAssembly components on every request.
//!
//! The request path: [`server`] accepts, [`inbound`] admits the request head and [`normalise`]s its path,
//! [`proxy::Proxy::handle`] picks a route ([`routes`]), [`chain`] runs
//! the route's plugins ([`plugin`], inside the [`sandbox`]) around the [`upstream`] call, [`fault`]
//! turns any failure into its status code, and [`outcome`] counts the request ([`stats`]) and writes its
//! [`access_log`] line once its response is sent.

pub mod access_log;
pub mod admin;
pub mod anchors;
pub mod body;
pub mod chain;
pub mod client_cert;
pub mod client_clocks;
pub mod compile_cache;
pub mod config;
pub mod config_watch;
pub mod connections;
pub mod context;
pub mod cpu_time;
pub mod crypto;
pub mod epoch;
pub mod exchange;
pub mod fault;
pub mod guest_output;
pub mod head_bytes;
pub mod hex;
pub mod http_client;
pub mod inbound;
pub mod inspect;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod normalise;
pub mod outcome;
pub mod peers;
pub mod pem_file;
pub mod pid_file;
pub mod plugin;
pub mod proxy;
pub mod proxy_protocol;
pub mod real_ip;
pub mod redact;
pub mod reload;
pub mod request_id;
pub mod routes;
pub mod sandbox;
pub mod server;
pub mod sniff;
pub mod stats;
pub mod store;
pub mod tls;
pub mod upgrade;
pub mod upstream;
pub mod websocket;
