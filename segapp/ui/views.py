"""Pictures of a segmented volume: the axial slice, coronal and sagittal reformats, organ meshes.

Pure numpy (plus PIL for PNG and scikit-image for marching cubes), no Gradio, so the volume
page's drawing is testable and timed without a browser. Arrays follow the volume contract of
:mod:`segapp.io.volume`: (Z, H, W), slice 0 the most inferior, rows toward posterior, columns
toward the patient's left.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image
from skimage.measure import marching_cubes

from segapp.inference.render import overlay
from segapp.labels import FOREGROUND, Palette


@dataclass(frozen=True, eq=False)
class VolumeView:
    """What browsing a segmented volume needs, kept per browser session.

    Attributes:
        gray: (Z, H, W) uint8 slices as segmented (each min-max scaled).
        labels: (Z, H, W) uint8 class ids.
        spacing_mm: (slice, row, column) mm.
        coronal_row: Row index the coronal reformat cuts through.
        sagittal_column: Column index the sagittal reformat cuts through.
        confidence: (Z, H, W) winning-class probabilities (the confidence distribution), or None.
        meshes: The organs' surfaces, recoloured for the 3D view when the colours change.
    """

    gray: np.ndarray
    labels: np.ndarray
    spacing_mm: tuple[float, float, float]
    coronal_row: int
    sagittal_column: int
    confidence: np.ndarray | None = None
    meshes: tuple[Mesh, ...] = ()
    # Reformat PNGs as data URIs by (plane, opacity, organs, colours): they change with the display
    # settings, not with the slice, so a slice step re-sends them without drawing or encoding.
    _reformats: dict[tuple[str, float, tuple[str, ...], tuple], str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, gray: np.ndarray, labels: np.ndarray, spacing_mm: tuple[float, float, float], *,
           confidence: np.ndarray | None = None, meshes: Sequence[Mesh] = ()) -> VolumeView:
        """A view whose reformats cut through the middle of the organs (of the volume when none)."""
        if gray.shape != labels.shape or gray.ndim != 3:
            raise ValueError(f"slices {gray.shape} and labels {labels.shape} must be equal (Z, H, W)")
        found = np.nonzero(labels.any(axis=0))
        if found[0].size:
            row = int((found[0].min() + found[0].max()) // 2)
            column = int((found[1].min() + found[1].max()) // 2)
        else:
            row, column = gray.shape[1] // 2, gray.shape[2] // 2
        return cls(gray, labels, tuple(float(s) for s in spacing_mm), row, column,  # type: ignore[arg-type]
                   confidence, tuple(meshes))

    @property
    def slices(self) -> int:
        """Number of axial slices (Z)."""
        return int(self.gray.shape[0])

    def axial(self, index: int, *, opacity: float, visible: Iterable[str] | None,
              palette: Palette | None = None) -> np.ndarray:
        """(H, W, 3) uint8 overlay of slice ``index`` (clamped to the volume), in ``palette``'s colours."""
        k = self.clamp(index)
        return overlay(self.gray[k], self.labels[k], opacity=opacity, visible=visible, palette=palette)

    def reformat(self, plane: str, *, opacity: float, visible: Iterable[str] | None,
                 palette: Palette | None = None) -> np.ndarray:
        """(rows, columns, 3) uint8 overlay of the coronal or sagittal plane, head at the top.

        Resampled (nearest neighbour) to square pixels of the in-plane spacing, so a 3 mm slice
        step is three times as tall as a 1 mm one and anatomy keeps its proportions.
        """
        if plane == "coronal":  # patient's right on the left, as in the axial slice
            gray, labels, across_mm = self.gray[:, self.coronal_row, :], self.labels[:, self.coronal_row, :], self.spacing_mm[2]
        elif plane == "sagittal":  # anterior on the left
            gray, labels, across_mm = self.gray[:, :, self.sagittal_column], self.labels[:, :, self.sagittal_column], self.spacing_mm[1]
        else:
            raise ValueError(f"plane must be 'coronal' or 'sagittal', not {plane!r}")
        z = gray.shape[0]
        height = max(1, round(z * self.spacing_mm[0] / across_mm))
        rows = np.minimum((np.arange(height) + 0.5) * z / height, z - 1).astype(np.int64)[::-1]  # head up
        return overlay(gray[rows], labels[rows], opacity=opacity, visible=visible, palette=palette)

    def reformat_uri(self, plane: str, *, opacity: float, visible: Iterable[str] | None,
                     palette: Palette | None = None) -> str:
        """:meth:`reformat` as a PNG data URI, drawn once per plane and display setting."""
        shown = tuple(sorted(visible)) if visible is not None else tuple(label.name for label in FOREGROUND)
        key = (plane, round(float(opacity), 3), shown, tuple(palette or ()))
        with self._lock:
            cached = self._reformats.get(key)
        if cached is None:
            cached = png_data_uri(self.reformat(plane, opacity=opacity, visible=shown, palette=palette))
            with self._lock:
                if len(self._reformats) > 16:  # a person dragging the opacity makes many settings
                    self._reformats.clear()
                self._reformats[key] = cached
        return cached

    def clamp(self, index: int) -> int:
        """``index`` moved into 0 .. Z-1."""
        return int(min(max(int(index), 0), self.slices - 1))

    def marker_percent(self, index: int) -> float:
        """Where slice ``index`` lies on a reformat, in % of its height from the top (head)."""
        return 100.0 * (self.slices - 1 - self.clamp(index) + 0.5) / self.slices


def png_data_uri(image: np.ndarray) -> str:
    """An (H, W, 3) uint8 image as a ``data:image/png;base64,...`` URI (fast zlib level)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------------------
# Meshes


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle surface in patient millimetres (DICOM LPS).

    Attributes:
        name: Organ name.
        vertices: (N, 3) float32 LPS mm.
        faces: (M, 3) uint32 vertex indices.
        rgb: Colour 0-255.
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    rgb: tuple[int, int, int]


def organ_meshes(labels: np.ndarray, affine_lps: np.ndarray, *, max_faces: int = 60_000) -> list[Mesh]:
    """Marching-cubes surfaces of every organ present in ``labels``, in LPS mm.

    Args:
        labels: (Z, H, W) class ids.
        affine_lps: 4 x 4 voxel index (k, i, j, 1) -> LPS mm.
        max_faces: Per organ: the marching-cubes step grows (1, 2, 3, ... voxels) until the surface
            has at most this many triangles, which bounds the file (about 30 bytes a triangle).
    """
    meshes = []
    for label in FOREGROUND:
        mask = labels == label.id
        if mask.sum() < 8:  # too small for a surface worth showing
            continue
        padded = np.pad(mask, 1).astype(np.float32)  # closes organs that touch the volume's edge
        step = 1 if mask.sum() < 200_000 else 2
        while True:
            vertices, faces, _, _ = marching_cubes(padded, level=0.5, step_size=step, allow_degenerate=False)
            if len(faces) <= max_faces or step >= 8:
                break
            step += 1
        index = np.c_[vertices - 1.0, np.ones(len(vertices))]  # undo the padding
        lps = (index @ affine_lps.T)[:, :3]
        meshes.append(Mesh(label.name, lps.astype(np.float32), faces.astype(np.uint32), label.color))
    return meshes


def recoloured(meshes: Iterable[Mesh], palette: Palette | None) -> list[Mesh]:
    """``meshes`` in ``palette``'s colours (one RGB per class id; None: as they are)."""
    if palette is None:
        return list(meshes)
    by_name = {label.name: palette[label.id] for label in FOREGROUND}
    return [replace(mesh, rgb=by_name.get(mesh.name, mesh.rgb)) for mesh in meshes]


def glb_bytes(meshes: Iterable[Mesh]) -> bytes:
    """A binary glTF 2.0 file of ``meshes``: one node, one primitive per organ, in its colour.

    glTF's axes are y up: (x, y, z) = (L, S, A) of the patient, a proper rotation of LPS, so a
    viewer's default camera looks at the patient from the front, patient's left on the right.
    Smooth vertex normals are included.
    """
    rotation = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float32)  # LPS -> (L, S, A)
    chunks: list[bytes] = []
    views, accessors, primitives, materials = [], [], [], []
    offset = 0

    def add(data: bytes, target: int) -> int:
        nonlocal offset
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data), "target": target})
        padded = data + b"\0" * (-len(data) % 4)
        chunks.append(padded)
        offset += len(padded)
        return len(views) - 1

    for mesh in meshes:
        positions = np.ascontiguousarray(mesh.vertices @ rotation.T, dtype=np.float32)
        faces = np.ascontiguousarray(mesh.faces, dtype=np.uint32)
        normals = _vertex_normals(positions, faces)
        accessors.append({"bufferView": add(positions.tobytes(), 34962), "componentType": 5126,
                          "count": len(positions), "type": "VEC3",
                          "min": positions.min(axis=0).tolist(), "max": positions.max(axis=0).tolist()})
        accessors.append({"bufferView": add(normals.tobytes(), 34962), "componentType": 5126,
                          "count": len(normals), "type": "VEC3"})
        accessors.append({"bufferView": add(faces.tobytes(), 34963), "componentType": 5125,
                          "count": faces.size, "type": "SCALAR"})
        materials.append({"name": mesh.name, "doubleSided": True, "pbrMetallicRoughness": {
            "baseColorFactor": [c / 255 for c in mesh.rgb] + [1.0], "metallicFactor": 0.0, "roughnessFactor": 0.7}})
        primitives.append({"attributes": {"POSITION": len(accessors) - 3, "NORMAL": len(accessors) - 2},
                           "indices": len(accessors) - 1, "material": len(materials) - 1})
    document: dict = {"asset": {"version": "2.0", "generator": "segapp"}, "scene": 0,
                      "scenes": [{"nodes": [0] if primitives else []}]}
    if primitives:
        document.update(nodes=[{"mesh": 0, "name": "organs"}], meshes=[{"name": "organs", "primitives": primitives}],
                        materials=materials, accessors=accessors, bufferViews=views,
                        buffers=[{"byteLength": offset}])
    text = json.dumps(document, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    binary = b"".join(chunks)
    parts = struct.pack("<II", len(text), 0x4E4F534A) + text
    if binary:
        parts += struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<III", 0x46546C67, 2, 12 + len(parts)) + parts


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N, 3) float32 unit normals: each vertex's sum of its faces' area-weighted normals."""
    corners = vertices[faces]  # (M, 3, 3)
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(vertices)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return (normals / np.where(length > 0, length, 1.0)).astype(np.float32)
