#!/usr/bin/env python3
"""Prints the startup/JSON benchmark as a markdown table.

usage: report.py STARTUP_JSON FLARE_DECODE_TIMES PYTHON_DECODE_TIMES DOC_BYTES
STARTUP_JSON is hyperfine's --export-json output (flare first, then luajit,
then python); the *_TIMES files hold one CPU time in seconds per line.
"""
import json
import statistics
import sys


def median_of(path):
    with open(path) as f:
        return statistics.median(float(line) for line in f if line.strip())


def main():
    with open(sys.argv[1]) as f:
        results = json.load(f)["results"]
    flare, luajit, python = (r["median"] for r in results)
    runs = len(results[0]["times"])
    print(f"### Startup (median of {runs} runs each)\n")
    print("| command | median | flare / this |")
    print("|---|---:|---:|")
    for r in results:
        print(f"| `{r['command']}` | {r['median'] * 1e3:.2f} ms | {flare / r['median']:.2f}x |")
    print(f"\nflare start vs bare luajit: {flare / luajit:.2f}x (goal <= 1.5x), "
          f"{flare * 1e3:.2f} ms (goal < 10 ms); python is {python / flare:.1f}x slower than flare.\n")

    size_mb = int(sys.argv[4]) / 1e6
    fl, py = median_of(sys.argv[2]), median_of(sys.argv[3])
    print(f"### Decode of a {size_mb:.1f} MB completions-with-logprobs document "
          "(CPU time inside the process, file read excluded, median)\n")
    print("| decoder | median | MB/s | flare / this |")
    print("|---|---:|---:|---:|")
    print(f"| flare.json.decode | {fl * 1e3:.0f} ms | {size_mb / fl:.0f} | 1.00x |")
    print(f"| python3 json.loads | {py * 1e3:.0f} ms | {size_mb / py:.0f} | {fl / py:.2f}x |")


if __name__ == "__main__":
    main()
