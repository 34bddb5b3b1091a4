//! UPDATE and UPSERT operations (`= + - & | ^ : ! #`) on MessagePack tuples, with Tarantool
//! 2.6's argument, overflow, field-number and JSON-path rules.
//!
//! Work happens in two phases, as in Tarantool, because UPSERT reports the errors of the first
//! phase even when no tuple exists:
//! 1. *read*: every operation is decoded and its arguments type-checked (`read_ops`);
//! 2. *apply*: the operations change a lazily expanded tree of the tuple (`Node`), which is
//!    finally encoded back to MessagePack. Untouched runs of fields are copied verbatim.
//!
//! The tree mirrors 2.6's model closely enough to reproduce its observable rules (checked
//! against a real 2.6.0 on ~130 000 random operation lists, see the tests):
//! * a field changed by `=` or an arithmetic, bitwise or splice operation may afterwards only
//!   be re-assigned (`=`) or deleted; any other operation on it is a "double update";
//! * a single operation deep inside a field (a JSON path) is a *bar*; a second operation in the
//!   same field splits the bar where the two paths part (a *route* down to an array or map
//!   node). Map nodes write the pairs they touched first, in 2.6's order;
//! * floating results are encoded when the tuple is written, by where they land (MP_DOUBLE
//!   in a `double` field, else MP_FLOAT when exact).
//!
//! Where 2.6.0 is erratic (it crashes, or acts on freed memory: a path inside a value an
//! earlier operation replaced), we answer "double update of the same field" instead.

use crate::format::TupleFormat;
use crate::FieldType;
use spindle_proto::mp::{self, Value};
use spindle_types::limits::MP_DEPTH_MAX;
use spindle_types::{BoxError, BoxResult};
use std::borrow::Cow;
use std::cell::Cell;

/// Most operations one request may carry (`BOX_UPDATE_OP_CNT_MAX`).
/// Deepest JSON path an operation may use. The update tree is built recursively, one level
/// per path step, on a fiber's fixed stack; this bound keeps any request far from overflowing
/// it (a 1000-step path overflowed a 128 KiB stack). Tarantool 2.6 has no explicit limit but
/// recurses on its own fiber stack the same way.
pub const UPDATE_PATH_DEPTH_MAX: usize = 128;

pub const UPDATE_OPS_MAX: u32 = 4000;

/// Applies an UPDATE operation list (`ops`: a MessagePack array of operation arrays) to
/// `tuple` (a MessagePack array) and returns the new tuple's bytes. Any failing operation
/// fails the whole update and leaves nothing changed. `format` resolves field names.
pub fn apply_update(
    tuple: &[u8],
    ops: &[u8],
    index_base: u32,
    format: &TupleFormat,
) -> BoxResult<Vec<u8>> {
    let ops = read_ops(ops, index_base, Names::Format(format))?;
    let mut root = ArrayNode::new(Cow::Borrowed(tuple)).ok_or_else(BoxError::tuple_not_array)?;
    let ctx = Ctx { ops: &ops };
    for oi in 0..ops.len() {
        apply_op(&mut root, &ctx, oi)?;
    }
    Ok(root.encode_vec_in(Some(format)))
}

/// Checks an UPSERT operation list for errors that Tarantool reports even when the tuple does
/// not exist yet (malformed ops, unknown op codes, wrong arity, bad argument types, bad field
/// numbers). Without a format, field names are not looked up; prefer `check_upsert_ops_in`,
/// which also reports unknown names as 2.6 does.
pub fn check_upsert_ops(ops: &[u8], index_base: u32) -> BoxResult<()> {
    read_ops(ops, index_base, Names::Unchecked).map(|_| ())
}

/// `check_upsert_ops` that also resolves field names against the space format
/// (ER_NO_SUCH_FIELD_NAME for a name the format lacks, even when the tuple does not exist).
pub fn check_upsert_ops_in(ops: &[u8], index_base: u32, format: &TupleFormat) -> BoxResult<()> {
    read_ops(ops, index_base, Names::Format(format)).map(|_| ())
}

/// Applies UPSERT operations to an existing tuple. Errors in individual operations are
/// skipped (the operation is ignored), as Tarantool does; returns the new tuple's bytes.
pub fn apply_upsert(tuple: &[u8], ops: &[u8], index_base: u32, format: &TupleFormat) -> Vec<u8> {
    // Read errors were reported when the request arrived (`check_upsert_ops_in`).
    let Ok(ops) = read_ops(ops, index_base, Names::Format(format)) else {
        return tuple.to_vec();
    };
    let Some(mut root) = ArrayNode::new(Cow::Borrowed(tuple)) else {
        return tuple.to_vec();
    };
    let ctx = Ctx { ops: &ops };
    for oi in 0..ops.len() {
        // 2.6 logs and skips a failing operation; the others still apply.
        let _ = apply_op(&mut root, &ctx, oi);
    }
    root.encode_vec_in(Some(format))
}

// =============================================================================================
// Read phase: decoding operations
// =============================================================================================

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    Set,
    Insert,
    Delete,
    Add,
    Sub,
    And,
    Or,
    Xor,
    Splice,
}

impl Code {
    fn parse(name: &[u8]) -> Option<Code> {
        Some(match name {
            b"=" => Code::Set,
            b"!" => Code::Insert,
            b"#" => Code::Delete,
            b"+" => Code::Add,
            b"-" => Code::Sub,
            b"&" => Code::And,
            b"|" => Code::Or,
            b"^" => Code::Xor,
            b":" => Code::Splice,
            _ => return None,
        })
    }

    fn char(self) -> char {
        match self {
            Code::Set => '=',
            Code::Insert => '!',
            Code::Delete => '#',
            Code::Add => '+',
            Code::Sub => '-',
            Code::And => '&',
            Code::Or => '|',
            Code::Xor => '^',
            Code::Splice => ':',
        }
    }

    /// Array length of the operation, opcode included.
    fn arity(self) -> u32 {
        if self == Code::Splice {
            5
        } else {
            3
        }
    }
}

/// One step of a JSON path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'a> {
    /// `[N]`, already 0-based (paths are 1-based whatever INDEX_BASE says).
    Index(u32),
    /// `.key`, `["key"]` or `['key']` (no escapes: the bytes between the quotes).
    Key(&'a [u8]),
}

/// An operand of `+`/`-`.
#[derive(Clone, Copy, Debug)]
enum Num<'a> {
    Int(i128),
    Float(f32),
    Double(f64),
    /// MP_EXT payload of a Tarantool decimal.
    Decimal(&'a [u8]),
}

#[derive(Clone, Copy, Debug)]
enum Arg<'a> {
    Value(&'a [u8]),
    Num(Num<'a>),
    Bits(u64),
    Count(u32),
    /// `offset` is already shifted by INDEX_BASE when non-negative.
    Splice {
        offset: i64,
        cut: i64,
        paste: &'a [u8],
    },
}

#[derive(Debug)]
struct Op<'a> {
    code: Code,
    /// Top-level field: a position (`>= 0`, INDEX_BASE already subtracted) or a negative
    /// number counted from the end. Once a negative number is resolved against the tuple,
    /// the position replaces it (2.6 then names the field by position in errors).
    field: Cell<i64>,
    /// INDEX_BASE, for printing negative field numbers the way 2.6 does.
    base: i32,
    /// The field as the client wrote it, when it was a string: errors quote it.
    text: Option<&'a [u8]>,
    /// Path below the top-level field. A syntax error past the first step is only reported
    /// when the operation is applied (as 2.6 does), hence the deferred `Err(position)`.
    path: Result<Vec<Token<'a>>, usize>,
    arg: Arg<'a>,
}

/// How string field ids are resolved while reading.
#[derive(Clone, Copy)]
enum Names<'f> {
    Format(&'f TupleFormat),
    /// Accept any name (checks without a format).
    Unchecked,
}

fn read_ops<'a>(ops: &'a [u8], index_base: u32, names: Names<'_>) -> BoxResult<Vec<Op<'a>>> {
    let mut cur = ops;
    let n = match mp::read_value(&mut cur) {
        Ok(Value::Array(n)) => n,
        // What 2.6's request validation answers before update code ever runs.
        _ => return Err(BoxError::tuple_not_array()),
    };
    if n > UPDATE_OPS_MAX {
        return Err(BoxError::illegal_params("too many operations for update"));
    }
    // Tarantool keeps INDEX_BASE in an `int`: huge values wrap.
    let base = i64::from(index_base as i32);
    let mut out = Vec::with_capacity(n as usize);
    for opno in 1..=n {
        out.push(read_op(&mut cur, opno, base, names)?);
    }
    Ok(out)
}

fn bad_msgpack(_: mp::MpError) -> BoxError {
    BoxError::invalid_msgpack("packet body")
}

fn read_op<'a>(cur: &mut &'a [u8], opno: u32, base: i64, names: Names<'_>) -> BoxResult<Op<'a>> {
    let len = match mp::read_value(cur).map_err(bad_msgpack)? {
        Value::Array(0) => {
            let what = "update operation must be an array {op,..}, got empty array";
            return Err(BoxError::illegal_params(what));
        }
        Value::Array(n) => n,
        _ => {
            return Err(BoxError::illegal_params(
                "update operation must be an array {op,..}",
            ))
        }
    };
    let name = match mp::read_value(cur).map_err(bad_msgpack)? {
        Value::Str(s) => s,
        _ => {
            return Err(BoxError::illegal_params(
                "update operation name must be a string",
            ))
        }
    };
    let code = Code::parse(name).ok_or_else(|| {
        BoxError::unknown_update_op(opno, &format!("\"{}\"", String::from_utf8_lossy(name)))
    })?;
    if len != code.arity() {
        let details = format!(
            "wrong number of arguments, expected {}, got {len}",
            code.arity()
        );
        return Err(BoxError::unknown_update_op(opno, &details));
    }
    let (field, text, path) = read_field(cur, code, base, names)?;
    if path.as_ref().is_ok_and(|p| p.len() > UPDATE_PATH_DEPTH_MAX) {
        let name = String::from_utf8_lossy(text.unwrap_or_default());
        return Err(BoxError::update_field(
            &format!("'{name}'"),
            "JSON path is too deep",
        ));
    }
    let field = Cell::new(field);
    let mut op = Op {
        code,
        field,
        base: base as i32,
        text,
        path,
        arg: Arg::Count(0),
    };
    op.arg = read_arg(cur, &op, base)?;
    Ok(op)
}

type FieldSpec<'a> = (i64, Option<&'a [u8]>, Result<Vec<Token<'a>>, usize>);

fn read_field<'a>(
    cur: &mut &'a [u8],
    code: Code,
    base: i64,
    names: Names<'_>,
) -> BoxResult<FieldSpec<'a>> {
    let (no, given) = match mp::read_value(cur).map_err(bad_msgpack)? {
        Value::Uint(v) => (
            i64::try_from(v).ok().filter(|v| *v <= i64::from(i32::MAX)),
            v.to_string(),
        ),
        Value::Int(v) => (Some(v).filter(|v| *v >= i64::from(i32::MIN)), v.to_string()),
        Value::Str(s) => return resolve_name(s, names),
        _ => {
            return Err(BoxError::illegal_params(
                "field id must be a number or a string",
            ))
        }
    };
    let Some(no) = no else {
        // 2.6 prints a stale field number from an earlier request here; the number as given
        // is the most useful stand-in.
        return Err(BoxError::update_arg_type(code.char(), &given, "an integer"));
    };
    if no < 0 {
        return Ok((no, None, Ok(Vec::new())));
    }
    // `int` arithmetic, as in 2.6: INDEX_BASE 2^31 makes every field "not found".
    let pos = (no as i32).wrapping_sub(base as i32);
    if pos < 0 {
        return Err(BoxError::no_such_field_no(no));
    }
    Ok((i64::from(pos), None, Ok(Vec::new())))
}

/// Resolves a string field id: a format field name, else a JSON path whose first step is
/// `[N]` or a format field name.
fn resolve_name<'a>(s: &'a [u8], names: Names<'_>) -> BoxResult<FieldSpec<'a>> {
    if let Names::Format(f) = names {
        if let Some(no) = f.field_by_name_bytes(s) {
            return Ok((i64::from(no), Some(s), Ok(Vec::new())));
        }
    }
    let quoted = format!("'{}'", String::from_utf8_lossy(s));
    let mut lexer = Lexer::new(s);
    let field = match lexer.next_token() {
        Ok(Some(Token::Index(i))) => i64::from(i),
        Ok(Some(Token::Key(k))) => match names {
            Names::Format(f) => match f.field_by_name_bytes(k) {
                Some(no) => i64::from(no),
                None => return Err(no_such_name(s)),
            },
            Names::Unchecked => 0,
        },
        Ok(None) => return Err(no_such_name(s)),
        Err(pos) => return Err(invalid_json(&quoted, pos)),
    };
    Ok((field, Some(s), lexer.rest()))
}

fn no_such_name(s: &[u8]) -> BoxError {
    BoxError::no_such_field_name(&String::from_utf8_lossy(s))
}

fn invalid_json(field: &str, pos: usize) -> BoxError {
    BoxError::update_field(field, &format!("invalid JSON in position {pos}"))
}

fn read_arg<'a>(cur: &mut &'a [u8], op: &Op<'a>, base: i64) -> BoxResult<Arg<'a>> {
    let arg_err =
        |expected: &str| BoxError::update_arg_type(op.code.char(), &op.field_str(), expected);
    match op.code {
        Code::Set | Code::Insert => Ok(Arg::Value(mp::take_value(cur).map_err(bad_msgpack)?)),
        Code::Add | Code::Sub => {
            let v = read_scalar(cur)?;
            Ok(Arg::Num(num_of(v).ok_or_else(|| arg_err("a number"))?))
        }
        Code::And | Code::Or | Code::Xor => match read_scalar(cur)? {
            Value::Uint(v) => Ok(Arg::Bits(v)),
            _ => Err(arg_err("a positive integer")),
        },
        Code::Delete => match read_scalar(cur)? {
            // Tarantool keeps the count in 32 bits: 2^32 becomes 0.
            Value::Uint(v) if v as u32 == 0 => Err(op.update_err("cannot delete 0 fields")),
            Value::Uint(v) => Ok(Arg::Count(v as u32)),
            _ => Err(arg_err("a positive integer")),
        },
        Code::Splice => read_splice(cur, op, base),
    }
}

/// Reads one value head, skipping a container's elements so the cursor stays in step.
fn read_scalar<'a>(cur: &mut &'a [u8]) -> BoxResult<Value<'a>> {
    let start = *cur;
    let v = mp::read_value(cur).map_err(bad_msgpack)?;
    if matches!(v, Value::Array(_) | Value::Map(_)) {
        *cur = start;
        mp::skip(cur).map_err(bad_msgpack)?;
    }
    Ok(v)
}

fn read_i32(cur: &mut &[u8]) -> BoxResult<Option<i64>> {
    Ok(match read_scalar(cur)? {
        Value::Uint(v) if v <= i32::MAX as u64 => Some(v as i64),
        Value::Int(v) if v >= i64::from(i32::MIN) => Some(v),
        _ => None,
    })
}

fn read_splice<'a>(cur: &mut &'a [u8], op: &Op<'a>, base: i64) -> BoxResult<Arg<'a>> {
    let arg_err = |expected: &str| BoxError::update_arg_type(':', &op.field_str(), expected);
    let offset = read_i32(cur)?.ok_or_else(|| arg_err("an integer"))?;
    // A non-negative offset counts from INDEX_BASE; one below it is refused right away,
    // before the other arguments are looked at.
    let offset = if offset >= 0 {
        let shifted = (offset as i32).wrapping_sub(base as i32);
        if shifted < 0 {
            return Err(BoxError::update_splice(
                &op.field_str(),
                "offset is out of bound",
            ));
        }
        i64::from(shifted)
    } else {
        offset
    };
    let cut = read_i32(cur)?.ok_or_else(|| arg_err("an integer"))?;
    let paste = match read_scalar(cur)? {
        Value::Str(s) => s,
        _ => return Err(arg_err("a string")),
    };
    Ok(Arg::Splice { offset, cut, paste })
}

fn num_of(v: Value<'_>) -> Option<Num<'_>> {
    Some(match v {
        Value::Uint(u) => Num::Int(i128::from(u)),
        Value::Int(i) => Num::Int(i128::from(i)),
        Value::F32(f) => Num::Float(f),
        Value::F64(d) => Num::Double(d),
        Value::Ext(t, data) if t == crate::field_type::EXT_DECIMAL => Num::Decimal(data),
        _ => return None,
    })
}

impl<'a> Op<'a> {
    /// The field as 2.6 prints it: the quoted string, or the 1-based number (negative ones as
    /// given). The number is an `int` there, so `2^31 - 1` prints as `-2^31`.
    fn field_str(&self) -> String {
        match self.text {
            Some(t) => format!("'{}'", String::from_utf8_lossy(t)),
            None => self.field_no().to_string(),
        }
    }

    /// The field number 2.6 prints: 1-based for positions. 2.6 keeps `field - INDEX_BASE` in
    /// an `int` even for negative numbers, so those near `i32::MIN` wrap into positions.
    fn field_no(&self) -> i64 {
        let f = self.field.get();
        if f >= 0 {
            return i64::from((f as i32).wrapping_add(1));
        }
        let shifted = (f as i32).wrapping_sub(self.base);
        if shifted >= 0 {
            i64::from(shifted.wrapping_add(1))
        } else {
            f
        }
    }

    fn update_err(&self, details: &str) -> BoxError {
        BoxError::update_field(&self.field_str(), details)
    }

    fn double_update(&self) -> BoxError {
        self.update_err("double update of the same field")
    }

    /// "Field … was not found in the tuple": by number for plain fields; by (twice quoted,
    /// as 2.6 prints it) string for named fields and paths.
    fn not_found(&self) -> BoxError {
        match self.text {
            Some(_) => BoxError::no_such_field_name(&self.field_str()),
            None => BoxError::no_such_field_no(self.field_no()),
        }
    }

    fn arg_type(&self, expected: &str) -> BoxError {
        BoxError::update_arg_type(self.code.char(), &self.field_str(), expected)
    }

    fn tokens(&self) -> BoxResult<&[Token<'a>]> {
        match &self.path {
            Ok(t) => Ok(t),
            Err(pos) => Err(invalid_json(&self.field_str(), *pos)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON path lexer (2.6 rules: 1-based `[N]`, quoted keys without escapes, identifiers of
// letters, digits and `_`; error positions count characters from 1)
// ---------------------------------------------------------------------------------------------

struct Lexer<'a> {
    src: &'a [u8],
    /// Byte offset of the next character.
    pos: usize,
    /// Characters consumed so far.
    sym: usize,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a [u8]) -> Self {
        Lexer {
            src,
            pos: 0,
            sym: 0,
        }
    }

    /// The next character and its byte length; invalid UTF-8 reads as U+FFFD (never valid
    /// in a path, so it only ever produces an error at its position).
    fn peek(&self) -> Option<(char, usize)> {
        let rest = self.src.get(self.pos..)?;
        let first = *rest.first()?;
        let width = match first {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        let c = rest
            .get(..width)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.chars().next());
        Some(c.map_or(('\u{fffd}', 1), |c| (c, width)))
    }

    fn bump(&mut self, width: usize) {
        self.pos += width;
        self.sym += 1;
    }

    /// Position (1-based, in characters) of the next character.
    fn here(&self) -> usize {
        self.sym + 1
    }

    /// The remaining tokens, or the position of the first syntax error.
    fn rest(mut self) -> Result<Vec<Token<'a>>, usize> {
        let mut out = Vec::new();
        while let Some(t) = self.next_token()? {
            out.push(t);
        }
        Ok(out)
    }

    fn next_token(&mut self) -> Result<Option<Token<'a>>, usize> {
        let Some((c, w)) = self.peek() else {
            return Ok(None);
        };
        match c {
            '[' => {
                let bracket = self.here();
                self.bump(w);
                self.bracket(bracket).map(Some)
            }
            '.' => {
                self.bump(w);
                match self.peek() {
                    Some((c, _)) if is_ident_start(c) => Ok(Some(self.ident())),
                    _ => Err(self.here()),
                }
            }
            c if self.sym == 0 && is_ident_start(c) => Ok(Some(self.ident())),
            _ => Err(self.here()),
        }
    }

    /// After `[`: a number or a quoted key, then `]`.
    fn bracket(&mut self, bracket: usize) -> Result<Token<'a>, usize> {
        let token = match self.peek() {
            // 2.6 points at the bracket itself when the path ends right after it.
            None => return Err(bracket),
            Some((q @ ('"' | '\''), w)) => {
                self.bump(w);
                Token::Key(self.quoted(q)?)
            }
            Some((c, _)) if c.is_ascii_digit() => self.number()?,
            Some(_) => return Err(self.here()),
        };
        match self.peek() {
            Some((']', w)) => {
                self.bump(w);
                Ok(token)
            }
            _ => Err(self.here()),
        }
    }

    fn quoted(&mut self, quote: char) -> Result<&'a [u8], usize> {
        let start = self.pos;
        while let Some((c, w)) = self.peek() {
            if c == quote {
                let key = self.src.get(start..self.pos).ok_or(self.here())?;
                self.bump(w);
                return Ok(key);
            }
            self.bump(w);
        }
        Err(self.here())
    }

    /// Digits of `[N]`. Accumulated in a wrapping 32-bit int as 2.6 does; a result below 1
    /// (including wrapped ones) is an error at the first digit.
    fn number(&mut self) -> Result<Token<'a>, usize> {
        let start = self.here();
        let mut value: i32 = 0;
        while let Some((c, w)) = self.peek() {
            let Some(d) = c.to_digit(10) else { break };
            value = value.wrapping_mul(10).wrapping_add(d as i32);
            self.bump(w);
        }
        if value < 1 {
            return Err(start);
        }
        Ok(Token::Index((value - 1) as u32))
    }

    fn ident(&mut self) -> Token<'a> {
        let start = self.pos;
        while let Some((c, w)) = self.peek() {
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            self.bump(w);
        }
        Token::Key(self.src.get(start..self.pos).unwrap_or_default())
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

// =============================================================================================
// Apply phase: the update tree
// =============================================================================================

/// Bytes of a value: borrowed from the tuple or the request, or produced by an operation.
type Bytes<'a> = Cow<'a, [u8]>;

/// A sub-range of `b` with the same lifetime (copied when `b` is owned).
fn sub<'a>(b: &Bytes<'a>, start: usize, end: usize) -> Bytes<'a> {
    match b {
        Cow::Borrowed(s) => Cow::Borrowed(s.get(start..end).unwrap_or_default()),
        Cow::Owned(v) => Cow::Owned(v.get(start..end).unwrap_or_default().to_vec()),
    }
}

struct Ctx<'o, 'a> {
    ops: &'o [Op<'a>],
}

impl<'a> Ctx<'_, 'a> {
    fn op(&self, oi: usize) -> BoxResult<&Op<'a>> {
        self.ops.get(oi).ok_or_else(BoxError::unknown)
    }
}

/// One value inside an array or map being updated.
enum Node<'a> {
    /// Untouched, or inserted by `!` (any operation may still change it).
    Nop(Bytes<'a>),
    /// The result of `=` or of an arithmetic, bitwise or splice operation.
    Scalar(Vec<u8>),
    /// A floating-point `+`/`-` result. Its encoding is decided where it finally lands, as
    /// 2.6 does: MP_DOUBLE in a field the format types `double`, else MP_FLOAT when a float
    /// holds the value exactly, else MP_DOUBLE.
    Float(f64),
    /// A single operation somewhere below this value.
    Bar(Box<Bar<'a>>),
    /// Several operations below one common path prefix.
    Route(Box<Route<'a>>),
    Array(Box<ArrayNode<'a>>),
    Map(Box<MapNode<'a>>),
}

struct Bar<'a> {
    /// The value before the operation.
    orig: Bytes<'a>,
    /// Index of the operation and of its path token that applies inside `orig`.
    op: usize,
    depth: usize,
    /// The value after the operation.
    out: Vec<u8>,
}

struct Route<'a> {
    orig: Bytes<'a>,
    /// Path from `orig` down to the container `child` replaces.
    prefix: Vec<Token<'a>>,
    /// Byte range of that container in `orig`.
    child_range: (usize, usize),
    child: Node<'a>,
}

impl Node<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Node::Nop(b) => out.extend_from_slice(b),
            Node::Scalar(v) => out.extend_from_slice(v),
            Node::Float(v) => write_float(out, *v, false),
            Node::Bar(bar) => out.extend_from_slice(&bar.out),
            Node::Route(r) => {
                let (s, e) = r.child_range;
                out.extend_from_slice(r.orig.get(..s).unwrap_or_default());
                r.child.encode(out);
                out.extend_from_slice(r.orig.get(e..).unwrap_or_default());
            }
            Node::Array(a) => a.encode(out),
            Node::Map(m) => m.encode(out),
        }
    }
}

/// Builds the array or map node for a container value (`None` for anything else).
fn container_node(bytes: Bytes<'_>) -> Option<Node<'_>> {
    match mp::peek_type(&bytes).ok()? {
        mp::MpType::Array => Some(Node::Array(Box::new(ArrayNode::new(bytes)?))),
        mp::MpType::Map => Some(Node::Map(Box::new(MapNode::new(bytes)?))),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Arrays: a list of segments, each a run of untouched elements or one element node
// ---------------------------------------------------------------------------------------------

enum Seg<'a> {
    /// Original elements `first..first + count`.
    Run {
        first: usize,
        count: usize,
    },
    Item(Node<'a>),
}

struct ArrayNode<'a> {
    data: Bytes<'a>,
    /// Byte offset of every original element, then the end of the last one.
    offsets: Vec<usize>,
    segs: Vec<Seg<'a>>,
    len: usize,
}

impl<'a> ArrayNode<'a> {
    /// `None` unless `data` starts with a well-formed array.
    fn new(data: Bytes<'a>) -> Option<Self> {
        let mut cur: &[u8] = &data;
        let n = match mp::read_value(&mut cur).ok()? {
            Value::Array(n) => n as usize,
            _ => return None,
        };
        let total = data.len();
        let mut offsets = Vec::with_capacity(n.min(total) + 1);
        for _ in 0..n {
            offsets.push(total - cur.len());
            mp::skip(&mut cur).ok()?;
        }
        offsets.push(total - cur.len());
        let segs = if n > 0 {
            vec![Seg::Run { first: 0, count: n }]
        } else {
            Vec::new()
        };
        Some(ArrayNode {
            data,
            offsets,
            segs,
            len: n,
        })
    }

    fn elem_bytes(&self, i: usize) -> Bytes<'a> {
        let s = self.offsets.get(i).copied().unwrap_or(0);
        let e = self.offsets.get(i + 1).copied().unwrap_or(s);
        sub(&self.data, s, e)
    }

    /// Segment holding element `pos` and the element's offset inside it.
    fn locate(&self, pos: usize) -> Option<(usize, usize)> {
        let mut at = 0;
        for (i, seg) in self.segs.iter().enumerate() {
            let n = match seg {
                Seg::Run { count, .. } => *count,
                Seg::Item(_) => 1,
            };
            if pos < at + n {
                return Some((i, pos - at));
            }
            at += n;
        }
        None
    }

    /// The node of element `pos` (`pos < len`), split out of its run if needed.
    fn item_mut(&mut self, pos: usize) -> Option<&mut Node<'a>> {
        let (si, off) = self.locate(pos)?;
        if let Some(&Seg::Run { first, count }) = self.segs.get(si) {
            let node = Node::Nop(self.elem_bytes(first + off));
            let mut parts = Vec::with_capacity(3);
            if off > 0 {
                parts.push(Seg::Run { first, count: off });
            }
            parts.push(Seg::Item(node));
            if off + 1 < count {
                parts.push(Seg::Run {
                    first: first + off + 1,
                    count: count - off - 1,
                });
            }
            let item_at = si + usize::from(off > 0);
            self.segs.splice(si..=si, parts);
            return match self.segs.get_mut(item_at) {
                Some(Seg::Item(n)) => Some(n),
                _ => None,
            };
        }
        match self.segs.get_mut(si) {
            Some(Seg::Item(n)) => Some(n),
            _ => None,
        }
    }

    /// Inserts a node before element `pos` (`pos <= len`).
    fn insert(&mut self, pos: usize, node: Node<'a>) {
        let at = if pos == self.len {
            self.segs.len()
        } else {
            match self.locate(pos) {
                Some((si, 0)) => si,
                Some((si, off)) => {
                    // Split the run so the new item goes between its halves.
                    if let Some(Seg::Run { first, count }) = self.segs.get_mut(si) {
                        let (f, c) = (*first, *count);
                        *count = off;
                        self.segs.insert(
                            si + 1,
                            Seg::Run {
                                first: f + off,
                                count: c - off,
                            },
                        );
                    }
                    si + 1
                }
                None => self.segs.len(),
            }
        };
        self.segs.insert(at, Seg::Item(node));
        self.len += 1;
    }

    /// Deletes up to `count` elements from `pos` (`pos < len`).
    fn delete(&mut self, pos: usize, count: usize) {
        let Some((mut si, mut off)) = self.locate(pos) else {
            return;
        };
        let mut left = count.min(self.len - pos);
        self.len -= left;
        while left > 0 && si < self.segs.len() {
            match self.segs.get_mut(si) {
                Some(Seg::Run { first, count: n }) => {
                    let take = left.min(*n - off);
                    left -= take;
                    if off == 0 && take == *n {
                        self.segs.remove(si);
                    } else if off == 0 {
                        *first += take;
                        *n -= take;
                    } else if off + take == *n {
                        *n = off;
                        si += 1;
                        off = 0;
                    } else {
                        let tail = Seg::Run {
                            first: *first + off + take,
                            count: *n - off - take,
                        };
                        *n = off;
                        self.segs.insert(si + 1, tail);
                    }
                }
                Some(Seg::Item(_)) => {
                    self.segs.remove(si);
                    left -= 1;
                }
                None => break,
            }
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        self.encode_in(out, None);
    }

    /// Encodes the array; `format` types its elements (top level only).
    fn encode_in(&self, out: &mut Vec<u8>, format: Option<&TupleFormat>) {
        mp::write_array_len(out, self.len as u32);
        let mut pos = 0;
        for seg in &self.segs {
            match seg {
                Seg::Run { first, count } => {
                    let s = self.offsets.get(*first).copied().unwrap_or(0);
                    let e = self.offsets.get(first + count).copied().unwrap_or(s);
                    out.extend_from_slice(self.data.get(s..e).unwrap_or_default());
                    pos += count;
                }
                Seg::Item(Node::Float(v)) => {
                    let typed_double = format
                        .is_some_and(|f| f.constraint(pos as u32).field_type == FieldType::Double);
                    write_float(out, *v, typed_double);
                    pos += 1;
                }
                Seg::Item(node) => {
                    node.encode(out);
                    pos += 1;
                }
            }
        }
    }

    fn encode_vec(&self) -> Vec<u8> {
        self.encode_vec_in(None)
    }

    fn encode_vec_in(&self, format: Option<&TupleFormat>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 16);
        self.encode_in(&mut out, format);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Maps: a list of items, each an updated pair (or none) followed by untouched pairs. Touched
// keys are extracted to the front of the list, which is the order 2.6 writes them in.
// ---------------------------------------------------------------------------------------------

struct PairSpan<'a> {
    start: usize,
    value_start: usize,
    end: usize,
    /// The key, if it is a string (only string keys are addressable).
    key: Option<&'a [u8]>,
}

struct MapItem<'a> {
    pair: Option<(Bytes<'a>, Node<'a>)>,
    /// Untouched pairs `tail.0..tail.1` (indexes into `pairs`).
    tail: (usize, usize),
}

struct MapNode<'a> {
    data: Bytes<'a>,
    pairs: Vec<PairSpan<'a>>,
    items: Vec<MapItem<'a>>,
}

impl<'a> MapNode<'a> {
    fn new(data: Bytes<'a>) -> Option<Self> {
        let spans = map_spans(&data)?;
        // Key slices must outlive `data`'s borrow: re-derive them from `data` when it is
        // borrowed, copy nothing otherwise (owned maps are matched through `data`).
        let pairs = spans
            .into_iter()
            .map(|(start, value_start, end)| PairSpan {
                start,
                value_start,
                end,
                key: None,
            })
            .collect::<Vec<_>>();
        let n = pairs.len();
        let mut node = MapNode {
            data,
            pairs,
            items: vec![MapItem {
                pair: None,
                tail: (0, n),
            }],
        };
        node.index_keys();
        Some(node)
    }

    /// Fills `PairSpan::key` for borrowed data (owned data is compared in place).
    fn index_keys(&mut self) {
        if let Cow::Borrowed(d) = self.data {
            for p in &mut self.pairs {
                p.key = str_content(d.get(p.start..p.value_start).unwrap_or_default());
            }
        }
    }

    fn pair_key(&self, j: usize) -> Option<&[u8]> {
        let p = self.pairs.get(j)?;
        match p.key {
            Some(k) => Some(k),
            None => str_content(self.data.get(p.start..p.value_start)?),
        }
    }

    fn len(&self) -> usize {
        self.items
            .iter()
            .map(|it| usize::from(it.pair.is_some()) + it.tail.1 - it.tail.0)
            .sum()
    }

    /// Index of the item holding `key`, extracting it from a run of untouched pairs (to the
    /// front of the list) if needed.
    fn find(&mut self, key: &[u8]) -> Option<usize> {
        let hit = self
            .items
            .iter()
            .position(|it| matches!(&it.pair, Some((k, _)) if str_content(k) == Some(key)));
        if hit.is_some() {
            return hit;
        }
        for i in 0..self.items.len() {
            let (a, b) = self.items.get(i)?.tail;
            if let Some(j) = (a..b).find(|&j| self.pair_key(j) == Some(key)) {
                let p = self.pairs.get(j)?;
                let key_bytes = sub(&self.data, p.start, p.value_start);
                let value = sub(&self.data, p.value_start, p.end);
                let pair = Some((key_bytes, Node::Nop(value)));
                let item = self.items.get_mut(i)?;
                // 2.6's list discipline (fitted to its output on ~750 operation sequences): a
                // pair that opens the run of a keyless item takes that item over in place;
                // any other extracted pair goes to the front of the list.
                if j == a && item.pair.is_none() {
                    *item = MapItem {
                        pair,
                        tail: (j + 1, b),
                    };
                    return Some(i);
                }
                item.tail = (a, j);
                self.items.insert(
                    0,
                    MapItem {
                        pair,
                        tail: (j + 1, b),
                    },
                );
                return Some(0);
            }
        }
        None
    }

    fn node_mut(&mut self, item: usize) -> Option<&mut Node<'a>> {
        self.items.get_mut(item)?.pair.as_mut().map(|(_, n)| n)
    }

    /// Adds a new key in front.
    fn insert(&mut self, key: &[u8], node: Node<'a>) {
        let mut k = Vec::with_capacity(key.len() + 5);
        mp::write_str_bytes(&mut k, key);
        self.items.insert(
            0,
            MapItem {
                pair: Some((Cow::Owned(k), node)),
                tail: (0, 0),
            },
        );
    }

    /// Writes the touched pairs first, then the untouched runs (2.6's order).
    fn encode(&self, out: &mut Vec<u8>) {
        mp::write_map_len(out, self.len() as u32);
        for it in &self.items {
            if let Some((k, node)) = &it.pair {
                out.extend_from_slice(k);
                node.encode(out);
            }
        }
        for it in &self.items {
            let (a, b) = it.tail;
            if a < b {
                let s = self.pairs.get(a).map_or(0, |p| p.start);
                let e = self.pairs.get(b - 1).map_or(s, |p| p.end);
                out.extend_from_slice(self.data.get(s..e).unwrap_or_default());
            }
        }
    }
}

/// Byte spans (pair start, value start, pair end) of a map's pairs.
fn map_spans(data: &[u8]) -> Option<Vec<(usize, usize, usize)>> {
    let mut cur = data;
    let n = match mp::read_value(&mut cur).ok()? {
        Value::Map(n) => n as usize,
        _ => return None,
    };
    let total = data.len();
    let mut out = Vec::with_capacity(n.min(total));
    for _ in 0..n {
        let start = total - cur.len();
        mp::skip(&mut cur).ok()?;
        let value_start = total - cur.len();
        mp::skip(&mut cur).ok()?;
        out.push((start, value_start, total - cur.len()));
    }
    Some(out)
}

/// The content of an MP_STR value.
fn str_content(b: &[u8]) -> Option<&[u8]> {
    let mut cur = b;
    match mp::read_value(&mut cur).ok()? {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Applying one operation
// ---------------------------------------------------------------------------------------------

fn apply_op<'a>(root: &mut ArrayNode<'a>, ctx: &Ctx<'_, 'a>, oi: usize) -> BoxResult<()> {
    let op = ctx.op(oi)?;
    let tokens = op.tokens()?;
    if tokens.len() > MP_DEPTH_MAX {
        // Stored tuples are never nested deeper; this also bounds the recursion below.
        return Err(op.not_found());
    }
    if tokens.is_empty() {
        return array_terminal(root, ctx, oi, op.field.get(), true);
    }
    let pos = usize::try_from(op.field.get())
        .ok()
        .filter(|p| *p < root.len);
    let pos = pos.ok_or_else(|| op.not_found())?;
    let node = root.item_mut(pos).ok_or_else(|| op.not_found())?;
    descend(node, ctx, oi, 0)
}

/// Resolves an array position for `op`: negative ones count from the end (`!` counts from
/// one past it, so `-1` appends). `None` when before the start.
fn resolve_pos(index: i64, len: usize, code: Code) -> Option<usize> {
    if index >= 0 {
        return usize::try_from(index).ok();
    }
    let base = len as i64 + i64::from(code == Code::Insert);
    usize::try_from(base + index).ok()
}

/// An operation whose path ends at element `index` of array `arr`.
fn array_terminal<'a>(
    arr: &mut ArrayNode<'a>,
    ctx: &Ctx<'_, 'a>,
    oi: usize,
    index: i64,
    top: bool,
) -> BoxResult<()> {
    let op = ctx.op(oi)?;
    let len = arr.len;
    let pos = resolve_pos(index, len, op.code).ok_or_else(|| op.not_found())?;
    if top {
        op.field.set(pos as i64);
    }
    match op.arg {
        // `=` on one past the end appends (2.6 turns it into an insert).
        Arg::Value(v) if op.code == Code::Set && pos == len => {
            arr.insert(pos, Node::Nop(Cow::Owned(v.to_vec())))
        }
        Arg::Value(v) if op.code == Code::Set && pos < len => {
            // Assignment replaces whatever earlier operations did to the element.
            *arr.item_mut(pos).ok_or_else(|| op.not_found())? = Node::Scalar(v.to_vec());
        }
        Arg::Value(v) if op.code == Code::Insert && pos <= len => {
            arr.insert(pos, Node::Nop(Cow::Owned(v.to_vec())))
        }
        Arg::Count(n) if pos < len => arr.delete(pos, n as usize),
        Arg::Num(_) | Arg::Bits(_) | Arg::Splice { .. } if pos < len => {
            let node = arr.item_mut(pos).ok_or_else(|| op.not_found())?;
            let Node::Nop(old) = node else {
                return Err(op.double_update());
            };
            *node = compute(op, old)?;
        }
        _ => return Err(op.not_found()),
    }
    Ok(())
}

/// An operation whose path ends at key `key` of map `map`.
fn map_terminal<'a>(
    map: &mut MapNode<'a>,
    ctx: &Ctx<'_, 'a>,
    oi: usize,
    key: &[u8],
) -> BoxResult<()> {
    let op = ctx.op(oi)?;
    let found = map.find(key);
    match (op.code, found) {
        (Code::Set | Code::Insert, None) => {
            let Arg::Value(v) = op.arg else {
                return Err(op.not_found());
            };
            map.insert(key, Node::Nop(Cow::Owned(v.to_vec())));
        }
        (Code::Insert, Some(_)) => return Err(op.update_err("the key exists already")),
        (Code::Delete, _) if !matches!(op.arg, Arg::Count(1)) => {
            return Err(op.update_err("can delete only 1 field from a map in a row"));
        }
        // Deleting a key the map lacks changes nothing (unlike in a bar).
        (Code::Delete, None) => {}
        (Code::Delete, Some(i)) => {
            if let Some(item) = map.items.get_mut(i) {
                item.pair = None;
            }
        }
        // Like arrays, maps let `=` replace whatever earlier operations did.
        (Code::Set, Some(i)) => {
            let Arg::Value(v) = op.arg else {
                return Err(op.not_found());
            };
            *map.node_mut(i).ok_or_else(|| op.not_found())? = Node::Scalar(v.to_vec());
        }
        (_, Some(i)) => {
            let node = map.node_mut(i).ok_or_else(|| op.not_found())?;
            let Node::Nop(old) = node else {
                return Err(op.double_update());
            };
            *node = compute(op, old)?;
        }
        (_, None) => return Err(op.not_found()),
    }
    Ok(())
}

/// Applies operation `oi` inside `node`, whose path continues at token `d`.
fn descend<'a>(node: &mut Node<'a>, ctx: &Ctx<'_, 'a>, oi: usize, d: usize) -> BoxResult<()> {
    let op = ctx.op(oi)?;
    match node {
        Node::Nop(bytes) => {
            let tokens = op.tokens()?.get(d..).unwrap_or_default();
            let out = patch(bytes, tokens, op)?;
            let orig = std::mem::take(bytes);
            *node = Node::Bar(Box::new(Bar {
                orig,
                op: oi,
                depth: d,
                out,
            }));
            Ok(())
        }
        // Going inside a value another operation replaced: 2.6 reports this odd error for an
        // index step (and crashes for a key step, where we call it a double update).
        Node::Scalar(_) | Node::Float(_) => match op.tokens()?.get(d) {
            Some(Token::Index(_)) => Err(op.update_err("can't update a map by not a string key")),
            _ => Err(op.double_update()),
        },
        Node::Bar(_) => branch_bar(node, ctx, oi, d),
        Node::Route(_) => route_apply(node, ctx, oi, d),
        Node::Array(_) | Node::Map(_) => container_step(node, ctx, oi, d),
    }
}

/// Applies operation `oi` to the container `node` (an array or map node) at token `d`.
fn container_step<'a>(
    node: &mut Node<'a>,
    ctx: &Ctx<'_, 'a>,
    oi: usize,
    d: usize,
) -> BoxResult<()> {
    let op = ctx.op(oi)?;
    let tokens = op.tokens()?;
    let token = tokens.get(d).copied().ok_or_else(|| op.not_found())?;
    let last = d + 1 == tokens.len();
    match (node, token) {
        (Node::Array(a), Token::Index(i)) if last => {
            array_terminal(a, ctx, oi, i64::from(i), false)
        }
        (Node::Array(a), Token::Index(i)) => {
            let item = if (i as usize) < a.len {
                a.item_mut(i as usize)
            } else {
                None
            };
            descend(item.ok_or_else(|| op.not_found())?, ctx, oi, d + 1)
        }
        (Node::Map(m), Token::Key(k)) if last => map_terminal(m, ctx, oi, k),
        (Node::Map(m), Token::Key(k)) => {
            let i = m.find(k).ok_or_else(|| op.not_found())?;
            descend(m.node_mut(i).ok_or_else(|| op.not_found())?, ctx, oi, d + 1)
        }
        (node, _) => Err(container_kind_error(op, node)),
    }
}

/// An operation reaching an array or map node with the wrong kind of step (or none).
fn container_kind_error(op: &Op<'_>, node: &Node<'_>) -> BoxError {
    match node {
        Node::Array(_) => op.update_err("can not update array by non-integer index"),
        Node::Map(_) => op.update_err("can not update map by non-string key"),
        _ => op.not_found(),
    }
}

fn common_prefix(a: &[Token<'_>], b: &[Token<'_>]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A second operation inside a bar: the bar becomes a container node at the point where the
/// two paths part (behind a route if that point is deeper), and both operations apply there.
fn branch_bar<'a>(node: &mut Node<'a>, ctx: &Ctx<'_, 'a>, oi: usize, d: usize) -> BoxResult<()> {
    let op = ctx.op(oi)?;
    let Node::Bar(bar) = node else {
        return Err(BoxError::unknown());
    };
    let bar_op = ctx.op(bar.op)?;
    let p = bar_op.tokens()?.get(bar.depth..).unwrap_or_default();
    let q = op.tokens()?.get(d..).unwrap_or_default();
    let c = common_prefix(p, q);
    if c == p.len() {
        // Same path, or a path inside the value the bar changes. 2.6 is erratic there (it
        // crashes, or re-applies the first operation one level deeper, or drops it); a
        // double update is the honest answer.
        return Err(op.double_update());
    }
    if c == q.len() {
        // The operation ends at a container the bar goes through.
        let (s, e) =
            locate_path(&bar.orig, p.get(..c).unwrap_or_default()).ok_or_else(|| op.not_found())?;
        let container = container_node(sub(&bar.orig, s, e)).ok_or_else(|| op.not_found())?;
        return Err(container_kind_error(op, &container));
    }
    let (bar_oi, bar_depth) = (bar.op, bar.depth);
    let prefix = p.get(..c).unwrap_or_default().to_vec();
    let orig = std::mem::take(&mut bar.orig);
    let (s, e) = locate_path(&orig, &prefix).ok_or_else(BoxError::unknown)?;
    let mut container = container_node(sub(&orig, s, e)).ok_or_else(BoxError::unknown)?;
    // Re-apply the bar's operation: it succeeded on the same bytes before.
    container_step(&mut container, ctx, bar_oi, bar_depth + c)?;
    let result = container_step(&mut container, ctx, oi, d + c);
    *node = wrap_route(orig, prefix, (s, e), container);
    result
}

/// A route over `prefix` to `child`, or `child` itself for an empty prefix.
fn wrap_route<'a>(
    orig: Bytes<'a>,
    prefix: Vec<Token<'a>>,
    range: (usize, usize),
    child: Node<'a>,
) -> Node<'a> {
    if prefix.is_empty() {
        child
    } else {
        Node::Route(Box::new(Route {
            orig,
            prefix,
            child_range: range,
            child,
        }))
    }
}

/// An operation reaching a route: follow it when the path goes all the way through it,
/// otherwise split the route where the paths part.
fn route_apply<'a>(node: &mut Node<'a>, ctx: &Ctx<'_, 'a>, oi: usize, d: usize) -> BoxResult<()> {
    let op = ctx.op(oi)?;
    let Node::Route(r) = node else {
        return Err(BoxError::unknown());
    };
    let q = op.tokens()?.get(d..).unwrap_or_default();
    let c = common_prefix(&r.prefix, q);
    if c >= q.len() {
        // The operation targets the route's container or a value on its way.
        return Err(op.not_found());
    }
    if c == r.prefix.len() {
        return container_step(&mut r.child, ctx, oi, d + c);
    }
    let Node::Route(route) = std::mem::replace(node, Node::Scalar(Vec::new())) else {
        return Err(BoxError::unknown());
    };
    let Route {
        orig,
        prefix,
        child_range,
        child,
    } = *route;
    let head = prefix.get(..c).unwrap_or_default().to_vec();
    let (s, e) = locate_path(&orig, &head).ok_or_else(BoxError::unknown)?;
    let mut container = container_node(sub(&orig, s, e)).ok_or_else(BoxError::unknown)?;
    // The rest of the old route becomes the element at `prefix[c]`.
    let elem_range =
        locate_path(&orig, prefix.get(..=c).unwrap_or_default()).ok_or_else(BoxError::unknown)?;
    let rest = prefix.get(c + 1..).unwrap_or_default().to_vec();
    let rest_node = if rest.is_empty() {
        child
    } else {
        let elem = sub(&orig, elem_range.0, elem_range.1);
        let inner = (child_range.0 - elem_range.0, child_range.1 - elem_range.0);
        Node::Route(Box::new(Route {
            orig: elem,
            prefix: rest,
            child_range: inner,
            child,
        }))
    };
    let step = prefix.get(c).copied().ok_or_else(BoxError::unknown)?;
    place(&mut container, step, rest_node)?;
    let result = container_step(&mut container, ctx, oi, d + c);
    *node = wrap_route(orig, head, (s, e), container);
    result
}

/// Puts `new` in place of the element `step` selects in the container node.
fn place<'a>(container: &mut Node<'a>, step: Token<'a>, new: Node<'a>) -> BoxResult<()> {
    let slot = match (container, step) {
        (Node::Array(a), Token::Index(i)) => a.item_mut(i as usize),
        (Node::Map(m), Token::Key(k)) => match m.find(k) {
            Some(i) => m.node_mut(i),
            None => None,
        },
        _ => None,
    };
    *slot.ok_or_else(BoxError::unknown)? = new;
    Ok(())
}

/// Byte range of the value `path` leads to inside `value` (existing elements only).
fn locate_path(value: &[u8], path: &[Token<'_>]) -> Option<(usize, usize)> {
    let mut start = 0;
    let mut end = value.len();
    for token in path {
        let v = value.get(start..end)?;
        let (s, e) = match *token {
            Token::Index(i) => array_elem_span(v, i as usize)?,
            Token::Key(k) => map_value_span(v, k)?,
        };
        end = start + e;
        start += s;
    }
    Some((start, end))
}

fn array_elem_span(v: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut cur = v;
    let n = match mp::read_value(&mut cur).ok()? {
        Value::Array(n) => n as usize,
        _ => return None,
    };
    if i >= n {
        return None;
    }
    for _ in 0..i {
        mp::skip(&mut cur).ok()?;
    }
    let s = v.len() - cur.len();
    mp::skip(&mut cur).ok()?;
    Some((s, v.len() - cur.len()))
}

fn map_value_span(v: &[u8], key: &[u8]) -> Option<(usize, usize)> {
    let spans = map_spans(v)?;
    spans
        .into_iter()
        .find(|&(s, vs, _)| v.get(s..vs).and_then(str_content) == Some(key))
        .map(|(_, vs, e)| (vs, e))
}

// ---------------------------------------------------------------------------------------------
// Bars: one operation deep inside a value, applied directly to its bytes
// ---------------------------------------------------------------------------------------------

/// Returns `value` with `op` applied at the end of `path` (non-empty).
fn patch(value: &[u8], path: &[Token<'_>], op: &Op<'_>) -> BoxResult<Vec<u8>> {
    let Some((&token, rest)) = path.split_first() else {
        return Err(op.double_update());
    };
    let kind = mp::peek_type(value).map_err(bad_msgpack)?;
    match (kind, token) {
        (mp::MpType::Array, Token::Index(i)) if rest.is_empty() => {
            patch_array_leaf(value, i as usize, op)
        }
        (mp::MpType::Array, Token::Index(i)) => {
            let (s, e) = array_elem_span(value, i as usize).ok_or_else(|| op.not_found())?;
            splice_range(
                value,
                s,
                e,
                &patch(value.get(s..e).unwrap_or_default(), rest, op)?,
            )
        }
        (mp::MpType::Map, Token::Key(k)) if rest.is_empty() => patch_map_leaf(value, k, op),
        (mp::MpType::Map, Token::Key(k)) => {
            let (s, e) = map_value_span(value, k).ok_or_else(|| op.not_found())?;
            splice_range(
                value,
                s,
                e,
                &patch(value.get(s..e).unwrap_or_default(), rest, op)?,
            )
        }
        // Only `=` and `!` look at the parent of a missing element: the others need the
        // whole path to exist.
        _ if !rest.is_empty() || !matches!(op.code, Code::Set | Code::Insert) => {
            Err(op.not_found())
        }
        (_, Token::Index(_)) => Err(op.update_err("can not access by index a non-array field")),
        (_, Token::Key(_)) => Err(op.update_err("can not access by key a non-map field")),
    }
}

/// `value[..s] + new + value[e..]`.
fn splice_range(value: &[u8], s: usize, e: usize, new: &[u8]) -> BoxResult<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len() + new.len());
    out.extend_from_slice(value.get(..s).unwrap_or_default());
    out.extend_from_slice(new);
    out.extend_from_slice(value.get(e..).unwrap_or_default());
    Ok(out)
}

fn patch_array_leaf(value: &[u8], i: usize, op: &Op<'_>) -> BoxResult<Vec<u8>> {
    let mut arr = ArrayNode::new(Cow::Borrowed(value)).ok_or_else(|| op.not_found())?;
    let n = arr.len;
    match op.arg {
        Arg::Value(v) if i == n && op.code == Code::Set => {
            arr.insert(i, Node::Nop(Cow::Borrowed(v)))
        }
        Arg::Value(v) if i <= n && op.code == Code::Insert => {
            arr.insert(i, Node::Nop(Cow::Borrowed(v)))
        }
        Arg::Count(c) if i < n => arr.delete(i, c as usize),
        _ if i < n => {
            // Same element count: keep the original header bytes, as 2.6 does.
            let (s, e) = array_elem_span(value, i).ok_or_else(|| op.not_found())?;
            let old = value.get(s..e).unwrap_or_default();
            let new = match op.arg {
                Arg::Value(v) => v.to_vec(),
                _ => compute_bytes(op, old)?,
            };
            return splice_range(value, s, e, &new);
        }
        _ => return Err(op.not_found()),
    }
    Ok(arr.encode_vec())
}

fn patch_map_leaf(value: &[u8], key: &[u8], op: &Op<'_>) -> BoxResult<Vec<u8>> {
    let spans = map_spans(value).ok_or_else(|| op.not_found())?;
    let hit = spans
        .iter()
        .position(|&(s, vs, _)| value.get(s..vs).and_then(str_content) == Some(key));
    let body_start = spans.first().map_or(value.len(), |p| p.0);
    let body = value.get(body_start..).unwrap_or_default();
    match (op.code, hit) {
        (Code::Set | Code::Insert, None) => {
            // A new key goes in front of the old pairs.
            let Arg::Value(v) = op.arg else {
                return Err(op.not_found());
            };
            let mut out = Vec::with_capacity(value.len() + key.len() + v.len() + 10);
            mp::write_map_len(&mut out, spans.len() as u32 + 1);
            mp::write_str_bytes(&mut out, key);
            out.extend_from_slice(v);
            out.extend_from_slice(body);
            Ok(out)
        }
        (Code::Insert, Some(_)) => Err(op.update_err("the key exists already")),
        (Code::Delete, Some(j)) => {
            if !matches!(op.arg, Arg::Count(1)) {
                return Err(op.update_err("can delete only 1 field from a map in a row"));
            }
            let (s, _, e) = spans.get(j).copied().ok_or_else(|| op.not_found())?;
            let mut out = Vec::with_capacity(value.len());
            mp::write_map_len(&mut out, spans.len() as u32 - 1);
            out.extend_from_slice(value.get(body_start..s).unwrap_or_default());
            out.extend_from_slice(value.get(e..).unwrap_or_default());
            Ok(out)
        }
        (_, Some(j)) => {
            let (_, vs, e) = spans.get(j).copied().ok_or_else(|| op.not_found())?;
            let new = match op.arg {
                Arg::Value(v) => v.to_vec(),
                _ => compute_bytes(op, value.get(vs..e).unwrap_or_default())?,
            };
            splice_range(value, vs, e, &new)
        }
        (_, None) => Err(op.not_found()),
    }
}

// =============================================================================================
// Value operations: arithmetic, bitwise, splice
// =============================================================================================

/// The new value of a field that `op` (arithmetic, bitwise or splice) changes.
fn compute(op: &Op<'_>, old: &[u8]) -> BoxResult<Node<'static>> {
    let v = mp::read_value(&mut &old[..]).map_err(bad_msgpack)?;
    let mut out = Vec::new();
    match op.arg {
        Arg::Num(arg) => {
            let cur = num_of(v).ok_or_else(|| op.arg_type("a number"))?;
            return arith(op, cur, arg);
        }
        Arg::Bits(arg) => {
            let Value::Uint(cur) = v else {
                return Err(op.arg_type("a positive integer"));
            };
            mp::write_uint(
                &mut out,
                match op.code {
                    Code::And => cur & arg,
                    Code::Or => cur | arg,
                    _ => cur ^ arg,
                },
            );
        }
        Arg::Splice { offset, cut, paste } => {
            let Value::Str(s) = v else {
                return Err(op.arg_type("a string"));
            };
            let new = splice_str(s, offset, cut, paste).ok_or_else(|| {
                BoxError::update_splice(&op.field_str(), "offset is out of bound")
            })?;
            mp::write_str_bytes(&mut out, &new);
        }
        Arg::Value(v) => out.extend_from_slice(v),
        Arg::Count(_) => return Err(op.double_update()),
    }
    Ok(Node::Scalar(out))
}

/// `compute`, encoded right away (for values below the top level, which no format types).
fn compute_bytes(op: &Op<'_>, old: &[u8]) -> BoxResult<Vec<u8>> {
    let mut out = Vec::new();
    compute(op, old)?.encode(&mut out);
    Ok(out)
}

/// `+`/`-`: exact for integers (any result in [-2^63, 2^64) fits), in double precision for
/// floating operands, in decimal when either operand is a decimal.
fn arith(op: &Op<'_>, a: Num<'_>, b: Num<'_>) -> BoxResult<Node<'static>> {
    let sub = op.code == Code::Sub;
    let mut out = Vec::new();
    if let (Num::Int(x), Num::Int(y)) = (a, b) {
        let r = if sub { x - y } else { x + y };
        if r < i128::from(i64::MIN) || r > i128::from(u64::MAX) {
            return Err(BoxError::update_integer_overflow(
                op.code.char(),
                &op.field_str(),
            ));
        }
        if r >= 0 {
            mp::write_uint(&mut out, r as u64);
        } else {
            mp::write_int(&mut out, r as i64);
        }
        return Ok(Node::Scalar(out));
    }
    if matches!(a, Num::Decimal(_)) || matches!(b, Num::Decimal(_)) {
        decimal::arith(op, a, b, &mut out)?;
        return Ok(Node::Scalar(out));
    }
    let (x, y) = (as_f64(a), as_f64(b));
    Ok(Node::Float(if sub { x - y } else { x + y }))
}

/// 2.6 stores a floating result as MP_FLOAT when a float holds it exactly, unless the field
/// is typed double.
fn write_float(out: &mut Vec<u8>, v: f64, typed_double: bool) {
    if !typed_double && v.is_finite() && f64::from(v as f32) == v {
        mp::write_f32(out, v as f32);
    } else {
        mp::write_f64(out, v);
    }
}

fn as_f64(n: Num<'_>) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f64::from(f),
        Num::Double(d) => d,
        Num::Decimal(_) => f64::NAN,
    }
}

/// Splice on string bytes. `offset` is a 0-based position clamped to the length, or counts
/// from the end when negative (`-1` is after the last byte; `None` if that is before the
/// start). A cut of `-k` removes everything after the offset except the last `k` bytes
/// ("abcdef", offset 1, cut -1 -> "a" + paste + "f"); cuts are clamped to what is there.
fn splice_str(s: &[u8], offset: i64, cut: i64, paste: &[u8]) -> Option<Vec<u8>> {
    let len = s.len() as i64;
    let off = if offset < 0 {
        if -offset > len + 1 {
            return None;
        }
        offset + len + 1
    } else {
        offset.min(len)
    };
    let rest = len - off;
    let cut = if cut < 0 {
        (rest + cut).max(0)
    } else {
        cut.min(rest)
    };
    let (off, cut) = (off as usize, cut as usize);
    let mut out = Vec::with_capacity(s.len() + paste.len());
    out.extend_from_slice(s.get(..off)?);
    out.extend_from_slice(paste);
    out.extend_from_slice(s.get(off + cut..)?);
    Some(out)
}

mod decimal {
    //! Decimal `+`/`-` with Tarantool's rules: 38 significant digits, rounding half up,
    //! overflow when more than 38 digits would be left of the point; doubles convert
    //! through their 15-significant-digit text (`%.15g`), at most 38 digits after the point.

    use super::{Code, Num, Op};
    use spindle_proto::mp::{self, Value};
    use spindle_types::{BoxError, BoxResult};
    use std::cmp::Ordering;

    const MAX_DIGITS: usize = 38;
    /// Bound on accepted scales, so exponent alignment stays small.
    const MAX_SCALE: i64 = 1000;

    /// `digits` (most significant first, no leading zeros; empty is zero) times `10^exp`.
    #[derive(Debug, Clone, PartialEq)]
    pub(super) struct Dec {
        pub neg: bool,
        pub digits: Vec<u8>,
        pub exp: i64,
    }

    pub(super) fn arith(op: &Op<'_>, a: Num<'_>, b: Num<'_>, out: &mut Vec<u8>) -> BoxResult<()> {
        let x = to_dec(op, a)?;
        let y = to_dec(op, b)?;
        let r = add(x, y, op.code == Code::Sub)
            .ok_or_else(|| BoxError::update_decimal_overflow(op.code.char(), &op.field_str()))?;
        pack(&r, out);
        Ok(())
    }

    fn to_dec(op: &Op<'_>, n: Num<'_>) -> BoxResult<Dec> {
        let convertible = || op.arg_type("a number convertible to decimal");
        match n {
            Num::Int(i) => Ok(from_int(i)),
            Num::Float(f) => from_double(f64::from(f)).ok_or_else(convertible),
            Num::Double(d) => from_double(d).ok_or_else(convertible),
            Num::Decimal(p) => unpack(p).ok_or_else(|| op.arg_type("a number")),
        }
    }

    fn from_int(i: i128) -> Dec {
        let digits = i
            .unsigned_abs()
            .to_string()
            .bytes()
            .map(|c| c - b'0')
            .collect();
        normalized(Dec {
            neg: i < 0,
            digits,
            exp: 0,
        })
    }

    /// 15 significant digits, like `printf("%.15g")`; `None` for non-finite values and
    /// values with more than 38 digits before the point.
    pub(super) fn from_double(d: f64) -> Option<Dec> {
        if !d.is_finite() {
            return None;
        }
        if d == 0.0 {
            // "%g" prints zero as "0": scale 0.
            return Some(Dec {
                neg: false,
                digits: Vec::new(),
                exp: 0,
            });
        }
        let text = format!("{:.14e}", d.abs());
        let (mantissa, e) = text.split_once('e')?;
        let e: i64 = e.parse().ok()?;
        let digits = mantissa
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|c| c - b'0')
            .collect();
        let mut dec = normalized(Dec {
            neg: d < 0.0,
            digits,
            exp: e - 14,
        });
        // %g drops trailing zeros.
        while dec.digits.last() == Some(&0) {
            dec.digits.pop();
            dec.exp += 1;
        }
        if dec.exp < -(MAX_DIGITS as i64) {
            round_to_exp(&mut dec, -(MAX_DIGITS as i64));
        }
        finish(dec)
    }

    /// Decodes the MP_EXT payload: a MessagePack int scale, then packed BCD whose last
    /// nibble is the sign.
    pub(super) fn unpack(payload: &[u8]) -> Option<Dec> {
        let mut cur = payload;
        let scale = match mp::read_value(&mut cur).ok()? {
            Value::Uint(u) => i64::try_from(u).ok()?,
            Value::Int(i) => i,
            _ => return None,
        };
        if cur.is_empty() || scale.abs() > MAX_SCALE {
            return None;
        }
        let mut nibbles: Vec<u8> = cur.iter().flat_map(|b| [b >> 4, b & 0x0f]).collect();
        let neg = match nibbles.pop()? {
            0x0b | 0x0d => true,
            0x0a | 0x0c | 0x0e | 0x0f => false,
            _ => return None,
        };
        if nibbles.iter().any(|&n| n > 9) {
            return None;
        }
        Some(normalized(Dec {
            neg,
            digits: nibbles,
            exp: -scale,
        }))
    }

    fn normalized(mut d: Dec) -> Dec {
        let zeros = d.digits.iter().take_while(|&&x| x == 0).count();
        d.digits.drain(..zeros);
        if d.digits.is_empty() {
            d.neg = false;
        }
        d
    }

    pub(super) fn add(x: Dec, mut y: Dec, sub: bool) -> Option<Dec> {
        y.neg ^= sub;
        let exp = x.exp.min(y.exp);
        let a = shifted(&x.digits, x.exp - exp);
        let b = shifted(&y.digits, y.exp - exp);
        let (neg, digits) = if x.neg == y.neg {
            (x.neg, add_mag(&a, &b))
        } else {
            match cmp_mag(&a, &b) {
                Ordering::Less => (y.neg, sub_mag(&b, &a)),
                _ => (x.neg, sub_mag(&a, &b)),
            }
        };
        let mut r = normalized(Dec { neg, digits, exp });
        if r.digits.len() > MAX_DIGITS {
            let drop = (r.digits.len() - MAX_DIGITS) as i64;
            round_to_exp(&mut r, exp + drop);
        }
        finish(r)
    }

    /// Makes the exponent non-positive; `None` if more than 38 digits remain.
    fn finish(mut d: Dec) -> Option<Dec> {
        if d.exp > 0 {
            if d.exp as usize + d.digits.len() > MAX_DIGITS {
                return None;
            }
            d.digits.extend(std::iter::repeat_n(0, d.exp as usize));
            d.exp = 0;
        }
        let int_digits = d.digits.len() as i64 + d.exp;
        (int_digits <= MAX_DIGITS as i64).then_some(d)
    }

    /// Rounds (half up) to exponent `exp` (greater than the current one).
    fn round_to_exp(d: &mut Dec, exp: i64) {
        let drop = (exp - d.exp).max(0) as usize;
        if drop == 0 {
            return;
        }
        let keep = d.digits.len().saturating_sub(drop);
        let first_dropped = if d.digits.len() >= drop {
            d.digits.get(keep).copied().unwrap_or(0)
        } else {
            0
        };
        d.digits.truncate(keep);
        d.exp = exp;
        if first_dropped >= 5 {
            d.digits = add_mag(&d.digits, &[1]);
            if d.digits.len() > MAX_DIGITS {
                // 99…9 rounded up to 100…0: one digit too many.
                d.digits.pop();
                d.exp += 1;
            }
        }
        let zeros = d.digits.iter().take_while(|&&x| x == 0).count();
        d.digits.drain(..zeros);
        if d.digits.is_empty() {
            d.neg = false;
        }
    }

    fn shifted(digits: &[u8], by: i64) -> Vec<u8> {
        let mut v = digits.to_vec();
        if !v.is_empty() {
            v.extend(std::iter::repeat_n(0, by.max(0) as usize));
        }
        v
    }

    fn cmp_mag(a: &[u8], b: &[u8]) -> Ordering {
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }

    fn add_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
        let (mut i, mut j, mut carry) = (a.len(), b.len(), 0u8);
        while i > 0 || j > 0 || carry > 0 {
            let x = if i > 0 {
                i -= 1;
                a.get(i).copied().unwrap_or(0)
            } else {
                0
            };
            let y = if j > 0 {
                j -= 1;
                b.get(j).copied().unwrap_or(0)
            } else {
                0
            };
            let s = x + y + carry;
            out.push(s % 10);
            carry = s / 10;
        }
        out.reverse();
        out
    }

    /// `a - b` for `a >= b`.
    fn sub_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(a.len());
        let (mut j, mut borrow) = (b.len(), 0i8);
        for &x in a.iter().rev() {
            let y = if j > 0 {
                j -= 1;
                b.get(j).copied().unwrap_or(0)
            } else {
                0
            };
            let mut s = x as i8 - y as i8 - borrow;
            borrow = i8::from(s < 0);
            if s < 0 {
                s += 10;
            }
            out.push(s as u8);
        }
        out.reverse();
        out
    }

    /// Encodes as MP_EXT type 1 with the smallest header, as Tarantool does.
    pub(super) fn pack(d: &Dec, out: &mut Vec<u8>) {
        let mut payload = Vec::with_capacity(d.digits.len() / 2 + 4);
        mp::write_uint(&mut payload, (-d.exp).max(0) as u64);
        let mut nibbles = if d.digits.is_empty() {
            vec![0]
        } else {
            d.digits.clone()
        };
        nibbles.push(if d.neg { 0x0d } else { 0x0c });
        if nibbles.len() % 2 == 1 {
            nibbles.insert(0, 0);
        }
        payload.extend(
            nibbles
                .chunks(2)
                .map(|p| (p.first().copied().unwrap_or(0) << 4) | p.get(1).copied().unwrap_or(0)),
        );
        write_ext(out, crate::field_type::EXT_DECIMAL, &payload);
    }

    fn write_ext(out: &mut Vec<u8>, t: i8, payload: &[u8]) {
        let len = payload.len();
        match len {
            1 => out.push(0xd4),
            2 => out.push(0xd5),
            4 => out.push(0xd6),
            8 => out.push(0xd7),
            16 => out.push(0xd8),
            _ if len <= u8::MAX as usize => out.extend_from_slice(&[0xc7, len as u8]),
            _ if len <= u16::MAX as usize => {
                out.push(0xc8);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0xc9);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
        out.push(t as u8);
        out.extend_from_slice(payload);
    }
}
