#!/usr/bin/env python3
"""Recovery time of spindle and Tarantool 2.6 on the same data, side by side.

Both servers get N tuples {unsigned, 26-byte string} in one space with a TREE primary key,
written through their WAL (wal_mode=write). Then each is restarted and timed from process start
to the first successful SELECT of the loaded space — once recovering from the WAL alone, once from a snapshot
(SIGUSR1 for spindle, box.snapshot() for Tarantool). Runs alternate A B A B; medians are
printed as a table and as JSON (--json).

    python3 tools/recovery_bench.py [--tuples 1000000] [--runs 3] [--json]
"""
import argparse, asyncio, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPINDLE = os.environ.get("SPINDLE_BIN", os.path.join(ROOT, "target", "release", "spindle"))
PW = "pw"


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def select_key(key):
    """SELECT space 600, index 0, EQ, limit 1, key [key]; header {0: 1, 1: 1}."""
    # The key must be minimally encoded: Tarantool 2.6 does not find a key sent as a wider
    # uint than necessary (every client encodes minimally).
    import msgpack
    body = (b"\x82\x00\x01\x01\x01" + b"\x85\x10\xcd\x02\x58\x11\x00\x12\x01\x14\x00\x20\x91"
            + msgpack.packb(key))
    return b"\xce" + len(body).to_bytes(4, "big") + body


PING = b"\xce\x00\x00\x00\x05\x82\x00\x40\x01\x01"


def wait_ping(port, proc, probe=PING, timeout=600):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.settimeout(5)
                greeting = b""
                while len(greeting) < 128:
                    greeting += s.recv(128 - len(greeting))
                # Tarantool answers requests while it still recovers (ER_LOADING, or data
                # replayed so far), so the probe asks for the last key loaded and needs it.
                s.sendall(probe)
                reply = b""
                while len(reply) < 12:
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    reply += chunk
                # 0xce len(4) 0x83 0x00 0xce <u32 type>: type 0 is OK.
                ok = len(reply) >= 12 and reply[5:8] == b"\x83\x00\xce" and reply[8:12] == b"\x00\x00\x00\x00"
                if ok and (probe is PING or not reply.endswith(b"\x81\x30\xdd\x00\x00\x00\x00")):
                    return
                time.sleep(0.01)
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("server did not answer in time")


class Spindle:
    name = "spindle"

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "spindle"); os.makedirs(self.dir)
        self.port = free_port(); self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "log"), "a")
        self.proc = subprocess.Popen([SPINDLE, "serve", "--listen", f"127.0.0.1:{self.port}",
                                      "--data-dir", os.path.join(self.dir, "data"), "--wal-mode", "write",
                                      "--admin-password", PW, "--log-level", "info",
                                      "--checkpoint-interval", "0"], stdout=self.log, stderr=self.log)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM); self.proc.wait(120); self.log.close()

    def load(self, n):
        self.start(); wait_ping(self.port, self.proc)
        asyncio.run(load_async(self.port, n)); self.stop()

    def snapshot(self):
        self.start(); wait_ping(self.port, self.proc)
        before = open(os.path.join(self.dir, "log")).read().count("checkpoint complete")
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 600
        while open(os.path.join(self.dir, "log")).read().count("checkpoint complete") == before:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("spindle did not complete the checkpoint")
            time.sleep(0.05)
        self.stop()


class Tarantool:
    name = "tarantool"

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "tarantool"); os.makedirs(self.dir)
        self.port = free_port(); self.proc = None

    def script(self, body=""):
        path = os.path.join(self.dir, "init.lua")
        with open(path, "w") as f:
            f.write(f"box.cfg{{listen='127.0.0.1:{self.port}', wal_mode='write', log_level=2, "
                    f"checkpoint_interval=0, memtx_memory=2*1024*1024*1024}}\n{body}\n")
        return path

    def start(self, body=""):
        self.log = open(os.path.join(self.dir, "log"), "a")
        self.proc = subprocess.Popen(["tarantool", self.script(body)], cwd=self.dir, stdout=self.log, stderr=self.log)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM); self.proc.wait(120)
        self.log.close()

    def load(self, n, loader="client"):
        if loader == "client":
            # The same clients, requests and transactions as spindle's load: the same log.
            self.start(f"box.schema.user.passwd('admin', '{PW}')")
            wait_ping(self.port, self.proc)
            asyncio.run(load_async(self.port, n)); self.stop()
            return
        body = ("local s = box.schema.space.create('big', {id = 600}) s:create_index('pk')\n"
                "box.schema.user.grant('guest', 'read', 'space', 'big')\n"
                f"for i = 0, {n - 1}, 1000 do box.begin() for j = i, math.min(i + 999, {n - 1}) do "
                "s:replace{j, string.format('value-%020d', j)} end box.commit() end os.exit(0)")
        self.start(body); self.proc.wait(900); self.log.close()

    def snapshot(self):
        self.start("box.snapshot() os.exit(0)"); self.proc.wait(900); self.log.close()


async def load_async(port, n, conns=8, window=256):
    import asynctnt
    admin = asynctnt.Connection(host="127.0.0.1", port=port, username="admin", password=PW)
    await admin.connect()
    await admin.insert("_space", [600, 1, "big", "memtx", 0, {}, []])
    await admin.insert("_index", [600, 0, "pk", "tree", {"unique": True}, [[0, "unsigned"]]])
    await admin.insert("_priv", [1, 0, "space", 600, 1])  # guest may read it (the probe)
    await admin.disconnect()
    clients = [asynctnt.Connection(host="127.0.0.1", port=port, username="admin", password=PW,
                                   fetch_schema=False, auto_refetch_schema=False) for _ in range(conns)]
    for c in clients:
        await c.connect()

    async def worker(w):
        pending, i = [], w
        while i < n:
            pending.append(clients[w].replace(600, [i, "value-%020d" % i])); i += conns
            if len(pending) >= window:
                await asyncio.gather(*pending); pending = []
        await asyncio.gather(*pending)
    await asyncio.gather(*(worker(w) for w in range(conns)))


def time_recovery(server, tuples):
    t0 = time.monotonic(); server.start(); wait_ping(server.port, server.proc, select_key(tuples - 1))
    elapsed = time.monotonic() - t0; server.stop(); return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tuples", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--tarantool-loader", choices=["client", "lua"], default="client",
                    help="client: Tarantool is loaded by the same asynctnt clients as spindle "
                         "(single-row transactions from 8 connections: the same log); lua: a Lua "
                         "loop in 1000-row transactions (fewer, larger transactions to replay)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="recovery-bench-")
    try:
        servers = [Spindle(work), Tarantool(work)]
        servers[0].load(args.tuples)
        servers[1].load(args.tuples, args.tarantool_loader)
        results = {}
        for phase in ("wal", "snapshot"):
            if phase == "snapshot":
                for s in servers:
                    s.snapshot()
            times = {s.name: [] for s in servers}
            for _ in range(args.runs):
                for s in servers:
                    times[s.name].append(time_recovery(s, args.tuples))
            results[phase] = {k: statistics.median(v) for k, v in times.items()}
        if args.json:
            print(json.dumps({"tuples": args.tuples, "runs": args.runs, "seconds": results}))
        else:
            print(f"recovery of {args.tuples} tuples, median of {args.runs} runs (process start -> first successful SELECT)")
            print(f"{'from':<10}{'spindle s':>12}{'tarantool s':>14}{'spindle/tarantool':>20}")
            for phase, r in results.items():
                print(f"{phase:<10}{r['spindle']:>12.2f}{r['tarantool']:>14.2f}{r['spindle'] / r['tarantool']:>20.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
