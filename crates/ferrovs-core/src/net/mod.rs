//! Layer-3 plumbing: routes and neighbours.

pub mod neigh;
pub mod route;

pub use neigh::{Learned, Lookup, NeighLimits, NeighState, NeighTable};
pub use route::{NextHop, Route, RouteTable};
