"""Start and stop `flare serve` for the reliability scripts (chaos.py, crash_trials.py)."""
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

KEY = "reliability-key"


class Serve:
    def __init__(self, flare, state_dir, faults="", port=0, log_path=None):
        argv = [flare, "serve", "--port", str(port), "--state-dir", state_dir, "--api-key", KEY,
                "--provision-delay", "0.2"]
        if faults:
            argv += ["--faults", faults]
        self.log = open(log_path or os.devnull, "ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log,
                                     start_new_session=True)
        line = self.proc.stdout.readline().decode()
        m = re.search(r"listening on (http://[^ ]+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError("flare serve did not start: " + line)
        self.url = m.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])

    def request(self, method, path, body=None, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("X-Api-Key", KEY)
        req.add_header("Authorization", "Bearer " + KEY)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read()
                return r.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, text.decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


def client_env(serve, runs_dir):
    env = dict(os.environ)
    env.update({"FLARE_EMULATOR_URL": serve.url, "FLARE_EMULATOR_API_KEY": KEY,
                "FLARE_RUNS_DIR": runs_dir, "FIREWORKS_API_KEY": "", "FIREWORKS_BASE_URL": "",
                "FLARE_EMULATOR_STATE_DIR": ""})
    return env


def wait_for(what, fn, timeout_s=60, interval=0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError("timed out waiting for " + what)
