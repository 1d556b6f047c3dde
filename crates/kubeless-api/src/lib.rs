//! Kubeless `kubeless.io/v1beta1` API: the object types with the exact JSON
//! field names of the original Kubeless, and the pure logic every mode shares.
//!
//! - [`types`]: Function, HTTPTrigger, CronJobTrigger, KafkaTrigger,
//!   NATSTrigger, KinesisTrigger and their metadata/status.
//! - [`secret`]: the Secret object stored by the embedded server.
//! - [`content`]: function code encoding (as the CLI does), decoding,
//!   checksum verification and safe writing/unpacking into a directory.
//! - [`runtime`]: runtime strings split into ID and version.

pub mod content;
pub mod runtime;
pub mod secret;
pub mod types;

pub use content::{ContentError, ContentType, Encoded, Materialized, UnpackLimits};
pub use runtime::parse_runtime_id;
pub use secret::Secret;
pub use types::*;
