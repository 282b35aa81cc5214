//! The host side of the contract's imported interfaces: what a plugin can read and change, each change
//! validated here.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use wasmtime::Result;

use super::bindings::weir::plugin::{context, log, request, response, types};
use crate::body::{self, ProxyBody};
use crate::exchange::{self, Exchange, HeaderBudget, ResponseHead};
use crate::guest_output;
use crate::normalise;
use crate::sandbox::HostState;

type Header = (String, Vec<u8>);

impl HostState {
    fn exchange(&mut self) -> Result<&mut Exchange> {
        match self.exchange.as_deref_mut() {
            Some(ex) => Ok(ex),
            None => wasmtime::bail!("a plugin used the request outside of a request hook"),
        }
    }

    /// The request, if it can still be changed (not once the response phase has begun).
    fn request_mut(&mut self) -> Result<Result<&mut Exchange, String>> {
        let ex = self.exchange()?;
        Ok(if ex.response.is_some() {
            Err("the request can only be changed in on-request".into())
        } else {
            Ok(ex)
        })
    }

    fn response_head(&mut self) -> Result<&mut ResponseHead> {
        match self.exchange()?.response.as_mut() {
            Some(head) => Ok(head),
            None => wasmtime::bail!("a plugin used the response outside of the response phase"),
        }
    }
}

fn first(headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    let name = exchange::lookup_name(name)?;
    headers.get(name).map(|v| v.as_bytes().to_vec())
}

fn all(headers: &HeaderMap, name: &str) -> Vec<Vec<u8>> {
    exchange::lookup_name(name).map_or_else(Vec::new, |name| {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    })
}

fn list(headers: &HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// A header a plugin adds, checked and paid for out of the message's budget.
fn checked(
    budget: &mut HeaderBudget,
    name: &str,
    value: &[u8],
) -> Result<(HeaderName, HeaderValue), String> {
    let name = exchange::settable_name(name)?;
    let value = exchange::settable_value(value)?;
    budget.spend(&name, &value)?;
    Ok((name, value))
}

fn set(
    headers: &mut HeaderMap,
    budget: &mut HeaderBudget,
    name: &str,
    value: &[u8],
) -> Result<(), String> {
    let (name, value) = checked(budget, name, value)?;
    headers.insert(name, value);
    Ok(())
}

fn append(
    headers: &mut HeaderMap,
    budget: &mut HeaderBudget,
    name: &str,
    value: &[u8],
) -> Result<(), String> {
    let (name, value) = checked(budget, name, value)?;
    headers.append(name, value);
    Ok(())
}

fn remove(headers: &mut HeaderMap, name: &str) -> Result<(), String> {
    let name =
        exchange::lookup_name(name).ok_or_else(|| format!("invalid header name {name:?}"))?;
    headers.remove(name);
    Ok(())
}

impl types::Host for HostState {}

impl request::Host for HostState {
    fn method(&mut self) -> Result<String> {
        Ok(self.exchange()?.method.as_str().to_owned())
    }

    fn path(&mut self) -> Result<String> {
        Ok(self.exchange()?.path.clone())
    }

    fn query(&mut self) -> Result<Option<String>> {
        Ok(self.exchange()?.query.clone())
    }

    fn original_uri(&mut self) -> Result<String> {
        let uri = &self.exchange()?.original_uri;
        Ok(uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), ToString::to_string))
    }

    fn client_addr(&mut self) -> Result<String> {
        Ok(self.exchange()?.client_ip.to_string())
    }

    fn header(&mut self, name: String) -> Result<Option<Vec<u8>>> {
        Ok(first(&self.exchange()?.headers, &name))
    }

    fn header_all(&mut self, name: String) -> Result<Vec<Vec<u8>>> {
        Ok(all(&self.exchange()?.headers, &name))
    }

    fn headers(&mut self) -> Result<Vec<Header>> {
        Ok(list(&self.exchange()?.headers))
    }

    fn upstream(&mut self) -> Result<String> {
        Ok(self.exchange()?.upstream.name.clone())
    }

    fn scheme(&mut self) -> Result<String> {
        Ok(self.exchange()?.scheme.to_owned())
    }

    async fn read_body(&mut self, limit: u32) -> Result<Result<Vec<u8>, request::BodyError>> {
        let ex = match self.request_mut()? {
            Ok(ex) => ex,
            Err(refused) => return Ok(Err(request::BodyError::Broken(refused))),
        };
        let Some(body) = ex.body.take() else {
            return Ok(Err(request::BodyError::Broken(
                "the request body is not available in this hook".into(),
            )));
        };
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let read = body::read_whole(body, limit).await;
        // Waiting for the client is not the plugin's CPU time.
        self.waited_on_host = true;
        let ex = self.exchange()?;
        Ok(match read {
            Ok(whole) => {
                let data = whole.data.to_vec();
                ex.body = Some(ProxyBody::whole(whole));
                Ok(data)
            }
            Err((error, kept)) => {
                ex.body = Some(kept);
                Err(error)
            }
        })
    }

    fn set_path(&mut self, path: String) -> Result<Result<(), String>> {
        Ok(self.request_mut()?.and_then(|ex| {
            let normal = normalise::path(&path, ex.path_policy)
                .map_err(|e| format!("path {path:?} refused: {e}"))?;
            ex.path = normal.into_owned();
            Ok(())
        }))
    }

    fn set_query(&mut self, query: Option<String>) -> Result<Result<(), String>> {
        Ok(self.request_mut()?.and_then(|ex| {
            ex.query = match &query {
                Some(q) => Some(
                    normalise::query(q)
                        .map_err(|e| format!("query {q:?} refused: {e}"))?
                        .into_owned(),
                ),
                None => None,
            };
            Ok(())
        }))
    }

    fn set_header(&mut self, name: String, value: Vec<u8>) -> Result<Result<(), String>> {
        Ok(self
            .request_mut()?
            .and_then(|ex| set(&mut ex.headers, &mut ex.header_budget, &name, &value)))
    }

    fn append_header(&mut self, name: String, value: Vec<u8>) -> Result<Result<(), String>> {
        Ok(self
            .request_mut()?
            .and_then(|ex| append(&mut ex.headers, &mut ex.header_budget, &name, &value)))
    }

    fn remove_header(&mut self, name: String) -> Result<Result<(), String>> {
        Ok(self
            .request_mut()?
            .and_then(|ex| remove(&mut ex.headers, &name)))
    }

    fn set_upstream(&mut self, name: String) -> Result<Result<(), String>> {
        Ok(self.request_mut()?.and_then(|ex| {
            let upstream = ex.upstreams.get(&name).ok_or_else(|| {
                format!(
                    "no upstream named {name:?} (known: {})",
                    ex.upstreams.names()
                )
            })?;
            ex.upstream = upstream.clone();
            Ok(())
        }))
    }

    fn skip_body(&mut self) -> Result<()> {
        self.exchange()?.skip_body = true;
        Ok(())
    }
}

impl response::Host for HostState {
    fn status(&mut self) -> Result<u16> {
        Ok(self.response_head()?.status.as_u16())
    }

    fn header(&mut self, name: String) -> Result<Option<Vec<u8>>> {
        Ok(first(&self.response_head()?.headers, &name))
    }

    fn header_all(&mut self, name: String) -> Result<Vec<Vec<u8>>> {
        Ok(all(&self.response_head()?.headers, &name))
    }

    fn headers(&mut self) -> Result<Vec<Header>> {
        Ok(list(&self.response_head()?.headers))
    }

    fn set_status(&mut self, status: u16) -> Result<Result<(), String>> {
        let head = self.response_head()?;
        Ok(exchange::settable_status(status).map(|s| head.status = s))
    }

    fn set_header(&mut self, name: String, value: Vec<u8>) -> Result<Result<(), String>> {
        let head = self.response_head()?;
        Ok(set(
            &mut head.headers,
            &mut head.header_budget,
            &name,
            &value,
        ))
    }

    fn append_header(&mut self, name: String, value: Vec<u8>) -> Result<Result<(), String>> {
        let head = self.response_head()?;
        Ok(append(
            &mut head.headers,
            &mut head.header_budget,
            &name,
            &value,
        ))
    }

    fn remove_header(&mut self, name: String) -> Result<Result<(), String>> {
        Ok(remove(&mut self.response_head()?.headers, &name))
    }

    fn skip_body(&mut self) -> Result<()> {
        self.response_head()?;
        self.exchange()?.skip_body = true;
        Ok(())
    }
}

impl context::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<String>> {
        Ok(self.exchange()?.context.get(&key).cloned())
    }

    fn set(&mut self, key: String, value: String) -> Result<Result<(), String>> {
        Ok(self.exchange()?.context.set(key, value))
    }

    fn remove(&mut self, key: String) -> Result<()> {
        self.exchange()?.context.remove(&key);
        Ok(())
    }
}

impl log::Host for HostState {
    fn enabled(&mut self, level: log::Level) -> Result<bool> {
        Ok(guest_output::enabled(tracing_level(level)))
    }

    fn log(&mut self, level: log::Level, message: String) -> Result<()> {
        // A call's lines are bounded like its memory: past `plugin_log_bytes` the rest of the call's lines
        // are dropped, said once per call, and that too within the entry's budget of lines per period.
        if message.len() > self.log_left {
            if self.log_dropped == 0 {
                guest_output::log(
                    &self.label,
                    tracing::Level::WARN,
                    "this call's log lines are over plugin_log_bytes; the rest of them are dropped",
                );
            }
            self.log_dropped += 1;
            self.log_left = 0;
            return Ok(());
        }
        self.log_left -= message.len();
        guest_output::log(&self.label, tracing_level(level), &message);
        Ok(())
    }
}

fn tracing_level(level: log::Level) -> tracing::Level {
    match level {
        log::Level::Trace => tracing::Level::TRACE,
        log::Level::Debug => tracing::Level::DEBUG,
        log::Level::Info => tracing::Level::INFO,
        log::Level::Warn => tracing::Level::WARN,
        log::Level::Error => tracing::Level::ERROR,
    }
}
