//! Tencent Cloud: signing, transport, typed EMR actions, credentials, errors.
//!
//! This module owns the wire format; nothing else in the crate builds a
//! request or reads a response envelope.

pub mod client;
pub mod credentials;
pub mod emr;
pub(crate) mod error;
pub mod limiter;
pub mod sign;

pub use client::{
    ApiObserver, ClientSettings, ClientSetupError, ClientToken, EmrClient, EndpointError,
    NoObserver, RetryPolicy, SendGate, SendRefused,
};
pub use credentials::{CredentialChain, CredentialSources, Credentials};
pub use emr::Action;
pub use error::{ApiError, ErrorClass, PreflightError};
