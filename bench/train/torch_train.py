#!/usr/bin/env python3
"""The baseline of bench_train: the emulator's transformer written independently
in PyTorch (float32, OpenBLAS), timed on the same forward + backward batch.

    torch_train.py MODEL REPEATS THREADS

Prints one line "THREADS TOKENS_PER_S TOKENS_PER_CPU_S" (best of REPEATS
timings after a warm-up), which bench_train reads. THREADS bounds both
PyTorch's OpenMP pool and OpenBLAS's own threads (set before torch loads). The
architecture is the one of emulator/model/model.hpp: byte vocabulary of 258,
RMSNorm before each block, rotary positions on (i, i + head_dim/2) pairs,
causal multi-head attention, a SiLU-gated MLP and tied input/output embeddings;
the loss is the summed cross-entropy of every position. Exits with status 3
(and a message) when torch is not installed.
"""
import os
import sys
import time

CONFIGS = {  # d_model, n_layers, n_heads, d_ff (emulator/model/config.cpp)
    "tiny-gpt": (64, 2, 4, 192),
    "tiny-gpt-m": (128, 4, 4, 384),
}
VOCAB, BOS, BATCH, LENGTH = 258, 256, 64, 64
ROPE_THETA, NORM_EPS = 10000.0, 1e-5


def batch():
    """The same 64 x 64 token batch as bench_train (its LCG)."""
    x, rows = 12345, []
    for _ in range(BATCH):
        seq = [BOS]
        for _ in range(LENGTH):
            x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            seq.append((x >> 33) % 256)
        rows.append(seq)
    return rows


def build(torch, d, n_layers, n_heads, d_ff):
    gen = torch.Generator().manual_seed(1)

    def matrix(rows, cols):
        return (torch.randn(rows, cols, generator=gen) * 0.02).requires_grad_()

    params = {"embed": matrix(VOCAB, d), "norm": torch.ones(d, requires_grad=True)}
    layers = []
    for _ in range(n_layers):
        layers.append({
            "ln1": torch.ones(d, requires_grad=True),
            "wq": matrix(d, d), "wk": matrix(d, d), "wv": matrix(d, d), "wo": matrix(d, d),
            "ln2": torch.ones(d, requires_grad=True),
            "gate": matrix(d_ff, d), "up": matrix(d_ff, d), "down": matrix(d, d_ff),
        })
    hd = d // n_heads
    inv = ROPE_THETA ** (-torch.arange(0, hd // 2, dtype=torch.float64) * 2.0 / hd)
    ang = torch.arange(LENGTH, dtype=torch.float64)[:, None] * inv[None, :]
    return params, layers, ang.cos().float(), ang.sin().float()


def forward_loss(torch, model, tokens, targets, n_heads):
    F = torch.nn.functional
    params, layers, cos, sin = model
    B, T = tokens.shape
    d = params["embed"].shape[1]
    hd = d // n_heads
    half = hd // 2
    mask = torch.full((T, T), float("-inf")).triu(1)

    def rmsnorm(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS) * g

    def rope(x):  # x [B, H, T, hd]
        a, b = x[..., :half], x[..., half:]
        return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)

    def heads(x):
        return x.view(B, T, n_heads, hd).transpose(1, 2)

    x = F.embedding(tokens, params["embed"])
    for l in layers:
        h = rmsnorm(x, l["ln1"])
        q, k, v = rope(heads(h @ l["wq"].t())), rope(heads(h @ l["wk"].t())), heads(h @ l["wv"].t())
        att = torch.softmax(q @ k.transpose(-1, -2) * hd ** -0.5 + mask, dim=-1)
        x = x + (att @ v).transpose(1, 2).reshape(B, T, d) @ l["wo"].t()
        h = rmsnorm(x, l["ln2"])
        x = x + (F.silu(h @ l["gate"].t()) * (h @ l["up"].t())) @ l["down"].t()
    logits = rmsnorm(x, params["norm"]) @ params["embed"].t()
    return F.cross_entropy(logits.view(-1, VOCAB), targets.reshape(-1), reduction="sum")


def rate(torch, name, threads, repeats):
    d, n_layers, n_heads, d_ff = CONFIGS[name]
    torch.set_num_threads(threads)
    model = build(torch, d, n_layers, n_heads, d_ff)
    rows = torch.tensor(batch())
    tokens, targets = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()
    n_tokens = tokens.numel()
    best_wall = best_cpu = 0.0
    for r in range(repeats + 1):  # the first run warms up
        w0, c0 = time.perf_counter(), time.process_time()
        forward_loss(torch, model, tokens, targets, n_heads).backward()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if r > 0:
            best_wall, best_cpu = max(best_wall, n_tokens / wall), max(best_cpu, n_tokens / cpu)
    return best_wall, best_cpu


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in CONFIGS:
        sys.exit("usage: torch_train.py MODEL REPEATS THREADS")
    threads = int(sys.argv[3])
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    try:
        import torch
    except ImportError:
        print("torch_train.py: PyTorch is not installed (Debian: python3-torch, libopenblas0)",
              file=sys.stderr)
        sys.exit(3)
    wall, cpu = rate(torch, sys.argv[1], threads, int(sys.argv[2]))
    print(f"{threads} {wall:.1f} {cpu:.1f}")


if __name__ == "__main__":
    main()
