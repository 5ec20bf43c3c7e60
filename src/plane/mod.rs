//! Plane (self-hosted) over HTTP: the one place that talks to Plane. See
//! `../shared/PLANE_API.md` for the behaviours of real Plane v1.2.x it follows.
pub mod client;
pub use client::{FormOutcome, PlaneClient, PlaneError, Session};
