#!/usr/bin/env python3
"""Writes a completions-with-logprobs JSON document of about SIZE_MB megabytes.

usage: make_doc.py OUT [SIZE_MB]

The shape is an OpenAI/Fireworks completions response with n choices, each with
tokens, token_logprobs, top_logprobs (5 alternatives) and text_offset, which is
what a sampler decodes in bulk. Deterministic (fixed seed).
"""
import json
import random
import sys


def choice(rng, index, length):
    tokens = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz ,.") for _ in range(rng.randint(1, 6)))
              for _ in range(length)]
    logprobs = [-rng.random() * 4 for _ in range(length)]
    top = [{t: lp, tokens[(i + 1) % length]: lp - 0.5, tokens[(i + 2) % length]: lp - 1.25,
            tokens[(i + 3) % length]: lp - 2.0, tokens[(i + 4) % length]: lp - 3.5}
           for i, (t, lp) in enumerate(zip(tokens, logprobs))]
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t)
    return {"index": index, "text": "".join(tokens), "finish_reason": "length",
            "raw_output": {"completion_token_ids": [rng.randint(0, 255) for _ in range(length)]},
            "logprobs": {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": top,
                         "text_offset": offsets}}


def main():
    out = sys.argv[1]
    size = float(sys.argv[2]) if len(sys.argv) > 2 else 50.0
    rng = random.Random(20261123)
    responses, written, i = [], 0, 0
    while written < size * 1e6:
        r = {"id": f"cmpl-{i:08d}", "object": "text_completion", "created": 1795449600 + i,
             "model": "accounts/local/models/tiny-gpt",
             "choices": [choice(rng, k, 64) for k in range(8)],
             "usage": {"prompt_tokens": 32, "completion_tokens": 512, "total_tokens": 544}}
        text = json.dumps(r)
        written += len(text) + 1
        responses.append(r)
        i += 1
    with open(out, "w") as f:
        json.dump({"object": "list", "data": responses}, f)


if __name__ == "__main__":
    main()
