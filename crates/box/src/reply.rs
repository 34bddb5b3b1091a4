//! Encoding of request results into IPROTO responses.

use spindle_memtx::tuple::Tuple;
use spindle_proto::iproto::{
    begin_response, encode_data_prefix, encode_error, encode_ok_empty, finish_response,
};
use spindle_types::iproto::request;
use spindle_types::BoxResult;

/// The successful result of a request.
#[derive(Debug)]
pub enum Reply {
    /// `{}`: PING, AUTH.
    Empty,
    /// `{DATA: [tuple...]}`: SELECT and DML (0 or 1 tuple).
    Tuples(Vec<Tuple>),
    /// `{DATA: [...]}` with `count` pre-encoded items (CALL results).
    Data { count: u32, data: Vec<u8> },
    /// A pre-encoded body map (the VOTE ballot).
    Raw(Vec<u8>),
}

/// Largest reply body a response can frame (the length prefix is a u32), with room for the
/// header.
const REPLY_BYTES_MAX: usize = u32::MAX as usize - 64;

pub fn encode(out: &mut Vec<u8>, sync: u64, schema_version: u32, result: BoxResult<Reply>) {
    let result = result.and_then(refuse_oversized);
    match result {
        Ok(Reply::Empty) => encode_ok_empty(out, sync, schema_version),
        Ok(Reply::Tuples(tuples)) => {
            let start = begin_response(out, request::OK, sync, schema_version);
            encode_data_prefix(out, tuples.len() as u32);
            for t in &tuples {
                out.extend_from_slice(t.data());
            }
            finish_response(out, start);
        }
        Ok(Reply::Raw(body)) => {
            let start = begin_response(out, request::OK, sync, schema_version);
            out.extend_from_slice(&body);
            finish_response(out, start);
        }
        Ok(Reply::Data { count, data }) => {
            let start = begin_response(out, request::OK, sync, schema_version);
            encode_data_prefix(out, count);
            out.extend_from_slice(&data);
            finish_response(out, start);
        }
        Err(e) => encode_error(out, sync, schema_version, &e),
    }
}

/// A push (`box.session.push`): IPROTO_CHUNK with the request's sync and `{DATA: [value]}`.
pub fn encode_chunk(out: &mut Vec<u8>, sync: u64, schema_version: u32, value: &[u8]) {
    let start = begin_response(out, request::CHUNK, sync, schema_version);
    encode_data_prefix(out, 1);
    out.extend_from_slice(value);
    finish_response(out, start);
}

/// A SELECT over a huge space can produce more than one response can carry: answer it with
/// an error, as Tarantool fails to allocate such a reply.
fn refuse_oversized(reply: Reply) -> BoxResult<Reply> {
    let size = match &reply {
        Reply::Empty => 0,
        Reply::Tuples(tuples) => tuples.iter().map(|t| t.data().len()).sum(),
        Reply::Data { data, .. } | Reply::Raw(data) => data.len(),
    };
    if size > REPLY_BYTES_MAX {
        return Err(spindle_types::BoxError::new(
            spindle_types::error::code::ER_MEMORY_ISSUE,
            format!("Failed to allocate {size} bytes in reply for a response"),
        ));
    }
    Ok(reply)
}
