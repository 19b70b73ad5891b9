#!/usr/bin/env node
// Run an ONNX model with ONNX Runtime (onnxruntime-node, CPU) on TensorProto
// files (the format of the ONNX test data and of `qkit run`), writing every
// output as a TensorProto: the other runtime for checking qkit's results.
// qkit never depends on it (`npm ci` in the repository root installs it).
//
//   node tools/ort_run.js MODEL.onnx input_0.pb [input_1.pb ...] --out DIR
//        [--compare expected_0.pb ...] [--threads N]
//
// Inputs are matched to the model's inputs by the TensorProto name when it
// is one of them, else by position. DIR receives output_<i>.pb in the model's
// output order (name, dims, data_type and raw_data little-endian).
// --compare F ... compares output i with F (same shape, max |a - b| printed,
// exact for integer types); the exit status is 1 on a shape or dtype mismatch
// only — the tolerance is the caller's to judge.
// Prints one JSON line {"model", "outputs": [{name, dtype, shape, file,
// max_abs_diff?}]}.
'use strict';

const fs = require('fs');
const path = require('path');
const { readVarint, scanFields } = require('./ort_eval.js');

// ONNX TensorProto.DataType -> [ort type, TypedArray, bytes per element]
const DTYPES = {
  1: ['float32', Float32Array, 4], 2: ['uint8', Uint8Array, 1], 3: ['int8', Int8Array, 1],
  4: ['uint16', Uint16Array, 2], 5: ['int16', Int16Array, 2], 6: ['int32', Int32Array, 4],
  7: ['int64', BigInt64Array, 8], 9: ['bool', Uint8Array, 1], 10: ['float16', Uint16Array, 2],
  11: ['float64', Float64Array, 8], 12: ['uint32', Uint32Array, 4], 13: ['uint64', BigUint64Array, 8],
};
const ORT_TO_ONNX = {};
for (const [k, v] of Object.entries(DTYPES)) ORT_TO_ONNX[v[0]] = Number(k);

function usage(msg) {
  if (msg) process.stderr.write(`ort_run: ${msg}\n`);
  process.stderr.write('usage: node tools/ort_run.js MODEL.onnx IN.pb [IN.pb ...] --out DIR ' +
    '[--compare EXPECTED.pb ...] [--threads N]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const a = { inputs: [], compare: [], threads: 0 };
  let mode = 'in';
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--out') { if (i + 1 >= argv.length) usage('--out needs a value'); a.out = argv[++i]; mode = 'in'; }
    else if (k === '--threads') { a.threads = Number(argv[++i]); mode = 'in'; }
    else if (k === '--compare') mode = 'cmp';
    else if (k === '--help' || k === '-h') usage();
    else if (k.startsWith('--')) usage(`unknown option ${k}`);
    else if (mode === 'cmp') a.compare.push(k);
    else if (!a.model) a.model = k;
    else a.inputs.push(k);
  }
  if (!a.model) usage('MODEL.onnx is required');
  if (!a.inputs.length) usage('at least one input .pb is required');
  if (!a.out) usage('--out DIR is required');
  if (!Number.isInteger(a.threads) || a.threads < 0) usage('--threads must be a non-negative integer');
  return a;
}

// 64-bit-safe varint (int64 dims and int64_data can be negative: 10 bytes).
function readVarintBig(b, pos) {
  let v = 0n, shift = 0n;
  for (;;) {
    if (pos >= b.length) throw new Error('truncated varint');
    const c = b[pos++];
    v |= BigInt(c & 0x7f) << shift;
    if (c < 0x80) return [v, pos];
    shift += 7n;
  }
}

function readTensor(file) {
  const t = { dims: [], name: '', type: 0, raw: null, f32: [], i32: [], i64: [], f64: [], u64: [] };
  const buf = fs.readFileSync(file);
  // scan with 64-bit varints for the integer fields
  let pos = 0;
  while (pos < buf.length) {
    let tag;
    [tag, pos] = readVarint(buf, pos);
    const field = Math.floor(tag / 8), wt = tag % 8;
    let v;
    if (wt === 0) { [v, pos] = readVarintBig(buf, pos); }
    else if (wt === 2) { let len; [len, pos] = readVarint(buf, pos); v = buf.subarray(pos, pos + len); pos += len; }
    else if (wt === 5) { v = buf.subarray(pos, pos + 4); pos += 4; }
    else if (wt === 1) { v = buf.subarray(pos, pos + 8); pos += 8; }
    else throw new Error(`${file}: unsupported wire type ${wt}`);
    const ints = (acc) => {
      if (wt === 0) acc.push(BigInt.asIntN(64, v));
      else if (wt === 2) for (let p = 0; p < v.length;) { let x; [x, p] = readVarintBig(v, p); acc.push(BigInt.asIntN(64, x)); }
    };
    if (field === 1) ints(t.dims);
    else if (field === 2 && wt === 0) t.type = Number(v);
    else if (field === 4) {
      if (wt === 5) t.f32.push(v.readFloatLE(0));
      else if (wt === 2) for (let p = 0; p + 4 <= v.length; p += 4) t.f32.push(v.readFloatLE(p));
    } else if (field === 5) ints(t.i32);
    else if (field === 7) ints(t.i64);
    else if (field === 8 && wt === 2) t.name = v.toString('utf8');
    else if (field === 9 && wt === 2) t.raw = Buffer.from(v);
    else if (field === 10) {
      if (wt === 1) t.f64.push(v.readDoubleLE(0));
      else if (wt === 2) for (let p = 0; p + 8 <= v.length; p += 8) t.f64.push(v.readDoubleLE(p));
    } else if (field === 11) {
      if (wt === 0) t.u64.push(BigInt.asUintN(64, v));
      else if (wt === 2) for (let p = 0; p < v.length;) { let x; [x, p] = readVarintBig(v, p); t.u64.push(x); }
    } else if (field === 13 || field === 6) throw new Error(`${file}: external or string data is not supported`);
  }
  const d = DTYPES[t.type];
  if (!d) throw new Error(`${file}: unsupported data_type ${t.type}`);
  const [ortType, TA, size] = d;
  const dims = t.dims.map(Number), n = dims.reduce((x, y) => x * y, 1);
  let data;
  if (t.raw) {
    if (t.raw.length !== n * size) throw new Error(`${file}: raw_data has ${t.raw.length} bytes, expected ${n * size}`);
    data = new TA(n);
    new Uint8Array(data.buffer).set(t.raw); // x86 and the format are both little-endian
  } else if (t.type === 1) data = Float32Array.from(t.f32);
  else if (t.type === 11) data = Float64Array.from(t.f64);
  else if (t.type === 7) data = BigInt64Array.from(t.i64);
  else if (t.type === 13 || t.type === 12) data = t.type === 13 ? BigUint64Array.from(t.u64) : Uint32Array.from(t.u64.map(Number));
  else data = TA.from(t.i32.map(Number)); // int32_data carries the small integer types, bool and float16 bits
  if (data.length !== n) throw new Error(`${file}: ${data.length} values, shape [${dims}] needs ${n}`);
  return { name: t.name, type: t.type, ortType, dims, data };
}

// ---- writing ----
function varint(x) {
  let v = BigInt.asUintN(64, BigInt(x));
  const out = [];
  do {
    let c = Number(v & 0x7fn);
    v >>= 7n;
    if (v) c |= 0x80;
    out.push(c);
  } while (v);
  return Buffer.from(out);
}

function lenField(field, bytes) {
  return Buffer.concat([varint(field * 8 + 2), varint(bytes.length), bytes]);
}

function writeTensor(file, name, tensor) {
  const type = ORT_TO_ONNX[tensor.type];
  if (!type) throw new Error(`output ${name}: unsupported type ${tensor.type}`);
  const parts = [];
  for (const d of tensor.dims) parts.push(varint(8), varint(d)); // dims (field 1, unpacked)
  parts.push(varint(16), varint(type)); // data_type (field 2)
  parts.push(lenField(8, Buffer.from(name, 'utf8'))); // name
  const data = tensor.data;
  parts.push(lenField(9, Buffer.from(data.buffer, data.byteOffset, data.byteLength))); // raw_data
  fs.writeFileSync(file, Buffer.concat(parts));
}

function maxAbsDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = typeof a[i] === 'bigint' ? Number(a[i] - b[i]) : a[i] - b[i];
    const ad = Math.abs(d);
    if (ad > m || Number.isNaN(d)) m = Number.isNaN(d) ? NaN : ad;
    if (Number.isNaN(m)) break;
  }
  return m;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const ort = require('onnxruntime-node');
  const opts = {};
  if (a.threads > 0) { opts.intraOpNumThreads = a.threads; opts.interOpNumThreads = 1; }
  const session = await ort.InferenceSession.create(a.model, opts);
  const ins = a.inputs.map(readTensor);
  if (ins.length > session.inputNames.length)
    throw new Error(`${ins.length} inputs given but the model has ${session.inputNames.length}`);
  const feeds = {};
  ins.forEach((t, i) => {
    const name = session.inputNames.includes(t.name) ? t.name : session.inputNames[i];
    if (feeds[name]) throw new Error(`input ${name} given twice`);
    feeds[name] = new ort.Tensor(t.ortType, t.data, t.dims);
  });
  const res = await session.run(feeds);
  fs.mkdirSync(a.out, { recursive: true });
  let bad = 0;
  const outputs = session.outputNames.map((name, i) => {
    const y = res[name], file = path.join(a.out, `output_${i}.pb`);
    writeTensor(file, name, y);
    const o = { name, dtype: y.type, shape: y.dims, file };
    if (i < a.compare.length) {
      const e = readTensor(a.compare[i]);
      if (e.ortType !== y.type || e.dims.join() !== y.dims.join()) {
        o.mismatch = `expected ${e.ortType} [${e.dims}]`;
        bad++;
      } else o.max_abs_diff = maxAbsDiff(y.data, e.data);
    }
    return o;
  });
  await session.release();
  process.stdout.write(JSON.stringify({ model: a.model, outputs }) + '\n');
  if (bad) process.exit(1);
}

main().catch((e) => {
  process.stderr.write(`ort_run: ${e && e.message ? e.message : e}\n`);
  process.exit(1);
});
