"""LoRA adapters between flare and PEFT's folder format, checked by a reader that is not flare's.

Against a real `flare serve`: a LoRA trainer job (REST, as the SDK sends it) trains a
few steps and saves its adapter (save_weights_for_sampler) and the adapter folded into
full weights (checkpoint_type merged_base). This script reads both with its own
safetensors reader and PEFT's naming and shapes (base_model.model.<module>.lora_A.weight
[r, in], lora_B.weight [out, r], scale lora_alpha / r), recomputes W + (alpha / r) B A
from the base weights, and compares it with flare's merged checkpoint. The output head
(lm_head, trained by default as the SDK's train_unembed) is tied to the input embedding
in the base, so its merged weight is embed_tokens + (alpha / r) B A, written as an untied
lm_head.weight while embed_tokens stays the base's. Then it writes a PEFT folder itself
(another tool's: three target modules with lm_head, F32, its own tensor order),
hotloads it and checks that the deployment serves what the same adapter merged by this
script into full F32 weights serves. Usage: peft_adapter.py FLARE_EXECUTABLE
"""
import json
import math
import os
import random
import re
import shutil
import struct
import sys
import time
import urllib.error
import urllib.request

from serve_run import run_against_serve

BASE_MODEL = "accounts/local/models/tiny-gpt"
PREFIX = "base_model.model."
TARGETS = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
           "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
HEAD = "lm_head"  # the output head; tied models share its weight with the input embedding
EMBED = "model.embed_tokens.weight"


# ---- safetensors, from the format's description --------------------------------------------

def read_safetensors(path):
    """{name: (dtype, shape, [floats])} for BF16 and F32 tensors."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = body[start:end]
        count = math.prod(info["shape"])
        if info["dtype"] == "BF16":
            halves = struct.unpack("<%dH" % count, raw)
            values = list(struct.unpack("<%df" % count, struct.pack("<%dI" % count, *[h << 16 for h in halves])))
        elif info["dtype"] == "F32":
            values = list(struct.unpack("<%df" % count, raw))
        else:
            raise AssertionError(f"{path}: tensor {name} has dtype {info['dtype']}")
        out[name] = (info["dtype"], info["shape"], values)
    return out


def write_safetensors(path, tensors):
    """tensors: [(name, shape, [floats])] written as F32, in the given order."""
    header, blobs, at = {}, [], 0
    for name, shape, values in tensors:
        blob = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [at, at + len(blob)]}
        blobs.append(blob)
        at += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def bf16_round(x):
    (bits,) = struct.unpack("<I", struct.pack("<f", x))
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def bf16_ulp(x):
    if x == 0:
        return 0.0
    return 2.0 ** (math.floor(math.log2(abs(x))) - 7)


# ---- PEFT semantics -------------------------------------------------------------------------

def module_of(layer, target):
    return f"model.layers.{layer}.{TARGETS[target]}.{target}"


def modules(targets, layers):
    """The adapted modules' names: every layer's projections, then lm_head when targeted."""
    names = [module_of(layer, t) for layer in range(layers) for t in targets if t != HEAD]
    return names + ([HEAD] if HEAD in targets else [])


def base_weight(base, m):
    """The weight a module computes with: lm_head's is the embedding unless the model unties it."""
    if m == HEAD and HEAD + ".weight" not in base:
        return base[EMBED]
    return base[m + ".weight"]


def merge(base, adapter, scale, targets, layers):
    """W + scale * B @ A for each adapted module, in double precision: {name: [floats]}."""
    merged = {}
    for m in modules(targets, layers):
        _, (out, inn), w = base_weight(base, m)
        _, (r, a_in), a = adapter[PREFIX + m + ".lora_A.weight"]
        _, (b_out, r2), b = adapter[PREFIX + m + ".lora_B.weight"]
        assert (a_in, b_out, r2) == (inn, out, r), f"{m}: A {r}x{a_in}, B {b_out}x{r2}, W {out}x{inn}"
        res = list(w)
        for o in range(out):
            brow = b[o * r:(o + 1) * r]
            for i in range(inn):
                res[o * inn + i] = w[o * inn + i] + scale * sum(brow[k] * a[k * inn + i] for k in range(r))
        merged[m + ".weight"] = res
    return merged


# ---- HTTP -----------------------------------------------------------------------------------

class Client:
    def __init__(self, base, key):
        self.base, self.key = base, key

    def call(self, method, path, body=None, headers=None):
        h = {"Content-Type": "application/json", "X-Api-Key": self.key, "Authorization": "Bearer " + self.key}
        h.update(headers or {})
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


def poll(what, fn, timeout_s=30):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok -", what)


def bucket_of(url):
    assert url.startswith("file://"), url
    return url[len("file://"):].rstrip("/")


def start_job(c, acct, job, config):
    s, b = c.call("POST", f"/v1/accounts/{acct}/rlorTrainerJobs?rlorTrainerJobId={job}",
                  {"serviceMode": True, "trainingConfig": config})
    check(s == 200, f"create trainer job {job} ({b})")
    b = poll(job + " RUNNING", lambda: (lambda j: j if j.get("state") == "JOB_STATE_RUNNING" else None)(
        c.call("GET", f"/v1/accounts/{acct}/rlorTrainerJobs/{job}")[1]))
    return f"/training/v1/rlorTrainerJobs/{acct}/{job}/api/v1", bucket_of(b["hotLoadBucketUrl"])


def hotload(c, name, identity):
    hl = {"fireworks-model": BASE_MODEL, "fireworks-deployment": name}
    s, b = c.call("POST", "/hot_load/v1/models/hot_load", {"identity": identity}, headers=hl)
    check(s == 200, f"hotload {identity} accepted ({b})")

    def state():
        r = c.call("GET", "/hot_load/v1/models/hot_load", headers=hl)[1]["replicas"][0]
        return r if r["loading_state"]["target_snapshot_identity"] == identity and \
            r["loading_state"]["stage"] in ("idle", "error") else None
    return poll("hotload " + identity, state)


def served_logprobs(c, name, tokens):
    s, b = c.call("POST", "/inference/v1/completions",
                  {"model": name, "prompt": tokens, "max_tokens": 0, "echo": True, "logprobs": True,
                   "temperature": 0})
    assert s == 200, b
    return [t["logprob"] for t in b["choices"][0]["logprobs"]["content"][1:len(tokens)]]


def run(c):
    acct = c.call("GET", "/v1/accounts?pageSize=2")[1]["accounts"][0]["name"].split("/", 1)[1]
    rank, alpha = 8, 16
    lora, lora_bucket = start_job(c, acct, "peft-lora", {"baseModel": BASE_MODEL, "loraRank": rank,
                                                         "loraAlpha": alpha, "learningRate": 1e-2})
    full, full_bucket = start_job(c, acct, "peft-full", {"baseModel": BASE_MODEL})
    s, _ = c.call("POST", full + "/save_weights_for_sampler", {"path": "base-0", "checkpoint_type": "base"})
    check(s == 200, "full trainer saves the untouched base")
    base = read_safetensors(os.path.join(full_bucket, "base-0", "model.safetensors"))
    layers = 1 + max(int(m.group(1)) for m in (re.match(r"model\.layers\.(\d+)\.", n) for n in base) if m)

    text = [256] + list(b"the adapter learns this line")
    datum = {"model_input": {"chunks": [{"type": "encoded_text", "tokens": text[:-1]}]},
             "loss_fn_inputs": {"target_tokens": text[1:]}}
    for _ in range(4):
        s, _ = c.call("POST", lora + "/forward_backward",
                      {"forward_backward_input": {"data": [datum], "loss_fn": "cross_entropy"}})
        assert s == 200
        s, _ = c.call("POST", lora + "/optim_step", {"adam_params": {"learning_rate": 2e-2}})
        assert s == 200
    s, _ = c.call("POST", lora + "/save_weights_for_sampler", {"path": "adapter-4", "checkpoint_type": "base"})
    check(s == 200, "save the adapter")
    s, _ = c.call("POST", lora + "/save_weights_for_sampler", {"path": "merged-4", "checkpoint_type": "merged_base"})
    check(s == 200, "save the merged base")

    folder = os.path.join(lora_bucket, "adapter-4")
    check(sorted(os.listdir(folder)) == ["adapter_config.json", "adapter_model.safetensors"],
          "a PEFT folder: adapter_config.json and adapter_model.safetensors")
    with open(os.path.join(folder, "adapter_config.json")) as f:
        config = json.load(f)
    check(config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM", "peft_type LORA, CAUSAL_LM")
    check(config["r"] == rank and config["lora_alpha"] == alpha, "r and lora_alpha as the job asked")
    check(sorted(config["target_modules"]) == sorted(list(TARGETS) + [HEAD]),
          "every projection and lm_head (train_unembed, the SDK's default) are target modules")
    check(config["bias"] == "none" and config["base_model_name_or_path"] == BASE_MODEL,
          "bias none; base_model_name_or_path names the base model")
    check(not config.get("use_rslora") and not config.get("use_dora"), "plain LoRA (no rslora, no dora)")

    adapter = read_safetensors(os.path.join(folder, "adapter_model.safetensors"))
    targets = list(TARGETS) + [HEAD]
    expected = set()
    for m in modules(targets, layers):
        out, inn = base_weight(base, m)[1]
        expected.add(PREFIX + m + ".lora_A.weight")
        expected.add(PREFIX + m + ".lora_B.weight")
        check(adapter[PREFIX + m + ".lora_A.weight"][1] == [rank, inn], f"{m}.lora_A is [r, in] = [{rank}, {inn}]")
        check(adapter[PREFIX + m + ".lora_B.weight"][1] == [out, rank], f"{m}.lora_B is [out, r] = [{out}, {rank}]")
    check(PREFIX + "lm_head.lora_B.weight" in expected and
          adapter[PREFIX + "lm_head.lora_B.weight"][1] == [base[EMBED][1][0], rank],
          "base_model.model.lm_head.lora_B.weight is [vocab, r]")
    check(set(adapter) == expected, f"exactly the {len(expected)} PEFT tensor names")
    check({d for d, _, _ in adapter.values()} <= {"BF16", "F32"}, "BF16 or F32 tensors")
    check(all(any(v != 0 for v in adapter[n][2]) for n in expected), "training moved every A and B")

    recomputed = merge(base, adapter, alpha / rank, targets, layers)
    merged = read_safetensors(os.path.join(lora_bucket, "merged-4", "model.safetensors"))
    check(set(merged) == set(base) | {"lm_head.weight"},
          "the merged checkpoint has the base's tensors and an untied lm_head.weight")
    check(merged[EMBED][2] == base[EMBED][2], "the input embedding stays the base's")
    worst, changed = 0.0, 0
    for name, (_, shape, values) in merged.items():
        if name not in recomputed:
            check(values == base[name][2], f"{name} is the base's, untouched")
            continue
        for got, want in zip(values, recomputed[name]):
            err = abs(got - want)
            assert err <= bf16_ulp(want) + 1e-30, f"{name}: flare {got}, W + (alpha/r) B A = {want}"
            worst = max(worst, err / max(abs(want), 1e-30))
        changed += values != base_weight(base, name[:-len(".weight")])[2]
    check(changed == len(recomputed), "every adapted matrix differs from the base")
    print(f"ok - merged = W + (alpha/r) B A to one bf16 step (worst relative error {worst:.2e})")

    # Another tool's adapter: q_proj and v_proj only, F32, written here; hotloaded onto a
    # deployment it must serve what the same adapter merged here into F32 weights serves.
    dep = "peft-serve"
    name = f"accounts/{acct}/deployments/{dep}"
    s, b = c.call("POST", f"/v1/accounts/{acct}/deployments?deploymentId={dep}",
                  {"baseModel": BASE_MODEL, "minReplicaCount": 1, "maxReplicaCount": 1, "enableHotLoad": True})
    check(s == 200, "create a deployment")
    poll("READY", lambda: c.call("GET", f"/v1/accounts/{acct}/deployments/{dep}")[1]["state"] == "READY")
    bucket = bucket_of(c.call("GET", f"/v1/accounts/{acct}/deployments/{dep}")[1]["hotLoadBucketUrl"])
    rng = random.Random(7)
    r2, alpha2, targets2 = 4, 12, ["v_proj", "lm_head", "q_proj"]
    tensors = []
    for m in reversed(modules(targets2, layers)):
        out, inn = base_weight(base, m)[1]
        tensors.append((PREFIX + m + ".lora_B.weight", [out, r2], [rng.gauss(0, 0.05) for _ in range(out * r2)]))
        tensors.append((PREFIX + m + ".lora_A.weight", [r2, inn], [rng.gauss(0, 0.05) for _ in range(r2 * inn)]))
    own = os.path.join(bucket, "other-tool")
    os.makedirs(own)
    write_safetensors(os.path.join(own, "adapter_model.safetensors"), tensors)
    with open(os.path.join(own, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r2, "lora_alpha": alpha2,
                   "target_modules": targets2, "lora_dropout": 0.05, "bias": "none",
                   "base_model_name_or_path": "tiny-gpt", "fan_in_fan_out": False}, f)
    theirs = {n: ("F32", shape, v) for n, shape, v in tensors}
    merged2 = merge(base, theirs, alpha2 / r2, targets2, layers)
    names = sorted(set(base) | set(merged2))  # merged2 adds an untied lm_head.weight
    full_weights = [(n, base_weight(base, n[:-len(".weight")])[1], merged2[n] if n in merged2 else base[n][2])
                    for n in names]
    os.makedirs(os.path.join(bucket, "other-tool-merged"))
    write_safetensors(os.path.join(bucket, "other-tool-merged", "model.safetensors"), full_weights)

    probe = [256] + list(b"one two three")
    before = served_logprobs(c, name, probe)
    st = hotload(c, name, "other-tool")
    check(st["loading_state"]["stage"] == "idle" and st["current_snapshot_identity"] == "other-tool",
          "another tool's adapter hotloads")
    check(st["loaded_adapters"] == [{"identity": "other-tool", "status": "loaded"}], "loaded_adapters lists it")
    with_adapter = served_logprobs(c, name, probe)
    hotload(c, name, "other-tool-merged")
    merged_served = served_logprobs(c, name, probe)
    diff = max(abs(a - b) for a, b in zip(with_adapter, merged_served))
    moved = max(abs(a - b) for a, b in zip(with_adapter, before))
    check(moved > 1e-3, f"the adapter changes what is served (by up to {moved:.3f})")
    check(diff <= 1e-4, f"base + adapter at run time serves the merged weights' logprobs (max diff {diff:.1e})")

    # Not a LoRA flare can serve: refused, naming the field; the deployment keeps serving.
    bad = os.path.join(bucket, "dora")
    shutil.copytree(own, bad)
    with open(os.path.join(bad, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": r2, "lora_alpha": alpha2, "target_modules": targets2,
                   "use_dora": True}, f)
    st = hotload(c, name, "dora")
    check(st["loading_state"]["stage"] == "error" and "use_dora" in st["loading_state"]["message"],
          "a DoRA folder is refused naming use_dora")
    check(st["current_snapshot_identity"] == "other-tool-merged", "the previous snapshot is still served")


def main():
    run_against_serve(sys.argv[1], "flare-peft-", 0.05, lambda url, key: run(Client(url, key)),
                      check)


if __name__ == "__main__":
    main()
