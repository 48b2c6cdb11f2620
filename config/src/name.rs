//! The type of configured names, shared by the checked config and the
//! policy built from it.

use std::sync::Arc;

/// A configured name (service, caller, key id), shared by every request that
/// refers to it instead of copied into each.
pub type Name = Arc<str>;
