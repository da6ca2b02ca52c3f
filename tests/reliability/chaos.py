#!/usr/bin/env python3
"""Chaos: scripts/grpo.lua and scripts/distill.lua on `flare serve` with faults on every
route (a share of requests get a 429 with Retry-After, a 503, a 500, a reset connection, a
truncated body or stream, or a delay), then the same run without faults. Both complete and,
with a fixed seed, end with the same metrics (timings aside) and the same checkpoints.

  tests/reliability/chaos.py --flare build/flare --seed 7 --rate 0.2 --grpo-steps 40
  (the test command runs a short setting: --grpo-steps 4 --distill-small)
"""
import argparse
import concurrent.futures
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import Serve, client_env  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KINDS = "429|503|500|reset|truncate|delay"
TIMING_KEYS = {"sync_s", "time", "elapsed_s", "t", "ts", "wall_s"}


def run_recipe(flare, serve, script, args, work, timeout_s):
    runs = os.path.join(work, "runs")
    t0 = time.monotonic()
    r = subprocess.run([flare, "run", os.path.join(ROOT, "scripts", script)] + args,
                       env=client_env(serve, runs), cwd=work, capture_output=True, text=True,
                       timeout=timeout_s)
    took = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit("%s failed (status %d):\n%s\n%s" % (script, r.returncode, r.stdout[-3000:],
                                                           r.stderr[-3000:]))
    name = script[:-4]
    dirs = sorted(glob.glob(os.path.join(runs, name, "*")))
    if len(dirs) != 1:
        raise SystemExit("expected one run dir of %s, found %r" % (name, dirs))

    def jsonl(f):
        p = os.path.join(dirs[0], f)
        if not os.path.exists(p):
            return []
        with open(p) as fh:
            return [json.loads(line) for line in fh if line.strip()]

    metrics = [{k: v for k, v in m.items() if k not in TIMING_KEYS} for m in jsonl("metrics.jsonl")]
    checkpoints = [c.get("step") for c in jsonl("checkpoints.jsonl")]
    return {"metrics": metrics, "checkpoints": checkpoints, "seconds": took, "stdout": r.stdout}


def one(flare, script, args, faults, timeout_s, keep):
    work = tempfile.mkdtemp(prefix="flare-chaos-")
    serve = Serve(flare, os.path.join(work, "state"), faults=faults,
                  log_path=os.path.join(work, "serve.log"))
    try:
        out = run_recipe(flare, serve, script, args, work, timeout_s)
        status, desc = serve.request("GET", "/admin/v1/faults")
        out["faults"] = desc if status == 200 else {}
        serve.request("DELETE", "/admin/v1/faults")  # the checks below are not faulted
        status, page = serve.request("GET", "/v1/accounts/local/deployments")
        out["deployments"] = page.get("deployments", []) if status == 200 else None
    finally:
        serve.stop()
        if not keep:
            subprocess.run(["rm", "-rf", work])
    return out


def diff(a, b):
    problems = []
    if len(a["metrics"]) != len(b["metrics"]):
        problems.append("metrics lines: %d without faults, %d with" % (len(a["metrics"]),
                                                                      len(b["metrics"])))
    for i, (x, y) in enumerate(zip(a["metrics"], b["metrics"])):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            problems.append("metrics line %d differs in %s: %s vs %s" % (
                i + 1, keys, {k: x.get(k) for k in keys}, {k: y.get(k) for k in keys}))
    if a["checkpoints"] != b["checkpoints"]:
        problems.append("checkpoints %r vs %r" % (a["checkpoints"], b["checkpoints"]))
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flare", default=os.path.join(ROOT, "build", "flare"))
    ap.add_argument("--seed", type=int, default=7, help="fault draws (and the recipes' seed)")
    ap.add_argument("--rate", type=float, default=0.2, help="share of requests faulted")
    ap.add_argument("--delay-ms", type=int, default=2000)
    ap.add_argument("--retry-after", type=float, default=1)
    ap.add_argument("--grpo-steps", type=int, default=40)
    ap.add_argument("--distill-small", action="store_true", help="a few steps of each phase")
    ap.add_argument("--recipes", default="grpo,distill")
    ap.add_argument("--timeout", type=float, default=1200, help="per recipe run, seconds")
    ap.add_argument("--keep", action="store_true", help="keep the work dirs")
    o = ap.parse_args()

    faults = "/:%s:rate=%g:seed=%d:retry_after=%g:delay_ms=%d" % (
        KINDS, o.rate, o.seed, o.retry_after, o.delay_ms)
    plans = {"grpo": ("grpo.lua", ["--seed=%d" % o.seed, "--steps=%d" % o.grpo_steps]),
             "distill": ("distill.lua", ["--seed=%d" % o.seed] + (
                 ["--student-steps=2", "--problems=6", "--eval-problems=4", "--eval-n=2"]
                 if o.distill_small else []))}
    failed = False
    print("faults: " + faults, flush=True)
    # Every run has its own server and spends most of its time waiting on retries: all run
    # at once.
    names = o.recipes.split(",")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2 * len(names)) as pool:
        runs = {(name, spec): pool.submit(one, o.flare, plans[name][0], plans[name][1], spec,
                                          o.timeout, o.keep)
                for name in names for spec in ("", faults)}
    for name in names:
        args = plans[name][1]
        clean, chaos = runs[(name, "")].result(), runs[(name, faults)].result()
        rule = (chaos["faults"].get("rules") or [{}])[0]
        problems = diff(clean, chaos)
        if chaos["deployments"] is None:
            problems.append("could not list deployments after the run")
        print("%s %s: %d metrics lines, %d checkpoints; %.1f s without faults, %.1f s with; "
              "%d faults injected %s; %d trainer steps answered again from the replay cache; %s" % (
                  name, " ".join(args), len(chaos["metrics"]), len(chaos["checkpoints"]),
                  clean["seconds"], chaos["seconds"], rule.get("injected", 0),
                  json.dumps(rule.get("injected_by_kind", {}), sort_keys=True),
                  chaos["faults"].get("replayed", 0),
                  "same metrics" if not problems else "DIFFERENT"), flush=True)
        for p in problems:
            print("  " + p)
        if not clean["metrics"] or rule.get("injected", 0) == 0:
            print("  nothing to compare (no metrics or no fault injected)")
            problems.append("vacuous")
        failed = failed or bool(problems)
    print("chaos: " + ("FAILED" if failed else "ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
