"""Runs a test's client against a real `flare serve` on a free port, then stops it with SIGINT."""
import os
import re
import shutil
import signal
import subprocess
import tempfile


def run_against_serve(flare, prefix, provision_delay, run, check):
    """Starts `flare serve`, calls run(url, key), checks a clean SIGINT exit, prints the tally."""
    state = tempfile.mkdtemp(prefix=prefix)
    server = subprocess.Popen([flare, "serve", "--port", "0", "--state-dir", state,
                               "--provision-delay", str(provision_delay)],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"listening on (http://\S+)", server.stdout.readline()).group(1)
        with open(os.path.join(state, "api_key")) as f:
            key = f.read().strip()
        run(url, key)
        server.send_signal(signal.SIGINT)
        check(server.wait(timeout=30) == 0, "flare serve stops on SIGINT")
        print("1 passed, 0 failed")
    finally:
        if server.poll() is None:
            server.kill()
        shutil.rmtree(state, ignore_errors=True)
