//! Two operators on one cluster: only the Lease holder reconciles; when it stops (gracefully
//! or by crashing), the other takes over.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod controller_support;

use controller_support::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use sluice_crds::McpServer;

/// Starts two elected operators and returns (leader, standby) once one leads.
async fn two_operators(cluster: &Cluster) -> (Operator, Operator) {
    let with = |identity: &str| {
        let mut options = options();
        options.leader = Some(elected(identity));
        options.controller.identity = identity.into();
        options
    };
    let a = Operator::start(cluster, with("operator-a"));
    let b = Operator::start(cluster, with("operator-b"));
    eventually("a leader", || async {
        (a.leads() || b.leads()).then_some(())
    })
    .await
    .expect("one of them leads");
    if a.leads() { (a, b) } else { (b, a) }
}

async fn holder(cluster: &Cluster) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "sluice-system");
    leases
        .get_opt("sluice-operator")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let cluster = Cluster::start().await;
    let (leader, standby) = two_operators(&cluster).await;
    assert!(!standby.leads(), "two leaders");
    let leader_identity = holder(&cluster).await.unwrap();

    cluster.apply::<McpServer>(server("first")).await;
    cluster
        .wait_for::<McpServer>("first", "reconciled by the leader", |s| s.status.is_some())
        .await;
    leader.wait_reconciles(2).await;
    assert_eq!(standby.server_reconciles(), 0, "the standby reconciled");
    assert!(!standby.leads());

    // The leader stops: it releases the Lease and the standby takes over.
    leader.stop().await;
    eventually("the standby to lead", || async {
        standby.leads().then_some(())
    })
    .await
    .expect("the standby never took over");
    let new_holder = holder(&cluster).await.unwrap();
    assert_ne!(new_holder, leader_identity);

    cluster.apply::<McpServer>(server("second")).await;
    cluster
        .wait_for::<McpServer>("second", "reconciled by the new leader", |s| {
            s.status.is_some()
        })
        .await;
    assert!(standby.server_reconciles() > 0);
    standby.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leaders_lease_expires_and_the_standby_takes_over() {
    let cluster = Cluster::start().await;
    let (leader, standby) = two_operators(&cluster).await;
    // No release: the Lease stays held until it expires (3 s in these tests).
    leader.kill();
    eventually("the standby to lead", || async {
        standby.leads().then_some(())
    })
    .await
    .expect("the standby never took over from a crashed leader");
    cluster.apply::<McpServer>(server("after")).await;
    cluster
        .wait_for::<McpServer>("after", "reconciled after the crash", |s| {
            s.status.is_some()
        })
        .await;
    standby.stop().await;
}
