//! Sidecar listener ports for McpRoutes: assigned once, kept stable.
//!
//! A route's Service targets its port, and callers' NetworkPolicy rules name it, so a port
//! must not move once handed out: a route keeps the port its status records; the others get
//! the lowest free ports, in route-name order.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use sluice_crds::defaults::{FIRST_ROUTE_PORT, LAST_ROUTE_PORT};

/// The ports routes may get.
pub const ROUTE_PORTS: RangeInclusive<u16> = FIRST_ROUTE_PORT..=LAST_ROUTE_PORT;

/// Ports for the routes of one server. `held` maps a route name to the port its status
/// records. Returns each route's port, or `None` when every port is taken.
///
/// When two routes hold the same port, the first by name keeps it. A held port outside
/// [`ROUTE_PORTS`] is ignored.
pub fn assign<'a>(
    routes: impl IntoIterator<Item = &'a str>,
    held: &BTreeMap<String, u16>,
) -> BTreeMap<String, Option<u16>> {
    let names: BTreeSet<&str> = routes.into_iter().collect();
    let mut taken = BTreeSet::new();
    let mut ports = BTreeMap::new();
    for name in &names {
        if let Some(&port) = held.get(*name)
            && ROUTE_PORTS.contains(&port)
            && taken.insert(port)
        {
            ports.insert(name.to_string(), Some(port));
        }
    }
    let mut free = ROUTE_PORTS.filter(|port| !taken.contains(port));
    for name in names {
        if !ports.contains_key(name) {
            ports.insert(name.to_string(), free.next());
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(entries: &[(&str, u16)]) -> BTreeMap<String, u16> {
        entries
            .iter()
            .map(|(name, port)| (name.to_string(), *port))
            .collect()
    }

    #[test]
    fn new_routes_get_the_lowest_free_ports_in_name_order() {
        let ports = assign(["b", "a", "c"], &BTreeMap::new());
        assert_eq!(ports["a"], Some(8081));
        assert_eq!(ports["b"], Some(8082));
        assert_eq!(ports["c"], Some(8083));
    }

    #[test]
    fn held_ports_stay_and_new_routes_fill_the_gaps() {
        let ports = assign(["a", "b", "c", "d"], &held(&[("c", 8081), ("d", 8083)]));
        assert_eq!(ports["c"], Some(8081));
        assert_eq!(ports["d"], Some(8083));
        assert_eq!(ports["a"], Some(8082));
        assert_eq!(ports["b"], Some(8084));
    }

    #[test]
    fn a_doubly_held_port_goes_to_the_first_name_and_strays_are_ignored() {
        let ports = assign(
            ["x", "y", "z"],
            &held(&[("x", 8090), ("y", 8090), ("z", 80)]),
        );
        assert_eq!(ports["x"], Some(8090));
        assert_eq!(ports["y"], Some(8081));
        assert_eq!(ports["z"], Some(8082));
    }

    #[test]
    fn held_ports_of_departed_routes_are_free_again() {
        let ports = assign(["new"], &held(&[("gone", 8081)]));
        assert_eq!(ports["new"], Some(8081));
    }

    #[test]
    fn routes_beyond_the_range_get_none() {
        let names: Vec<String> = (0..=ROUTE_PORTS.len())
            .map(|i| format!("r{i:04}"))
            .collect();
        let ports = assign(names.iter().map(String::as_str), &BTreeMap::new());
        assert_eq!(ports["r0000"], Some(FIRST_ROUTE_PORT));
        assert_eq!(ports[&names[ROUTE_PORTS.len() - 1]], Some(LAST_ROUTE_PORT));
        assert_eq!(ports[&names[ROUTE_PORTS.len()]], None);
    }
}
