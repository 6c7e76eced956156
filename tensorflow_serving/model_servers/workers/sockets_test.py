"""The supervisor's shared sockets: held, refusing until served, exclusive."""

from __future__ import annotations

import errno
import os
import socket
import tempfile

from absl.testing import absltest

from tensorflow_serving.model_servers.workers import sockets


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _connects(family: int, address) -> bool:
  with socket.socket(family, socket.SOCK_STREAM) as client:
    client.settimeout(2)
    try:
      client.connect(address)
    except ConnectionRefusedError:
      return False
  return True


class SlotSocketsTest(absltest.TestCase):

  def test_refused_until_a_worker_listens_and_after_stop_listening(self):
    port = _free_port()
    held = sockets.slot_sockets(port, 2, dual_stack=True)
    try:
      self.assertLen(held, 2)
      self.assertFalse(_connects(socket.AF_INET, ("127.0.0.1", port)))
      held[1].listen(8)  # What a worker's create_server(sock=) does.
      # One IPv6 socket takes IPv4 too, as the REST port must.
      self.assertTrue(_connects(socket.AF_INET, ("127.0.0.1", port)))
      if held[1].family == socket.AF_INET6:
        self.assertTrue(_connects(socket.AF_INET6, ("::1", port)))
      sockets.stop_listening(held[1])
      self.assertFalse(_connects(socket.AF_INET, ("127.0.0.1", port)))
      held[1].listen(8)
      self.assertTrue(_connects(socket.AF_INET, ("127.0.0.1", port)))
    finally:
      for sock in held:
        sock.close()

  def test_the_port_stays_ours_while_served(self):
    port = _free_port()
    held = sockets.slot_sockets(port, 2, dual_stack=False)
    try:
      held[0].listen(8)  # A worker serves; held[1]'s is dead, say.
      with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with self.assertRaises(OSError) as caught:
          other.bind(("0.0.0.0", port))
        self.assertEqual(caught.exception.errno, errno.EADDRINUSE)
      # Not even a second server started the same way may share it.
      with self.assertRaises(OSError) as caught:
        sockets.slot_sockets(port, 2, dual_stack=False)
      self.assertEqual(caught.exception.errno, errno.EADDRINUSE)
    finally:
      for sock in held:
        sock.close()

  def test_a_port_in_use_is_refused(self):
    with socket.socket() as listener:
      listener.bind(("0.0.0.0", 0))
      listener.listen(1)
      port = listener.getsockname()[1]
      for dual_stack in (False, True):
        with self.assertRaises(OSError) as caught:
          sockets.slot_sockets(port, 1, dual_stack=dual_stack)
        self.assertEqual(caught.exception.errno, errno.EADDRINUSE)

  def test_a_stale_unix_socket_is_replaced(self):
    path = os.path.join(tempfile.mkdtemp(), "grpc.sock")
    stale = sockets.unix_socket(path)
    stale.close()  # Left behind by an earlier run.
    sock = sockets.unix_socket(path)
    try:
      self.assertFalse(_connects(socket.AF_UNIX, path))
      sock.listen(1)
      self.assertTrue(_connects(socket.AF_UNIX, path))
    finally:
      sock.close()


if __name__ == "__main__":
  absltest.main()
