#!/usr/bin/env node
// Top-1 accuracy of an ONNX classifier on the Fashion-MNIST test set, run by
// ONNX Runtime (onnxruntime-node, CPU): an independent check of models that
// qkit exports. qkit never depends on it (`npm ci` in the repository root
// installs it from package-lock.json).
//
//   node tools/ort_eval.js MODEL.onnx [--data DIR] [--mean M --std S]
//        [--preds OUT.txt] [--batch N] [--limit N] [--threads N] [--opt LEVEL]
//
// --opt: ONNX Runtime's graph optimization level (disabled, basic, extended,
// all; default all). At `all` ORT fuses DequantizeLinear -> Conv ->
// QuantizeLinear groups of a QDQ model into integer QLinearConv kernels (its
// own integer arithmetic); `disabled` runs the QDQ operators as written,
// i.e. fake quantization in float, the semantics `qkit eval` gives the file.
//
// Input: the model's first input, float32 [N,1,28,28]; output: its first
// output, [N,classes] scores (argmax, first maximum on ties as qkit and
// torch.argmax). Images are normalized as (x / 255 - mean) / std with mean and
// std from the model's metadata_props "qkit.norm.mean" / "qkit.norm.std"
// (written by `qkit train`), else 0.2860 / 0.3530; --mean/--std override both
// (the same rule as `qkit eval`). onnxruntime-node does not expose
// metadata_props, so they are read from the file with a minimal protobuf scan.
// Prints one JSON line {"model", "top1", "images", "correct", "images_per_s",
// "batch", "mean", "std"}; images_per_s counts session.run time only.
// --preds writes the predicted class of every image, one per line.
// The protobuf helpers are exported for tools/ort_run.js.
'use strict';

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

function usage(msg) {
  if (msg) process.stderr.write(`ort_eval: ${msg}\n`);
  process.stderr.write('usage: node tools/ort_eval.js MODEL.onnx [--data DIR] [--mean M --std S] ' +
    '[--preds OUT.txt] [--batch N] [--limit N] [--threads N] [--opt disabled|basic|extended|all]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const a = { data: '/usr/share/datasets/fashion-mnist', batch: 256, limit: 0, threads: 0 };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const need = () => (i + 1 < argv.length ? argv[++i] : usage(`${k} needs a value`));
    if (k === '--data') a.data = need();
    else if (k === '--preds') a.preds = need();
    else if (k === '--mean') a.mean = Number(need());
    else if (k === '--std') a.std = Number(need());
    else if (k === '--batch') a.batch = Number(need());
    else if (k === '--limit') a.limit = Number(need());
    else if (k === '--threads') a.threads = Number(need());
    else if (k === '--opt') a.opt = need();
    else if (k === '--help' || k === '-h') usage();
    else if (k.startsWith('--')) usage(`unknown option ${k}`);
    else rest.push(k);
  }
  if (rest.length !== 1) usage('one MODEL.onnx is required');
  a.model = rest[0];
  if (!Number.isInteger(a.batch) || a.batch < 1) usage('--batch must be a positive integer');
  if (!Number.isInteger(a.limit) || a.limit < 0) usage('--limit must be a non-negative integer');
  if (!Number.isInteger(a.threads) || a.threads < 0) usage('--threads must be a non-negative integer');
  if (a.opt === undefined) a.opt = 'all';
  if (!['disabled', 'basic', 'extended', 'all'].includes(a.opt)) usage('--opt must be disabled, basic, extended or all');
  if (a.mean !== undefined && !Number.isFinite(a.mean)) usage('--mean must be a number');
  if (a.std !== undefined && !(a.std > 0)) usage('--std must be > 0');
  return a;
}

// ---- IDX files (big-endian header: magic 0x0000 08 ndim, then dims) ----
function readIdx(file, ndim) {
  let buf = fs.readFileSync(file);
  if (file.endsWith('.gz')) buf = zlib.gunzipSync(buf);
  if (buf.length < 4 + 4 * ndim || buf.readUInt16BE(0) !== 0 || buf[2] !== 0x08 || buf[3] !== ndim)
    throw new Error(`${file}: not an IDX file of ubyte with ${ndim} dimensions`);
  const dims = [];
  for (let i = 0; i < ndim; i++) dims.push(buf.readUInt32BE(4 + 4 * i));
  const off = 4 + 4 * ndim, n = dims.reduce((x, y) => x * y, 1);
  if (buf.length !== off + n) throw new Error(`${file}: ${buf.length - off} data bytes, expected ${n}`);
  return { dims, data: buf.subarray(off) };
}

function findFile(dir, base) {
  for (const f of [base + '.gz', base]) if (fs.existsSync(path.join(dir, f))) return path.join(dir, f);
  throw new Error(`${dir}: neither ${base}.gz nor ${base} exists`);
}

// ---- ONNX metadata_props (ModelProto field 14: StringStringEntryProto key 1, value 2) ----
function readVarint(b, pos) {
  let v = 0, mul = 1;
  for (;;) {
    if (pos >= b.length) throw new Error('truncated varint');
    const c = b[pos++];
    v += (c & 0x7f) * mul;
    if (c < 0x80) return [v, pos];
    mul *= 128;
  }
}

// Calls fn(field, wireType, bytes or number) for every field of a message.
function scanFields(b, fn) {
  let pos = 0;
  while (pos < b.length) {
    let tag, v;
    [tag, pos] = readVarint(b, pos);
    const field = Math.floor(tag / 8), wt = tag % 8;
    if (wt === 0) { [v, pos] = readVarint(b, pos); fn(field, wt, v); }
    else if (wt === 1) { pos += 8; }
    else if (wt === 5) { pos += 4; }
    else if (wt === 2) {
      [v, pos] = readVarint(b, pos);
      if (pos + v > b.length) throw new Error('truncated field');
      fn(field, wt, b.subarray(pos, pos + v));
      pos += v;
    } else throw new Error(`unsupported wire type ${wt}`);
  }
}

function onnxMetadata(file) {
  const meta = {};
  scanFields(fs.readFileSync(file), (field, wt, v) => {
    if (field !== 14 || wt !== 2) return;
    let key = '', val = '';
    scanFields(v, (f, w, s) => {
      if (w !== 2) return;
      if (f === 1) key = s.toString('utf8');
      else if (f === 2) val = s.toString('utf8');
    });
    meta[key] = val;
  });
  return meta;
}

function normalization(a, meta) {
  let mean = 0.2860, std = 0.3530;
  const m = meta['qkit.norm.mean'], s = meta['qkit.norm.std'];
  if ((m === undefined) !== (s === undefined))
    throw new Error(`${a.model}: metadata has only one of qkit.norm.mean and qkit.norm.std`);
  if (m !== undefined) {
    mean = Number(m);
    std = Number(s);
    if (!Number.isFinite(mean) || !(std > 0))
      throw new Error(`${a.model}: bad metadata qkit.norm.mean = ${m}, qkit.norm.std = ${s}`);
  }
  if (a.mean !== undefined) mean = a.mean;
  if (a.std !== undefined) std = a.std;
  return { mean, std };
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const ort = require('onnxruntime-node');
  const { mean, std } = normalization(a, onnxMetadata(a.model));
  const images = readIdx(findFile(a.data, 't10k-images-idx3-ubyte'), 3);
  const labels = readIdx(findFile(a.data, 't10k-labels-idx1-ubyte'), 1);
  const [count, h, w] = images.dims;
  if (labels.dims[0] !== count) throw new Error(`${count} images but ${labels.dims[0]} labels`);
  const n = a.limit > 0 && a.limit < count ? a.limit : count;

  const opts = { graphOptimizationLevel: a.opt };
  if (a.threads > 0) { opts.intraOpNumThreads = a.threads; opts.interOpNumThreads = 1; }
  const session = await ort.InferenceSession.create(a.model, opts);
  const inName = session.inputNames[0], outName = session.outputNames[0];

  // as qkit's qk_norm_lut: float32 mean and std, (p / 255 - mean) / std in double, rounded to float32
  const lut = new Float32Array(256), fm = Math.fround(mean), fsd = Math.fround(std);
  for (let p = 0; p < 256; p++) lut[p] = (p / 255 - fm) / fsd;
  const hw = h * w, preds = new Int32Array(n);
  let correct = 0, seconds = 0;
  for (let start = 0; start < n; start += a.batch) {
    const m = Math.min(a.batch, n - start);
    const x = new Float32Array(m * hw);
    const src = images.data.subarray(start * hw, (start + m) * hw);
    for (let i = 0; i < m * hw; i++) x[i] = lut[src[i]];
    const feeds = { [inName]: new ort.Tensor('float32', x, [m, 1, h, w]) };
    const t0 = process.hrtime.bigint();
    const out = (await session.run(feeds))[outName];
    seconds += Number(process.hrtime.bigint() - t0) * 1e-9;
    if (out.dims.length !== 2 || out.dims[0] !== m)
      throw new Error(`output ${outName} has shape [${out.dims}], expected [${m}, classes]`);
    const C = out.dims[1], z = out.data;
    for (let k = 0; k < m; k++) {
      let best = 0;
      for (let c = 1; c < C; c++) if (z[k * C + c] > z[k * C + best]) best = c;
      preds[start + k] = best;
      correct += best === labels.data[start + k] ? 1 : 0;
    }
  }
  await session.release();
  if (a.preds) fs.writeFileSync(a.preds, Array.from(preds).join('\n') + '\n');
  process.stdout.write(JSON.stringify({
    model: a.model, top1: correct / n, images: n, correct,
    images_per_s: seconds > 0 ? n / seconds : 0, batch: a.batch, mean, std,
  }) + '\n');
}

module.exports = { readVarint, scanFields, onnxMetadata };

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`ort_eval: ${e && e.message ? e.message : e}\n`);
    process.exit(1);
  });
}
