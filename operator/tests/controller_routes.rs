//! Routes across servers: a missing server, rivals for a host, a route named like a server,
//! a route moving to another server, exposure the cluster cannot serve, and the offline
//! `render` deciding as the controller does.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod controller_support;

use controller_support::*;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};
use sluice_crds::conditions::{self, reasons};
use sluice_crds::{McpRoute, McpServer};
use sluice_operator::render::{self, RenderOptions};

fn config_of(map: &ConfigMap) -> String {
    map.data.as_ref().unwrap()["config.yaml"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_without_its_server_waits_for_it() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster.apply::<McpRoute>(route("public", "later")).await;
    let orphan = cluster
        .wait_for::<McpRoute>("public", "ServerNotFound", |r| {
            route_reason(r, conditions::ACCEPTED).as_deref() == Some(reasons::SERVER_NOT_FOUND)
        })
        .await;
    let accepted = route_condition(&orphan, conditions::ACCEPTED).unwrap();
    assert_eq!(accepted.status, "False");
    assert!(
        accepted.message.contains("\"later\""),
        "{}",
        accepted.message
    );
    assert!(cluster.get::<Service>("public").await.is_none());

    cluster.apply::<McpServer>(server("later")).await;
    let served = cluster
        .wait_for::<McpRoute>("public", "Accepted", |r| {
            route_reason(r, conditions::ACCEPTED).as_deref() == Some(reasons::ACCEPTED)
        })
        .await;
    assert_eq!(served.status.unwrap().listener_port, Some(8081));
    cluster
        .wait_for::<Service>("public", "the route's Service", |_| true)
        .await;

    // The server goes: the route says so again.
    cluster.delete::<McpServer>("later").await;
    cluster
        .wait_for::<McpRoute>("public", "ServerNotFound again", |r| {
            route_reason(r, conditions::ACCEPTED).as_deref() == Some(reasons::SERVER_NOT_FOUND)
        })
        .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_route_keeps_a_contested_host() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster.apply::<McpServer>(server("one")).await;
    cluster.apply::<McpServer>(server("two")).await;
    // The older route is named to sort last: age, not name, must decide.
    cluster
        .apply::<McpRoute>(exposed(route("zeta", "one"), "phab.example.com", "/ai"))
        .await;
    cluster
        .wait_for::<McpRoute>("zeta", "the first route accepted", |r| {
            route_reason(r, conditions::ACCEPTED).as_deref() == Some(reasons::ACCEPTED)
        })
        .await;
    // A second later: creation timestamps have second precision.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    cluster
        .apply::<McpRoute>(exposed(route("alpha", "two"), "phab.example.com", "/ai"))
        .await;
    let loser = cluster
        .wait_for::<McpRoute>("alpha", "ConflictingRoute", |r| {
            route_reason(r, conditions::ACCEPTED).as_deref() == Some(reasons::CONFLICTING_ROUTE)
        })
        .await;
    let message = route_condition(&loser, conditions::ACCEPTED)
        .unwrap()
        .message;
    assert!(message.contains("McpRoute tools/zeta"), "{message}");
    assert!(cluster.get::<Ingress>("alpha").await.is_none());
    wait_quiet(&cluster, &operator).await;
    let winner = cluster.get::<McpRoute>("zeta").await.unwrap();
    assert_eq!(
        route_reason(&winner, conditions::ACCEPTED).as_deref(),
        Some(reasons::ACCEPTED)
    );
    assert!(cluster.get::<Ingress>("zeta").await.is_some());

    // The winner leaves: the other one takes the host.
    cluster.delete::<McpRoute>("zeta").await;
    cluster
        .wait_for::<McpRoute>("alpha", "accepted after the winner left", |r| {
            route_reason(r, conditions::ACCEPTED).as_deref() == Some(reasons::ACCEPTED)
        })
        .await;
    cluster
        .wait_for::<Ingress>("alpha", "its Ingress", |_| true)
        .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_named_like_another_server_is_refused() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster.apply::<McpServer>(server("main")).await;
    cluster.apply::<McpServer>(server("other")).await;
    cluster.apply::<McpRoute>(route("other", "main")).await;
    let refused = cluster
        .wait_for::<McpRoute>("other", "ConflictingRoute", |r| {
            route_reason(r, conditions::ACCEPTED).as_deref() == Some(reasons::CONFLICTING_ROUTE)
        })
        .await;
    let message = route_condition(&refused, conditions::ACCEPTED)
        .unwrap()
        .message;
    assert!(message.contains("McpServer tools/other"), "{message}");
    // The Service `other` is the server's, untouched by the route.
    let service = cluster.get::<Service>("other").await.unwrap();
    let labels = service.metadata.labels.unwrap();
    assert_eq!(labels["sluice.dev/server"], "other");
    assert!(!labels.contains_key("sluice.dev/route"));
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_moving_to_another_server_leaves_the_first_ones_config() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster.apply::<McpServer>(server("a")).await;
    cluster.apply::<McpServer>(server("b")).await;
    cluster.apply::<McpRoute>(route("mover", "a")).await;
    cluster
        .wait_for::<ConfigMap>("a-sluice-proxy", "the route in a's config", |m| {
            config_of(m).contains("8081")
        })
        .await;

    cluster.apply::<McpRoute>(route("mover", "b")).await;
    cluster
        .wait_for::<ConfigMap>("b-sluice-proxy", "the route in b's config", |m| {
            config_of(m).contains("8081")
        })
        .await;
    cluster
        .wait_for::<ConfigMap>("a-sluice-proxy", "the route out of a's config", |m| {
            !config_of(m).contains("8081")
        })
        .await;
    let service = cluster
        .wait_for::<Service>("mover", "the Service now b's", |s| {
            s.metadata.labels.as_ref().unwrap()["sluice.dev/server"] == "b"
        })
        .await;
    assert_eq!(
        service.spec.unwrap().selector.unwrap()["app.kubernetes.io/instance"],
        "b"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_route_without_the_gateway_api_is_reported_not_applied() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster.apply::<McpServer>(server("phab")).await;
    let mut gateway = route("public", "phab");
    gateway["spec"]["hostnames"] = json!(["phab.example.com"]);
    gateway["spec"]["expose"] =
        json!({"httpRoute": {"parentRefs": [{"name": "public", "namespace": "gateways"}]}});
    cluster.apply::<McpRoute>(gateway).await;
    let route = cluster
        .wait_for::<McpRoute>("public", "GatewayApiNotInstalled", |r| {
            route_reason(r, conditions::PROGRAMMED).as_deref()
                == Some(reasons::GATEWAY_API_NOT_INSTALLED)
        })
        .await;
    // Accepted (its config and Service are in place), not programmed.
    assert_eq!(
        route_reason(&route, conditions::ACCEPTED).as_deref(),
        Some(reasons::ACCEPTED)
    );
    cluster
        .wait_for::<Service>("public", "its Service", |_| true)
        .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_watched_namespaces_are_reconciled() {
    let cluster = Cluster::start().await;
    let mut watched = options();
    watched.controller.scope =
        sluice_operator::controller::Scope::Namespaces(vec![NS.into(), "other".into()]);
    let operator = Operator::start(&cluster, watched);
    let mut elsewhere = server("phab");
    elsewhere["metadata"]["namespace"] = json!("unwatched");
    kube::Api::<McpServer>::namespaced(cluster.client.clone(), "unwatched")
        .patch(
            "phab",
            &kube::api::PatchParams::apply(TEST_MANAGER),
            &kube::api::Patch::Apply(&elsewhere),
        )
        .await
        .unwrap();
    cluster.apply::<McpServer>(server("phab")).await;
    cluster
        .wait_for::<McpServer>("phab", "the watched one reconciled", |s| s.status.is_some())
        .await;
    wait_quiet(&cluster, &operator).await;
    let ignored = kube::Api::<McpServer>::namespaced(cluster.client.clone(), "unwatched")
        .get("phab")
        .await
        .unwrap();
    assert!(ignored.status.is_none(), "{ignored:#?}");
    let unwatched_writes: Vec<_> = cluster
        .api
        .writes()
        .into_iter()
        .filter(|w| w.namespace.as_deref() == Some("unwatched"))
        .collect();
    assert!(unwatched_writes.is_empty(), "{unwatched_writes:#?}");
    operator.stop().await;
}

/// The rule that spans servers has one implementation, which the offline `render` and the
/// controller both call. On what both can decide (objects created in name order, so age and
/// name agree), the route `render` refuses is the one the controller rejects, with the same
/// message, and a set `render` accepts is one the controller accepts whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_render_and_the_controller_reject_the_same_routes() {
    let in_cluster_with_host = |name: &str, server: &str, host: &str| {
        let mut route = route(name, server);
        route["spec"]["hostnames"] = json!([host]);
        route
    };
    let cases: Vec<Vec<Value>> = vec![
        // Another server's route claims the same host and prefix.
        vec![
            exposed(route("a-first", "one"), "a.example.com", "/ai"),
            exposed(route("a-second", "two"), "a.example.com", "/ai"),
        ],
        // The same host at another prefix.
        vec![
            exposed(route("b-first", "one"), "b.example.com", "/x"),
            exposed(route("b-second", "two"), "b.example.com", "/y"),
        ],
        // A route named like another server.
        vec![route("two", "one")],
        // Two routes of one server claim the same host and prefix.
        vec![
            exposed(route("d-first", "one"), "d.example.com", "/"),
            exposed(route("d-second", "one"), "d.example.com", "/"),
        ],
        // An in-cluster route's hostnames claim nothing.
        vec![
            exposed(route("e-first", "one"), "e.example.com", "/"),
            in_cluster_with_host("e-second", "two", "e.example.com"),
        ],
    ];
    let servers: Vec<McpServer> = ["one", "two"]
        .map(|name| serde_json::from_value(server(name)).unwrap())
        .to_vec();
    let offline: Vec<Option<(String, String)>> = cases
        .iter()
        .map(|case| {
            let routes: Vec<McpRoute> = case
                .iter()
                .map(|r| serde_json::from_value(r.clone()).unwrap())
                .collect();
            let error = render::render_all(&servers, &routes, &RenderOptions::default()).err()?;
            Some((error.subject()?.name.clone(), error.to_string()))
        })
        .collect();
    assert_eq!(offline.iter().flatten().count(), 3, "{offline:#?}");

    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster.apply::<McpServer>(server("one")).await;
    cluster.apply::<McpServer>(server("two")).await;
    for route in cases.iter().flatten() {
        cluster.apply::<McpRoute>(route.clone()).await;
    }
    for route in cases.iter().flatten() {
        let name = route["metadata"]["name"].as_str().unwrap();
        cluster
            .wait_for::<McpRoute>(name, "a verdict", |r| {
                route_condition(r, conditions::ACCEPTED).is_some()
            })
            .await;
    }
    wait_quiet(&cluster, &operator).await;
    for (case, offline) in cases.iter().zip(&offline) {
        let mut rejected = Vec::new();
        for route in case {
            let name = route["metadata"]["name"].as_str().unwrap();
            let live = cluster.get::<McpRoute>(name).await.unwrap();
            let accepted = route_condition(&live, conditions::ACCEPTED).unwrap();
            if accepted.status == "False" {
                rejected.push((name.to_string(), accepted.message));
            }
        }
        assert_eq!(rejected, offline.iter().cloned().collect::<Vec<_>>());
    }
    operator.stop().await;
}
