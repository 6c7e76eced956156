"""TLS server contexts from PEM text, as the SSLConfig proto carries it.

Both APIs take their certificates in one format (upstream's SSLConfig:
PEM contents, not paths), so gRPC (ALPN `h2`) and REST (`http/1.1`) build
their contexts here.
"""

from __future__ import annotations

from collections.abc import Sequence
import os
import ssl
import tempfile


def server_context(
    cert_chain: str,
    private_key: str,
    root_certificates: str | None,
    require_client_auth: bool,
    alpn_protocols: Sequence[str],
) -> ssl.SSLContext:
  """A TLS 1.2+ server context; clients are verified against the roots.

  With roots and `require_client_auth`, a client must present a certificate
  they signed (mTLS); with roots alone, one it presents is verified.
  """
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  context.minimum_version = ssl.TLSVersion.TLSv1_2
  # load_cert_chain reads only files: the PEM goes through a private one.
  with tempfile.TemporaryDirectory() as private_dir:
    path = os.path.join(private_dir, "server.pem")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as pem:
      pem.write(cert_chain + "\n" + private_key)
    context.load_cert_chain(path)
  if root_certificates:
    context.load_verify_locations(cadata=root_certificates)
  context.verify_mode = (
      ssl.CERT_REQUIRED
      if require_client_auth
      else ssl.CERT_OPTIONAL
      if root_certificates
      else ssl.CERT_NONE
  )
  context.set_alpn_protocols(list(alpn_protocols))
  return context
