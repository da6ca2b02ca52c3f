#!/usr/bin/env bash
# Gateway overhead: requests/s and latency p50/p99 at concurrency 64 (wrk), direct to the
# upstream against through nginx (split_clients canary share, keep-alive upstreams, a JSON
# access log) and through the prototype on the emulator's HTTP stack (bench_gateway_proxy).
# The upstream is nginx answering a fixed JSON body: the cheapest possible model server, so
# the gateway's own cost is the whole difference.
#   bench/gateway/run.sh BUILD_DIR [ROUNDS] [SECONDS]
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
secs=${3:-5}
here=$(cd "$(dirname "$0")" && pwd)
proxy_bin="$build/bench/gateway/bench_gateway_proxy"
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up1=$(free_port); up2=$(free_port); gw=$(free_port); own=$(free_port)

cat > "$dir/up.conf" <<CONF
worker_processes 1; daemon off; pid $dir/up.pid; error_log $dir/up.err;
events { worker_connections 4096; }
http {
  access_log off; default_type application/json;
  server { listen 127.0.0.1:$up1; keepalive_requests 1000000;
    location / { return 200 '{"choices":[{"text":"ok","finish_reason":"length"}]}'; } }
  server { listen 127.0.0.1:$up2; keepalive_requests 1000000;
    location / { return 200 '{"choices":[{"text":"ok","finish_reason":"length"}]}'; } }
}
CONF
cat > "$dir/gw.conf" <<CONF
worker_processes 1; daemon off; pid $dir/gw.pid; error_log $dir/gw.err;
events { worker_connections 4096; }
http {
  log_format release escape=json '{"t":\$msec,"route":"\$route","status":\$status,'
    '"request_time":\$request_time,"upstream_time":"\$upstream_response_time",'
    '"user":"\$http_x_user_id"}';
  access_log $dir/access.log release buffer=64k flush=1s;
  upstream production { server 127.0.0.1:$up1; keepalive 128; keepalive_requests 1000000; }
  upstream canary { server 127.0.0.1:$up2; keepalive 128; keepalive_requests 1000000; }
  map \$http_x_user_id \$sticky { "" \$request_id; default \$http_x_user_id; }
  split_clients "\$sticky" \$route { 5% canary; * production; }
  server { listen 127.0.0.1:$gw; keepalive_requests 1000000;
    location / { proxy_pass http://\$route; proxy_http_version 1.1;
      proxy_set_header Connection ""; } }
}
CONF
nginx -c "$dir/up.conf" -p "$dir" & pids+=($!)
nginx -c "$dir/gw.conf" -p "$dir" & pids+=($!)
"$proxy_bin" "$own" "$up1" "$up2" 5 "$dir/own.log" & pids+=($!)
sleep 0.5

measure() {  # URL -> "rps p50_us p99_us"
  wrk -t2 -c64 -d"${secs}s" --latency -s "$here/post.lua" "$1" | awk '
    function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; return v * 1e6 }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = us($2) } $1 == "99%" { p99 = us($2) }
    END { printf "%.0f %.0f %.0f\n", rps, p50, p99 }'
}
declare -A rps p50 p99
for r in $(seq 1 "$rounds"); do
  for target in direct nginx own; do
    case $target in direct) url="http://127.0.0.1:$up1/v1/completions";;
      nginx) url="http://127.0.0.1:$gw/v1/completions";; own) url="http://127.0.0.1:$own/v1/completions";; esac
    read -r a b c < <(measure "$url")
    rps[$target]+="$a "; p50[$target]+="$b "; p99[$target]+="$c "
    echo "round $r $target: $a req/s, p50 $b us, p99 $c us" >&2
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
d_rps=$(echo "${rps[direct]}" | median); d_p50=$(echo "${p50[direct]}" | median); d_p99=$(echo "${p99[direct]}" | median)
echo
echo "| path (median of $rounds rounds, ${secs} s each, wrk -t2 -c64) | req/s | of direct | p50 | added p50 | p99 | added p99 |"
echo "|---|---|---|---|---|---|---|"
echo "| direct to the upstream | $d_rps | 1.00 | ${d_p50} µs | — | ${d_p99} µs | — |"
for target in nginx own; do
  a=$(echo "${rps[$target]}" | median); b=$(echo "${p50[$target]}" | median); c=$(echo "${p99[$target]}" | median)
  name=$([ $target = nginx ] && echo "nginx gateway (split_clients 5%, access log)" || echo "own gateway on HttpServer + httplib client")
  echo "| $name | $a | $(awk -v a="$a" -v d="$d_rps" 'BEGIN{printf "%.2f", a/d}') | ${b} µs | $((b - d_p50)) µs | ${c} µs | $((c - d_p99)) µs |"
done
canary=$(grep -c '"route":"canary"' "$dir/access.log" || true); total=$(wc -l < "$dir/access.log")
echo
echo "nginx access log: $total lines, canary share $(awk -v c="$canary" -v t="$total" 'BEGIN{printf "%.2f%%", 100*c/t}')"
