"""A stand-in worker for supervisor tests: speaks the channel, serves nothing.

It starts in milliseconds (no TensorFlow), so the supervisor's restarts,
timeouts and broadcasts can be tested quickly. What it does comes from
FAKE_WORKER (JSON, keyed by what each option says); what it received is
appended to FAKE_EVENTS_DIR/<pid>.jsonl.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time

from tensorflow_serving.model_servers.workers import channel
from tensorflow_serving.model_servers.workers import config_broadcast
from tensorflow_serving.model_servers.workers import environment


def main() -> int:
  behaviour = json.loads(os.environ.get("FAKE_WORKER", "{}"))
  index = os.environ[environment.WORKER_INDEX]
  events_path = os.path.join(
      os.environ["FAKE_EVENTS_DIR"], f"{os.getpid()}.jsonl"
  )
  lock = threading.Lock()

  def event(kind: str, **fields) -> None:
    with lock, open(events_path, "a", encoding="utf-8") as f:
      f.write(json.dumps({"event": kind, "index": int(index), **fields}) + "\n")

  stop = threading.Event()
  if index in behaviour.get("ignore_sigterm", []):
    signal.signal(signal.SIGTERM, lambda *_: event("sigterm_ignored"))
  else:
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
  sock = socket.socket(fileno=int(os.environ[environment.WORKER_FD]))
  record = config_broadcast.read_hello(*channel.read_blocking(sock))
  event(
      "hello",
      config=None if record.config is None else record.config.decode(),
      overrides={
          name: None if model is None else model.decode()
          for name, model in record.overrides.items()
      },
      metrics_dir=os.environ.get(environment.METRICS_DIR),
  )
  if index in behaviour.get("fail_start", {}):
    return int(behaviour["fail_start"][index])
  send_lock = threading.Lock()

  def send(reply: dict, body: bytes = b"") -> None:
    with send_lock:
      sock.sendall(channel.encode(reply, body))

  def apply(header: dict, config: bytes) -> None:
    call_id = header["id"]
    code, message, applied = behaviour.get("apply", {}).get(
        index, [0, "", True]
    )
    # As a worker: it applies the change (apply_delay_s), says whether it
    # took it, waits for the change's models (load_delay_s) and answers.
    time.sleep(behaviour.get("apply_delay_s", {}).get(index, 0.0))
    send({"type": "accepted", "id": call_id, "in_force": applied})
    time.sleep(behaviour.get("load_delay_s", {}).get(index, 0.0))
    event(
        "apply",
        config=config.decode(),
        op=header["op"],
        name=header["name"],
        keep_overrides=header["keep_overrides"],
    )
    send(
        {
            "type": "applied",
            "id": call_id,
            "code": code,
            "message": message,
            "applied": applied,
        }
    )

  def read() -> None:
    while True:
      message = channel.read_blocking(sock)
      if message is None:
        event("eof")
        stop.set()
        return
      header, body = message
      if header["type"] == "apply":
        threading.Thread(target=apply, args=(header, body), daemon=True).start()
      elif header["type"] == "ping":
        if index not in behaviour.get("ignore_ping", []):
          send({"type": "pong", "id": header["id"]})
      elif header["type"] == "cancel_apply":
        event("cancel_apply", id=header["id"])
        send(
            {
                "type": "applied",
                "id": header["id"],
                "code": 4,
                "message": f"w{index} still awaits m",
                "applied": True,
            }
        )
      elif header["type"] == "states":
        event("states", request=body.decode())
        send(
            {"type": "states", "id": header["id"], "code": 0},
            f"w{index}".encode(),
        )
      elif header["type"] == "status_done":
        parts = channel.split(header["sizes"], body)
        event(
            "status_done",
            replies=header["replies"],
            parts=[p.decode() for p in parts],
        )
      elif header["type"] == "listen":
        event("listen", slots=header["slots"])
      elif header["type"] == "reload_done":
        event("reload_done", code=header["code"], message=header["message"])

  threading.Thread(target=read, daemon=True).start()
  send({"type": "started"})
  if stop.wait(behaviour.get("start_delay_s", {}).get(index, 0.0)):
    event("stopped")
    return 0
  send({"type": "ready"})
  event("ready")
  if index == behaviour.get("ask_status"):
    send({"type": "status", "id": 1}, b"model m")
  if index == behaviour.get("ask_reload"):
    send({"type": "reload", "id": 2}, b"config from a worker")
  if index == behaviour.get("ask_load"):
    send(
        {"type": "reload", "id": 3, "op": "load", "name": "m9"},
        b"model m9",
    )
  stop.wait()
  event("stopped")
  return 0


if __name__ == "__main__":
  sys.exit(main())
