#!/usr/bin/env bash
# Drives `flare repl` on a real terminal (a detached tmux session) and checks
# what the screen shows. Usage: repl_tmux_test.sh FLARE SCENARIO
# Every wait polls the screen until a deadline; nothing sleeps a fixed time.
set -u

FLARE=$1
SCENARIO=$2
if ! command -v tmux > /dev/null; then
  echo "SKIP: tmux is not installed (apt-get install -y tmux)"
  exit 77
fi

WORK=$(mktemp -d)
SOCKET="flare-repl-test-$$"
T=(tmux -L "$SOCKET" -f /dev/null)
cleanup() {
  "${T[@]}" kill-server > /dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

export HOME="$WORK/home"
export XDG_STATE_HOME="$WORK/state"
export XDG_CONFIG_HOME="$WORK/config"
mkdir -p "$HOME" "$XDG_STATE_HOME" "$XDG_CONFIG_HOME/flare"
SESSION=repl

fail() {
  echo "FAIL [$SCENARIO]: $*"
  echo "--- screen ---"
  screen
  echo "--------------"
  exit 1
}

screen() { "${T[@]}" capture-pane -p -t "$SESSION" 2> /dev/null | sed -e 's/[[:space:]]*$//'; }

start() {
  "${T[@]}" kill-session -t "$SESSION" > /dev/null 2>&1
  "${T[@]}" new-session -d -x 120 -y 40 -s "$SESSION" \
    "env TERM=xterm-256color HOME=$HOME XDG_STATE_HOME=$XDG_STATE_HOME XDG_CONFIG_HOME=$XDG_CONFIG_HOME $* ; echo EXITED-\$?; sleep 600"
  wait_prompt
}

# Types text literally (tmux would read words such as "end" as key names).
type_text() { "${T[@]}" send-keys -t "$SESSION" -l "$1"; }
key() { "${T[@]}" send-keys -t "$SESSION" "$@"; }
line() {
  type_text "$1"
  key Enter
}

# wait_for REGEX WHAT [SECONDS]: polls the screen until a line matches.
wait_for() {
  local deadline=$((SECONDS + ${3:-10}))
  while ((SECONDS < deadline)); do
    if screen | grep -Eq -- "$1"; then return 0; fi
    sleep 0.05
  done
  fail "timed out waiting for $2 (/$1/)"
}

# The last non-empty line of the screen.
last_line() { screen | grep -v '^$' | tail -n 1; }

wait_prompt() {
  local deadline=$((SECONDS + ${1:-10}))
  while ((SECONDS < deadline)); do
    if last_line | grep -Eq '^flare>$'; then return 0; fi
    sleep 0.05
  done
  fail "timed out waiting for an empty prompt"
}

case "$SCENARIO" in
  completion)
    start "$FLARE" repl
    line 'lab = {learning_rate = 1e-4, lora_rank = 8, base_model = "tiny"}'
    wait_prompt
    type_text 'lab.lea'
    key Tab
    wait_for '^flare> lab\.learning_rate$' "the completed field"
    key Enter
    wait_for '^1e-04$|^0\.0001$' "the field's value"
    # Several candidates are listed, then the line is shown again.
    type_text 'lab.l'
    key Tab
    wait_for 'learning_rate +lora_rank' "the listed candidates"
    key C-u
    # Methods follow __index.
    line 'Obj = {} ; Obj.__index = Obj ; function Obj:greet() return "hi" end'
    line 'o = setmetatable({}, Obj)'
    wait_prompt
    type_text 'o:gr'
    key Tab
    wait_for '^flare> o:greet\($' "the completed method"
    line ')'
    wait_for '^"hi"$' "the method's result"
    # Globals, lazily loaded flare modules and require names.
    type_text 'flare.js'
    key Tab
    wait_for '^flare> flare\.json$' "a lazily loaded flare module"
    key C-u
    type_text 'require("flare.repl.pre'
    key Tab
    wait_for '^flare> require\("flare\.repl\.pretty$' "a module name on the search path"
    ;;

  multiline)
    start "$FLARE" repl
    line 'function double(x)'
    wait_for '^  \.\.\.>$' "the continuation prompt"
    line '  local y = x * 2'
    line '  return y'
    line 'end'
    wait_prompt
    line 'double(21)'
    wait_for '^42$' "the result of the multi-line function"
    # An unfinished table constructor continues too.
    line '= {'
    line '  1, 2,'
    line '}'
    wait_for '^\{1, 2\}$' "the multi-line table"
    # A syntax error is reported, not taken as unfinished.
    line 'x = = 1'
    wait_for "unexpected symbol near '='" "the syntax error"
    ;;

  pretty)
    # Without a locale in the environment typed UTF-8 must survive too.
    start env -u LANG -u LC_ALL -u LC_CTYPE "$FLARE" repl
    line '= "héllo ✓"'
    wait_for '^"héllo ✓"$' "the UTF-8 string"
    line '= {name = "run", steps = {1, 2, 3}, opts = {lr = 0.5, nested = {deep = {deeper = {deepest = {x = 1}}}}}}'
    wait_for '^\{name = "run", opts = \{lr = 0\.5, nested = \{deep = \{deeper = \{\.\.\. 1 item\}\}\}\}, steps = \{1, 2, 3\}\}$' "the nested table"
    line 't = {1} ; t.self = t'
    line '= t'
    wait_for '^\{1, self = <cycle>\}$' "the cycle marker"
    line '= setmetatable({}, {__tostring = function() return "Deployment(d1, READY)" end})'
    wait_for '^Deployment\(d1, READY\)$' "the one-line summary"
    line 'error({code = "not_found", message = "no deployment d9"})'
    wait_for 'not_found: no deployment d9' "the structured error"
    line '"a\nb", nil, true'
    wait_for '^"a\\nb"$' "the escaped string"
    ;;

  interrupt)
    start "$FLARE" repl
    line 'kept = 42'
    line 'flare.sleep(30)'
    sleep 0.3
    started=$(date +%s%N)
    key C-c
    wait_for '^interrupted$' "the interrupt message" 5
    wait_prompt 5
    elapsed_ms=$((($(date +%s%N) - started) / 1000000))
    echo "Ctrl-C during flare.sleep(30) back at the prompt after ${elapsed_ms} ms"
    line 'kept + 1'
    wait_for '^43$' "the state kept after the interrupt"
    # Ctrl-C while typing discards the line.
    type_text 'this is not lua'
    key C-c
    line '= "after cancel"'
    wait_for '^"after cancel"$' "a fresh line after Ctrl-C"
    if screen | grep -q "near 'is'"; then fail "the cancelled line was run"; fi
    # A pure-Lua loop is interrupted through the hook.
    line 'n = 0 ; while true do n = n + 1 ; if n % 1000 == 0 then kept = kept end end'
    sleep 0.3
    key C-c
    wait_for '^interrupted$' "the interrupted loop" 5
    # Ctrl-D exits and runs the registered cleanups.
    line 'flare.defer(function(reason) io.write("cleanup ran: ", reason, "\n") end, "note")'
    wait_prompt
    key C-d
    wait_for '^cleanup ran: exit$' "the cleanup on exit"
    wait_for '^EXITED-0$' "the exit status"
    ;;

  history)
    start "$FLARE" repl
    line 'answer = 6 * 7'
    line '= "first session"'
    wait_for '^"first session"$' "the first session's output"
    key C-d
    wait_for '^EXITED-0$' "the first session's end"
    test -s "$XDG_STATE_HOME/flare/history" || fail "no history file at $XDG_STATE_HOME/flare/history"
    # `flare` alone on a terminal is the REPL too.
    start "$FLARE"
    key Up
    wait_for '^flare> = "first session"$' "the last line of the previous session"
    key Up
    wait_for '^flare> answer = 6 \* 7$' "the line before it"
    ;;

  rc)
    printf 'greeting = "hello from init.lua"\n' > "$XDG_CONFIG_HOME/flare/init.lua"
    start "$FLARE" repl
    line 'greeting'
    wait_for '^"hello from init\.lua"$' "the value set by the rc file"
    ;;

  commands)
    mkdir -p "$WORK/lib"
    printf 'return {version = 1}\n' > "$WORK/lib/workflow.lua"
    start env FLARE_PATH="$WORK/lib" "$FLARE" repl
    line ':help deployments:get'
    wait_for 'fw\.deployments:get\(id\) +DeploymentInfo table' "the help entry"
    line 'wf = require("workflow")'
    line 'wf.version'
    wait_for '^1$' "the module's first version"
    printf 'return {version = 2}\n' > "$WORK/lib/workflow.lua"
    line ':reload workflow'
    wait_for '^reloaded workflow \(1 global rebound\)$' "the reload message"
    line 'wf.version'
    wait_for '^2$' "the reloaded module"
    line ':nope'
    wait_for "unknown command ':nope'" "the unknown command error"
    line ':quit'
    wait_for '^EXITED-0$' "the exit after :quit"
    ;;

  deployments)
    # Against the local emulator (in process): ids complete after get(",
    # and Ctrl-C stops wait_for_ready's HTTP polling.
    if ! "$FLARE" -e 'assert(flare.connect)' > /dev/null 2>&1; then
      echo "SKIP: this build has no client (flare.connect)"
      exit 77
    fi
    start "$FLARE" repl
    line 'fw = flare.connect{quiet = true, provision_delay_s = 600, state_dir = os.getenv("HOME") .. "/em"}'
    wait_prompt 60
    line 'for _, id in ipairs{"probe-alpha", "probe-beta"} do fw.deployments:create_or_get{deployment_id = id, base_model = "accounts/local/models/tiny-gpt", min_replica_count = 0, max_replica_count = 1} end'
    wait_prompt 60
    if screen | grep -q "error\|stdin:"; then fail "could not create deployments"; fi
    type_text 'info = fw.deployments:get("probe-'
    key Tab
    wait_for '^probe-alpha +probe-beta$' "both deployment ids listed"
    type_text 'b'
    key Tab
    wait_for '^flare> info = fw\.deployments:get\("probe-beta$' "the completed id"
    line '")'
    wait_prompt 30
    line 'info'
    wait_for '^<DeploymentInfo probe-beta [A-Z_]+ base=accounts/local/models/tiny-gpt replicas=0\.\.1>$' \
      "the one-line DeploymentInfo of the deployment fetched by the completed id"
    # A manager's methods: the public ones, private names once "_" is typed.
    type_text 'fw.deployments:'
    key Tab
    wait_for 'create_or_get +' "the manager's methods listed"
    wait_for 'wait_for_ready' "the last method listed"
    if screen | grep -Eq '_probe|_hotload_headers|__tostring|(^| )new( |$)'; then
      fail "private names, metamethods or the constructor offered"
    fi
    key C-u
    type_text 'fw.deployments:_p'
    key Tab
    wait_for '_path +_probe' "private names once '_' is typed"
    key C-u
    line 'fw.deployments:wait_for_ready("probe-alpha", {timeout_s = 600, poll_interval_s = 1, quiet = true})'
    sleep 1
    key C-c
    wait_for '^interrupted$' "the interrupted wait" 10
    wait_prompt 10
    line 'info.state ~= nil'
    wait_for '^true$' "the session after the interrupted wait"
    ;;

  color)
    start "$FLARE" repl
    line '= {"s", 1}'
    wait_for '^\{"s", 1\}$' "the value"
    "${T[@]}" capture-pane -e -p -t "$SESSION" | grep -q $'\e\\[32m"s"' || fail "no colour on a terminal"
    key C-d
    wait_for '^EXITED-0$' "the exit"
    start env NO_COLOR=1 "$FLARE" repl
    line '= {"s", 1}'
    wait_for '^\{"s", 1\}$' "the value"
    if "${T[@]}" capture-pane -e -p -t "$SESSION" | grep -q $'\e\\['; then fail "colour despite NO_COLOR"; fi
    ;;

  *)
    echo "unknown scenario $SCENARIO"
    exit 2
    ;;
esac
echo "PASS [$SCENARIO]"
