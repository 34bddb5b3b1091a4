"""Tarantool's own client, net.box (2.6), against the server.

tests/lua/netbox_crud.lua connects as admin with a password, creates spaces by inserting into
conn.space._space / conn.space._index, reloads the schema, then runs CRUD with 1-based updates
(net.box sends INDEX_BASE=1), every iterator by name, index:min/max, get (SELECT LIMIT 2 with the
client-side "more than one tuple" check), ping, errors via pcall (err.code), a guest connection
and a wrong password.  It prints every step's result as JSON; the output against the server
must equal the output against a fresh real Tarantool 2.6, step by step.
"""

import json

import pytest


@pytest.fixture(scope="module")
def reference_steps(module_server_factory):
    from conftest import run_lua_script
    ref = module_server_factory("tarantool")()
    out = run_lua_script("netbox_crud.lua", ref.host, ref.port, ref.password)
    return out["steps"]


def _fmt(v):
    return json.dumps(v, sort_keys=True)


def test_netbox_crud_matches_tarantool(server_factory, server_kind, reference_steps, run_lua):
    srv = server_factory(server_kind)()
    steps = run_lua("netbox_crud.lua", srv.host, srv.port, srv.password)["steps"]
    got = {label: res for label, res in steps}

    # Clear failures for the essentials first.
    assert got.get("connected") == {"ok": True}, \
        f"net.box could not connect/authenticate to {server_kind}: {got.get('connect error')}\n{srv.log_tail()}"
    assert got.get("space test visible") == {"ok": True}, \
        f"net.box never saw space 'test' by name after DDL + reload_schema on {server_kind} " \
        f"(_vspace/_vindex/_vcollation fetch or schema version): {steps[-3:]}"

    ref_labels = [label for label, _ in reference_steps]
    labels = [label for label, _ in steps]
    problems = []
    if labels != ref_labels:
        missing = [lb for lb in ref_labels if lb not in got]
        problems.append(f"step lists differ; missing steps: {missing}")
    ref = dict(reference_steps)
    for label in ref_labels:
        if label in got and _fmt(got[label]) != _fmt(ref[label]):
            problems.append(f"step {label!r}:\n    tarantool: {_fmt(ref[label])}\n    {server_kind}: {_fmt(got[label])}")
    assert not problems, (f"net.box output against {server_kind} differs from Tarantool 2.6 in "
                          f"{len(problems)} step(s):\n" + "\n".join(problems))
    assert srv.is_running(), f"{server_kind} died during the net.box run:\n{srv.log_tail()}"


def test_netbox_reference_sanity(reference_steps):
    """Guards the script itself: against real Tarantool these results are known."""
    got = dict(reference_steps)
    assert got["connected"] == {"ok": True}
    assert got["insert duplicate"]["err"]["code"] == 3
    assert got["update splice 1-based"] == {"ok": [1, "Z", 14]}
    assert got["update field 0"]["err"]["code"] == 37
    assert got["get by non-unique index (client-side error)"]["err"]["code"] == 41
    assert got["select iterator LT"] == {"ok": [[3, "c", 30], [2, "b", 20], [1, "a", 10]]}
    assert got["wrong password error"] == {"ok": "Incorrect password supplied for user 'admin'"}
    assert got["guest sees test"] == {"ok": False}
