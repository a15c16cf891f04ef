//! coindcx-hub (work in progress skeleton; see README.md).
pub mod signing;
pub mod rest;
pub mod simulator;
