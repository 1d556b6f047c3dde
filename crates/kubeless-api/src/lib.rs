//! Kubeless `kubeless.io/v1beta1` API: the object types with the exact JSON
//! field names of the original Kubeless, and the pure logic every mode shares.
//!
//! - [`types`]: Function, HTTPTrigger, CronJobTrigger, KafkaTrigger,
//!   NATSTrigger, KinesisTrigger and their metadata/status.
//! - [`secret`]: the Secret object stored by the embedded server.

pub mod secret;
pub mod types;

pub use secret::Secret;
pub use types::*;
