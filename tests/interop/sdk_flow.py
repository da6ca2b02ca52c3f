"""The Fireworks SDK's request sequence, sent by Python's urllib to a `flare serve`.

Not flare's client: an independent HTTP stack speaking the protocol as the SDK
does (DeploymentManager create/get/wait, warmup, completions, the trainer job,
save_weights_for_sampler, WeightSyncer's base then arc_v2-labelled delta
hotload, scale to zero, delete). Usage: sdk_flow.py FLARE_EXECUTABLE
"""
import json
import sys
import time
import urllib.error
import urllib.request

from serve_run import run_against_serve

BASE_MODEL = "accounts/local/models/tiny-gpt"


class Client:
    def __init__(self, base, key):
        self.base, self.key = base, key

    def call(self, method, path, body=None, headers=None, bearer=False):
        h = {"Content-Type": "application/json", "X-Api-Key": self.key}
        if bearer:
            h["Authorization"] = "Bearer " + self.key
        h.update(headers or {})
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null"), r.headers
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null"), e.headers


def poll(what, fn, timeout_s=30):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok -", what)


def run(c):
    s, b, _ = c.call("GET", "/v1/accounts?pageSize=2")
    check(s == 200 and len(b["accounts"]) == 1, "one account")
    acct = b["accounts"][0]["name"].split("/", 1)[1]
    dep = "sdk-flow"
    name = f"accounts/{acct}/deployments/{dep}"
    body = {"baseModel": BASE_MODEL, "description": "Fireworks training deployment",
            "minReplicaCount": 0, "maxReplicaCount": 1, "enableHotLoad": True, "forTraining": False,
            "hotLoadBucketType": "FW_HOSTED", "acceleratorType": "NVIDIA_H200_141GB"}
    s, b, _ = c.call("POST", f"/v1/accounts/{acct}/deployments?deploymentId={dep}&skipShapeValidation=true", body)
    check(s == 200 and b["name"] == name, "create deployment")
    s, _, _ = c.call("POST", f"/v1/accounts/{acct}/deployments?deploymentId={dep}", body)
    check(s == 409, "create again answers 409")
    poll("READY", lambda: c.call("GET", f"/v1/accounts/{acct}/deployments/{dep}")[1]["state"] == "READY")

    def warm():
        s, b, _ = c.call("POST", "/inference/v1/completions",
                         {"model": name, "prompt": [1, 2], "max_tokens": 4, "temperature": 0}, bearer=True)
        return b if s == 200 else None
    b = poll("warmup", warm)
    check(b["usage"]["completion_tokens"] == 4, "warmup completion")
    s, b, h = c.call("POST", "/inference/v1/completions",
                     {"model": name, "prompt": "hello", "n": 3, "max_tokens": 6, "temperature": 1.0,
                      "logprobs": True, "top_logprobs": 2, "raw_output": True, "seed": 5},
                     bearer=True, headers={"x-request-id": "sdk-flow-1"})
    check(s == 200 and len(b["choices"]) == 3, "n=3 completions")
    lp = b["choices"][0]["logprobs"]["content"]
    check(all("logprob" in t and "sampling_logprob" in t and len(t["top_logprobs"]) == 2 for t in lp),
          "per-token logprobs")
    check(len(b["choices"][0]["raw_output"]["completion_token_ids"]) == len(lp), "token ids")
    check(h.get("x-request-id") == "sdk-flow-1", "request id echoed")

    job = "sdk-flow-job"
    s, b, _ = c.call("POST", f"/v1/accounts/{acct}/rlorTrainerJobs?rlorTrainerJobId={job}",
                     {"serviceMode": True, "hotLoadDeploymentId": dep,
                      "trainingConfig": {"baseModel": BASE_MODEL, "loraRank": 0, "learningRate": 1e-3}})
    check(s == 200, "create trainer job")
    poll("trainer RUNNING", lambda: c.call("GET", f"/v1/accounts/{acct}/rlorTrainerJobs/{job}")[1]
         .get("state") == "JOB_STATE_RUNNING")
    t = f"/training/v1/rlorTrainerJobs/{acct}/{job}/api/v1"
    check(c.call("GET", t + "/healthz")[0] == 200, "trainer healthz")
    hl = {"fireworks-model": BASE_MODEL, "fireworks-deployment": name}

    def hotload(identity, previous=None):
        req = {"identity": identity, "reset_prompt_cache": True}
        if previous:
            req["incremental_snapshot_metadata"] = {"previous_snapshot_identity": previous,
                                                    "compression_format": "arc_v2",
                                                    "checksum_format": "alder32"}
        s, b, _ = c.call("POST", "/hot_load/v1/models/hot_load", req, headers=hl, bearer=True)
        check(s == 200, f"hotload {identity} accepted ({b})")

        def served():
            r = c.call("GET", "/hot_load/v1/models/hot_load", headers=hl, bearer=True)[1]["replicas"][0]
            stage = r["loading_state"]
            if stage["stage"] == "error" and stage["target_snapshot_identity"] == identity:
                raise AssertionError(f"hotload {identity} failed: {stage}")
            return r["readiness"] and r["current_snapshot_identity"] == identity
        poll("hotload " + identity, served)
        print("ok - serving", identity)

    session = "0a1b2c3d"
    s, b, _ = c.call("POST", t + "/save_weights_for_sampler", {"path": "base-" + session, "checkpoint_type": "base"})
    check(s == 200 and b["snapshot_name"] == "base-" + session, "save base snapshot")
    hotload("base-" + session)
    datum = {"model_input": {"chunks": [{"type": "encoded_text", "tokens": [104, 101, 108, 108]}]},
             "loss_fn_inputs": {"target_tokens": [101, 108, 108, 111], "weights": [1, 1, 1, 1]}}
    s, b, _ = c.call("POST", t + "/forward_backward",
                     {"forward_backward_input": {"data": [datum], "loss_fn": "cross_entropy"}})
    check(s == 200 and len(b["loss_fn_outputs"][0]["logprobs"]) == 4, "forward_backward")
    s, _, _ = c.call("POST", t + "/optim_step", {"adam_params": {"learning_rate": 1e-2, "beta1": 0.9,
                     "beta2": 0.95, "eps": 1e-12, "weight_decay": 0, "grad_clip_norm": 0}})
    check(s == 200, "optim_step")
    s, b, _ = c.call("POST", t + "/save_weights_for_sampler",
                     {"path": "step-1-" + session, "checkpoint_type": "delta"})
    check(s == 200 and b["previous_snapshot_identity"] == "base-" + session, "save delta snapshot")
    hotload("step-1-" + session, "base-" + session)
    # The SDK pins the next delta to the snapshot it hotloaded last (step-1), not to the base.
    s, _, _ = c.call("POST", t + "/forward_backward",
                     {"forward_backward_input": {"data": [datum], "loss_fn": "cross_entropy"}})
    check(s == 200, "forward_backward before step 2")
    s, _, _ = c.call("POST", t + "/optim_step", {"adam_params": {"learning_rate": 1e-2}})
    check(s == 200, "optim_step before step 2")
    s, b, _ = c.call("POST", t + "/save_weights_for_sampler",
                     {"path": "step-2-" + session, "checkpoint_type": "delta"})
    check(s == 200 and b["previous_snapshot_identity"] == "step-1-" + session, "delta made against step-1")
    hotload("step-2-" + session, "step-1-" + session)
    s, b, _ = c.call("POST", "/inference/v1/completions",
                     {"model": name, "prompt": "hello", "max_tokens": 2, "stream": False}, bearer=True)
    check(s == 200 and b["model"].endswith("@step-2-" + session), "completions name the new snapshot")

    check(c.call("DELETE", f"/v1/accounts/{acct}/rlorTrainerJobs/{job}")[0] == 200, "delete trainer job")
    s, _, _ = c.call("PATCH", f"/v1/accounts/{acct}/deployments/{dep}?updateMask=min_replica_count,max_replica_count",
                     {"minReplicaCount": 0, "maxReplicaCount": 0})
    check(s == 200, "scale to zero")
    s, b, _ = c.call("POST", "/inference/v1/completions", {"model": name, "prompt": [1], "max_tokens": 1}, bearer=True)
    check(s == 503 and "scaled to zero" in b["error"]["message"], "503 when scaled to zero")
    check(c.call("DELETE", f"/v1/accounts/{acct}/deployments/{dep}?ignoreChecks=true&hard=true")[0] == 200,
          "delete deployment")
    poll("deleted", lambda: c.call("GET", f"/v1/accounts/{acct}/deployments/{dep}")[0] == 404)


def main():
    run_against_serve(sys.argv[1], "flare-sdk-flow-", 0.2, lambda url, key: run(Client(url, key)),
                      check)


if __name__ == "__main__":
    main()
