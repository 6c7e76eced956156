"""REST JSON <-> numpy tensors, as upstream's util/json_tensor.cc does it.

Modules: `predict_request` (the one predict entry, `decode_predict`),
`predict_response`, `example_request` (classify and regress bodies),
`document` (body parsing and JSON in error messages) and `targets` (how JSON
values convert to each dtype).
"""
