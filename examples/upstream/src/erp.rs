//! `erp-transactions` and `erp-inventory` modes: the two services behind scenario 1's ERP gateway, each a
//! small in-memory CRUD store per shop, guarded by its own secret `X-API-Key`.
//!
//! `weir-upstream --mode erp-transactions --api-key SECRET` serves (`inventory` in place of `transactions`
//! for the other service):
//!
//! | request | answer |
//! |---|---|
//! | anything without `X-API-Key: SECRET` | `401 {"error": "unauthorized", "message": "missing or wrong X-API-Key"}` |
//! | `GET /shops/{shop_id}/transactions` | `200`, every item of the shop (eight made up on the shop's first request) |
//! | `POST /shops/{shop_id}/transactions` with a JSON object | `201`, the item stored under the next `id` |
//! | `GET /shops/{shop_id}/transactions/{id}` | `200`, the item; `404` if there is none |
//! | `PUT /shops/{shop_id}/transactions/{id}` with a JSON object | `200`, the item replaced (its `id` kept) |
//! | `DELETE /shops/{shop_id}/transactions/{id}` | `204` |
//! | another method | `405` with `Allow` |
//! | any other path | `404` |
//!
//! Answers are pretty-printed JSON: `{"service", "shop_id", "path", "items" | "item"}`, where `path` is the
//! path the service received, so a client of the proxy sees how its path was rewritten. `?pad=N` (at most
//! 1 MiB) adds a `pad` of N characters, to make any answer big enough to be worth compressing. A body that
//! is not a JSON object gets `400`, one over 1 MiB `413`. The key itself never appears in an answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Body, json_response};

/// The largest body a create or update reads, and the largest `pad`.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Transactions,
    Inventory,
}

impl Service {
    /// The service's name, which is also its collection's path segment.
    pub fn name(self) -> &'static str {
        match self {
            Service::Transactions => "transactions",
            Service::Inventory => "inventory",
        }
    }

    /// The items a shop starts with: eight, so that the list (1.3 KB or more) is above gzip's default
    /// `min_length` of 1 KiB.
    fn seed(self) -> Vec<Value> {
        match self {
            Service::Transactions => [
                ("A-100", 2, 2500, "sale", "counter sale, morning shift"),
                ("B-220", 1, 8900, "sale", "delivery to the north warehouse"),
                ("A-100", 1, -1250, "refund", "damaged on arrival"),
                ("C-310", 12, 14400, "sale", "wholesale order, invoice sent"),
                ("D-045", 3, 2970, "sale", "online order, paid by card"),
                ("B-220", 2, 17800, "sale", "counter sale, afternoon shift"),
                ("E-501", 4, 5160, "sale", "online order, paid by transfer"),
                ("C-310", 1, -1200, "refund", "returned unopened"),
            ]
            .into_iter()
            .enumerate()
            .map(|(i, (sku, quantity, amount_cents, kind, note))| {
                json!({"date": format!("2026-11-{:02}", i + 1), "sku": sku, "quantity": quantity,
                       "amount_cents": amount_cents, "kind": kind, "note": note})
            })
            .collect(),
            Service::Inventory => [
                ("A-100", "Espresso beans, 1 kg", 40, "aisle 3, shelf 2"),
                ("B-220", "Burr grinder, steel", 6, "back room, cage B"),
                ("C-310", "Paper filters, pack of 100", 310, "aisle 1, shelf 4"),
                ("D-045", "Ceramic mug, 300 ml", 72, "aisle 2, shelf 1"),
                ("E-501", "Milk jug, 600 ml", 18, "aisle 2, shelf 3"),
                ("F-777", "Descaling tablets, 10 pcs", 95, "aisle 1, shelf 1"),
                ("G-120", "Cleaning brush, nylon", 27, "aisle 1, shelf 2"),
                ("H-900", "Espresso machine, dual boiler", 2, "back room, cage A"),
            ]
            .into_iter()
            .map(|(sku, name, quantity, location)| {
                json!({"sku": sku, "name": name, "quantity": quantity, "location": location})
            })
            .collect(),
        }
    }
}

/// One service's store and key.
pub struct Erp {
    service: Service,
    api_key: String,
    shops: Mutex<HashMap<String, Shop>>,
}

struct Shop {
    next_id: u64,
    items: BTreeMap<u64, Value>,
}

impl Shop {
    fn seeded(service: Service) -> Shop {
        let mut shop = Shop {
            next_id: 1,
            items: BTreeMap::new(),
        };
        for item in service.seed() {
            shop.insert(item);
        }
        shop
    }

    /// Stores `item` (a JSON object) under the next id, which it gets as its `id`.
    fn insert(&mut self, item: Value) -> &Value {
        let id = self.next_id;
        self.next_id += 1;
        self.items.entry(id).or_insert(with_id(item, id))
    }
}

/// The object with its `id` set to `id`, whatever id the client sent.
fn with_id(item: Value, id: u64) -> Value {
    let mut object = match item {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    object.insert("id".into(), id.into());
    Value::Object(object)
}

/// What every successful answer holds.
#[derive(Serialize)]
struct Envelope<'a> {
    service: &'static str,
    shop_id: &'a str,
    /// The path this service received.
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<Vec<&'a Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pad: Option<String>,
}

/// The request, taken apart.
struct Call<'a> {
    shop: &'a str,
    id: Option<u64>,
    path: &'a str,
    pad: Option<String>,
}

impl Erp {
    pub fn new(service: Service, api_key: String) -> Erp {
        Erp {
            service,
            api_key,
            shops: Mutex::new(HashMap::new()),
        }
    }

    pub async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let key = parts.headers.get("x-api-key").map(HeaderValue::as_bytes);
        if self.api_key.is_empty() || key != Some(self.api_key.as_bytes()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong X-API-Key",
                path,
            );
        }
        let Some((shop, id)) = self.route(path) else {
            return error(StatusCode::NOT_FOUND, "not_found", "no such path", path);
        };
        let Ok(id) = id.map(str::parse::<u64>).transpose() else {
            return error(StatusCode::NOT_FOUND, "not_found", "no such item", path);
        };
        let call = Call {
            shop,
            id,
            path,
            pad: pad(parts.uri.query()),
        };
        let body = match parts.method {
            Method::POST | Method::PUT => match read_object(body).await {
                Ok(object) => Some(object),
                Err(response) => return response,
            },
            _ => None,
        };
        let mut shops = self.shops.lock().unwrap_or_else(PoisonError::into_inner);
        let store = shops
            .entry(shop.to_owned())
            .or_insert_with(|| Shop::seeded(self.service));
        match (&parts.method, call.id, body) {
            (&Method::GET, None, _) => self.reply(
                StatusCode::OK,
                &call,
                Some(store.items.values().collect()),
                None,
            ),
            (&Method::POST, None, Some(object)) => {
                let item = store.insert(object);
                self.reply(StatusCode::CREATED, &call, None, Some(item))
            }
            (_, None, _) => method_not_allowed("GET, POST", path),
            (&Method::GET, Some(id), _) => match store.items.get(&id) {
                Some(item) => self.reply(StatusCode::OK, &call, None, Some(item)),
                None => no_item(path),
            },
            (&Method::PUT, Some(id), Some(object)) => match store.items.get_mut(&id) {
                Some(item) => {
                    *item = with_id(object, id);
                    self.reply(StatusCode::OK, &call, None, Some(item))
                }
                None => no_item(path),
            },
            (&Method::DELETE, Some(id), _) => match store.items.remove(&id) {
                Some(_) => {
                    let mut response = Response::new(Body::default());
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    response
                }
                None => no_item(path),
            },
            (_, Some(_), _) => method_not_allowed("GET, PUT, DELETE", path),
        }
    }

    /// `/shops/{shop}/{service}` or `/shops/{shop}/{service}/{id}`: the shop and the id's text.
    fn route<'a>(&self, path: &'a str) -> Option<(&'a str, Option<&'a str>)> {
        let mut segments = path.strip_prefix("/shops/")?.split('/');
        let shop = segments.next().filter(|s| !s.is_empty())?;
        if segments.next()? != self.service.name() {
            return None;
        }
        match (segments.next(), segments.next()) {
            (None, _) => Some((shop, None)),
            (Some(id), None) if !id.is_empty() => Some((shop, Some(id))),
            _ => None,
        }
    }

    fn reply(
        &self,
        status: StatusCode,
        call: &Call<'_>,
        items: Option<Vec<&Value>>,
        item: Option<&Value>,
    ) -> Response<Body> {
        json_response(
            status,
            &Envelope {
                service: self.service.name(),
                shop_id: call.shop,
                path: call.path,
                items,
                item,
                pad: call.pad.clone(),
            },
        )
    }
}

/// `?pad=N`: N characters of padding, at most [`MAX_BODY`].
fn pad(query: Option<&str>) -> Option<String> {
    let n = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("pad="))?
        .parse::<usize>()
        .ok()?;
    Some(".".repeat(n.min(MAX_BODY)))
}

/// The request body as a JSON object, or the answer saying why not.
async fn read_object(body: Incoming) -> Result<Value, Response<Body>> {
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the body is over 1 MiB or broke off",
                "",
            ));
        }
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(object @ Value::Object(_)) => Ok(object),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be a JSON object",
            "",
        )),
    }
}

fn no_item(path: &str) -> Response<Body> {
    error(StatusCode::NOT_FOUND, "not_found", "no such item", path)
}

fn method_not_allowed(allow: &'static str, path: &str) -> Response<Body> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed here",
        path,
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn error(status: StatusCode, code: &str, message: &str, path: &str) -> Response<Body> {
    let mut body = json!({"error": code, "message": message});
    if !path.is_empty() {
        body["path"] = path.into();
    }
    json_response(status, &body)
}
