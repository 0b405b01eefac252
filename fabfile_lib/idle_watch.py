"""``lab.idle`` for a Jupyter server: the batch script's watcher, which ends a lab nobody uses -- and never
a busy one.

It runs on the node beside the app, so it ends an idle lab with the laptop closed. It asks the Jupyter
server what the server itself knows, every ``step`` seconds, without counting as activity
(``no_track_activity``): ``/api/status`` (when anything last happened: a request, a kernel's message, a
terminal; how many browser connections there are) and ``/api/kernels`` (whether a kernel is busy). A
busy kernel or a connected browser is use, however long a cell runs; otherwise the lab has been idle
since the last activity. ``warn`` seconds before the end it says so in the job log and in ``idle`` in the
lab's directory (which the watcher on the laptop relays); at the end it stops the app with SIGTERM and
says why in the log (``ENDED_IDLE``), which is what ``status`` shows.

Jupyter's own ``shutdown_no_activity_timeout`` with kernel culling would take up to twice ``lab.idle``
(culling a kernel counts as activity) and warns no one; the evidence is Jupyter's either way.
"""

from __future__ import annotations

ENDED_IDLE = "fabfile-lab: ended: idle for"  # the job log's line once the watcher ended the lab
NOTE = "idle"  # the file in the lab's directory while the end is near: {"ends_at": epoch, "idle": seconds}


def warn_before(idle: int) -> int:
    """How long before the end the user is warned: 10 minutes, or half of a shorter ``lab.idle``."""
    return min(600, idle // 2)


def step(idle: int) -> int:
    """Seconds between two looks: often enough to end within a few percent of ``lab.idle``."""
    return max(5, min(30, idle // 8))


# The watcher, for the app's own python3 (stdlib only). Arguments: idle, warn, step, the app's end (a
# socket path or host:port), the lab's directory, the app's pid.
_PYTHON = r'''
import http.client, json, os, signal, socket, sys, time
from datetime import datetime
idle, warn, step = (float(a) for a in sys.argv[1:4])
end, lab_dir, app_pid = sys.argv[4], sys.argv[5], int(sys.argv[6])
token = open(os.path.join(lab_dir, "token")).read().strip()
note = os.path.join(lab_dir, "idle")

class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(end)

def get(path):
    if end.startswith("/"):
        conn = Unix("localhost", timeout=10)
    else:
        host, _, port = end.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path + "?no_track_activity=1", headers={"Authorization": "token " + token})
        answer = conn.getresponse()
        body = answer.read()
    finally:
        conn.close()
    if answer.status != 200:
        raise OSError(f"HTTP {answer.status}")
    return json.loads(body)

def clock(seconds):  # 2:05 (hours) or 7 min
    minutes = max(1, round(seconds / 60))
    return f"{minutes // 60}:{minutes % 60:02d}" if minutes >= 60 else f"{minutes} min"

def say(text):
    print(f"fabfile-lab: {text}", flush=True)

last, warned = time.time(), False
while True:
    time.sleep(step)
    try:
        status, kernels = get("/api/status"), get("/api/kernels")
        seen = datetime.fromisoformat(status["last_activity"].replace("Z", "+00:00")).timestamp()
    except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException):
        continue  # the app is starting or ending; the batch script sees to its end
    now = time.time()
    if status.get("connections") or any(k.get("execution_state") == "busy" for k in kernels):
        last = now
    last = max(last, min(seen, now))
    unused = now - last
    if unused >= idle:
        say(f"ended: idle for {clock(unused)} (lab.idle {clock(idle)})")
        os.kill(app_pid, signal.SIGTERM)
        sys.exit(0)
    if unused >= idle - warn and not warned:
        warned = True
        say(f"idle for {clock(unused)}: the lab ends in {clock(idle - unused)} unless it is used (lab.idle)")
        with open(note + ".new", "w") as fh:
            json.dump({"ends_at": int(last + idle), "idle": idle}, fh)
        os.replace(note + ".new", note)
    elif unused < idle - warn and warned:
        warned = False
        say("in use again: lab.idle starts over")
        if os.path.exists(note):
            os.remove(note)
'''

SHELL = f"""# lab.idle: end the lab once its app has not been used for LAB_IDLE seconds (idle_watch.py).
lab_idle_watch() {{
    local python
    python=$(command -v python3 || command -v python) || {{
        echo "fabfile-lab: lab.idle: no python3 on $(hostname) to watch the app with; the lab will not end when idle"
        return 0
    }}
    "$python" - "$LAB_IDLE" "$LAB_IDLE_WARN" "$LAB_IDLE_STEP" "$LAB_END" "$LAB_DIR" "$APP_PID" <<'LAB_IDLE_PY' &
{_PYTHON.strip()}
LAB_IDLE_PY
    LAB_IDLE_PID=$!
}}
"""
