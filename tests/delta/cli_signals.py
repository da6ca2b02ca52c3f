"""`flare delta` and its output files: an interrupted encode or apply leaves no
temporary file behind, a finished one is flushed to disk (file, then folder) before
and after its rename, and a zstd level outside the valid range is refused.

usage: cli_signals.py FLARE
"""
import glob
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

FLARE = sys.argv[1]


def check(ok, what):
    if not ok:
        print("FAIL:", what)
        sys.exit(1)
    print("ok:", what)


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, raw in tensors:
        header[name] = {"dtype": "F32", "shape": [len(raw) // 4],
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for b in blobs:
            f.write(b)


def main():
    d = tempfile.mkdtemp(prefix="flare-delta-signals-")
    try:
        rng = random.Random(5)
        size = 48 << 20  # per tensor; four tensors
        base = [("t%d" % i, rng.randbytes(size)) for i in range(4)]
        new = []
        for name, raw in base:
            b = bytearray(raw)
            for k in range(0, len(b), 4096):
                b[k] ^= 1
            new.append((name, bytes(b)))
        write_safetensors(d + "/base.safetensors", base)
        write_safetensors(d + "/new.safetensors", new)

        r = subprocess.run([FLARE, "delta", "encode", d + "/base.safetensors",
                            d + "/new.safetensors", d + "/x.delta", "--level", "999"],
                           capture_output=True, text=True)
        check(r.returncode != 0 and "outside the valid range 1..22" in r.stderr,
              "--level 999 is refused naming the valid range: " + r.stderr.strip())
        check(not os.path.exists(d + "/x.delta"), "and writes nothing")

        r = subprocess.run([FLARE, "delta", "encode", d + "/base.safetensors",
                            d + "/new.safetensors", d + "/x.delta"], capture_output=True, text=True)
        check(r.returncode == 0, "encode: " + r.stdout.strip() + r.stderr.strip())

        for sig in (signal.SIGINT, signal.SIGTERM):
            caught = False
            for attempt in range(5):
                out = d + "/out-%d-%d.safetensors" % (sig, attempt)
                p = subprocess.Popen([FLARE, "delta", "apply", d + "/base.safetensors",
                                      d + "/x.delta", out, "--threads", "1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and p.poll() is None:
                    if glob.glob(out + ".tmp-*"):
                        p.send_signal(sig)
                        caught = True
                        break
                    time.sleep(0.0005)
                p.wait(timeout=60)
                if caught and p.returncode == 0:
                    caught = False  # it finished before the signal landed: try again
                    os.remove(out)
                    continue
                if caught:
                    check(p.returncode == -sig, "apply ends by %s" % signal.Signals(sig).name)
                    # The signal may land just after the rename: then the output is whole.
                    whole = (not os.path.exists(out) or
                             os.path.getsize(out) == os.path.getsize(d + "/new.safetensors"))
                    check(glob.glob(d + "/*.tmp-*") == [] and whole,
                          "%s mid-apply leaves no temporary file and no partial output"
                          % signal.Signals(sig).name)
                    break
            check(caught, "%s arrived while the temporary file existed" % signal.Signals(sig).name)

        strace = shutil.which("strace")
        if strace:
            out = d + "/traced.safetensors"
            r = subprocess.run([strace, "-f", "-e", "trace=fsync,rename,renameat,renameat2",
                                FLARE, "delta", "apply", d + "/base.safetensors", d + "/x.delta",
                                out], capture_output=True, text=True)
            calls = [l for l in r.stderr.splitlines() if "fsync(" in l or "rename" in l]
            kinds = ["rename" if "rename" in l else "fsync" for l in calls]
            check(r.returncode == 0 and kinds[-3:] == ["fsync", "rename", "fsync"],
                  "apply flushes the file, renames it, then flushes the folder: " + str(kinds))
        else:
            print("skipped: the fsync order check needs strace")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
