"""python3's side of bench/json: json.loads of every line of FILE, best of REPEAT."""
import json
import sys
import time

path, repeat_n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
text = open(path, encoding="utf-8").read()
best, rows = float("inf"), 0
for _ in range(repeat_n):
    t0 = time.process_time()
    out = [json.loads(line) for line in text.splitlines() if line]
    rows = len(out)
    best = min(best, time.process_time() - t0)
    del out
print(f"python {best:.4f} {rows}")
