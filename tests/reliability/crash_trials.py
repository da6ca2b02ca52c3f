#!/usr/bin/env python3
"""Crash safety: `kill -9` of `flare serve` at seeded random moments while a workload creates
and deletes deployments, trains, saves sampler snapshots (base and delta), hotloads them and
saves trainer state. After each restart on the same state dir:
  - the database opens (PRAGMA integrity_check) and the server starts;
  - every deployment is in a valid state (CREATING settles to READY, DELETING goes away, none
    FAILED);
  - the snapshot served is one whose save finished, its replica file is a complete checkpoint
    (equal to the bucket's file for a base), and the served logprobs equal those measured when
    it was first served;
  - no half-written file sits under a final name (every *.safetensors, model.delta and *.state
    is complete), and the restart removed what the kill left that nothing refers to (replica
    files the database never named, temporary files of trainer states).

  tests/reliability/crash_trials.py --flare build/flare --seed 1 --trials 60
"""
import argparse
import json
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import Serve, wait_for  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BASE = "accounts/local/models/tiny-gpt"
DEP = "crash-dep"
JOB = "crash-job"
PROBE = [256, 104, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100]
VALID = {"CREATING", "READY", "UPDATING", "DELETING"}
DELTA_MAGIC = None  # read from a delta the workload wrote (the codec's own magic)


class Killed(Exception):
    pass


def check(serve, method, path, body=None, ok=(200,), headers_plane=None):
    try:
        status, out = serve.request(method, path, body)
    except Exception as e:  # connection refused / reset: the server was killed
        raise Killed(str(e))
    if status not in ok:
        raise RuntimeError("%s %s -> %s %s" % (method, path, status, out))
    return status, out


def hotload_request(serve, method, body=None):
    import urllib.request
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(serve.url + "/hot_load/v1/models/hot_load", data=data,
                                 method=method)
    req.add_header("Authorization", "Bearer reliability-key")
    req.add_header("fireworks-model", BASE)
    req.add_header("fireworks-deployment", "accounts/local/deployments/" + DEP)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except Exception as e:
        raise Killed(str(e))


def probe(serve):
    _, out = check(serve, "POST", "/inference/v1/completions", {
        "model": "accounts/local/deployments/" + DEP, "prompt": PROBE, "max_tokens": 0,
        "echo": True, "logprobs": True, "temperature": 0})
    return [round(c["logprob"], 6) for c in out["choices"][0]["logprobs"]["content"][1:]]


def served(serve):
    status, st = hotload_request(serve, "GET")
    if status != 200 or not st.get("replicas"):
        return None
    rep = st["replicas"][0]
    return rep.get("current_snapshot_identity") if rep.get("readiness") else None


class Workload:
    """One stream of operations; `log` says what was in flight when the server died."""

    def __init__(self, serve, rng, book):
        self.serve, self.rng, self.book = serve, rng, book
        self.in_flight = None

    def gateway(self, op):
        return "/training/v1/rlorTrainerJobs/local/%s/api/v1/%s" % (JOB, op)

    def op_create(self):
        n = self.book["next"]
        self.book["next"] += 1
        check(self.serve, "POST", "/v1/accounts/local/deployments?deploymentId=c-%d" % n,
              {"baseModel": BASE, "minReplicaCount": 1, "maxReplicaCount": 1}, ok=(200, 409))

    def op_delete(self):
        _, page = check(self.serve, "GET", "/v1/accounts/local/deployments")
        ids = [d["name"].rsplit("/", 1)[1] for d in page.get("deployments", [])
               if d["name"].rsplit("/", 1)[1].startswith("c-")]
        if ids:
            check(self.serve, "DELETE", "/v1/accounts/local/deployments/" + self.rng.choice(ids),
                  ok=(200, 404))

    def op_train_save_hotload(self):
        datum = {"model_input": {"chunks": [{"type": "encoded_text", "tokens": PROBE[:-1]}]},
                 "loss_fn_inputs": {"target_tokens": PROBE[1:]}}
        check(self.serve, "POST", self.gateway("forward_backward"),
              {"forward_backward_input": {"data": [datum], "loss_fn": "cross_entropy"}})
        check(self.serve, "POST", self.gateway("optim_step"),
              {"adam_params": {"learning_rate": 0.02}})
        n = self.book["next"]
        self.book["next"] += 1
        name = "snap-%d" % n
        now = served(self.serve)
        kind = "delta" if now and self.rng.random() < 0.6 else "base"
        self.in_flight = "save_weights_for_sampler(%s)" % kind
        status, out = self.serve.request("POST", self.gateway("save_weights_for_sampler"),
                                         {"path": name, "checkpoint_type": kind})
        if status != 200 and kind == "delta":  # e.g. the chain's previous snapshot is gone
            kind = "base"
            check(self.serve, "POST", self.gateway("save_weights_for_sampler"),
                  {"path": name, "checkpoint_type": kind})
            out = {}
        elif status != 200:
            raise RuntimeError("save_weights_for_sampler -> %s %s" % (status, out))
        self.book["saved"][name] = kind
        body = {"identity": name}
        if kind == "delta":
            body["incremental_snapshot_metadata"] = {
                "previous_snapshot_identity": out.get("previous_snapshot_identity", now),
                "compression_format": out.get("compression_format"),
                "checksum_format": "alder32"}
        self.in_flight = "hotload(%s)" % kind
        status, resp = hotload_request(self.serve, "POST", body)
        if status != 200:
            return  # refused (a delta on another snapshot): nothing changes
        wait_for("hotload of " + name, lambda: served(self.serve) == name, 30, 0.01)
        self.in_flight = "probe"
        self.book["fingerprint"][name] = probe(self.serve)

    def op_save_state(self):
        n = self.book["next"]
        self.book["next"] += 1
        check(self.serve, "POST", self.gateway("save_state"), {"path": "state-%d" % n})

    def run(self, stop):
        ops = [("create", self.op_create), ("delete", self.op_delete),
               ("train_save_hotload", self.op_train_save_hotload),
               ("save_state", self.op_save_state)]
        try:
            while not stop.is_set():
                name, fn = self.rng.choice(ops)
                self.in_flight = name
                fn()
                self.book["done"][name] = self.book["done"].get(name, 0) + 1
                self.in_flight = None
        except Killed:
            pass
        except Exception as e:  # a server-side error while it was up: a finding
            if not stop.is_set():
                self.book["errors"].append("%s: %s" % (self.in_flight, e))


def safetensors_complete(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        return False, "shorter than its header length"
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n])
    except ValueError:
        return False, "header is not JSON"
    end = 0
    for k, v in header.items():
        if k != "__metadata__":
            end = max(end, v["data_offsets"][1])
    if 8 + n + end != len(data):
        return False, "%d bytes, the header describes %d" % (len(data), 8 + n + end)
    return True, data[8 + n:]


def check_files(flare, state):
    problems = []
    leftovers = 0
    for dirpath, _, files in os.walk(state):
        for f in files:
            p = os.path.join(dirpath, f)
            if ".tmp-" in f:
                leftovers += "buckets" in os.path.relpath(p, state).split(os.sep)[:1]
                continue
            if f.endswith(".safetensors"):
                ok, why = safetensors_complete(p)
                if not ok:
                    problems.append("%s: %s" % (os.path.relpath(p, state), why))
            elif f == "model.delta":
                r = subprocess.run([flare, "delta", "inspect", p], capture_output=True, text=True)
                if r.returncode != 0:
                    problems.append("%s: %s" % (os.path.relpath(p, state), r.stderr.strip()[:200]))
            elif f.endswith(".state") and os.path.getsize(p) == 0:
                problems.append("%s: empty" % os.path.relpath(p, state))
    return problems, leftovers


def check_db(state):
    db = sqlite3.connect(os.path.join(state, "state.db"))
    try:
        ok = db.execute("PRAGMA integrity_check").fetchone()[0]
        rows = db.execute("SELECT id, state, snapshot, base_snapshot, snapshot_file, base_file "
                          "FROM deployments").fetchall()
    finally:
        db.close()
    return ok, rows


def after_restart(flare, serve, state, book):
    problems = []
    # Deployments settle: CREATING becomes READY, DELETING goes away; none FAILED.
    def settled():
        _, page = check(serve, "GET", "/v1/accounts/local/deployments")
        deps = page.get("deployments", [])
        for d in deps:
            if d["state"] not in VALID:
                problems.append("deployment %s is %s: %s" % (d["name"], d["state"],
                                                            d.get("status", {})))
                return deps
        return deps if all(d["state"] == "READY" for d in deps) else None
    try:
        wait_for("deployments to settle", settled, 30, 0.1)
    except RuntimeError as e:
        problems.append(str(e))
    # The snapshot served is complete, and serves what it served before the kill.
    ident = wait_for("the replica of " + DEP, lambda: served(serve) or "", 30, 0.05)
    if ident not in ("", BASE) and not ident.startswith(BASE):
        if ident not in book["saved"] and ident != "initial":
            problems.append("%s serves %s, which no finished save wrote" % (DEP, ident))
        fp = probe(serve)
        if ident in book["fingerprint"] and book["fingerprint"][ident] != fp:
            problems.append("%s serves %s with other weights than before the kill" % (DEP, ident))
        book["fingerprint"].setdefault(ident, fp)
    _, rows = check_db(state)
    # Files a kill left behind that nothing refers to are removed at restart.
    referenced = {f for row in rows for f in row[4:6]}
    for sub in ("replicas", "trainer_states"):
        for dirpath, _, files in os.walk(os.path.join(state, sub)):
            for f in files:
                p = os.path.join(dirpath, f)
                if ".tmp-" in f or (sub == "replicas" and p not in referenced):
                    problems.append("left behind after the restart: " + os.path.relpath(p, state))
    for (dep, st, snap, _, snap_file, base_file) in rows:
        if dep != DEP:
            continue
        for f in (snap_file, base_file):
            if f and f.startswith(state):
                ok, tensors = safetensors_complete(f)
                if not ok:
                    problems.append("replica file %s: %s" % (f, tensors))
        if book["saved"].get(snap) == "base" and snap_file.startswith(state):
            bucket = [p for p in (os.path.join(dp, "model.safetensors")
                                  for dp, _, _ in os.walk(os.path.join(state, "buckets"))
                                  if os.path.basename(dp) == snap) if os.path.exists(p)]
            if bucket:
                a, b = safetensors_complete(bucket[0])[1], safetensors_complete(snap_file)[1]
                if a != b:
                    problems.append("replica file of %s differs from the bucket's" % snap)
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flare", default=os.path.join(ROOT, "build", "flare"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--max-kill-s", type=float, default=1.5,
                    help="each kill comes after U(0.02, this) seconds of workload")
    ap.add_argument("--keep", action="store_true")
    o = ap.parse_args()
    rng = random.Random(o.seed)
    work = tempfile.mkdtemp(prefix="flare-crash-")
    state = os.path.join(work, "state")
    log = os.path.join(work, "serve.log")
    book = {"next": 0, "saved": {}, "fingerprint": {}, "done": {}, "errors": [], "killed_in": {}}
    failures = []
    t_start = time.monotonic()
    leftovers = 0
    serve = Serve(o.flare, state, log_path=log)
    try:
        check(serve, "POST", "/v1/accounts/local/deployments?deploymentId=" + DEP,
              {"baseModel": BASE, "minReplicaCount": 1, "maxReplicaCount": 1})
        check(serve, "POST", "/v1/accounts/local/rlorTrainerJobs?rlorTrainerJobId=" + JOB,
              {"serviceMode": True, "trainingConfig": {"baseModel": BASE},
               "hotLoadDeploymentId": DEP})
        wait_for("trainer", lambda: check(serve, "GET", "/v1/accounts/local/rlorTrainerJobs/" +
                                          JOB)[1]["state"] == "JOB_STATE_RUNNING", 30)
        for trial in range(1, o.trials + 1):
            stop = threading.Event()
            w = Workload(serve, random.Random(rng.getrandbits(32)), book)
            t = threading.Thread(target=w.run, args=(stop,))
            t.start()
            time.sleep(rng.uniform(0.02, o.max_kill_s))
            what = w.in_flight or "idle"
            stop.set()
            serve.kill9()
            t.join()
            key = what.split("(")[0] if what.startswith("probe") else what
            book["killed_in"][key] = book["killed_in"].get(key, 0) + 1
            ok, _ = check_db(state)
            problems = [] if ok == "ok" else ["integrity_check: " + ok]
            file_problems, left = check_files(o.flare, state)
            leftovers = left
            problems += file_problems
            try:
                serve = Serve(o.flare, state, log_path=log)
            except Exception as e:
                failures.append((trial, what, ["restart failed: %s" % e]))
                break
            try:
                wait_for("the trainer", lambda: check(
                    serve, "GET", "/v1/accounts/local/rlorTrainerJobs/" + JOB)[1]["state"] ==
                    "JOB_STATE_RUNNING", 30)
                problems += after_restart(o.flare, serve, state, book)
            except Exception as e:
                problems.append("after restart: %s" % e)
            problems += book["errors"]
            book["errors"] = []
            if problems:
                failures.append((trial, what, problems))
                print("trial %d (killed during %s): %s" % (trial, what, "; ".join(problems)),
                      flush=True)
    finally:
        serve.stop()
    took = time.monotonic() - t_start
    print("crash trials: seed %d, %d trials in %.0f s; killed during %s; operations completed "
          "%s; %d snapshots saved, %d served and checked; %d temporary files in buckets; "
          "%d trials with problems" % (
              o.seed, o.trials, took, json.dumps(book["killed_in"], sort_keys=True),
              json.dumps(book["done"], sort_keys=True), len(book["saved"]),
              len(book["fingerprint"]), leftovers, len(failures)))
    if not o.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("work dir: " + work)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
