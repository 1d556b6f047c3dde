//! Kubeless `kubeless.io/v1beta1` API: the object types with the exact JSON
//! field names of the original Kubeless, and the pure logic every mode shares.
//!
//! - [`types`]: Function, HTTPTrigger, CronJobTrigger, KafkaTrigger,
//!   NATSTrigger, KinesisTrigger and their metadata/status.
//! - [`secret`]: the Secret object stored by the embedded server.
//! - [`content`]: function code encoding (as the CLI does), decoding,
//!   checksum verification and safe writing/unpacking into a directory.
//! - [`runtime`]: runtime strings split into ID and version.
//! - [`validate`]: admission checks reporting every invalid field at once.
//! - [`cron`]: CronJobTrigger schedules (5 fields, descriptors, `@every`)
//!   and their next firing time.
//! - [`selector`]: trigger function selectors: CLI syntax, matching, printing.
//! - [`crd`]: the `apiextensions.k8s.io/v1` CRDs, generated from [`types`].

pub mod content;
pub mod crd;
pub mod cron;
pub mod runtime;
pub mod secret;
pub mod selector;
pub mod types;
pub mod validate;

pub use content::{ContentError, ContentType, Encoded, Materialized, UnpackLimits};
pub use crd::{crds, crds_yaml};
pub use cron::{CronError, Schedule};
pub use runtime::parse_runtime_id;
pub use secret::Secret;
pub use selector::{SelectorError, parse_selector};
pub use types::*;
pub use validate::{FieldError, ValidationErrors};
