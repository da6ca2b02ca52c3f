"""`flare delta` on safetensors files that flare did not write.

An independent writer lays files out as other tools do (tensors in any order,
the header padded with spaces, a 3-byte tensor first so later ones sit at odd
offsets, scalars, empty tensors, non-ASCII and control characters in names),
and an independent reader applies the reference implementation's checks to
what flare writes (tensors contiguous from offset 0, nothing after the last,
sizes matching shapes). The CLI's encode, inspect (table and --json), apply and
verify run on them, then bad inputs (each a one-line error, with control
characters in names escaped, and no file left behind). Usage: safetensors_cli.py FLARE_EXECUTABLE
"""
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import unicodedata

FLARE = sys.argv[1]
SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
         "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
failures = 0


def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures += 1


def write(path, tensors, metadata=None, order=None):
    """tensors: name -> (dtype, shape, bytes), stored back to back in `order`."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in order or list(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def read_strict(path):
    """The reference reader's checks; returns (metadata, name -> (dtype, shape, bytes))."""
    buf = open(path, "rb").read()
    (n,) = struct.unpack("<Q", buf[:8])
    assert n <= 100_000_000 and buf[8:9] == b"{", "header"
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None)
    assert metadata is None or all(isinstance(v, str) for v in metadata.values()), "metadata"
    end = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        begin, stop = info["data_offsets"]
        assert begin == end and stop >= begin, f"{name}: offsets {begin},{stop} after {end}"
        count = 1
        for d in info["shape"]:
            count *= d
        assert stop - begin == count * SIZES[info["dtype"]], f"{name}: size"
        end = stop
    assert 8 + n + end == len(buf), "bytes after the last tensor"
    data = buf[8 + n:]
    return metadata, {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
                      for k, v in header.items()}


def flare(*args):
    return subprocess.run([FLARE, "delta", *args], capture_output=True, text=True, timeout=120)


def columns(s):
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in s)


def changed_elements(a, b, size):
    return sum(a[i:i + size] != b[i:i + size] for i in range(0, len(a), size))


rng = random.Random(7)


def noise(n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def nudged(raw, size, every):
    out = bytearray(raw)
    for i in range(0, len(out), size * every):
        out[i] ^= 1
    return bytes(out)


base, nxt = {"tag": ("U8", [3], b"xyz")}, {"tag": ("U8", [3], b"xyw")}
for dtype, size in SIZES.items():
    raw = bytes(rng.getrandbits(1) for _ in range(6000)) if dtype == "BOOL" else noise(6000 * size)
    base["w." + dtype.lower()] = (dtype, [60, 100], raw)
    nxt["w." + dtype.lower()] = (dtype, [60, 100], nudged(raw, size, 29))
base["scalar"], nxt["scalar"] = ("F32", [], struct.pack("<f", 1.5)), ("F32", [], struct.pack("<f", -0.0))
base["empty"] = nxt["empty"] = ("BF16", [0, 8], b"")
base["same"] = nxt["same"] = ("I16", [7, 3], noise(42))
base["ünïcode/名"], nxt["ünïcode/名"] = ("U8", [4], b"abcd"), ("U8", [4], b"abce")
base["esc\x1b[31mred"] = nxt["esc\x1b[31mred"] = ("U8", [2], b"zz")
base["gone"] = ("F16", [5], noise(10))
nxt["added"] = ("I32", [2, 2], noise(16))
base["retyped"], nxt["retyped"] = ("F32", [4], noise(16)), ("BF16", [4], noise(8))
base["reshaped"], nxt["reshaped"] = ("U8", [2, 3], noise(6)), ("U8", [3, 3], noise(9))

with tempfile.TemporaryDirectory() as tmp:
    p = lambda name: os.path.join(tmp, name)
    order = ["tag"] + rng.sample(sorted(set(base) - {"tag"}), len(base) - 1)
    write(p("base.safetensors"), base, {"format": "pt"}, order)
    write(p("next.safetensors"), nxt, {"format": "pt", "step": "2"},
          ["tag"] + sorted(set(nxt) - {"tag"}, reverse=True))

    r = flare("encode", p("base.safetensors"), p("next.safetensors"), p("d.delta"))
    check(r.returncode == 0 and "smaller" in r.stdout, "encode of another writer's files: " + r.stdout.strip() + r.stderr.strip())

    r = flare("inspect", p("d.delta"), "--json")
    info = json.loads(r.stdout) if r.returncode == 0 else {"tensors": []}
    by_name = {t["name"]: t for t in info["tensors"]}
    check(set(by_name) == set(base) | set(nxt), "inspect --json lists every tensor of both files")
    want_change = {"gone": "removed", "added": "added", "retyped": "retyped", "reshaped": "retyped",
                   "same": "unchanged", "empty": "unchanged", "esc\x1b[31mred": "unchanged"}
    for name, change in want_change.items():
        got = by_name.get(name, {}).get("change")
        check(got == change, f"inspect: {name!r} is {change} (got {got})")
    for name, (dtype, shape, raw) in nxt.items():
        if name in base and base[name][:2] == (dtype, shape) and name in by_name:
            t = by_name[name]
            want = changed_elements(base[name][2], raw, SIZES[dtype])
            check(t["changed"] == want and t["dtype"] == dtype and t["shape"] == shape,
                  f"inspect: {name!r} has {want} changed elements of {t['elements']} (got {t['changed']})")
    check(info.get("metadata") == {"format": "pt", "step": "2"}, "inspect: the new file's metadata")

    r = flare("inspect", p("d.delta"))
    lines = r.stdout.splitlines()
    rows = [line for line in lines[1:] if not line.startswith("total:")]
    check("\x1b" not in r.stdout and "esc\\x1B[31mred" in r.stdout,
          "inspect table writes a control character in a name as \\x1B")
    starts = set()
    for row in rows:
        name_end = row.index("  ") if not row.startswith("tensor") else len("tensor")
        rest = row[name_end:]
        starts.add(columns(row[:name_end]) + len(rest) - len(rest.lstrip(" ")))
    check(len(rows) == len(by_name) + 1 and len(starts) == 1,
          f"inspect table: the change column starts at one screen column ({sorted(starts)})")

    r = flare("apply", p("base.safetensors"), p("d.delta"), p("out.safetensors"))
    check(r.returncode == 0, "apply: " + r.stdout.strip() + r.stderr.strip())
    try:
        meta, tensors = read_strict(p("out.safetensors"))
        check(tensors == nxt and meta == {"format": "pt", "step": "2"},
              "apply's output passes the reference reader's checks and equals the new file's tensors")
    except (AssertionError, OSError, ValueError) as e:
        check(False, f"apply's output is a valid safetensors file: {e}")

    r = flare("verify", p("base.safetensors"), p("d.delta"), p("next.safetensors"))
    check(r.returncode == 0 and r.stdout.startswith("ok:"), "verify accepts the new file")
    r = flare("verify", p("base.safetensors"), p("d.delta"), p("base.safetensors"))
    check(r.returncode != 0 and "verify" in r.stderr, "verify refuses a file that is not the new one: " + r.stderr.strip())

    # Bad input: a clear error, exit status 1, and no output file, not even a temporary one.
    delta = open(p("d.delta"), "rb").read()
    flipped = bytearray(delta)
    flipped[len(delta) // 2] ^= 0x40
    open(p("flipped.delta"), "wb").write(flipped)
    open(p("short.delta"), "wb").write(delta[: len(delta) - 9])
    open(p("empty.delta"), "wb").write(b"")
    raw = open(p("base.safetensors"), "rb").read()
    open(p("trailing.safetensors"), "wb").write(raw + b"\0\0\0")
    other = dict(base)
    other["esc\x1b[31mred"] = ("U8", [2], b"zy")
    write(p("other.safetensors"), other, {"format": "pt"}, order)
    cases = [
        ("a base whose tensor differs", p("other.safetensors"), p("d.delta"), "esc\\x1B[31mred"),
        ("a flipped byte", p("base.safetensors"), p("flipped.delta"), ""),
        ("a truncated delta", p("base.safetensors"), p("short.delta"), ""),
        ("an empty delta", p("base.safetensors"), p("empty.delta"), ""),
        ("the wrong base", p("next.safetensors"), p("d.delta"), "does not apply to this base"),
        ("a base with trailing bytes", p("trailing.safetensors"), p("d.delta"), "trailing"),
    ]
    for what, b, d, needle in cases:
        before = set(os.listdir(tmp))
        r = flare("apply", b, d, p("bad-out.safetensors"))
        after = set(os.listdir(tmp))
        message = r.stderr.strip().splitlines()[0] if r.stderr.strip() else ""
        check(r.returncode == 1 and message.startswith("flare delta: ") and needle in message
              and "\x1b" not in r.stderr and after == before, f"apply with {what}: {message}")

print(f"{failures} failed")
sys.exit(1 if failures else 0)
