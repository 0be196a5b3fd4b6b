//! The OAuth 2.1 resource-server checks of MCP 2025-11-25, as pure functions:
//!
//! - [`bearer`]: where a token may come from (one `Authorization: Bearer` header,
//!   never the query or body; AUTH-10, AUTH-11);
//! - [`canonical`]: the gateway's canonical MCP URI and how `aud` is compared to it
//!   (RFC 8707; AUTH-07, AUTH-17);
//! - [`jwt`]: full JWT access-token validation against issuer key sets (signature with
//!   an asymmetric-only algorithm allowlist, `typ`, `iss`, `aud`, `exp`/`nbf` with
//!   bounded skew; AUTH-06..08) and the claims that make a principal;
//! - [`challenge`]: the `WWW-Authenticate` answers (AUTH-05, AUTH-12, AUTH-13);
//! - [`prm`]: the Protected Resource Metadata document (RFC 9728; AUTH-01..04).
//!
//! No I/O here: fetching discovery documents and JWKS (with SSRF controls) belongs to
//! the gateway, which hands the key sets in. Tokens never appear in any error or
//! `Debug` output of this crate (AUTH-18).

#![forbid(unsafe_code)]

pub mod bearer;
pub mod canonical;
pub mod challenge;
pub mod jwt;
pub mod prm;
