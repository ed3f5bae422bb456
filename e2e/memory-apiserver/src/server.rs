//! The HTTP/1.1 front: accept on loopback, read bounded bodies, route, answer, log each request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::discovery;
use crate::log::{Actor, RequestRecord, RequestVerb};
use crate::output::View;
use crate::patch::PatchType;
use crate::route::{self, Query, Route};
use crate::status::ApiError;
use crate::store::State;
use crate::verbs::{self, Call, Reply};
use crate::watch;

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    pub addr: SocketAddr,
    pub bookmark_interval: Duration,
    pub body_limit: usize,
}

impl Shared {
    pub(crate) fn new(
        state: State,
        addr: SocketAddr,
        bookmark_interval: Duration,
        body_limit: usize,
    ) -> Self {
        Self {
            state: Mutex::new(state),
            addr,
            bookmark_interval,
            body_limit,
        }
    }

    /// The state; a panic elsewhere while holding the lock does not wedge the server.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// Accepts connections until the task is aborted (which aborts the connections too).
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |req| {
                            let shared = shared.clone();
                            async move { Ok::<_, Infallible>(respond(shared, req).await) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                // Out of file descriptors or similar: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

fn full(code: u16, content_type: &str, body: Bytes) -> Response<Body> {
    let mut res = Response::new(Full::new(body).boxed());
    *res.status_mut() =
        http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        res.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    res
}

fn json(code: u16, value: &Value) -> Response<Body> {
    full(code, "application/json", Bytes::from(value.to_string()))
}

fn error(err: &ApiError) -> Response<Body> {
    json(err.code, &err.to_status())
}

fn header_str(req: &http::request::Parts, name: header::HeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

async fn respond(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let route = route::parse(parts.uri.path());
    let query = Query::parse(parts.uri.query());
    let mut record = RequestRecord {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        verb: classify(&parts, &route, &query),
        resource: None,
        namespace: None,
        name: None,
        subresource: None,
        status: 0,
    };
    if let Route::Resource(t) = &route {
        record.resource = Some(t.plural.clone());
        record.namespace = t.namespace.clone();
        record.name = t.name.clone();
        record.subresource = t.subresource.clone();
    }
    let body = match Limited::new(body, shared.body_limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let res = error(&ApiError::too_large(shared.body_limit));
            record.status = res.status().as_u16();
            shared.lock().requests.push(record);
            return res;
        }
    };
    let res = answer(&shared, &parts, &route, &query, &body);
    record.status = res.status().as_u16();
    shared.lock().requests.push(record);
    res
}

fn classify(parts: &http::request::Parts, route: &Route, query: &Query) -> RequestVerb {
    let Route::Resource(t) = route else {
        return if matches!(route, Route::Unknown) || parts.method != Method::GET {
            RequestVerb::Other
        } else {
            RequestVerb::Discovery
        };
    };
    let apply = header_str(parts, header::CONTENT_TYPE).and_then(PatchType::from_content_type)
        == Some(PatchType::Apply);
    match (&parts.method, t.name.is_some()) {
        (&Method::GET, true) => RequestVerb::Get,
        (&Method::GET, false) if query.flag("watch") => RequestVerb::Watch,
        (&Method::GET, false) => RequestVerb::List,
        (&Method::POST, _) => RequestVerb::Create,
        (&Method::PUT, _) => RequestVerb::Update,
        (&Method::PATCH, _) if apply => RequestVerb::Apply,
        (&Method::PATCH, _) => RequestVerb::Patch,
        (&Method::DELETE, true) => RequestVerb::Delete,
        (&Method::DELETE, false) => RequestVerb::DeleteCollection,
        _ => RequestVerb::Other,
    }
}

fn answer(
    shared: &Arc<Shared>,
    parts: &http::request::Parts,
    route: &Route,
    query: &Query,
    body: &Bytes,
) -> Response<Body> {
    let accept = header_str(parts, header::ACCEPT);
    if !matches!(route, Route::Resource(_) | Route::Unknown) && parts.method != Method::GET {
        return error(&ApiError::method_not_allowed(
            "discovery documents are read-only",
        ));
    }
    let aggregated = discovery::wants_aggregated(accept);
    let found = |doc: Option<Value>| match doc {
        Some(doc) => json(200, &doc),
        None => error(&ApiError::no_such_resource()),
    };
    match route {
        Route::Version => json(200, &discovery::version()),
        Route::CoreVersions if aggregated => {
            let doc = discovery::aggregated(&shared.lock().catalog, true);
            full(
                200,
                discovery::AGGREGATED_CONTENT_TYPE,
                Bytes::from(doc.to_string()),
            )
        }
        Route::CoreVersions => json(200, &discovery::core_versions(&shared.addr.to_string())),
        Route::Groups if aggregated => {
            let doc = discovery::aggregated(&shared.lock().catalog, false);
            full(
                200,
                discovery::AGGREGATED_CONTENT_TYPE,
                Bytes::from(doc.to_string()),
            )
        }
        Route::Groups => json(200, &discovery::groups(&shared.lock().catalog)),
        Route::Group(g) => found(discovery::group(&shared.lock().catalog, g)),
        Route::Resources { group, version } => {
            found(discovery::resources(&shared.lock().catalog, group, version))
        }
        Route::Unknown => error(&ApiError::no_such_resource()),
        Route::Resource(target) => {
            let call = Call {
                method: &parts.method,
                target,
                query,
                body,
                content_type: header_str(parts, header::CONTENT_TYPE),
                user_agent: header_str(parts, header::USER_AGENT),
                view: View::from_accept(accept),
                actor: Actor::Client,
            };
            let result = verbs::handle(&mut shared.lock(), &call);
            match result {
                Ok(Reply::Json(code, bytes)) => full(code, "application/json", bytes),
                Ok(Reply::Watch(plan)) => {
                    let body = watch::spawn(shared.clone(), plan, shared.bookmark_interval);
                    let mut res = Response::new(body.boxed());
                    if let Ok(ct) = HeaderValue::from_str("application/json") {
                        res.headers_mut().insert(header::CONTENT_TYPE, ct);
                    }
                    res
                }
                Err(err) => error(&err),
            }
        }
    }
}
