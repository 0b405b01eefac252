"""A kernel of a lab's Jupyter, reached through the lab's own URL: code runs in it as a notebook cell would
(REST to start it, the websocket to run code), for the sandbox tests that need a lab to do work."""

from __future__ import annotations

import json
import time
import uuid

import requests
import websocket


class Kernel:
    """A new kernel of the Jupyter at ``base`` (``http://127.0.0.1:PORT``), asked with ``token``."""

    def __init__(self, base: str, token: str):
        self.base, self.auth = base, {"Authorization": f"token {token}"}
        self.id = requests.post(f"{self.base}/api/kernels", headers=self.auth, json={}, timeout=30).json()["id"]

    @classmethod
    def of(cls, record: dict) -> Kernel:
        """A kernel of the lab whose record (``lab_cli.record``) this is."""
        return cls(f"http://127.0.0.1:{record['forward_port']}", record["token"])

    def run(self, code: str, timeout: float = 120, wait: bool = True) -> str:
        """What ``code`` printed (and any error); with ``wait`` False, return once it is sent, the browser
        closed while the cell runs."""
        ws = websocket.create_connection(f"{self.base.replace('http', 'ws')}/api/kernels/{self.id}/channels",
                                         header=[f"Authorization: {self.auth['Authorization']}"], timeout=timeout)
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps(_execute_request(msg_id, code)))
            if not wait:
                time.sleep(1)  # the kernel has the request (it is busy) before the browser goes
                return ""
            return _output(ws, msg_id, time.monotonic() + timeout)
        finally:
            ws.close()

    def close(self) -> None:
        requests.delete(f"{self.base}/api/kernels/{self.id}", headers=self.auth, timeout=30)


def _execute_request(msg_id: str, code: str) -> dict:
    return {"header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False}}


def _output(ws: websocket.WebSocket, msg_id: str, deadline: float) -> str:
    out = []
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return "".join(out)
    raise AssertionError(f"the cell did not finish in time: {''.join(out)}")
