//! End-to-end tests of `parse`: values, defaults, every rule with its position.

use super::*;

const EXAMPLE: &str = include_str!("../../conf/example.yaml");

#[test]
fn example_parses() {
    let config = parse(EXAMPLE, "example.yaml", &HostFacts::default()).unwrap();
    println!("{config:#?}");
}
