// @vladmandic/face-api 1.7.15 (SSD-MobileNetV1 + AgeGenderNet) on a labelled folder, offline, tfjs-wasm backend.
//
//   cd benchmarks/peers && npm install && node faceapi_age.js --dataset ../../../shared/data/fgnet --out out.json [--files list.txt]
//
// Why this peer: it is the browser-side estimator people reach for first; PEERS.md measured it on a 500-image sample.
// Per image: the largest detected face's age and gender (no fallback for misses: it is reported as not detected),
// and the wall time of detection + age/gender in ms. Its age model was trained on 80 % of UTK, FG-NET and ChaLearn
// (its README): treat its FG-NET/UTKFace figures as optimistic (PEERS.md lesson 4).
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
require('@tensorflow/tfjs-backend-wasm');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const jpeg = require('jpeg-js');
const { PNG } = require('pngjs');

const MIN_CONFIDENCE = 0.5; // face-api's default for SSD-MobileNetV1
const MAX_MEMORY_MB = 1024; // jpeg-js refuses large images by default

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

function decode(file) {
  const buffer = fs.readFileSync(file);
  const isPng = buffer[0] === 0x89 && buffer[1] === 0x50;
  const img = isPng ? PNG.sync.read(buffer) : jpeg.decode(buffer, { useTArray: true, maxMemoryUsageInMB: MAX_MEMORY_MB });
  const rgb = new Uint8Array(img.width * img.height * 3);
  for (let i = 0, j = 0; i < img.data.length; i += 4, j += 3) {
    rgb[j] = img.data[i]; rgb[j + 1] = img.data[i + 1]; rgb[j + 2] = img.data[i + 2];
  }
  return tf.tensor3d(rgb, [img.height, img.width, 3], 'int32');
}

async function main() {
  const dataset = arg('dataset');
  const out = arg('out', 'faceapi_results.json');
  const listFile = arg('files');
  await tf.setBackend('wasm');
  await tf.ready();
  const modelDir = path.join(__dirname, 'node_modules/@vladmandic/face-api/model');
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir);
  await faceapi.nets.ageGenderNet.loadFromDisk(modelDir);
  const labels = fs.readFileSync(path.join(dataset, 'labels.csv'), 'utf8').trim().split('\n');
  const header = labels[0].split(',');
  let files = labels.slice(1).map((line) => line.split(',')[header.indexOf('file')]);
  if (listFile) {
    const wanted = new Set(fs.readFileSync(listFile, 'utf8').trim().split('\n'));
    files = files.filter((f) => wanted.has(f));
  }
  const options = new faceapi.SsdMobilenetv1Options({ minConfidence: MIN_CONFIDENCE });
  const results = [];
  for (const [k, file] of files.entries()) {
    const tensor = decode(path.join(dataset, 'images', file));
    const started = process.hrtime.bigint();
    const faces = await faceapi.detectAllFaces(tensor, options).withAgeAndGender();
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    tensor.dispose();
    const largest = faces.sort((a, b) => b.detection.box.area - a.detection.box.area)[0];
    results.push(largest
      ? { file, detected: true, age: largest.age, p_female: largest.gender === 'female' ? largest.genderProbability : 1 - largest.genderProbability, ms }
      : { file, detected: false, ms });
    if ((k + 1) % 50 === 0) process.stderr.write(`${k + 1}/${files.length}\n`);
  }
  fs.writeFileSync(out, JSON.stringify({ peer: '@vladmandic/face-api 1.7.15 (tfjs-wasm, SSD-MobileNetV1)', results }, null, 1));
}

main().catch((err) => { console.error(err); process.exit(1); });
