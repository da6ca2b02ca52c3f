# usage: python3 decode.py FILE -> CPU seconds of json.loads (file read excluded)
import json
import sys
import time

with open(sys.argv[1], "rb") as f:
    text = f.read().decode("utf-8")
t0 = time.process_time()
doc = json.loads(text)
t1 = time.process_time()
assert len(doc["data"]) > 0
print(f"{t1 - t0:.6f}")
