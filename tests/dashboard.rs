//! `conf/grafana-dashboard.json` against what ferrovs exports: every metric an
//! expression uses exists (and is used as its type allows), every exported metric is
//! on the dashboard, and every label a query or legend names is one ferrovs sets.

use ferrovs::dpdk::PortStats;
use ferrovs::mgmt::metrics::{render, MemberLink, PortLink, PortMeta, Telemetry, VlanMeta};
use ferrovs::mgmt::sync::{PeerStatus, SyncStats, SyncStatus};
use ferrovs_core::fixture;
use ferrovs_core::service::Services;
use ferrovs_core::stats::WorkerStats;
use prometheus::Registry;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

const DASHBOARD: &str = include_str!("../conf/grafana-dashboard.json");

/// Labels Prometheus adds to every scraped series.
const SCRAPE_LABELS: [&str; 2] = ["instance", "job"];

const SERVICES: &str = "\
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    protocol: tcp
    mode: nat
    sorry_server: { address: 198.18.0.99 }
    real_servers:
      - { address: 198.18.0.10, port: 8080 }
";

/// Metric name -> Prometheus type, and every label name, from a rendered
/// `/metrics` of a collector with one port (a bond of one member) with one VLAN, two
/// workers, one service with one real
/// server and a sorry server (a family without samples is not rendered).
fn exported() -> (BTreeMap<String, String>, BTreeSet<String>) {
    let cfg = fixture::parse(&fixture::appliance(SERVICES));
    let services = Services::from_config(&cfg);
    let slots = services.real_server_slots();
    let workers = (0..2)
        .map(|_| Arc::new(WorkerStats::new(slots).with_vlans(1)))
        .collect();
    let telemetry = Telemetry::new(
        vec![PortMeta {
            name: "wan".into(),
            dpdk_id: 0,
        }],
        workers,
        Box::new(|_| PortStats::default()),
        Box::new(|| 1000),
        Arc::new(Mutex::new(Arc::new(services))),
        cfg.connections.max as u64,
    )
    .with_announced(Arc::new(Mutex::new(vec![(
        "198.18.0.100".parse().unwrap(),
        true,
    )])))
    .with_sync(Some(sync_stats()))
    .with_vlans(vec![VlanMeta {
        port: "wan".into(),
        id: 100,
    }])
    .with_links(Arc::new(Mutex::new(vec![PortLink {
        up: true,
        members: vec![MemberLink {
            name: "0000:3b:00.0".into(),
            up: true,
            active: true,
        }],
    }])));
    let registry = Registry::new();
    registry.register(Box::new(telemetry)).unwrap();
    let text = render(&registry);

    let mut types = BTreeMap::new();
    let mut labels: BTreeSet<String> = SCRAPE_LABELS.iter().map(|s| s.to_string()).collect();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
        } else if let Some((_, rest)) = line.split_once('{') {
            let inner = &rest[..rest.find('}').unwrap()];
            for pair in inner.split("\",") {
                labels.insert(pair.split_once('=').unwrap().0.to_string());
            }
        }
    }
    assert!(
        types.contains_key("ferrovs_real_server_active_connections"),
        "{text}"
    );
    (types, labels)
}

/// Sync counters of a member with one peer and one shared address.
fn sync_stats() -> Arc<SyncStats> {
    let stats = SyncStats::default();
    *stats.status.lock().unwrap() = SyncStatus {
        listen: Some("198.19.0.1:8848".parse().unwrap()),
        ready: true,
        peers: vec![PeerStatus {
            addr: "198.19.0.2:8848".parse().unwrap(),
            up: true,
            ready: true,
            last_heard_ms: Some(10),
            datagrams: 1,
        }],
        shared: vec![("198.18.0.100".parse().unwrap(), true)],
    };
    Arc::new(stats)
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(panels(p));
    }
    out
}

/// Every PromQL text: panel targets and template-variable queries.
fn queries(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    for var in d["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            out.push(var["query"]["query"].as_str().unwrap().to_string());
        }
    }
    out
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// (position, name) of each metric name in `expr`.
fn metric_names(expr: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = expr[from..].find("ferrovs_") {
        let start = from + at;
        let preceded = expr[..start].chars().next_back().is_some_and(is_name_char);
        let end = expr[start..]
            .find(|c: char| !is_name_char(c))
            .map_or(expr.len(), |n| start + n);
        if !preceded {
            out.push((start, &expr[start..end]));
        }
        from = end;
    }
    out
}

/// Label names in `expr`: matchers inside `{...}`, `by (...)` / `on (...)` lists,
/// and the second argument of `label_values`.
fn label_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').expect("unclosed {");
        for matcher in rest[open + 1..close].split(',') {
            let name: String = matcher
                .trim()
                .chars()
                .take_while(|&c| is_name_char(c))
                .collect();
            assert!(!name.is_empty(), "bad matcher {matcher:?} in {expr}");
            out.push(name);
        }
        rest = &rest[close + 1..];
    }
    for keyword in ["by (", "on (", "without (", "on("] {
        let mut rest = expr;
        while let Some(at) = rest.find(keyword) {
            let list = &rest[at + keyword.len()..];
            let list = &list[..list.find(')').expect("unclosed (")];
            out.extend(
                list.split(',')
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty()),
            );
            rest = &rest[at + keyword.len()..];
        }
    }
    if let Some(args) = expr.strip_prefix("label_values(") {
        let label = args
            .rsplit(',')
            .next()
            .unwrap()
            .trim_end_matches(')')
            .trim();
        out.push(label.to_string());
    }
    out
}

#[test]
fn every_metric_in_an_expression_is_exported_and_used_as_its_type() {
    let (types, _) = exported();
    let d = dashboard();
    for expr in queries(&d) {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "no ferrovs metric in {expr}");
        for (at, name) in names {
            let kind = types.get(name).unwrap_or_else(|| {
                panic!("{name} (in {expr}) is not exported; ferrovs exports {types:?}")
            });
            let in_rate = expr[..at].ends_with("rate(") || expr[..at].ends_with("increase(");
            let in_label_values = expr.starts_with("label_values(");
            match kind.as_str() {
                "counter" => assert!(
                    in_rate || in_label_values,
                    "counter {name} outside rate() in {expr}"
                ),
                "gauge" => assert!(!in_rate, "gauge {name} inside rate() in {expr}"),
                other => panic!("{name}: unexpected type {other}"),
            }
        }
    }
}

#[test]
fn every_exported_metric_is_on_the_dashboard() {
    let (types, _) = exported();
    let used: BTreeSet<String> = queries(&dashboard())
        .iter()
        .flat_map(|e| metric_names(e).into_iter().map(|(_, n)| n.to_string()))
        .collect();
    let missing: Vec<&String> = types.keys().filter(|n| !used.contains(*n)).collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
}

#[test]
fn every_label_named_is_one_ferrovs_sets() {
    let (_, labels) = exported();
    let d = dashboard();
    for expr in queries(&d) {
        for label in label_names(&expr) {
            assert!(
                labels.contains(&label),
                "label {label} in {expr}; known {labels:?}"
            );
        }
    }
    for p in panels(&d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let legend = t["legendFormat"].as_str().unwrap_or("");
            for part in legend.split("{{").skip(1) {
                let label = part.split("}}").next().unwrap().trim();
                assert!(
                    labels.contains(label),
                    "legend {legend:?} of {}",
                    p["title"]
                );
            }
        }
    }
}

#[test]
fn the_dashboard_is_importable() {
    let d = dashboard();
    assert!(d["panels"].as_array().is_some_and(|p| !p.is_empty()));
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    assert_eq!(d["uid"], "ferrovs-overview");
    assert!(!d["title"].as_str().unwrap().is_empty());
    let inputs = d["__inputs"].as_array().unwrap();
    assert!(inputs
        .iter()
        .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"));

    let datasource = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    let mut ids = BTreeSet::new();
    let mut rows = Vec::new();
    for p in panels(&d) {
        let title = p["title"].as_str().expect("title");
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "duplicate id: {title}"
        );
        let g = &p["gridPos"];
        let (x, w, h) = (g["x"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
        let (x, w, h) = (x.unwrap(), w.unwrap(), h.unwrap());
        assert!(x + w <= 24 && w > 0 && h > 0, "{title}: gridPos {g}");
        if p["type"] == "row" {
            rows.push(title.to_string());
            continue;
        }
        assert_eq!(p["datasource"], datasource, "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert_eq!(t["datasource"], datasource, "{title}");
            assert!(refs.insert(t["refId"].as_str().unwrap()), "{title}: refId");
            assert!(!t["expr"].as_str().unwrap().trim().is_empty(), "{title}");
        }
    }
    for var in d["templating"]["list"].as_array().unwrap() {
        assert_eq!(var["datasource"], datasource, "{}", var["name"]);
    }
    for wanted in [
        "Ports",
        "Workers",
        "Connections",
        "Services",
        "Real servers",
        "Mempool",
    ] {
        assert!(
            rows.iter().any(|r| r == wanted),
            "no {wanted} row: {rows:?}"
        );
    }
}

#[test]
fn panels_do_not_overlap() {
    let d = dashboard();
    let mut taken = BTreeSet::new();
    for p in panels(&d) {
        let g = &p["gridPos"];
        let get = |k: &str| g[k].as_u64().unwrap();
        for y in get("y")..get("y") + get("h") {
            for x in get("x")..get("x") + get("w") {
                assert!(taken.insert((x, y)), "{} overlaps at {x},{y}", p["title"]);
            }
        }
    }
}

#[test]
fn the_checks_see_mistakes() {
    // The scanners the tests above rely on.
    assert_eq!(
        metric_names("sum(rate(ferrovs_a_total{x=\"1\"}[1m])) / ferrovs_b"),
        [(9, "ferrovs_a_total"), (40, "ferrovs_b")]
    );
    assert!(metric_names("not_ferrovs_a").is_empty());
    assert_eq!(
        label_names(
            "sum by (reason, worker) (rate(ferrovs_x{instance=\"$i\", service=~\"$s\"}[1m]))"
        ),
        ["instance", "service", "reason", "worker"]
    );
    assert_eq!(
        label_names("label_values(ferrovs_y{instance=\"$instance\"}, service)"),
        ["instance", "service"]
    );
}
