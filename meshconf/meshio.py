"""Coloured meshes to files: binary PLY and glTF binary (.glb), written atomically, no extra dependency."""

from __future__ import annotations

import json
import struct

import numpy as np

from .imageio import write_atomic


def _rgb8(vertex_rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(vertex_rgb, dtype=np.float64) * 255, 0, 255).round().astype(np.uint8)


def ply_bytes(vertices: np.ndarray, faces: np.ndarray, vertex_rgb: np.ndarray) -> bytes:
    vertices = np.asarray(vertices, dtype="<f4")
    faces = np.asarray(faces, dtype="<i4")
    header = (f"ply\nformat binary_little_endian 1.0\ncomment meshconf confidence mesh\n"
              f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"property uchar red\nproperty uchar green\nproperty uchar blue\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n").encode()
    vdtype = np.dtype([("p", "<f4", 3), ("c", "u1", 3)])
    vrec = np.empty(len(vertices), vdtype)
    vrec["p"], vrec["c"] = vertices, _rgb8(vertex_rgb)
    fdtype = np.dtype([("n", "u1"), ("i", "<i4", 3)])
    frec = np.empty(len(faces), fdtype)
    frec["n"], frec["i"] = 3, faces
    return header + vrec.tobytes() + frec.tobytes()


def glb_bytes(vertices: np.ndarray, faces: np.ndarray, vertex_rgb: np.ndarray) -> bytes:
    """A minimal glTF 2.0 binary: one mesh with POSITION, COLOR_0 (normalised bytes) and uint32 indices."""
    positions = np.ascontiguousarray(vertices, dtype="<f4")
    colours = np.concatenate([_rgb8(vertex_rgb), np.full((len(positions), 1), 255, np.uint8)], 1)
    indices = np.ascontiguousarray(faces, dtype="<u4").reshape(-1)
    chunks = [positions.tobytes(), colours.tobytes(), indices.tobytes()]
    offsets, blob = [], b""
    for chunk in chunks:
        offsets.append(len(blob))
        blob += chunk + b"\0" * (-len(chunk) % 4)
    gltf = {
        "asset": {"version": "2.0", "generator": "meshconf"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "COLOR_0": 1}, "indices": 2}]}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": offsets[0], "byteLength": len(chunks[0]), "target": 34962},
            {"buffer": 0, "byteOffset": offsets[1], "byteLength": len(chunks[1]), "target": 34962},
            {"buffer": 0, "byteOffset": offsets[2], "byteLength": len(chunks[2]), "target": 34963}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(positions), "type": "VEC3",
             "min": positions.min(0).tolist(), "max": positions.max(0).tolist()},
            {"bufferView": 1, "componentType": 5121, "normalized": True, "count": len(positions), "type": "VEC4"},
            {"bufferView": 2, "componentType": 5125, "count": len(indices), "type": "SCALAR"}],
    }
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(blob), b"BIN\0") + blob
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def write_ply(path, vertices, faces, vertex_rgb) -> None:
    write_atomic(path, ply_bytes(vertices, faces, vertex_rgb))


def write_glb(path, vertices, faces, vertex_rgb) -> None:
    write_atomic(path, glb_bytes(vertices, faces, vertex_rgb))
