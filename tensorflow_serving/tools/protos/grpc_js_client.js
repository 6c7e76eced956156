#!/usr/bin/env node
// A TensorFlow Serving client in Node.js: @grpc/proto-loader reads the .proto
// files that write_protos generates, and @grpc/grpc-js calls Predict,
// GetModelMetadata and GetModelStatus with them.
//
//   bazel run //tensorflow_serving/tools/protos:write_protos -- /tmp/tf_serving_protos
//   NODE_PATH=tools/node/node_modules node tensorflow_serving/tools/protos/grpc_js_client.js \
//     --protos=/tmp/tf_serving_protos --server=localhost:8500 --model=half \
//     --input=x --values=1,2,5
//
// Each answer is printed as one JSON line: {"call": ..., "response": ...}.
// Exits non-zero, with the gRPC status on stderr, when a call fails.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function parseArgs(argv) {
  const args = {
    protos: '',
    server: 'localhost:8500',
    model: 'default',
    signature: 'serving_default',
    input: 'x',
    values: '1,2,5',
    timeoutMs: 10000,
  };
  for (const arg of argv) {
    const match = /^--([a-z_]+)=(.*)$/.exec(arg);
    if (!match) throw new Error(`unknown argument: ${arg}`);
    const key = match[1].replace(/_([a-z])/g, (_, c) => c.toUpperCase());
    if (!(key in args)) throw new Error(`unknown flag: --${match[1]}`);
    args[key] = typeof args[key] === 'number' ? Number(match[2]) : match[2];
  }
  if (!args.protos) throw new Error('--protos=DIR (write_protos output) is required');
  return args;
}

function loadServices(protoDir) {
  const packageDefinition = protoLoader.loadSync(
    [
      'tensorflow_serving/apis/prediction_service.proto',
      'tensorflow_serving/apis/model_service.proto',
    ],
    {
      includeDirs: [path.resolve(protoDir)],
      keepCase: true, // Field names as in the .proto: model_spec, float_val.
      longs: String, // int64 (versions, dims) as decimal strings.
      enums: String, // DT_FLOAT, AVAILABLE.
      defaults: true,
      json: true, // Unpack google.protobuf.Any (the metadata's SignatureDefMap).
    },
  );
  const serving = grpc.loadPackageDefinition(packageDefinition).tensorflow.serving;
  return serving;
}

// Promise wrapper for a unary call with a deadline.
function call(client, method, request, timeoutMs) {
  const deadline = new Date(Date.now() + timeoutMs);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (error, response) => {
      if (error) reject(error);
      else resolve(response);
    });
  });
}

// A float TensorProto's values, whether the server sent float_val or
// tensor_content (--enable_serialization_as_tensor_content: little-endian).
function floatValues(tensor) {
  const content = tensor.tensor_content;
  if (!content || !content.length) return tensor.float_val;
  const values = [];
  for (let i = 0; i + 4 <= content.length; i += 4) values.push(content.readFloatLE(i));
  return values;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const serving = loadServices(args.protos);
  const credentials = grpc.credentials.createInsecure();
  const prediction = new serving.PredictionService(args.server, credentials);
  const models = new serving.ModelService(args.server, credentials);
  const modelSpec = { name: args.model, signature_name: args.signature };
  const values = args.values.split(',').map(Number);

  const predict = await call(prediction, 'Predict', {
    model_spec: modelSpec,
    inputs: {
      [args.input]: {
        dtype: 'DT_FLOAT',
        tensor_shape: { dim: [{ size: values.length }] },
        float_val: values,
      },
    },
  }, args.timeoutMs);
  const outputs = {};
  for (const [name, tensor] of Object.entries(predict.outputs)) {
    outputs[name] = {
      dtype: tensor.dtype,
      shape: tensor.tensor_shape.dim.map((d) => Number(d.size)),
      encoding: tensor.tensor_content.length ? 'tensor_content' : 'float_val',
      values: floatValues(tensor),
    };
  }
  print('Predict', { model_spec: predict.model_spec, outputs });

  const metadata = await call(prediction, 'GetModelMetadata', {
    model_spec: { name: args.model },
    metadata_field: ['signature_def'],
  }, args.timeoutMs);
  const signatures = metadata.metadata.signature_def.signature_def;
  print('GetModelMetadata', {
    model_spec: metadata.model_spec,
    type: metadata.metadata.signature_def['@type'],
    signature_keys: Object.keys(signatures).sort(),
    signature_def: signatures,
  });

  const status = await call(models, 'GetModelStatus', {
    model_spec: { name: args.model },
  }, args.timeoutMs);
  print('GetModelStatus', status);

  prediction.close();
  models.close();
}

function print(name, response) {
  process.stdout.write(JSON.stringify({ call: name, response }) + '\n');
}

main().catch((error) => {
  const code = error.code !== undefined ? ` (gRPC code ${error.code})` : '';
  process.stderr.write(`${error.message || error}${code}\n`);
  process.exit(1);
});
