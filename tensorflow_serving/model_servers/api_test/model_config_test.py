"""--model_config_file and ModelService.HandleReloadConfigRequest.

Version policies, version labels, start-up failures (exit status and message),
and reloads that add, remove or reject models, as upstream clients rely on.
"""

from __future__ import annotations

import os
import subprocess
import unittest

from google.protobuf import text_format
import grpc
import numpy as np

from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.model_servers.api_test import api_test_util as util
from tensorflow_serving.model_servers.api_test import test_models
from tensorflow_serving.test_util import binaries
from tensorflow_serving.test_util import model_server

HALF = test_models.HALF
TF2 = test_models.TF2
Code = grpc.StatusCode
State = util.ModelVersionStatus.State
AVAILABLE = State.AVAILABLE


def _x(value: float = 2.0) -> dict[str, np.ndarray]:
  return {"x": np.array([value], np.float32)}


def reload_request(
    config_text: str,
) -> model_management_pb2.ReloadConfigRequest:
  request = model_management_pb2.ReloadConfigRequest()
  text_format.Parse(config_text, request.config)
  return request


class ModelConfigFileTest(util.ApiTestCase):
  """Several models over one base path holding versions 1, 2 and 3.

  One model also has labels, given at start-up for versions that are not
  loaded yet (--allow_version_labels_for_unavailable_models).
  """

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.repo = cls.class_repo()
    base = cls.repo.base_path("versions", HALF, (1, 2, 3))
    policies = {
        "default": "",
        "latest2": "model_version_policy { latest { num_versions: 2 } }",
        "latest0": "model_version_policy { latest { num_versions: 0 } }",
        "all": "model_version_policy { all {} }",
        "specific": (
            "model_version_policy { specific { versions: 1 " "versions: 3 } }"
        ),
        HALF: (
            "model_version_policy { specific { versions: 1 versions: 2 } }"
            " version_labels { key: 'stable' value: 1 }"
            " version_labels { key: 'canary' value: 2 }"
            " version_labels { key: 'future' value: 9 }"
        ),
    }
    config = test_models.model_config_text(
        {name: base for name in policies}, extra=policies
    )
    config_path = cls.repo.write("models.config", config)
    cls.server = cls.class_server(
        cls.repo,
        [
            f"--model_config_file={config_path}",
            "--allow_version_labels_for_unavailable_models",
        ],
    )
    cls.clients = cls.class_clients(cls.server.grpc_address)

  def predict(self, model: str, version: int | None = None):
    return self.clients.prediction.Predict(
        util.predict_request(model, _x(), version=version), timeout=30
    )

  def test_default_policy_serves_latest_version(self):
    self.assertEqual(
        util.version_states(self.clients, "default"), {3: AVAILABLE}
    )
    self.assertEqual(self.predict("default").model_spec.version.value, 3)

  def test_latest_n(self):
    self.assertEqual(
        util.version_states(self.clients, "latest2"),
        {3: AVAILABLE, 2: AVAILABLE},
    )
    self.assertEqual(self.predict("latest2").model_spec.version.value, 3)
    self.assertEqual(self.predict("latest2", 2).model_spec.version.value, 2)
    self.assertRpcError(
        lambda: self.predict("latest2", 1),
        Code.NOT_FOUND,
        "Servable not found for request: Specific(latest2, 1)",
    )

  def test_latest_zero_means_one(self):
    self.assertEqual(
        util.version_states(self.clients, "latest0"), {3: AVAILABLE}
    )

  def test_all(self):
    response = util.model_status(self.clients, "all")
    self.assertEqual(
        [s.version for s in response.model_version_status], [3, 2, 1]
    )
    for version in (1, 2, 3):
      self.assertEqual(
          self.predict("all", version).model_spec.version.value, version
      )

  def test_specific(self):
    self.assertEqual(
        util.version_states(self.clients, "specific"),
        {3: AVAILABLE, 1: AVAILABLE},
    )
    self.assertEqual(self.predict("specific").model_spec.version.value, 3)
    self.assertEqual(self.predict("specific", 1).model_spec.version.value, 1)
    self.assertRpcError(
        lambda: self.predict("specific", 2),
        Code.NOT_FOUND,
        "Servable not found for request: Specific(specific, 2)",
    )
    self.assertRpcError(
        lambda: util.model_status(self.clients, "specific", 2),
        Code.NOT_FOUND,
        "Could not find version 2 of model specific",
    )

  def test_rest_sees_the_same_versions(self):
    response = util.http_request(self.server, "GET", "/v1/models/all")
    doc = self.assertHttpOk(response)
    self.assertEqual(
        [s["version"] for s in doc["model_version_status"]], ["3", "2", "1"]
    )
    response = util.post_json(
        self.server,
        "/v1/models/specific/versions/2:predict",
        {"instances": [1.0]},
    )
    self.assertHttpError(
        response, 404, "Servable not found for request: Specific(specific, 2)"
    )

  def test_labels_resolve(self):
    for label, version in (("stable", 1), ("canary", 2)):
      response = self.clients.prediction.Predict(
          util.predict_request(HALF, _x(), version_label=label), timeout=30
      )
      self.assertEqual(response.model_spec.version.value, version)
      reply = util.post_json(
          self.server,
          f"/v1/models/half/labels/{label}:predict",
          {"instances": [2.0]},
      )
      self.assertEqual(self.assertHttpOk(reply), {"predictions": [3.0]})

  def test_label_of_missing_version(self):
    self.assertRpcError(
        lambda: self.clients.prediction.Predict(
            util.predict_request(HALF, _x(), version_label="future"), timeout=30
        ),
        Code.NOT_FOUND,
        "Servable not found for request: Specific(half, 9)",
    )

  def test_unknown_label(self):
    self.assertRpcError(
        lambda: self.clients.prediction.Predict(
            util.predict_request(HALF, _x(), version_label="nope"), timeout=30
        ),
        Code.INVALID_ARGUMENT,
        "Unrecognized servable version label: nope",
    )


class StartupFailureTest(util.ApiTestCase):
  """Configs the binary must refuse at start-up: non-zero exit, message.

  Validation errors shared with reloads (relative paths, duplicate names) are
  covered by ReloadConfigTest; each start here costs a TensorFlow import.
  """

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    repo = cls.class_repo()
    half = repo.base_path(HALF, HALF)
    configs = {
        "parse_error": repo.write(
            "parse_error.config",
            "model_config_list { config { name: 'half' bogus_field: 1 } }",
        ),
        "label": repo.write(
            "label.config",
            test_models.model_config_text(
                {HALF: half},
                extra={HALF: "version_labels { key: 'stable' value: 1 }"},
            ),
        ),
    }
    # The binaries start in parallel: each spends seconds importing TF.
    procs = {
        name: subprocess.Popen(
            model_server.server_command(
                [
                    f"--port={binaries.pick_unused_port()}",
                    f"--model_config_file={path}",
                ]
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=binaries.subprocess_env(),
        )
        for name, path in configs.items()
    }
    procs["no_model"] = subprocess.Popen(
        model_server.server_command([f"--port={binaries.pick_unused_port()}"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=binaries.subprocess_env(),
    )
    cls.results: dict[str, tuple[int | None, str, str]] = {}
    for name, proc in procs.items():
      try:
        out, err = proc.communicate(timeout=90)
      except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        cls.results[name] = (
            None,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
        )
        continue
      cls.results[name] = (
          proc.returncode,
          out.decode(errors="replace"),
          err.decode(errors="replace"),
      )

  def assertFailedWith(
      self, name: str, message: str, stderr_only: bool = False
  ) -> None:
    returncode, out, err = self.results[name]
    self.assertIsNotNone(returncode, f"{name}: still running after 90s")
    self.assertNotEqual(returncode, 0, f"{name}: exited 0\n{out}\n{err}")
    text = err if stderr_only else out + err
    self.assertIn(message, text)

  def test_parse_error(self):
    self.assertFailedWith(
        "parse_error",
        "Error parsing text-format tensorflow.serving.ModelServerConfig",
        stderr_only=True,
    )

  def test_label_for_unloaded_version_without_flag(self):
    self.assertFailedWith(
        "label",
        "Request to assign label to version 1 of model half, which "
        "is not currently available for inference",
    )

  def test_no_model_configured(self):
    self.assertFailedWith(
        "no_model",
        "Both server_options.model_base_path and "
        "server_options.model_config_file are empty!",
    )


class ReloadConfigTest(util.ApiTestCase):
  """HandleReloadConfigRequest replaces the model set; errors both ways."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.repo = cls.class_repo()
    cls.half = cls.repo.base_path(HALF, HALF, (1, 2))
    cls.tf2 = cls.repo.base_path(TF2, TF2)
    broken = cls.repo.empty_base_path("broken")
    os.makedirs(os.path.join(broken, "1"))
    with open(os.path.join(broken, "1", "saved_model.pb"), "wb") as f:
      f.write(b"this is not a SavedModel")
    cls.broken = broken
    config_path = cls.repo.write(
        "models.config", test_models.model_config_text({HALF: cls.half})
    )
    cls.server = cls.class_server(
        cls.repo,
        [f"--model_config_file={config_path}", "--max_num_load_retries=0"],
    )
    cls.clients = cls.class_clients(cls.server.grpc_address)

  def reload(self, config_text: str, timeout_s: float = 60.0):
    return self.clients.model.HandleReloadConfigRequest(
        reload_request(config_text), timeout=timeout_s
    )

  def assertHalfServes(self):
    response = self.clients.prediction.Predict(
        util.predict_request(HALF, _x()), timeout=30
    )
    self.assertEqual(list(response.outputs["y"].float_val), [3.0])

  def test_add_model_blocks_until_available(self):
    response = self.reload(
        test_models.model_config_text({HALF: self.half, "added": self.tf2})
    )
    self.assertEqual(response.status.error_code, 0)
    self.assertEqual(response.status.error_message, "")
    # No waiting: the reply came after the new model became AVAILABLE.
    self.assertEqual(util.version_states(self.clients, "added"), {1: AVAILABLE})
    predict = self.clients.prediction.Predict(
        util.predict_request("added", _x()), timeout=30
    )
    self.assertEqual(list(predict.outputs["y"].float_val), [7.0])
    self.assertHalfServes()

  def test_remove_model(self):
    self.reload(
        test_models.model_config_text({HALF: self.half, "removed": self.tf2})
    )
    self.assertEqual(
        util.version_states(self.clients, "removed"), {1: AVAILABLE}
    )
    response = self.reload(test_models.model_config_text({HALF: self.half}))
    self.assertEqual(response.status.error_code, 0)

    def unloaded() -> bool:
      return util.version_states(self.clients, "removed") == {1: State.END}

    util.wait_for(unloaded, 30, "the removed model to reach END")
    self.assertRpcError(
        lambda: self.clients.prediction.Predict(
            util.predict_request("removed", _x()), timeout=30
        ),
        Code.NOT_FOUND,
        "Servable not found for request: Latest(removed)",
    )
    self.assertHalfServes()

  def test_relative_base_path_is_rejected(self):
    config = test_models.model_config_text(
        {HALF: self.half, "bad": "relative/path"}
    )
    # The status is also set in ReloadConfigResponse.status, but gRPC sends
    # no response message with a non-OK status, so clients see the code and
    # message of the call.
    self.assertRpcError(
        lambda: self.reload(config),
        Code.INVALID_ARGUMENT,
        "Expected model bad to have an absolute path or URI; got "
        "base_path()=relative/path",
    )
    self.assertHalfServes()

  def test_duplicate_names_are_rejected(self):
    config = (
        "model_config_list { "
        f"config {{ name: 'half' base_path: '{self.half}' "
        "model_platform: 'tensorflow' } "
        f"config {{ name: 'half' base_path: '{self.tf2}' "
        "model_platform: 'tensorflow' } }"
    )
    self.assertRpcError(
        lambda: self.reload(config),
        Code.INVALID_ARGUMENT,
        "Illegal to list model half multiple times in config list",
    )
    self.assertHalfServes()

  def test_unknown_platform_is_rejected(self):
    config = (
        f"model_config_list {{ config {{ name: 'half' base_path: "
        f"'{self.half}' model_platform: 'pytorch' }} }}"
    )
    self.assertRpcError(
        lambda: self.reload(config),
        Code.INVALID_ARGUMENT,
        "Model half requests unsupported platform pytorch",
    )
    self.assertHalfServes()

  def test_config_other_than_model_config_list_is_rejected(self):
    custom = model_management_pb2.ReloadConfigRequest()
    custom.config.custom_model_config.type_url = "type.googleapis.com/x.Y"
    empty = model_management_pb2.ReloadConfigRequest()
    for request in (custom, empty):
      self.assertRpcError(
          lambda r=request: self.clients.model.HandleReloadConfigRequest(
              r, timeout=60
          ),
          Code.INVALID_ARGUMENT,
          "ServerModelConfig type not supported by HandleReloadConfigRequest."
          " Only ModelConfigList is currently supported",
      )
    self.assertHalfServes()

  def test_model_that_fails_to_load(self):
    config = test_models.model_config_text(
        {HALF: self.half, "broken": self.broken}
    )
    err = self.assertRpcError(
        lambda: self.reload(config),
        Code.UNKNOWN,
        contains=["{{name: broken version: 1} due to error: "],
    )
    self.assertTrue(
        err.details().startswith("1 model(s) did not become available: {"),
        msg=err.details(),
    )
    self.assertTrue(err.details().endswith("}, }"), msg=err.details())
    status = util.model_status(self.clients, "broken")
    self.assertEqual(len(status.model_version_status), 1)
    entry = status.model_version_status[0]
    self.assertEqual(entry.version, 1)
    self.assertEqual(entry.state, State.END)
    self.assertNotEqual(entry.status.error_code, 0)
    self.assertNotEqual(entry.status.error_message, "")
    reply = util.http_request(self.server, "GET", "/v1/models/broken")
    doc = self.assertHttpOk(reply)
    (rest_entry,) = doc["model_version_status"]
    self.assertEqual(rest_entry["version"], "1")
    self.assertEqual(rest_entry["state"], "END")
    self.assertNotEqual(rest_entry["status"]["error_code"], "OK")
    self.assertEqual(
        rest_entry["status"]["error_message"], entry.status.error_message
    )
    self.assertHalfServes()
    # Back to a config without it.
    self.reload(test_models.model_config_text({HALF: self.half}))

  def test_labels_by_reload(self):
    all_versions = "model_version_policy { all {} } "
    # Without --allow_version_labels_for_unavailable_models a label may only
    # name an AVAILABLE version: first serve version 1, then label it.
    self.assertRpcError(
        lambda: self.reload(
            test_models.model_config_text(
                {HALF: self.half},
                extra={HALF: "version_labels { key: 'stable' value: 1 }"},
            )
        ),
        Code.FAILED_PRECONDITION,
        "Request to assign label to version 1 of model half, which is not "
        "currently available for inference",
    )
    self.reload(
        test_models.model_config_text(
            {HALF: self.half}, extra={HALF: all_versions}
        )
    )
    util.wait_for(
        lambda: util.version_states(self.clients, HALF).get(1) == AVAILABLE,
        30,
        "version 1 of half to load",
    )
    labelled = test_models.model_config_text(
        {HALF: self.half},
        extra={
            HALF: all_versions + "version_labels { key: 'stable' value: 1 }"
        },
    )
    self.reload(labelled)
    response = self.clients.prediction.Predict(
        util.predict_request(HALF, _x(), version_label="stable"), timeout=30
    )
    self.assertEqual(response.model_spec.version.value, 1)
    # Moving the label to a version that is not available is refused.
    moved = labelled.replace("value: 1", "value: 5")
    self.assertRpcError(
        lambda: self.reload(moved),
        Code.FAILED_PRECONDITION,
        "Request to assign label to version 5 of model half, which is not "
        "currently available for inference",
    )
    self.reload(test_models.model_config_text({HALF: self.half}))
    self.assertHalfServes()


class ConfigFilePollingTest(util.ApiTestCase):
  """--model_config_file_poll_wait_seconds re-reads the file while serving."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.repo = cls.class_repo()
    cls.half = cls.repo.base_path(HALF, HALF)
    cls.tf2 = cls.repo.base_path(TF2, TF2)
    cls.config_path = cls.repo.write(
        "models.config", test_models.model_config_text({HALF: cls.half})
    )
    cls.server = cls.class_server(
        cls.repo,
        [
            f"--model_config_file={cls.config_path}",
            "--model_config_file_poll_wait_seconds=1",
        ],
    )
    cls.clients = cls.class_clients(cls.server.grpc_address)

  def write_config(self, text: str) -> None:
    self.repo.write(os.path.basename(self.config_path), text)

  def half_serves(self) -> bool:
    response = self.clients.prediction.Predict(
        util.predict_request(HALF, _x()), timeout=30
    )
    return list(response.outputs["y"].float_val) == [3.0]

  def test_poll_adds_then_removes_a_model(self):
    self.write_config(
        test_models.model_config_text({HALF: self.half, "polled": self.tf2})
    )
    util.wait_for(
        lambda: util.version_states(self.clients, "polled") == {1: AVAILABLE},
        60,
        "the polled config to add a model",
    )
    predict = self.clients.prediction.Predict(
        util.predict_request("polled", _x()), timeout=30
    )
    self.assertEqual(list(predict.outputs["y"].float_val), [7.0])
    self.write_config(test_models.model_config_text({HALF: self.half}))
    util.wait_for(
        lambda: util.version_states(self.clients, "polled") == {1: State.END},
        60,
        "the polled config to remove a model",
    )
    self.assertTrue(self.half_serves())

  def test_unparsable_file_keeps_serving(self):
    self.write_config("model_config_list { this is not a config")
    util.wait_for(
        lambda: "Failed to read ModelServerConfig file" in self.server.log(),
        30,
        "the poller to log the parse error",
    )
    self.assertIsNone(self.server.proc.poll())
    self.assertTrue(self.half_serves())
    self.write_config(test_models.model_config_text({HALF: self.half}))


if __name__ == "__main__":
  unittest.main()
