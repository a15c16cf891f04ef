//! coindcx-hub (work in progress skeleton; see README.md).
pub mod signing;
