#!/usr/bin/env node
// ONNX Runtime (onnxruntime-node, CPU) timing of one classifier, the peer
// column of bench/bench_int8_e2e.c:
//
//   node tools/ort_bench.js MODEL.onnx [--threads N] [--batch N] [--repeat R]
//        [--seconds S] [--check PREDS.txt]
//
// Input: the model's first input, float32 [N,1,28,28] filled with the first
// --batch Fashion-MNIST test images normalized as tools/ort_eval.js does
// (the same images in every run). Batch throughput: of --repeat rounds, each
// running session.run on the batch for at least --seconds, the median
// images/s. Latency: the same with one image per run, the median ms per run.
// Session options: graphOptimizationLevel 'all', intraOpNumThreads N,
// interOpNumThreads 1, sequential execution. --check compares the batch's
// argmax with the first lines of PREDS.txt (one class per line).
// Prints one JSON line {"model", "threads", "batch", "images_per_s",
// "latency_ms", "agree"}.
'use strict';

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const { onnxMetadata } = require('./ort_eval.js');

function usage(msg) {
  if (msg) process.stderr.write(`ort_bench: ${msg}\n`);
  process.stderr.write('usage: node tools/ort_bench.js MODEL.onnx [--threads N] [--batch N] [--repeat R] ' +
    '[--seconds S] [--check PREDS.txt] [--data DIR]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const a = { data: '/usr/share/datasets/fashion-mnist', threads: 1, batch: 256, repeat: 5, seconds: 0.3 };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const need = () => (i + 1 < argv.length ? argv[++i] : usage(`${k} needs a value`));
    if (k === '--threads') a.threads = Number(need());
    else if (k === '--batch') a.batch = Number(need());
    else if (k === '--repeat') a.repeat = Number(need());
    else if (k === '--seconds') a.seconds = Number(need());
    else if (k === '--check') a.check = need();
    else if (k === '--data') a.data = need();
    else if (k.startsWith('--')) usage(`unknown option ${k}`);
    else rest.push(k);
  }
  if (rest.length !== 1) usage('one MODEL.onnx is required');
  a.model = rest[0];
  for (const k of ['threads', 'batch', 'repeat'])
    if (!Number.isInteger(a[k]) || a[k] < 1) usage(`--${k} must be a positive integer`);
  if (!(a.seconds > 0)) usage('--seconds must be > 0');
  return a;
}

function testImages(dir, n) {
  let f = path.join(dir, 't10k-images-idx3-ubyte.gz');
  let buf = fs.existsSync(f) ? zlib.gunzipSync(fs.readFileSync(f)) : fs.readFileSync(path.join(dir, 't10k-images-idx3-ubyte'));
  const count = buf.readUInt32BE(4), h = buf.readUInt32BE(8), w = buf.readUInt32BE(12);
  if (n > count) throw new Error(`batch ${n} > ${count} test images`);
  return { h, w, data: buf.subarray(16, 16 + n * h * w) };
}

const median = (v) => { const s = [...v].sort((x, y) => x - y); return s[s.length >> 1]; };

async function timeRuns(session, feeds, a) {
  const per = [];
  for (let r = 0; r < a.repeat; r++) {
    let runs = 0;
    const t0 = process.hrtime.bigint();
    let dt = 0;
    do {
      await session.run(feeds);
      runs++;
      dt = Number(process.hrtime.bigint() - t0) * 1e-9;
    } while (dt < a.seconds);
    per.push(dt / runs);
  }
  return median(per);
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const ort = require('onnxruntime-node');
  const meta = onnxMetadata(a.model);
  const mean = meta['qkit.norm.mean'] !== undefined ? Number(meta['qkit.norm.mean']) : 0.2860;
  const std = meta['qkit.norm.std'] !== undefined ? Number(meta['qkit.norm.std']) : 0.3530;
  const im = testImages(a.data, a.batch);
  const hw = im.h * im.w, lut = new Float32Array(256), fm = Math.fround(mean), fsd = Math.fround(std);
  for (let p = 0; p < 256; p++) lut[p] = (p / 255 - fm) / fsd;
  const x = new Float32Array(a.batch * hw);
  for (let i = 0; i < x.length; i++) x[i] = lut[im.data[i]];
  const session = await ort.InferenceSession.create(a.model, {
    graphOptimizationLevel: 'all', intraOpNumThreads: a.threads, interOpNumThreads: 1, executionMode: 'sequential',
  });
  const inName = session.inputNames[0], outName = session.outputNames[0];
  const big = { [inName]: new ort.Tensor('float32', x, [a.batch, 1, im.h, im.w]) };
  const one = { [inName]: new ort.Tensor('float32', x.slice(0, hw), [1, 1, im.h, im.w]) };
  const out = (await session.run(big))[outName]; // warm-up and the predictions
  let agree = null;
  if (a.check) {
    const want = fs.readFileSync(a.check, 'utf8').split(/\s+/).filter((s) => s.length).map(Number);
    const C = out.dims[1];
    let same = 0;
    for (let k = 0; k < a.batch; k++) {
      let best = 0;
      for (let c = 1; c < C; c++) if (out.data[k * C + c] > out.data[k * C + best]) best = c;
      same += best === want[k] ? 1 : 0;
    }
    agree = same / a.batch;
  }
  await session.run(one);
  const tb = await timeRuns(session, big, a), t1 = await timeRuns(session, one, a);
  await session.release();
  process.stdout.write(JSON.stringify({
    model: a.model, threads: a.threads, batch: a.batch, images_per_s: a.batch / tb, latency_ms: 1e3 * t1, agree,
  }) + '\n');
}

main().catch((e) => { process.stderr.write(`ort_bench: ${e.message}\n`); process.exit(1); });
