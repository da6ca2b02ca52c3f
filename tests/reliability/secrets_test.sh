#!/usr/bin/env bash
# A distinctive API key (and a distinctive wrong one), made for this run, goes through everything
# a user runs: `flare serve` with the key from the environment and from a key file, every recipe
# of scripts/ with short settings and with --dry-run, the REPL with piped input and on a terminal
# (tmux, when installed), and failing requests (wrong key, unknown deployment, unknown route,
# server faults, an uncaught error). Then all their output, the run directories (config.json,
# metrics, checkpoints, reports), the cleanup log, and the servers' state dirs (logs, database,
# buckets) are searched: neither key appears, not even in part; the redacted form does.
# usage: secrets_test.sh FLARE [SOURCE_DIR]
set -u
FLARE=$1
ROOT=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
HERE=$ROOT/tests/reliability
WORK=$(mktemp -d)
OUT=$WORK/out          # everything searched
SECRET=$WORK/secret    # the key file itself, not searched
mkdir -p "$OUT/home" "$OUT/xdg-state" "$OUT/xdg-config" "$OUT/runs" "$SECRET"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "${TMUX_SOCKET:-}" ] && tmux -L "$TMUX_SOCKET" kill-server >/dev/null 2>&1
  if [ -n "${FLARE_SECRETS_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
export HOME=$OUT/home XDG_STATE_HOME=$OUT/xdg-state XDG_CONFIG_HOME=$OUT/xdg-config
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
KEY="fw_$(hex 16)"
WRONG="fw_$(hex 16)"
REDACTED="fw_…${KEY: -4}"
printf '%s\n' "$KEY" > "$SECRET/key"
chmod 600 "$SECRET/key"

# serve NAME [VAR=VALUE...] -- [ARGS...]: starts `flare serve ARGS` with that environment and
# its output in $OUT/NAME.out; sets URL.
serve() {
  local name=$1 vars=()
  shift
  while [ "$1" != "--" ]; do vars+=("$1"); shift; done
  shift
  mkdir -p "$OUT/$name"
  env "${vars[@]}" "$FLARE" serve --port 0 --state-dir "$OUT/$name" --provision-delay 0.05 \
    --log "$@" > "$OUT/$name.out" 2>&1 &
  PIDS+=($!)
  local deadline=$((SECONDS + 30))
  URL=
  while [ -z "$URL" ] && ((SECONDS < deadline)); do
    URL=$(grep -o 'listening on http://[0-9.:]*' "$OUT/$name.out" | cut -d' ' -f3)
    sleep 0.05
  done
  [ -n "$URL" ] || { cat "$OUT/$name.out"; fail "$name: flare serve did not start"; exit 1; }
  if [ "$KEY_ON_COMMAND_LINE" = 0 ] && tr '\0' ' ' < "/proc/$!/cmdline" | grep -qF -- "$KEY"; then
    fail "$name: the key is in flare serve's command line"
  fi
}

# The key from the environment, and from a key file; a build without those options gets it
# on the command line (and the command-line check above reports it).
KEY_ON_COMMAND_LINE=0
if "$FLARE" serve --help | grep -q -- --api-key-file; then
  serve env FLARE_EMULATOR_API_KEY="$KEY" --
  URL_ENV=$URL
  serve file -- --api-key-file "$SECRET/key"
  URL_FILE=$URL
else
  echo "note: this flare serve takes the key only with --api-key (visible in the process list)"
  KEY_ON_COMMAND_LINE=1
  serve env -- --api-key "$KEY"
  URL_ENV=$URL
  URL_FILE=$URL
fi

# run NAME ARGS...: flare with the client's environment, output in $OUT/NAME.{out,err}.
run() {
  local name=$1
  shift
  env FIREWORKS_BASE_URL="${BASE:-$URL_ENV}" FIREWORKS_API_KEY="${CLIENT_KEY:-$KEY}" \
    FLARE_EMULATOR_STATE_DIR= FLARE_EMULATOR_URL= FLARE_RUNS_DIR="$OUT/runs" \
    FLARE_CLEANUP_LOG="$OUT/cleanup.log" FLARE_HTTP_LIBCURL="${LIBCURL:-0}" \
    "$FLARE" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
}
expect() {  # expect STATUS NAME ARGS...
  local want=$1 name=$2
  shift 2
  run "$name" "$@"
  local got=$?
  [ "$got" = "$want" ] || { fail "$name exited $got, expected $want"; tail -5 "$OUT/$name.err"; }
}

S=$ROOT/scripts
for script in grpo distill hotload deploy eval; do
  expect 0 "dry-run-$script" run "$S/$script.lua" --dry-run
done
expect 0 dry-run-cleanup run "$S/cleanup.lua" --dry-run --prefix=sec-
expect 0 grpo run "$S/grpo.lua" --steps=2 --group-size=4 --deployment-id=sec-grpo
expect 0 distill run "$S/distill.lua" --problems=8 --student-steps=2 --eval-problems=2 \
  --teacher-id=sec-teacher --student-id=sec-student
expect 0 hotload run "$S/hotload.lua" --deployment-id=sec-hotload
expect 0 deploy-create run "$S/deploy.lua" --action=create --id=sec-dep
expect 0 deploy-status run "$S/deploy.lua" --action=status --id=sec-dep
expect 0 deploy-sample run "$S/deploy.lua" --action=sample --id=sec-dep --prompt=abc --n=2
expect 0 eval run "$S/eval.lua" --deployment-id=sec-dep --problems=2 --n=2
expect 0 deploy-scale run "$S/deploy.lua" --action=scale-to-zero --id=sec-dep
expect 0 cleanup-list run "$S/cleanup.lua" --prefix=sec- --dry-run
expect 0 cleanup run "$S/cleanup.lua" --prefix=sec- --delete

# Failing requests, against the server that read its key from the file.
BASE=$URL_FILE expect 1 failures run "$HERE/secrets_failures.lua" "$WRONG"
BASE=$URL_FILE CLIENT_KEY=$WRONG expect 1 wrong-key-recipe run "$S/deploy.lua" --action=status \
  --id=sec-dep
expect 0 unknown-deployment run "$S/deploy.lua" --action=status --id=sec-nowhere
expect 1 unknown-deployment-sample run "$S/deploy.lua" --action=sample --id=sec-nowhere

# The same failures through libcurl instead of flare's own HTTP/1 client.
BASE=$URL_FILE LIBCURL=1 expect 1 failures-libcurl run "$HERE/secrets_failures.lua" "$WRONG"
# A recipe attached to the running server the recipes' way ($FLARE_EMULATOR_URL and its key).
FLARE_EMULATOR_URL=$URL_ENV FLARE_EMULATOR_API_KEY=$KEY FLARE_RUNS_DIR="$OUT/runs" \
  FIREWORKS_API_KEY= FIREWORKS_BASE_URL= FLARE_EMULATOR_STATE_DIR= \
  "$FLARE" run "$S/grpo.lua" --steps=1 --group-size=4 --deployment-id=sec-attached \
  > "$OUT/attached.out" 2> "$OUT/attached.err" || fail "grpo attached by FLARE_EMULATOR_URL failed"
# The in-process emulator generates its own key (stored in its state dir, mode 0600): searched
# for too, everywhere but that file.
FLARE_EMULATOR_STATE_DIR=$OUT/inproc FLARE_RUNS_DIR="$OUT/runs" FIREWORKS_API_KEY= \
  FIREWORKS_BASE_URL= FLARE_EMULATOR_URL= "$FLARE" run "$S/grpo.lua" --steps=1 --group-size=4 \
  > "$OUT/inproc.out" 2> "$OUT/inproc.err" || fail "grpo on the in-process emulator failed"
printf 'local fw = flare.connect{quiet = true}\nprint(fw)\nprint(fw.emulator)\n' |
  FLARE_EMULATOR_STATE_DIR=$OUT/inproc FIREWORKS_API_KEY= FIREWORKS_BASE_URL= "$FLARE" repl \
  > "$OUT/inproc-repl.out" 2>&1 || fail "the REPL on the in-process emulator failed"
INPROC_KEY=$(head -n 1 "$OUT/inproc/api_key" 2>/dev/null)
[ ${#INPROC_KEY} -ge 16 ] || fail "no generated key in the in-process emulator's state dir"
mv "$OUT/inproc/api_key" "$SECRET/inproc_key"

# The REPL: piped input, then (with tmux) an interactive session.
REPL_INPUT='fw = flare.connect{quiet = true}
print(fw)
print(fw.deployments)
print(fw:sampler{model = "accounts/local/deployments/x"})
print(pcall(fw.request, fw, {path = "/v1/no/such/route", retries = 1}))
print(pcall(flare.connect, {api_key = "'"$WRONG"'", base_url = fw.base_url, quiet = true}))
'
printf '%s' "$REPL_INPUT" | run repl-piped repl
grep -qF "$REDACTED" "$OUT/repl-piped.out" || fail "print(fw) does not show the redacted key"
if command -v tmux >/dev/null; then
  TMUX_SOCKET="flare-secrets-$$"
  T=(tmux -L "$TMUX_SOCKET" -f /dev/null)
  "${T[@]}" new-session -d -x 200 -y 50 -s repl "env TERM=xterm-256color HOME=$HOME \
XDG_STATE_HOME=$XDG_STATE_HOME XDG_CONFIG_HOME=$XDG_CONFIG_HOME FIREWORKS_BASE_URL=$URL_ENV \
FIREWORKS_API_KEY=$KEY FLARE_EMULATOR_STATE_DIR= $FLARE repl; sleep 600"
  wait_screen() {  # wait_screen REGEX: polls the pane until a line matches (30 s)
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
      "${T[@]}" capture-pane -p -S -200 -t repl | grep -Eq -- "$1" && return 0
      sleep 0.05
    done
    fail "REPL: timed out waiting for /$1/"
    return 1
  }
  typed() { "${T[@]}" send-keys -t repl -l "$1"; "${T[@]}" send-keys -t repl Enter; }
  wait_screen '^flare>'
  for line in 'fw = flare.connect{quiet = true}' 'fw' 'fw.deployments' 'tostring(fw)' \
    'fw:request{path = "/v1/no/such/route", retries = 1}' \
    "flare.connect{api_key = \"$WRONG\", base_url = fw.base_url, quiet = true}" \
    'print("done-" .. "typing")'; do
    typed "$line"
  done
  wait_screen '^done-typing'
  "${T[@]}" capture-pane -p -S -500 -t repl > "$OUT/repl-tmux.screen"
  "${T[@]}" kill-server >/dev/null 2>&1
  grep -qF "$REDACTED" "$OUT/repl-tmux.screen" || fail "the REPL's fw does not show the redacted key"
else
  echo "note: tmux is not installed; the interactive REPL was not checked"
fi

# Both servers stop; their logs are complete.
for p in "${PIDS[@]}"; do kill -INT "$p"; done
for p in "${PIDS[@]}"; do wait "$p"; done
PIDS=()

# The search. The wrong key typed on the terminal is on the tmux screen (the line echoed back)
# and in the REPL's history: the user's own input, so those two are not searched for it.
files=$(find "$OUT" -type f | wc -l)
bytes=$(du -sb "$OUT" | cut -f1)
for secret in "$KEY" "$WRONG" "$INPROC_KEY"; do
  typed='^$'
  [ "$secret" = "$WRONG" ] && typed='/repl-tmux.screen$\|/history$'
  for part in "$secret" "${secret:0:14}" "${secret:8:14}" "${secret:20:14}"; do
    hits=$(grep -rlaF -- "$part" "$OUT" | grep -v -e "$typed")
    if [ -n "$hits" ]; then
      fail "'${part:0:6}…' of a key found in:"
      echo "$hits" | sed 's/^/    /'
      for h in $hits; do grep -aF -- "$part" "$h" | head -3 | sed "s/$secret/<THE KEY>/g; s/^/      /"; done
    fi
  done
done
# On the screen, the wrong key may only be where it was typed.
if [ -f "$OUT/repl-tmux.screen" ]; then
  grep -F -- "${WRONG:8:14}" "$OUT/repl-tmux.screen" | grep -vF 'flare.connect{api_key = "' &&
    fail "the wrong key shows on the REPL screen outside the line that typed it"
  grep -qF -- "${KEY:8:14}" "$OUT/repl-tmux.screen" && fail "the key shows on the REPL screen"
fi
grep -rqaF -- "$REDACTED" "$OUT" || fail "the redacted form $REDACTED appears nowhere"
echo "searched $files files, $bytes bytes; redacted form seen in $(grep -rlaF -- "$REDACTED" "$OUT" | wc -l) files"
if [ "$failures" -gt 0 ]; then echo "$failures failed"; exit 1; fi
echo "PASS"
