"""The generated messages and stubs of `inference.GRPCInferenceService`.

They come from tritonclient (`tritonclient.grpc.service_pb2`), the kept
registry package that ships Triton's whole service, repository methods
included. Its metadata bounds exclude this project's pinned protobuf and
ml-dtypes, so it is installed with --no-deps (requirements-nodeps.txt) and
the pip package cannot declare it: without it the server serves every
other API, v2 REST included, and says why it does not serve v2 gRPC.
"""

from __future__ import annotations

from typing import Any

service_pb2: Any
try:
  from tritonclient.grpc import service_pb2
except ImportError as exc:  # Not installed beside the pip package.
  service_pb2 = None
  MISSING: ImportError | None = exc
else:
  MISSING = None
