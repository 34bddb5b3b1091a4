"""Differential suite: the same operations, in the same order, against a fresh real Tarantool 2.6
(the reference) and a fresh spindle; results must match op by op.

What is compared, per op (see harness/differential.py):
  * tarantool-python ops: returned data exactly (type-exact: 1 != 1.0 != True), or for errors
    the code, the message and the extended error (type, code, errno, message, fields);
  * raw ops: the decoded response header (type, sync, presence of a schema version) and body,
    and whether the connection is still usable afterwards (a PING on the same socket);
  * for every op: whether the schema version changed while it ran.
Normalised away: absolute schema versions, file/line of error-stack entries, map key order,
and HASH iteration order where an op says so.

Run Tarantool-vs-Tarantool (validates the suite itself): DIFF_AGAINST=tarantool.
One pytest test per op group; the run itself happens once per module.
"""

import os

import pytest

from harness import differential as diff
from harness.diff_ops import GROUPS, OPS

REF_NAME = "tarantool"


def _sut_kind():
    kind = os.environ.get("DIFF_AGAINST", "spindle")
    if kind not in ("spindle", "tarantool"):
        raise pytest.UsageError(f"DIFF_AGAINST must be 'spindle' or 'tarantool', not {kind!r}")
    return kind


@pytest.fixture(scope="module")
def diff_run(module_server_factory):
    sut_kind = _sut_kind()
    ref = module_server_factory("tarantool")()
    sut = module_server_factory(sut_kind)()
    sut_name = sut_kind if sut_kind != REF_NAME else "tarantool(second instance)"
    ref_results = diff.run_all(ref, OPS)
    sut_results = diff.run_all(sut, OPS)
    mismatches = diff.compare(OPS, ref_results, sut_results)
    info = {
        "ref_results": ref_results, "sut_results": sut_results, "sut_name": sut_name,
        "mismatches": mismatches, "sut_alive": sut.is_running(), "sut_log_tail": sut.log_tail(60),
    }
    # Sanity: the reference itself must have run every op without harness-level failures.
    broken = [(op, r) for op, r in zip(OPS, ref_results)
              if "exception" in r["result"] or "client_exception" in r["result"] or "server_dead" in r["result"]]
    info["ref_broken"] = broken
    return info


def test_op_count():
    assert len(OPS) >= 150, f"the differential list must have >= 150 operations, has {len(OPS)}"
    assert len({op.desc for op in OPS}) > 0.9 * len(OPS), "op descriptions should be (mostly) unique"


def test_reference_ran_cleanly(diff_run):
    bad = diff_run["ref_broken"]
    assert not bad, "harness-level failures against the reference Tarantool:\n" + "\n".join(
        f"#{op.index} {op.desc}: {r}" for op, r in bad)


@pytest.mark.parametrize("group", GROUPS)
def test_group(diff_run, group):
    mismatches = diff_run["mismatches"]
    mine = [m for m in mismatches if m[0].group == group]
    if not mine:
        return
    sut_name = diff_run["sut_name"]
    first_global = mismatches[0][0]
    lines = [f"{len(mine)} of {sum(1 for op in OPS if op.group == group)} ops in group '{group}' differ "
             f"between {REF_NAME} (expected) and {sut_name} (actual)."]
    if first_global.group != group or first_global.index < mine[0][0].index:
        lines.append(f"NOTE: the first divergence of the whole run is op #{first_global.index} "
                     f"[{first_global.group}] {first_global.desc}; later mismatches may be consequences.")
    if not diff_run["sut_alive"]:
        lines.append(f"NOTE: {sut_name} was no longer running at the end of the run. Log tail:\n"
                     f"{diff_run['sut_log_tail']}")
    for op, ref, sut in mine[:25]:
        lines.append(diff.format_mismatch(op, ref, sut, REF_NAME, sut_name))
    if len(mine) > 25:
        lines.append(f"... and {len(mine) - 25} more in this group")
    pytest.fail("\n".join(lines), pytrace=False)
