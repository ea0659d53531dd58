mod common;
use common::*;
#[test]
#[ignore]
fn dbg() {
    let mut t = Topology::new("two", 2);
    t.http_servers(8080);
    let cfg = two_workers(&t.config(&nat_service("web", "198.18.0.100", 80, "tcp", "rr", &[(Topology::rs_addr(0), 8080, 1), (Topology::rs_addr(1), 8080, 1)], ""), ""));
    println!("{cfg}");
    let f = t.lab.ferrovs(&t.lb, &cfg);
    println!("{}", f.log_text());
    let bodies = t.curl_many("http://198.18.0.100/", 20);
    println!("{:?}", tally(&bodies));
    let out = t.lab.exec_ok(&t.client, &["wrk", "-t1", "-c16", "-d3s", "-H", "Connection: close", "http://198.18.0.100/"]);
    println!("{:?}", wrk_summary(&String::from_utf8_lossy(&out.stdout)));
    println!("{}", grep(&f.metrics(), "worker"));
}
