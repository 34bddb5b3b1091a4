//! Tarantool error codes and their 2.6 message texts.
//!
//! Every error a client can see is built here, so the texts live in one place and match
//! Tarantool 2.6 (checked by the differential suite in `tests/`). Field numbers in messages are
//! 1-based, as Tarantool prints them.

use std::fmt;

/// Error codes (`box.error.*`), the subset spindle produces.
pub mod code {
    pub const ER_UNKNOWN: u32 = 0;
    pub const ER_ILLEGAL_PARAMS: u32 = 1;
    pub const ER_MEMORY_ISSUE: u32 = 2;
    pub const ER_TUPLE_FOUND: u32 = 3;
    pub const ER_TUPLE_NOT_FOUND: u32 = 4;
    pub const ER_UNSUPPORTED: u32 = 5;
    pub const ER_READONLY: u32 = 7;
    pub const ER_CREATE_SPACE: u32 = 9;
    pub const ER_SPACE_EXISTS: u32 = 10;
    pub const ER_DROP_SPACE: u32 = 11;
    pub const ER_ALTER_SPACE: u32 = 12;
    pub const ER_INDEX_TYPE: u32 = 13;
    pub const ER_MODIFY_INDEX: u32 = 14;
    pub const ER_LAST_DROP: u32 = 15;
    pub const ER_DROP_PRIMARY_KEY: u32 = 17;
    pub const ER_KEY_PART_TYPE: u32 = 18;
    pub const ER_EXACT_MATCH: u32 = 19;
    pub const ER_INVALID_MSGPACK: u32 = 20;
    pub const ER_TUPLE_NOT_ARRAY: u32 = 22;
    pub const ER_FIELD_TYPE: u32 = 23;
    pub const ER_INDEX_PART_TYPE_MISMATCH: u32 = 24;
    pub const ER_UPDATE_SPLICE: u32 = 25;
    pub const ER_UPDATE_ARG_TYPE: u32 = 26;
    pub const ER_FORMAT_MISMATCH_INDEX_PART: u32 = 27;
    pub const ER_UNKNOWN_UPDATE_OP: u32 = 28;
    pub const ER_UPDATE_FIELD: u32 = 29;
    pub const ER_KEY_PART_COUNT: u32 = 31;
    pub const ER_PROC_LUA: u32 = 32;
    pub const ER_NO_SUCH_PROC: u32 = 33;
    pub const ER_NO_SUCH_INDEX_ID: u32 = 35;
    pub const ER_NO_SUCH_SPACE: u32 = 36;
    pub const ER_NO_SUCH_FIELD_NO: u32 = 37;
    pub const ER_EXACT_FIELD_COUNT: u32 = 38;
    pub const ER_FIELD_MISSING: u32 = 39;
    pub const ER_WAL_IO: u32 = 40;
    pub const ER_MORE_THAN_ONE_TUPLE: u32 = 41;
    pub const ER_ACCESS_DENIED: u32 = 42;
    pub const ER_CREATE_USER: u32 = 43;
    pub const ER_DROP_USER: u32 = 44;
    pub const ER_NO_SUCH_USER: u32 = 45;
    pub const ER_USER_EXISTS: u32 = 46;
    pub const ER_PASSWORD_MISMATCH: u32 = 47;
    pub const ER_UNKNOWN_REQUEST_TYPE: u32 = 48;
    pub const ER_UNKNOWN_SCHEMA_OBJECT: u32 = 49;
    pub const ER_NO_SUCH_FUNCTION: u32 = 51;
    pub const ER_NO_SUCH_ENGINE: u32 = 57;
    pub const ER_CFG: u32 = 59;
    pub const ER_NO_SUCH_SAVEPOINT: u32 = 60;
    pub const ER_FUNCTION_TX_ACTIVE: u32 = 30;
    pub const ER_ACTIVE_TRANSACTION: u32 = 79;
    pub const ER_NO_TRANSACTION: u32 = 81;
    pub const ER_SYSTEM: u32 = 115;
    pub const ER_CHECKPOINT_IN_PROGRESS: u32 = 120;
    pub const ER_TRANSACTION_YIELD: u32 = 154;
    pub const ER_UNKNOWN_REPLICA: u32 = 62;
    pub const ER_REPLICASET_UUID_MISMATCH: u32 = 63;
    pub const ER_INVALID_UUID: u32 = 64;
    pub const ER_REPLICA_MAX: u32 = 73;
    pub const ER_MISSING_REQUEST_FIELD: u32 = 69;
    pub const ER_IDENTIFIER: u32 = 70;
    pub const ER_ITERATOR_TYPE: u32 = 72;
    pub const ER_TIMEOUT: u32 = 78;
    pub const ER_NO_SUCH_ROLE: u32 = 82;
    pub const ER_INDEX_EXISTS: u32 = 85;
    pub const ER_GRANT: u32 = 88;
    pub const ER_CANT_UPDATE_PRIMARY_KEY: u32 = 94;
    pub const ER_UPDATE_INTEGER_OVERFLOW: u32 = 95;
    pub const ER_UPSERT_UNIQUE_SECONDARY_KEY: u32 = 105;
    pub const ER_WRONG_INDEX_RECORD: u32 = 106;
    pub const ER_WRONG_INDEX_PARTS: u32 = 107;
    pub const ER_WRONG_INDEX_OPTIONS: u32 = 108;
    pub const ER_WRONG_SCHEMA_VERSION: u32 = 109;
    pub const ER_MEMTX_MAX_TUPLE_SIZE: u32 = 110;
    pub const ER_WRONG_SPACE_OPTIONS: u32 = 111;
    pub const ER_VIEW_IS_RO: u32 = 113;
    pub const ER_PROTOCOL: u32 = 104;
    pub const ER_LOADING: u32 = 116;
    pub const ER_CONNECTION_TO_SELF: u32 = 117;
    /// What Tarantool 2.6 puts in the CODE of an `XlogGapError` on the wire (observed).
    pub const ER_XLOG_GAP_WIRE: u32 = 32;
    pub const ER_PARTIAL_KEY: u32 = 136;
    pub const ER_NO_SUCH_INDEX_NAME: u32 = 148;
    pub const ER_SPACE_FIELD_IS_DUPLICATE: u32 = 149;
    pub const ER_WRONG_SPACE_FORMAT: u32 = 141;
    pub const ER_WRONG_COLLATION_OPTIONS: u32 = 151;
    pub const ER_UPDATE_DECIMAL_OVERFLOW: u32 = 160;
    pub const ER_NO_SUCH_FIELD_NAME: u32 = 201;
    /// 2.10+ (streams and interactive transactions).
    pub const ER_TRANSACTION_CONFLICT: u32 = 97;
    pub const ER_UNABLE_TO_PROCESS_IN_STREAM: u32 = 229;
    pub const ER_UNABLE_TO_PROCESS_OUT_OF_STREAM: u32 = 230;
    pub const ER_TRANSACTION_TIMEOUT: u32 = 231;
}

use code::*;

/// The error class Tarantool reports in the `IPROTO_ERROR` stack's TYPE field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    ClientError,
    AccessDeniedError,
    XlogError,
    SystemError,
    /// A replica asked for rows the master no longer has; replicas match on this name.
    XlogGapError,
    /// A Lua error that is not a box.error object (ER_PROC_LUA).
    LuajitError,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ClientError => "ClientError",
            ErrorKind::AccessDeniedError => "AccessDeniedError",
            ErrorKind::XlogError => "XlogError",
            ErrorKind::SystemError => "SystemError",
            ErrorKind::XlogGapError => "XlogGapError",
            ErrorKind::LuajitError => "LuajitError",
        }
    }
}

/// Extra payload of an `AccessDeniedError` (sent as the FIELDS map of the error stack).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessFields {
    pub object_type: String,
    pub object_name: String,
    pub access_type: String,
}

/// An error as a client sees it: a code, a message and a class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoxError {
    pub code: u32,
    pub message: String,
    pub kind: ErrorKind,
    pub access: Option<Box<AccessFields>>,
    /// Where a Lua error object was made (`box.error.new` records its caller's chunk and
    /// line), for the error stack; None: spindle itself raised it.
    pub trace: Option<Box<(String, u32)>>,
    /// The error this one was caused by (`e:set_prev(cause)`): the next entry of the stack.
    pub prev: Option<Box<BoxError>>,
}

pub type BoxResult<T> = Result<T, BoxError>;

impl fmt::Display for BoxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BoxError {}

impl BoxError {
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        BoxError {
            code,
            message: message.into(),
            kind: ErrorKind::ClientError,
            access: None,
            trace: None,
            prev: None,
        }
    }

    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    pub fn unknown() -> Self {
        Self::new(ER_UNKNOWN, "Unknown error")
    }
    pub fn illegal_params(what: &str) -> Self {
        Self::new(ER_ILLEGAL_PARAMS, format!("Illegal parameters, {what}"))
    }
    pub fn tuple_found(index: &str, space: &str) -> Self {
        Self::new(
            ER_TUPLE_FOUND,
            format!("Duplicate key exists in unique index '{index}' in space '{space}'"),
        )
    }
    pub fn unsupported(who: &str, what: &str) -> Self {
        Self::new(ER_UNSUPPORTED, format!("{who} does not support {what}"))
    }
    pub fn readonly() -> Self {
        Self::new(
            ER_READONLY,
            "Can't modify data because this instance is in read-only mode.",
        )
    }
    pub fn create_space(space: &str, details: &str) -> Self {
        Self::new(
            ER_CREATE_SPACE,
            format!("Failed to create space '{space}': {details}"),
        )
    }
    pub fn space_exists(space: &str) -> Self {
        Self::new(ER_SPACE_EXISTS, format!("Space '{space}' already exists"))
    }
    pub fn drop_space(space: &str, details: &str) -> Self {
        Self::new(
            ER_DROP_SPACE,
            format!("Can't drop space '{space}': {details}"),
        )
    }
    pub fn alter_space(space: &str, details: &str) -> Self {
        Self::new(
            ER_ALTER_SPACE,
            format!("Can't modify space '{space}': {details}"),
        )
    }
    pub fn index_type(index: &str, space: &str) -> Self {
        Self::new(
            ER_INDEX_TYPE,
            format!("Unsupported index type supplied for index '{index}' in space '{space}'"),
        )
    }
    pub fn modify_index(index: &str, space: &str, details: &str) -> Self {
        Self::new(
            ER_MODIFY_INDEX,
            format!("Can't create or modify index '{index}' in space '{space}': {details}"),
        )
    }
    pub fn last_drop(space: &str) -> Self {
        Self::new(
            ER_LAST_DROP,
            format!("Can't drop the primary key in a system space, space '{space}'"),
        )
    }
    pub fn drop_primary_key(space: &str) -> Self {
        Self::new(
            ER_DROP_PRIMARY_KEY,
            format!("Can't drop primary key in space '{space}' while secondary keys exist"),
        )
    }
    /// `part` is 0-based, as Tarantool prints it in this message.
    pub fn key_part_type(part: u32, expected: &str) -> Self {
        Self::new(
            ER_KEY_PART_TYPE,
            format!(
                "Supplied key type of part {part} does not match index part type: expected {expected}"
            ),
        )
    }
    pub fn exact_match(expected: u32, got: u32) -> Self {
        Self::new(
            ER_EXACT_MATCH,
            format!("Invalid key part count in an exact match (expected {expected}, got {got})"),
        )
    }
    pub fn invalid_msgpack(what: &str) -> Self {
        Self::new(ER_INVALID_MSGPACK, format!("Invalid MsgPack - {what}"))
    }
    pub fn tuple_not_array() -> Self {
        Self::new(ER_TUPLE_NOT_ARRAY, "Tuple/Key must be MsgPack array")
    }
    /// `field` is the printable field designation: a 1-based number or a quoted name.
    pub fn field_type(field: &str, expected: &str) -> Self {
        Self::new(
            ER_FIELD_TYPE,
            format!(
                "Tuple field {field} type does not match one required by operation: expected {expected}"
            ),
        )
    }
    pub fn index_part_type_mismatch(field: &str, actual: &str, expected: &str) -> Self {
        Self::new(
            ER_INDEX_PART_TYPE_MISMATCH,
            format!(
                "Field {field} has type '{actual}' in one index, but type '{expected}' in another"
            ),
        )
    }
    pub fn update_splice(field: &str, details: &str) -> Self {
        Self::new(
            ER_UPDATE_SPLICE,
            format!("SPLICE error on field {field}: {details}"),
        )
    }
    pub fn update_arg_type(op: char, field: &str, expected: &str) -> Self {
        Self::new(
            ER_UPDATE_ARG_TYPE,
            format!(
                "Argument type in operation '{op}' on field {field} does not match field type: expected {expected}"
            ),
        )
    }
    pub fn format_mismatch_index_part(field: &str, actual: &str, expected: &str) -> Self {
        Self::new(
            ER_FORMAT_MISMATCH_INDEX_PART,
            format!(
                "Field {field} has type '{actual}' in space format, but type '{expected}' in index definition"
            ),
        )
    }
    /// `argno` is 1-based.
    pub fn unknown_update_op(argno: u32, details: &str) -> Self {
        Self::new(
            ER_UNKNOWN_UPDATE_OP,
            format!("Unknown UPDATE operation #{argno}: {details}"),
        )
    }
    pub fn update_field(field: &str, details: &str) -> Self {
        Self::new(
            ER_UPDATE_FIELD,
            format!("Field {field} UPDATE error: {details}"),
        )
    }
    pub fn key_part_count(max: u32, got: u32) -> Self {
        Self::new(
            ER_KEY_PART_COUNT,
            format!("Invalid key part count (expected [0..{max}], got {got})"),
        )
    }
    pub fn proc_lua(msg: &str) -> Self {
        Self::new(ER_PROC_LUA, msg).with_kind(ErrorKind::LuajitError)
    }
    pub fn no_such_proc(name: &str) -> Self {
        Self::new(
            ER_NO_SUCH_PROC,
            format!("Procedure '{name}' is not defined"),
        )
    }
    pub fn no_such_index_id(id: u32, space: &str) -> Self {
        Self::new(
            ER_NO_SUCH_INDEX_ID,
            format!("No index #{id} is defined in space '{space}'"),
        )
    }
    pub fn no_such_index_name(name: &str, space: &str) -> Self {
        Self::new(
            ER_NO_SUCH_INDEX_NAME,
            format!("No index '{name}' is defined in space '{space}'"),
        )
    }
    /// `space` is the name or, for a lookup by id, the decimal id.
    pub fn no_such_space(space: &str) -> Self {
        Self::new(ER_NO_SUCH_SPACE, format!("Space '{space}' does not exist"))
    }
    /// `fieldno` as printed: 1-based for positive numbers, negative as given.
    pub fn no_such_field_no(fieldno: i64) -> Self {
        Self::new(
            ER_NO_SUCH_FIELD_NO,
            format!("Field {fieldno} was not found in the tuple"),
        )
    }
    pub fn exact_field_count(actual: u32, expected: u32) -> Self {
        Self::new(
            ER_EXACT_FIELD_COUNT,
            format!("Tuple field count {actual} does not match space field count {expected}"),
        )
    }
    pub fn field_missing(field: &str) -> Self {
        Self::new(
            ER_FIELD_MISSING,
            format!("Tuple field {field} required by space format is missing"),
        )
    }
    pub fn wal_io() -> Self {
        Self::new(ER_WAL_IO, "Failed to write to disk")
    }
    pub fn more_than_one_tuple() -> Self {
        Self::new(
            ER_MORE_THAN_ONE_TUPLE,
            "Get() doesn't support partial keys and non-unique indexes",
        )
    }
    /// `access` is capitalised ("Read", "Write", "Create", "Session", "Execute"...).
    pub fn access_denied(access: &str, object_type: &str, object_name: &str, user: &str) -> Self {
        BoxError {
            code: ER_ACCESS_DENIED,
            message: format!(
                "{access} access to {object_type} '{object_name}' is denied for user '{user}'"
            ),
            kind: ErrorKind::AccessDeniedError,
            access: Some(Box::new(AccessFields {
                object_type: object_type.to_string(),
                object_name: object_name.to_string(),
                access_type: access.to_string(),
            })),
            trace: None,
            prev: None,
        }
    }
    pub fn create_user(user: &str, details: &str) -> Self {
        Self::new(
            ER_CREATE_USER,
            format!("Failed to create user '{user}': {details}"),
        )
    }
    pub fn drop_user(user: &str, details: &str) -> Self {
        Self::new(
            ER_DROP_USER,
            format!("Failed to drop user or role '{user}': {details}"),
        )
    }
    pub fn no_such_user(user: &str) -> Self {
        Self::new(ER_NO_SUCH_USER, format!("User '{user}' is not found"))
    }
    pub fn user_exists(user: &str) -> Self {
        Self::new(ER_USER_EXISTS, format!("User '{user}' already exists"))
    }
    pub fn password_mismatch(user: &str) -> Self {
        Self::new(
            ER_PASSWORD_MISMATCH,
            format!("Incorrect password supplied for user '{user}'"),
        )
    }
    pub fn unknown_request_type(t: u64) -> Self {
        Self::new(ER_UNKNOWN_REQUEST_TYPE, format!("Unknown request type {t}"))
    }
    pub fn unknown_schema_object(what: &str) -> Self {
        Self::new(
            ER_UNKNOWN_SCHEMA_OBJECT,
            format!("Unknown object type '{what}'"),
        )
    }
    pub fn no_such_engine(engine: &str) -> Self {
        Self::new(
            ER_NO_SUCH_ENGINE,
            format!("Space engine '{engine}' does not exist"),
        )
    }
    pub fn missing_request_field(name: &str) -> Self {
        Self::new(
            ER_MISSING_REQUEST_FIELD,
            format!("Missing mandatory field '{name}' in request"),
        )
    }
    pub fn identifier(name: &str) -> Self {
        Self::new(
            ER_IDENTIFIER,
            format!(
                "Invalid identifier '{name}' (expected printable symbols only or it is too long)"
            ),
        )
    }
    pub fn no_such_function(function: &str) -> Self {
        Self::new(
            ER_NO_SUCH_FUNCTION,
            format!("Function '{function}' does not exist"),
        )
    }
    pub fn no_such_role(role: &str) -> Self {
        Self::new(ER_NO_SUCH_ROLE, format!("Role '{role}' is not found"))
    }
    pub fn index_exists(index: &str) -> Self {
        Self::new(ER_INDEX_EXISTS, format!("Index '{index}' already exists"))
    }
    pub fn grant(details: &str) -> Self {
        Self::new(ER_GRANT, format!("Incorrect grant arguments: {details}"))
    }
    pub fn cant_update_primary_key(index: &str, space: &str) -> Self {
        Self::new(
            ER_CANT_UPDATE_PRIMARY_KEY,
            format!(
                "Attempt to modify a tuple field which is part of index '{index}' in space '{space}'"
            ),
        )
    }
    pub fn update_integer_overflow(op: char, field: &str) -> Self {
        Self::new(
            ER_UPDATE_INTEGER_OVERFLOW,
            format!("Integer overflow when performing '{op}' operation on field {field}"),
        )
    }
    pub fn upsert_unique_secondary_key(space: &str) -> Self {
        Self::new(
            ER_UPSERT_UNIQUE_SECONDARY_KEY,
            format!("Space {space} has a unique secondary index and does not support UPSERT"),
        )
    }
    pub fn wrong_index_record(got: &str, expected: &str) -> Self {
        Self::new(
            ER_WRONG_INDEX_RECORD,
            format!("Wrong record in _index space: got {{{got}}}, expected {{{expected}}}"),
        )
    }
    /// `partno` is 1-based.
    pub fn wrong_index_parts(partno: u32, details: &str) -> Self {
        Self::new(
            ER_WRONG_INDEX_PARTS,
            format!("Wrong index part {partno}: {details}"),
        )
    }
    pub fn wrong_index_options(details: &str) -> Self {
        Self::new(
            ER_WRONG_INDEX_OPTIONS,
            format!("Wrong index options: {details}"),
        )
    }
    /// 2.6 prints the two numbers swapped (see iproto.md §9.1); callers pass them as named.
    pub fn wrong_schema_version(current: u64, in_request: u64) -> Self {
        Self::new(
            ER_WRONG_SCHEMA_VERSION,
            format!("Wrong schema version, current: {in_request}, in request: {current}"),
        )
    }
    pub fn memtx_max_tuple_size(size: usize) -> Self {
        Self::new(
            ER_MEMTX_MAX_TUPLE_SIZE,
            format!(
                "Failed to allocate {size} bytes for tuple: tuple is too large. Check 'memtx_max_tuple_size' configuration option."
            ),
        )
    }
    pub fn wrong_space_options(details: &str) -> Self {
        Self::new(
            ER_WRONG_SPACE_OPTIONS,
            format!("Wrong space options: {details}"),
        )
    }
    pub fn view_is_ro(view: &str) -> Self {
        Self::new(ER_VIEW_IS_RO, format!("View '{view}' is read-only"))
    }
    pub fn unknown_replica(replica: &str, replicaset: &str) -> Self {
        Self::new(
            ER_UNKNOWN_REPLICA,
            format!("Replica {replica} is not registered with replica set {replicaset}"),
        )
    }
    pub fn replicaset_uuid_mismatch(expected: &str, got: &str) -> Self {
        Self::new(
            ER_REPLICASET_UUID_MISMATCH,
            format!("Replica set UUID mismatch: expected {expected}, got {got}"),
        )
    }
    pub fn invalid_uuid(value: &str) -> Self {
        Self::new(ER_INVALID_UUID, format!("Invalid UUID: {value}"))
    }
    pub fn replica_max(max: u32) -> Self {
        Self::new(
            ER_REPLICA_MAX,
            format!("Replica count limit reached: {max}"),
        )
    }
    pub fn protocol(details: &str) -> Self {
        Self::new(ER_PROTOCOL, format!("Communication error: {details}"))
    }
    /// ER_CFG: a configuration value (or a replication peer) is not acceptable.
    pub fn cfg(option: &str, reason: &str) -> Self {
        Self::new(
            ER_CFG,
            format!("Incorrect value for option '{option}': {reason}"),
        )
    }
    pub fn connection_to_self() -> Self {
        Self::new(ER_CONNECTION_TO_SELF, "Connection to self")
    }
    /// Rows between `from` and `to` (vclocks in text form) are gone from the WAL.
    pub fn xlog_gap(from: &str, to: &str) -> Self {
        Self::new(
            ER_XLOG_GAP_WIRE,
            format!("Missing .xlog file between LSN {from} and {to}"),
        )
        .with_kind(ErrorKind::XlogGapError)
    }
    pub fn loading() -> Self {
        Self::new(ER_LOADING, "Instance bootstrap hasn't finished yet")
    }
    pub fn partial_key(index_type: &str, expected: u32, got: u32) -> Self {
        Self::new(
            ER_PARTIAL_KEY,
            format!(
                "{index_type} index  does not support selects via a partial key (expected {expected} parts, got {got}). Please Consider changing index type to TREE."
            ),
        )
    }
    pub fn space_field_is_duplicate(name: &str) -> Self {
        Self::new(
            ER_SPACE_FIELD_IS_DUPLICATE,
            format!("Space field '{name}' is duplicate"),
        )
    }
    /// `fieldno` is 1-based.
    pub fn wrong_space_format(fieldno: u32, details: &str) -> Self {
        Self::new(
            ER_WRONG_SPACE_FORMAT,
            format!("Wrong space format (field {fieldno}): {details}"),
        )
    }
    /// `fieldno` is 1-based.
    pub fn wrong_collation_options(fieldno: u32, details: &str) -> Self {
        Self::new(
            ER_WRONG_COLLATION_OPTIONS,
            format!("Wrong collation options (field {fieldno}): {details}"),
        )
    }
    pub fn update_decimal_overflow(op: char, field: &str) -> Self {
        Self::new(
            ER_UPDATE_DECIMAL_OVERFLOW,
            format!("Decimal overflow when performing operation '{op}' on field {field}"),
        )
    }
    /// `name` is printed between quotes as given (2.6 quotes JSON paths twice in some errors).
    pub fn no_such_field_name(name: &str) -> Self {
        Self::new(
            ER_NO_SUCH_FIELD_NAME,
            format!("Field '{name}' was not found in the tuple"),
        )
    }
    /// The trailing space is 2.11's.
    pub fn active_transaction() -> Self {
        Self::new(
            ER_ACTIVE_TRANSACTION,
            "Operation is not permitted when there is an active transaction ",
        )
    }
    pub fn transaction_yield() -> Self {
        Self::new(
            ER_TRANSACTION_YIELD,
            "Transaction has been aborted by a fiber yield",
        )
    }
    pub fn transaction_conflict() -> Self {
        Self::new(
            ER_TRANSACTION_CONFLICT,
            "Transaction has been aborted by conflict",
        )
    }
    pub fn transaction_timeout() -> Self {
        Self::new(
            ER_TRANSACTION_TIMEOUT,
            "Transaction has been aborted by timeout",
        )
    }
    /// `request` is the request type's name as 2.11 prints it (`AUTH`, `ID`, ...).
    pub fn unable_to_process_in_stream(request: &str) -> Self {
        Self::new(
            ER_UNABLE_TO_PROCESS_IN_STREAM,
            format!("Unable to process {request} request in stream"),
        )
    }
    pub fn unable_to_process_out_of_stream(request: &str) -> Self {
        Self::new(
            ER_UNABLE_TO_PROCESS_OUT_OF_STREAM,
            format!("Unable to process {request} request out of stream"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_tarantool_2_6_captures() {
        assert_eq!(
            BoxError::tuple_found("primary", "test").message,
            "Duplicate key exists in unique index 'primary' in space 'test'"
        );
        assert_eq!(
            BoxError::unknown_request_type(73).message,
            "Unknown request type 73"
        );
        assert_eq!(
            BoxError::wrong_schema_version(84, 1).message,
            "Wrong schema version, current: 1, in request: 84"
        );
        let e = BoxError::access_denied("Read", "space", "test", "carol");
        assert_eq!(
            e.message,
            "Read access to space 'test' is denied for user 'carol'"
        );
        assert_eq!(e.kind, ErrorKind::AccessDeniedError);
    }
}
