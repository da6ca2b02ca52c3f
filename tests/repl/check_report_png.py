#!/usr/bin/env python3
"""Checks a screenshot of report.html: not blank, and the main metric's series
(drawn in the first palette colour) is there, spans the plot and rises.

usage: check_report_png.py SHOT.png
Decodes the PNG with zlib + struct only (8-bit RGB or RGBA, not interlaced).
"""
import struct
import sys
import zlib

SERIES = (0x1F, 0x77, 0xB4)  # palette[1] of flare.report: the main metric
SECOND = (0xD6, 0x27, 0x28)  # palette[2]: the second metric


def decode_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"FAIL: {path} is not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color_type, _, _, interlace = header
    if depth != 8 or color_type not in (2, 6) or interlace != 0:
        sys.exit(f"FAIL: unsupported PNG (depth {depth}, colour type {color_type}, interlace {interlace})")
    bpp = 3 if color_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        filt = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if filt == 1:
                line[i] = (line[i] + a) & 255
            elif filt == 2:
                line[i] = (line[i] + b) & 255
            elif filt == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append(line)
        prev = line
    return width, height, bpp, rows


def near(px, color, tol=40):
    return all(abs(px[i] - color[i]) <= tol for i in range(3))


def main():
    width, height, bpp, rows = decode_png(sys.argv[1])
    background = 0
    series, second = [], 0
    for y, line in enumerate(rows):
        for x in range(width):
            px = line[x * bpp:x * bpp + 3]
            if min(px) >= 245:
                background += 1
            if near(px, SERIES):
                series.append((x, y))
            elif near(px, SECOND):
                second += 1
    total = width * height
    print(f"{width}x{height}: {total - background} non-background pixels, "
          f"{len(series)} of the main series, {second} of the second")
    if total - background < total // 50:
        sys.exit("FAIL: the page is (almost) blank")
    if len(series) < 300:
        sys.exit("FAIL: too few pixels of the main metric's colour: the series is not drawn")
    if second < 200:
        sys.exit("FAIL: the second metric's series is not drawn")
    xs = [x for x, _ in series]
    left, right = min(xs), max(xs)
    print(f"main series spans x {left}..{right}")
    if right - left < 300:
        sys.exit("FAIL: the main series does not span its plot")
    edge = (right - left) // 8
    first_ys = [y for x, y in series if x <= left + edge]
    last_ys = [y for x, y in series if x >= right - edge]
    first_y = sum(first_ys) / len(first_ys)
    last_y = sum(last_ys) / len(last_ys)
    print(f"mean y at the start {first_y:.0f}, at the end {last_y:.0f}")
    if not last_y < first_y - 60:
        sys.exit("FAIL: the rising reward series does not rise on the page")
    print("PASS: report screenshot shows the plotted series")


main()
