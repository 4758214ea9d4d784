// Read a DICOM-SEG the way OHIF's Cornerstone path does (dcmjs' Segmentation adapter) and print
// what it returns as JSON: the segments (number, label, SNOMED code, display colour as dcmjs turns
// CIELab into RGB) and, per source image (in the order given), the pixel indices of each segment.
// Usage: node read_seg.js SEG SOURCE... (tests/io/test_interop_readers.py; test dependency only)
const fs = require("fs");
const path = require("path");
const dcmjs = require("dcmjs");

const [segPath, ...sourcePaths] = process.argv.slice(2);
const toBuffer = (p) => { const b = fs.readFileSync(p); return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength); };
const instances = {};
const imageIds = sourcePaths.map((p, i) => {
  const dataset = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dcmjs.data.DicomMessage.readFile(toBuffer(p)).dict);
  const id = `image:${i}`;
  instances[id] = dataset;
  return id;
});
const metadataProvider = {
  get(type, imageId) {
    const ds = instances[imageId];
    if (!ds) return undefined;
    if (type === "instance") return ds;
    if (type === "imagePlaneModule") {
      const iop = ds.ImageOrientationPatient.map(Number);
      return { rowCosines: iop.slice(0, 3), columnCosines: iop.slice(3), imagePositionPatient: ds.ImagePositionPatient.map(Number),
               rows: ds.Rows, columns: ds.Columns, rowPixelSpacing: Number(ds.PixelSpacing[0]), columnPixelSpacing: Number(ds.PixelSpacing[1]),
               frameOfReferenceUID: ds.FrameOfReferenceUID };
    }
    if (type === "imagePixelModule") return { rows: ds.Rows, columns: ds.Columns };
    if (type === "generalSeriesModule") return { modality: ds.Modality, seriesInstanceUID: ds.SeriesInstanceUID };
    return undefined;
  },
};
const state = dcmjs.adapters.Cornerstone.Segmentation.generateToolState(imageIds, toBuffer(segPath), metadataProvider);
const labels = new Uint16Array(state.labelmapBufferArray[0]);
const size = labels.length / imageIds.length;
const slices = imageIds.map((id, k) => {
  const set = {};
  labels.slice(k * size, (k + 1) * size).forEach((v, j) => { if (v) (set[v] = set[v] || []).push(j); });
  return { file: path.basename(sourcePaths[k]), pixels: set };
});
const segments = state.segMetadata.data.filter(Boolean).map((s) => ({
  number: s.SegmentNumber, label: s.SegmentLabel, code: s.SegmentedPropertyTypeCodeSequence[0].CodeValue,
  rgb: dcmjs.data.Colors.dicomlab2RGB(s.RecommendedDisplayCIELabValue).map((c) => Math.round(c * 255)),
}));
console.log(JSON.stringify({ labelmaps: state.labelmapBufferArray.length, segments, slices }));
