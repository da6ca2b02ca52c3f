"""Writes a JSONL file of about SIZE_MB megabytes, the same bytes every time. KIND:
  chat     chat-style dataset rows (three messages of pseudo-word text, a few escapes
           and non-ASCII letters, an id, an integer answer, tags)
  metrics  metrics.jsonl rows as flare.recipe writes them (a dozen numbers, a string)
  mixed    the two alternating (default)
usage: python3 gen.py OUT SIZE_MB [KIND]"""
import json
import random
import sys

out, size_mb = sys.argv[1], float(sys.argv[2])
kind = sys.argv[3] if len(sys.argv) > 3 else "mixed"
assert kind in ("chat", "metrics", "mixed"), kind
rng = random.Random(16)
# A vocabulary of 5000 pseudo-words, a few with escapes and non-ASCII letters.
words = ["".join(rng.choice("etaoinshrdlucmfwypvbgkqjxz") for _ in range(rng.randint(1, 10)))
         for _ in range(5000)]
words += ["naïve", "tab\there", "quote\"d", "line\nbreak", "–", "中文", "ÿes", "42", "3.14"]


def text(n):
    return " ".join(rng.choice(words) for _ in range(n))


target = int(size_mb * 1e6)
written, i = 0, 0
with open(out, "w", encoding="utf-8") as f:
    while written < target:
        i += 1
        if kind == "chat" or (kind == "mixed" and i % 2):
            row = {"id": f"ex-{i}", "messages": [
                {"role": "system", "content": text(8)},
                {"role": "user", "content": text(rng.randint(10, 60))},
                {"role": "assistant", "content": text(rng.randint(10, 120))}],
                "answer": rng.randint(0, 10**6), "tags": ["synthetic", "v1"], "weight": 1.0}
        else:
            row = {"step": i // 2, "time": 1.7e9 + i * 0.37, "reward": rng.random(),
                   "pass@1": rng.random(), "loss": rng.random() * 3, "kl": rng.random() * 1e-3,
                   "lr": 1e-5, "truncated": 0, "groups_kept": rng.randint(0, 8),
                   "curve": "▁▂▃▄▅▆▇█", "done": False, "note": None}
        line = json.dumps(row, ensure_ascii=False) + "\n"
        f.write(line)
        written += len(line.encode("utf-8"))
