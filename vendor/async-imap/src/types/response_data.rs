use std::fmt;

use bytes::BytesMut;
use imap_proto::{RequestId, Response};
use self_cell::self_cell;

/// A parsed response together with the number of bytes of the owner it was parsed from.
#[derive(Debug)]
pub struct ParsedResponse<'a> {
    /// The parsed response.
    pub response: Response<'a>,
    /// How many bytes at the start of the owner buffer make up this response (imapfleet patch).
    pub len: usize,
}

self_cell!(
    /// One response from the server: the bytes and what imap-proto parsed from them.
    pub struct ResponseData {
        owner: BytesMut,

        #[covariant]
        dependent: ParsedResponse,
    }
);

impl std::cmp::PartialEq for ResponseData {
    fn eq(&self, other: &Self) -> bool {
        self.parsed() == other.parsed()
    }
}

impl std::cmp::Eq for ResponseData {}

impl fmt::Debug for ResponseData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseData")
            .field("raw", &self.borrow_dependent().len)
            .field("response", &self.borrow_dependent().response)
            .finish()
    }
}

impl ResponseData {
    /// Parse one response from the start of `block` (imapfleet patch: a helper for tests and callers
    /// that hold raw bytes). Errors when the block does not start with one complete response.
    pub fn parse(block: BytesMut) -> Result<Self, String> {
        ResponseData::try_new(block, |bytes| match Response::parse(bytes) {
            Ok((rest, response)) => Ok(ParsedResponse {
                response,
                len: bytes.len() - rest.len(),
            }),
            Err(e) => Err(format!("{e:?}")),
        })
    }

    /// The tag of a tagged response.
    pub fn request_id(&self) -> Option<&RequestId> {
        match self.parsed() {
            Response::Done { tag, .. } => Some(tag),
            _ => None,
        }
    }

    /// The parsed response.
    pub fn parsed(&self) -> &Response<'_> {
        &self.borrow_dependent().response
    }

    /// The exact bytes the server sent for this response, CRLF and literals included
    /// (imapfleet patch: lets callers re-parse what imap-proto parses loosely, e.g. LIST names).
    pub fn raw(&self) -> &[u8] {
        &self.borrow_owner()[..self.borrow_dependent().len]
    }
}
