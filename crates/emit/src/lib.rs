//! YAML and JSON text formatted byte for byte the way Tarantool 2.6 formats it: a pure
//! library with no I/O, no threads and no dependencies.
//!
//! This crate owns the serializers' side of Tarantool's Lua glue, for anything that prints a
//! value as Tarantool would (`spindle cat`, the admin console, an HTTP API):
//! - `value`: [`Value`] and [`Table`], a Lua value as the serializers see it — numbers are
//!   doubles, big integers are 64-bit cdata, tables carry their `__serialize` hint and keep
//!   their entries in print order;
//! - `field`: `luaL_tofield`, which decides whether a number prints as an integer and whether
//!   a plain table is an array or a map;
//! - `number`: glibc's `%.14g` ([`fmt_g14`]) and Lua's "is this string a number" test
//!   ([`lua_isnumber`]), which makes YAML quote such strings;
//! - `yaml`: [`to_yaml_document`], lyaml's dumper over a port of libyaml 0.2.5's emitter
//!   (flow style for `seq`/`map` tables, block style for plain ones, `!!binary` for
//!   non-printable strings, line wrapping at 80 columns);
//! - `json`: [`to_json`]/[`write_json`], lua-cjson with Tarantool's default options.
//!
//! Where a table's entries come from (MessagePack decoding, Lua table order) is the caller's
//! business.

mod field;
mod json;
mod number;
mod value;
mod yaml;

pub use json::{to_json, write_json};
pub use number::{fmt_g, fmt_g14, lua_isnumber};
pub use value::{Table, Value, DBL_INT_MAX};
pub use yaml::{to_yaml_document, YamlError};
