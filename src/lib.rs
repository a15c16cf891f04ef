//! coindcx-hub (work in progress skeleton; see README.md).
pub mod rest;
pub mod signing;
pub mod simulator;
