use thiserror::Error;

/// JSON-RPC error codes used by the gateway, with the MCP-specific ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Invalid JSON or invalid UTF-8 (-32700).
    ParseError,
    /// Not a valid JSON-RPC request object (-32600).
    InvalidRequest,
    /// The method does not exist or is not offered (-32601).
    MethodNotFound,
    /// Invalid method parameters, including an unknown tool (-32602).
    InvalidParams,
    /// The gateway failed internally (-32603).
    InternalError,
    /// The request needs a session or the session is not usable (-32000).
    SessionError,
    /// The upstream did not answer in time (-32001).
    RequestTimeout,
    /// The upstream is unavailable, restarting or misbehaved (-32002 is taken by
    /// MCP for "resource not found", so this is -32010).
    UpstreamUnavailable,
    /// A resource URI is not known (-32002, MCP).
    ResourceNotFound,
    /// The message is larger than the configured limit (-32011).
    PayloadTooLarge,
    /// The gateway withheld an upstream's answer or refused a quarantined tool
    /// because inspection found content it does not pass on (-32012).
    Withheld,
    /// A rate or concurrency limit refused the request; retry later (-32013).
    RateLimited,
    /// The policy holds this call for a person's approval, and it was not given
    /// (declined, timed out, or the client cannot ask) (-32014).
    NotApproved,
}

impl ErrorCode {
    /// The numeric JSON-RPC code.
    pub fn code(self) -> i64 {
        match self {
            Self::ParseError => -32700,
            Self::InvalidRequest => -32600,
            Self::MethodNotFound => -32601,
            Self::InvalidParams => -32602,
            Self::InternalError => -32603,
            Self::SessionError => -32000,
            Self::RequestTimeout => -32001,
            Self::ResourceNotFound => -32002,
            Self::UpstreamUnavailable => -32010,
            Self::PayloadTooLarge => -32011,
            Self::Withheld => -32012,
            Self::RateLimited => -32013,
            Self::NotApproved => -32014,
        }
    }
}

/// Why bytes are not one valid JSON-RPC 2.0 message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The bytes are not UTF-8 (TR-12).
    #[error("message is not valid UTF-8")]
    NotUtf8,
    /// The bytes are not JSON (TR-12). The text is serde_json's description.
    #[error("message is not valid JSON: {0}")]
    Syntax(String),
    /// A JSON array: batching was removed from MCP in 2025-06-18 (TR-06).
    #[error("JSON-RPC batches are not supported; send one message per request")]
    Batch,
    /// Valid JSON, but not an object.
    #[error("a JSON-RPC message must be a JSON object")]
    NotObject,
    /// An object that is not a valid JSON-RPC 2.0 message; the text says why.
    #[error("invalid JSON-RPC message: {0}")]
    Invalid(&'static str),
}

impl ParseError {
    /// The JSON-RPC error code a peer receives for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotUtf8 | Self::Syntax(_) => ErrorCode::ParseError,
            Self::Batch | Self::NotObject | Self::Invalid(_) => ErrorCode::InvalidRequest,
        }
    }
}
