"""The differential operation list: executed in this order against a fresh Tarantool 2.6 and a
fresh spindle, results compared op by op (see differential.py for what is normalised).

Conventions:
* `D.py(desc, method, *args, who=..., **kw)` calls tarantool-python 1.3.0 `conn.method(...)`
  (who = 'admin' authenticated with the admin password, or 'guest' with no AUTH).
  tarantool-python sends no INDEX_BASE, so update field numbers are 0-based here.
* `D.raw(desc, header, body)` sends one request on a fresh raw socket (admin unless
  who='guest'), records the reply and whether a PING on the same socket still works.
* `D.raw_bytes(desc, bytes, framed=...)` sends exact bytes.
* `D.composite(desc, fn)` runs a small client-side procedure and returns plain data.
State carries over between groups: the DDL group creates the spaces the others use.

Things Tarantool 2.6.0 does that are deliberately NOT in this list (see the report in
tests/README.md): a nullable index part on a tuple without that field crashes 2.6.0 with SIGSEGV;
an `_index` row with no parts crashes it now and then (SIGSEGV in key_def_set_extract_func,
seen in 2 of 3 full suite runs; tests/test_robustness.py checks spindle's answer instead);
a zero-length packet is only answered when the next bytes arrive; an oversize length prefix
is only rejected once more bytes arrive; a u64 length prefix yields a bogus "Failed to allocate 0
bytes" error; header keys >= 0x53 and wrongly typed known header keys are rejected by 2.6
but should be ignored by a lenient server (iproto.md §2.3, §8.10).
"""

from .differential import OpList, unordered
from . import iproto as ip

EQ, REQ, ALL, LT, LE, GE, GT, BITS_ALL_SET = 0, 1, 2, 3, 4, 5, 6, 7
SPACE, INDEX, VSPACE, VINDEX, USER, VUSER, VPRIV, VCOLLATION = 280, 288, 281, 289, 304, 305, 313, 277
T, MULTI, HSP, TYPED, UPD, NOPK, DROPME = 512, 513, 514, 515, 516, 517, 518

def H(rtype, sync=5, extra=None):
    """A request header {REQUEST_TYPE, SYNC} plus optional extra keys."""
    return {ip.K_TYPE: rtype, ip.K_SYNC: sync, **(extra or {})}

D = OpList()


def fmt(*fields):
    return [{"name": n, "type": t} for n, t in fields]


# ---------------------------------------------------------------------------------------------
D.set_group("ddl_create")
D.py("create space test", "insert", SPACE,
     [T, 1, "test", "memtx", 0, {}, fmt(("id", "unsigned"), ("name", "string"))])
D.py("primary TREE index", "insert", INDEX, [T, 0, "primary", "tree", {"unique": True}, [[0, "unsigned"]]])
D.py("secondary non-unique TREE", "insert", INDEX,
     [T, 1, "by_name", "tree", {"unique": False}, [[1, "string"]]])
D.py("create space multi (by name '_space')", "insert", "_space",
     [MULTI, 1, "multi", "memtx", 0, {}, fmt(("a", "unsigned"), ("b", "string"), ("c", "integer"))])
D.py("multipart primary", "insert", "_index",
     [MULTI, 0, "primary", "tree", {"unique": True}, [[0, "unsigned"], [1, "string"]]])
D.py("non-unique secondary on integer", "insert", INDEX,
     [MULTI, 1, "by_c", "tree", {"unique": False}, [[2, "integer"]]])
D.py("create space hsp", "insert", SPACE,
     [HSP, 1, "hsp", "memtx", 0, {}, fmt(("id", "unsigned"), ("s", "string"))])
D.py("HASH primary", "insert", INDEX, [HSP, 0, "primary", "hash", {"unique": True}, [[0, "unsigned"]]])
D.py("HASH unique secondary", "insert", INDEX, [HSP, 1, "by_s", "hash", {"unique": True}, [[1, "string"]]])
D.py("create space typed", "insert", SPACE,
     [TYPED, 1, "typed", "memtx", 0, {},
      fmt(("id", "unsigned"), ("i", "integer"), ("n", "number"), ("d", "double"), ("s", "string"),
          ("b", "boolean"), ("v", "varbinary"), ("x", "scalar"))])
D.py("typed primary", "insert", INDEX, [TYPED, 0, "primary", "tree", {"unique": True}, [[0, "unsigned"]]])
for iid, (fno, ftype) in enumerate([(1, "integer"), (2, "number"), (3, "double"), (4, "string"),
                                     (5, "boolean"), (6, "varbinary"), (7, "scalar")], start=1):
    D.py(f"typed index on {ftype}", "insert", INDEX,
         [TYPED, iid, f"by_{ftype}", "tree", {"unique": False}, [[fno, ftype]]])
D.py("create space upd (format only names field 1)", "insert", SPACE,
     [UPD, 1, "upd", "memtx", 0, {}, fmt(("id", "unsigned"))])
D.py("upd primary", "insert", INDEX, [UPD, 0, "primary", "tree", {"unique": True}, [[0, "unsigned"]]])
D.py("create space nopk (no index yet)", "insert", SPACE, [NOPK, 1, "nopk", "memtx", 0, {}, []])
D.py("created rows visible in _vspace", "select", VSPACE, [T], iterator=GE)
D.py("created indexes visible in _vindex", "select", VINDEX, [T], iterator=GE)

# ---------------------------------------------------------------------------------------------
D.set_group("ddl_errors")
D.py("duplicate space id", "insert", SPACE, [T, 1, "other", "memtx", 0, {}, []])
D.py("duplicate space name", "insert", SPACE, [600, 1, "test", "memtx", 0, {}, []])
D.py("unknown engine", "insert", SPACE, [600, 1, "t600", "nope", 0, {}, []])
D.py("unknown field type in format", "insert", SPACE,
     [600, 1, "t600", "memtx", 0, {}, [{"name": "a", "type": "blah"}]])
D.py("format field without name", "insert", SPACE, [600, 1, "t600", "memtx", 0, {}, [{"type": "unsigned"}]])
D.py("duplicate field name in format", "insert", SPACE,
     [600, 1, "t600", "memtx", 0, {}, fmt(("a", "unsigned"), ("a", "string"))])
D.py("_space row too short", "insert", SPACE, [600, 1, "t600"])
D.py("space id too big", "insert", SPACE, [2147483648, 1, "t600", "memtx", 0, {}, []])
D.py("empty space name", "insert", SPACE, [600, 1, "", "memtx", 0, {}, []])
D.py("index on missing space", "insert", INDEX, [600, 0, "primary", "tree", {"unique": True}, [[0, "unsigned"]]])
D.py("unsupported index type", "insert", INDEX, [NOPK, 0, "primary", "btree", {"unique": True}, [[0, "unsigned"]]])
D.py("index part type conflicts with an existing index", "insert", INDEX,
     [T, 2, "conflict", "tree", {"unique": False}, [[1, "unsigned"]]])
D.py("index part of type array", "insert", INDEX, [UPD, 1, "arr", "tree", {"unique": False}, [[1, "array"]]])
D.py("unknown index part type", "insert", INDEX, [NOPK, 0, "primary", "tree", {"unique": True}, [[0, "blah"]]])
D.py("secondary before primary", "insert", INDEX, [NOPK, 1, "sec", "tree", {"unique": True}, [[0, "unsigned"]]])
D.py("unknown index option", "insert", INDEX,
     [NOPK, 0, "primary", "tree", {"unique": True, "foo": 1}, [[0, "unsigned"]]])
D.py("non-unique primary", "insert", INDEX, [NOPK, 0, "primary", "tree", {"unique": False}, [[0, "unsigned"]]])
D.py("non-unique HASH secondary", "insert", INDEX, [HSP, 2, "h2", "hash", {"unique": False}, [[1, "string"]]])
D.py("duplicate index name", "insert", INDEX, [T, 2, "by_name", "tree", {"unique": False}, [[1, "string"]]])
D.py("duplicate index id", "insert", INDEX, [T, 1, "other", "tree", {"unique": False}, [[1, "string"]]])
D.py("index id too big", "insert", INDEX, [T, 128, "big", "tree", {"unique": False}, [[1, "string"]]])
D.py("drop space that still has indexes", "delete", SPACE, [T])
D.py("drop primary while secondary exists", "delete", INDEX, [T, 0])
D.py("change space id via update", "update", SPACE, [T], [("=", 0, 700)])
D.py("write to _vspace", "insert", VSPACE, [600, 1, "v", "memtx", 0, {}, []])
D.py("write to _vindex", "replace", VINDEX, [T, 5, "v", "tree", {"unique": True}, [[0, "unsigned"]]])
D.py("delete from _vspace", "delete", VSPACE, [T])
D.py("DML on a space without primary index", "insert", NOPK, [1])
D.py("select on a space without primary index", "select", NOPK, [])

# ---------------------------------------------------------------------------------------------
D.set_group("insert_replace")
for i, name in [(1, "a"), (2, "b"), (3, "c"), (4, "b"), (5, "e"), (6, "b"), (7, "g"), (8, "h"), (9, "i"), (10, "j")]:
    D.py(f"insert test {i}", "insert", T, [i, name])
D.py("insert by space name", "insert", "test", [11, "k"])
D.py("duplicate primary key", "insert", T, [1, "dup"])
D.py("field type mismatch (string field gets int)", "insert", T, [20, 5])
D.py("field type mismatch (unsigned gets negative)", "insert", T, [-1, "neg"])
D.py("field type mismatch (unsigned gets float)", "insert", T, [1.5, "f"])
D.py("missing field required by format", "insert", T, [21])
D.py("extra fields beyond format are kept", "insert", T, [22, "x", None, True, 1.25, [1, [2]], {"k": "v"}, b"\x00\xff"])
D.py("replace new", "replace", T, [23, "new"])
D.py("replace existing", "replace", T, [23, "replaced"])
D.py("replace with type error", "replace", T, [23, 23])
D.py("insert into missing space", "insert", 999, [1])
D.py("replace into missing space", "replace", 999, [1])
D.py("big unsigned key", "insert", T, [18446744073709551615, "max"])
D.py("multi rows", "insert", MULTI, [1, "a", 10])
D.py("multi rows 2", "insert", MULTI, [1, "b", -5])
D.py("multi rows 3", "insert", MULTI, [2, "a", 10])
D.py("multi rows 4", "insert", MULTI, [2, "c", 0])
D.py("multi rows 5", "insert", MULTI, [3, "a", -5])
D.py("multi duplicate composite key", "insert", MULTI, [1, "a", 99])
D.py("multi integer field gets string", "insert", MULTI, [4, "a", "x"])
D.py("multi integer field gets double", "insert", MULTI, [4, "a", 1.5])

# ---------------------------------------------------------------------------------------------
D.set_group("select_tree")
D.py("EQ", "select", T, [3], iterator=EQ)
D.py("EQ missing key", "select", T, [100], iterator=EQ)
D.py("EQ empty key = all", "select", T, [], iterator=EQ)
D.py("REQ", "select", T, [3], iterator=REQ)
D.py("REQ empty key = all descending", "select", T, [], iterator=REQ)
D.py("ALL", "select", T, [], iterator=ALL)
D.py("ALL with key", "select", T, [5], iterator=ALL)
D.py("LT", "select", T, [5], iterator=LT)
D.py("LE", "select", T, [5], iterator=LE)
D.py("GE", "select", T, [5], iterator=GE)
D.py("GT", "select", T, [5], iterator=GT)
D.py("LT empty key", "select", T, [], iterator=LT, limit=3)
D.py("GT empty key", "select", T, [], iterator=GT, limit=3)
D.py("LT below range", "select", T, [0], iterator=LT)
D.py("GT above range", "select", T, [18446744073709551615], iterator=GT)
D.py("GE with offset and limit", "select", T, [2], iterator=GE, offset=2, limit=3)
D.py("LE with offset and limit", "select", T, [9], iterator=LE, offset=1, limit=2)
D.py("limit 0", "select", T, [], iterator=ALL, limit=0)
D.py("offset past end", "select", T, [], iterator=ALL, offset=100)
D.py("secondary non-unique EQ (ordered by pk)", "select", T, ["b"], index=1, iterator=EQ)
D.py("secondary non-unique REQ", "select", T, ["b"], index=1, iterator=REQ)
D.py("secondary GE", "select", T, ["h"], index=1, iterator=GE)
D.py("secondary LT", "select", T, ["c"], index=1, iterator=LT)
D.py("secondary by index name", "select", "test", ["b"], index="by_name")
D.py("multipart full key EQ", "select", MULTI, [1, "b"])
D.py("multipart partial key EQ", "select", MULTI, [1])
D.py("multipart partial key REQ", "select", MULTI, [1], iterator=REQ)
D.py("multipart partial key GT", "select", MULTI, [1], iterator=GT)
D.py("multipart partial key LT", "select", MULTI, [2], iterator=LT)
D.py("multipart partial key LE", "select", MULTI, [2], iterator=LE)
D.py("multipart full key GE", "select", MULTI, [1, "b"], iterator=GE)
D.py("non-unique integer secondary ALL", "select", MULTI, [], index=1, iterator=ALL)
D.py("non-unique integer secondary EQ negative", "select", MULTI, [-5], index=1)
D.py("non-unique integer secondary LE", "select", MULTI, [0], index=1, iterator=LE)

# ---------------------------------------------------------------------------------------------
D.set_group("select_errors")
D.py("no such space", "select", 999, [])
D.py("no such index", "select", T, [], index=7)
D.py("key part count", "select", T, [1, 2])
D.py("key part type (string for unsigned)", "select", T, ["a"])
D.py("key part type (negative for unsigned)", "select", T, [-1])
D.py("key part type on multipart second part", "select", MULTI, [1, 2])
D.py("key part count on multipart", "select", MULTI, [1, "a", 3])
D.py("unknown iterator number", "select", T, [], iterator=77)
D.py("bitset iterator on TREE", "select", T, [1], iterator=BITS_ALL_SET)

# ---------------------------------------------------------------------------------------------
D.set_group("hash")
for i in range(1, 13):
    D.py(f"insert hsp {i}", "insert", HSP, [i, f"s{i}"])
D.py("HASH duplicate secondary key", "insert", HSP, [50, "s1"])
D.py("HASH EQ", "select", HSP, [3])
D.py("HASH EQ missing", "select", HSP, [300])
D.py("HASH ALL (order-insensitive)", "select", HSP, [], iterator=ALL, norm=unordered)
D.py("HASH GT empty key = full scan (order-insensitive)", "select", HSP, [], iterator=GT, norm=unordered)
D.py("HASH EQ empty key refused (partial key)", "select", HSP, [], iterator=EQ)
D.py("HASH REQ refused", "select", HSP, [3], iterator=REQ)
D.py("HASH LT refused", "select", HSP, [3], iterator=LT)
D.py("HASH LE refused", "select", HSP, [3], iterator=LE)
D.py("HASH GE refused", "select", HSP, [3], iterator=GE)
D.py("HASH key part count", "select", HSP, [1, 2])
D.py("HASH secondary EQ by string", "select", HSP, ["s7"], index=1)
D.py("HASH secondary key type", "select", HSP, [7], index=1)


def _hash_gt_properties(ex):
    conn = ex.py_conn("admin")
    everything = conn.select(HSP, [], iterator=ALL).data
    after = conn.select(HSP, [5], iterator=GT).data
    keys = [t[0] for t in after]
    return {"subset_of_space": all(t in everything for t in after),
            "excludes_key": 5 not in keys, "no_duplicates": len(keys) == len(set(keys))}


def _hash_paginate(ex):
    """Full scan of a HASH index by pages of 3 with GT from the last key (how clients page)."""
    conn = ex.py_conn("admin")
    seen, key = [], []
    for _ in range(50):
        page = conn.select(HSP, key, iterator=GT, limit=3).data
        if not page:
            break
        seen.extend(page)
        key = [page[-1][0]]
    return {"tuples": unordered(seen), "count": len(seen)}


D.composite("HASH GT with key: subset of space, excludes the key, no duplicates", _hash_gt_properties)
D.composite("HASH GT pagination visits every tuple exactly once", _hash_paginate)

# ---------------------------------------------------------------------------------------------
D.set_group("key_types")
TROWS = [
    [1, -5, 1, 1.5, "b", True, b"\x02", True],
    [2, 0, 1.0, 2.0, "a", False, b"\x01", 2],
    [3, 7, -2, -0.5, "c", True, b"\x01\x00", 1.5],
    [4, -9223372036854775808, 18446744073709551615, 0.25, "", False, b"", "abc"],
    [5, 9223372036854775807, 2.5, 1e300, "ab", True, b"\xff", b"\x00"],
    [6, 1, -9223372036854775808, -1e300, "B", False, b"\x00", -3],
    [7, 2, 1.5, 3.0, "aa", True, b"\x00\x01", False],
]
for row in TROWS:
    D.py(f"insert typed {row[0]}", "insert", TYPED, row)
D.py("integer field rejects string", "insert", TYPED, [10, "x", 1, 1.0, "s", True, b"", 1])
D.py("integer field rejects double", "insert", TYPED, [10, 1.5, 1, 1.0, "s", True, b"", 1])
D.py("number field rejects string", "insert", TYPED, [10, 1, "x", 1.0, "s", True, b"", 1])
D.py("double field rejects integer", "insert", TYPED, [10, 1, 1, 1, "s", True, b"", 1])
D.py("string field rejects binary", "insert", TYPED, [10, 1, 1, 1.0, b"s", True, b"", 1])
D.py("boolean field rejects integer", "insert", TYPED, [10, 1, 1, 1.0, "s", 1, b"", 1])
D.py("varbinary field rejects string", "insert", TYPED, [10, 1, 1, 1.0, "s", True, "", 1])
D.py("scalar field rejects array", "insert", TYPED, [10, 1, 1, 1.0, "s", True, b"", [1]])
D.py("scalar field rejects nil", "insert", TYPED, [10, 1, 1, 1.0, "s", True, b"", None])
for iid, name in enumerate(["integer", "number", "double", "string", "boolean", "varbinary", "scalar"], start=1):
    D.py(f"order of {name} index (ALL)", "select", TYPED, [], index=iid, iterator=ALL)
    D.py(f"order of {name} index (REQ)", "select", TYPED, [], index=iid, iterator=REQ)
D.py("integer GE 0", "select", TYPED, [0], index=1, iterator=GE)
D.py("integer key as float rejected", "select", TYPED, [1.5], index=1)
D.py("number EQ 1 matches 1 and 1.0", "select", TYPED, [1], index=2)
D.py("number EQ 1.0 matches 1 and 1.0", "select", TYPED, [1.0], index=2)
D.py("number GE 1.5 (mixed int/double)", "select", TYPED, [1.5], index=2, iterator=GE)
D.py("number LT 1 (mixed, big negative)", "select", TYPED, [1], index=2, iterator=LT)
D.py("number GT huge unsigned vs double", "select", TYPED, [1e19], index=2, iterator=LT)
D.py("double EQ 2.0", "select", TYPED, [2.0], index=3)
D.py("double key as integer rejected", "select", TYPED, [2], index=3)
D.py("double GT 0.5", "select", TYPED, [0.5], index=3, iterator=GT)
D.py("string GE 'a' (binary collation)", "select", TYPED, ["a"], index=4, iterator=GE)
D.py("string key as integer rejected", "select", TYPED, [1], index=4)
D.py("boolean EQ false", "select", TYPED, [False], index=5)
D.py("boolean GT false", "select", TYPED, [False], index=5, iterator=GT)
D.py("varbinary GT b'\\x00'", "select", TYPED, [b"\x00"], index=6, iterator=GT)
D.py("varbinary key as string rejected", "select", TYPED, ["x"], index=6)
D.py("scalar EQ 1.5", "select", TYPED, [1.5], index=7)
D.py("scalar GT 1 (numbers, then strings, then binary)", "select", TYPED, [1], index=7, iterator=GT)
D.py("scalar LT 'a' (bools, numbers, strings)", "select", TYPED, ["a"], index=7, iterator=LT)
D.py("scalar GE true", "select", TYPED, [True], index=7, iterator=GE)
D.py("scalar key array rejected", "select", TYPED, [[1]], index=7)

# ---------------------------------------------------------------------------------------------
D.set_group("update")
D.py("seed upd row", "insert", UPD, [1, 10, "Hello", 255, "x", "y"])
D.py("seed upd row 2", "insert", UPD, [2, 18446744073709551615, -9223372036854775808, 1.5])
D.py("= set", "update", UPD, [1], [("=", 4, "X")])
D.py("= append at len+1", "update", UPD, [1], [("=", 6, "z")])
D.py("= beyond len+1", "update", UPD, [1], [("=", 9, "z")])
D.py("= negative field", "update", UPD, [1], [("=", -1, "last")])
D.py("= negative field out of range", "update", UPD, [1], [("=", -8, 0)])
D.py("+ integer", "update", UPD, [1], [("+", 1, 5)])
D.py("+ double makes double", "update", UPD, [1], [("+", 1, 0.5)])
D.py("- to negative", "update", UPD, [1], [("-", 1, 100)])
D.py("= back to int", "update", UPD, [1], [("=", 1, 10)])
D.py("+ string argument", "update", UPD, [1], [("+", 1, "a")])
D.py("+ on a string field", "update", UPD, [1], [("+", 2, 1)])
D.py("+ unsigned overflow", "update", UPD, [2], [("+", 1, 1)])
D.py("- signed underflow", "update", UPD, [2], [("-", 2, 1)])
D.py("- huge", "update", UPD, [1], [("-", 1, 18446744073709551615)])
D.py("+ negative field", "update", UPD, [2], [("+", -1, 1)])
D.py("& bitwise and", "update", UPD, [1], [("&", 3, 15)])
D.py("| bitwise or", "update", UPD, [1], [("|", 3, 256)])
D.py("^ bitwise xor", "update", UPD, [1], [("^", 3, 1)])
D.py("& negative argument", "update", UPD, [1], [("&", 3, -1)])
D.py("| on a string field", "update", UPD, [1], [("|", 2, 1)])
D.py("^ on a double field", "update", UPD, [2], [("^", 3, 1)])
D.py(": splice", "update", UPD, [1], [(":", 2, 1, 1, "X")])
D.py(": negative offset appends", "update", UPD, [1], [(":", 2, -1, 0, "!")])
D.py(": negative offset inside", "update", UPD, [1], [(":", 2, -3, 2, "__")])
D.py(": offset past end", "update", UPD, [1], [(":", 2, 100, 2, "E")])
D.py(": cut longer than rest", "update", UPD, [1], [(":", 2, 2, 100, "C")])
D.py(": negative offset out of bound", "update", UPD, [1], [(":", 2, -100, 1, "N")])
D.py(": negative cut length", "update", UPD, [1], [(":", 2, 0, -1, "Q")])
D.py(": offset 0", "update", UPD, [1], [(":", 2, 0, 0, "Z")])
D.py(": on a number field", "update", UPD, [1], [(":", 1, 0, 1, "N")])
D.py(": wrong arity", "update", UPD, [1], [(":", 2, 0, 1)])
D.py(": paste not a string", "update", UPD, [1], [(":", 2, 0, 1, 5)])
D.py("! insert", "update", UPD, [1], [("!", 2, "ins")])
D.py("! -1 appends", "update", UPD, [1], [("!", -1, "end")])
D.py("! at len+1", "update", UPD, [1], [("!", 9, "tail")])
D.py("! beyond", "update", UPD, [1], [("!", 100, "b")])
D.py("# delete one", "update", UPD, [1], [("#", 2, 1)])
D.py("# delete more than remain", "update", UPD, [1], [("#", 7, 100)])
D.py("# delete zero", "update", UPD, [1], [("#", 2, 0)])
D.py("# negative field", "update", UPD, [1], [("#", -1, 1)])
D.py("# negative count", "update", UPD, [1], [("#", 2, -1)])
D.py("# on primary key field", "update", UPD, [1], [("#", 0, 1)])
D.py("= primary key field to another value", "update", UPD, [1], [("=", 0, 5)])
D.py("= primary key field to a key another tuple has (ER_TUPLE_FOUND first)", "update", UPD, [1], [("=", 0, 2)])
D.py("= primary key field to same value", "update", UPD, [1], [("=", 0, 1)])
D.py("no such field", "update", UPD, [1], [("=", 20, 1)])
D.py("unknown op", "update", UPD, [1], [("?", 1, 5)])
D.py("wrong arity", "update", UPD, [1], [("+", 1)])
D.py("two = on the same field (allowed, last wins)", "update", UPD, [1], [("=", 2, "a"), ("=", 2, "b")])
D.py("= then + on the same field", "update", UPD, [1], [("=", 1, 1), ("+", 1, 1)])
D.py("several ops in one request", "update", UPD, [1], [("=", 2, "multi"), ("+", 1, 1), ("!", 3, "q")])
D.py("failing op leaves tuple unchanged (atomic)", "update", UPD, [1], [("=", 4, "NEVER"), ("+", 2, 1)])
D.py("check row after updates", "select", UPD, [1])
D.py("update missing key returns nothing", "update", UPD, [99], [("=", 1, 1)])
D.py("update key part type", "update", UPD, ["a"], [("=", 1, 1)])
D.py("update key part count", "update", UPD, [1, 2], [("=", 1, 1)])
D.py("update partial key on multipart", "update", MULTI, [1], [("=", 2, 1)])
D.py("update via non-unique index", "update", T, ["b"], [("=", 1, "z")], index=1)
D.py("update via unique HASH secondary", "update", HSP, ["s3"], [("=", 1, "s3x")], index=1)
D.py("update format field to wrong type", "update", T, [1], [("=", 1, 5)])
D.py("update by field name (client resolves)", "update", "test", [2], [("=", "name", "bb")])
D.py("update in missing space", "update", 999, [1], [("=", 1, 1)])
D.py("update no such index", "update", T, [1], [("=", 1, "q")], index=9)
D.raw("raw UPDATE INDEX_BASE=1 (net.box style)", H(ip.UPDATE),
      {ip.K_SPACE_ID: UPD, ip.K_INDEX_ID: 0, ip.K_INDEX_BASE: 1, ip.K_KEY: [1],
       ip.K_TUPLE: [["=", 2, 10], [":", 3, 1, 1, "Y"]]})
D.raw("raw UPDATE INDEX_BASE=1 field 0", H(ip.UPDATE),
      {ip.K_SPACE_ID: UPD, ip.K_INDEX_BASE: 1, ip.K_KEY: [1], ip.K_TUPLE: [["=", 0, "x"]]})
D.raw("raw UPDATE INDEX_BASE=1 negative field", H(ip.UPDATE),
      {ip.K_SPACE_ID: UPD, ip.K_INDEX_BASE: 1, ip.K_KEY: [1], ip.K_TUPLE: [["=", -1, "neg"]]})
D.raw("raw UPDATE INDEX_BASE=1 pk field is 1", H(ip.UPDATE),
      {ip.K_SPACE_ID: UPD, ip.K_INDEX_BASE: 1, ip.K_KEY: [1], ip.K_TUPLE: [["=", 1, 7]]})
D.raw("raw UPDATE INDEX_BASE=1 splice offset is 1-based", H(ip.UPDATE),
      {ip.K_SPACE_ID: UPD, ip.K_INDEX_BASE: 1, ip.K_KEY: [1], ip.K_TUPLE: [[":", 3, 1, 0, ">"]]})
D.raw("raw UPDATE INDEX_BASE=1 # and !", H(ip.UPDATE),
      {ip.K_SPACE_ID: UPD, ip.K_INDEX_BASE: 1, ip.K_KEY: [1], ip.K_TUPLE: [["#", 4, 1], ["!", 2, "second"]]})
D.raw("raw UPDATE field by name", H(ip.UPDATE),
      {ip.K_SPACE_ID: T, ip.K_KEY: [3], ip.K_TUPLE: [["=", "name", "byname"]]})
D.raw("raw UPDATE unknown field name", H(ip.UPDATE),
      {ip.K_SPACE_ID: T, ip.K_KEY: [3], ip.K_TUPLE: [["=", "nope", 1]]})
D.raw("raw UPDATE op is not an array", H(ip.UPDATE), {ip.K_SPACE_ID: UPD, ip.K_KEY: [1], ip.K_TUPLE: [5]})
D.raw("raw UPDATE empty op", H(ip.UPDATE), {ip.K_SPACE_ID: UPD, ip.K_KEY: [1], ip.K_TUPLE: [[]]})
D.raw("raw UPDATE two-char op", H(ip.UPDATE), {ip.K_SPACE_ID: UPD, ip.K_KEY: [1], ip.K_TUPLE: [["==", 1, 1]]})
D.raw("raw UPDATE integer opcode", H(ip.UPDATE), {ip.K_SPACE_ID: UPD, ip.K_KEY: [1], ip.K_TUPLE: [[61, 1, 1]]})
D.raw("raw UPDATE float field number", H(ip.UPDATE), {ip.K_SPACE_ID: UPD, ip.K_KEY: [1], ip.K_TUPLE: [["=", 1.0, 1]]})
D.raw("raw UPDATE ops not an array", H(ip.UPDATE), {ip.K_SPACE_ID: UPD, ip.K_KEY: [1], ip.K_TUPLE: 5})
D.raw("raw UPDATE empty ops list", H(ip.UPDATE), {ip.K_SPACE_ID: UPD, ip.K_KEY: [1], ip.K_TUPLE: []})
D.py("final upd row", "select", UPD, [], iterator=ALL)

# ---------------------------------------------------------------------------------------------
D.set_group("upsert")
D.py("upsert inserts when missing", "upsert", UPD, [10, 1, "s"], [("+", 1, 1)])
D.py("upsert applies ops when present", "upsert", UPD, [10, 1, "s"], [("+", 1, 1)])
D.py("upsert op error on existing tuple is skipped", "upsert", UPD, [10, 1, "s"], [("+", 2, 1)])
D.py("upsert argument type error is reported", "upsert", UPD, [10, 1, "s"], [("+", 1, "x")])
D.py("upsert unknown op is reported", "upsert", UPD, [10, 1, "s"], [("?", 1, 1)])
D.py("upsert wrong arity is reported", "upsert", UPD, [10, 1, "s"], [("+", 1)])
D.py("upsert overflow on existing is skipped", "upsert", UPD, [10, 1, "s"], [("+", 1, 18446744073709551615)])
D.py("upsert pk modification on existing is skipped", "upsert", UPD, [10, 1, "s"], [("=", 0, 77)])
D.py("upsert no such field on existing is skipped", "upsert", UPD, [10, 1, "s"], [("=", 20, 1)])
D.py("upsert tuple violates format (missing)", "upsert", T, [30], [("=", 1, "x")])
D.py("upsert tuple violates format (existing key)", "upsert", T, [1, 5], [("=", 1, "x")])
D.py("upsert result violates format is skipped", "upsert", T, [1, "a"], [("=", 1, 5)])
D.py("upsert splice and insert ops", "upsert", UPD, [10, 1, "s"], [(":", 2, 0, 0, ">"), ("!", 3, "new")])
D.py("upsert on space with unique HASH secondary", "upsert", HSP, [3, "zz"], [("=", 1, "s3y")])
D.py("upsert new into HASH space", "upsert", HSP, [40, "s40"], [("=", 1, "never")])
D.py("upsert into missing space", "upsert", 999, [1], [("=", 1, 1)])
D.py("check upsert results", "select", UPD, [10])
D.py("check hsp after upsert", "select", HSP, [3])
D.py("check test after upsert", "select", T, [1])
D.raw("raw UPSERT INDEX_BASE=1", H(ip.UPSERT),
      {ip.K_SPACE_ID: UPD, ip.K_INDEX_BASE: 1, ip.K_TUPLE: [10, 0], ip.K_OPS: [["+", 2, 100], ["=", 3, "b1"]]})
D.raw("raw UPSERT without OPS", H(ip.UPSERT), {ip.K_SPACE_ID: UPD, ip.K_TUPLE: [11, 0]})
D.raw("raw UPSERT ops under TUPLE only", H(ip.UPSERT), {ip.K_SPACE_ID: UPD, ip.K_TUPLE: [["=", 1, 1]]})
D.py("check upsert raw", "select", UPD, [10], iterator=GE)

# ---------------------------------------------------------------------------------------------
D.set_group("delete")
D.py("delete existing", "delete", T, [7])
D.py("delete missing", "delete", T, [7])
D.py("delete via unique HASH secondary", "delete", HSP, ["s2"], index=1)
D.py("delete via non-unique index", "delete", T, ["b"], index=1)
D.py("delete partial multipart key", "delete", MULTI, [1])
D.py("delete full multipart key", "delete", MULTI, [1, "a"])
D.py("delete key type", "delete", T, ["x"])
D.py("delete empty key", "delete", T, [])
D.py("delete key part count", "delete", T, [1, 2])
D.py("delete no such index", "delete", T, [1], index=5)
D.py("delete missing space", "delete", 999, [1])
D.py("delete by space name", "delete", "test", [8])
D.py("state of test after deletes", "select", T, [], iterator=ALL)
D.py("state of multi after deletes", "select", MULTI, [], iterator=ALL)

# ---------------------------------------------------------------------------------------------
D.set_group("guest_access")
D.py("guest PING", "ping", notime=True, who="guest")
D.py("guest select user space", "select", T, [1], who="guest")
D.py("guest insert user space", "insert", T, [100, "g"], who="guest")
D.py("guest replace user space", "replace", T, [100, "g"], who="guest")
D.py("guest update user space", "update", T, [1], [("=", 1, "g")], who="guest")
D.py("guest delete user space", "delete", T, [1], who="guest")
D.py("guest upsert user space", "upsert", T, [1, "g"], [("=", 1, "g")], who="guest")
D.py("guest create space", "insert", SPACE, [600, 1, "guestspace", "memtx", 0, {}, []], who="guest")
D.py("guest select _space", "select", SPACE, [], who="guest")
D.py("guest sees these _vspace ids", "select", VSPACE, [], who="guest",
     norm=lambda rows: [r[0] for r in rows])
D.py("guest sees these _vindex keys", "select", VINDEX, [], who="guest",
     norm=lambda rows: [r[:2] for r in rows])
D.py("guest _vuser", "select", VUSER, [], who="guest")
D.py("guest _vpriv", "select", VPRIV, [], who="guest")
D.py("guest select system space by id (_user)", "select", USER, [], who="guest")
D.raw("guest raw select of user space (AccessDeniedError fields)", H(ip.SELECT),
      {ip.K_SPACE_ID: T, ip.K_LIMIT: 10, ip.K_KEY: []}, who="guest")
D.raw("guest raw AUTH as guest with empty tuple", H(ip.AUTH), {ip.K_USER_NAME: "guest", ip.K_TUPLE: []},
      who="guest")

# ---------------------------------------------------------------------------------------------
D.set_group("system_views")
D.py("_vspace user rows", "select", VSPACE, [512], iterator=GE)
D.py("_vindex user rows", "select", VINDEX, [512], iterator=GE)
D.py("_space user rows", "select", SPACE, [512], iterator=GE)
D.py("_index user rows", "select", INDEX, [512], iterator=GE)
D.py("system spaces (id, owner, name, engine, field_count, flags)", "select", VSPACE, [512], iterator=LT,
     norm=lambda rows: sorted(r[:6] for r in rows))
D.py("_vspace rows of _space/_vspace/_index/_vindex exactly", "select", VSPACE, [], iterator=ALL,
     norm=lambda rows: [r for r in rows if r[0] in (280, 281, 288, 289)])
D.py("system indexes exactly (_vindex id < 512)", "select", VINDEX, [512], iterator=LT,
     norm=lambda rows: list(reversed(rows)))
D.py("_vspace by name (index 2)", "select", VSPACE, ["test"], index=2)
D.py("_vspace by owner (index 1)", "select", VSPACE, [1], index=1, iterator=EQ,
     norm=lambda rows: [r[0] for r in rows])
D.py("_vindex by [space, name] (index 2)", "select", VINDEX, [T, "by_name"], index=2)
D.py("_vindex by space id prefix", "select", VINDEX, [HSP])
D.py("_user", "select", USER, [], iterator=ALL)
D.py("_vuser as admin", "select", VUSER, [], iterator=ALL)
D.py("_vcollation first rows", "select", VCOLLATION, [], iterator=ALL, limit=4)
D.py("_vspace is read-only even for admin", "replace", VSPACE, [T, 1, "test", "memtx", 0, {}, []])

# ---------------------------------------------------------------------------------------------
D.set_group("raw_protocol")
P = ip.pack
D.raw("PING without body", H(ip.PING, sync=7))
D.raw("PING with empty body", H(ip.PING, sync=8), {})
D.raw_bytes("PING with fixint length prefix", bytes([len(P(H(ip.PING, sync=9)))]) + P(H(ip.PING, sync=9)),
            framed=False)
D.raw_bytes("PING with uint16 length prefix",
            b"\xcd" + len(P(H(ip.PING, sync=10))).to_bytes(2, "big") + P(H(ip.PING, sync=10)), framed=False)
D.raw_bytes("PING with uint64 length prefix",
            b"\xcf" + len(P(H(ip.PING, sync=11))).to_bytes(8, "big") + P(H(ip.PING, sync=11)), framed=False)
D.raw("header SYNC first (net.box order)", {ip.K_SYNC: 12, ip.K_TYPE: ip.PING})
D.raw("no SYNC in header", {ip.K_TYPE: ip.PING})
D.raw("unknown request type 73 (IPROTO_ID)", H(73), {0x54: 3, 0x55: [0, 1, 2]})
D.raw("unknown request type 14 (2.10 BEGIN)", H(14))
D.raw("unknown request type 100", H(100), {})
D.raw("request type missing", {ip.K_SYNC: 5})
D.raw("SELECT without LIMIT", H(ip.SELECT), {ip.K_SPACE_ID: T, ip.K_KEY: []})
D.raw("SELECT without KEY", H(ip.SELECT), {ip.K_SPACE_ID: T, ip.K_LIMIT: 10})
D.raw("SELECT without SPACE_ID", H(ip.SELECT), {ip.K_LIMIT: 10, ip.K_KEY: []})
D.raw("SELECT without body", H(ip.SELECT))
D.raw("INSERT without TUPLE", H(ip.INSERT), {ip.K_SPACE_ID: T})
D.raw("UPDATE with ops under OPS", H(ip.UPDATE), {ip.K_SPACE_ID: UPD, ip.K_KEY: [1], ip.K_OPS: [["=", 1, 1]]})
D.raw("DELETE without KEY", H(ip.DELETE), {ip.K_SPACE_ID: T})
D.raw("SELECT LIMIT 2^64-1 (asynctnt)", H(ip.SELECT), {ip.K_SPACE_ID: T, ip.K_LIMIT: 2**64 - 1, ip.K_KEY: [3]})
D.raw("SELECT with defaults omitted", H(ip.SELECT), {ip.K_SPACE_ID: T, ip.K_LIMIT: 3, ip.K_KEY: []})
D.raw("SELECT unknown body key is ignored", H(ip.SELECT), {ip.K_SPACE_ID: T, ip.K_LIMIT: 1, ip.K_KEY: [], 0x7F: 1})
D.raw("SELECT iterator 12 (NP, 3.2+)", H(ip.SELECT), {ip.K_SPACE_ID: T, ip.K_LIMIT: 1, ip.K_KEY: [], ip.K_ITERATOR: 12})
D.raw("SELECT SPACE_ID as string", H(ip.SELECT), {ip.K_SPACE_ID: "test", ip.K_LIMIT: 1, ip.K_KEY: []})
D.raw("SELECT KEY as integer", H(ip.SELECT), {ip.K_SPACE_ID: T, ip.K_LIMIT: 1, ip.K_KEY: 1})
D.raw("INSERT TUPLE not an array", H(ip.INSERT), {ip.K_SPACE_ID: T, ip.K_TUPLE: 5})
D.raw("INSERT empty tuple", H(ip.INSERT), {ip.K_SPACE_ID: T, ip.K_TUPLE: []})
D.raw("wrong SCHEMA_VERSION on PING", H(ip.PING, extra={ip.K_SCHEMA_VERSION: 99999}))
D.raw("wrong SCHEMA_VERSION on SELECT", H(ip.SELECT, extra={ip.K_SCHEMA_VERSION: 99999}),
      {ip.K_SPACE_ID: T, ip.K_LIMIT: 1, ip.K_KEY: []})
D.raw("SCHEMA_VERSION 0 means no check", H(ip.SELECT, extra={ip.K_SCHEMA_VERSION: 0}),
      {ip.K_SPACE_ID: T, ip.K_LIMIT: 1, ip.K_KEY: []})
D.raw("STREAM_ID header key (2.10 clients) is ignored", H(ip.PING, extra={0x0A: 1}))
# With the default --compat-version (2.6.0) the 2.10+ requests stay unknown and STREAM_ID is
# ignored on data requests (tests/test_streams.py covers --compat-version 2.11.0).
D.raw("BEGIN in a stream with options (2.10 only)", H(14, extra={0x0A: 3}), {0x56: 1.5, 0x59: 1})
D.raw("COMMIT without a stream (2.10 only)", H(15))
D.raw("ROLLBACK in a stream (2.10 only)", H(16, extra={0x0A: 3}), {})
D.raw("IPROTO_ID in a stream (2.10 only)", H(73, extra={0x0A: 3}), {0x54: 3, 0x55: [0, 1]})
D.raw("IPROTO_ID with a bad body (2.10 only)", H(73), {0x54: "x"})
D.raw("SELECT with STREAM_ID is an ordinary SELECT", H(ip.SELECT, extra={0x0A: 9}),
      {ip.K_SPACE_ID: T, ip.K_LIMIT: 2, ip.K_KEY: []})
D.raw("REPLACE with STREAM_ID is an ordinary REPLACE", H(ip.REPLACE, extra={0x0A: 9}),
      {ip.K_SPACE_ID: T, ip.K_TUPLE: [777, "stream"]})
D.raw("DELETE with STREAM_ID is an ordinary DELETE", H(ip.DELETE, extra={0x0A: 9}),
      {ip.K_SPACE_ID: T, ip.K_KEY: [777]})
D.raw_bytes("invalid MsgPack body (0xc1)", P(H(ip.SELECT)) + b"\xc1")
D.raw_bytes("truncated body", P(H(ip.SELECT)) + P({ip.K_SPACE_ID: T, ip.K_LIMIT: 1, ip.K_KEY: []})[:-2])
D.raw_bytes("garbage after body", P(H(ip.PING)) + P({}) + b"\x01")
D.raw_bytes("body is not a map", P(H(ip.SELECT)) + P([1, 2]))
D.raw_bytes("header is not a map", P([1, 2]))
D.raw_bytes("header with a string key", P({"a": 1, ip.K_SYNC: 5}))
D.raw_bytes("REQUEST_TYPE is a string", P({ip.K_TYPE: "x", ip.K_SYNC: 5}))
D.raw_bytes("SYNC is a string", P({ip.K_TYPE: ip.PING, ip.K_SYNC: "x"}))
D.raw_bytes("length prefix is a string (framing error, then close)", b"\xa1x" + P(H(ip.PING)), framed=False)
D.raw_bytes("length prefix is nil (framing error, then close)", b"\xc0", framed=False)
D.raw_bytes("length prefix above 2 GiB (error, then close)", b"\xce\xff\xff\xff\xff" + b"\x00" * 16, framed=False)
D.raw_bytes("header map32 claiming 2^32-1 entries", b"\xdf\xff\xff\xff\xff")
D.raw_bytes("KEY array32 claiming 2^32-1 elements",
            P(H(ip.SELECT)) + b"\x83\x10\xcd\x02\x00\x12\x01\x20\xdd\xff\xff\xff\xff")
D.raw_bytes("TUPLE str32 claiming 4 GiB", P(H(ip.INSERT)) + b"\x82\x10\xcd\x02\x00\x21\x92\x01\xdb\xff\xff\xff\xff")
D.raw_bytes("KEY nested 1000 arrays deep",
            P(H(ip.SELECT)) + b"\x83\x10\xcd\x02\x00\x12\x01\x20" + b"\x91" * 1000 + b"\x90")
D.raw_bytes("two requests in one write (pipelining)",
            ip.packet(H(ip.PING, sync=21)) + ip.packet(H(ip.SELECT, sync=22), {ip.K_SPACE_ID: T, ip.K_LIMIT: 1, ip.K_KEY: []}),
            framed=False, replies=2)
D.raw("AUTH wrong password", H(ip.AUTH), {ip.K_USER_NAME: "admin", ip.K_TUPLE: ["chap-sha1", b"x" * 20]}, who="guest")
D.raw("AUTH unknown user", H(ip.AUTH), {ip.K_USER_NAME: "bob", ip.K_TUPLE: ["chap-sha1", b"x" * 20]}, who="guest")
D.raw("AUTH scramble of wrong size", H(ip.AUTH), {ip.K_USER_NAME: "admin", ip.K_TUPLE: ["chap-sha1", b"x" * 5]},
      who="guest")
D.raw("AUTH admin with empty tuple", H(ip.AUTH), {ip.K_USER_NAME: "admin", ip.K_TUPLE: []}, who="guest")
D.raw("AUTH without USER_NAME", H(ip.AUTH), {ip.K_TUPLE: []}, who="guest")

# ---------------------------------------------------------------------------------------------
D.set_group("drop_and_recreate")
D.py("create space dropme", "insert", SPACE, [DROPME, 1, "dropme", "memtx", 0, {}, fmt(("k", "string"))])
D.py("dropme primary", "insert", INDEX, [DROPME, 0, "pk", "tree", {"unique": True}, [[0, "string"]]])
D.py("dropme secondary", "insert", INDEX, [DROPME, 1, "sk", "tree", {"unique": False}, [[1, "unsigned"]]])
D.py("insert without field of secondary", "insert", DROPME, ["a"])
D.py("insert dropme a", "insert", DROPME, ["a", 1])
D.py("insert dropme b (same secondary key)", "insert", DROPME, ["b", 1])
D.py("index over existing data with missing field", "insert", INDEX,
     [DROPME, 2, "tk", "tree", {"unique": False}, [[2, "string"]]])
D.py("unique index over duplicate data", "insert", INDEX,
     [DROPME, 2, "uk", "tree", {"unique": True}, [[1, "unsigned"]]])
D.py("index over existing data of wrong type", "insert", INDEX,
     [DROPME, 2, "wk", "tree", {"unique": False}, [[1, "string"]]])
D.py("drop secondary", "delete", INDEX, [DROPME, 1])
D.py("select via dropped index", "select", DROPME, [1], index=1)
D.py("drop primary", "delete", INDEX, [DROPME, 0])
D.py("select without primary", "select", DROPME, [])
D.py("drop space", "delete", SPACE, [DROPME])
D.py("select dropped space", "select", DROPME, [])
D.py("drop it again (no-op)", "delete", SPACE, [DROPME])
D.py("recreate with another format", "insert", SPACE,
     [DROPME, 1, "dropme2", "memtx", 0, {}, fmt(("k", "unsigned"))])
D.py("index part type conflicts with space format", "insert", INDEX,
     [DROPME, 0, "pk", "tree", {"unique": True}, [[0, "string"]]])
D.py("recreate primary as HASH", "insert", INDEX, [DROPME, 0, "pk", "hash", {"unique": True}, [[0, "unsigned"]]])
D.py("old data is gone", "select", DROPME, [], iterator=ALL)
D.py("new format applies", "insert", DROPME, ["a"])
D.py("new format applies (ok)", "insert", DROPME, [1])
D.py("rename space via replace", "replace", SPACE,
     [DROPME, 1, "renamed", "memtx", 0, {}, fmt(("k", "unsigned"))])
D.py("renamed row in _vspace", "select", VSPACE, [DROPME])
D.py("rename index via update", "update", INDEX, [DROPME, 0], [("=", 2, "pk2")])
D.py("renamed index in _vindex", "select", VINDEX, [DROPME])
D.py("format change that existing data violates", "replace", SPACE,
     [DROPME, 1, "renamed", "memtx", 0, {}, fmt(("k", "unsigned"), ("v", "string"))])
D.py("data still there after refused alter", "select", DROPME, [], iterator=ALL)

OPS = D.ops
GROUPS = D.groups()
