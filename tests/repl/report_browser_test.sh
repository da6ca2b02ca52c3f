#!/usr/bin/env bash
# Renders a generated run's report.html in headless Chromium and checks the
# screenshot. usage: report_browser_test.sh FLARE
set -u
FLARE=$1
HERE=$(cd "$(dirname "$0")" && pwd)
CHROMIUM=/usr/bin/chromium
if [ ! -x "$CHROMIUM" ]; then
  echo "SKIP: $CHROMIUM is missing (apt-get install -y chromium)"
  exit 77
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/run" "$WORK/profile"
"$FLARE" "$HERE/make_run_fixture.lua" "$WORK/run" 40 || { echo "FAIL: fixture"; exit 1; }
"$FLARE" report "$WORK/run" || { echo "FAIL: flare report"; exit 1; }
if grep -Eq '(src|href)="(https?:)?//' "$WORK/run/report.html"; then
  echo "FAIL: report.html refers to the network"
  exit 1
fi
timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$WORK/profile" --screenshot="$WORK/shot.png" --window-size=1200,900 \
  "file://$WORK/run/report.html" > "$WORK/chromium.log" 2>&1
if [ ! -s "$WORK/shot.png" ]; then
  echo "FAIL: chromium wrote no screenshot"
  tail -20 "$WORK/chromium.log"
  exit 1
fi
if [ -n "${FLARE_KEEP_SCREENSHOT:-}" ]; then cp "$WORK/shot.png" "$FLARE_KEEP_SCREENSHOT"; fi
python3 "$HERE/check_report_png.py" "$WORK/shot.png"
