"""The status table both transports rely on."""

from absl.testing import absltest

from tensorflow_serving.util import status


class StatusTest(absltest.TestCase):

  def test_http_mapping_matches_upstream_table(self):
    expected = {
        status.Code.OK: 200,
        status.Code.CANCELLED: 499,
        status.Code.UNKNOWN: 500,
        status.Code.INVALID_ARGUMENT: 400,
        status.Code.DEADLINE_EXCEEDED: 504,
        status.Code.NOT_FOUND: 404,
        status.Code.ALREADY_EXISTS: 409,
        status.Code.PERMISSION_DENIED: 403,
        status.Code.RESOURCE_EXHAUSTED: 429,
        status.Code.FAILED_PRECONDITION: 400,
        status.Code.ABORTED: 409,
        status.Code.OUT_OF_RANGE: 400,
        status.Code.UNIMPLEMENTED: 501,
        status.Code.INTERNAL: 500,
        status.Code.UNAVAILABLE: 503,
        status.Code.DATA_LOSS: 500,
        status.Code.UNAUTHENTICATED: 401,
    }
    for code, http in expected.items():
      self.assertEqual(status.http_status(code), http, code.name)

  def test_codes_use_grpc_numbering(self):
    import grpc  # pylint: disable=g-import-not-at-top

    for code in status.Code:
      self.assertEqual(grpc.StatusCode[code.name].value[0], int(code))

  def test_factories_and_wrapping(self):
    err = status.not_found("Servable not found for request: Latest(m)")
    self.assertEqual(err.code, status.Code.NOT_FOUND)
    self.assertEqual(str(err), "Servable not found for request: Latest(m)")
    self.assertIs(status.from_exception(err), err)
    wrapped = status.from_exception(ValueError("boom"))
    self.assertEqual(wrapped.code, status.Code.UNKNOWN)
    self.assertEqual(wrapped.message, "boom")


if __name__ == "__main__":
  absltest.main()
